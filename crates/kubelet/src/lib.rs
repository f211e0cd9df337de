//! minik-kubelet: the node agent's kubelet. Owns node registration and
//! heartbeats, the image store (`<root>/images`), pods as OCI containers run
//! by `runc`/`crun` (`<root>/pods`), the pod network (bridge, netns, veth,
//! IPs) and the kubelet HTTP endpoint (logs, exec). It is a pure API client: it
//! never touches the store or the apiserver crate, only a `kube::Client`.
//!
//! Modules, pure logic first:
//! - [`spec`]: command/args/env resolution and the OCI `config.json`.
//! - [`status`]: container records → PodStatus, back-off.
//! - [`images`]: image references, the image store, built-in images;
//!   [`archive`]: `minik image load` (docker save / OCI archives).
//! - [`network`]: pod CIDR, IP allocation, bridge/netns/veth plumbing.
//! - [`runtime`]: the OCI runtime CLI, overlay mounts, exit watching, log pipes.
//! - [`sandbox`]: per-pod machinery combining the above (no API).
//! - [`volumes`]: emptyDir, hostPath, configMap, secret, downwardAPI, projected.
//! - [`pods`]: the watch + per-pod workers (API side); [`probes`]: their probes.
//! - [`node`], [`events`]: Node/Lease, Events.
//! - [`logs`], [`exec`], [`attach`], [`portforward`] (over [`spdy`]): the
//!   kubelet HTTP API (logs, exec, attach, port-forward); [`http_router`] joins them.

pub mod archive;
pub mod attach;
pub mod events;
pub mod exec;
pub mod image_http;
pub mod images;
pub mod logs;
pub mod network;
pub mod node;
pub mod pods;
pub mod portforward;
pub mod probes;
pub mod registry;
pub mod runtime;
pub mod sandbox;
pub mod spdy;
pub mod spec;
pub mod stats;
pub mod status;
pub mod volumes;

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How the kubelet is set up (the lead fills it from the profile).
#[derive(Debug, Clone, PartialEq)]
pub struct KubeletConfig {
    pub node_name: String,
    /// The node's InternalIP.
    pub node_ip: String,
    /// `<root>`; the kubelet owns `<root>/images` and `<root>/pods`.
    pub root_dir: PathBuf,
    /// `10.244.0.0/16`
    pub pod_cidr: String,
    /// `minik0`, gets the CIDR's first address (10.244.0.1/16).
    pub bridge: String,
    /// `10.96.0.10`
    pub cluster_dns: String,
    /// `cluster.local`
    pub cluster_domain: String,
    /// `runc` on this host, `crun` in the VM.
    pub runtime: PathBuf,
    /// `10250`
    pub port: u16,
    /// `127.0.0.1`
    pub bind_address: String,
}

impl KubeletConfig {
    /// The cluster constants (docs/architecture.md) for a node rooted at `root`.
    pub fn with_defaults(node_name: &str, node_ip: &str, root: &Path) -> Self {
        KubeletConfig {
            node_name: node_name.to_string(),
            node_ip: node_ip.to_string(),
            root_dir: root.to_path_buf(),
            pod_cidr: "10.244.0.0/16".into(),
            bridge: "minik0".into(),
            cluster_dns: "10.96.0.10".into(),
            cluster_domain: "cluster.local".into(),
            runtime: PathBuf::from("runc"),
            port: 10250,
            bind_address: "127.0.0.1".into(),
        }
    }

    #[doc(hidden)]
    pub fn for_tests(root: &str) -> Self {
        Self::with_defaults("minik", "127.0.0.1", Path::new(root))
    }
}

/// Builds the built-in images (`minik/busybox`, `minik/hello`) if missing.
/// Fast when present.
pub fn ensure_builtin_images(cfg: &KubeletConfig) -> anyhow::Result<()> {
    images::ImageStore::new(&cfg.root_dir)
        .ensure_builtin()
        .context("building the built-in images")?;
    Ok(())
}

/// The kubelet's HTTP API: `/healthz`, `/containerLogs/...`, `/exec/...`.
pub fn http_router(m: &sandbox::Machinery) -> axum::Router {
    let exec = axum::Router::new()
        .route(
            "/exec/{namespace}/{pod}/{container}",
            axum::routing::get(exec::exec_handler).post(exec::exec_handler),
        )
        .route(
            "/attach/{namespace}/{pod}/{container}",
            axum::routing::get(attach::attach_handler).post(attach::attach_handler),
        )
        .with_state(exec::ExecState {
            pods_dir: m.pods_dir.clone(),
            registry: m.logs.clone(),
            runtime: m.runtime.clone(),
        });
    let portforward = axum::Router::new()
        .route(
            "/portForward/{namespace}/{pod}",
            axum::routing::get(portforward::portforward_handler)
                .post(portforward::portforward_handler),
        )
        .with_state(portforward::PortForwardState {
            pods_dir: m.pods_dir.clone(),
            registry: m.logs.clone(),
        });
    logs::router(m.pods_dir.clone(), m.logs.clone())
        .merge(image_http::router(m.images.clone(), m.pods_dir.clone()))
        .merge(exec)
        .merge(portforward)
        .merge(stats::router(m))
}

/// Roots whose kubelet is being stopped by `shutdown`: their pod workers
/// must not restart the containers `shutdown` is stopping (the lead calls
/// `shutdown` while `run` is still alive, then aborts it).
static STOPPING: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

pub(crate) fn is_stopping(root: &Path) -> bool {
    STOPPING
        .lock()
        .map(|v| v.iter().any(|p| p == root))
        .unwrap_or(false)
}

fn set_stopping(root: &Path, on: bool) {
    if let Ok(mut v) = STOPPING.lock() {
        v.retain(|p| p != root);
        if on {
            v.push(root.to_path_buf());
        }
    }
}

/// `minik image load`: imports a `docker save` or OCI archive (tar, tar.gz
/// or an OCI layout directory) into the node's image store. Returns the
/// image names now available to pods; `fallback_name` names untagged images.
pub fn load_image(
    cfg: &KubeletConfig,
    archive: &Path,
    fallback_name: &str,
) -> anyhow::Result<Vec<String>> {
    let recs = images::ImageStore::new(&cfg.root_dir)
        .load_archive(archive, fallback_name)
        .with_context(|| format!("loading the image archive {}", archive.display()))?;
    Ok(recs.into_iter().map(|r| r.name).collect())
}

/// Aborts the wrapped tasks when dropped (the `run` future is aborted by the lead).
struct AbortOnDrop(Vec<tokio::task::AbortHandle>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// Runs the kubelet until the task is aborted: registers the node (Ready
/// within a few hundred ms), serves logs, and runs this node's pods.
pub async fn run(client: kube::Client, cfg: KubeletConfig) -> anyhow::Result<()> {
    let machinery = sandbox::Machinery::new(&cfg).context("kubelet configuration")?;
    set_stopping(&cfg.root_dir, false);
    runtime::become_subreaper();
    // The bridge exists from the start: cluster DNS listens on its address.
    {
        let (bridge, cidr) = (cfg.bridge.clone(), machinery.cidr);
        tokio::task::spawn_blocking(move || network::ensure_bridge(&bridge, &cidr))
            .await
            .context("kubelet start-up task")?
            .with_context(|| format!("creating the pod bridge {}", cfg.bridge))?;
    }
    let runtime_version = {
        let rt = machinery.runtime.clone();
        tokio::task::spawn_blocking(move || rt.version_string())
            .await
            .unwrap_or_else(|_| "runc://unknown".into())
    };
    let host = node::HostInfo::gather(&cfg, runtime_version);
    let mut guards = Vec::new();
    guards
        .push(tokio::spawn(node::run_heartbeats(client.clone(), cfg.clone(), host)).abort_handle());

    let addr = format!("{}:{}", cfg.bind_address, cfg.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| {
            format!("kubelet cannot listen on {addr}; is another minik node running?")
        })?;
    let app = http_router(&machinery);
    guards.push(
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("kubelet HTTP server: {e}");
            }
        })
        .abort_handle(),
    );
    let _guard = AbortOnDrop(guards);

    let cfg2 = cfg.clone();
    let m2 = machinery.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        ensure_builtin_images(&cfg2)?;
        std::fs::create_dir_all(&m2.pods_dir)
            .with_context(|| format!("creating {}", m2.pods_dir.display()))?;
        // Containers from an earlier run cannot be waited for: start afresh.
        m2.cleanup_leftovers();
        Ok(())
    })
    .await
    .context("kubelet start-up task")??;

    let ctx = Arc::new(pods::Ctx {
        events: events::Recorder::new(client.clone(), cfg.node_name.clone()),
        client,
        machinery,
    });
    pods::run(ctx).await
}

/// `minik stop`: stops every container (SIGTERM, the pod's grace period up
/// to 30 s, SIGKILL), deletes them from the runtime, unmounts rootfs and
/// removes pod network namespaces. Pod directories, logs and IP
/// reservations stay; the next `run` starts the pods again.
pub async fn shutdown(cfg: &KubeletConfig) -> anyhow::Result<()> {
    let m = sandbox::Machinery::new(cfg).context("kubelet configuration")?;
    set_stopping(&cfg.root_dir, true);
    let mut stops = Vec::new();
    for uid in m.pods_on_disk() {
        let grace = m
            .pod_meta(&uid)
            .map(|p| p.grace_seconds)
            .unwrap_or(30)
            .clamp(0, 30) as u64;
        for (id, pid) in m.containers_of(&uid) {
            let m = m.clone();
            stops.push(async move {
                m.stop_container(&id, pid, Duration::from_secs(grace)).await;
            });
        }
    }
    futures::future::join_all(stops).await;
    tokio::task::spawn_blocking(move || m.cleanup_leftovers())
        .await
        .context("kubelet shutdown task")?;
    Ok(())
}

/// `minik delete`: removes every container, mount, network namespace, veth,
/// the bridge, cgroups the kubelet made and `<root>/pods`. Images stay (they
/// live with the profile directory).
pub fn teardown(cfg: &KubeletConfig) -> anyhow::Result<()> {
    let m = sandbox::Machinery::new(cfg).context("kubelet configuration")?;
    for id in m.runtime.list() {
        let _ = m.runtime.kill(&id, "KILL");
        let _ = m.runtime.delete(&id);
    }
    for uid in m.pods_on_disk() {
        m.remove_pod(&uid);
    }
    for mnt in runtime::mounts_under(&m.pods_dir) {
        runtime::unmount(&mnt);
    }
    network::delete_bridge(&cfg.bridge).context("removing the pod bridge")?;
    // Empty cgroup parents (runc removes the per-container ones).
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            let _ = std::fs::remove_dir(e.path().join("minik"));
        }
    }
    if m.pods_dir.exists() {
        std::fs::remove_dir_all(&m.pods_dir)
            .with_context(|| format!("removing {}", m.pods_dir.display()))?;
    }
    Ok(())
}
