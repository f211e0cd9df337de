//! Node registration and heartbeats: owns the `Node` object named
//! `node_name` (labels, status: capacity, addresses, nodeInfo, conditions,
//! daemonEndpoints) and its `Lease` in `kube-node-lease`. Everything goes
//! through the API client; host facts come from /proc and uname.

use crate::KubeletConfig;
use chrono::Utc;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

pub const KUBELET_VERSION: &str = "v1.33.2";
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
pub const LEASE_DURATION_SECONDS: i32 = 40;
pub const HEARTBEAT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("registering node {node}: {source}")]
    Register { node: String, source: kube::Error },
    #[error("updating node {node} status: {source}")]
    Status { node: String, source: kube::Error },
    #[error("renewing lease {node} in kube-node-lease: {source}")]
    Lease { node: String, source: kube::Error },
}

/// Host facts reported in the node status. Gathered once.
#[derive(Debug, Clone, PartialEq)]
pub struct HostInfo {
    pub cpus: usize,
    pub memory_kib: u64,
    pub ephemeral_kib: u64,
    pub kernel: String,
    pub os_image: String,
    pub boot_id: String,
    pub machine_id: String,
    pub runtime_version: String,
}

/// `MemTotal:  16384 kB` → 16384.
pub fn parse_meminfo_total(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"` → the quoted value.
pub fn parse_os_release(s: &str) -> Option<String> {
    s.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
}

impl HostInfo {
    pub fn gather(cfg: &KubeletConfig, runtime_version: String) -> Self {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let memory_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| parse_meminfo_total(&m))
            .unwrap_or(0);
        let probe = if cfg.root_dir.exists() {
            cfg.root_dir.clone()
        } else {
            std::path::PathBuf::from("/")
        };
        let ephemeral_kib = nix::sys::statvfs::statvfs(&probe)
            .map(|s| s.blocks() * s.fragment_size() / 1024)
            .unwrap_or(0);
        let kernel = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let os_image = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|s| parse_os_release(&s))
            .unwrap_or_else(|| "Linux".into());
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        HostInfo {
            cpus,
            memory_kib,
            ephemeral_kib,
            kernel,
            os_image,
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            machine_id: read("/etc/machine-id"),
            runtime_version,
        }
    }
}

pub fn node_labels(node_name: &str) -> BTreeMap<String, String> {
    [
        ("kubernetes.io/hostname", node_name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", "amd64"),
        ("node-role.kubernetes.io/control-plane", ""),
        (
            "node.kubernetes.io/exclude-from-external-load-balancers",
            "",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The `status` object the kubelet posts. Pure given its inputs.
pub fn node_status(
    cfg: &KubeletConfig,
    host: &HostInfo,
    now: &str,
    ready_since: &str,
    started_since: &str,
) -> Value {
    let cap = json!({
        "cpu": host.cpus.to_string(),
        "memory": format!("{}Ki", host.memory_kib),
        "pods": "110",
        "ephemeral-storage": format!("{}Ki", host.ephemeral_kib),
        "hugepages-2Mi": "0",
        "hugepages-1Gi": "0",
    });
    let cond = |t: &str, status: &str, reason: &str, msg: &str, since: &str| {
        json!({"type": t, "status": status, "reason": reason, "message": msg,
               "lastHeartbeatTime": now, "lastTransitionTime": since})
    };
    json!({
        "capacity": cap,
        "allocatable": cap,
        "addresses": [
            {"type": "InternalIP", "address": cfg.node_ip},
            {"type": "Hostname", "address": cfg.node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": cfg.port}},
        "nodeInfo": {
            "machineID": host.machine_id,
            "systemUUID": host.machine_id,
            "bootID": host.boot_id,
            "kernelVersion": host.kernel,
            "osImage": host.os_image,
            "containerRuntimeVersion": host.runtime_version,
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available", started_since),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure", started_since),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available", started_since),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status", ready_since),
        ],
        "phase": "Running",
    })
}

fn rfc3339(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Creates the Node if missing (labels merged in if present); returns its UID.
pub async fn register(client: &Client, cfg: &KubeletConfig) -> Result<String, NodeError> {
    let api: Api<Node> = Api::all(client.clone());
    let err = |source| NodeError::Register {
        node: cfg.node_name.clone(),
        source,
    };
    let node = Node {
        metadata: ObjectMeta {
            name: Some(cfg.node_name.clone()),
            labels: Some(node_labels(&cfg.node_name)),
            annotations: Some(
                [("node.alpha.kubernetes.io/ttl".to_string(), "0".to_string())]
                    .into_iter()
                    .collect(),
            ),
            ..Default::default()
        },
        spec: Some(k8s_openapi::api::core::v1::NodeSpec {
            pod_cidr: Some(cfg.pod_cidr.clone()),
            pod_cidrs: Some(vec![cfg.pod_cidr.clone()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = match api.create(&PostParams::default(), &node).await {
        Ok(n) => n,
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let patch = json!({"metadata": {"labels": node_labels(&cfg.node_name)}});
            api.patch(
                &cfg.node_name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(err)?
        }
        Err(e) => return Err(err(e)),
    };
    Ok(created.metadata.uid.unwrap_or_default())
}

/// Posts the node status (Ready=True).
pub async fn post_status(
    client: &Client,
    cfg: &KubeletConfig,
    host: &HostInfo,
    ready_since: chrono::DateTime<Utc>,
) -> Result<(), NodeError> {
    let api: Api<Node> = Api::all(client.clone());
    let now = rfc3339(Utc::now());
    let since = rfc3339(ready_since);
    let status = node_status(cfg, host, &now, &since, &since);
    api.patch_status(
        &cfg.node_name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": status})),
    )
    .await
    .map_err(|source| NodeError::Status {
        node: cfg.node_name.clone(),
        source,
    })?;
    Ok(())
}

/// Creates or renews the node's Lease.
pub async fn renew_lease(
    client: &Client,
    cfg: &KubeletConfig,
    node_uid: &str,
) -> Result<(), NodeError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let err = |source| NodeError::Lease {
        node: cfg.node_name.clone(),
        source,
    };
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let spec = LeaseSpec {
        holder_identity: Some(cfg.node_name.clone()),
        lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
        renew_time: Some(now),
        ..Default::default()
    };
    match api.get_opt(&cfg.node_name).await.map_err(err)? {
        Some(mut lease) => {
            lease.spec = Some(spec);
            api.replace(&cfg.node_name, &PostParams::default(), &lease)
                .await
                .map_err(err)?;
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.node_name.clone()),
                    namespace: Some(LEASE_NAMESPACE.into()),
                    owner_references: (!node_uid.is_empty()).then(|| {
                        vec![OwnerReference {
                            api_version: "v1".into(),
                            kind: "Node".into(),
                            name: cfg.node_name.clone(),
                            uid: node_uid.to_string(),
                            ..Default::default()
                        }]
                    }),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    // The namespace does not exist yet: make it, then retry once.
                    let ns: Api<Namespace> = Api::all(client.clone());
                    let obj = Namespace {
                        metadata: ObjectMeta {
                            name: Some(LEASE_NAMESPACE.into()),
                            ..Default::default()
                        },
                        ..Default::default()
                    };
                    match ns.create(&PostParams::default(), &obj).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 409 => {}
                        Err(e) => return Err(err(e)),
                    }
                    api.create(&PostParams::default(), &lease)
                        .await
                        .map_err(err)?;
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(err(e)),
            }
        }
    }
    Ok(())
}

/// Registers, posts Ready, then keeps the lease and status fresh forever.
pub async fn run_heartbeats(client: Client, cfg: KubeletConfig, host: HostInfo) {
    let ready_since = Utc::now();
    let mut node_uid = String::new();
    let mut registered = false;
    let mut announced = false;
    let recorder = crate::events::Recorder::new(client.clone(), cfg.node_name.clone());
    let mut delay = Duration::from_millis(100);
    loop {
        if !registered {
            match register(&client, &cfg).await {
                Ok(uid) => {
                    node_uid = uid;
                    registered = true;
                }
                Err(e) => tracing::warn!("{e}"),
            }
        }
        if registered && !announced {
            announced = true;
            let node_ref = k8s_openapi::api::core::v1::ObjectReference {
                kind: Some("Node".into()),
                api_version: Some("v1".into()),
                name: Some(cfg.node_name.clone()),
                uid: Some(cfg.node_name.clone()),
                ..Default::default()
            };
            recorder.normal(node_ref.clone(), "Starting", "Starting kubelet.".into());
            recorder.normal(
                node_ref,
                "NodeReady",
                format!("Node {} status is now: NodeReady", cfg.node_name),
            );
        }
        if registered {
            let (s, l) = tokio::join!(
                post_status(&client, &cfg, &host, ready_since),
                renew_lease(&client, &cfg, &node_uid)
            );
            match (&s, &l) {
                (Ok(()), Ok(())) => delay = HEARTBEAT,
                _ => {
                    for e in [s.err(), l.err()].into_iter().flatten() {
                        tracing::warn!("{e}");
                        if let NodeError::Status {
                            source: kube::Error::Api(st),
                            ..
                        } = &e
                        {
                            if st.code == 404 {
                                registered = false;
                            }
                        }
                    }
                    delay = (delay * 2).clamp(Duration::from_millis(200), HEARTBEAT);
                }
            }
        } else {
            delay = (delay * 2).clamp(Duration::from_millis(200), Duration::from_secs(5));
        }
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        assert_eq!(
            parse_meminfo_total("MemTotal:       16316412 kB\nMemFree: 1 kB\n"),
            Some(16316412)
        );
        assert_eq!(parse_meminfo_total("nothing"), None);
        assert_eq!(
            parse_os_release("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }

    #[test]
    fn status_shape() {
        let cfg = KubeletConfig::for_tests("/tmp/x");
        let host = HostInfo {
            cpus: 2,
            memory_kib: 1000,
            ephemeral_kib: 5000,
            kernel: "6.1".into(),
            os_image: "Debian".into(),
            boot_id: "b".into(),
            machine_id: "m".into(),
            runtime_version: "runc://1.1.5".into(),
        };
        let s = node_status(
            &cfg,
            &host,
            "2026-11-23T01:00:10Z",
            "2026-11-23T01:00:00Z",
            "2026-11-23T01:00:00Z",
        );
        assert_eq!(s["capacity"]["cpu"], "2");
        assert_eq!(s["capacity"]["memory"], "1000Ki");
        assert_eq!(s["capacity"]["pods"], "110");
        assert_eq!(s["daemonEndpoints"]["kubeletEndpoint"]["Port"], cfg.port);
        assert_eq!(s["nodeInfo"]["kubeletVersion"], KUBELET_VERSION);
        assert_eq!(s["nodeInfo"]["containerRuntimeVersion"], "runc://1.1.5");
        let ready = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "True");
        assert_eq!(ready["reason"], "KubeletReady");
        assert_eq!(ready["message"], "kubelet is posting ready status");
        assert_eq!(s["addresses"][0]["type"], "InternalIP");
        assert_eq!(s["addresses"][0]["address"], cfg.node_ip);
        // Serializes into the typed NodeStatus.
        let typed: k8s_openapi::api::core::v1::NodeStatus = serde_json::from_value(s).unwrap();
        assert_eq!(
            typed
                .daemon_endpoints
                .unwrap()
                .kubelet_endpoint
                .unwrap()
                .port,
            cfg.port as i32
        );
        assert_eq!(node_labels("minik")["kubernetes.io/hostname"], "minik");
    }
}
