//! `minik node`: the agent. One process, one tokio runtime, the seeds'
//! components as tasks: store (etcd role), apiserver, scheduler, controller
//! manager, kubelet, proxy and dns. Everything but the apiserver is an API
//! client using an in-process `kube::Client` over the apiserver's router.
//! Owns start-up order and graceful shutdown; owns no cluster logic.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;

/// Flags of the hidden `minik node` command (the host CLI or the VM's init
/// passes them).
#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// Directory for all node state (store, images, pods).
    #[arg(long)]
    pub root: PathBuf,
    /// Address the API server listens on (TLS).
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Directory holding ca.crt, apiserver.crt and apiserver.key.
    #[arg(long)]
    pub certs: PathBuf,
    #[arg(long, default_value = "minik")]
    pub node_name: String,
    /// The node's InternalIP.
    #[arg(long)]
    pub node_ip: String,
    /// OCI runtime binary (runc on a host with hybrid cgroups, crun in the VM).
    #[arg(long, default_value = "runc")]
    pub runtime: PathBuf,
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// Where the cluster state lives: a directory (embedded store, default
    /// `<root>/store`) or `etcd://host:port` (a real etcd).
    #[arg(long)]
    pub datastore: Option<String>,
}

pub const POD_CIDR: &str = "10.244.0.0/16";
pub const BRIDGE: &str = "minik0";
pub const BRIDGE_IP: &str = "10.244.0.1";
pub const SERVICE_CIDR: &str = "10.96.0.0/12";
pub const CLUSTER_DNS: &str = "10.96.0.10";
pub const CLUSTER_DOMAIN: &str = "cluster.local";
pub const NFT_TABLE: &str = "minik";

pub fn kubelet_config(a: &NodeArgs) -> minik_kubelet::KubeletConfig {
    minik_kubelet::KubeletConfig {
        node_name: a.node_name.clone(),
        node_ip: a.node_ip.clone(),
        root_dir: a.root.clone(),
        pod_cidr: POD_CIDR.into(),
        bridge: BRIDGE.into(),
        cluster_dns: CLUSTER_DNS.into(),
        cluster_domain: CLUSTER_DOMAIN.into(),
        runtime: a.runtime.clone(),
        port: a.kubelet_port,
        bind_address: "127.0.0.1".into(),
    }
}

pub fn proxy_config(node_ip: &str) -> minik_proxy::ProxyConfig {
    minik_proxy::ProxyConfig {
        node_ip: node_ip.into(),
        pod_cidr: POD_CIDR.into(),
        bridge: BRIDGE.into(),
        table: NFT_TABLE.into(),
    }
}

/// The first nameserver of /etc/resolv.conf that is not ourselves or loopback.
fn upstream_dns() -> Option<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .find(|ip| !ip.is_loopback() && ip.to_string() != BRIDGE_IP)
        .map(|ip| SocketAddr::new(ip, 53))
}

pub fn run(args: NodeArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(run_async(args))
}

async fn run_async(args: NodeArgs) -> Result<()> {
    let started = std::time::Instant::now();
    std::fs::create_dir_all(&args.root)
        .with_context(|| format!("creating {}", args.root.display()))?;
    // The OpenAPI/validation caches take about a second to build in a debug
    // build; build them off the start-up path.
    std::thread::spawn(minik_apimachinery::warm_up);
    let datastore = args
        .datastore
        .clone()
        .unwrap_or_else(|| args.root.join("store").display().to_string());
    let store = minik_store::Store::open_url(&datastore)
        .await
        .with_context(|| format!("opening the store at {datastore}"))?;
    let api = minik_apiserver::ApiServer::new(
        store.clone(),
        minik_apiserver::ApiServerOptions {
            service_cidr: SERVICE_CIDR.into(),
            node_port_range: (30000, 32767),
            advertise_address: args.node_ip.clone(),
            secure_port: args.listen.port(),
        },
    )
    .await?;
    let tls = minik_apiserver::TlsFiles {
        ca_cert_pem: read(&args.certs.join("ca.crt"))?,
        cert_pem: read(&args.certs.join("apiserver.crt"))?,
        key_pem: read(&args.certs.join("apiserver.key"))?,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "the API server cannot listen on {}: is another cluster running? (`minik status`)",
                args.listen
            )
        })?;
    tracing::info!(
        "apiserver listening on {} after {:?}",
        args.listen,
        started.elapsed()
    );

    let kubelet_cfg = kubelet_config(&args);
    minik_kubelet::ensure_builtin_images(&kubelet_cfg)?;

    let mut tasks: JoinSet<(&'static str, Result<()>)> = JoinSet::new();
    {
        let api = api.clone();
        tasks.spawn(async move { ("apiserver", api.serve_tls(listener, tls).await) });
    }
    let c = component_client(&api, "kube-scheduler");
    tasks.spawn(async move { ("scheduler", minik_scheduler::run(c).await) });
    let c = component_client(&api, "kube-controller-manager");
    tasks.spawn(async move { ("controllers", minik_controllers::run(c).await) });
    let c = component_client(&api, "kubelet");
    let kc = kubelet_cfg.clone();
    tasks.spawn(async move { ("kubelet", minik_kubelet::run(c, kc).await) });
    let c = component_client(&api, "kube-proxy");
    let pc = proxy_config(&args.node_ip);
    tasks.spawn(async move { ("proxy", minik_proxy::run(c, pc).await) });
    let c = component_client(&api, "coredns");
    let dc = minik_dns::DnsConfig {
        listen: SocketAddr::new(BRIDGE_IP.parse()?, 53),
        cluster_domain: CLUSTER_DOMAIN.into(),
        cluster_ip: CLUSTER_DNS.into(),
        upstream: upstream_dns(),
    };
    tasks.spawn(async move { ("dns", minik_dns::run(c, dc).await) });

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let outcome: Result<()> = tokio::select! {
        _ = term.recv() => { tracing::info!("SIGTERM: stopping"); Ok(()) }
        _ = int.recv() => { tracing::info!("SIGINT: stopping"); Ok(()) }
        Some(done) = tasks.join_next() => {
            match done {
                Ok((name, Ok(()))) => Err(anyhow::anyhow!("{name} stopped unexpectedly")),
                Ok((name, Err(e))) => Err(e.context(format!("{name} failed"))),
                Err(e) => Err(anyhow::anyhow!("a component panicked: {e}")),
            }
        }
    };
    // Stop the containers first (they may take their grace period), then
    // stop everything else and make sure the store is on disk.
    if let Err(e) = minik_kubelet::shutdown(&kubelet_cfg).await {
        tracing::warn!("stopping containers: {e:#}");
    }
    tasks.abort_all();
    store.flush().await?;
    tracing::info!("stopped");
    outcome
}

/// An in-process client for one component: the apiserver's router with the
/// component's `User-Agent` (`kubelet/v1.33.2 ...`), which the apiserver
/// uses as the default field manager (managedFields name who wrote what,
/// as in a real cluster) and in its logs.
fn component_client(api: &minik_apiserver::ApiServer, name: &str) -> kube::Client {
    let ua = http::HeaderValue::from_str(&format!(
        "{name}/{} (linux/amd64) minik",
        crate::cli::KUBERNETES_VERSION
    ))
    .expect("component names are ASCII");
    let svc = tower::ServiceBuilder::new()
        .map_request(move |mut req: http::Request<kube::client::Body>| {
            req.headers_mut()
                .entry(http::header::USER_AGENT)
                .or_insert_with(|| ua.clone());
            req
        })
        .service(api.router());
    kube::Client::new(svc, "default")
}

fn read(p: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
}
