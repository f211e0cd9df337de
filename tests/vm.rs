//! The seeds' hello world through the VM (qemu driver, software emulation as
//! in CI): start from the ISO, node Ready, a minik/hello Deployment behind a
//! NodePort reached with `minik service --url` (a QMP forward), stop, start,
//! served again, delete leaves nothing behind. The slow VM tests live here,
//! in one place, sharing one VM.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{curl, text, wait_for, Env};

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

#[test]
fn hello_world_in_a_vm() {
    let env = Env::new("vm");
    let iso_url = format!("file://{}", iso().display());

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

    // stop / start: same cluster, the app serves again.
    env.m(&["stop"]);
    let st = env.minik(&["status"]);
    assert_eq!(st.status.code(), Some(7), "{}", text(&st.stdout));
    let out = env.minik(&["start"]);
    assert!(
        out.status.success(),
        "restart failed:\n{}",
        text(&out.stderr)
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
