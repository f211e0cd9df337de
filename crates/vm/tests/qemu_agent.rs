//! The real minik agent in the VM: `AgentPayload::minik_agent` ships the
//! `minik` binary built from this workspace and fresh certificates; the API
//! server answers `/version` over TLS on the forwarded port, verified
//! against the test CA; stop is graceful. Uses $MINIK_AGENT_BIN, else
//! target/debug/minik; when neither exists (the agent is built by the root
//! crate, not this one) the test says so and does nothing.

mod common;

use std::time::Duration;

use minik_vm::{Accel, AgentPayload, QemuDriver, StopOutcome, VmSpec};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

fn write_certs(dir: &std::path::Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "minik-vm-test-ca");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    p.distinguished_name.push(DnType::CommonName, "minik");
    let cert = p.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("apiserver.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("apiserver.key"), key.serialize_pem()).unwrap();
    ca_cert.pem()
}

#[tokio::test]
async fn real_agent_serves_the_api_through_the_forward() {
    let bin = std::env::var("MINIK_AGENT_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| common::repo_root().join("target/debug/minik"));
    if !bin.is_file() {
        eprintln!(
            "SKIPPED: no agent binary at {} (build the root crate or set MINIK_AGENT_BIN)",
            bin.display()
        );
        return;
    }
    let iso = common::iso();
    let dir = common::profile("agent");
    let _guard = common::VmGuard(dir.clone());
    // a private copy: target/debug/minik may be rebuilt meanwhile
    let agent = dir.join("minik-agent");
    std::fs::copy(&bin, &agent).unwrap();
    let ca_pem = write_certs(&dir.join("certs"));

    let payload = AgentPayload::minik_agent(&agent, &dir.join("certs"), "minik").unwrap();
    let mut spec = VmSpec::new(iso, payload);
    spec.accel = Accel::Tcg;
    spec.disk_mb = 2048;
    let d = QemuDriver::new(&dir);
    let info = d.start(&spec).await.unwrap();

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{}/version", info.api_port);
    let mut body = None;
    for _ in 0..120 {
        if let Ok(r) = client.get(&url).send().await {
            if r.status().is_success() {
                body = r.text().await.ok();
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let body = body.unwrap_or_else(|| {
        panic!(
            "no /version from the agent; console:\n{}",
            d.console_tail(40)
        )
    });
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["gitVersion"].as_str().unwrap_or("").starts_with("v1."),
        "{body}"
    );

    // the agent runs from the payload with the node IP filled in
    let out = d
        .ssh_command(&["cat /proc/$(cat /run/minik/agent.pid)/cmdline | tr '\\0' ' '"])
        .unwrap()
        .output()
        .unwrap();
    let cmd = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        cmd.contains("node")
            && cmd.contains("--node-ip 10.0.2.15")
            && cmd.contains("--runtime crun"),
        "{cmd}"
    );

    assert_eq!(
        d.stop(Duration::from_secs(60)).await.unwrap(),
        StopOutcome::Graceful
    );
    assert!(std::fs::read_to_string(d.console_log())
        .unwrap()
        .contains("minik-init: stopping agent"));
    d.delete().await.unwrap();
}
