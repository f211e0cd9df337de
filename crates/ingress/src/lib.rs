//! minik's ingress controller (the `ingress` addon): serves
//! networking.k8s.io/v1 Ingresses of the IngressClasses whose controller is
//! `k8s.io/minik-ingress` on the node's ports 80 (HTTP) and 443 (HTTPS with
//! SNI), as ingress-nginx does for minikube users. It runs in a hostNetwork
//! pod as `minik ingress-controller` and is an API client like any other
//! controller: it never touches the store.
//!
//! - `routes`: which Ingresses are ours, the merged routing table (pure)
//! - `backends`: Service port → ready endpoints, round robin (pure)
//! - `certs`: TLS Secrets → certificates by SNI, the default certificate
//! - `proxy`: the HTTP/1.1 reverse proxy and the health endpoint
//! - `controller`: watches, reloads, Ingress status

pub mod backends;
pub mod certs;
pub mod controller;
pub mod proxy;
pub mod routes;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use routes::CONTROLLER_NAME;

#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("cannot listen on {addr} ({what}): {source}; is another ingress controller or web server using the port? (`ss -ltnp 'sport = :{port}'` shows who)", port = addr.port())]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Cert(#[from] certs::CertError),
    #[error("the TLS configuration was refused: {0}")]
    Tls(#[from] rustls::Error),
}

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub healthz: SocketAddr,
    /// The IngressClass controller name we answer to.
    pub controller_name: String,
    /// Written to status.loadBalancer.ingress (the node's InternalIP);
    /// `None` leaves statuses alone.
    pub status_address: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http: ([0, 0, 0, 0], 80).into(),
            https: ([0, 0, 0, 0], 443).into(),
            healthz: ([0, 0, 0, 0], 10254).into(),
            controller_name: CONTROLLER_NAME.to_string(),
            status_address: None,
        }
    }
}

async fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, IngressError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| IngressError::Bind { addr, what, source })
}

/// Binds the ports, then serves until `shutdown` completes (e.g. SIGTERM)
/// and our address is taken off the Ingresses' status. The listeners are
/// bound before the first watch so a port conflict fails at once.
pub async fn run(
    client: kube::Client,
    cfg: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), IngressError> {
    let http = bind(cfg.http, "HTTP").await?;
    let https = bind(cfg.https, "HTTPS").await?;
    let healthz = bind(cfg.healthz, "health checks").await?;
    let resolver = Arc::new(certs::Resolver::new(certs::default_certificate()?));
    let acceptor =
        tokio_rustls::TlsAcceptor::from(Arc::new(certs::server_config(resolver.clone())?));
    let state = Arc::new(proxy::State::new(routes::Table::default()));
    let ready = Arc::new(AtomicBool::new(false));
    tracing::info!(
        http = %cfg.http, https = %cfg.https, healthz = %cfg.healthz,
        controller = %cfg.controller_name,
        status_address = cfg.status_address.as_deref().unwrap_or("(none)"),
        "minik ingress controller starting"
    );
    tokio::spawn(proxy::serve(http, state.clone(), None));
    tokio::spawn(proxy::serve(https, state.clone(), Some(acceptor)));
    tokio::spawn(proxy::serve_healthz(healthz, ready.clone()));
    controller::Controller {
        client,
        state,
        resolver,
        ready,
        controller_name: cfg.controller_name,
        status_address: cfg.status_address,
    }
    .run(shutdown)
    .await;
    Ok(())
}
