//! The kubelet's image endpoints (what `minik image load|ls|rm` reach through
//! the API server's `nodes/<node>/proxy/images…`): owns
//! - `GET /images`: the store's images as JSON (`{"images": [...]}`);
//! - `POST /images?name=<fallback>`: an image archive (docker-archive or
//!   OCI archive, tar or tar.gz) streamed in the body, imported with
//!   [`ImageStore::load_archive`]; answers the names it now holds;
//! - `DELETE /images/<ref>`: removes one image name (refused with `409`
//!   while a running container uses the image); layers no other image or
//!   container uses are deleted.
//!
//! "Used by a running container" is read from the kernel: the overlay
//! mounts under `<root>/pods` whose `lowerdir` is exactly the image's layer
//! stack, with the container's process still alive.

use crate::images::{ImageError, ImageRecord, ImageRef, ImageStore};
use crate::sandbox::{pid_alive, read_json, ContainerFile, PodMeta};
use axum::body::Body;
use axum::extract::{Path as AxPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use futures::StreamExt;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::AsyncWriteExt;

#[derive(Clone)]
pub struct ImageHttpState {
    pub images: ImageStore,
    pub pods_dir: PathBuf,
}

pub fn router(images: ImageStore, pods_dir: PathBuf) -> Router {
    Router::new()
        .route("/images", get(list_images).post(load_images))
        .route("/images/{*reference}", delete(remove_image))
        .with_state(ImageHttpState { images, pods_dir })
}

/// One row of `GET /images`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ImageInfo {
    /// `docker.io/library/nginx:1.27` (or `repo@sha256:…`).
    pub name: String,
    pub repository: String,
    /// Empty for a by-digest name.
    pub tag: String,
    /// `sha256:…` of the image config.
    pub id: String,
    /// `repo@sha256:…` (the manifest digest for pulled images).
    pub image_id: String,
    /// Bytes on disk of its layers.
    pub size: u64,
    /// `namespace/pod/container` of running containers using it.
    pub used_by: Vec<String>,
}

/// An overlay mount of a container's rootfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsMount {
    pub target: PathBuf,
    /// Lower directories, topmost first.
    pub lowers: Vec<PathBuf>,
}

/// Overlay mounts under `prefix` from `/proc/self/mountinfo` text. Pure.
pub fn overlay_mounts(mountinfo: &str, prefix: &Path) -> Vec<RootfsMount> {
    let unescape = |s: &str| {
        s.replace("\\040", " ")
            .replace("\\011", "\t")
            .replace("\\012", "\n")
            .replace("\\134", "\\")
    };
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(target) = left.split(' ').nth(4) else {
            continue;
        };
        let target = PathBuf::from(unescape(target));
        let mut r = right.split(' ');
        if r.next() != Some("overlay") || !target.starts_with(prefix) {
            continue;
        }
        let opts = r.nth(1).unwrap_or("");
        let Some(lower) = opts.split(',').find_map(|o| o.strip_prefix("lowerdir=")) else {
            continue;
        };
        out.push(RootfsMount {
            target,
            lowers: unescape(lower).split(':').map(PathBuf::from).collect(),
        });
    }
    out
}

/// `namespace/pod/container` of every running container whose rootfs is
/// exactly `rec`'s layers, and the layer names every mounted rootfs uses.
fn usage(st: &ImageHttpState, rec: Option<&ImageRecord>) -> (Vec<String>, HashSet<String>) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounts = overlay_mounts(&info, &st.pods_dir);
    let layers_dir = st.images.dir().join("layers");
    let mut mounted = HashSet::new();
    let mut users = Vec::new();
    let want = rec.map(|r| st.images.lowerdirs(r));
    for m in &mounts {
        for l in &m.lowers {
            if let Ok(rel) = l.strip_prefix(&layers_dir) {
                mounted.insert(rel.display().to_string());
            }
        }
        if want.as_ref() != Some(&m.lowers) {
            continue;
        }
        // <pods>/<uid>/containers/<name>/rootfs
        let Some(cdir) = m.target.parent() else {
            continue;
        };
        let alive = read_json::<ContainerFile>(&cdir.join("container.json"))
            .is_some_and(|f| pid_alive(f.pid));
        if !alive {
            continue;
        }
        let cname = cdir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let pod = cdir
            .parent()
            .and_then(Path::parent)
            .and_then(|p| read_json::<PodMeta>(&p.join("meta.json")))
            .map(|p| format!("{}/{}", p.namespace, p.name))
            .unwrap_or_else(|| "?".into());
        users.push(format!("{pod}/{cname}"));
    }
    users.sort();
    users.dedup();
    (users, mounted)
}

fn info(st: &ImageHttpState, rec: &ImageRecord) -> ImageInfo {
    let (repository, tag) = match ImageRef::parse(&rec.name) {
        Ok(r) => (r.name(), r.tag.unwrap_or_default()),
        Err(_) => (rec.name.clone(), String::new()),
    };
    ImageInfo {
        name: rec.name.clone(),
        repository,
        tag,
        id: rec.id.clone(),
        image_id: rec.image_id(),
        size: st.images.disk_size(rec),
        used_by: usage(st, Some(rec)).0,
    }
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut m = msg.into();
    if !m.ends_with('\n') {
        m.push('\n');
    }
    (status, m).into_response()
}

async fn list_images(State(st): State<ImageHttpState>) -> Response {
    let res = tokio::task::spawn_blocking(move || {
        st.images
            .list()
            .iter()
            .map(|r| info(&st, r))
            .collect::<Vec<_>>()
    })
    .await;
    match res {
        Ok(list) => Json(serde_json::json!({ "images": list })).into_response(),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("listing images: {e}"),
        ),
    }
}

static UPLOAD_SEQ: AtomicU64 = AtomicU64::new(0);

async fn load_images(
    State(st): State<ImageHttpState>,
    Query(q): Query<BTreeMap<String, String>>,
    body: Body,
) -> Response {
    let fallback = q
        .get("name")
        .cloned()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "image:latest".into());
    if ImageRef::parse(&fallback).is_err() {
        return text(
            StatusCode::BAD_REQUEST,
            format!("invalid image name {fallback:?} in ?name="),
        );
    }
    let dir = st.images.dir().join(".uploads");
    if let Err(e) = tokio::fs::create_dir_all(&dir).await {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("creating {}: {e}", dir.display()),
        );
    }
    let seq = UPLOAD_SEQ.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("upload-{}-{seq}.tar", std::process::id()));
    let written = async {
        let mut f = tokio::fs::File::create(&path).await?;
        let mut stream = body.into_data_stream();
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(std::io::Error::other)?;
            n += chunk.len() as u64;
            f.write_all(&chunk).await?;
        }
        f.flush().await?;
        Ok::<u64, std::io::Error>(n)
    }
    .await;
    match written {
        Ok(0) => {
            let _ = tokio::fs::remove_file(&path).await;
            return text(
                StatusCode::BAD_REQUEST,
                "the request body is empty; send an image archive (docker save or OCI archive)",
            );
        }
        Ok(_) => {}
        Err(e) => {
            let _ = tokio::fs::remove_file(&path).await;
            return text(
                StatusCode::BAD_REQUEST,
                format!("receiving the image archive: {e}"),
            );
        }
    }
    let images = st.images.clone();
    let p2 = path.clone();
    let res = tokio::task::spawn_blocking(move || images.load_archive(&p2, &fallback)).await;
    let _ = tokio::fs::remove_file(&path).await;
    match res {
        Ok(Ok(recs)) => {
            let names: Vec<String> = recs.into_iter().map(|r| r.name).collect();
            Json(serde_json::json!({ "images": names })).into_response()
        }
        Ok(Err(e)) => text(
            StatusCode::BAD_REQUEST,
            format!("cannot import the image archive: {e}"),
        ),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("import task: {e}"),
        ),
    }
}

async fn remove_image(
    State(st): State<ImageHttpState>,
    AxPath(reference): AxPath<String>,
) -> Response {
    let reference = reference.trim_start_matches('/').to_string();
    let res = tokio::task::spawn_blocking(move || -> Result<Vec<String>, (StatusCode, String)> {
        let r =
            ImageRef::parse(&reference).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
        if r.is_builtin() {
            return Err((
                StatusCode::CONFLICT,
                format!("{} is built into the node and cannot be removed", r.full()),
            ));
        }
        let rec = match st.images.resolve(&reference) {
            Ok(rec) => rec,
            Err(ImageError::NotPresent(_)) => {
                return Err((
                    StatusCode::NOT_FOUND,
                    format!("image {reference:?} is not on the node (see `minik image ls`)"),
                ))
            }
            Err(e) => return Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        };
        // Another name for the same image keeps it: only this name goes.
        let aliases = st
            .images
            .list()
            .into_iter()
            .filter(|o| o.name != rec.name && o.layers == rec.layers)
            .count();
        let (users, mounted) = usage(&st, Some(&rec));
        if aliases == 0 && !users.is_empty() {
            return Err((
                StatusCode::CONFLICT,
                format!(
                    "image {} is in use by running container(s) {}; delete those pods first",
                    rec.name,
                    users.join(", ")
                ),
            ));
        }
        st.images
            .remove(&rec.name, &mounted)
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok(vec![rec.name])
    })
    .await;
    match res {
        Ok(Ok(names)) => Json(serde_json::json!({ "deleted": names })).into_response(),
        Ok(Err((code, msg))) => text(code, msg),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("remove task: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_mounts_parse_from_mountinfo() {
        let info = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
901 22 0:77 / /r/pods/u1/containers/web/rootfs rw,relatime shared:400 - overlay overlay rw,lowerdir=/r/images/layers/bbb:/r/images/layers/aaa,upperdir=/r/pods/u1/containers/web/upper,workdir=/r/pods/u1/containers/web/work
902 22 0:78 / /elsewhere/rootfs rw - overlay overlay rw,lowerdir=/x:/y,upperdir=/u,workdir=/w
903 22 0:79 / /r/pods/u1/volumes/v rw - tmpfs tmpfs rw
";
        let m = overlay_mounts(info, Path::new("/r/pods"));
        assert_eq!(
            m,
            vec![RootfsMount {
                target: PathBuf::from("/r/pods/u1/containers/web/rootfs"),
                lowers: vec![
                    PathBuf::from("/r/images/layers/bbb"),
                    PathBuf::from("/r/images/layers/aaa")
                ],
            }]
        );
    }
}
