//! TLS for the secure port: a rustls server config that asks for a client
//! certificate signed by the cluster CA (CN = user, O = groups, as
//! kube-apiserver's x509 authenticator reads them). Connections without a
//! certificate are accepted at the TLS layer and answered 401 by the HTTP
//! layer, so bearer tokens can be added later without touching this.

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::sync::Arc;

/// Why the TLS material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "no certificate found in the {0} PEM: check the file holds a `BEGIN CERTIFICATE` block"
    )]
    NoCert(&'static str),
    #[error("no private key found in the server key PEM: expected a PKCS#8, PKCS#1 or SEC1 key")]
    NoKey,
    #[error("cannot parse the {what} PEM: {err}")]
    Pem {
        what: &'static str,
        err: std::io::Error,
    },
    #[error("the TLS configuration was refused: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("the client CA could not be used: {0}")]
    Verifier(String),
}

/// The identity of the client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    pub fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }
}

/// How a request over the secure port authenticated.
#[derive(Debug, Clone)]
pub enum Authn {
    User(UserInfo),
    Anonymous,
}

fn certs(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|err| TlsError::Pem { what, err })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(what));
    }
    Ok(certs)
}

/// Builds the rustls server config (ring provider; HTTP/2 and HTTP/1.1).
pub fn server_config(
    ca_cert_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca_cert_pem, "CA certificate")? {
        roots.add(c).map_err(TlsError::Rustls)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let chain = certs(cert_pem, "server certificate")?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|err| TlsError::Pem {
            what: "server key",
            err,
        })?
        .ok_or(TlsError::NoKey)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// CN and O of a (verified) client certificate.
pub fn user_from_cert(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(String::from))
        .collect();
    Some(UserInfo { name, groups })
}
