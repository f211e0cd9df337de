//! Dashboard configuration: where to listen, which API server to talk to and
//! with which credentials (a ServiceAccount token in the cluster, the admin
//! client certificate on the host). Owns reading the in-cluster files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where a pod finds its ServiceAccount credentials.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How the dashboard authenticates to the API server.
#[derive(Clone)]
pub enum ApiAuth {
    /// A bearer token (in-cluster: the pod's ServiceAccount token).
    Token {
        token: String,
        /// The cluster CA that signed the API server's certificate.
        ca_pem: String,
        /// When set, the token is re-read from this file at most once a
        /// minute (projected ServiceAccount tokens are rotated by the kubelet).
        token_file: Option<PathBuf>,
    },
    /// A client certificate (host-side use with the admin certificate).
    ClientCert {
        ca_pem: String,
        cert_pem: String,
        key_pem: String,
    },
}

impl std::fmt::Debug for ApiAuth {
    // never print secrets
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiAuth::Token { token_file, .. } => f
                .debug_struct("Token")
                .field("token", &"<redacted>")
                .field("token_file", token_file)
                .finish(),
            ApiAuth::ClientCert { .. } => f.write_str("ClientCert { <redacted> }"),
        }
    }
}

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// Address the web UI listens on (host use: keep it on 127.0.0.1).
    pub listen: SocketAddr,
    /// Base URL of the API server, `https://host:port`.
    pub api_server: String,
    pub auth: ApiAuth,
}

/// Why a configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {err} (is the dashboard running in a pod with a ServiceAccount token mounted?)")]
    Read { path: PathBuf, err: std::io::Error },
    #[error(
        "{0} is not set: run the dashboard in a pod, or give it an API server URL and credentials"
    )]
    MissingEnv(&'static str),
    #[error("the ServiceAccount token in {0} is empty")]
    EmptyToken(PathBuf),
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
        path: path.to_path_buf(),
        err,
    })
}

/// Reads a ServiceAccount token file (trimmed; empty is an error).
pub(crate) fn read_token(path: &Path) -> Result<String, ConfigError> {
    let token = read(path)?.trim().to_string();
    if token.is_empty() {
        return Err(ConfigError::EmptyToken(path.to_path_buf()));
    }
    Ok(token)
}

/// `https://host:port`, bracketing IPv6 literals.
pub fn api_url(host: &str, port: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("https://[{host}]:{port}")
    } else {
        format!("https://{host}:{port}")
    }
}

/// The configuration of a dashboard running in a pod: the API server from
/// `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`, the token and CA
/// from the mounted ServiceAccount.
pub fn in_cluster(listen: SocketAddr) -> Result<DashboardConfig, ConfigError> {
    in_cluster_from(
        listen,
        Path::new(SERVICE_ACCOUNT_DIR),
        std::env::var("KUBERNETES_SERVICE_HOST").ok(),
        std::env::var("KUBERNETES_SERVICE_PORT").ok(),
    )
}

pub(crate) fn in_cluster_from(
    listen: SocketAddr,
    dir: &Path,
    host: Option<String>,
    port: Option<String>,
) -> Result<DashboardConfig, ConfigError> {
    let host = host
        .filter(|h| !h.is_empty())
        .ok_or(ConfigError::MissingEnv("KUBERNETES_SERVICE_HOST"))?;
    let port = port
        .filter(|p| !p.is_empty())
        .ok_or(ConfigError::MissingEnv("KUBERNETES_SERVICE_PORT"))?;
    let token_file = dir.join("token");
    let token = read_token(&token_file)?;
    let ca_pem = read(&dir.join("ca.crt"))?;
    Ok(DashboardConfig {
        listen,
        api_server: api_url(&host, &port),
        auth: ApiAuth::Token {
            token,
            ca_pem,
            token_file: Some(token_file),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_url_brackets_ipv6() {
        assert_eq!(api_url("10.96.0.1", "443"), "https://10.96.0.1:443");
        assert_eq!(api_url("fd00::1", "443"), "https://[fd00::1]:443");
    }

    #[test]
    fn in_cluster_reads_token_and_ca() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "abc.def\n").unwrap();
        std::fs::write(dir.path().join("ca.crt"), "PEM").unwrap();
        let listen = "127.0.0.1:9090".parse().unwrap();
        let cfg = in_cluster_from(
            listen,
            dir.path(),
            Some("10.96.0.1".into()),
            Some("443".into()),
        )
        .unwrap();
        assert_eq!(cfg.api_server, "https://10.96.0.1:443");
        match cfg.auth {
            ApiAuth::Token { token, ca_pem, .. } => {
                assert_eq!(token, "abc.def");
                assert_eq!(ca_pem, "PEM");
            }
            other => panic!("unexpected auth {other:?}"),
        }
        let err = in_cluster_from(listen, dir.path(), None, Some("443".into())).unwrap_err();
        assert!(err.to_string().contains("KUBERNETES_SERVICE_HOST"));
        std::fs::write(dir.path().join("token"), "  \n").unwrap();
        let err =
            in_cluster_from(listen, dir.path(), Some("h".into()), Some("1".into())).unwrap_err();
        assert!(matches!(err, ConfigError::EmptyToken(_)));
    }
}
