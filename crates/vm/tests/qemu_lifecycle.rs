//! The qemu driver against a real VM under TCG, booted from the real ISO
//! with a tiny payload instead of the agent (busybox httpd on the agent's
//! port 8443): the guest answers through the forwarded API port, a port
//! added through QMP hostfwd_add answers and stops answering after
//! unforward, SSH works, another driver instance finds the VM, stop powers
//! the guest off through ACPI, the data disk keeps files across stop/start,
//! a killed QEMU is reported as died, delete removes disk and state.

mod common;

use std::time::Duration;

use minik_vm::{Accel, AgentPayload, QemuDriver, StopOutcome, VmError, VmSpec, VmState};

fn spec(iso: std::path::PathBuf, token: &str) -> VmSpec {
    let mut p = AgentPayload::new([
        "/bin/busybox",
        "httpd",
        "-f",
        "-p",
        "8443",
        "-h",
        "/run/minik/agent/www",
    ]);
    p.add_bytes("www/index.html", format!("{token}\n"), 0o644)
        .unwrap();
    let mut s = VmSpec::new(iso, p);
    s.accel = Accel::Tcg;
    s.cpus = 1;
    s.memory_mb = 512;
    s.disk_mb = 512;
    s.boot_timeout = Duration::from_secs(90);
    s
}

fn ssh_out(d: &QemuDriver, args: &[&str]) -> String {
    let out = d.ssh_command(args).unwrap().output().unwrap();
    assert!(
        out.status.success(),
        "ssh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test]
async fn boot_forward_ssh_stop_restart_delete() {
    let iso = common::iso();
    let dir = common::profile("life");
    let _guard = common::VmGuard(dir.clone());
    let d = QemuDriver::new(&dir);
    assert_eq!(d.status().await.unwrap(), VmState::NotCreated);
    let token = format!("minik-token-{}", std::process::id());

    // boot
    let t0 = std::time::Instant::now();
    let info = d.start(&spec(iso.clone(), &token)).await.unwrap();
    eprintln!(
        "booted to ready in {:.1} s: {info:?}",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(info.accel, Accel::Tcg);
    assert_eq!(info.guest_ip, "10.0.2.15");
    assert_eq!(d.status().await.unwrap(), VmState::Running);
    use std::os::unix::fs::PermissionsExt;
    for f in ["disk.qcow2", "agent.img"] {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    assert!(matches!(
        d.start(&spec(iso.clone(), &token)).await,
        Err(VmError::AlreadyRunning { .. })
    ));

    // the payload answers on the forwarded API port
    let body = common::http_get_retry(info.api_port, "/", Duration::from_secs(30));
    assert_eq!(
        body.as_deref().map(str::trim),
        Some(token.as_str()),
        "console:\n{}",
        d.console_tail(30)
    );

    // SSH: kernel, data disk, cgroup2, tools the agent needs
    let out = ssh_out(
        &d,
        &["uname -r; mount; ip netns list; nft --version; crun --version; mkfs.ext4 -V 2>&1"],
    );
    assert!(out.contains("cloud-amd64"), "{out}");
    assert!(out.contains("on /var/lib/minik type ext4"), "{out}");
    assert!(out.contains("cgroup2 on /sys/fs/cgroup"), "{out}");
    assert!(out.contains("nftables v1"), "{out}");
    assert!(out.contains("crun version"), "{out}");
    ssh_out(&d, &["echo kept > /var/lib/minik/marker && sync"]);

    // a port forwarded on demand through QMP
    ssh_out(&d, &["busybox httpd -p 8080 -h /run/minik/agent/www"]);
    let host = d.forward(8080).await.unwrap();
    assert_eq!(
        d.forward(8080).await.unwrap(),
        host,
        "forward is idempotent"
    );
    let body = common::http_get_retry(host, "/", Duration::from_secs(10));
    assert_eq!(body.as_deref().map(str::trim), Some(token.as_str()));
    assert!(d.active_forwards().await.unwrap().contains(&(host, 8080)));

    // a chosen host port: works when free, PortInUse when taken
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let chosen = free.local_addr().unwrap().port();
    drop(free);
    ssh_out(&d, &["busybox httpd -p 8081 -h /run/minik/agent/www"]);
    assert_eq!(d.forward_on(8081, chosen).await.unwrap(), chosen);
    let body = common::http_get_retry(chosen, "/", Duration::from_secs(10));
    assert_eq!(body.as_deref().map(str::trim), Some(token.as_str()));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let err = d.forward_on(8082, taken_port).await.unwrap_err();
    assert!(
        matches!(err, VmError::PortInUse { port } if port == taken_port),
        "{err}"
    );
    d.unforward(8081).await.unwrap();

    // another driver (a later minik process) finds the same VM and forward
    let d2 = QemuDriver::new(&dir);
    let info2 = d2.info().unwrap().expect("running");
    assert_eq!(info2.api_port, info.api_port);
    assert_eq!(info2.forwards.get(&8080), Some(&host));
    d2.unforward(8080).await.unwrap();
    assert!(
        common::http_get(host, "/").is_none(),
        "forward still answers after unforward"
    );
    assert!(!d
        .active_forwards()
        .await
        .unwrap()
        .iter()
        .any(|(h, _)| *h == host));

    // stop: ACPI power button, the guest's shutdown sequence runs
    let outcome = d.stop(Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        outcome,
        StopOutcome::Graceful,
        "console:\n{}",
        d.console_tail(30)
    );
    assert_eq!(d.status().await.unwrap(), VmState::Stopped);
    let console = std::fs::read_to_string(d.console_log()).unwrap();
    assert!(console.contains("minik-init: stopping agent"), "{console}");
    assert!(console.contains("reboot: Power down"), "{console}");
    assert!(d.info().unwrap().is_none());
    assert!(matches!(d.forward(80).await, Err(VmError::NotRunning(_))));
    assert_eq!(
        d.stop(Duration::from_secs(1)).await.unwrap(),
        StopOutcome::WasNotRunning
    );

    // start again: the data disk kept the file, the disk was not reformatted
    let info = d.start(&spec(iso.clone(), &token)).await.unwrap();
    let out = ssh_out(&d, &["cat /var/lib/minik/marker"]);
    assert_eq!(out.trim(), "kept");
    let console = std::fs::read_to_string(d.console_log()).unwrap();
    assert!(!console.contains("formatting"), "{console}");

    // QEMU killed from outside: reported as died, with the console
    let pid = i32::try_from(info.pid).unwrap();
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let mut st = d.status().await.unwrap();
    for _ in 0..50 {
        if st != VmState::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        st = d.status().await.unwrap();
    }
    assert!(matches!(st, VmState::Died { .. }), "{st:?}");

    // delete: nothing of ours left
    d.delete().await.unwrap();
    assert_eq!(d.status().await.unwrap(), VmState::NotCreated);
    assert!(
        !dir.exists(),
        "left: {:?}",
        std::fs::read_dir(&dir).map(|r| r.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}/cmdline")).exists() || {
            let c = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            !String::from_utf8_lossy(&c).contains("qemu")
        }
    );
}

#[tokio::test]
async fn port_in_use_and_missing_qemu_are_clear_errors() {
    let iso = common::iso();
    let dir = common::profile("errs");
    let _guard = common::VmGuard(dir.clone());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut s = spec(iso.clone(), "x");
    s.api_port = Some(port);
    let err = QemuDriver::new(&dir).start(&s).await.unwrap_err();
    assert!(
        matches!(err, VmError::PortInUse { port: p } if p == port),
        "{err}"
    );
    assert!(err.to_string().contains(&port.to_string()));

    let err = QemuDriver::new(&dir)
        .with_binaries("qemu-system-x86_64-not-here", "qemu-img")
        .start(&spec(iso, "x"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("apt-get install qemu-system-x86"),
        "{err}"
    );
    QemuDriver::new(&dir).delete().await.unwrap();
    assert!(
        !dir.exists(),
        "left: {:?}",
        std::fs::read_dir(&dir).map(|r| r.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
}
