//! The seeds' hello world through the VM (qemu driver, software emulation as
//! in CI): start from the ISO, node Ready, a minik/hello Deployment behind a
//! NodePort reached with `minik service --url` (a QMP forward), stop, start,
//! served again, delete leaves nothing behind. On the same VM, the newer
//! capabilities: a class-less claim bound by the default addons and its data
//! kept across stop/start (hostPath on the VM's data disk), `kubectl exec`
//! and `kubectl cp` into a pod, `kubectl top` through the metrics-server
//! addon (cgroup v2 + crun in the VM), a skopeo push to the registry addon
//! through the forward of the guest's port 5000 and a pod pulling it, and
//! the ingress addon reached from this host through the QMP forwards of the
//! guest's ports 80/443 (again after a restart, on another port when 80 is
//! taken here). The slow VM tests live here, in one place, sharing one VM.

mod common;
#[path = "registry_support/mod.rs"]
mod registry_support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{curl, text, wait_for, Env};
use registry_support::build_image;

/// The ISO built from this tree (`iso/build.sh`), built now if missing.
fn iso() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let iso = root.join(format!("iso/out/minik-{}.iso", env!("CARGO_PKG_VERSION")));
    if !iso.exists() {
        let st = Command::new(root.join("iso/build.sh"))
            .status()
            .expect("iso/build.sh");
        assert!(st.success(), "iso/build.sh failed");
    }
    iso
}

fn qemu_processes_for(dir: &str) -> usize {
    let out = Command::new("pgrep")
        .args(["-f", dir])
        .output()
        .expect("pgrep");
    text(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

fn apply(env: &Env, manifest: &str) {
    let out = env.kubectl_stdin(&["apply", "-f", "-"], manifest);
    assert!(
        out.status.success(),
        "kubectl apply failed: {}{}\n{manifest}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A pod that runs `script` once with claim `data` at /data.
fn data_pod(name: &str, script: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
    - name: c
      image: minik/busybox
      command: ["sh", "-c", "{script}"]
      volumeMounts:
        - name: data
          mountPath: /data
  volumes:
    - name: data
      persistentVolumeClaim:
        claimName: data
"#
    )
}

/// Waits until pod `name` Succeeded; its log.
fn pod_log(env: &Env, name: &str) -> String {
    wait_for(
        &format!("pod {name} Succeeded"),
        Duration::from_secs(120),
        || {
            let phase = env.k(&["get", "pod", name, "-o", "jsonpath={.status.phase}"]);
            match phase.as_str() {
                "Succeeded" => Ok(env.k(&["logs", name])),
                "Failed" => panic!("pod {name} failed: {}", env.k(&["describe", "pod", name])),
                _ => Err(phase),
            }
        },
    )
}

/// The URL after "Ingress is reachable at " in `minik` output.
fn ingress_url(out: &str) -> String {
    let rest = out
        .split("Ingress is reachable at ")
        .nth(1)
        .unwrap_or_else(|| panic!("no \"Ingress is reachable at\" in:\n{out}"));
    rest.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// GET `url` with a Host header, the body (curl fails on HTTP errors).
fn curl_host(url: &str, host: &str) -> Result<String, String> {
    let out = Command::new("curl")
        .args([
            "-sSf",
            "--max-time",
            "5",
            "-H",
            &format!("Host: {host}"),
            url,
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

const INGRESS: &str = r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: hw
spec:
  rules:
    - host: hw.minik.test
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: hw
                port:
                  number: 80
"#;

#[test]
fn hello_world_in_a_vm() {
    let env = Env::new("vm");
    let iso_url = format!("file://{}", iso().display());

    let cold = Instant::now();
    let out = env.minik(&[
        "start",
        "--driver=qemu",
        "--accel=tcg",
        "--iso-url",
        &iso_url,
        "--memory=2048",
        "--cpus=2",
    ]);
    assert!(
        out.status.success(),
        "minik start failed:\n{}",
        text(&out.stderr)
    );
    let err = text(&out.stderr);
    assert!(err.contains("Creating qemu VM"), "{err}");
    assert!(
        err.contains("kubectl is now configured to use \"minik\""),
        "{err}"
    );

    eprintln!(
        "TIMING cold start to Ready: {:.1}s",
        cold.elapsed().as_secs_f64()
    );
    let nodes = env.k(&["get", "nodes"]);
    assert!(
        nodes.contains("minik") && nodes.contains("Ready") && nodes.contains("v1.33."),
        "{nodes}"
    );
    let status = env.minik(&["status"]);
    assert!(status.status.success(), "{}", text(&status.stdout));
    assert_eq!(env.m(&["ip"]).trim(), "10.0.2.15");
    assert!(env
        .m(&["ssh", "--", "cat", "/proc/uptime"])
        .trim()
        .contains('.'));

    env.k(&[
        "create",
        "deployment",
        "hw",
        "--image=minik/hello",
        "--port=80",
    ]);
    env.k(&["expose", "deployment", "hw", "--type=NodePort", "--port=80"]);
    wait_for("hw Running in the VM", Duration::from_secs(120), || {
        let s = env.k(&["get", "pods", "-l", "app=hw", "--no-headers"]);
        if s.contains("Running") && s.contains("1/1") {
            Ok(())
        } else {
            Err(s)
        }
    });
    let url = env.m(&["service", "hw", "--url"]).trim().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let page = wait_for(
        "the hello page through the VM",
        Duration::from_secs(60),
        || curl(&url),
    );
    assert!(page.contains("Hello from minik"), "{page}");

    // The dashboard addon in the VM, reached through a QMP forward.
    let dash = env.m(&["dashboard", "--url"]).trim().to_string();
    assert!(dash.starts_with("http://127.0.0.1:"), "{dash}");
    let html = wait_for("the dashboard page", Duration::from_secs(60), || {
        curl(&dash)
    });
    assert!(html.contains("minik"), "{html}");

    // DNS inside the VM's cluster.
    env.k(&[
        "run",
        "probe",
        "--image=minik/busybox",
        "--restart=Never",
        "--",
        "nslookup",
        "hw.default.svc.cluster.local",
    ]);
    let log = wait_for("nslookup in the VM", Duration::from_secs(90), || {
        let phase = env.k(&["get", "pod", "probe", "-o", "jsonpath={.status.phase}"]);
        if phase == "Succeeded" {
            Ok(env.k(&["logs", "probe"]))
        } else {
            Err(phase)
        }
    });
    assert!(log.contains("hw.default.svc.cluster.local"), "{log}");

    // kubectl exec and cp (crun exec joins the container's mount namespace:
    // the VM's root must be a mount over the initramfs root, see iso/rootfs/init).
    let pod = env.k(&[
        "get",
        "pods",
        "-l",
        "app=hw",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    let inside = env.k(&[
        "exec",
        &pod,
        "--",
        "sh",
        "-c",
        "hostname; cat /proc/self/comm",
    ]);
    assert_eq!(
        inside.split_whitespace().collect::<Vec<_>>(),
        [pod.as_str(), "cat"],
        "{inside}"
    );
    let local = env.dir.join("to-the-pod.txt");
    std::fs::write(&local, "copied-into-the-vm\n").unwrap();
    env.k(&[
        "cp",
        &local.display().to_string(),
        &format!("{pod}:/tmp/copied.txt"),
    ]);
    let back = env.dir.join("from-the-pod.txt");
    env.k(&[
        "cp",
        &format!("{pod}:/tmp/copied.txt"),
        &back.display().to_string(),
    ]);
    assert_eq!(
        std::fs::read_to_string(&back).unwrap_or_default(),
        "copied-into-the-vm\n"
    );

    // Storage: the default addons (storage-provisioner, default-storageclass)
    // bind a claim that names no class; a pod writes to it.
    let t = Instant::now();
    apply(
        &env,
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 10Mi\n",
    );
    wait_for("claim data Bound", Duration::from_secs(120), || {
        let phase = env.k(&["get", "pvc", "data", "-o", "jsonpath={.status.phase}"]);
        if phase == "Bound" {
            Ok(())
        } else {
            Err(format!(
                "{phase:?}\n{}",
                env.k(&["describe", "pvc", "data"])
            ))
        }
    });
    eprintln!("TIMING PVC Bound: {:.1}s", t.elapsed().as_secs_f64());
    let class = env.k(&[
        "get",
        "pvc",
        "data",
        "-o",
        "jsonpath={.spec.storageClassName}",
    ]);
    assert_eq!(class, "standard");
    apply(
        &env,
        &data_pod(
            "writer",
            "echo written-in-the-vm > /data/file && cat /data/file",
        ),
    );
    assert!(pod_log(&env, "writer").contains("written-in-the-vm"));
    let pv = env.k(&["get", "pvc", "data", "-o", "jsonpath={.spec.volumeName}"]);
    let pv_path = env.k(&["get", "pv", &pv, "-o", "jsonpath={.spec.hostPath.path}"]);
    assert!(pv_path.starts_with("/var/lib/minik/volumes/"), "{pv_path}");
    let on_node = env.m(&["ssh", "--", "cat", &format!("{pv_path}/file")]);
    assert_eq!(on_node.trim(), "written-in-the-vm");

    // Three addons at once (their pods start together): metrics-server,
    // registry (port 5000 forwarded to this host), ingress (ports 80/443).
    let t = Instant::now();
    let out = env.minik(&["addons", "enable", "metrics-server"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = env.minik(&["addons", "enable", "registry"]);
    let reg_err = text(&out.stderr);
    assert!(out.status.success(), "{reg_err}");
    let reg = reg_err
        .split("Registry is reachable at ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no \"Registry is reachable at\" in:\n{reg_err}"))
        .to_string();
    assert!(reg.starts_with("localhost:"), "{reg_err}");
    let t_ingress = Instant::now();
    let out = env.minik(&["addons", "enable", "ingress"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let url = ingress_url(&err);
    assert!(url.starts_with("http://127.0.0.1"), "{err}");
    assert!(err.contains("curl -H 'Host: host.example'"), "{err}");
    apply(&env, INGRESS);

    // metrics-server: kubectl top with figures read from the VM's cgroup v2.
    // The hello pod (busybox httpd) rounds to 0m/0Mi; the metrics-server's
    // own pod has real figures.
    let top = wait_for("kubectl top pods", Duration::from_secs(150), || {
        let out = env.kubectl(&["top", "pods", "-A", "--no-headers"]);
        let o = text(&out.stdout);
        let row = |prefix: &str| -> Option<(u64, u64)> {
            let f: Vec<&str> = o
                .lines()
                .find(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .is_some_and(|n| n.starts_with(prefix))
                })?
                .split_whitespace()
                .collect();
            let cpu = f.get(2)?.strip_suffix('m')?.parse().ok()?;
            let mem = f.get(3)?.strip_suffix("Mi")?.parse().ok()?;
            Some((cpu, mem))
        };
        match (row("hw-"), row("metrics-server-")) {
            (Some(_), Some((_, mem))) if out.status.success() && mem > 0 => Ok(o),
            _ => Err(format!("{o}{}", text(&out.stderr))),
        }
    });
    eprintln!(
        "TIMING kubectl top figures after {:.1}s:\n{top}",
        t.elapsed().as_secs_f64()
    );
    let nodes_top = env.k(&["top", "nodes", "--no-headers"]);
    assert!(nodes_top.starts_with("minik "), "{nodes_top}");

    // registry: skopeo pushes from this host through the forward; a pod in
    // the VM pulls localhost:5000/demo/app:v1.
    let layout = env.dir.join("oci");
    build_image(&layout, "v1", "pushed-into-the-vm");
    wait_for(
        "a push to the registry addon",
        Duration::from_secs(120),
        || {
            let out = Command::new("skopeo")
                .args(["copy", "--quiet", "--dest-tls-verify=false"])
                .arg(format!("oci:{}:v1", layout.display()))
                .arg(format!("docker://{reg}/demo/app:v1"))
                .output()
                .map_err(|e| e.to_string())?;
            if out.status.success() {
                Ok(())
            } else {
                Err(text(&out.stderr))
            }
        },
    );
    env.k(&[
        "run",
        "fromreg",
        "--image=localhost:5000/demo/app:v1",
        "--restart=Never",
    ]);
    wait_for(
        "the pod pulled from the registry",
        Duration::from_secs(90),
        || {
            let log = text(&env.kubectl(&["logs", "fromreg"]).stdout);
            if log.contains("marker: pushed-into-the-vm") {
                Ok(())
            } else {
                Err(env.k(&["get", "pod", "fromreg", "-o", "jsonpath={.status}"]))
            }
        },
    );

    // ingress: the controller on the guest's ports 80/443, forwarded to this
    // host; an Ingress routes a host name to the hello Service.
    let t = t_ingress;
    let page = wait_for("hw through the ingress", Duration::from_secs(120), || {
        curl_host(&url, "hw.minik.test")
    });
    assert!(page.contains("Hello from minik"), "{page}");
    eprintln!(
        "TIMING ingress reachable at {url} after {:.1}s",
        t.elapsed().as_secs_f64()
    );
    assert!(
        curl_host(&url, "other.minik.test").is_err(),
        "a host with no rule was served"
    );

    // stop / start: same cluster, the app serves again.
    env.m(&["stop"]);
    let st = env.minik(&["status"]);
    assert_eq!(st.status.code(), Some(7), "{}", text(&st.stdout));
    // Take port 80 here if the ingress had it: the restart must forward
    // another port and say why.
    let holder = if url == "http://127.0.0.1" {
        Some(TcpListener::bind("127.0.0.1:80").expect("port 80 free after stop"))
    } else {
        None
    };
    let warm = Instant::now();
    let out = env.minik(&["start"]);
    assert!(
        out.status.success(),
        "restart failed:\n{}",
        text(&out.stderr)
    );
    eprintln!(
        "TIMING warm start to Ready (+ addons): {:.1}s",
        warm.elapsed().as_secs_f64()
    );
    let err = text(&out.stderr);
    let url = ingress_url(&err);
    if holder.is_some() {
        assert!(err.contains("port 80 is taken on this host"), "{err}");
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    }
    let page = wait_for(
        "hw through the ingress after restart",
        Duration::from_secs(120),
        || curl_host(&url, "hw.minik.test"),
    );
    assert!(page.contains("Hello from minik"), "{page}");
    drop(holder);
    // The claim's data is on the VM's disk.
    apply(&env, &data_pod("reader", "cat /data/file"));
    assert!(pod_log(&env, "reader").contains("written-in-the-vm"));

    // Disabling the ingress addon drops the forwards: nothing listens on
    // the host port any more (a forward would accept the connection).
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(80);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    env.m(&["addons", "disable", "ingress"]);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "127.0.0.1:{port} still forwarded after `addons disable ingress`"
    );
    wait_for("hw Running after restart", Duration::from_secs(120), || {
        let s = env.k(&["get", "pods", "-l", "app=hw", "--no-headers"]);
        if s.contains("Running") && s.contains("1/1") {
            Ok(())
        } else {
            Err(s)
        }
    });
    let url = env.m(&["service", "hw", "--url"]).trim().to_string();
    let page = wait_for(
        "the hello page after restart",
        Duration::from_secs(60),
        || curl(&url),
    );
    assert!(page.contains("Hello from minik"), "{page}");

    // delete: no process, no forward, no context, no files.
    let profile_dir = env.dir.join("minik/profiles/minik");
    env.m(&["delete"]);
    assert_eq!(
        qemu_processes_for(&profile_dir.display().to_string()),
        0,
        "qemu still running"
    );
    assert!(curl(&url).is_err(), "the forward still answers");
    assert!(!profile_dir.exists());
    let kc = std::fs::read_to_string(env.kubeconfig()).unwrap_or_default();
    assert!(!kc.contains("name: minik"), "{kc}");
}

#[test]
fn bad_driver_and_missing_iso_are_clear_errors() {
    let env = Env::new("vm-errors");
    let out = env.minik(&["start", "--driver=virtualbox"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown driver"),
        "{}",
        text(&out.stderr)
    );
    let out = env.minik(&[
        "start",
        "--driver=qemu",
        "--accel=tcg",
        "--iso-url",
        "file:///nonexistent/minik.iso",
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("ISO"), "{err}");
    let _ = env.minik(&["delete"]);
}
