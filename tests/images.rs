//! Images end to end with the real binary, kubectl and a REAL registry
//! (Debian's docker-registry; images built with umoci, pushed with skopeo):
//! `minik image load` (docker-archive file, OCI archive on stdin), `ls`,
//! `rm` refused while a running container uses the image then done; pods
//! pulling by tag, by digest and through a manifest list, with an
//! imagePullSecret for an htpasswd-protected registry, and a wrong password
//! ending in ErrImagePull / ImagePullBackOff with a clear message.
//! One none-driver cluster for the whole file, steps in order.

mod common;
#[path = "registry_support/mod.rs"]
mod registry_support;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{text, wait_for, Env};
use registry_support::{build_image, build_index, Registry};

fn pod_yaml(name: &str, image: &str, policy: &str, secret: Option<&str>) -> String {
    let secrets = secret
        .map(|s| format!("  imagePullSecrets:\n  - name: {s}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n{secrets}  containers:\n  - name: app\n    image: {image}\n    imagePullPolicy: {policy}\n"
    )
}

fn jsonpath(env: &Env, pod: &str, path: &str) -> String {
    env.k(&["get", "pod", pod, "-o", &format!("jsonpath={path}")])
}

fn wait_running(env: &Env, pod: &str) {
    wait_for(
        &format!("pod {pod} Running"),
        Duration::from_secs(90),
        || {
            let phase = jsonpath(env, pod, "{.status.phase}");
            if phase == "Running" {
                Ok(())
            } else {
                Err(format!(
                    "{phase}: {}",
                    jsonpath(env, pod, "{.status.containerStatuses}")
                ))
            }
        },
    )
}

fn wait_log(env: &Env, pod: &str, needle: &str) {
    wait_for(
        &format!("{needle:?} in the log of {pod}"),
        Duration::from_secs(30),
        || {
            let out = env.kubectl(&["logs", pod]);
            let s = text(&out.stdout);
            if s.contains(needle) {
                Ok(())
            } else {
                Err(format!("{s}{}", text(&out.stderr)))
            }
        },
    )
}

fn waiting_reason(env: &Env, pod: &str) -> (String, String) {
    (
        jsonpath(
            env,
            pod,
            "{.status.containerStatuses[0].state.waiting.reason}",
        ),
        jsonpath(
            env,
            pod,
            "{.status.containerStatuses[0].state.waiting.message}",
        ),
    )
}

#[test]
fn image_load_ls_rm_and_registry_pulls() {
    let env = Env::new("images");
    let work = env.dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let layout = work.join("oci");
    build_image(&layout, "v1", "amd");
    build_image(&layout, "arm", "arm");
    build_image(&layout, "loaded", "loaded-from-archive");
    build_image(&layout, "private", "private-image");
    build_index(&layout, "multi", &[("arm", "arm64"), ("v1", "amd64")]);
    let open = Registry::start(&work.join("reg-open"), None);
    let auth = Registry::start(&work.join("reg-auth"), Some(("alice", "s3cret")));
    open.push(&layout, "v1", "team/app:v1", &[]);
    open.push(&layout, "multi", "team/app:multi", &["--multi-arch", "all"]);
    auth.push(&layout, "private", "private/app:v1", &[]);

    // Archives: a docker-archive file and an OCI archive for stdin.
    let docker_tar = work.join("app.tar");
    let oci_tar = work.join("stdin.tar");
    for dest in [
        format!(
            "docker-archive:{}:example.com/demo/app:v1",
            docker_tar.display()
        ),
        format!("oci-archive:{}:loaded/stdin:v2", oci_tar.display()),
    ] {
        let out = Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(format!("oci:{}:loaded", layout.display()))
            .arg(&dest)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }

    env.m(&["start", "--driver=none"]);

    // --- minik image load / ls / rm ---
    let out = env.minik(&["image", "load", docker_tar.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("example.com/demo/app:v1"),
        "{}",
        text(&out.stderr)
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_minik"))
        .args(["image", "load", "-"])
        .env("HOME", env.dir.join("home"))
        .env("MINIK_HOME", env.dir.join("minik"))
        .env("KUBECONFIG", env.kubeconfig())
        .env_remove("MINIK_PROFILE")
        .stdin(std::fs::File::open(&oci_tar).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(err.contains("docker.io/loaded/stdin:v2"), "{err}");

    let ls = env.m(&["image", "ls"]);
    let header = ls.lines().next().unwrap_or("");
    assert!(
        header.starts_with("IMAGE")
            && header.contains("TAG")
            && header.contains("ID")
            && header.contains("SIZE"),
        "{ls}"
    );
    let row = |img: &str| {
        ls.lines()
            .find(|l| l.split_whitespace().next() == Some(img))
            .unwrap_or_else(|| panic!("{img} not in:\n{ls}"))
            .to_string()
    };
    let r = row("example.com/demo/app");
    assert_eq!(r.split_whitespace().nth(1), Some("v1"), "{r}");
    assert!(r.split_whitespace().nth(3).unwrap().ends_with("MB"), "{r}");
    row("docker.io/loaded/stdin");
    row("docker.io/minik/busybox");

    env.apply(&pod_yaml(
        "loaded",
        "example.com/demo/app:v1",
        "Never",
        None,
    ));
    wait_running(&env, "loaded");
    wait_log(&env, "loaded", "marker: loaded-from-archive");
    let out = env.minik(&["image", "rm", "example.com/demo/app:v1"]);
    assert!(!out.status.success(), "rm must refuse while the pod runs");
    let err = text(&out.stderr);
    assert!(
        err.contains("in use") && err.contains("default/loaded/app"),
        "{err}"
    );
    env.k(&["delete", "pod", "loaded", "--wait=true"]);
    wait_for(
        "the loaded pod's container gone",
        Duration::from_secs(30),
        || {
            let out = env.minik(&["image", "rm", "example.com/demo/app:v1"]);
            if out.status.success() {
                Ok(())
            } else {
                Err(text(&out.stderr))
            }
        },
    );
    let ls = env.m(&["image", "ls"]);
    assert!(!ls.contains("example.com/demo/app"), "{ls}");
    let out = env.minik(&["image", "rm", "example.com/demo/app:v1"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not on the node"),
        "{}",
        text(&out.stderr)
    );

    // Never + missing: ErrImageNeverPull.
    env.apply(&pod_yaml("never", "example.com/demo/app:v1", "Never", None));
    wait_for("ErrImageNeverPull", Duration::from_secs(30), || {
        let (reason, msg) = waiting_reason(&env, "never");
        if reason == "ErrImageNeverPull" && msg.contains("not present with pull policy of Never") {
            Ok(())
        } else {
            Err(format!("{reason}: {msg}"))
        }
    });

    // --- registry pulls ---
    let host = open.host();
    let by_tag = format!("{host}/team/app:v1");
    env.apply(&pod_yaml("bytag", &by_tag, "IfNotPresent", None));
    wait_running(&env, "bytag");
    wait_log(&env, "bytag", "marker: amd");
    let digest = open.manifest_digest("team/app:v1");
    assert_eq!(
        jsonpath(&env, "bytag", "{.status.containerStatuses[0].imageID}"),
        format!("{host}/team/app@{digest}")
    );
    let events = env.event_lines("bytag");
    assert!(
        events.contains(&format!("Pulling: Pulling image \"{by_tag}\"")),
        "{events}"
    );
    assert!(
        events.contains(&format!(
            "Pulled: Successfully pulled image \"{by_tag}\" in "
        )),
        "{events}"
    );

    let by_digest = format!("{host}/team/app@{digest}");
    env.apply(&pod_yaml("bydigest", &by_digest, "IfNotPresent", None));
    wait_running(&env, "bydigest");
    assert_eq!(
        jsonpath(&env, "bydigest", "{.status.containerStatuses[0].imageID}"),
        by_digest
    );

    env.apply(&pod_yaml(
        "multi",
        &format!("{host}/team/app:multi"),
        "Always",
        None,
    ));
    wait_running(&env, "multi");
    wait_log(&env, "multi", "marker: amd");

    // The pulled image is listed.
    let ls = env.m(&["image", "ls"]);
    assert!(ls.contains(&format!("{host}/team/app")), "{ls}");

    // --- auth: imagePullSecrets, then a wrong password ---
    let ahost = auth.host();
    let private = format!("{ahost}/private/app:v1");
    env.k(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={ahost}"),
        "--docker-username=alice",
        "--docker-password=s3cret",
    ]);
    env.k(&[
        "create",
        "secret",
        "docker-registry",
        "badcred",
        &format!("--docker-server={ahost}"),
        "--docker-username=alice",
        "--docker-password=wrong",
    ]);
    env.apply(&pod_yaml("private", &private, "Always", Some("regcred")));
    wait_running(&env, "private");
    wait_log(&env, "private", "marker: private-image");

    env.apply(&pod_yaml("denied", &private, "Always", Some("badcred")));
    let mut saw_err = false;
    wait_for("ImagePullBackOff", Duration::from_secs(60), || {
        let (reason, msg) = waiting_reason(&env, "denied");
        saw_err |= reason == "ErrImagePull";
        if reason == "ImagePullBackOff" && msg.contains("401 Unauthorized") {
            Ok(())
        } else {
            Err(format!("{reason}: {msg}"))
        }
    });
    let (_, msg) = waiting_reason(&env, "denied");
    assert!(msg.contains("check the username and password"), "{msg}");
    let events = env.event_lines("denied");
    assert!(events.contains("Failed: Failed to pull image"), "{events}");
    assert!(events.contains("Failed: Error: ErrImagePull"), "{events}");
    assert!(
        events.contains("BackOff: Back-off pulling image"),
        "{events}"
    );
    let _ = saw_err;

    // --- attach stdin: `kubectl run -i --rm` feeds the container's stdin ---
    let mut child = Command::new("kubectl")
        .args([
            "run",
            "-i",
            "--rm",
            "catter",
            "--image=minik/busybox",
            "--restart=Never",
            "--",
            "sh",
            "-c",
            "read line; echo got:$line; read more; echo then:$more",
        ])
        .env("HOME", env.dir.join("home"))
        .env("KUBECONFIG", env.kubeconfig())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello attach\nsecond line\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let so = text(&out.stdout);
    assert!(
        out.status.success() && so.contains("got:hello attach") && so.contains("then:second line"),
        "kubectl run -i: {so}{}",
        text(&out.stderr)
    );

    env.k(&["delete", "pod", "--all", "--wait=false"]);
    env.m(&["delete"]);
    drop(open);
    drop(auth);
}
