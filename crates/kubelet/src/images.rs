//! Image store: owns `<root>/images`. Nothing else writes there.
//!
//! Layout (chosen so registry pulls drop in later: a pulled layer is unpacked
//! once into `layers/` and shared by every image that lists it):
//! ```text
//! <root>/images/layers/<hex>/            one unpacked layer (an overlayfs lowerdir)
//! <root>/images/refs/<escaped ref>.json  ImageRecord: id, layers (bottom first), config
//! ```
//! A layer directory is built under a temporary name and renamed into place,
//! so its presence means it is complete. The built-in images (`minik/busybox`,
//! `minik/hello`) are made from the host's statically linked `/bin/busybox`
//! (Debian's busybox-static; also in the VM ISO): no network is needed.
//! `minik/dashboard` (the dashboard addon) is busybox plus the running minik
//! binary at `/minik` and the shared libraries it needs; it is built lazily,
//! the first time a pod asks for it, since the copy costs a few hundred ms.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the built-in images find busybox (first that exists).
const BUSYBOX_CANDIDATES: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

/// Bumped when the built-in layers' contents change, so old layers are not reused.
// v4: the busybox copy carries the `wget -T` fix (`patch_wget_timeout`).
const BUILTIN_LAYER_VERSION: &str = "minik-builtin-v4";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {0:?}")]
    InvalidReference(String),
    #[error("image {0:?} is not present on the node")]
    NotPresent(String),
    #[error("busybox not found (looked in {0}); install Debian's busybox-static to build the built-in images")]
    NoBusybox(String),
    #[error("image store I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot list the shared libraries of {exe}: {reason} (is ldd installed?)")]
    Libraries { exe: PathBuf, reason: String },
    #[error("image record {path} is corrupt: {source}; delete it and restart the node")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A normalized image reference, the way docker/containerd spell them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub registry: String,
    pub repository: String,
    /// `tag` or `None` when a digest is given.
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    /// `minik/hello` → `docker.io/minik/hello:latest`; `nginx` → `docker.io/library/nginx:latest`.
    pub fn parse(reference: &str) -> Result<Self, ImageError> {
        let r = reference.trim();
        let bad = || ImageError::InvalidReference(reference.to_string());
        if r.is_empty()
            || r.chars()
                .any(|c| c.is_whitespace() || c.is_ascii_uppercase())
        {
            return Err(bad());
        }
        let (rest, digest) = match r.split_once('@') {
            Some((a, d)) => (a, Some(d.to_string())),
            None => (r, None),
        };
        // A tag is a ':' after the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_string()),
            ),
            None => (rest, None),
        };
        if name.is_empty() || name.ends_with('/') || tag.as_deref() == Some("") {
            return Err(bad());
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, tail))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), tail.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        let repository = if registry == "docker.io" && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `docker.io/minik/hello:latest`
    pub fn full(&self) -> String {
        let mut s = format!("{}/{}", self.registry, self.repository);
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// `docker.io/minik/hello` (what goes before `@sha256:` in an imageID).
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Images the node itself provides (`minik/*` on docker.io).
    pub fn is_builtin(&self) -> bool {
        self.registry == "docker.io" && self.repository.starts_with("minik/")
    }
}

/// Kubernetes' default: `Always` when the tag is `latest` or absent, else `IfNotPresent`.
pub fn effective_pull_policy(image: &str, policy: Option<&str>) -> String {
    if let Some(p) = policy.filter(|p| !p.is_empty()) {
        return p.to_string();
    }
    match ImageRef::parse(image) {
        Ok(r) if r.digest.is_none() && r.tag.as_deref() == Some("latest") => "Always".into(),
        _ => "IfNotPresent".into(),
    }
}

/// What the kubelet does about a container's image before starting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullDecision {
    /// Use the image in the store (built-in images always; else when
    /// present and the policy allows).
    UseLocal,
    /// Ask the registry (`Always`, or `IfNotPresent` and missing).
    Pull,
    /// Missing and the policy is `Never`: `ErrImageNeverPull`.
    NeverPullMissing,
}

/// The kubelet's image pull policy rules. `policy` is the effective policy
/// ([`effective_pull_policy`]); built-in `minik/*` images are never pulled. Pure.
pub fn pull_decision(image: &str, policy: &str, present: bool) -> PullDecision {
    if ImageRef::parse(image).is_ok_and(|r| r.is_builtin()) {
        return PullDecision::UseLocal;
    }
    match (policy, present) {
        ("Always", _) => PullDecision::Pull,
        ("Never", true) | (_, true) => PullDecision::UseLocal,
        ("Never", false) => PullDecision::NeverPullMissing,
        (_, false) => PullDecision::Pull,
    }
}

/// The part of an OCI image config the kubelet uses (OCI/docker field names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(rename = "Entrypoint", default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(rename = "Cmd", default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    #[serde(rename = "Env", default)]
    pub env: Vec<String>,
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: String,
    #[serde(rename = "User", default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(rename = "ExposedPorts", default)]
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
}

/// One image in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Normalized reference, e.g. `docker.io/minik/hello:latest`.
    pub name: String,
    /// `sha256:<hex>` over layers + config.
    pub id: String,
    /// Layer directory names under `layers/`, bottom first.
    pub layers: Vec<String>,
    pub config: ImageConfig,
    /// `sha256:…` of the manifest (or index) the registry served, for
    /// pulled images; `None` for built-in and loaded ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_digest: Option<String>,
}

impl ImageRecord {
    /// What `containerStatuses[].imageID` shows: `<repo>@<manifest digest>`
    /// for pulled images, `<repo>@<image id>` for the others.
    pub fn image_id(&self) -> String {
        let digest = self.repo_digest.as_deref().unwrap_or(&self.id);
        match ImageRef::parse(&self.name) {
            Ok(r) => format!("{}@{digest}", r.name()),
            Err(_) => digest.to_string(),
        }
    }
}

/// The image store rooted at `<root>/images`.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

/// A number unique in this process, for temporary names (concurrent
/// builds, imports and record writes must not share one).
pub(crate) fn next_seq() -> u64 {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn escape_ref(name: &str) -> String {
    let mut s = String::new();
    for c in name.chars() {
        match c {
            '%' => s.push_str("%25"),
            '/' => s.push_str("%2F"),
            ':' => s.push_str("%3A"),
            '@' => s.push_str("%40"),
            c => s.push(c),
        }
    }
    s
}

impl ImageStore {
    pub fn new(root_dir: &Path) -> Self {
        ImageStore {
            dir: root_dir.join("images"),
        }
    }

    pub fn layer_dir(&self, layer: &str) -> PathBuf {
        self.dir.join("layers").join(layer)
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.dir
            .join("refs")
            .join(format!("{}.json", escape_ref(name)))
    }

    /// Looks an image up by any spelling of its reference.
    pub fn resolve(&self, reference: &str) -> Result<ImageRecord, ImageError> {
        let r = ImageRef::parse(reference)?;
        if r.full() == DASHBOARD_IMAGE || r.full() == MINIK_IMAGE {
            self.ensure_dashboard()?;
        }
        let path = self.record_path(&r.full());
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ImageError::NotPresent(reference.to_string()))
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let rec: ImageRecord =
            serde_json::from_slice(&data).map_err(|source| ImageError::Corrupt {
                path: path.clone(),
                source,
            })?;
        for l in &rec.layers {
            if !self.layer_dir(l).is_dir() {
                return Err(ImageError::NotPresent(reference.to_string()));
            }
        }
        Ok(rec)
    }

    /// Lowerdirs for overlayfs: topmost layer first.
    pub fn lowerdirs(&self, rec: &ImageRecord) -> Vec<PathBuf> {
        rec.layers.iter().rev().map(|l| self.layer_dir(l)).collect()
    }

    /// `<root>/images`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores (or replaces) an image record.
    pub fn save_record(&self, rec: &ImageRecord) -> Result<(), ImageError> {
        self.write_record(rec)
    }

    fn write_record(&self, rec: &ImageRecord) -> Result<(), ImageError> {
        let path = self.record_path(&rec.name);
        let parent = path.parent().unwrap_or(&self.dir).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
        let data = serde_json::to_vec_pretty(rec).expect("image record serializes");
        if std::fs::read(&path).ok().as_deref() == Some(&data[..]) {
            return Ok(());
        }
        let tmp = path.with_extension(format!("tmp{}-{}", std::process::id(), next_seq()));
        std::fs::write(&tmp, &data).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    /// Builds a layer with `fill` unless `layers/<id>` already exists.
    fn ensure_layer(
        &self,
        id: &str,
        fill: impl FnOnce(&Path) -> Result<(), ImageError>,
    ) -> Result<(), ImageError> {
        let dest = self.layer_dir(id);
        if dest.is_dir() {
            return Ok(());
        }
        let layers = self.dir.join("layers");
        std::fs::create_dir_all(&layers).map_err(io_err(&layers))?;
        // Unique per call: two pods may ask for the same lazily built image at once.
        let seq = next_seq();
        let tmp = layers.join(format!(".tmp-{id}-{}-{seq}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        fill(&tmp)?;
        match std::fs::rename(&tmp, &dest) {
            Ok(()) => Ok(()),
            Err(_) if dest.is_dir() => {
                let _ = std::fs::remove_dir_all(&tmp);
                Ok(())
            }
            Err(e) => Err(io_err(&dest)(e)),
        }
    }

    /// Builds `minik/busybox` and `minik/hello` if missing. Idempotent and fast
    /// when they exist (one hash of the busybox binary).
    pub fn ensure_builtin(&self) -> Result<Vec<ImageRecord>, ImageError> {
        let busybox = BUSYBOX_CANDIDATES
            .iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .ok_or_else(|| ImageError::NoBusybox(BUSYBOX_CANDIDATES.join(", ")))?;
        // Hashing 2 MB on every start costs tens of ms in debug builds: a
        // stamp of the binary's identity remembers the layer it produced.
        let stamp_path = self.dir.join(".busybox-stamp");
        let stamp = {
            use std::os::unix::fs::MetadataExt;
            let md = std::fs::metadata(busybox).map_err(io_err(busybox))?;
            format!(
                "{BUILTIN_LAYER_VERSION} {} {} {} {} {}",
                busybox.display(),
                md.dev(),
                md.ino(),
                md.size(),
                md.mtime_nsec() + md.mtime() * 1_000_000_000
            )
        };
        let cached = std::fs::read_to_string(&stamp_path).ok().and_then(|s| {
            let (key, id) = s.rsplit_once(' ')?;
            (key == stamp && self.layer_dir(id).is_dir()).then(|| id.to_string())
        });
        let base_id = match cached {
            Some(id) => id,
            None => {
                let bin = std::fs::read(busybox).map_err(io_err(busybox))?;
                let bin = patch_wget_timeout(bin);
                let id = sha256_hex(&[BUILTIN_LAYER_VERSION.as_bytes(), b"busybox", &bin]);
                self.ensure_layer(&id, |dir| fill_busybox_layer(dir, busybox, &bin))?;
                let _ = std::fs::write(&stamp_path, format!("{stamp} {id}"));
                id
            }
        };
        let hello_id = sha256_hex(&[
            BUILTIN_LAYER_VERSION.as_bytes(),
            b"hello",
            HELLO_SCRIPT.as_bytes(),
        ]);
        self.ensure_layer(&hello_id, fill_hello_layer)?;

        let path_env = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        let busybox_cfg = ImageConfig {
            cmd: vec!["sh".into()],
            env: vec![path_env.into()],
            working_dir: "/".into(),
            ..Default::default()
        };
        let mut ports = BTreeMap::new();
        ports.insert("80/tcp".to_string(), serde_json::json!({}));
        let hello_cfg = ImageConfig {
            entrypoint: vec!["/usr/bin/minik-hello".into()],
            env: vec![path_env.into()],
            working_dir: "/".into(),
            exposed_ports: ports,
            ..Default::default()
        };
        let recs = vec![
            make_record(
                "docker.io/minik/busybox:latest",
                vec![base_id.clone()],
                busybox_cfg,
            ),
            make_record(
                "docker.io/minik/hello:latest",
                vec![base_id, hello_id],
                hello_cfg,
            ),
        ];
        for r in &recs {
            self.write_record(r)?;
        }
        self.prune_layers();
        Ok(recs)
    }

    /// Builds `minik/dashboard` unless its layer for the running binary
    /// exists (a stat when it does): the `minik/busybox` layer plus a layer
    /// holding this process's executable as `/minik` and the shared
    /// libraries it links (copied to the same paths). A new minik binary
    /// gives a new layer; the old one is pruned at the next node start.
    pub fn ensure_dashboard(&self) -> Result<ImageRecord, ImageError> {
        let base = match self.resolve("minik/busybox") {
            Ok(rec) => rec.layers,
            Err(_) => {
                self.ensure_builtin()?;
                self.resolve("minik/busybox")?.layers
            }
        };
        // `/proc/<pid>/exe` still opens when the binary was replaced on disk
        // (a rebuild), and names this process for the `ldd` child too.
        let exe = PathBuf::from(format!("/proc/{}/exe", std::process::id()));
        let stamp = {
            use std::os::unix::fs::MetadataExt;
            let md = std::fs::metadata(&exe).map_err(io_err(&exe))?;
            format!(
                "{BUILTIN_LAYER_VERSION} dashboard {} {} {} {}",
                md.dev(),
                md.ino(),
                md.size(),
                md.mtime_nsec() + md.mtime() * 1_000_000_000
            )
        };
        let id = sha256_hex(&[stamp.as_bytes()]);
        self.ensure_layer(&id, |dir| fill_dashboard_layer(dir, &exe))?;
        let mut ports = BTreeMap::new();
        ports.insert("9090/tcp".to_string(), serde_json::json!({}));
        let cfg = ImageConfig {
            entrypoint: vec!["/minik".into()],
            cmd: vec![
                "dashboard-server".into(),
                "--listen".into(),
                "0.0.0.0:9090".into(),
            ],
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            working_dir: "/".into(),
            exposed_ports: ports,
            ..Default::default()
        };
        let mut layers = base;
        layers.push(id);
        // `minik/minik`: the same layers with no default command, for every
        // in-cluster component an addon runs (`/minik <component> ...`).
        let generic = ImageConfig {
            cmd: Vec::new(),
            exposed_ports: BTreeMap::new(),
            ..cfg.clone()
        };
        self.write_record(&make_record(MINIK_IMAGE, layers.clone(), generic))?;
        let rec = make_record(DASHBOARD_IMAGE, layers, cfg);
        self.write_record(&rec)?;
        Ok(rec)
    }

    /// Every image record in the store, sorted by name (unreadable records
    /// are skipped).
    pub fn list(&self) -> Vec<ImageRecord> {
        let mut out: Vec<ImageRecord> = std::fs::read_dir(self.dir.join("refs"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|d| serde_json::from_slice::<ImageRecord>(&d).ok())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Bytes on disk of the layers `rec` lists (symlinks not followed).
    pub fn disk_size(&self, rec: &ImageRecord) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(md) = std::fs::symlink_metadata(p) else {
                return 0;
            };
            if md.is_dir() {
                std::fs::read_dir(p)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| walk(&e.path()))
                    .sum()
            } else {
                md.len()
            }
        }
        rec.layers.iter().map(|l| walk(&self.layer_dir(l))).sum()
    }

    /// Removes the record `name` (normalized) and then every layer no record
    /// and no layer in `keep_layers` (mounted by containers) uses.
    pub fn remove(
        &self,
        name: &str,
        keep_layers: &std::collections::HashSet<String>,
    ) -> Result<(), ImageError> {
        let path = self.record_path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ImageError::NotPresent(name.to_string()))
            }
            Err(e) => return Err(io_err(&path)(e)),
        }
        let mut used = keep_layers.clone();
        for r in self.list() {
            used.extend(r.layers);
        }
        // A layer renamed into place in the last minutes may belong to a
        // pull or import whose record is not written yet: keep it.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        if let Ok(rd) = std::fs::read_dir(self.dir.join("layers")) {
            for e in rd.flatten() {
                use std::os::unix::fs::MetadataExt;
                let n = e.file_name().to_string_lossy().into_owned();
                let fresh = e.metadata().is_ok_and(|m| now - m.ctime() < 600);
                if !n.starts_with('.') && !used.contains(&n) && !fresh {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(())
    }

    /// Removes layer directories no image record lists (e.g. built-in layers
    /// of an older minik). Best effort.
    pub fn prune_layers(&self) {
        let mut used = std::collections::HashSet::new();
        if let Ok(rd) = std::fs::read_dir(self.dir.join("refs")) {
            for e in rd.flatten() {
                let Ok(data) = std::fs::read(e.path()) else {
                    continue;
                };
                let Ok(rec) = serde_json::from_slice::<ImageRecord>(&data) else {
                    // An unreadable record may reference anything: keep all.
                    return;
                };
                used.extend(rec.layers);
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.dir.join("layers")) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') && !used.contains(&name) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

/// The dashboard addon's image (see `ImageStore::ensure_dashboard`).
pub const DASHBOARD_IMAGE: &str = "docker.io/minik/dashboard:latest";
/// The image of every other in-cluster component addons run: busybox plus
/// this minik binary at `/minik`, entrypoint `/minik`, no default command
/// (the pod's `args` name the hidden subcommand, e.g. `ingress-controller`).
pub const MINIK_IMAGE: &str = "docker.io/minik/minik:latest";

/// Dynamic loaders to ask (`ld.so --list`) when `ldd` is missing (the VM).
const LOADERS: &[&str] = &["/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1"];

/// The absolute paths in `ldd` (or `ld.so --list`) output, loader included;
/// the vDSO (no path) is skipped. Empty for a static executable.
pub fn parse_ldd(text: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let target = match line.split_once("=>") {
            Some((_, rhs)) => rhs.trim(),
            None => line,
        };
        let path = target.split_whitespace().next().unwrap_or("");
        if path.starts_with('/') && !path.contains("..") {
            let p = PathBuf::from(path);
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// The shared libraries `exe` loads, from `ldd` or the dynamic loader.
fn shared_libraries(exe: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let mut tried = Vec::new();
    let mut cmds: Vec<(String, Vec<String>)> =
        vec![("ldd".into(), vec![exe.display().to_string()])];
    for l in LOADERS.iter().filter(|l| Path::new(l).exists()) {
        cmds.push((
            l.to_string(),
            vec!["--list".into(), exe.display().to_string()],
        ));
    }
    for (prog, args) in cmds {
        match std::process::Command::new(&prog).args(&args).output() {
            Ok(o) if o.status.success() => {
                return Ok(parse_ldd(&String::from_utf8_lossy(&o.stdout)))
            }
            Ok(o) => {
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                // A static binary needs nothing.
                if text.contains("not a dynamic executable") || text.contains("statically linked") {
                    return Ok(Vec::new());
                }
                tried.push(format!("{prog}: {}", text.trim()));
            }
            Err(e) => tried.push(format!("{prog}: {e}")),
        }
    }
    Err(ImageError::Libraries {
        exe: exe.to_path_buf(),
        reason: tried.join("; "),
    })
}

fn fill_dashboard_layer(dir: &Path, exe: &Path) -> Result<(), ImageError> {
    let target = dir.join("minik");
    std::fs::copy(exe, &target).map_err(io_err(&target))?;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
        .map_err(io_err(&target))?;
    for lib in shared_libraries(exe)? {
        let Ok(rel) = lib.strip_prefix("/") else {
            continue;
        };
        let dest = dir.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        // Follows symlinks: the layer gets the library's bytes at the path
        // the loader asks for.
        std::fs::copy(&lib, &dest).map_err(io_err(&lib))?;
    }
    Ok(())
}

fn make_record(name: &str, layers: Vec<String>, config: ImageConfig) -> ImageRecord {
    let cfg = serde_json::to_vec(&config).expect("image config serializes");
    let joined = layers.join(",");
    let id = format!("sha256:{}", sha256_hex(&[joined.as_bytes(), &cfg]));
    ImageRecord {
        name: name.to_string(),
        id,
        layers,
        config,
        repo_digest: None,
    }
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// The entrypoint of `minik/hello`. It traps SIGTERM (PID 1 ignores it by
/// default) so `kubectl delete pod` is quick, and logs each request line.
pub const HELLO_SCRIPT: &str = r#"#!/bin/sh
# minik/hello: a page that names the pod serving it.
# The trap comes first: PID 1 ignores SIGTERM unless it handles it.
child=
trap '[ -n "$child" ] && kill -TERM $child 2>/dev/null; wait $child 2>/dev/null; echo "minik/hello: stopped"; exit 0' TERM INT
POD="$(hostname)"
mkdir -p /www
cat > /www/index.html <<EOF
<!DOCTYPE html>
<html>
<head><title>Hello from minik</title></head>
<body>
<h1>Hello from minik!</h1>
<p>Hello from minik! This page is served by pod ${POD}.</p>
</body>
</html>
EOF
echo "minik/hello: serving /www on port 80 as pod ${POD}"
httpd -f -vv -p 80 -h /www &
child=$!
wait $child
"#;

/// wget's option string in Debian's busybox 1.35 (bookworm's busybox-static
/// before 1:1.36.1-5), built without `FEATURE_WGET_TIMEOUT`: `-T` is still
/// declared an integer option (`T:+`) but its storage pointer is NULL, so
/// `wget -T 5 URL` writes through it and dies with SIGSEGV (exit code 139),
/// in `kubectl exec` and in `sh -c` alike (ash runs applets directly).
const WGET_OPTS_BUGGY: &[u8] = b"cqSO:o:P:Y:U:T:+t:n::\0";
/// The same options in the same order (so the same option bits and argument
/// slots), but `-T` takes a string argument, which getopt32 drops when its
/// pointer is NULL: `-T N` is accepted and has no effect, as `-t N` already
/// does in this build. The extra `:` after `n::` is skipped by the parser.
const WGET_OPTS_FIXED: &[u8] = b"cqSO:o:P:Y:U:T:t:n:::\0";

/// The busybox the built-in images carry: the host's binary with the `wget -T`
/// crash fixed in the copy (see [`WGET_OPTS_BUGGY`]); any other build (the
/// string absent, or present more than once) is returned unchanged.
pub fn patch_wget_timeout(mut bin: Vec<u8>) -> Vec<u8> {
    let hits: Vec<usize> = bin
        .windows(WGET_OPTS_BUGGY.len())
        .enumerate()
        .filter(|(_, w)| *w == WGET_OPTS_BUGGY)
        .map(|(i, _)| i)
        .take(2)
        .collect();
    if let [at] = hits[..] {
        bin[at..at + WGET_OPTS_FIXED.len()].copy_from_slice(WGET_OPTS_FIXED);
    }
    bin
}

fn fill_busybox_layer(dir: &Path, busybox: &Path, bin: &[u8]) -> Result<(), ImageError> {
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "home", "tmp", "var/log", "var/run",
        "proc", "sys", "dev", "www",
    ] {
        let p = dir.join(d);
        std::fs::create_dir_all(&p).map_err(io_err(&p))?;
    }
    let tmp = dir.join("tmp");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))
        .map_err(io_err(&tmp))?;
    let root = dir.join("root");
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))
        .map_err(io_err(&root))?;
    let target = dir.join("bin/busybox");
    std::fs::write(&target, bin).map_err(io_err(&target))?;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
        .map_err(io_err(&target))?;
    let out = std::process::Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(io_err(busybox))?;
    let list = String::from_utf8_lossy(&out.stdout);
    let mut applets: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if applets.is_empty() {
        // Older busybox without --list-full: put every applet in /bin.
        let out = std::process::Command::new(busybox)
            .arg("--list")
            .output()
            .map_err(io_err(busybox))?;
        let names = String::from_utf8_lossy(&out.stdout).into_owned();
        let owned: Vec<String> = names.lines().map(|n| format!("bin/{}", n.trim())).collect();
        for a in owned {
            link_applet(dir, &a)?;
        }
    } else {
        applets.retain(|a| *a != "bin/busybox" && !a.contains(".."));
        for a in applets {
            link_applet(dir, a)?;
        }
    }
    let files: &[(&str, &str)] = &[
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nwww-data:x:33:33:www-data:/var/www:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        (
            "etc/group",
            "root:x:0:\ndaemon:x:1:\ntty:x:5:\nwww-data:x:33:\nnogroup:x:65534:\n",
        ),
        ("etc/shells", "/bin/sh\n/bin/ash\n"),
        ("etc/os-release", "NAME=\"minik busybox\"\nID=busybox\nPRETTY_NAME=\"minik/busybox\"\n"),
    ];
    for (p, c) in files {
        let path = dir.join(p);
        std::fs::write(&path, c).map_err(io_err(&path))?;
    }
    Ok(())
}

fn link_applet(dir: &Path, rel: &str) -> Result<(), ImageError> {
    let path = dir.join(rel);
    if path.symlink_metadata().is_ok() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    symlink("/bin/busybox", &path).map_err(io_err(&path))
}

fn fill_hello_layer(dir: &Path) -> Result<(), ImageError> {
    let bin = dir.join("usr/bin");
    std::fs::create_dir_all(&bin).map_err(io_err(&bin))?;
    let www = dir.join("www");
    std::fs::create_dir_all(&www).map_err(io_err(&www))?;
    let script = bin.join("minik-hello");
    std::fs::write(&script, HELLO_SCRIPT).map_err(io_err(&script))?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .map_err(io_err(&script))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wget_timeout_patch_rewrites_exactly_one_option_string() {
        let mut bin = b"\x7fELF....^".to_vec();
        bin.extend_from_slice(WGET_OPTS_BUGGY);
        bin.extend_from_slice(b"-1:\xfe--\xfb");
        let out = patch_wget_timeout(bin.clone());
        assert_eq!(out.len(), bin.len());
        let at = bin.len() - WGET_OPTS_BUGGY.len() - 7;
        assert_eq!(&out[at..at + WGET_OPTS_FIXED.len()], WGET_OPTS_FIXED);
        assert_eq!(&out[..at], &bin[..at]);
        assert_eq!(
            &out[at + WGET_OPTS_FIXED.len()..],
            &bin[at + WGET_OPTS_BUGGY.len()..]
        );
        // Other builds (absent, or ambiguous) are left alone.
        let other = b"no such string here".to_vec();
        assert_eq!(patch_wget_timeout(other.clone()), other);
        let mut twice = bin.clone();
        twice.extend_from_slice(WGET_OPTS_BUGGY);
        assert_eq!(patch_wget_timeout(twice.clone()), twice);
    }

    /// The host's busybox, patched as the images carry it, runs `wget -T 5`
    /// against a real HTTP server on loopback (unpatched Debian 1.35 exits 139).
    #[test]
    fn patched_host_busybox_wget_accepts_a_timeout() {
        use std::io::{Read, Write};
        let Some(host) = BUSYBOX_CANDIDATES
            .iter()
            .map(Path::new)
            .find(|p| p.is_file())
        else {
            eprintln!("no busybox on this host; install busybox-static");
            return;
        };
        let dir = std::env::temp_dir().join(format!("minik-wget-patch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bb = dir.join("busybox");
        std::fs::write(&bb, patch_wget_timeout(std::fs::read(host).unwrap())).unwrap();
        std::fs::set_permissions(&bb, std::fs::Permissions::from_mode(0o755)).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nhello\n")
                .unwrap();
        });
        let out = std::process::Command::new(&bb)
            .args(["wget", "-T", "5", "-q", "-O", "-"])
            .arg(format!("http://127.0.0.1:{port}/"))
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        server.join().unwrap();
        assert!(
            out.status.success(),
            "wget -T: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    }

    #[test]
    fn references_normalize_like_docker() {
        let full = |s: &str| ImageRef::parse(s).unwrap().full();
        assert_eq!(full("minik/hello"), "docker.io/minik/hello:latest");
        assert_eq!(full("minik/hello:latest"), "docker.io/minik/hello:latest");
        assert_eq!(
            full("docker.io/minik/hello:latest"),
            "docker.io/minik/hello:latest"
        );
        assert_eq!(full("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(full("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(full("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(full("quay.io/x/y:v1"), "quay.io/x/y:v1");
        assert_eq!(
            full("busybox@sha256:abc"),
            "docker.io/library/busybox@sha256:abc"
        );
        assert!(ImageRef::parse("").is_err());
        assert!(ImageRef::parse("Nginx").is_err());
        assert!(ImageRef::parse("nginx:").is_err());
        assert!(ImageRef::parse("minik/hello").unwrap().is_builtin());
        assert!(!ImageRef::parse("nginx").unwrap().is_builtin());
    }

    #[test]
    fn pull_policy_defaults() {
        assert_eq!(effective_pull_policy("minik/hello", None), "Always");
        assert_eq!(effective_pull_policy("minik/hello:latest", None), "Always");
        assert_eq!(effective_pull_policy("nginx:1.2", None), "IfNotPresent");
        assert_eq!(effective_pull_policy("nginx", Some("Never")), "Never");
    }

    #[test]
    fn pull_decisions_follow_the_policy() {
        use PullDecision::*;
        // Built-in images are never pulled, whatever the policy.
        assert_eq!(pull_decision("minik/hello", "Always", true), UseLocal);
        assert_eq!(
            pull_decision("minik/busybox:latest", "Always", false),
            UseLocal
        );
        assert_eq!(pull_decision("nginx", "Always", true), Pull);
        assert_eq!(pull_decision("nginx:1.2", "IfNotPresent", true), UseLocal);
        assert_eq!(pull_decision("nginx:1.2", "IfNotPresent", false), Pull);
        assert_eq!(pull_decision("app:dev", "Never", true), UseLocal);
        assert_eq!(pull_decision("app:dev", "Never", false), NeverPullMissing);
        // The defaults end-to-end: `:latest` is re-pulled, a pinned tag is not.
        let p = effective_pull_policy("localhost:5000/x", None);
        assert_eq!(pull_decision("localhost:5000/x", &p, true), Pull);
        let p = effective_pull_policy("localhost:5000/x@sha256:abcd", None);
        assert_eq!(
            pull_decision("localhost:5000/x@sha256:abcd", &p, true),
            UseLocal
        );
    }

    #[test]
    fn escaping_is_injective_for_ref_chars() {
        assert_ne!(escape_ref("a/b"), escape_ref("a%2Fb"));
        assert_eq!(escape_ref("docker.io/a:b"), "docker.io%2Fa%3Ab");
    }

    #[test]
    fn ldd_output_parses_to_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f0e)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0e)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f0e)\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(parse_ldd("\tnot a dynamic executable\n").is_empty());
        assert!(parse_ldd("\tlibfoo.so => not found\n").is_empty());
    }

    #[test]
    fn dashboard_image_holds_this_binary_and_its_libraries() {
        let root = std::env::temp_dir().join(format!("minik-img-dash-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let store = ImageStore::new(&root);
        let rec = store.resolve("minik/dashboard").unwrap();
        assert_eq!(rec.name, DASHBOARD_IMAGE);
        assert_eq!(rec.layers.len(), 2);
        let top = store.layer_dir(&rec.layers[1]);
        let me = std::fs::metadata("/proc/self/exe").unwrap().len();
        assert_eq!(std::fs::metadata(top.join("minik")).unwrap().len(), me);
        // Every library the loader will look for is in the image.
        let exe = PathBuf::from(format!("/proc/{}/exe", std::process::id()));
        for lib in shared_libraries(&exe).unwrap() {
            assert!(
                top.join(lib.strip_prefix("/").unwrap()).is_file(),
                "{lib:?}"
            );
        }
        // The base is the busybox layer; asking again reuses the layer.
        assert_eq!(
            rec.layers[0],
            store.resolve("minik/busybox").unwrap().layers[0]
        );
        assert_eq!(
            store.resolve("docker.io/minik/dashboard:latest").unwrap(),
            rec
        );
        let generic = store.resolve("minik/minik").unwrap();
        assert_eq!(generic.layers, rec.layers);
        assert_eq!(generic.config.entrypoint, vec!["/minik".to_string()]);
        assert!(generic.config.cmd.is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn builtin_images_build_and_resolve() {
        let root = std::env::temp_dir().join(format!("minik-img-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let store = ImageStore::new(&root);
        let recs = store.ensure_builtin().unwrap();
        assert_eq!(recs.len(), 2);
        for spelling in [
            "minik/hello",
            "minik/hello:latest",
            "docker.io/minik/hello:latest",
        ] {
            let r = store.resolve(spelling).unwrap();
            assert_eq!(r.name, "docker.io/minik/hello:latest");
            assert_eq!(r.layers.len(), 2);
        }
        let bb = store.resolve("minik/busybox").unwrap();
        let base = store.layer_dir(&bb.layers[0]);
        assert!(base.join("bin/busybox").is_file());
        assert_eq!(
            std::fs::read_link(base.join("bin/sh")).unwrap(),
            PathBuf::from("/bin/busybox")
        );
        assert!(base.join("etc/passwd").is_file());
        // Shared base layer.
        assert_eq!(
            store.resolve("minik/hello").unwrap().layers[0],
            bb.layers[0]
        );
        assert!(matches!(
            store.resolve("nginx"),
            Err(ImageError::NotPresent(_))
        ));
        // Second call is a no-op returning the same ids.
        let again = store.ensure_builtin().unwrap();
        assert_eq!(again, recs);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
#[cfg(test)]
mod stamp {
    #[test]
    fn second_call_uses_the_stamp_and_agrees() {
        let root = std::env::temp_dir().join(format!("minik-img-timing-{}", std::process::id()));
        let store = super::ImageStore::new(&root);
        let a = store.ensure_builtin().unwrap();
        let t = std::time::Instant::now();
        let b = store.ensure_builtin().unwrap();
        println!("second ensure_builtin: {:?}", t.elapsed());
        assert_eq!(a, b);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
