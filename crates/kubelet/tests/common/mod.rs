//! What the kubelet's integration tests share: a kubelet configuration of
//! its own (root directory, bridge, pod subnet) per test, torn down on drop,
//! and pod UIDs.
#![allow(dead_code)]

use minik_kubelet::sandbox::PodMeta;
use minik_kubelet::KubeletConfig;
use std::path::PathBuf;

pub struct Env {
    pub cfg: KubeletConfig,
}

impl Env {
    /// `tag` names the bridge and root directory; `subnet` picks
    /// `10.251.<subnet>.0/24` — both unique per test so tests never collide.
    pub fn new(tag: &str, subnet: u8) -> Env {
        let pid = std::process::id();
        let root = std::env::temp_dir().join(format!("minik-kubelet-it-{tag}-{pid}"));
        let _ = std::fs::remove_dir_all(&root);
        let mut cfg = KubeletConfig::with_defaults("minik-test", "127.0.0.1", &root);
        cfg.bridge = format!("mk{tag}{}", pid % 100000);
        cfg.pod_cidr = format!("10.251.{subnet}.0/24");
        cfg.runtime = PathBuf::from("runc");
        Env { cfg }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = minik_kubelet::teardown(&self.cfg);
        let _ = std::fs::remove_dir_all(&self.cfg.root_dir);
    }
}

/// A fresh pod UID (UUID-shaped, unique per call).
pub fn uid() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{:08x}-0000-4000-8000-{:012x}",
        (n as u32) ^ std::process::id(),
        n as u64 & 0xffff_ffff_ffff
    )
}

/// The sandbox metadata of a plain pod `default/<name>` on the pod network.
pub fn meta(uid: &str, name: &str) -> PodMeta {
    PodMeta {
        uid: uid.into(),
        namespace: "default".into(),
        name: name.into(),
        host_network: false,
        dns_policy: "ClusterFirst".into(),
        host_aliases: vec![],
        grace_seconds: 30,
        hostname: None,
        subdomain: None,
    }
}
