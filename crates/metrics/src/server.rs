//! The HTTPS API of metrics-server: `metrics.k8s.io/v1beta1` discovery,
//! NodeMetrics and PodMetrics get/list (namespaced and across namespaces,
//! `labelSelector` and `fieldSelector` — applied by asking the API server
//! for the matching Nodes/Pods, whose labels the metrics carry), Tables,
//! `/healthz`, `/livez`, `/readyz`; and the TLS listener with a
//! certificate generated at start.
//!
//! Requests arrive through the API server's aggregation layer, which has
//! already authenticated and authorized the user (RBAC on
//! `nodes.metrics.k8s.io` / `pods.metrics.k8s.io`); this server does not
//! check the caller again.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use serde_json::Value;

use crate::api;
use crate::storage::Store;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("generating the serving certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("building the TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("metrics-server cannot listen on {addr}: {source}; is another metrics-server (or something else) using the port? Pass another --secure-listen")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<RwLock<Store>>,
    /// The API server, for the labels of pods and nodes and for selectors.
    /// `None` when no credentials were found (metrics are then served
    /// without labels and selectors are refused).
    pub client: Option<kube::Client>,
}

impl AppState {
    fn store(&self) -> std::sync::RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// The whole HTTP API (served over TLS by [`serve_tls`]).
pub fn router(state: AppState) -> Router {
    let base = "/apis/metrics.k8s.io/v1beta1";
    Router::new()
        .route(
            "/apis",
            get(|| async { json(StatusCode::OK, api::api_group_list()) }),
        )
        .route(
            "/apis/metrics.k8s.io",
            get(|| async { json(StatusCode::OK, api::api_group()) }),
        )
        .route(
            base,
            get(|| async { json(StatusCode::OK, api::api_resource_list()) }),
        )
        .route(&format!("{base}/nodes"), get(list_nodes))
        .route(&format!("{base}/nodes/{{name}}"), get(get_node))
        .route(&format!("{base}/pods"), get(list_all_pods))
        .route(&format!("{base}/namespaces/{{ns}}/pods"), get(list_pods))
        .route(
            &format!("{base}/namespaces/{{ns}}/pods/{{name}}"),
            get(get_pod),
        )
        .merge(health_router())
        .fallback(|| async {
            json(
                StatusCode::NOT_FOUND,
                api::status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                    None,
                ),
            )
        })
        .with_state(state)
}

/// `/healthz`, `/livez` (the process serves) and `/readyz` (some node's
/// metrics are available). Also served on the plain-HTTP health port the
/// kubelet probes.
pub fn health_router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
}

async fn readyz(State(st): State<AppState>) -> Response {
    if st.store().ready() {
        "ok".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics not available yet: waiting for two scrapes of the kubelet's /stats/summary",
        )
            .into_response()
    }
}

fn json(code: StatusCode, v: Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn error(code: u16, reason: &str, message: String) -> Response {
    json(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        api::status(code, reason, &message, None),
    )
}

type Params = Query<HashMap<String, String>>;

/// Refuses watches (metrics cannot be watched) and returns the selectors.
fn selectors(
    q: &HashMap<String, String>,
) -> Result<(Option<String>, Option<String>), Box<Response>> {
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        return Err(Box::new(error(
            405,
            "MethodNotAllowed",
            "metrics cannot be watched: list them again instead".into(),
        )));
    }
    let f = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
    Ok((f("labelSelector"), f("fieldSelector")))
}

fn respond_list(headers: &HeaderMap, kind: &str, items: Vec<Value>) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if api::wants_table(accept) {
        json(StatusCode::OK, api::table(&items))
    } else {
        json(StatusCode::OK, api::list(kind, items))
    }
}

fn respond_one(headers: &HeaderMap, item: Value) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if api::wants_table(accept) {
        json(StatusCode::OK, api::table(&[item]))
    } else {
        json(StatusCode::OK, item)
    }
}

fn api_failure(what: &str, e: kube::Error) -> Response {
    tracing::warn!("listing {what} from the API server failed: {e}");
    error(
        500,
        "InternalError",
        format!(
            "metrics-server could not read {what} from the API server ({e}); check that the \
             ServiceAccount kube-system/metrics-server is bound to ClusterRole system:metrics-server \
             (`minik addons enable metrics-server` re-applies it)"
        ),
    )
}

fn no_client(what: &str) -> Response {
    error(
        503,
        "ServiceUnavailable",
        format!(
            "metrics-server has no API server credentials, so it cannot select {what} by label or \
             field; run it in the cluster with its ServiceAccount (or set KUBECONFIG)"
        ),
    )
}

fn labels_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

async fn list_nodes(State(st): State<AppState>, headers: HeaderMap, Query(q): Params) -> Response {
    let (label, field) = match selectors(&q) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let now = Utc::now();
    let nodes: Vec<(String, BTreeMap<String, String>)> = match &st.client {
        Some(c) => {
            let mut lp = ListParams::default();
            if let Some(l) = &label {
                lp = lp.labels(l);
            }
            if let Some(f) = &field {
                lp = lp.fields(f);
            }
            match Api::<Node>::all(c.clone()).list(&lp).await {
                Ok(l) => l
                    .items
                    .iter()
                    .filter_map(|n| Some((n.metadata.name.clone()?, labels_of(&n.metadata))))
                    .collect(),
                Err(e) => return api_failure("nodes", e),
            }
        }
        None if label.is_some() || field.is_some() => return no_client("nodes"),
        None => st
            .store()
            .node_names()
            .into_iter()
            .map(|n| (n, BTreeMap::new()))
            .collect(),
    };
    let store = st.store();
    let items = nodes
        .iter()
        .filter_map(|(n, labels)| Some(api::node_metrics(n, labels, &store.node(n)?, now)))
        .collect();
    respond_list(&headers, "NodeMetricsList", items)
}

async fn get_node(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let labels = match &st.client {
        Some(c) => match Api::<Node>::all(c.clone()).get_opt(&name).await {
            Ok(Some(n)) => labels_of(&n.metadata),
            Ok(None) => return json(StatusCode::NOT_FOUND, api::not_found("nodes", &name)),
            Err(e) => return api_failure("nodes", e),
        },
        None => BTreeMap::new(),
    };
    let usage = st.store().node(&name);
    match usage {
        Some(u) => respond_one(&headers, api::node_metrics(&name, &labels, &u, Utc::now())),
        None => json(StatusCode::NOT_FOUND, api::not_found("nodes", &name)),
    }
}

async fn list_all_pods(st: State<AppState>, headers: HeaderMap, q: Params) -> Response {
    pods(st, headers, q, None).await
}

async fn list_pods(
    st: State<AppState>,
    headers: HeaderMap,
    Path(ns): Path<String>,
    q: Params,
) -> Response {
    pods(st, headers, q, Some(ns)).await
}

async fn pods(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Params,
    ns: Option<String>,
) -> Response {
    let (label, field) = match selectors(&q) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let now = Utc::now();
    let pods: Vec<(String, String, BTreeMap<String, String>)> = match &st.client {
        Some(c) => {
            let api: Api<Pod> = match &ns {
                Some(ns) => Api::namespaced(c.clone(), ns),
                None => Api::all(c.clone()),
            };
            let mut lp = ListParams::default();
            if let Some(l) = &label {
                lp = lp.labels(l);
            }
            if let Some(f) = &field {
                lp = lp.fields(f);
            }
            match api.list(&lp).await {
                Ok(l) => l
                    .items
                    .iter()
                    .filter_map(|p| {
                        Some((
                            p.metadata.namespace.clone()?,
                            p.metadata.name.clone()?,
                            labels_of(&p.metadata),
                        ))
                    })
                    .collect(),
                Err(e) => return api_failure("pods", e),
            }
        }
        None if label.is_some() || field.is_some() => return no_client("pods"),
        None => st
            .store()
            .pod_keys()
            .into_iter()
            .filter(|(pns, _)| ns.as_ref().is_none_or(|n| n == pns))
            .map(|(a, b)| (a, b, BTreeMap::new()))
            .collect(),
    };
    let store = st.store();
    let mut items: Vec<(String, String, Value)> = pods
        .iter()
        .filter_map(|(pns, name, labels)| {
            let u = store.pod(pns, name)?;
            Some((
                pns.clone(),
                name.clone(),
                api::pod_metrics(pns, name, labels, &u, now),
            ))
        })
        .collect();
    items.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    respond_list(
        &headers,
        "PodMetricsList",
        items.into_iter().map(|(_, _, v)| v).collect(),
    )
}

async fn get_pod(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let labels = match &st.client {
        Some(c) => match Api::<Pod>::namespaced(c.clone(), &ns).get_opt(&name).await {
            Ok(Some(p)) => labels_of(&p.metadata),
            Ok(None) => return json(StatusCode::NOT_FOUND, api::not_found("pods", &name)),
            Err(e) => return api_failure("pods", e),
        },
        None => BTreeMap::new(),
    };
    let usage = st.store().pod(&ns, &name);
    match usage {
        Some(u) => respond_one(
            &headers,
            api::pod_metrics(&ns, &name, &labels, &u, Utc::now()),
        ),
        None => json(StatusCode::NOT_FOUND, api::not_found("pods", &name)),
    }
}

/// A self-signed serving certificate for the names the aggregation layer
/// and a person may dial (the APIService is `insecureSkipTLSVerify`).
pub fn tls_config(extra_names: &[String]) -> Result<rustls::ServerConfig, ServerError> {
    let mut names = vec![
        "metrics-server".to_string(),
        "metrics-server.kube-system".to_string(),
        "metrics-server.kube-system.svc".to_string(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ];
    names.extend(extra_names.iter().cloned());
    names.sort();
    names.dedup();
    let ck = rcgen::generate_simple_self_signed(names)?;
    let cert = rustls::pki_types::CertificateDer::from(ck.cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        ck.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Binds `addr` (fails fast with a clear message when taken).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, ServerError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Listen { addr, source })
}

/// Serves `app` over TLS on `listener` until the task is dropped.
pub async fn serve_tls(listener: tokio::net::TcpListener, cfg: rustls::ServerConfig, app: Router) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("metrics-server accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!("TLS handshake with {peer} failed: {e}");
                    return;
                }
            };
            let svc = hyper_util::service::TowerToHyperService::new(app);
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!("connection from {peer} ended: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::Summary;

    fn summary(t: &str, node_ns: u64, burn_ns: u64) -> Summary {
        serde_json::from_value(serde_json::json!({
            "node": {"nodeName": "minik", "startTime": "2026-01-01T00:00:00Z",
                     "cpu": {"time": t, "usageCoreNanoSeconds": node_ns},
                     "memory": {"time": t, "workingSetBytes": 1u64 << 30}},
            "pods": [{"podRef": {"name": "burner", "namespace": "default", "uid": "u"},
                      "containers": [{"name": "burn", "startTime": "2026-01-01T00:00:00Z",
                                      "cpu": {"time": t, "usageCoreNanoSeconds": burn_ns},
                                      "memory": {"time": t, "workingSetBytes": 2u64 << 20}}]}]
        }))
        .unwrap()
    }

    /// `curl -k` against the real TLS listener: (HTTP code, body).
    fn curl(url: &str, accept: Option<&str>) -> (String, String) {
        let mut args = vec!["-sSk", "--max-time", "5", "-w", "\n%{http_code}"];
        let h;
        if let Some(a) = accept {
            h = format!("Accept: {a}");
            args.extend(["-H", h.as_str()]);
        }
        args.push(url);
        let out = std::process::Command::new("curl")
            .args(&args)
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = s.rsplit_once('\n').unwrap();
        (code.to_string(), body.to_string())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_metrics_over_tls() {
        let store = Arc::new(RwLock::new(Store::default()));
        let state = AppState {
            store: store.clone(),
            client: None,
        };
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tls = tls_config(&[]).unwrap();
        tokio::spawn(serve_tls(listener, tls, router(state)));
        let base = format!("https://{addr}/apis/metrics.k8s.io/v1beta1");

        let b = base.clone();
        let (code, body) = tokio::task::spawn_blocking(move || curl(&format!("{b}/nodes"), None))
            .await
            .unwrap();
        assert_eq!(code, "200", "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["items"], serde_json::json!([]));
        let (code, _) = {
            let a = addr;
            tokio::task::spawn_blocking(move || curl(&format!("https://{a}/readyz"), None))
                .await
                .unwrap()
        };
        assert_eq!(code, "503");

        // Two scrapes 10 s apart: the burner used 7.5 s of CPU.
        {
            let mut st = store.write().unwrap();
            st.ingest(
                &summary("2026-01-01T00:01:00Z", 10_000_000_000, 1_000_000_000),
                Utc::now(),
            );
            st.ingest(
                &summary("2026-01-01T00:01:10Z", 30_000_000_000, 8_500_000_000),
                Utc::now(),
            );
        }
        let b = base.clone();
        let a = addr;
        let results = tokio::task::spawn_blocking(move || {
            vec![
                curl(&b, None),
                curl(&format!("{b}/namespaces/default/pods"), None),
                curl(&format!("{b}/pods"), None),
                curl(&format!("{b}/namespaces/default/pods/burner"), None),
                curl(&format!("{b}/namespaces/default/pods/nope"), None),
                curl(&format!("{b}/namespaces/other/pods"), None),
                curl(&format!("{b}/nodes/minik"), None),
                curl(
                    &format!("{b}/nodes"),
                    Some("application/json;as=Table;v=v1;g=meta.k8s.io,application/json"),
                ),
                curl(&format!("{b}/pods?watch=true"), None),
                curl(&format!("{b}/pods?labelSelector=app%3Dx"), None),
                curl(&format!("https://{a}/readyz"), None),
                curl(&format!("https://{a}/apis"), None),
            ]
        })
        .await
        .unwrap();
        let json = |i: usize| -> Value { serde_json::from_str(&results[i].1).unwrap() };
        assert_eq!(json(0)["kind"], "APIResourceList");
        let pods = json(1);
        assert_eq!(pods["kind"], "PodMetricsList");
        assert_eq!(pods["items"][0]["metadata"]["name"], "burner");
        assert_eq!(pods["items"][0]["window"], "10s");
        assert_eq!(
            pods["items"][0]["containers"][0]["usage"],
            serde_json::json!({"cpu": "750m", "memory": "2Mi"})
        );
        assert_eq!(json(2)["items"].as_array().unwrap().len(), 1);
        assert_eq!(json(3)["kind"], "PodMetrics");
        assert_eq!(results[4].0, "404");
        assert_eq!(json(4)["reason"], "NotFound");
        assert_eq!(json(5)["items"], serde_json::json!([]));
        assert_eq!(json(6)["usage"]["cpu"], "2");
        assert_eq!(json(6)["usage"]["memory"], "1Gi");
        assert_eq!(json(7)["kind"], "Table");
        assert_eq!(json(7)["rows"][0]["cells"][1], "2000m");
        assert_eq!(results[8].0, "405");
        assert_eq!(results[9].0, "503");
        assert!(results[9].1.contains("KUBECONFIG"), "{}", results[9].1);
        assert_eq!(results[10].0, "200");
        assert_eq!(json(11)["groups"][0]["name"], "metrics.k8s.io");
    }
}
