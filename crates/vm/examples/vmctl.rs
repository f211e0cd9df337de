//! Manual driver for one profile directory, for trying the qemu driver by
//! hand: `cargo run -p minik-vm --example vmctl -- DIR start ISO [tcg|kvm|auto]`,
//! `DIR status|info|stop|kill|delete`, `DIR forward PORT`, `DIR ssh CMD...`.
//! `start` boots a busybox httpd on the agent port as the payload;
//! `DIR agent ISO MINIK_BINARY CERTS_DIR [accel]` boots the real agent.

use std::time::Duration;

use minik_vm::{AgentPayload, QemuDriver, VmSpec};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dir), Some(cmd)) = (args.first(), args.get(1)) else {
        eprintln!("usage: vmctl DIR start ISO [accel] | status | info | stop | kill | delete | forward PORT | ssh CMD...");
        std::process::exit(2);
    };
    let d = QemuDriver::new(dir);
    match cmd.as_str() {
        "start" => {
            let iso = args.get(2).ok_or("start needs an ISO path")?;
            let mut p = AgentPayload::new([
                "/bin/busybox",
                "httpd",
                "-f",
                "-p",
                "8443",
                "-h",
                "/run/minik/agent/www",
            ]);
            p.add_bytes("www/index.html", "hello from minik-vm\n", 0o644)?;
            let mut spec = VmSpec::new(iso, p);
            spec.disk_mb = 1024;
            if let Some(a) = args.get(3) {
                spec.accel = a.parse()?;
            }
            let t = std::time::Instant::now();
            let info = d.start(&spec).await?;
            println!("{info:?}\nready after {:.1} s", t.elapsed().as_secs_f64());
        }
        "agent" => {
            // DIR agent ISO MINIK_BINARY CERTS_DIR [accel]: the real agent
            let (Some(iso), Some(bin), Some(certs)) = (args.get(2), args.get(3), args.get(4))
            else {
                return Err("agent needs ISO MINIK_BINARY CERTS_DIR".into());
            };
            let p = AgentPayload::minik_agent(bin.as_ref(), certs.as_ref(), "minik")?;
            let mut spec = VmSpec::new(iso, p);
            if let Some(a) = args.get(5) {
                spec.accel = a.parse()?;
            }
            let t = std::time::Instant::now();
            let info = d.start(&spec).await?;
            println!("{info:?}\nready after {:.1} s", t.elapsed().as_secs_f64());
        }
        "status" => println!("{:?}", d.status().await?),
        "info" => println!("{:?}", d.info()?),
        "stop" => println!("{:?}", d.stop(Duration::from_secs(60)).await?),
        "kill" => d.kill().await?,
        "delete" => d.delete().await?,
        "forward" => {
            let port: u16 = args.get(2).ok_or("forward needs a guest port")?.parse()?;
            println!("127.0.0.1:{}", d.forward(port).await?);
        }
        "ssh" => {
            let rest: Vec<&str> = args[2..].iter().map(String::as_str).collect();
            let st = d.ssh_command(&rest)?.status()?;
            std::process::exit(st.code().unwrap_or(1));
        }
        other => return Err(format!("unknown command {other}").into()),
    }
    Ok(())
}
