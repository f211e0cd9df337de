//! Image import (`minik image load`): owns turning an image archive into
//! layers and records of the image store. Understands `docker save` archives
//! (`manifest.json` + `layer.tar`s) and OCI image layouts (`oci-layout`,
//! `index.json`, `blobs/sha256/…`), plain or gzip-compressed, layers plain
//! or gzip. Each layer is unpacked once into `layers/<sha256 of the blob>`
//! with OCI whiteouts turned into overlayfs ones (`.wh.x` → a 0/0 character
//! device, `.wh..wh..opq` → `trusted.overlay.opaque=y`), exactly what a
//! registry pull will reuse.

use crate::images::{ImageConfig, ImageError, ImageRecord, ImageRef, ImageStore};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn bad(path: &Path, what: &str) -> ImageError {
    ImageError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string()),
    }
}

/// Opens a file, transparently un-gzipping it.
fn open_maybe_gz(path: &Path) -> Result<Box<dyn Read>, ImageError> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic).map_err(io_err(path))?;
    let f = std::fs::File::open(path).map_err(io_err(path))?;
    if n == 2 && magic == [0x28, 0xb5] {
        return Err(bad(
            path,
            "zstd-compressed layers are not supported; use tar or tar+gzip layers (e.g. skopeo copy --dest-compress-format gzip)",
        ));
    }
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(flate2::read::GzDecoder::new(BufReader::new(f))))
    } else {
        Ok(Box::new(BufReader::new(f)))
    }
}

fn sha256_file(path: &Path) -> Result<String, ImageError> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// A path inside an archive, made relative and free of `..`.
fn clean_rel(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(x) => out.push(x),
            Component::CurDir | Component::RootDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

fn set_opaque(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: valid NUL-terminated path and attribute name; the value is a
    // 1-byte buffer whose length is passed.
    let r = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            b"y".as_ptr() as *const libc::c_void,
            1,
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Unpacks one layer tarball into `dest` with overlayfs whiteouts.
pub fn unpack_layer(blob: &Path, dest: &Path) -> Result<(), ImageError> {
    let mut ar = tar::Archive::new(open_maybe_gz(blob)?);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(true);
    ar.set_preserve_mtime(true);
    ar.set_unpack_xattrs(false);
    ar.set_overwrite(true);
    std::fs::create_dir_all(dest).map_err(io_err(dest))?;
    for entry in ar.entries().map_err(io_err(blob))? {
        let mut entry = entry.map_err(io_err(blob))?;
        let raw = entry.path().map_err(io_err(blob))?.into_owned();
        let Some(rel) = clean_rel(&raw) else { continue };
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let parent = dest.join(rel.parent().unwrap_or(Path::new("")));
            std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
            if hidden == ".wh..opq" {
                set_opaque(&parent).map_err(io_err(&parent))?;
            } else {
                let target = parent.join(hidden);
                let _ = std::fs::remove_dir_all(&target);
                let _ = std::fs::remove_file(&target);
                nix::sys::stat::mknod(
                    &target,
                    nix::sys::stat::SFlag::S_IFCHR,
                    nix::sys::stat::Mode::empty(),
                    0,
                )
                .map_err(|e| io_err(&target)(std::io::Error::from(e)))?;
            }
            continue;
        }
        entry.unpack_in(dest).map_err(io_err(&dest.join(&rel)))?;
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    config: Option<ImageConfig>,
}

#[derive(Deserialize)]
struct OciIndex {
    manifests: Vec<OciDescriptor>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct OciDescriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    platform: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct OciManifest {
    config: OciDescriptor,
    layers: Vec<OciDescriptor>,
}

fn blob_path(root: &Path, digest: &str) -> Result<PathBuf, ImageError> {
    let (alg, hex) = digest
        .split_once(':')
        .ok_or_else(|| bad(root, &format!("bad digest {digest:?}")))?;
    if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) || alg.contains('/') {
        return Err(bad(root, &format!("bad digest {digest:?}")));
    }
    Ok(root.join("blobs").join(alg).join(hex))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ImageError> {
    let data = std::fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&data).map_err(|source| ImageError::Corrupt {
        path: path.to_path_buf(),
        source,
    })
}

/// One image found in an archive: names, layer blobs (bottom first), config file.
struct Found {
    names: Vec<String>,
    layers: Vec<PathBuf>,
    config: PathBuf,
}

fn find_images(dir: &Path, fallback_name: &str) -> Result<Vec<Found>, ImageError> {
    let manifest = dir.join("manifest.json");
    if manifest.is_file() {
        let list: Vec<DockerManifest> = read_json(&manifest)?;
        return list
            .into_iter()
            .map(|m| {
                let rel = |s: &str| {
                    clean_rel(Path::new(s))
                        .map(|r| dir.join(r))
                        .ok_or_else(|| bad(&manifest, &format!("bad path {s:?}")))
                };
                Ok(Found {
                    names: m.repo_tags.unwrap_or_default(),
                    layers: m.layers.iter().map(|l| rel(l)).collect::<Result<_, _>>()?,
                    config: rel(&m.config)?,
                })
            })
            .collect();
    }
    let index = dir.join("index.json");
    if !index.is_file() {
        return Err(bad(
            dir,
            "not an image archive: neither manifest.json (docker save) nor index.json (OCI layout)",
        ));
    }
    let idx: OciIndex = read_json(&index)?;
    let mut out = Vec::new();
    let mut queue: Vec<OciDescriptor> = idx.manifests;
    while let Some(d) = queue.pop() {
        let p = blob_path(dir, &d.digest)?;
        if d.media_type.contains("index") || d.media_type.contains("manifest.list") {
            let nested: OciIndex = read_json(&p)?;
            // Multi-arch: keep linux/amd64 (or entries without a platform).
            queue.extend(
                nested
                    .manifests
                    .into_iter()
                    .filter(|m| {
                        m.platform
                            .as_ref()
                            .is_none_or(|pl| pl["os"] == "linux" && (pl["architecture"] == "amd64"))
                    })
                    .map(|mut m| {
                        if m.annotations.is_empty() {
                            m.annotations = d.annotations.clone();
                        }
                        m
                    }),
            );
            continue;
        }
        let man: OciManifest = read_json(&p)?;
        let mut names = Vec::new();
        if let Some(n) = d.annotations.get("io.containerd.image.name") {
            names.push(n.clone());
        } else if let Some(r) = d.annotations.get("org.opencontainers.image.ref.name") {
            // A bare tag ("1.0") names the archive's image; a full ref stands alone.
            if r.contains('/') || r.contains(':') && !r.starts_with(':') {
                names.push(r.clone());
            } else {
                names.push(format!("{fallback_name}:{r}"));
            }
        }
        out.push(Found {
            names,
            layers: man
                .layers
                .iter()
                .map(|l| blob_path(dir, &l.digest))
                .collect::<Result<_, _>>()?,
            config: blob_path(dir, &man.config.digest)?,
        });
    }
    Ok(out)
}

impl ImageStore {
    /// Imports every image of `archive` (a tar, tar.gz or an OCI layout
    /// directory). Images without a name get `fallback_name` (e.g. `app:latest`).
    pub fn load_archive(
        &self,
        archive: &Path,
        fallback_name: &str,
    ) -> Result<Vec<ImageRecord>, ImageError> {
        let work = self.dir().join(format!(
            ".import-{}-{}",
            std::process::id(),
            crate::images::next_seq()
        ));
        let _ = std::fs::remove_dir_all(&work);
        let src = if archive.is_dir() {
            archive.to_path_buf()
        } else {
            std::fs::create_dir_all(&work).map_err(io_err(&work))?;
            let mut ar = tar::Archive::new(open_maybe_gz(archive)?);
            ar.set_preserve_ownerships(false);
            ar.unpack(&work).map_err(io_err(archive))?;
            work.clone()
        };
        let result = self.import_from(&src, fallback_name);
        let _ = std::fs::remove_dir_all(&work);
        result
    }

    fn import_from(&self, src: &Path, fallback_name: &str) -> Result<Vec<ImageRecord>, ImageError> {
        let mut recs = Vec::new();
        for found in find_images(src, fallback_name)? {
            let mut layer_ids = Vec::new();
            for blob in &found.layers {
                let id = sha256_file(blob)?;
                let dest = self.layer_dir(&id);
                if !dest.is_dir() {
                    let tmp = self.layer_dir(&format!(
                        ".tmp-{id}-{}-{}",
                        std::process::id(),
                        crate::images::next_seq()
                    ));
                    let _ = std::fs::remove_dir_all(&tmp);
                    unpack_layer(blob, &tmp)?;
                    if std::fs::rename(&tmp, &dest).is_err() && !dest.is_dir() {
                        let _ = std::fs::remove_dir_all(&tmp);
                        return Err(bad(&dest, "cannot move the unpacked layer into place"));
                    }
                    let _ = std::fs::remove_dir_all(&tmp);
                }
                layer_ids.push(id);
            }
            let cfg_bytes = std::fs::read(&found.config).map_err(io_err(&found.config))?;
            let cfg: ConfigFile =
                serde_json::from_slice(&cfg_bytes).map_err(|source| ImageError::Corrupt {
                    path: found.config.clone(),
                    source,
                })?;
            let id = format!("sha256:{}", hex::encode(Sha256::digest(&cfg_bytes)));
            let mut names = found.names.clone();
            if names.is_empty() {
                names.push(fallback_name.to_string());
            }
            for n in names {
                let r = ImageRef::parse(&n)?;
                let rec = ImageRecord {
                    name: r.full(),
                    id: id.clone(),
                    layers: layer_ids.clone(),
                    config: cfg.config.clone().unwrap_or_default(),
                    repo_digest: None,
                };
                self.save_record(&rec)?;
                recs.push(rec);
            }
        }
        if recs.is_empty() {
            return Err(bad(src, "the archive holds no image"));
        }
        Ok(recs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    fn tar_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, d) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(d.len() as u64);
            h.set_mode(0o755);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            if p.contains("..") {
                // The builder refuses such names; a hostile archive has them anyway.
                h.as_old_mut().name[..p.len()].copy_from_slice(p.as_bytes());
                h.set_cksum();
                b.append(&h, *d).unwrap();
            } else {
                h.set_cksum();
                b.append_data(&mut h, p, *d).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn docker_archive_with_whiteouts_loads_and_resolves() {
        let root = std::env::temp_dir().join(format!("minik-archive-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let base = tar_bytes(&[("bin/app", b"v1"), ("etc/old", b"x"), ("data/keep/a", b"1")]);
        let top = gz(&tar_bytes(&[
            ("bin/app", b"v2"),
            ("etc/.wh.old", b""),
            ("data/keep/.wh..wh..opq", b""),
            ("../escape", b"no"),
        ]));
        let config = br#"{"architecture":"amd64","config":{"Entrypoint":["/bin/app"],"Env":["A=1"],"WorkingDir":"/data"}}"#;
        let manifest = br#"[{"Config":"cfg.json","RepoTags":["example.com/team/app:1.0"],"Layers":["l1/layer.tar","l2/layer.tar"]}]"#;
        let outer = tar_bytes(&[
            ("manifest.json", manifest),
            ("cfg.json", config),
            ("l1/layer.tar", &base),
            ("l2/layer.tar", &top),
        ]);
        std::fs::create_dir_all(&root).unwrap();
        let archive = root.join("app.tar");
        std::fs::write(&archive, &outer).unwrap();
        let store = ImageStore::new(&root);
        let recs = store.load_archive(&archive, "app:latest").unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].name, "example.com/team/app:1.0");
        assert_eq!(recs[0].config.entrypoint, vec!["/bin/app"]);
        assert_eq!(recs[0].config.working_dir, "/data");
        let r = store.resolve("example.com/team/app:1.0").unwrap();
        let lowers = store.lowerdirs(&r);
        assert_eq!(std::fs::read(lowers[0].join("bin/app")).unwrap(), b"v2");
        assert_eq!(std::fs::read(lowers[1].join("bin/app")).unwrap(), b"v1");
        let wh = std::fs::symlink_metadata(lowers[0].join("etc/old")).unwrap();
        assert!(
            wh.file_type().is_char_device(),
            "whiteout is a 0/0 char device"
        );
        let mut v = [0u8; 4];
        let c = std::ffi::CString::new(lowers[0].join("data/keep").to_str().unwrap()).unwrap();
        // SAFETY: valid path, attribute name and buffer with its length.
        let n = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                v.as_mut_ptr() as *mut libc::c_void,
                4,
            )
        };
        assert_eq!(&v[..n.max(0) as usize], b"y");
        assert!(
            !root.join("images/layers/escape").exists() && !root.join("images/escape").exists()
        );
        // Loading again reuses the layers.
        let again = store.load_archive(&archive, "app:latest").unwrap();
        assert_eq!(again[0].layers, recs[0].layers);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean_rel(Path::new("./a/b")), Some(PathBuf::from("a/b")));
        assert_eq!(clean_rel(Path::new("/a")), Some(PathBuf::from("a")));
        assert_eq!(clean_rel(Path::new("a/../b")), None);
    }
}
