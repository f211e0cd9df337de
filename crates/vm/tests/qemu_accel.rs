//! `--accel auto` on this host: KVM when it works, else a fallback to TCG
//! that is reported (and remembered, so the second start does not probe
//! again); `--accel kvm` without a usable /dev/kvm is a clear error.

mod common;

use std::time::{Duration, Instant};

use minik_vm::qemu::{kvm_usable, KVM_PROBE};
use minik_vm::{Accel, AgentPayload, QemuDriver, VmError, VmSpec};

fn spec(iso: std::path::PathBuf, accel: Accel) -> VmSpec {
    let mut p = AgentPayload::new([
        "/bin/busybox",
        "httpd",
        "-f",
        "-p",
        "8443",
        "-h",
        "/run/minik/agent/www",
    ]);
    p.add_bytes("www/index.html", "accel\n", 0o644).unwrap();
    let mut s = VmSpec::new(iso, p);
    s.accel = accel;
    s.cpus = 1;
    s.memory_mb = 512;
    s.disk_mb = 256;
    s.boot_timeout = Duration::from_secs(90);
    s
}

#[tokio::test]
async fn auto_uses_kvm_or_falls_back_to_tcg() {
    let iso = common::iso();
    let dir = common::profile("accel");
    let _guard = common::VmGuard(dir.clone());
    let d = QemuDriver::new(&dir);
    if kvm_usable().is_err() {
        let err = d.start(&spec(iso.clone(), Accel::Kvm)).await.unwrap_err();
        assert!(matches!(err, VmError::KvmUnavailable { .. }), "{err}");
        let info = d.start(&spec(iso, Accel::Auto)).await.unwrap();
        assert_eq!((info.accel, info.kvm_fallback), (Accel::Tcg, None));
        d.delete().await.unwrap();
        return;
    }
    let info = d.start(&spec(iso.clone(), Accel::Auto)).await.unwrap();
    let body = common::http_get_retry(info.api_port, "/", Duration::from_secs(30));
    assert_eq!(body.as_deref(), Some("accel\n"));
    match info.accel {
        Accel::Kvm => assert_eq!(info.kvm_fallback, None),
        _ => {
            let why = info.kvm_fallback.clone().expect("a TCG fallback says why");
            assert!(why.contains("KVM"), "{why}");
            d.stop(Duration::from_secs(60)).await.unwrap();
            // second start: no probe, still reported
            let t = Instant::now();
            let info = d.start(&spec(iso, Accel::Auto)).await.unwrap();
            assert_eq!(info.accel, Accel::Tcg);
            assert!(info.kvm_fallback.is_some());
            eprintln!(
                "second start {:.1} s (probe would add {} s)",
                t.elapsed().as_secs_f64(),
                KVM_PROBE.as_secs()
            );
            // the boot before this one was the TCG one, not a KVM attempt
            let prev = std::fs::read_to_string(dir.join("console.prev.log")).unwrap();
            assert!(prev.contains("reboot: Power down"), "{prev}");
        }
    }
    d.delete().await.unwrap();
    assert!(!dir.exists());
}
