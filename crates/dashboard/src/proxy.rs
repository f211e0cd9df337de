//! The same-origin proxy from the browser to the API server.
//!
//! - `/k8s/<path>` forwards GET/POST/PUT/PATCH/DELETE on `/api…` and
//!   `/apis…` paths with the dashboard's credentials; response bodies are
//!   streamed through unbuffered, so `?watch=1` and `log?follow=true` work.
//! - `/k8s-ws/<path>` does the same for GET over a WebSocket, one message
//!   per line of the upstream body (text frames), with errors sent as one
//!   binary frame of JSON `{"error":{code,reason,message}}` before closing.
//!   The UI uses it for its watches and log follows because browsers allow
//!   only six HTTP/1.1 connections per host and each watch holds one.
//!
//! Guards, since the proxy holds cluster credentials: the `Host` header must
//! be an IP, `localhost` or an in-cluster name (DNS rebinding), a WebSocket's
//! `Origin` must be this host, and writes must carry `X-Minik-Dashboard`
//! (a header a cross-site form cannot send).

use crate::config::{read_token, ApiAuth, DashboardConfig};
use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The header the UI sends on every write.
pub const CSRF_HEADER: &str = "x-minik-dashboard";
/// Largest request body forwarded upstream.
const MAX_BODY: usize = 16 << 20;
const TOKEN_REFRESH: Duration = Duration::from_secs(60);

/// Why the upstream client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("the API server CA is not a usable PEM certificate: {0}")]
    Ca(reqwest::Error),
    #[error("the client certificate or key is not usable PEM: {0}")]
    Identity(reqwest::Error),
    #[error("cannot build the HTTP client for the API server: {0}")]
    Client(reqwest::Error),
    #[error("the API server URL {0:?} must look like https://host:port")]
    Url(String),
}

struct Token {
    value: String,
    file: Option<std::path::PathBuf>,
    read_at: Instant,
}

/// Shared state of the proxy handlers.
pub struct Upstream {
    base: String,
    client: reqwest::Client,
    token: Option<Mutex<Token>>,
}

impl Upstream {
    pub fn new(cfg: &DashboardConfig) -> Result<Upstream, ProxyError> {
        let base = cfg.api_server.trim_end_matches('/').to_string();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(ProxyError::Url(cfg.api_server.clone()));
        }
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .tcp_keepalive(Duration::from_secs(30))
            .no_proxy();
        let (builder, token) = match &cfg.auth {
            ApiAuth::Token {
                token,
                ca_pem,
                token_file,
            } => {
                let ca =
                    reqwest::Certificate::from_pem(ca_pem.as_bytes()).map_err(ProxyError::Ca)?;
                (
                    builder.tls_certs_only([ca]),
                    Some(Mutex::new(Token {
                        value: token.clone(),
                        file: token_file.clone(),
                        read_at: Instant::now(),
                    })),
                )
            }
            ApiAuth::ClientCert {
                ca_pem,
                cert_pem,
                key_pem,
            } => {
                let ca =
                    reqwest::Certificate::from_pem(ca_pem.as_bytes()).map_err(ProxyError::Ca)?;
                let mut pem = cert_pem.clone();
                if !pem.ends_with('\n') {
                    pem.push('\n');
                }
                pem.push_str(key_pem);
                let id =
                    reqwest::Identity::from_pem(pem.as_bytes()).map_err(ProxyError::Identity)?;
                (builder.tls_certs_only([ca]).identity(id), None)
            }
        };
        let client = builder.build().map_err(ProxyError::Client)?;
        Ok(Upstream {
            base,
            client,
            token,
        })
    }

    fn bearer(&self) -> Option<String> {
        let lock = self.token.as_ref()?;
        let mut t = lock.lock().unwrap_or_else(|p| p.into_inner());
        if t.read_at.elapsed() >= TOKEN_REFRESH {
            t.read_at = Instant::now();
            if let Some(f) = t.file.clone() {
                match read_token(&f) {
                    Ok(v) => t.value = v,
                    Err(e) => tracing::warn!("keeping the old token: {e}"),
                }
            }
        }
        Some(format!("Bearer {}", t.value))
    }

    fn request(&self, method: reqwest::Method, path_and_query: &str) -> reqwest::RequestBuilder {
        let mut rb = self
            .client
            .request(method, format!("{}{}", self.base, path_and_query));
        if let Some(b) = self.bearer() {
            rb = rb.header(header::AUTHORIZATION, b);
        }
        rb
    }
}

/// A Kubernetes `Status` object as the error body, so the UI shows one kind
/// of error whatever failed.
fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The API path (with query) behind a `/k8s…` URL, if it may be proxied.
pub fn api_path<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?;
    let ok_root = rest == "/api"
        || rest == "/apis"
        || rest.starts_with("/api/")
        || rest.starts_with("/apis/");
    let lower = rest.to_ascii_lowercase();
    if !ok_root || rest.contains("..") || lower.contains("%2e") || lower.contains("%2f") {
        return None;
    }
    Some(rest)
}

/// Whether a `Host` header names this dashboard rather than someone else's
/// domain resolved to us (DNS rebinding): IP literals, `localhost`, names
/// without dots (a Service), and in-cluster / local names.
pub fn host_allowed(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest
            .split(']')
            .next()
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
    } else {
        host.rsplit_once(':')
            .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
            .map(|(h, _)| h)
            .unwrap_or(host)
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() {
        return false;
    }
    name.parse::<std::net::IpAddr>().is_ok()
        || !name.contains('.')
        || name.ends_with(".localhost")
        || name.ends_with(".svc")
        || name.ends_with(".cluster.local")
        || name.ends_with(".local")
        || name.ends_with(".internal")
}

fn host_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::HOST).and_then(|v| v.to_str().ok())
}

/// The refusal for a request whose Host is not ours, if it is not.
fn host_refusal(headers: &HeaderMap) -> Option<Response> {
    match host_of(headers) {
        Some(h) if host_allowed(h) => None,
        Some(h) => Some(status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "the dashboard does not answer for host {h:?}: open it by IP address or localhost"
            ),
        )),
        None => Some(status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the request has no Host header".into(),
        )),
    }
}

/// Whether an `Origin` header (`scheme://host[:port]`) is the same host as `Host`.
pub fn same_origin(origin: &str, host: &str) -> bool {
    origin
        .split_once("://")
        .map(|(_, h)| h.trim_end_matches('/'))
        .is_some_and(|h| h.eq_ignore_ascii_case(host))
}

/// `/k8s/*`: forwards one request, streaming the response body.
pub async fn http(State(up): State<Arc<Upstream>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if let Some(r) = host_refusal(&parts.headers) {
        return r;
    }
    let Some(path) = api_path(parts.uri.path(), "/k8s") else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!(
                "{} is not an API path: only /k8s/api/… and /k8s/apis/… are proxied",
                parts.uri.path()
            ),
        );
    };
    let method = match parts.method {
        Method::GET => reqwest::Method::GET,
        Method::POST => reqwest::Method::POST,
        Method::PUT => reqwest::Method::PUT,
        Method::PATCH => reqwest::Method::PATCH,
        Method::DELETE => reqwest::Method::DELETE,
        ref m => {
            return status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("{m} is not proxied: use GET, POST, PUT, PATCH or DELETE"),
            )
        }
    };
    if method != reqwest::Method::GET && !parts.headers.contains_key(CSRF_HEADER) {
        return status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("writes through the dashboard proxy need the {CSRF_HEADER} header"),
        );
    }
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                format!("reading the request body failed (limit {MAX_BODY} bytes): {e}"),
            )
        }
    };
    let pq = match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut rb = up.request(method, &pq);
    for h in [header::CONTENT_TYPE, header::ACCEPT] {
        if let Some(v) = parts.headers.get(&h) {
            rb = rb.header(h, v.clone());
        }
    }
    if !body.is_empty() {
        rb = rb.body(body);
    }
    let resp = match rb.send().await {
        Ok(r) => r,
        Err(e) => {
            return status(
                StatusCode::BAD_GATEWAY,
                "ServiceUnavailable",
                format!(
                    "the dashboard cannot reach the API server at {}: {e}",
                    up.base
                ),
            )
        }
    };
    let mut out = Response::builder().status(resp.status().as_u16());
    if let Some(v) = resp.headers().get(header::CONTENT_TYPE) {
        out = out.header(header::CONTENT_TYPE, v.clone());
    }
    out = out.header(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    out.body(Body::from_stream(resp.bytes_stream()))
        .unwrap_or_else(|e| {
            status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                e.to_string(),
            )
        })
}

/// `/k8s-ws/*`: a GET whose body lines are sent as WebSocket messages.
pub async fn ws(State(up): State<Arc<Upstream>>, ws: WebSocketUpgrade, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    if let Some(r) = host_refusal(&parts.headers) {
        return r;
    }
    let host = host_of(&parts.headers).unwrap_or_default();
    if let Some(origin) = parts
        .headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    {
        if !same_origin(origin, host) {
            return status(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!("WebSocket from origin {origin:?} refused: only the dashboard's own pages may connect"),
            );
        }
    }
    let Some(path) = api_path(parts.uri.path(), "/k8s-ws") else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!(
                "{} is not an API path: only /k8s-ws/api/… and /k8s-ws/apis/… are proxied",
                parts.uri.path()
            ),
        );
    };
    let pq = match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    ws.on_upgrade(move |socket| pump(up, pq, socket))
}

fn error_frame(code: u16, reason: &str, message: &str) -> Message {
    let v = json!({"error": {"code": code, "reason": reason, "message": message}});
    Message::Binary(v.to_string().into())
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

async fn pump(up: Arc<Upstream>, pq: String, mut socket: WebSocket) {
    let resp = match up.request(reqwest::Method::GET, &pq).send().await {
        Ok(r) => r,
        Err(e) => {
            let msg = format!(
                "the dashboard cannot reach the API server at {}: {e}",
                up.base
            );
            let _ = socket
                .send(error_frame(502, "ServiceUnavailable", &msg))
                .await;
            close(&mut socket, 1011, "upstream unreachable").await;
            return;
        }
    };
    let code = resp.status();
    if !code.is_success() {
        let text = resp.text().await.unwrap_or_default();
        let (reason, message) = match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(v) => (
                v["reason"].as_str().unwrap_or("").to_string(),
                v["message"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or(text.clone()),
            ),
            Err(_) => (String::new(), text.trim().to_string()),
        };
        let _ = socket
            .send(error_frame(code.as_u16(), &reason, &message))
            .await;
        close(&mut socket, 1000, "upstream error").await;
        return;
    }
    let mut stream = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        tokio::select! {
            chunk = stream.next() => match chunk {
                Some(Ok(b)) => {
                    buf.extend_from_slice(&b);
                    let mut start = 0;
                    while let Some(i) = buf[start..].iter().position(|&c| c == b'\n') {
                        let line = String::from_utf8_lossy(&buf[start..start + i]).into_owned();
                        start += i + 1;
                        if socket.send(Message::Text(line.into())).await.is_err() {
                            return;
                        }
                    }
                    buf.drain(..start);
                }
                Some(Err(e)) => {
                    let _ = socket.send(error_frame(502, "StreamError", &format!("the API server stream broke: {e}"))).await;
                    close(&mut socket, 1011, "upstream stream broke").await;
                    return;
                }
                None => break,
            },
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
    if !buf.is_empty() {
        let line = String::from_utf8_lossy(&buf).into_owned();
        let _ = socket.send(Message::Text(line.into())).await;
    }
    close(&mut socket, 1000, "upstream ended").await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_api_paths_are_proxied() {
        assert_eq!(api_path("/k8s/api/v1/pods", "/k8s"), Some("/api/v1/pods"));
        assert_eq!(api_path("/k8s/apis", "/k8s"), Some("/apis"));
        assert_eq!(
            api_path("/k8s-ws/apis/apps/v1/deployments", "/k8s-ws"),
            Some("/apis/apps/v1/deployments")
        );
        assert_eq!(api_path("/k8s/version", "/k8s"), None);
        assert_eq!(api_path("/k8s/apixyz", "/k8s"), None);
        assert_eq!(api_path("/k8s/api/../healthz", "/k8s"), None);
        assert_eq!(api_path("/k8s/api/%2E%2E/x", "/k8s"), None);
        assert_eq!(api_path("/other/api/v1", "/k8s"), None);
    }

    #[test]
    fn hosts_of_other_domains_are_refused() {
        for ok in [
            "127.0.0.1:8080",
            "localhost:1",
            "localhost",
            "[::1]:9090",
            "10.0.0.5",
            "minik-dashboard",
            "minik-dashboard.minik-dashboard.svc:80",
            "x.minik-dashboard.svc.cluster.local",
            "app.localhost",
        ] {
            assert!(host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example.com",
            "evil.com:8080",
            "",
            "[nope]:1",
            "1.2.3.4.evil.com",
        ] {
            assert!(!host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn rotated_service_account_tokens_are_picked_up() {
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(vec!["ca".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .pem();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "first\n").unwrap();
        let cfg = DashboardConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            api_server: "https://10.96.0.1:443".into(),
            auth: ApiAuth::Token {
                token: "first".into(),
                ca_pem: ca,
                token_file: Some(file.clone()),
            },
        };
        let up = Upstream::new(&cfg).unwrap();
        assert_eq!(up.bearer().as_deref(), Some("Bearer first"));
        std::fs::write(&file, "second\n").unwrap();
        // within the refresh interval the cached token is used
        assert_eq!(up.bearer().as_deref(), Some("Bearer first"));
        if let Some(t) = &up.token {
            t.lock().unwrap().read_at = Instant::now() - TOKEN_REFRESH;
        }
        assert_eq!(up.bearer().as_deref(), Some("Bearer second"));
        // a broken file keeps the last good token
        std::fs::write(&file, "").unwrap();
        if let Some(t) = &up.token {
            t.lock().unwrap().read_at = Instant::now() - TOKEN_REFRESH;
        }
        assert_eq!(up.bearer().as_deref(), Some("Bearer second"));
    }

    #[test]
    fn bad_configurations_are_refused_with_a_reason() {
        let cfg = DashboardConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            api_server: "10.96.0.1:443".into(),
            auth: ApiAuth::Token {
                token: "t".into(),
                ca_pem: "not a pem".into(),
                token_file: None,
            },
        };
        let err = Upstream::new(&cfg).err().unwrap();
        assert!(err.to_string().contains("https://host:port"), "{err}");
    }

    #[test]
    fn websocket_origin_must_match_host() {
        assert!(same_origin("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(same_origin("http://LOCALHOST:1", "localhost:1"));
        assert!(!same_origin("http://evil.com", "127.0.0.1:8080"));
        assert!(!same_origin("http://127.0.0.1:8081", "127.0.0.1:8080"));
        assert!(!same_origin("null", "127.0.0.1:8080"));
    }
}
