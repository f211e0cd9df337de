//! The HTTP/1.1 reverse proxy on ports 80 and 443 (hyper). Owns the
//! listeners' accept loops, the request path through the current routing
//! table (read once per request, so a reload never touches a request in
//! flight), forwarding with the X-Forwarded-* headers, endpoint retries on
//! connect failure, WebSocket / Upgrade pass-through, the 308 to https and
//! the error pages (404 no route, 503 no ready endpoint, 502 unreachable,
//! 504 no answer), keep-alive connections to endpoints (a small pool),
//! rewrite-target, and TLS to HTTPS backends. Bodies stream both ways;
//! nothing is buffered.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::backends::Backend;
use crate::routes::{Rewrite, Route, Table};

pub type Body = BoxBody<Bytes, hyper::Error>;

/// What every connection shares: the current table and timeouts.
#[derive(Debug)]
pub struct State {
    table: RwLock<Arc<Table>>,
    /// Keep-alive connections to endpoints.
    pub pool: Arc<Pool>,
    /// Per endpoint; on expiry the next endpoint is tried.
    pub connect_timeout: Duration,
    /// From the request sent to the response head (nginx's proxy_read_timeout).
    pub response_timeout: Duration,
}

impl State {
    pub fn new(table: Table) -> State {
        State {
            table: RwLock::new(Arc::new(table)),
            pool: Arc::new(Pool::default()),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(60),
        }
    }

    /// The table requests use from now on (requests in flight keep theirs).
    pub fn replace(&self, table: Table) {
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
    }

    pub fn table(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A client has this long to send a request head (and an idle keep-alive
/// connection is closed after it).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections forever (plain HTTP, or TLS when `tls` is given).
pub async fn serve(listener: TcpListener, state: Arc<State>, tls: Option<TlsAcceptor>) {
    let scheme = if tls.is_some() {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req, remote, scheme, local_port).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            // Idle keep-alive clients and slow request heads are let go
            // (nginx's keepalive_timeout / client_header_timeout).
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let r = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Err(_) => {
                            tracing::debug!(%remote, "TLS handshake timed out");
                            return;
                        }
                        Ok(Ok(s)) => {
                            builder
                                .serve_connection(TokioIo::new(s), svc)
                                .with_upgrades()
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "TLS handshake failed");
                            return;
                        }
                    }
                }
                None => {
                    builder
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await
                }
            };
            if let Err(e) = r {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
}

/// `/healthz` (and anything else) on the health port: 200 once the first
/// routing table is loaded, 503 before.
pub async fn serve_healthz(listener: TcpListener, ready: Arc<AtomicBool>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let ready = ready.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |_req: Request<Incoming>| {
                let ok = ready.load(Ordering::Relaxed);
                async move {
                    let (status, text) = if ok {
                        (StatusCode::OK, "ok\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not synced yet\n")
                    };
                    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
                    *r.status_mut() = status;
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// The host a request names: the absolute URI's, else the Host header.
fn request_host<B>(req: &Request<B>) -> String {
    req.uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(String::from)
        })
        .unwrap_or_default()
}

async fn handle(
    state: &State,
    req: Request<Incoming>,
    remote: SocketAddr,
    scheme: Scheme,
    local_port: u16,
) -> Response<Body> {
    let started = std::time::Instant::now();
    let host = request_host(&req);
    let table = state.table();
    let route = table.route(&host, req.uri().path());
    drop(table);
    let line = format!(
        "{} {} {:?}",
        req.method(),
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
        req.version()
    );
    let (resp, backend) = match route {
        Route::NotFound => (error_page(StatusCode::NOT_FOUND, None), "-".to_string()),
        Route::Backend {
            ssl_redirect: true,
            backend,
            ..
        } if scheme == Scheme::Http => (redirect_to_https(&host, req.uri()), backend.name.clone()),
        Route::Backend {
            backend, rewrite, ..
        } => (
            forward(
                state,
                req,
                &backend,
                rewrite.as_deref(),
                remote,
                scheme,
                &host,
                local_port,
            )
            .await,
            backend.name.clone(),
        ),
    };
    // The access log, one line per request as ingress-nginx writes it
    // (`kubectl logs -n ingress-nginx deploy/ingress-nginx-controller`).
    tracing::info!(
        target: "access",
        "{} \"{line}\" {} host={host} backend={backend} {:.1}ms",
        remote.ip().to_canonical(),
        resp.status().as_u16(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    resp
}

/// 308 to the same host and path over https (ingress-nginx's ssl-redirect).
fn redirect_to_https(host: &str, uri: &Uri) -> Response<Body> {
    let name = crate::routes::normalize_host(host);
    let name = if name.contains(':') {
        format!("[{name}]")
    } else {
        name
    };
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let location = format!("https://{name}{pq}");
    let mut r = error_page(StatusCode::PERMANENT_REDIRECT, None);
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// A new upstream connection (TCP, TLS when asked, then the HTTP/1.1 handshake).
async fn connect(addr: SocketAddr, timeout: Duration, tls: bool) -> Result<Sender, String> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("{addr}: {e}")),
        Err(_) => return Err(format!("{addr}: connect timed out after {timeout:?}")),
    };
    let _ = stream.set_nodelay(true);
    if tls {
        // No SNI (an IP address), no verification: ingress-nginx's
        // defaults for backend-protocol HTTPS.
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let s = match tokio::time::timeout(timeout, upstream_tls().connect(name, stream)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(format!("{addr}: TLS: {e}")),
            Err(_) => return Err(format!("{addr}: TLS handshake timed out after {timeout:?}")),
        };
        handshake(addr, TokioIo::new(s)).await
    } else {
        handshake(addr, TokioIo::new(stream)).await
    }
}

async fn handshake<T>(addr: SocketAddr, io: T) -> Result<Sender, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake::<_, Incoming>(io)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(%addr, error = %e, "upstream connection ended");
        }
    });
    Ok(sender)
}

/// The TLS client for HTTPS backends (made once).
fn upstream_tls() -> tokio_rustls::TlsConnector {
    static CONNECTOR: std::sync::OnceLock<tokio_rustls::TlsConnector> = std::sync::OnceLock::new();
    CONNECTOR
        .get_or_init(|| {
            let provider = crate::certs::provider();
            let verifier = Arc::new(AnyServerCert(provider.clone()));
            let cfg = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| {
                    b.dangerous()
                        .with_custom_certificate_verifier(verifier)
                        .with_no_client_auth()
                })
                .unwrap_or_else(|e| unreachable!("ring supports the default TLS versions: {e}"));
            tokio_rustls::TlsConnector::from(Arc::new(cfg))
        })
        .clone()
}

/// Accepts any backend certificate (in-cluster backends mostly have
/// self-signed ones), still checking the handshake signatures.
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Incoming>;

/// How long a finished exchange may take to hand its connection back.
const POOL_WAIT: Duration = Duration::from_secs(300);
/// Idle connections kept per endpoint, and for how long.
const POOL_MAX_IDLE: usize = 16;
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// An endpoint and whether the connection speaks TLS.
type PoolKey = (SocketAddr, bool);

/// Idle keep-alive connections to endpoints, so a request does not pay
/// for a TCP handshake (nginx's `keepalive` upstream setting).
#[derive(Debug, Default)]
pub struct Pool {
    idle: std::sync::Mutex<std::collections::HashMap<PoolKey, Vec<(std::time::Instant, Sender)>>>,
}

impl Pool {
    /// An idle connection to `addr` that is still open, if any.
    fn take(&self, addr: PoolKey) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(&addr)?;
        while let Some((since, s)) = list.pop() {
            if since.elapsed() < POOL_IDLE_TIMEOUT && !s.is_closed() && s.is_ready() {
                return Some(s);
            }
        }
        None
    }

    fn put(&self, addr: PoolKey, s: Sender) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(addr).or_default();
        list.retain(|(since, s)| since.elapsed() < POOL_IDLE_TIMEOUT && !s.is_closed());
        if list.len() < POOL_MAX_IDLE {
            list.push((std::time::Instant::now(), s));
        }
    }

    /// Idle connections held (for tests and logs).
    pub fn idle(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.values().map(Vec::len).sum()
    }
}

/// Headers that belong to one hop (RFC 9110 §7.6.1) and are not forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The `Upgrade` value when the request asks for a protocol switch.
fn upgrade_of(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// Removes hop-by-hop headers, including the ones `Connection` names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for h in HOP_BY_HOP {
        headers.remove(*h);
    }
    for h in named {
        headers.remove(h);
    }
}

/// The request headers the backend sees: the client's (Host kept) minus
/// hop-by-hop ones, plus X-Forwarded-For/-Host/-Port/-Proto, X-Real-IP and
/// X-Scheme as ingress-nginx sets them (the client's own X-Forwarded-*
/// are replaced, not trusted).
pub fn forwarded_headers(
    mut headers: HeaderMap,
    remote: SocketAddr,
    scheme: &str,
    host: &str,
    local_port: u16,
) -> HeaderMap {
    let upgrade = upgrade_of(&headers);
    strip_hop_by_hop(&mut headers);
    if let Some(u) = upgrade {
        headers.insert(header::UPGRADE, u);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let ip = remote.ip().to_canonical().to_string();
    let set = |h: &mut HeaderMap, name: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    set(&mut headers, "x-forwarded-for", &ip);
    set(&mut headers, "x-real-ip", &ip);
    set(&mut headers, "x-forwarded-host", host);
    set(&mut headers, "x-forwarded-port", &local_port.to_string());
    set(&mut headers, "x-forwarded-proto", scheme);
    set(&mut headers, "x-scheme", scheme);
    if !headers.contains_key(header::HOST) && !host.is_empty() {
        set(&mut headers, "host", host);
    }
    headers
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    state: &State,
    mut req: Request<Incoming>,
    backend: &Backend,
    rewrite: Option<&Rewrite>,
    remote: SocketAddr,
    scheme: Scheme,
    host: &str,
    local_port: u16,
) -> Response<Body> {
    let order = match &backend.external {
        // ExternalName: whatever the name resolves to now.
        Some((name, port)) => match tokio::net::lookup_host((name.as_str(), *port)).await {
            Ok(addrs) => addrs.collect(),
            Err(e) => {
                return error_page(
                    StatusCode::BAD_GATEWAY,
                    Some(&format!("{}: cannot resolve {name}: {e}", backend.name)),
                );
            }
        },
        None => backend.attempt_order(),
    };
    if order.is_empty() {
        let detail = backend
            .problem
            .clone()
            .unwrap_or_else(|| format!("no ready endpoint for {}", backend.name));
        return error_page(StatusCode::SERVICE_UNAVAILABLE, Some(&detail));
    }
    let wants_upgrade = upgrade_of(req.headers()).is_some();
    let client_upgrade = wants_upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    parts.headers = forwarded_headers(
        std::mem::take(&mut parts.headers),
        remote,
        scheme.as_str(),
        host,
        local_port,
    );
    let target = match (rewrite, parts.uri.path_and_query()) {
        (Some(r), _) => r.apply(parts.uri.path(), parts.uri.query()),
        (None, Some(pq)) => pq.as_str().to_string(),
        (None, None) => "/".to_string(),
    };
    parts.uri = Uri::try_from(target).unwrap_or_else(|_| Uri::from_static("/"));
    parts.version = http::Version::HTTP_11;

    let mut req = Request::from_parts(parts, body);
    let mut failures = Vec::new();
    let mut outcome = None;
    'endpoints: for addr in order {
        loop {
            // An idle keep-alive connection first; an upgrade takes a new
            // one (it leaves HTTP for good).
            let (mut sender, fresh) = match (!wants_upgrade)
                .then(|| state.pool.take((addr, backend.tls)))
                .flatten()
            {
                Some(s) => (s, false),
                None => match connect(addr, state.connect_timeout, backend.tls).await {
                    Ok(s) => (s, true),
                    Err(e) => {
                        failures.push(e);
                        continue 'endpoints;
                    }
                },
            };
            match tokio::time::timeout(state.response_timeout, sender.try_send_request(req)).await {
                Ok(Ok(resp)) => {
                    outcome = Some((addr, sender, resp));
                    break 'endpoints;
                }
                Ok(Err(mut e)) => match e.take_message() {
                    // Not sent (the connection was closing): another connection.
                    Some(r) => {
                        req = r;
                        if fresh {
                            failures.push(format!("{addr}: {}", e.error()));
                            continue 'endpoints;
                        }
                    }
                    None => {
                        let e = e.into_error();
                        tracing::warn!(backend = %backend.name, %addr, error = %e, "upstream failed");
                        return error_page(
                            StatusCode::BAD_GATEWAY,
                            Some(&format!("{}: {addr}: {e}", backend.name)),
                        );
                    }
                },
                Err(_) => {
                    return error_page(
                        StatusCode::GATEWAY_TIMEOUT,
                        Some(&format!(
                            "{}: {addr} sent no response in {:?}",
                            backend.name, state.response_timeout
                        )),
                    );
                }
            }
        }
    }
    let Some((addr, mut sender, mut resp)) = outcome else {
        tracing::warn!(backend = %backend.name, failures = ?failures, "no endpoint accepted the connection");
        return error_page(
            StatusCode::BAD_GATEWAY,
            Some(&format!("{}: {}", backend.name, failures.join("; "))),
        );
    };
    if !wants_upgrade {
        // Back to the pool once the response body has been read.
        let pool = state.pool.clone();
        let key = (addr, backend.tls);
        tokio::spawn(async move {
            if let Ok(Ok(())) = tokio::time::timeout(POOL_WAIT, sender.ready()).await {
                pool.put(key, sender);
            }
        });
    }
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok((c, u)) => {
                        let mut c = TokioIo::new(c);
                        let mut u = TokioIo::new(u);
                        let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                    }
                    Err(e) => tracing::debug!(%addr, error = %e, "upgrade failed"),
                }
            });
        }
    } else {
        strip_hop_by_hop(resp.headers_mut());
    }
    resp.map(|b| b.boxed())
}

/// A small HTML page in nginx's style; `detail` goes into a comment-free
/// paragraph so `curl` users see why.
pub fn error_page(status: StatusCode, detail: Option<&str>) -> Response<Body> {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let detail = detail
        .map(|d| format!("<p>{}</p>\r\n", html_escape(d)))
        .unwrap_or_default();
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n{detail}<hr><center>minik-ingress</center>\r\n</body>\r\n</html>\r\n"
    );
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_headers_replace_and_strip() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("hello.local"));
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        let out = forwarded_headers(
            h,
            "10.0.0.9:5555".parse().unwrap(),
            "http",
            "hello.local",
            80,
        );
        assert_eq!(out["host"], "hello.local");
        assert_eq!(out["x-forwarded-for"], "10.0.0.9");
        assert_eq!(out["x-real-ip"], "10.0.0.9");
        assert_eq!(out["x-forwarded-host"], "hello.local");
        assert_eq!(out["x-forwarded-proto"], "http");
        assert_eq!(out["x-forwarded-port"], "80");
        assert_eq!(out["accept"], "*/*");
        assert!(!out.contains_key("connection"));
        assert!(!out.contains_key("x-secret"));
        assert!(!out.contains_key("keep-alive"));
    }

    #[test]
    fn upgrade_headers_survive() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Upgrade"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        let out = forwarded_headers(h, "[::ffff:10.0.0.1]:1".parse().unwrap(), "https", "h", 443);
        assert_eq!(out["upgrade"], "websocket");
        assert_eq!(out["connection"], "upgrade");
        // v4-mapped addresses are shown as IPv4
        assert_eq!(out["x-forwarded-for"], "10.0.0.1");
        // no Host header from the client: the authority is used
        assert_eq!(out["host"], "h");
    }

    #[test]
    fn redirect_keeps_path_and_query_drops_port() {
        let uri: Uri = "/a/b?c=d".parse().unwrap();
        let r = redirect_to_https("Secure.local:80", &uri);
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(r.headers()["location"], "https://secure.local/a/b?c=d");
    }

    #[test]
    fn error_pages_escape_details() {
        let r = error_page(StatusCode::SERVICE_UNAVAILABLE, Some("<svc>"));
        assert_eq!(r.status(), 503);
    }
}
