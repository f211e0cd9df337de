//! minik-dashboard: the dashboard web application. One axum server that
//! serves the single-page app (HTML/CSS/JS compiled into the binary, no
//! network needed) and a same-origin proxy to the API server (`proxy`), so
//! the browser never holds cluster credentials. Owns the UI; knows nothing
//! of the store or the apiserver's internals — it is an API client.

pub mod config;
pub mod proxy;

pub use config::{in_cluster, ApiAuth, ConfigError, DashboardConfig};
pub use proxy::ProxyError;

use anyhow::Context;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use std::sync::Arc;

/// The embedded web app: path, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("../web/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/app.js"),
    ),
    (
        "/yaml.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/yaml.js"),
    ),
    (
        "/app.css",
        "text/css; charset=utf-8",
        include_bytes!("../web/app.css"),
    ),
    (
        "/favicon.svg",
        "image/svg+xml",
        include_bytes!("../web/favicon.svg"),
    ),
];

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn asset(path: &str) -> Response {
    let Some((_, ct, body)) = ASSETS.iter().find(|(p, _, _)| *p == path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let mut r = (*body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// The dashboard's routes: the app, `/healthz`, `/k8s/*` and `/k8s-ws/*`.
pub fn router(cfg: &DashboardConfig) -> Result<Router, ProxyError> {
    let up = Arc::new(proxy::Upstream::new(cfg)?);
    let mut r = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/k8s/{*rest}", any(proxy::http))
        .route("/k8s-ws/{*rest}", get(proxy::ws));
    for (path, _, _) in ASSETS {
        r = r.route(path, get(move || async move { asset(path) }));
    }
    Ok(r.with_state(up))
}

/// Serves the dashboard on `cfg.listen` until the process ends.
pub async fn serve(cfg: DashboardConfig) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {} for the dashboard", cfg.listen))?;
    serve_on(listener, cfg).await
}

/// Serves the dashboard on an already bound listener (`cfg.listen` unused).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    cfg: DashboardConfig,
) -> anyhow::Result<()> {
    let app = router(&cfg)?;
    tracing::info!(
        "dashboard on http://{} → {}",
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        cfg.api_server
    );
    axum::serve(listener, app)
        .await
        .context("the dashboard server stopped")
}
