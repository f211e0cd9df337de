//! Forwarding one HTTP request to a backend and streaming the answer back:
//! what API aggregation (an APIService's Service), `nodes/proxy` (the
//! kubelet), `services/proxy` and `pods/proxy` share. Bodies stream both
//! ways (watches through an aggregated API work), the query string is kept,
//! hop-by-hop headers are dropped. HTTPS verifies the backend against a CA
//! bundle, or not at all when the caller says so (insecureSkipTLSVerify,
//! and the service/pod proxy, which kube does not verify either).

use crate::error::ApiError;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// How to speak to the backend.
#[derive(Clone)]
pub enum Scheme {
    Http,
    /// TLS, verified against `ca` (PEM) for `server_name`, or unverified when `ca` is None.
    Https {
        ca: Option<Vec<u8>>,
        server_name: String,
    },
}

/// Where a request goes.
#[derive(Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub scheme: Scheme,
}

/// Why a backend could not be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("connecting to {0} timed out after 10s")]
    Timeout(String),
    #[error("the TLS handshake with {0} failed: {1}")]
    Tls(String, std::io::Error),
    #[error("the CA bundle could not be used: {0}")]
    CaBundle(String),
    #[error("{0} is not a valid TLS server name")]
    ServerName(String),
    #[error("HTTP exchange with {0} failed: {1}")]
    Http(String, hyper::Error),
    #[error("building the request failed: {0}")]
    Request(#[from] http::Error),
}

impl From<UpstreamError> for ApiError {
    fn from(e: UpstreamError) -> ApiError {
        ApiError::service_unavailable(format!(
            "{e}; check that the backend is running and reachable"
        ))
    }
}

/// Accepts any certificate (insecureSkipTLSVerify).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config(ca: Option<&[u8]>) -> Result<rustls::ClientConfig, UpstreamError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| UpstreamError::CaBundle(e.to_string()))?;
    let mut cfg = match ca {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &pem[..])
                .collect::<Result<_, _>>()
                .map_err(|e| UpstreamError::CaBundle(e.to_string()))?;
            if certs.is_empty() {
                return Err(UpstreamError::CaBundle(
                    "it holds no PEM certificate (expected base64 of a `BEGIN CERTIFICATE` block)"
                        .into(),
                ));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| UpstreamError::CaBundle(e.to_string()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Headers that belong to one connection, not to the request.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "host"
    )
}

/// Sends `method path_and_query` with `headers` and `body` to the target and
/// returns its answer as a streaming response.
pub async fn forward(
    target: &Target,
    method: Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, UpstreamError> {
    let addr = format!("{}:{}", target.host, target.port);
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect((target.host.as_str(), target.port)),
    )
    .await
    .map_err(|_| UpstreamError::Timeout(addr.clone()))?
    .map_err(|e| UpstreamError::Connect(addr.clone(), e))?;
    let mut req = http::Request::builder().method(method).uri(path_and_query);
    for (k, v) in headers.iter().filter(|(k, _)| !hop_by_hop(k)) {
        req = req.header(k, v);
    }
    let host = match &target.scheme {
        Scheme::Https { server_name, .. } => format!("{server_name}:{}", target.port),
        Scheme::Http => addr.clone(),
    };
    req = req.header(header::HOST, host);
    let req = req.body(body)?;
    let resp = match &target.scheme {
        Scheme::Http => send(TokioIo::new(tcp), req, &addr).await?,
        Scheme::Https { ca, server_name } => {
            let cfg = client_config(ca.as_deref())?;
            let name = ServerName::try_from(server_name.clone())
                .map_err(|_| UpstreamError::ServerName(server_name.clone()))?;
            let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
                .connect(name, tcp)
                .await
                .map_err(|e| UpstreamError::Tls(addr.clone(), e))?;
            send(TokioIo::new(tls), req, &addr).await?
        }
    };
    let (parts, body) = resp.into_parts();
    let mut out = Response::new(Body::new(body.map_err(axum::Error::new)));
    *out.status_mut() = parts.status;
    for (k, v) in parts.headers.iter().filter(|(k, _)| !hop_by_hop(k)) {
        out.headers_mut().append(k, v.clone());
    }
    Ok(out)
}

async fn send<IO>(
    io: IO,
    req: http::Request<Body>,
    addr: &str,
) -> Result<http::Response<hyper::body::Incoming>, UpstreamError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| UpstreamError::Http(addr.to_string(), e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("upstream connection ended: {e}");
        }
    });
    sender
        .send_request(req)
        .await
        .map_err(|e| UpstreamError::Http(addr.to_string(), e))
}

/// GETs a JSON document (discovery) with a deadline.
pub async fn get_json(target: &Target, path: &str, headers: &HeaderMap) -> Result<Value, String> {
    let fut = async {
        let resp = forward(target, Method::GET, path, headers, Body::empty())
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
            .await
            .map_err(|e| format!("reading the answer failed: {e}"))?;
        if status != StatusCode::OK {
            return Err(format!(
                "GET {path} answered {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).trim()
            ));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("GET {path} is not JSON: {e}"))
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| format!("GET {path} timed out after 10s"))?
}

/// The request headers passed on to a backend: the client's, minus its
/// credentials and any identity headers it tried to set itself.
pub fn forwarded_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (k, v) in headers {
        let n = k.as_str();
        if n == "authorization" || n.starts_with("x-remote-") || n.starts_with("impersonate-") {
            continue;
        }
        out.append(k, v.clone());
    }
    out
}

/// Adds `X-Remote-User` / `X-Remote-Group` (requestheader authentication).
pub fn add_identity(headers: &mut HeaderMap, user: &str, groups: &[String]) {
    if let Ok(v) = HeaderValue::from_str(user) {
        headers.insert("x-remote-user", v);
    }
    for g in groups {
        if let Ok(v) = HeaderValue::from_str(g) {
            headers.append("x-remote-group", v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_headers_replace_what_the_client_sent() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer secret"));
        h.insert("x-remote-user", HeaderValue::from_static("mallory"));
        h.insert("accept", HeaderValue::from_static("application/json"));
        let mut out = forwarded_headers(&h);
        add_identity(
            &mut out,
            "alice",
            &["dev".into(), "system:authenticated".into()],
        );
        assert!(out.get("authorization").is_none());
        assert_eq!(out.get("x-remote-user").unwrap(), "alice");
        assert_eq!(out.get_all("x-remote-group").iter().count(), 2);
        assert_eq!(out.get("accept").unwrap(), "application/json");
        assert!(hop_by_hop(&header::CONNECTION) && !hop_by_hop(&header::ACCEPT));
    }

    #[test]
    fn ca_bundles_must_hold_certificates() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        assert!(matches!(
            client_config(Some(b"junk")),
            Err(UpstreamError::CaBundle(_))
        ));
        assert!(client_config(None).is_ok());
    }
}
