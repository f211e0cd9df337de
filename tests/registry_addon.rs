//! The registry addon end to end: `minik addons enable registry` runs
//! minik's own registry (`minik registry-server`) in kube-system on the
//! node's network; skopeo pushes an image (built with umoci) to
//! localhost:5000 from the host; a pod pulls `localhost:5000/<name>:<tag>`
//! and runs it; the Service `registry` answers /v2/ inside the cluster.

mod common;
#[path = "registry_support/mod.rs"]
mod registry_support;

use std::process::Command;
use std::time::Duration;

use common::{text, wait_for, Env};
use registry_support::build_image;

#[test]
fn registry_addon_serves_pushes_and_pulls() {
    let env = Env::new("regaddon");
    let work = env.dir.join("work");
    let layout = work.join("oci");
    build_image(&layout, "v1", "pushed-to-the-addon");

    env.m(&["start", "--driver=none"]);
    env.m(&["addons", "enable", "registry"]);
    wait_for("the registry pod Ready", Duration::from_secs(90), || {
        let s = env.k(&[
            "get",
            "pods",
            "-n",
            "kube-system",
            "-l",
            "app.kubernetes.io/name=registry",
            "-o",
            "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        if s.trim() == "True" {
            Ok(())
        } else {
            Err(s)
        }
    });

    // Push from the host (the none driver's node is this host).
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg("docker://localhost:5000/demo/app:v1")
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo push: {}", text(&out.stderr));

    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: fromreg\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: app\n    image: localhost:5000/demo/app:v1\n";
    env.apply(pod);
    wait_for(
        "the pod pulled from the addon runs",
        Duration::from_secs(90),
        || {
            let out = env.kubectl(&["logs", "fromreg"]);
            let s = text(&out.stdout);
            if s.contains("marker: pushed-to-the-addon") {
                Ok(())
            } else {
                Err(format!(
                    "{s}{} {}",
                    text(&out.stderr),
                    env.k(&[
                        "get",
                        "pod",
                        "fromreg",
                        "-o",
                        "jsonpath={.status.containerStatuses}"
                    ])
                ))
            }
        },
    );
    let image_id = env.k(&[
        "get",
        "pod",
        "fromreg",
        "-o",
        "jsonpath={.status.containerStatuses[0].imageID}",
    ]);
    assert!(
        image_id.starts_with("localhost:5000/demo/app@sha256:"),
        "{image_id}"
    );

    // In the cluster, through the Service (ClusterIP port 80 → 5000).
    let out = env.kubectl(&[
        "run",
        "probe",
        "-i",
        "--rm",
        "--restart=Never",
        "--image=minik/busybox",
        "--",
        "wget",
        "-qO-",
        "http://registry.kube-system.svc.cluster.local/v2/demo/app/tags/list",
    ]);
    let so = text(&out.stdout);
    assert!(so.contains("\"v1\""), "{so}{}", text(&out.stderr));

    env.m(&["addons", "disable", "registry"]);
    env.m(&["delete"]);
}
