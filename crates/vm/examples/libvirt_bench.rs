//! Times the libvirt driver (feature `libvirt`; libvirtd must be running):
//! `cargo run -p minik-vm --features libvirt --example libvirt_bench -- ISO [tcg|kvm|auto] [DISK_MB]`.
//! Boots a busybox httpd payload on a fresh profile: cold start (new data
//! disk, mkfs in the guest) → ready + DHCP lease, first HTTP answer at the
//! VM's address, ACPI stop, warm start, stop again; then deletes
//! everything it made (domain, files, network when unused).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use minik_vm::{AgentPayload, LibvirtDriver, VmSpec};

fn http_ok(ip: &str) -> bool {
    let Ok(addr) = format!("{ip}:8443").parse() else {
        return false;
    };
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let mut buf = Vec::new();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_ok()
        && s.read_to_end(&mut buf).is_ok()
        && buf.starts_with(b"HTTP/1.")
        && buf.get(8..13) == Some(b" 200 ")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let iso = args
        .first()
        .ok_or("usage: libvirt_bench ISO [accel] [disk MB]")?;
    let dir = std::env::temp_dir().join(format!("mkvm-lvbench-{}", std::process::id()));
    let d = LibvirtDriver::new(&dir, &format!("minik-bench-{}", std::process::id()));
    let mut p = AgentPayload::new([
        "/bin/busybox",
        "httpd",
        "-f",
        "-p",
        "8443",
        "-h",
        "/run/minik/agent/www",
    ]);
    p.add_bytes("www/index.html", "bench\n", 0o644)?;
    let mut spec = VmSpec::new(iso, p);
    spec.accel = args
        .get(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(minik_vm::Accel::Tcg);
    spec.disk_mb = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(20000);
    spec.memory_mb = 2048;
    let result = async {
        for round in ["cold", "warm"] {
            let t = Instant::now();
            let info = d.start(&spec).await?;
            let ready = t.elapsed().as_secs_f64();
            while !http_ok(&info.guest_ip) && t.elapsed() < Duration::from_secs(60) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            println!(
                "{round} start ({:?}, disk {} MB): ready + lease {ready:.2} s, http at {}:8443 {:.2} s",
                info.accel,
                spec.disk_mb,
                info.guest_ip,
                t.elapsed().as_secs_f64()
            );
            let t = Instant::now();
            let out = d.stop(Duration::from_secs(60)).await?;
            println!("stop: {out:?} {:.2} s", t.elapsed().as_secs_f64());
        }
        Ok::<(), Box<dyn std::error::Error>>(())
    }
    .await;
    d.delete().await?;
    result
}
