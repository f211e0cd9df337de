//! minik-registry: the registry addon's server, a small Docker Registry HTTP
//! API v2 (the OCI distribution spec's pull and push parts). Owns its
//! storage directory and nothing else:
//! ```text
//! <root>/blobs/sha256/<hex>                                 blob content (manifests too)
//! <root>/repositories/<name>/_manifests/revisions/<hex>     the manifest's media type
//! <root>/repositories/<name>/_manifests/tags/<tag>          `sha256:<hex>` the tag names
//! <root>/uploads/<uuid>                                     an upload in progress
//! ```
//! Endpoints: `GET /v2/`; blobs `HEAD|GET|DELETE /v2/<name>/blobs/<digest>`;
//! uploads `POST /v2/<name>/blobs/uploads/` (monolithic with `?digest=`,
//! cross-repository `?mount=&from=`), `PATCH|PUT|GET|DELETE
//! /v2/<name>/blobs/uploads/<uuid>` (chunked, `Content-Range` checked);
//! manifests `GET|HEAD|PUT|DELETE /v2/<name>/manifests/<tag or digest>`;
//! `GET /v2/<name>/tags/list` and `GET /v2/_catalog` (`n`/`last` paging).
//! Every blob and manifest is checked against its sha256 digest before it
//! is stored (written under a temporary name, renamed into place); a
//! manifest is refused when a blob or child manifest it names is missing.
//! No authentication: the addon listens on the node only.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// Largest manifest accepted.
const MAX_MANIFEST: usize = 4 << 20;

/// Manifest media types the registry stores.
const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// One API request, parsed from the path after `/v2/`. Pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Base,
    Catalog,
    Tags(String),
    Manifest(String, String),
    Blob(String, String),
    UploadStart(String),
    Upload(String, String),
}

/// Repository names as the distribution spec allows:
/// `[a-z0-9]+([._-][a-z0-9]+)*` components joined by `/`. Pure.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
                && c.as_bytes()[0].is_ascii_alphanumeric()
                && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
                && !c.contains("..")
        })
}

/// Tags: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`. Pure.
pub fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && (tag.as_bytes()[0].is_ascii_alphanumeric() || tag.starts_with('_'))
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `sha256:<64 lowercase hex>` → the hex. Pure.
pub fn digest_hex(d: &str) -> Option<&str> {
    let hex = d.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(hex)
}

/// Parses the path after `/v2/` (no leading slash). Pure.
pub fn parse_route(rest: &str) -> Option<Route> {
    let rest = rest.trim_start_matches('/');
    if rest.is_empty() {
        return Some(Route::Base);
    }
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(name.to_string()));
    }
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Some(Route::UploadStart(name.to_string()));
    }
    if let Some(i) = rest.rfind("/blobs/uploads/") {
        let id = &rest[i + "/blobs/uploads/".len()..];
        return (!id.contains('/')).then(|| Route::Upload(rest[..i].to_string(), id.to_string()));
    }
    if let Some(i) = rest.rfind("/blobs/") {
        let d = &rest[i + "/blobs/".len()..];
        return (!d.contains('/')).then(|| Route::Blob(rest[..i].to_string(), d.to_string()));
    }
    if let Some(i) = rest.rfind("/manifests/") {
        let r = &rest[i + "/manifests/".len()..];
        return (!r.contains('/')).then(|| Route::Manifest(rest[..i].to_string(), r.to_string()));
    }
    None
}

/// The names of what a manifest refers to: (blobs, child manifests). Pure.
pub fn references(manifest: &serde_json::Value) -> (Vec<String>, Vec<String>) {
    let digests = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d["digest"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut blobs = digests(&manifest["layers"]);
    if let Some(c) = manifest["config"]["digest"].as_str() {
        blobs.insert(0, c.to_string());
    }
    (blobs, digests(&manifest["manifests"]))
}

#[derive(Clone)]
struct Registry {
    root: PathBuf,
}

/// The registry's HTTP API over the storage directory `root`.
pub fn router(root: PathBuf) -> Router {
    let st = Registry { root };
    Router::new()
        .route("/v2", axum::routing::any(handle))
        .route("/v2/", axum::routing::any(handle))
        .route("/v2/{*rest}", axum::routing::any(handle))
        .with_state(st)
}

/// Serves the registry on `listen` until the process ends (or SIGTERM).
pub async fn serve(listen: &str, root: PathBuf) -> std::io::Result<()> {
    for d in ["blobs/sha256", "repositories", "uploads"] {
        tokio::fs::create_dir_all(root.join(d)).await?;
    }
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {listen}: {e} (is another registry using the port?)"),
        )
    })?;
    tracing::info!("registry on {listen}, storing in {}", root.display());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    axum::serve(listener, router(root))
        .with_graceful_shutdown(async move {
            term.recv().await;
        })
        .await
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({
        "errors": [{"code": code, "message": message.into(), "detail": null}]
    });
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn with_headers(mut r: Response, headers: &[(&str, String)]) -> Response {
    for (k, v) in headers {
        if let (Ok(name), Ok(val)) = (
            axum::http::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            r.headers_mut().insert(name, val);
        }
    }
    r
}

fn query(uri: &axum::http::Uri) -> BTreeMap<String, String> {
    uri.query()
        .map(|q| {
            q.split('&')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    Some((unescape(k)?, unescape(v)?))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

async fn handle(State(st): State<Registry>, req: Request) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let path = uri.path().to_string();
    let rest = path.strip_prefix("/v2").unwrap_or("");
    let resp = match parse_route(rest) {
        None => error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no such endpoint {path}"),
        ),
        Some(route) => {
            let name_ok = match &route {
                Route::Base | Route::Catalog => true,
                Route::Tags(n)
                | Route::Manifest(n, _)
                | Route::Blob(n, _)
                | Route::UploadStart(n)
                | Route::Upload(n, _) => valid_name(n),
            };
            if !name_ok {
                error(
                    StatusCode::BAD_REQUEST,
                    "NAME_INVALID",
                    "invalid repository name (lowercase letters, digits, . _ - and / only)",
                )
            } else {
                let (parts, body) = req.into_parts();
                st.dispatch(route, &method, &uri, &parts.headers, body)
                    .await
            }
        }
    };
    with_headers(
        resp,
        &[("docker-distribution-api-version", "registry/2.0".into())],
    )
}

fn io_500(e: std::io::Error) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "UNKNOWN",
        format!("storage error: {e}"),
    )
}

/// Writes a request body to `path` (appending when `append`), returning
/// the bytes written.
async fn body_to_file(body: Body, path: &Path, append: bool) -> std::io::Result<u64> {
    let mut f = tokio::fs::OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .open(path)
        .await?;
    let mut n = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(std::io::Error::other)?;
        n += chunk.len() as u64;
        f.write_all(&chunk).await?;
    }
    f.flush().await?;
    Ok(n)
}

async fn sha256_of_file(path: &Path) -> std::io::Result<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut f = std::fs::File::open(&path)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(format!("sha256:{}", hex::encode(h.finalize())))
    })
    .await
    .map_err(std::io::Error::other)?
}

fn range_header(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

impl Registry {
    fn blob_path(&self, hex: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex)
    }
    fn repo(&self, name: &str) -> PathBuf {
        self.root.join("repositories").join(name)
    }
    fn revision(&self, name: &str, hex: &str) -> PathBuf {
        self.repo(name).join("_manifests/revisions").join(hex)
    }
    fn tag_path(&self, name: &str, tag: &str) -> PathBuf {
        self.repo(name).join("_manifests/tags").join(tag)
    }
    fn upload_path(&self, id: &str) -> Option<PathBuf> {
        uuid::Uuid::parse_str(id)
            .ok()
            .map(|u| self.root.join("uploads").join(u.to_string()))
    }

    async fn dispatch(
        &self,
        route: Route,
        method: &Method,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
        body: Body,
    ) -> Response {
        let q = query(uri);
        match (route, method.clone()) {
            (Route::Base, Method::GET | Method::HEAD) => {
                (StatusCode::OK, [("content-type", "application/json")], "{}").into_response()
            }
            (Route::Catalog, Method::GET) => self.catalog(&q).await,
            (Route::Tags(name), Method::GET) => self.tags(&name, &q).await,
            (Route::Blob(name, d), m @ (Method::GET | Method::HEAD)) => {
                self.get_blob(&name, &d, m == Method::HEAD).await
            }
            (Route::Blob(_, d), Method::DELETE) => match digest_hex(&d) {
                Some(hex) => match tokio::fs::remove_file(self.blob_path(hex)).await {
                    Ok(()) => StatusCode::ACCEPTED.into_response(),
                    Err(_) => error(
                        StatusCode::NOT_FOUND,
                        "BLOB_UNKNOWN",
                        "blob unknown to registry",
                    ),
                },
                None => error(
                    StatusCode::BAD_REQUEST,
                    "DIGEST_INVALID",
                    "not a sha256 digest",
                ),
            },
            (Route::UploadStart(name), Method::POST) => self.start_upload(&name, &q, body).await,
            (Route::Upload(name, id), Method::PATCH) => {
                self.patch_upload(&name, &id, headers, body).await
            }
            (Route::Upload(name, id), Method::PUT) => {
                self.finish_upload(&name, &id, &q, body).await
            }
            (Route::Upload(name, id), Method::GET) => match self.upload_path(&id) {
                Some(p) => match tokio::fs::metadata(&p).await {
                    Ok(md) => with_headers(
                        StatusCode::NO_CONTENT.into_response(),
                        &[
                            ("location", format!("/v2/{name}/blobs/uploads/{id}")),
                            ("range", range_header(md.len())),
                            ("docker-upload-uuid", id.clone()),
                        ],
                    ),
                    Err(_) => upload_unknown(),
                },
                None => upload_unknown(),
            },
            (Route::Upload(_, id), Method::DELETE) => match self.upload_path(&id) {
                Some(p) if tokio::fs::remove_file(&p).await.is_ok() => {
                    StatusCode::NO_CONTENT.into_response()
                }
                _ => upload_unknown(),
            },
            (Route::Manifest(name, r), m @ (Method::GET | Method::HEAD)) => {
                self.get_manifest(&name, &r, m == Method::HEAD).await
            }
            (Route::Manifest(name, r), Method::PUT) => {
                self.put_manifest(&name, &r, headers, body).await
            }
            (Route::Manifest(name, r), Method::DELETE) => self.delete_manifest(&name, &r).await,
            _ => error(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                format!("{method} is not supported here"),
            ),
        }
    }

    async fn catalog(&self, q: &BTreeMap<String, String>) -> Response {
        let root = self.root.join("repositories");
        let names = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
                let Ok(rd) = std::fs::read_dir(dir) else {
                    return;
                };
                for e in rd.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n.starts_with('_') || !e.path().is_dir() {
                        continue;
                    }
                    let full = if prefix.is_empty() {
                        n.clone()
                    } else {
                        format!("{prefix}/{n}")
                    };
                    if e.path().join("_manifests").is_dir() {
                        out.push(full.clone());
                    }
                    walk(&e.path(), &full, out);
                }
            }
            walk(&root, "", &mut out);
            out.sort();
            out
        })
        .await
        .unwrap_or_default();
        let page = paginate(names, q);
        axum::Json(serde_json::json!({ "repositories": page })).into_response()
    }

    async fn tags(&self, name: &str, q: &BTreeMap<String, String>) -> Response {
        let dir = self.repo(name).join("_manifests/tags");
        let mut tags = Vec::new();
        match tokio::fs::read_dir(&dir).await {
            Ok(mut rd) => {
                while let Ok(Some(e)) = rd.next_entry().await {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if valid_tag(&n) {
                        tags.push(n);
                    }
                }
            }
            Err(_) => {
                return error(
                    StatusCode::NOT_FOUND,
                    "NAME_UNKNOWN",
                    format!("repository {name} is not known"),
                )
            }
        }
        tags.sort();
        axum::Json(serde_json::json!({ "name": name, "tags": paginate(tags, q) })).into_response()
    }

    async fn get_blob(&self, _name: &str, d: &str, head: bool) -> Response {
        let Some(hex) = digest_hex(d) else {
            return error(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                "not a sha256 digest",
            );
        };
        let path = self.blob_path(hex);
        let Ok(md) = tokio::fs::metadata(&path).await else {
            return error(
                StatusCode::NOT_FOUND,
                "BLOB_UNKNOWN",
                "blob unknown to registry",
            );
        };
        let body = if head {
            Body::empty()
        } else {
            match tokio::fs::File::open(&path).await {
                Ok(f) => {
                    Body::from_stream(tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024))
                }
                Err(e) => return io_500(e),
            }
        };
        let mut r = Response::new(body);
        *r.status_mut() = StatusCode::OK;
        with_headers(
            r,
            &[
                ("content-length", md.len().to_string()),
                ("content-type", "application/octet-stream".into()),
                ("docker-content-digest", d.to_string()),
                ("etag", format!("\"{d}\"")),
            ],
        )
    }

    /// Moves a verified file into `blobs/` (a no-op when the blob exists).
    async fn commit_blob(&self, file: &Path, expected: &str) -> Result<(), Response> {
        let Some(hex) = digest_hex(expected) else {
            let _ = tokio::fs::remove_file(file).await;
            return Err(error(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                "not a sha256 digest",
            ));
        };
        let actual = sha256_of_file(file).await.map_err(io_500)?;
        if actual != expected {
            let _ = tokio::fs::remove_file(file).await;
            return Err(error(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                format!("the content's digest is {actual}, not {expected}"),
            ));
        }
        tokio::fs::rename(file, self.blob_path(hex))
            .await
            .map_err(io_500)
    }

    async fn start_upload(&self, name: &str, q: &BTreeMap<String, String>, body: Body) -> Response {
        if let Some(d) = q.get("mount") {
            if digest_hex(d).is_some_and(|h| self.blob_path(h).is_file()) {
                return blob_created(name, d);
            }
        }
        let id = uuid::Uuid::new_v4().to_string();
        let Some(path) = self.upload_path(&id) else {
            return io_500(std::io::Error::other("uuid"));
        };
        let n = match body_to_file(body, &path, false).await {
            Ok(n) => n,
            Err(e) => return io_500(e),
        };
        if let Some(d) = q.get("digest") {
            return match self.commit_blob(&path, d).await {
                Ok(()) => blob_created(name, d),
                Err(r) => r,
            };
        }
        with_headers(
            StatusCode::ACCEPTED.into_response(),
            &[
                ("location", format!("/v2/{name}/blobs/uploads/{id}")),
                ("range", range_header(n)),
                ("docker-upload-uuid", id),
                ("content-length", "0".into()),
            ],
        )
    }

    async fn patch_upload(
        &self,
        name: &str,
        id: &str,
        headers: &HeaderMap,
        body: Body,
    ) -> Response {
        let Some(path) = self.upload_path(id) else {
            return upload_unknown();
        };
        let Ok(md) = tokio::fs::metadata(&path).await else {
            return upload_unknown();
        };
        if let Some(cr) = headers.get("content-range").and_then(|v| v.to_str().ok()) {
            let start = cr
                .trim()
                .trim_start_matches("bytes ")
                .split('-')
                .next()
                .and_then(|s| s.trim().parse::<u64>().ok());
            if start != Some(md.len()) {
                return with_headers(
                    error(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        "BLOB_UPLOAD_INVALID",
                        format!(
                            "chunk starts at {cr:?} but the upload holds {} bytes",
                            md.len()
                        ),
                    ),
                    &[
                        ("range", range_header(md.len())),
                        ("location", format!("/v2/{name}/blobs/uploads/{id}")),
                    ],
                );
            }
        }
        if let Err(e) = body_to_file(body, &path, true).await {
            return io_500(e);
        }
        let size = tokio::fs::metadata(&path)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        with_headers(
            StatusCode::ACCEPTED.into_response(),
            &[
                ("location", format!("/v2/{name}/blobs/uploads/{id}")),
                ("range", range_header(size)),
                ("docker-upload-uuid", id.to_string()),
                ("content-length", "0".into()),
            ],
        )
    }

    async fn finish_upload(
        &self,
        name: &str,
        id: &str,
        q: &BTreeMap<String, String>,
        body: Body,
    ) -> Response {
        let Some(path) = self.upload_path(id) else {
            return upload_unknown();
        };
        if !path.is_file() {
            return upload_unknown();
        }
        let Some(d) = q.get("digest") else {
            return error(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                "the final PUT needs ?digest=",
            );
        };
        if let Err(e) = body_to_file(body, &path, true).await {
            return io_500(e);
        }
        match self.commit_blob(&path, d).await {
            Ok(()) => blob_created(name, d),
            Err(r) => r,
        }
    }

    /// The digest a tag or digest reference names in `name`.
    async fn resolve(&self, name: &str, r: &str) -> Option<String> {
        if let Some(hex) = digest_hex(r) {
            return self.revision(name, hex).is_file().then(|| r.to_string());
        }
        if !valid_tag(r) {
            return None;
        }
        let d = tokio::fs::read_to_string(self.tag_path(name, r))
            .await
            .ok()?;
        let d = d.trim().to_string();
        digest_hex(&d).is_some().then_some(d)
    }

    async fn get_manifest(&self, name: &str, r: &str, head: bool) -> Response {
        let Some(d) = self.resolve(name, r).await else {
            return error(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                format!("manifest {r} of {name} is not known"),
            );
        };
        let hex = digest_hex(&d).unwrap_or_default();
        let media = tokio::fs::read_to_string(self.revision(name, hex))
            .await
            .unwrap_or_default();
        let data = match tokio::fs::read(self.blob_path(hex)).await {
            Ok(b) => b,
            Err(_) => {
                return error(
                    StatusCode::NOT_FOUND,
                    "MANIFEST_UNKNOWN",
                    "manifest content is missing",
                )
            }
        };
        let len = data.len();
        let mut resp = Response::new(if head {
            Body::empty()
        } else {
            Body::from(data)
        });
        *resp.status_mut() = StatusCode::OK;
        with_headers(
            resp,
            &[
                ("content-type", media.trim().to_string()),
                ("content-length", len.to_string()),
                ("docker-content-digest", d.clone()),
                ("etag", format!("\"{d}\"")),
            ],
        )
    }

    async fn put_manifest(&self, name: &str, r: &str, headers: &HeaderMap, body: Body) -> Response {
        let by_digest = digest_hex(r).is_some();
        if !by_digest && !valid_tag(r) {
            return error(
                StatusCode::BAD_REQUEST,
                "TAG_INVALID",
                format!("invalid tag {r:?}"),
            );
        }
        let mut data = Vec::new();
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => data.extend_from_slice(&c),
                Err(e) => return io_500(std::io::Error::other(e)),
            }
            if data.len() > MAX_MANIFEST {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "SIZE_INVALID",
                    "manifest too large",
                );
            }
        }
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
        if by_digest && digest != r {
            return error(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                format!("the manifest's digest is {digest}, not {r}"),
            );
        }
        let v: serde_json::Value = match serde_json::from_slice(&data) {
            Ok(v) => v,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "MANIFEST_INVALID",
                    format!("not JSON: {e}"),
                )
            }
        };
        let media = headers
            .get("content-type")
            .and_then(|h| h.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or("").trim().to_string())
            .filter(|s| MANIFEST_TYPES.contains(&s.as_str()))
            .or_else(|| v["mediaType"].as_str().map(str::to_string))
            .unwrap_or_default();
        if !MANIFEST_TYPES.contains(&media.as_str()) {
            return error(
                StatusCode::BAD_REQUEST,
                "MANIFEST_INVALID",
                format!("unsupported manifest media type {media:?}"),
            );
        }
        let (blobs, children) = references(&v);
        for b in &blobs {
            if !digest_hex(b).is_some_and(|h| self.blob_path(h).is_file()) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "MANIFEST_BLOB_UNKNOWN",
                    format!("blob {b} is not in the registry: push it first"),
                );
            }
        }
        for c in &children {
            if !digest_hex(c).is_some_and(|h| self.revision(name, h).is_file()) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "MANIFEST_BLOB_UNKNOWN",
                    format!("manifest {c} is not in {name}: push it first"),
                );
            }
        }
        let hex = digest_hex(&digest).unwrap_or_default().to_string();
        let res = async {
            write_atomic(&self.blob_path(&hex), &data).await?;
            write_atomic(&self.revision(name, &hex), media.as_bytes()).await?;
            if !by_digest {
                write_atomic(&self.tag_path(name, r), digest.as_bytes()).await?;
            }
            Ok::<(), std::io::Error>(())
        }
        .await;
        if let Err(e) = res {
            return io_500(e);
        }
        with_headers(
            StatusCode::CREATED.into_response(),
            &[
                ("location", format!("/v2/{name}/manifests/{digest}")),
                ("docker-content-digest", digest),
                ("content-length", "0".into()),
            ],
        )
    }

    async fn delete_manifest(&self, name: &str, r: &str) -> Response {
        let Some(hex) = digest_hex(r) else {
            return error(
                StatusCode::BAD_REQUEST,
                "UNSUPPORTED",
                "delete manifests by digest",
            );
        };
        if tokio::fs::remove_file(self.revision(name, hex))
            .await
            .is_err()
        {
            return error(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                "manifest unknown",
            );
        }
        let tags = self.repo(name).join("_manifests/tags");
        if let Ok(mut rd) = tokio::fs::read_dir(&tags).await {
            while let Ok(Some(e)) = rd.next_entry().await {
                if tokio::fs::read_to_string(e.path())
                    .await
                    .ok()
                    .as_deref()
                    .map(str::trim)
                    == Some(r)
                {
                    let _ = tokio::fs::remove_file(e.path()).await;
                }
            }
        }
        StatusCode::ACCEPTED.into_response()
    }
}

fn upload_unknown() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
        "blob upload unknown to registry",
    )
}

fn blob_created(name: &str, d: &str) -> Response {
    with_headers(
        StatusCode::CREATED.into_response(),
        &[
            ("location", format!("/v2/{name}/blobs/{d}")),
            ("docker-content-digest", d.to_string()),
            ("content-length", "0".into()),
        ],
    )
}

async fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(p) = path.parent() {
        tokio::fs::create_dir_all(p).await?;
    }
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
    tokio::fs::write(&tmp, data).await?;
    tokio::fs::rename(&tmp, path).await
}

/// `n` and `last` paging over a sorted list. Pure.
pub fn paginate(items: Vec<String>, q: &BTreeMap<String, String>) -> Vec<String> {
    let after: Vec<String> = match q.get("last") {
        Some(l) => items.into_iter().filter(|i| i > l).collect(),
        None => items,
    };
    match q.get("n").and_then(|n| n.parse::<usize>().ok()) {
        Some(n) => after.into_iter().take(n).collect(),
        None => after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_with_slashes_in_names() {
        assert_eq!(parse_route(""), Some(Route::Base));
        assert_eq!(parse_route("/"), Some(Route::Base));
        assert_eq!(parse_route("/_catalog"), Some(Route::Catalog));
        assert_eq!(
            parse_route("/a/b/tags/list"),
            Some(Route::Tags("a/b".into()))
        );
        assert_eq!(
            parse_route("/team/app/manifests/v1"),
            Some(Route::Manifest("team/app".into(), "v1".into()))
        );
        assert_eq!(
            parse_route("/x/blobs/sha256:abc"),
            Some(Route::Blob("x".into(), "sha256:abc".into()))
        );
        assert_eq!(
            parse_route("/x/y/blobs/uploads/"),
            Some(Route::UploadStart("x/y".into()))
        );
        assert_eq!(
            parse_route("/x/blobs/uploads"),
            Some(Route::UploadStart("x".into()))
        );
        assert_eq!(
            parse_route("/x/blobs/uploads/123"),
            Some(Route::Upload("x".into(), "123".into()))
        );
        // A repository may itself be called "blobs" or "manifests".
        assert_eq!(
            parse_route("/blobs/manifests/manifests/v2"),
            Some(Route::Manifest("blobs/manifests".into(), "v2".into()))
        );
        assert_eq!(parse_route("/x/other"), None);
    }

    #[test]
    fn names_tags_and_digests_are_checked() {
        assert!(valid_name("library/busybox"));
        assert!(valid_name("a.b-c_d/e"));
        assert!(!valid_name("Upper/x"));
        assert!(!valid_name("a//b"));
        assert!(!valid_name("../etc"));
        assert!(!valid_name("a/_manifests"));
        assert!(!valid_name("-a"));
        assert!(valid_tag("v1.2_3-x"));
        assert!(!valid_tag(".hidden"));
        assert!(!valid_tag("a/b"));
        assert!(digest_hex(&format!("sha256:{}", "0f".repeat(32))).is_some());
        assert!(digest_hex(&format!("sha256:{}", "0F".repeat(32))).is_none());
        assert!(digest_hex("sha256:../../x").is_none());
    }

    #[test]
    fn manifest_references_and_paging() {
        let m = serde_json::json!({"config":{"digest":"sha256:c"},"layers":[{"digest":"sha256:l1"},{"digest":"sha256:l2"}]});
        assert_eq!(
            references(&m),
            (
                vec!["sha256:c".into(), "sha256:l1".into(), "sha256:l2".into()],
                vec![]
            )
        );
        let i = serde_json::json!({"manifests":[{"digest":"sha256:m1"}]});
        assert_eq!(references(&i), (vec![], vec!["sha256:m1".to_string()]));
        let items: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let mut q = BTreeMap::new();
        q.insert("n".to_string(), "2".to_string());
        assert_eq!(paginate(items.clone(), &q), vec!["a", "b"]);
        q.insert("last".to_string(), "b".to_string());
        assert_eq!(paginate(items, &q), vec!["c", "d"]);
        assert_eq!(unescape("sha256%3Aab+c").as_deref(), Some("sha256:ab c"));
    }
}
