//! The seeds' hello world on the libvirt driver (cargo feature `libvirt`):
//! `minik start -p second --driver=libvirt`, node Ready, a minik/hello
//! Deployment behind a NodePort reached at the VM's own address, delete.
//! Run by scripts/test.sh with `--features libvirt`; starts virtlogd and
//! libvirtd when they are not running and ends them (by pid) afterwards.
#![cfg(feature = "libvirt")]

mod common;

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{curl, text, wait_for, Env};

/// The daemons this test started; ended by pid when dropped.
struct Daemons(Vec<Child>);

impl Daemons {
    fn ensure() -> Daemons {
        let mut started = Vec::new();
        for (bin, sock) in [
            ("virtlogd", "/run/libvirt/virtlogd-sock"),
            ("libvirtd", "/run/libvirt/libvirt-sock"),
        ] {
            if UnixStream::connect(sock).is_ok() {
                continue;
            }
            let child = Command::new(bin)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {bin} ({e}): apt-get install libvirt-daemon-system; run as root"));
            started.push(child);
            let t = Instant::now();
            while UnixStream::connect(sock).is_err() {
                assert!(
                    t.elapsed() < Duration::from_secs(20),
                    "{bin} did not open {sock}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Daemons(started)
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for c in self.0.iter_mut().rev() {
            // SAFETY: kill(2) has no memory preconditions; the pid is our unreaped child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let t = Instant::now();
            while c.try_wait().ok().flatten().is_none() && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn hello_world_on_libvirt() {
    let _daemons = Daemons::ensure();
    let env = Env::new("libvirt");
    let iso = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("iso/out/minik-{}.iso", env!("CARGO_PKG_VERSION")));
    assert!(iso.exists(), "build the ISO first: iso/build.sh");
    let iso_url = format!("file://{}", iso.display());

    let out = env.minik(&[
        "start",
        "-p",
        "second",
        "--driver=libvirt",
        "--accel=tcg",
        "--iso-url",
        &iso_url,
    ]);
    assert!(
        out.status.success(),
        "minik start failed:\n{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("Creating libvirt VM"),
        "{}",
        text(&out.stderr)
    );
    let ip = env.m(&["ip", "-p", "second"]).trim().to_string();
    assert!(ip.starts_with("192.168.39."), "{ip}");
    let nodes = env.k(&["get", "nodes"]);
    assert!(
        nodes.contains("second") && nodes.contains("Ready"),
        "{nodes}"
    );

    env.k(&[
        "create",
        "deployment",
        "hw",
        "--image=minik/hello",
        "--port=80",
    ]);
    env.k(&["expose", "deployment", "hw", "--type=NodePort", "--port=80"]);
    let url = env
        .m(&["service", "hw", "--url", "-p", "second"])
        .trim()
        .to_string();
    assert!(url.starts_with(&format!("http://{ip}:3")), "{url}");
    let page = wait_for(
        "the hello page at the VM's address",
        Duration::from_secs(120),
        || curl(&url),
    );
    assert!(page.contains("Hello from minik"), "{page}");
    assert!(env
        .m(&["ssh", "-p", "second", "--", "cat", "/proc/uptime"])
        .contains('.'));

    env.m(&["delete", "-p", "second"]);
    assert!(!env.dir.join("minik/profiles/second").exists());
    // The VM's address is routed elsewhere once its network is gone, and
    // something there may answer: what matters is that our page is gone.
    wait_for(
        "the VM to stop serving after delete",
        Duration::from_secs(30),
        || match curl(&url) {
            Ok(page) if page.contains("Hello from minik") => Err(page),
            _ => Ok(()),
        },
    );
    let domains = Command::new("virsh")
        .args(["-c", "qemu:///system", "list", "--all", "--name"])
        .output()
        .unwrap();
    assert!(
        !text(&domains.stdout).lines().any(|l| l.trim() == "second"),
        "the domain is still defined"
    );
}
