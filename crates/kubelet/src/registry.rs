//! Registry pulls: owns talking to container registries (Docker Registry
//! HTTP API v2 / OCI distribution) and turning what they serve into image
//! store records. Our own small client on reqwest:
//!
//! - references are normalized by [`ImageRef`] (`nginx` →
//!   `docker.io/library/nginx:latest`; `docker.io` is served by
//!   `registry-1.docker.io`); pull by tag or by digest (`name@sha256:…`);
//! - manifests: Docker v2 schema 2 and OCI image manifests, Docker manifest
//!   lists and OCI indexes (the entry for this host's linux architecture is
//!   picked); every manifest and blob is checked against its sha256 digest;
//! - layers (tar or tar+gzip; zstd is refused with a clear message) are
//!   unpacked once into `layers/<hex of the blob digest>` by
//!   [`crate::archive::unpack_layer`] — the same code and whiteout handling
//!   as `minik image load` — and shared by every image that lists them;
//! - auth: a `401` with `WWW-Authenticate: Bearer realm=…,service=…,scope=…`
//!   gets a token from the realm (with basic credentials when we have them),
//!   `WWW-Authenticate: Basic` gets basic credentials; credentials come from
//!   the pod's imagePullSecrets ([`parse_pull_secret`]);
//! - plain http for `localhost`/`127.0.0.1`/`[::1]` registries, https
//!   (system CA bundle; `SSL_CERT_FILE` works) for every other;
//! - concurrent pulls of the same reference (same store, same credentials)
//!   share one download ([`pull`]).

use crate::archive::unpack_layer;
use crate::images::{ImageConfig, ImageError, ImageRecord, ImageRef, ImageStore};
use base64::Engine;
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MT_DOCKER_V1: &str = "application/vnd.docker.distribution.manifest.v1";

/// Manifests and image configs larger than this are refused.
const MAX_DOCUMENT: usize = 8 << 20;
/// Layers downloaded at once per pull.
const PARALLEL_LAYERS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("cannot reach the registry {registry}: {reason}; check the registry address and that it is running")]
    Unreachable { registry: String, reason: String },
    #[error("pull access denied for {image}: the registry answered 401 Unauthorized {hint}")]
    Unauthorized { image: String, hint: String },
    #[error("{image}: not found (the registry answered 404 for {what}); check the repository name and tag")]
    NotFound { image: String, what: String },
    #[error("the registry answered {status} for {url}: {body}")]
    Status {
        status: u16,
        url: String,
        body: String,
    },
    #[error("{what} of {image} does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        image: String,
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{image}: {reason}")]
    Unsupported { image: String, reason: String },
    #[error("{image}: the registry sent an invalid {what}: {reason}")]
    Invalid {
        image: String,
        what: String,
        reason: String,
    },
    #[error("{image}: no manifest for {platform} in the manifest list (it has: {available})")]
    NoPlatform {
        image: String,
        platform: String,
        available: String,
    },
    #[error("image pull task failed: {0}")]
    Task(String),
}

/// Username and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

/// Credentials by registry host (normalized by [`normalize_registry_key`]).
pub type Keyring = Vec<(String, Credentials)>;

/// `https://index.docker.io/v1/` → `docker.io`; `http://127.0.0.1:5000/v2/`
/// → `127.0.0.1:5000`; `quay.io` → `quay.io`. Pure.
pub fn normalize_registry_key(key: &str) -> String {
    let k = key.trim();
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    let host = k.split('/').next().unwrap_or("").to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    }
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    auth: Option<String>,
}

/// The credentials in one imagePullSecret: `kubernetes.io/dockerconfigjson`
/// (`.dockerconfigjson` = `{"auths": {host: {...}}}`) or
/// `kubernetes.io/dockercfg` (`.dockercfg` = `{host: {...}}`). An entry has
/// `username`+`password` or `auth` = base64(`user:password`). Pure.
pub fn parse_pull_secret(
    secret_type: &str,
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<Keyring, String> {
    let (key, nested) = match secret_type {
        "kubernetes.io/dockerconfigjson" => (".dockerconfigjson", true),
        "kubernetes.io/dockercfg" => (".dockercfg", false),
        other => {
            return Err(format!(
                "has type {other:?}; an imagePullSecret must be kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg"
            ))
        }
    };
    let raw = data.get(key).ok_or_else(|| format!("has no {key} key"))?;
    let v: serde_json::Value =
        serde_json::from_slice(raw).map_err(|e| format!("{key} is not JSON: {e}"))?;
    let auths = if nested { &v["auths"] } else { &v };
    let obj = auths
        .as_object()
        .ok_or_else(|| format!("{key} has no registry entries"))?;
    let mut out = Vec::new();
    for (host, entry) in obj {
        let e: AuthEntry = serde_json::from_value(entry.clone()).unwrap_or_default();
        let (user, pass) = match (e.username, e.password, e.auth) {
            (Some(u), Some(p), _) if !u.is_empty() => (u, p),
            (_, _, Some(a)) if !a.is_empty() => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(a.trim())
                    .map_err(|e| format!("the auth of {host:?} is not base64: {e}"))?;
                let s = String::from_utf8(decoded)
                    .map_err(|_| format!("the auth of {host:?} is not UTF-8"))?;
                let (u, p) = s
                    .split_once(':')
                    .ok_or_else(|| format!("the auth of {host:?} is not user:password"))?;
                (u.to_string(), p.to_string())
            }
            _ => continue,
        };
        out.push((
            normalize_registry_key(host),
            Credentials {
                username: user,
                password: pass,
            },
        ));
    }
    Ok(out)
}

/// The first credentials for `registry` (already normalized, e.g. `docker.io`).
pub fn credentials_for<'a>(keyring: &'a Keyring, registry: &str) -> Option<&'a Credentials> {
    keyring.iter().find(|(h, _)| h == registry).map(|(_, c)| c)
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic,
}

/// Parses `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"`
/// or `Basic realm="Registry Realm"`. Pure.
pub fn parse_www_authenticate(header: &str) -> Option<Challenge> {
    let h = header.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = BTreeMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let Some((k, after)) = s.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            // Quoted string with backslash escapes.
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            (v, &q[end.min(q.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(k, v);
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        }),
        "basic" => Some(Challenge::Basic),
        _ => None,
    }
}

/// A content descriptor in a manifest or index.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

/// What a manifest request returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// A Docker manifest list or OCI index.
    Index(Vec<Descriptor>),
    /// A Docker v2 schema 2 or OCI image manifest.
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

/// Parses a manifest body; the kind comes from the `Content-Type` header,
/// else the body's `mediaType`, else its shape. Pure.
pub fn parse_manifest(content_type: Option<&str>, body: &[u8]) -> Result<Manifest, String> {
    let raw: RawManifest =
        serde_json::from_slice(body).map_err(|e| format!("not a JSON manifest: {e}"))?;
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .filter(|c| !c.is_empty() && c != "application/json" && c != "text/plain");
    let mt = ct.or(raw.media_type.clone()).unwrap_or_default();
    if mt.starts_with(MT_DOCKER_V1) || raw.schema_version == Some(1) {
        return Err("Docker schema 1 manifests are not supported (deprecated since 2017); push the image again with a current tool".into());
    }
    let is_index = mt == MT_OCI_INDEX
        || mt == MT_DOCKER_LIST
        || (mt.is_empty() && raw.manifests.is_some() && raw.layers.is_none());
    if is_index {
        return Ok(Manifest::Index(raw.manifests.unwrap_or_default()));
    }
    if !mt.is_empty() && mt != MT_OCI_MANIFEST && mt != MT_DOCKER_MANIFEST {
        return Err(format!(
            "unsupported manifest media type {mt:?} (expected an OCI or Docker v2 image manifest or index)"
        ));
    }
    match (raw.config, raw.layers) {
        (Some(config), Some(layers)) => Ok(Manifest::Image { config, layers }),
        _ => Err("the image manifest has no config or no layers".into()),
    }
}

/// This host's architecture in OCI terms (`amd64`, `arm64`, …).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// The index entry for `os`/`arch` (attestation manifests, whose platform
/// is `unknown/unknown`, never match). Pure.
pub fn pick_platform<'a>(
    entries: &'a [Descriptor],
    os: &str,
    arch: &str,
) -> Option<&'a Descriptor> {
    entries.iter().find(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == os && p.architecture == arch)
    })
}

/// `sha256:<64 hex>` → the hex; anything else is refused. Pure.
pub fn sha256_hex_of(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()))
    .then_some(hex)
}

/// The base URL of a registry's API: http for loopback names, https else;
/// `docker.io` is served by `registry-1.docker.io`. Pure.
pub fn registry_base(registry: &str) -> String {
    let host = if registry == "docker.io" {
        "registry-1.docker.io"
    } else {
        registry
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    let insecure = matches!(name, "localhost" | "127.0.0.1" | "::1") || name.starts_with("127.");
    format!("{}://{host}", if insecure { "http" } else { "https" })
}

/// Outcome of a pull.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub record: ImageRecord,
    /// Sum of the manifest's blob sizes (compressed), what "Image size" says.
    pub size: u64,
    /// Bytes actually downloaded (layers already present are skipped).
    pub downloaded: u64,
}

static HTTP: LazyLock<Result<reqwest::Client, String>> = LazyLock::new(|| {
    let builder = || {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(120))
            .user_agent(concat!("minik-kubelet/", env!("CARGO_PKG_VERSION")))
    };
    builder().build().or_else(|e| {
        // No CA bundle (a bare VM): loopback registries over http still work.
        tracing::warn!("registry client without system CAs ({e}); https registries will fail until SSL_CERT_FILE names a CA bundle");
        builder()
            .tls_certs_only(Vec::<reqwest::Certificate>::new())
            .build()
            .map_err(|e| format!("cannot build the registry HTTP client: {e}"))
    })
});

type SharedPull = Shared<BoxFuture<'static, Result<Pulled, Arc<PullError>>>>;
static INFLIGHT: LazyLock<Mutex<HashMap<String, SharedPull>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Pulls `reference` into `store` and returns its record. Concurrent calls
/// for the same store, reference and credentials share one pull; the work
/// runs on its own task, so a caller going away does not abort it.
pub async fn pull(
    store: &ImageStore,
    reference: &str,
    keyring: &Keyring,
) -> Result<Pulled, Arc<PullError>> {
    let r = ImageRef::parse(reference).map_err(|e| Arc::new(e.into()))?;
    let creds = credentials_for(keyring, &r.registry).cloned();
    let key = format!(
        "{}\n{}\n{}",
        store.dir().display(),
        r.full(),
        creds
            .as_ref()
            .map(|c| hex::encode(Sha256::digest(format!("{}:{}", c.username, c.password))))
            .unwrap_or_default()
    );
    let shared = {
        let mut map = INFLIGHT.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&key) {
            Some(s) => s.clone(),
            None => {
                let store = store.clone();
                let key2 = key.clone();
                let task = tokio::spawn(async move {
                    let res = pull_uncoalesced(&store, &r, creds).await.map_err(Arc::new);
                    INFLIGHT
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&key2);
                    res
                });
                let fut: BoxFuture<'static, Result<Pulled, Arc<PullError>>> = async move {
                    task.await
                        .unwrap_or_else(|e| Err(Arc::new(PullError::Task(e.to_string()))))
                }
                .boxed();
                let s = fut.shared();
                map.insert(key, s.clone());
                s
            }
        }
    };
    shared.await
}

/// One registry conversation for one repository.
struct Session {
    http: reqwest::Client,
    base: String,
    image: String,
    repository: String,
    creds: Option<Credentials>,
    authorization: Option<String>,
}

fn basic(c: &Credentials) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password))
    )
}

impl Session {
    fn unreachable(&self, e: reqwest::Error) -> PullError {
        let mut reason = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            reason.push_str(": ");
            reason.push_str(&s.to_string());
            src = s.source();
        }
        PullError::Unreachable {
            registry: self.base.clone(),
            reason,
        }
    }

    fn unauthorized(&self) -> PullError {
        PullError::Unauthorized {
            image: self.image.clone(),
            hint: if self.creds.is_some() {
                "(the credentials from the pod's imagePullSecrets were rejected; check the username and password in the Secret)".into()
            } else {
                "(no credentials for this registry: add an imagePullSecret of type kubernetes.io/dockerconfigjson to the pod)".into()
            },
        }
    }

    /// GET `path` (under `/v2/<repo>/`), answering one auth challenge.
    async fn get(
        &mut self,
        path: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, PullError> {
        let url = format!("{}/v2/{}/{path}", self.base, self.repository);
        for attempt in 0..2 {
            let mut req = self.http.get(&url);
            if let Some(a) = accept {
                req = req.header(reqwest::header::ACCEPT, a);
            }
            if let Some(a) = &self.authorization {
                req = req.header(reqwest::header::AUTHORIZATION, a);
            }
            let resp = req.send().await.map_err(|e| self.unreachable(e))?;
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED && attempt == 0 {
                let challenge = resp
                    .headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|h| h.to_str().ok())
                    .and_then(parse_www_authenticate);
                match challenge {
                    Some(c) => {
                        self.authorization = Some(self.authenticate(c).await?);
                        continue;
                    }
                    None => return Err(self.unauthorized()),
                }
            }
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED
                || resp.status() == reqwest::StatusCode::FORBIDDEN
            {
                return Err(self.unauthorized());
            }
            if resp.status() == reqwest::StatusCode::NOT_FOUND {
                return Err(PullError::NotFound {
                    image: self.image.clone(),
                    what: path.to_string(),
                });
            }
            if !resp.status().is_success() {
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                return Err(PullError::Status {
                    status,
                    url,
                    body: body.chars().take(300).collect(),
                });
            }
            return Ok(resp);
        }
        Err(self.unauthorized())
    }

    /// The `Authorization` value answering `c`.
    async fn authenticate(&self, c: Challenge) -> Result<String, PullError> {
        match c {
            Challenge::Basic => match &self.creds {
                Some(cr) => Ok(basic(cr)),
                None => Err(self.unauthorized()),
            },
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let scope = scope.unwrap_or_else(|| format!("repository:{}:pull", self.repository));
                let mut q: Vec<(&str, String)> = vec![("scope", scope)];
                if let Some(s) = service {
                    q.push(("service", s));
                }
                let query: String = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(q.iter().map(|(k, v)| (*k, v.as_str())))
                    .finish();
                let sep = if realm.contains('?') { '&' } else { '?' };
                let mut req = self.http.get(format!("{realm}{sep}{query}"));
                if let Some(cr) = &self.creds {
                    req = req.header(reqwest::header::AUTHORIZATION, basic(cr));
                }
                let resp = req.send().await.map_err(|e| self.unreachable(e))?;
                if resp.status() == reqwest::StatusCode::UNAUTHORIZED
                    || resp.status() == reqwest::StatusCode::FORBIDDEN
                {
                    return Err(self.unauthorized());
                }
                if !resp.status().is_success() {
                    return Err(PullError::Status {
                        status: resp.status().as_u16(),
                        url: realm,
                        body: resp
                            .text()
                            .await
                            .unwrap_or_default()
                            .chars()
                            .take(300)
                            .collect(),
                    });
                }
                #[derive(Deserialize)]
                struct Token {
                    #[serde(default)]
                    token: Option<String>,
                    #[serde(default)]
                    access_token: Option<String>,
                }
                let body = resp.bytes().await.map_err(|e| self.unreachable(e))?;
                let t: Token = serde_json::from_slice(&body).map_err(|e| PullError::Invalid {
                    image: self.image.clone(),
                    what: "token response".into(),
                    reason: e.to_string(),
                })?;
                let token = t
                    .token
                    .or(t.access_token)
                    .ok_or_else(|| PullError::Invalid {
                        image: self.image.clone(),
                        what: "token response".into(),
                        reason: "no token".into(),
                    })?;
                Ok(format!("Bearer {token}"))
            }
        }
    }

    /// A small document (manifest or config), size-limited.
    async fn document(
        &mut self,
        path: &str,
        accept: Option<&str>,
    ) -> Result<(Option<String>, Vec<u8>), PullError> {
        let resp = self.get(path, accept).await?;
        let ct = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string);
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.unreachable(e))?;
            body.extend_from_slice(&chunk);
            if body.len() > MAX_DOCUMENT {
                return Err(PullError::Invalid {
                    image: self.image.clone(),
                    what: path.to_string(),
                    reason: format!("larger than {MAX_DOCUMENT} bytes"),
                });
            }
        }
        Ok((ct, body))
    }

    /// GET a manifest; verifies it against `expected` when given. Returns it
    /// with its own digest.
    async fn manifest(
        &mut self,
        reference: &str,
        expected: Option<&str>,
    ) -> Result<(Manifest, String), PullError> {
        let accept = [
            MT_OCI_INDEX,
            MT_DOCKER_LIST,
            MT_OCI_MANIFEST,
            MT_DOCKER_MANIFEST,
        ]
        .join(", ");
        let (ct, body) = self
            .document(&format!("manifests/{reference}"), Some(&accept))
            .await?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        if let Some(exp) = expected {
            if exp != digest {
                return Err(PullError::DigestMismatch {
                    image: self.image.clone(),
                    what: "the manifest".into(),
                    expected: exp.to_string(),
                    actual: digest,
                });
            }
        }
        let m = parse_manifest(ct.as_deref(), &body).map_err(|reason| PullError::Unsupported {
            image: self.image.clone(),
            reason,
        })?;
        Ok((m, digest))
    }

    /// Streams a blob to `dest`, checking its digest; returns its size.
    async fn blob_to_file(&mut self, digest: &str, dest: &Path) -> Result<u64, PullError> {
        let resp = self.get(&format!("blobs/{digest}"), None).await?;
        let mut f = tokio::fs::File::create(dest).await.map_err(io_err(dest))?;
        let mut h = Sha256::new();
        let mut n = 0u64;
        let mut stream = resp.bytes_stream().map_err(|e| e.to_string());
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|reason| PullError::Unreachable {
                registry: self.base.clone(),
                reason: format!("downloading {digest}: {reason}"),
            })?;
            h.update(&chunk);
            n += chunk.len() as u64;
            f.write_all(&chunk).await.map_err(io_err(dest))?;
        }
        f.flush().await.map_err(io_err(dest))?;
        drop(f);
        let actual = format!("sha256:{}", hex::encode(h.finalize()));
        if actual != digest {
            let _ = tokio::fs::remove_file(dest).await;
            return Err(PullError::DigestMismatch {
                image: self.image.clone(),
                what: format!("the blob {digest}"),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(n)
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PullError + '_ {
    move |source| {
        PullError::Image(ImageError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    config: Option<ImageConfig>,
}

async fn pull_uncoalesced(
    store: &ImageStore,
    r: &ImageRef,
    creds: Option<Credentials>,
) -> Result<Pulled, PullError> {
    let http = HTTP
        .as_ref()
        .map_err(|e| PullError::Task(e.clone()))?
        .clone();
    let image = r.full();
    if let Some(d) = &r.digest {
        if sha256_hex_of(d).is_none() {
            return Err(PullError::Unsupported {
                image,
                reason: format!("digest {d:?} is not sha256:<64 lowercase hex digits>"),
            });
        }
    }
    let mut s = Session {
        http,
        base: registry_base(&r.registry),
        image: image.clone(),
        repository: r.repository.clone(),
        creds,
        authorization: None,
    };
    let top_ref = r
        .digest
        .clone()
        .or_else(|| r.tag.clone())
        .unwrap_or_else(|| "latest".into());
    let (top, top_digest) = s.manifest(&top_ref, r.digest.as_deref()).await?;
    let (config, layers) = match top {
        Manifest::Image { config, layers } => (config, layers),
        Manifest::Index(entries) => {
            let arch = host_arch();
            let Some(d) = pick_platform(&entries, "linux", arch) else {
                let available = entries
                    .iter()
                    .filter_map(|e| e.platform.as_ref())
                    .map(|p| format!("{}/{}", p.os, p.architecture))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(PullError::NoPlatform {
                    image,
                    platform: format!("linux/{arch}"),
                    available,
                });
            };
            let digest = d.digest.clone();
            match s.manifest(&digest, Some(&digest)).await? {
                (Manifest::Image { config, layers }, _) => (config, layers),
                (Manifest::Index(_), _) => {
                    return Err(PullError::Unsupported {
                        image,
                        reason: "a manifest list entry is itself a list".into(),
                    })
                }
            }
        }
    };
    for d in std::iter::once(&config).chain(layers.iter()) {
        if sha256_hex_of(&d.digest).is_none() {
            return Err(PullError::Unsupported {
                image,
                reason: format!("blob digest {:?} is not sha256", d.digest),
            });
        }
        if d.media_type.contains("zstd") {
            return Err(PullError::Unsupported {
                image,
                reason: format!(
                    "layer {} is zstd-compressed ({}); minik unpacks tar and tar+gzip layers: push the image with gzip compression",
                    d.digest, d.media_type
                ),
            });
        }
    }
    // Config: small, read into memory, digest-checked.
    let (_, cfg_bytes) = s
        .document(&format!("blobs/{}", config.digest), None)
        .await?;
    let cfg_digest = format!("sha256:{}", hex::encode(Sha256::digest(&cfg_bytes)));
    if cfg_digest != config.digest {
        return Err(PullError::DigestMismatch {
            image,
            what: "the image config".into(),
            expected: config.digest.clone(),
            actual: cfg_digest,
        });
    }
    let cfg: ConfigFile = serde_json::from_slice(&cfg_bytes).map_err(|e| PullError::Invalid {
        image: image.clone(),
        what: "image config".into(),
        reason: e.to_string(),
    })?;

    // Layers: download the missing ones (a few at a time), unpack once.
    let tmp_dir = store.dir().join(".pull-tmp");
    tokio::fs::create_dir_all(&tmp_dir)
        .await
        .map_err(io_err(&tmp_dir))?;
    let size: u64 = config.size + layers.iter().map(|l| l.size).sum::<u64>();
    let layer_ids: Vec<String> = layers
        .iter()
        .map(|l| sha256_hex_of(&l.digest).unwrap_or_default().to_string())
        .collect();
    let missing: Vec<Descriptor> = {
        let mut seen = std::collections::HashSet::new();
        layers
            .iter()
            .filter(|l| {
                let id = sha256_hex_of(&l.digest).unwrap_or_default().to_string();
                !store.layer_dir(&id).is_dir() && seen.insert(id)
            })
            .cloned()
            .collect()
    };
    let session = Arc::new(tokio::sync::Mutex::new(s));
    let downloaded: Vec<u64> = futures::stream::iter(missing.into_iter().map(|l| {
        let session = session.clone();
        let store = store.clone();
        let tmp_dir = tmp_dir.clone();
        async move { fetch_layer(session, &store, &tmp_dir, &l).await }
    }))
    .buffer_unordered(PARALLEL_LAYERS)
    .try_collect()
    .await?;

    let repo_digest = r.digest.clone().unwrap_or(top_digest);
    let record = ImageRecord {
        name: image.clone(),
        id: config.digest.clone(),
        layers: layer_ids,
        config: cfg.config.unwrap_or_default(),
        repo_digest: Some(repo_digest.clone()),
    };
    store.save_record(&record)?;
    if r.digest.is_none() {
        // The same image by digest, so `name@sha256:…` resolves locally too.
        let by_digest = ImageRecord {
            name: format!("{}@{repo_digest}", r.name()),
            ..record.clone()
        };
        store.save_record(&by_digest)?;
    }
    Ok(Pulled {
        record,
        size,
        downloaded: downloaded.iter().sum(),
    })
}

/// Downloads one layer blob and unpacks it into `layers/<hex>`.
async fn fetch_layer(
    session: Arc<tokio::sync::Mutex<Session>>,
    store: &ImageStore,
    tmp_dir: &Path,
    l: &Descriptor,
) -> Result<u64, PullError> {
    let hex = sha256_hex_of(&l.digest).unwrap_or_default().to_string();
    let seq = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
    let blob = tmp_dir.join(format!("{hex}-{}-{seq}", std::process::id()));
    // The session is only locked to (re)authenticate and send; the body
    // streams with a clone of its state.
    let mut local = {
        let s = session.lock().await;
        Session {
            http: s.http.clone(),
            base: s.base.clone(),
            image: s.image.clone(),
            repository: s.repository.clone(),
            creds: s.creds.clone(),
            authorization: s.authorization.clone(),
        }
    };
    let res = local.blob_to_file(&l.digest, &blob).await;
    let n = match res {
        Ok(n) => n,
        Err(e) => {
            let _ = tokio::fs::remove_file(&blob).await;
            return Err(e);
        }
    };
    let store = store.clone();
    let blob2 = blob.clone();
    let unpacked =
        tokio::task::spawn_blocking(move || unpack_into_store(&store, &hex, &blob2, seq))
            .await
            .map_err(|e| PullError::Task(e.to_string()));
    let _ = tokio::fs::remove_file(&blob).await;
    unpacked??;
    Ok(n)
}

/// Unpacks a verified layer blob into `layers/<hex>` (atomic rename).
fn unpack_into_store(
    store: &ImageStore,
    hex: &str,
    blob: &Path,
    seq: u64,
) -> Result<(), PullError> {
    let dest = store.layer_dir(hex);
    if dest.is_dir() {
        return Ok(());
    }
    let tmp: PathBuf = store.layer_dir(&format!(".tmp-{hex}-{}-{seq}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    if let Err(e) = unpack_layer(blob, &tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.into());
    }
    match std::fs::rename(&tmp, &dest) {
        Ok(()) => Ok(()),
        Err(_) if dest.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(io_err(&dest)(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_challenges_parse() {
        assert_eq!(
            parse_www_authenticate(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull".into()),
            })
        );
        // Unquoted values, spaces after commas, a scope holding commas and colons.
        assert_eq!(
            parse_www_authenticate(
                r#"bearer realm=http://127.0.0.1:5001/auth, scope="repository:a/b:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:5001/auth".into(),
                service: None,
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            parse_www_authenticate(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_www_authenticate("Bearer service=\"x\""), None);
        assert_eq!(parse_www_authenticate("Negotiate"), None);
    }

    #[test]
    fn manifests_and_indexes_parse() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
            "config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":7023,"digest":"sha256:b5b2b2c507a0944348e0303114d8d93aaaa081732b86451d9bce1f432a537bc7"},
            "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":32654,"digest":"sha256:e692418e4cbaf90ca69d05a66403747baa33ee08806650b51fab815ad7fc331f"}]}"#;
        match parse_manifest(None, m).unwrap() {
            Manifest::Image { config, layers } => {
                assert_eq!(config.size, 7023);
                assert_eq!(layers.len(), 1);
                assert_eq!(layers[0].size, 32654);
            }
            other => panic!("{other:?}"),
        }
        // OCI manifest without mediaType in the body: the header decides.
        let oci = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},"layers":[]}"#;
        assert!(matches!(
            parse_manifest(Some("application/vnd.oci.image.manifest.v1+json"), oci),
            Ok(Manifest::Image { .. })
        ));
        let idx = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aaaa","size":1,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bbbb","size":1,"platform":{"architecture":"amd64","os":"linux"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:cccc","size":1,"platform":{"architecture":"unknown","os":"unknown"}}]}"#;
        let Manifest::Index(entries) = parse_manifest(Some(MT_OCI_INDEX), idx).unwrap() else {
            panic!("an index")
        };
        assert_eq!(
            pick_platform(&entries, "linux", "amd64").unwrap().digest,
            "sha256:bbbb"
        );
        assert_eq!(
            pick_platform(&entries, "linux", "arm64").unwrap().digest,
            "sha256:aaaa"
        );
        assert!(pick_platform(&entries, "linux", "s390x").is_none());
        // Docker list by shape alone.
        assert!(matches!(
            parse_manifest(
                Some("application/json"),
                br#"{"schemaVersion":2,"manifests":[]}"#
            ),
            Ok(Manifest::Index(_))
        ));
        let v1 = br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        assert!(parse_manifest(None, v1).unwrap_err().contains("schema 1"));
        assert!(parse_manifest(Some("application/vnd.foo"), m)
            .unwrap_err()
            .contains("unsupported manifest media type"));
        assert!(parse_manifest(None, b"not json").is_err());
    }

    #[test]
    fn pull_secrets_parse_both_formats() {
        let mut data = BTreeMap::new();
        data.insert(
            ".dockerconfigjson".to_string(),
            br#"{"auths":{"http://127.0.0.1:5000/v2/":{"username":"alice","password":"s3cret"},
                "https://index.docker.io/v1/":{"auth":"Ym9iOnB3OmQ="}}}"#
                .to_vec(),
        );
        let k = parse_pull_secret("kubernetes.io/dockerconfigjson", &data).unwrap();
        assert_eq!(
            credentials_for(&k, "127.0.0.1:5000"),
            Some(&Credentials {
                username: "alice".into(),
                password: "s3cret".into()
            })
        );
        // `auth` is base64(user:password); the password may hold ':'.
        assert_eq!(
            credentials_for(&k, "docker.io"),
            Some(&Credentials {
                username: "bob".into(),
                password: "pw:d".into()
            })
        );
        assert_eq!(credentials_for(&k, "quay.io"), None);

        let mut old = BTreeMap::new();
        old.insert(
            ".dockercfg".to_string(),
            br#"{"quay.io":{"auth":"dTpw","email":"x@y"}}"#.to_vec(),
        );
        let k = parse_pull_secret("kubernetes.io/dockercfg", &old).unwrap();
        assert_eq!(credentials_for(&k, "quay.io").unwrap().username, "u");
        assert!(parse_pull_secret("Opaque", &old)
            .unwrap_err()
            .contains("kubernetes.io/dockerconfigjson"));
        assert!(parse_pull_secret("kubernetes.io/dockerconfigjson", &old)
            .unwrap_err()
            .contains("no .dockerconfigjson"));
    }

    #[test]
    fn registry_keys_and_endpoints_normalize() {
        assert_eq!(
            normalize_registry_key("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(normalize_registry_key("docker.io"), "docker.io");
        assert_eq!(
            normalize_registry_key("http://LocalHost:5000/v2/"),
            "localhost:5000"
        );
        assert_eq!(registry_base("docker.io"), "https://registry-1.docker.io");
        assert_eq!(registry_base("localhost:5000"), "http://localhost:5000");
        assert_eq!(registry_base("127.0.0.1:39111"), "http://127.0.0.1:39111");
        assert_eq!(registry_base("[::1]:5000"), "http://[::1]:5000");
        assert_eq!(registry_base("quay.io"), "https://quay.io");
        assert_eq!(
            registry_base("localhost.example.com"),
            "https://localhost.example.com"
        );
    }

    #[test]
    fn digests_are_checked_for_shape() {
        let ok = format!("sha256:{}", "a".repeat(64));
        assert_eq!(sha256_hex_of(&ok), Some(&ok[7..]));
        assert!(sha256_hex_of("sha256:abc").is_none());
        assert!(sha256_hex_of(&format!("sha512:{}", "a".repeat(64))).is_none());
        assert!(sha256_hex_of(&format!("sha256:{}", "A".repeat(64))).is_none());
        assert!(sha256_hex_of(&format!("sha256:../{}", "a".repeat(61))).is_none());
    }
}
