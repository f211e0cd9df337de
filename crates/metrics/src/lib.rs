//! minik-metrics: metrics-server for minik, the backend of `kubectl top`.
//! It scrapes the kubelet's `/stats/summary` (every 15 s, the first figures
//! within seconds of start) and serves the aggregated API
//! `metrics.k8s.io/v1beta1` (NodeMetrics, PodMetrics) over HTTPS with a
//! certificate generated at start; the API server's APIService
//! `v1beta1.metrics.k8s.io` proxies `/apis/metrics.k8s.io/v1beta1/...` here.
//! It runs in the cluster as the `metrics-server` addon (`minik
//! metrics-server` in image `minik/minik`, host network so it reaches the
//! kubelet on 127.0.0.1:10250).
//!
//! Modules, pure logic first:
//! - [`summary`]: the kubelet Summary API subset read;
//! - [`storage`]: the last two samples per node/container → usage and window,
//!   quantities;
//! - [`api`]: the metrics.k8s.io documents (discovery, objects, Tables, Status);
//! - [`scrape`]: the scrape loop; [`server`]: HTTP routes and TLS.

pub mod api;
pub mod scrape;
pub mod server;
pub mod storage;
pub mod summary;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;

/// How metrics-server runs (the `minik metrics-server` flags).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The HTTPS API (`0.0.0.0:4443`).
    pub secure_listen: SocketAddr,
    /// Plain-HTTP `/healthz` and `/readyz` for the kubelet's probes
    /// (`127.0.0.1:4444`), or none.
    pub health_listen: Option<SocketAddr>,
    /// The kubelet's base URL (`http://127.0.0.1:10250`).
    pub kubelet_url: String,
    /// The scrape interval (15 s).
    pub resolution: Duration,
    /// Extra names for the serving certificate.
    pub cert_names: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            secure_listen: SocketAddr::from(([0, 0, 0, 0], 4443)),
            health_listen: Some(SocketAddr::from(([127, 0, 0, 1], 4444))),
            kubelet_url: "http://127.0.0.1:10250".into(),
            resolution: Duration::from_secs(15),
            cert_names: vec![],
        }
    }
}

/// Runs metrics-server until the task is dropped or a listener fails.
/// The API server client comes from the pod's ServiceAccount (or
/// KUBECONFIG when run by hand); without one, metrics are served without
/// labels and selectors are refused.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store = Arc::new(RwLock::new(storage::Store::default()));
    let client = match kube::Client::try_default().await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(
                "no API server credentials ({e}): metrics are served without labels and \
                 label/field selectors are refused"
            );
            None
        }
    };
    let state = server::AppState {
        store: store.clone(),
        client,
    };
    let tls = server::tls_config(&cfg.cert_names).context("metrics-server TLS")?;
    let secure = server::bind(cfg.secure_listen).await?;
    let health = match cfg.health_listen {
        Some(a) => Some(server::bind(a).await?),
        None => None,
    };
    tracing::info!(
        "metrics-server: https://{} (metrics.k8s.io/v1beta1), scraping {} every {:?}",
        cfg.secure_listen,
        cfg.kubelet_url,
        cfg.resolution
    );
    let scraper = tokio::spawn(scrape::run(store, cfg.kubelet_url.clone(), cfg.resolution));
    let _abort = AbortOnDrop(scraper.abort_handle());
    let app = server::router(state.clone());
    match health {
        Some(h) => {
            let health_app = server::health_router().with_state(state);
            tokio::select! {
                _ = server::serve_tls(secure, tls, app) => Ok(()),
                r = axum::serve(h, health_app) => r.context("metrics-server health listener"),
            }
        }
        None => {
            server::serve_tls(secure, tls, app).await;
            Ok(())
        }
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
