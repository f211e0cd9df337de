//! minik-dns: the cluster DNS (CoreDNS's job).
//!
//! Owns answering `<cluster_domain>` names from a watch cache of Services,
//! EndpointSlices and Endpoints, forwarding other names to the node's
//! upstream resolver, and the `kube-system/kube-dns` Service + endpoints that
//! point pods at it. A pure API client: it never touches the store, nftables
//! (the proxy routes the ClusterIP to our listener) or the pod network.
//!
//! - [`catalog`]: API objects → names (pure)
//! - [`resolve`]: one query → one answer (pure)
//! - [`server`]: UDP/TCP loops, truncation, forwarding
//! - [`bootstrap`]: the kube-dns objects

pub mod bootstrap;
pub mod catalog;
pub mod resolve;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::Store;
use tokio::sync::Notify;
use tokio::task::JoinSet;

pub use catalog::Catalog;
pub use server::{Cache, Server};

/// How the node agent configures DNS.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// Where to listen (UDP and TCP), e.g. `10.244.0.1:53` (the bridge address;
    /// binding is retried until it exists).
    pub listen: SocketAddr,
    /// e.g. `cluster.local`.
    pub cluster_domain: String,
    /// The kube-dns ClusterIP, e.g. `10.96.0.10`.
    pub cluster_ip: String,
    /// Resolver for other names; `None` answers them REFUSED at once.
    pub upstream: Option<SocketAddr>,
}

/// How often the kube-dns objects are checked (and repaired) after the first success.
const ENSURE_EVERY: Duration = Duration::from_secs(60);
/// Coalesces bursts of watch events into one catalog rebuild.
const DEBOUNCE: Duration = Duration::from_millis(20);

/// Serves DNS until the task is dropped or a socket fails.
pub async fn run(client: kube::Client, cfg: DnsConfig) -> anyhow::Result<()> {
    let cache = Cache::default();

    // the watch cache
    let notify = Arc::new(Notify::new());
    // Owned here so that dropping `run` (agent shutdown) stops the watches.
    let mut watches = JoinSet::new();
    let services = minik_informer::spawn::<Service>(&mut watches, &client, &notify, "dns");
    let slices = minik_informer::spawn::<EndpointSlice>(&mut watches, &client, &notify, "dns");
    let endpoints = minik_informer::spawn::<Endpoints>(&mut watches, &client, &notify, "dns");
    let watch_cache = cache.clone();
    watches.spawn(async move {
        loop {
            notify.notified().await;
            tokio::time::sleep(DEBOUNCE).await;
            watch_cache.set(build_catalog(&services, &slices, &endpoints));
        }
    });

    // the kube-dns Service and endpoints
    let boot_client = client.clone();
    let (cluster_ip, listen) = (cfg.cluster_ip.clone(), cfg.listen);
    watches.spawn(async move {
        let mut failing = false;
        loop {
            match bootstrap::ensure(&boot_client, &cluster_ip, listen).await {
                Ok(()) => {
                    failing = false;
                    tokio::time::sleep(ENSURE_EVERY).await;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "dns cannot write kube-system/kube-dns yet; retrying");
                    }
                    failing = true;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    });

    let (udp, tcp) = server::bind_with_retry(cfg.listen).await;
    tracing::info!(listen = %cfg.listen, domain = %cfg.cluster_domain, upstream = ?cfg.upstream, "dns started");
    let result = Server::new(cache, &cfg.cluster_domain, cfg.upstream)
        .serve(udp, tcp)
        .await;
    watches.abort_all();
    result.map_err(|e| anyhow::anyhow!("dns server on {} stopped: {e}", cfg.listen))
}

fn build_catalog(
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
    endpoints: &Store<Endpoints>,
) -> Catalog {
    let (s, sl, e) = (services.state(), slices.state(), endpoints.state());
    Catalog::build(&s, &sl, &e)
}
