//! The libvirt driver against the real libvirtd (`qemu:///system`), booted
//! from the real ISO with a tiny payload instead of the agent (busybox
//! httpd on the agent's port 8443): the guest gets an address on minik-net
//! reserved before boot and answers there on 8443, SSH works at that
//! address, another driver instance finds the VM, stop powers the guest off
//! through ACPI, the data disk and the address survive a restart, a killed
//! QEMU is reported as died, delete removes the domain, the files and the
//! network (but keeps the network while another domain is on it).
//!
//! Run: `cargo test -p minik-vm --features libvirt --test libvirt` (as root:
//! virtlogd and libvirtd are started when not running, and ended again by
//! their pids at the end).
#![cfg(feature = "libvirt")]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use minik_vm::libvirt::{NETWORK, NETWORK_BRIDGE};
use minik_vm::{Accel, AgentPayload, LibvirtDriver, StopOutcome, VmError, VmSpec, VmState};

const SOCKETS: [(&str, &str); 2] = [
    ("virtlogd", "/run/libvirt/virtlogd-sock"),
    ("libvirtd", "/run/libvirt/libvirt-sock"),
];

/// The daemons this test started (none when they were running already);
/// ended by pid when dropped. Holds a lock: the tests run one at a time, so
/// one test never ends daemons another one uses.
struct Daemons(
    Vec<Child>,
    #[allow(dead_code)] std::sync::MutexGuard<'static, ()>,
);

impl Daemons {
    fn ensure() -> Daemons {
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let lock = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let mut started = Vec::new();
        for (bin, sock) in SOCKETS {
            if UnixStream::connect(sock).is_ok() {
                continue;
            }
            let child = Command::new(bin)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start {bin} ({e}); apt-get install libvirt-daemon-system, run as root")
                });
            eprintln!("started {bin} (pid {})", child.id());
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
        Daemons(started, lock)
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        // libvirtd first (it was started last)
        for c in self.0.iter_mut().rev() {
            eprintln!("ending pid {}", c.id());
            if let Ok(pid) = i32::try_from(c.id()) {
                // SAFETY: kill(2) has no memory-safety preconditions; the
                // pid is our own child, not yet reaped.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let t = Instant::now();
            while c.try_wait().ok().flatten().is_none() {
                if t.elapsed() > Duration::from_secs(10) {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Destroys and undefines the test's domains when dropped, so a failing
/// test leaves no VM behind; removes the profile directories.
struct Cleanup(Vec<(std::path::PathBuf, String)>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        // on a thread of its own: this runs inside the test's runtime
        let all = std::mem::take(&mut self.0);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            for (dir, name) in &all {
                let _ = rt.block_on(LibvirtDriver::new(dir, name).delete());
                let _ = std::fs::remove_dir_all(dir);
            }
        })
        .join();
    }
}

fn spec(iso: std::path::PathBuf, token: &str, accel: Accel) -> VmSpec {
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
    s.accel = accel;
    s.cpus = 1;
    s.memory_mb = 512;
    s.disk_mb = 512;
    s.boot_timeout = Duration::from_secs(120);
    s
}

fn http_get(ip: &str, port: u16) -> Option<String> {
    let addr = format!("{ip}:{port}").parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.split_whitespace().nth(1).filter(|c| *c == "200")?;
    Some(body.to_string())
}

fn http_get_retry(ip: &str, port: u16, timeout: Duration) -> Option<String> {
    let t = Instant::now();
    loop {
        if let Some(b) = http_get(ip, port) {
            return Some(b);
        }
        if t.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn ssh_out(d: &LibvirtDriver, args: &[&str]) -> String {
    let out = d.ssh_command(args).unwrap().output().unwrap();
    assert!(
        out.status.success(),
        "ssh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn conn() -> virt::connect::Connect {
    virt::connect::Connect::open(Some("qemu:///system")).unwrap()
}

fn domain_exists(name: &str) -> bool {
    let mut c = conn();
    let found = virt::domain::Domain::lookup_by_name(&c, name).is_ok();
    c.close().unwrap();
    found
}

fn network_xml() -> String {
    let mut c = conn();
    let xml = virt::network::Network::lookup_by_name(&c, NETWORK)
        .unwrap()
        .get_xml_desc(0)
        .unwrap();
    c.close().unwrap();
    xml
}

fn network_exists() -> bool {
    let mut c = conn();
    let found = virt::network::Network::lookup_by_name(&c, NETWORK).is_ok();
    c.close().unwrap();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_address_ssh_stop_restart_delete() {
    let _daemons = Daemons::ensure();
    let iso = common::iso();
    let dir = common::profile("lv");
    let name = format!("minik-test-{}", std::process::id());
    let other = format!("minik-test-other-{}", std::process::id());
    let _cleanup = Cleanup(vec![(dir.clone(), name.clone())]);
    let d = LibvirtDriver::new(&dir, &name);
    assert_eq!(d.status().await.unwrap(), VmState::NotCreated);
    let token = format!("minik-token-{}", std::process::id());

    // the address is known before the VM exists (for the API server cert)
    let reserved = d.reserve_address().await.unwrap();
    assert!(reserved.starts_with("192.168.39."), "{reserved}");
    assert_eq!(d.reserve_address().await.unwrap(), reserved);
    assert!(network_xml().contains(&format!("ip='{reserved}'")));

    // boot (auto: KVM if it starts a guest here, else TCG)
    let t0 = Instant::now();
    let info = d
        .start(&spec(iso.clone(), &token, Accel::Auto))
        .await
        .unwrap();
    eprintln!(
        "first start (auto, fresh 512 MB disk) to ready + lease in {:.1} s: {info:?}",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(info.guest_ip, reserved, "{info:?}");
    assert_eq!(info.host_ip, info.guest_ip);
    assert_eq!((info.api_port, info.ssh_port), (8443, 22));
    assert!(info.pid > 0);
    assert_eq!(d.status().await.unwrap(), VmState::Running);
    assert!(domain_exists(&name) && network_exists());
    let ip = info.guest_ip.clone();
    assert!(matches!(
        d.start(&spec(iso.clone(), &token, Accel::Tcg)).await,
        Err(VmError::AlreadyRunning { .. })
    ));

    // the payload answers at the VM's own address
    let body = http_get_retry(&ip, 8443, Duration::from_secs(30));
    assert_eq!(
        body.as_deref().map(str::trim),
        Some(token.as_str()),
        "console:\n{}",
        d.console_tail(30)
    );

    // SSH at the VM's address: kernel, data disk, both virtio disks by serial
    let out = ssh_out(
        &d,
        &["uname -r; mount; cat /sys/block/vd*/serial; ip -4 addr show eth0"],
    );
    assert!(out.contains("cloud-amd64"), "{out}");
    assert!(out.contains("on /var/lib/minik type ext4"), "{out}");
    assert!(
        out.contains("minik-data") && out.contains("minik-agent"),
        "{out}"
    );
    assert!(out.contains(&format!("inet {ip}/24")), "{out}");
    ssh_out(&d, &["echo kept > /var/lib/minik/marker && sync"]);

    // another driver instance (a later minik process) finds the VM
    let d2 = LibvirtDriver::new(&dir, &name);
    let info2 = d2.info().unwrap().expect("running");
    assert_eq!(info2.guest_ip, ip);
    assert_eq!(info2.accel, info.accel);

    // stop: ACPI power button through virDomainShutdown
    let t = Instant::now();
    let outcome = d.stop(Duration::from_secs(60)).await.unwrap();
    eprintln!("stop: {outcome:?} in {:.1} s", t.elapsed().as_secs_f64());
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
    assert!(matches!(
        d.ssh_command(&["true"]),
        Err(VmError::NotRunning(_))
    ));
    assert_eq!(
        d.stop(Duration::from_secs(1)).await.unwrap(),
        StopOutcome::WasNotRunning
    );

    // start again (warm): same address, the data disk kept the file
    let t = Instant::now();
    let info = d
        .start(&spec(iso.clone(), &token, Accel::Auto))
        .await
        .unwrap();
    eprintln!(
        "warm start ({:?}) to ready + lease in {:.1} s",
        info.accel,
        t.elapsed().as_secs_f64()
    );
    assert_eq!(info.guest_ip, ip, "the fixed MAC keeps the lease");
    if info.accel == Accel::Tcg && kvm_present() {
        assert!(info.kvm_fallback.is_some(), "{info:?}");
    }
    assert_eq!(ssh_out(&d, &["cat /var/lib/minik/marker"]).trim(), "kept");
    let console = std::fs::read_to_string(d.console_log()).unwrap();
    assert!(!console.contains("formatting"), "{console}");
    assert!(std::fs::read_to_string(dir.join("console.prev.log"))
        .unwrap()
        .contains("reboot: Power down"));

    // QEMU killed from outside: reported as died
    let pid = i32::try_from(info.pid).unwrap();
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is the
    // QEMU libvirt started for this test's domain.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let mut st = d.status().await.unwrap();
    for _ in 0..100 {
        if st != VmState::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        st = d.status().await.unwrap();
    }
    assert!(matches!(st, VmState::Died { .. }), "{st:?}");

    // another domain on minik-net keeps the network through this delete
    let other_xml = format!(
        "<domain type='qemu'><name>{other}</name><memory unit='MiB'>64</memory>\
         <os><type arch='x86_64' machine='pc'>hvm</type></os>\
         <devices><interface type='network'><source network='{NETWORK}'/></interface></devices></domain>"
    );
    {
        let mut c = conn();
        virt::domain::Domain::define_xml(&c, &other_xml).unwrap();
        c.close().unwrap();
    }
    let r = d.delete().await;
    let net_kept = network_exists();
    {
        let mut c = conn();
        virt::domain::Domain::lookup_by_name(&c, &other)
            .unwrap()
            .undefine()
            .unwrap();
        c.close().unwrap();
    }
    r.unwrap();
    assert!(net_kept, "delete removed a network another domain is on");
    assert!(
        !network_xml().contains(&format!("ip='{reserved}'")),
        "the address reservation outlived delete"
    );
    assert_eq!(d.status().await.unwrap(), VmState::NotCreated);
    assert!(!domain_exists(&name));
    assert!(
        !dir.exists(),
        "left: {:?}",
        std::fs::read_dir(&dir).map(|r| r.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );

    // a delete with no domain left removes the network and its bridge
    let gone = common::profile("lv-gone");
    LibvirtDriver::new(&gone, &name).delete().await.unwrap();
    assert!(!network_exists());
    assert!(!Path::new(&format!("/sys/class/net/{NETWORK_BRIDGE}")).exists());
    assert!(!gone.exists());
}

/// A domain of the profile's name that minik did not make is not touched.
#[tokio::test]
async fn foreign_domain_is_left_alone() {
    let _daemons = Daemons::ensure();
    let dir = common::profile("lv-foreign");
    let name = format!("not-minik-{}", std::process::id());
    let xml = format!(
        "<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>\
         <os><type arch='x86_64' machine='pc'>hvm</type></os></domain>"
    );
    {
        let mut c = conn();
        virt::domain::Domain::define_xml(&c, &xml).unwrap();
        c.close().unwrap();
    }
    let d = LibvirtDriver::new(&dir, &name);
    let status = d.status().await;
    let deleted = d.delete().await;
    let still = domain_exists(&name);
    {
        let mut c = conn();
        virt::domain::Domain::lookup_by_name(&c, &name)
            .unwrap()
            .undefine()
            .unwrap();
        c.close().unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let err = status.unwrap_err();
    assert!(err.to_string().contains("not made by minik"), "{err}");
    assert!(deleted.is_err());
    assert!(still);
}

fn kvm_present() -> bool {
    minik_vm::qemu::kvm_usable().is_ok()
}
