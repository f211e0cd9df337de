//! TLS on port 443: the certificate for each server name (SNI) from the
//! `kubernetes.io/tls` Secrets our Ingresses name in `spec.tls`, and a
//! self-signed default certificate (made at start with rcgen, as
//! ingress-nginx's "Fake Certificate") for every other name. Owns PEM
//! parsing and the rustls certificate resolver; the set of certificates is
//! swapped whole on every reload, so open connections are not touched.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::routes::{normalize_host, Table};

/// What the default certificate says it is (ingress-nginx's wording).
pub const DEFAULT_CERT_CN: &str = "Kubernetes Ingress Controller Fake Certificate";

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("secret {0}: no tls.crt / tls.key (a TLS secret is made with `kubectl create secret tls NAME --cert=FILE --key=FILE`)")]
    MissingData(String),
    #[error("secret {secret}: tls.crt holds no PEM certificate{detail}")]
    NoCertificate { secret: String, detail: String },
    #[error("secret {secret}: tls.key holds no PEM private key{detail}")]
    NoKey { secret: String, detail: String },
    #[error("secret {secret}: the key in tls.key is not usable: {source}")]
    BadKey {
        secret: String,
        source: rustls::Error,
    },
    #[error("making the default self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The ring provider (the workspace's choice; rustls is also built with
/// aws-lc-rs here, so nothing may rely on a process default).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain and key from PEM text (a Secret's tls.crt / tls.key).
pub fn certified_key(
    secret: &str,
    crt_pem: &[u8],
    key_pem: &[u8],
) -> Result<CertifiedKey, CertError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &crt_pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::NoCertificate {
            secret: secret.into(),
            detail: format!(": {e}"),
        })?;
    if certs.is_empty() {
        return Err(CertError::NoCertificate {
            secret: secret.into(),
            detail: String::new(),
        });
    }
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| CertError::NoKey {
            secret: secret.into(),
            detail: format!(": {e}"),
        })?
        .ok_or_else(|| CertError::NoKey {
            secret: secret.into(),
            detail: String::new(),
        })?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|source| CertError::BadKey {
            secret: secret.into(),
            source,
        })?;
    Ok(CertifiedKey::new(certs, signing))
}

/// The self-signed certificate served when no Secret matches.
pub fn default_certificate() -> Result<CertifiedKey, CertError> {
    let mut params = rcgen::CertificateParams::new(vec!["ingress.local".to_string()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Acme Co");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, DEFAULT_CERT_CN);
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    certified_key(
        "(default)",
        cert.pem().as_bytes(),
        key.serialize_pem().as_bytes(),
    )
}

/// Certificates by server name, built from the routing table's `tls` map.
#[derive(Debug, Default)]
pub struct CertSet {
    /// Exact names and `*.domain` patterns (lower case).
    by_name: BTreeMap<String, Arc<CertifiedKey>>,
}

impl CertSet {
    /// `lookup(namespace, secret)` gives a Secret's (tls.crt, tls.key); a
    /// Secret that is missing or bad leaves its hosts on the default
    /// certificate, and is reported in the returned warnings.
    pub fn build(
        table: &Table,
        mut lookup: impl FnMut(&str, &str) -> Option<(Vec<u8>, Vec<u8>)>,
    ) -> (CertSet, Vec<String>) {
        let mut parsed: BTreeMap<(String, String), Option<Arc<CertifiedKey>>> = BTreeMap::new();
        let mut warnings = Vec::new();
        let mut set = CertSet::default();
        for (host, r) in &table.tls {
            let id = (r.namespace.clone(), r.secret.clone());
            let ck = parsed.entry(id).or_insert_with(|| {
                let name = format!("{}/{}", r.namespace, r.secret);
                match lookup(&r.namespace, &r.secret) {
                    None => {
                        warnings.push(format!(
                            "secret {name} (TLS for {host}) not found or not of type kubernetes.io/tls; serving the default certificate"
                        ));
                        None
                    }
                    Some((crt, key)) => match certified_key(&name, &crt, &key) {
                        Ok(ck) => Some(Arc::new(ck)),
                        Err(e) => {
                            warnings.push(format!("{e}; serving the default certificate"));
                            None
                        }
                    },
                }
            });
            if let Some(ck) = ck {
                set.by_name.insert(host.clone(), ck.clone());
            }
        }
        (set, warnings)
    }

    /// The certificate for a server name: exact, else `*.domain`.
    pub fn get(&self, server_name: &str) -> Option<&Arc<CertifiedKey>> {
        let h = normalize_host(server_name);
        self.by_name.get(&h).or_else(|| {
            h.split_once('.')
                .and_then(|(_, d)| self.by_name.get(&format!("*.{d}")))
        })
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// The rustls resolver: reads the current `CertSet` at each handshake.
#[derive(Debug)]
pub struct Resolver {
    pub certs: RwLock<Arc<CertSet>>,
    pub default: Arc<CertifiedKey>,
}

impl Resolver {
    pub fn new(default: CertifiedKey) -> Resolver {
        Resolver {
            certs: RwLock::new(Arc::new(CertSet::default())),
            default: Arc::new(default),
        }
    }

    pub fn replace(&self, set: CertSet) {
        *self.certs.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
    }

    fn pick(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        let set = self.certs.read().unwrap_or_else(|p| p.into_inner()).clone();
        server_name
            .and_then(|n| set.get(n).cloned())
            .unwrap_or_else(|| self.default.clone())
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

/// The server config for port 443: TLS 1.2/1.3, HTTP/1.1 by ALPN.
pub fn server_config(resolver: Arc<Resolver>) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc as A;

    fn self_signed(host: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![host.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn table() -> Table {
        let ing: k8s_openapi::api::networking::v1::Ingress = serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": "i"},
            "spec": {"tls": [
                {"hosts": ["secure.local"], "secretName": "good"},
                {"hosts": ["*.wild.local"], "secretName": "good"},
                {"hosts": ["broken.local"], "secretName": "broken"},
                {"hosts": ["missing.local"], "secretName": "missing"}
            ]}
        }))
        .unwrap();
        Table::build(&[A::new(ing)], &[], &[])
    }

    #[test]
    fn secrets_become_certificates_by_sni() {
        let (crt, key) = self_signed("secure.local");
        let (set, warnings) = CertSet::build(&table(), |ns, name| match (ns, name) {
            ("default", "good") => Some((crt.clone().into_bytes(), key.clone().into_bytes())),
            ("default", "broken") => Some((b"not pem".to_vec(), key.clone().into_bytes())),
            _ => None,
        });
        assert_eq!(set.len(), 2, "{warnings:?}");
        assert!(set.get("secure.local").is_some());
        assert!(set.get("SECURE.local").is_some());
        assert!(set.get("a.wild.local").is_some());
        assert!(set.get("a.b.wild.local").is_none());
        assert!(set.get("broken.local").is_none());
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings
            .iter()
            .any(|w| w.contains("default/broken") && w.contains("no PEM certificate")));
        assert!(warnings
            .iter()
            .any(|w| w.contains("default/missing") && w.contains("not found")));
    }

    #[test]
    fn resolver_falls_back_to_the_default_certificate() {
        let (crt, key) = self_signed("secure.local");
        let r = Resolver::new(default_certificate().unwrap());
        let (set, _) = CertSet::build(&table(), |_, _| {
            Some((crt.clone().into_bytes(), key.clone().into_bytes()))
        });
        r.replace(set);
        let secure = r.pick(Some("secure.local"));
        assert!(!A::ptr_eq(&secure, &r.default));
        assert!(A::ptr_eq(&r.pick(Some("other.local")), &r.default));
        assert!(A::ptr_eq(&r.pick(None), &r.default));
        assert!(server_config(A::new(r)).is_ok());
    }

    #[test]
    fn key_errors_say_which_secret() {
        let (crt, _) = self_signed("x");
        let e = certified_key("ns/s", crt.as_bytes(), b"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ns/s") && e.contains("tls.key"), "{e}");
    }
}
