//! Pod volumes: owns `<root>/pods/<uid>/volumes/<name>/` — emptyDir (a
//! directory, or tmpfs for `medium: Memory`), hostPath checks, and the
//! API-backed volumes (configMap, secret, downwardAPI, projected with
//! service-account tokens) materialized as files with Kubernetes' modes and
//! `fsGroup` ownership. Contents are synced *in place* (the directory is
//! bind-mounted into containers, so it must never be replaced), which lets the
//! pod worker refresh them when ConfigMaps, Secrets or pod labels change.

use crate::spec::parse_quantity;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, PostParams};
use kube::Client;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Kubernetes' default file mode for configMap/secret/downwardAPI files.
pub const DEFAULT_MODE: u32 = 0o644;

/// One file of an API-backed volume.
#[derive(Debug, Clone, PartialEq)]
pub struct VolFile {
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume path {0:?} must be relative and must not contain '..'")]
    BadPath(String),
    #[error("volume I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn chown_group(path: &Path, gid: Option<u32>) {
    if let Some(g) = gid {
        let _ = std::os::unix::fs::lchown(path, None, Some(g));
    }
}

/// Makes `dir` contain exactly `files` (modes applied; with `fs_group` the
/// files belong to that group and are group-readable), replacing each file
/// atomically and removing stale ones. The directory itself is kept.
pub fn sync_dir(dir: &Path, files: &[VolFile], fs_group: Option<u32>) -> Result<(), VolumeError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    chown_group(dir, fs_group);
    let mut wanted: HashSet<PathBuf> = HashSet::new();
    for f in files {
        if f.path.is_empty()
            || f.path.starts_with('/')
            || f.path.split('/').any(|p| p == ".." || p.is_empty())
        {
            return Err(VolumeError::BadPath(f.path.clone()));
        }
        let target = dir.join(&f.path);
        let parent = target.parent().unwrap_or(dir).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(io(&parent))?;
        let mut p = parent.as_path();
        while p.starts_with(dir) && p != dir {
            wanted.insert(p.to_path_buf());
            chown_group(p, fs_group);
            p = p.parent().unwrap_or(dir);
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!("..tmp-{name}"));
        std::fs::write(&tmp, &f.data).map_err(io(&tmp))?;
        let mode = if fs_group.is_some() {
            f.mode | 0o440
        } else {
            f.mode
        };
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode & 0o7777))
            .map_err(io(&tmp))?;
        chown_group(&tmp, fs_group);
        std::fs::rename(&tmp, &target).map_err(io(&target))?;
        wanted.insert(target);
    }
    remove_stale(dir, &wanted);
    Ok(())
}

fn remove_stale(dir: &Path, wanted: &HashSet<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if wanted.contains(&p) {
            if p.is_dir() && !p.is_symlink() {
                remove_stale(&p, wanted);
            }
            continue;
        }
        if p.is_dir() && !p.is_symlink() {
            let _ = std::fs::remove_dir_all(&p);
        } else {
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// Files from a ConfigMap/Secret's data, honouring `items` and modes.
pub fn pick_items(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
) -> Vec<VolFile> {
    let dm = default_mode.map(|m| m as u32).unwrap_or(DEFAULT_MODE);
    match items {
        Some(items) if !items.is_empty() => items
            .iter()
            .filter_map(|i| {
                data.get(&i.key).map(|d| VolFile {
                    path: i.path.clone(),
                    data: d.clone(),
                    mode: i.mode.map(|m| m as u32).unwrap_or(dm),
                })
            })
            .collect(),
        _ => data
            .iter()
            .map(|(k, v)| VolFile {
                path: k.clone(),
                data: v.clone(),
                mode: dm,
            })
            .collect(),
    }
}

/// The node's allocatable cpu (cores) and memory (bytes): the default for
/// `limits.*` in the downward API when a container sets none.
pub fn node_allocatable() -> (f64, f64) {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| crate::node::parse_meminfo_total(&m))
        .unwrap_or(0) as f64
        * 1024.0;
    (cpus, mem)
}

/// `resourceFieldRef` value: `limits.cpu`, `requests.memory`, … divided by
/// `divisor` and rounded up, as Kubernetes does. Pure.
pub fn resource_value(
    c: &Container,
    resource: &str,
    divisor: Option<&Quantity>,
    allocatable: (f64, f64),
) -> Option<String> {
    let (kind, res) = resource.split_once('.')?;
    let r = c.resources.clone().unwrap_or_default();
    let limits = r.limits.unwrap_or_default();
    let requests = r.requests.unwrap_or_default();
    let get =
        |m: &BTreeMap<String, Quantity>, k: &str| m.get(k).and_then(|q| parse_quantity(&q.0).ok());
    let default_limit = match res {
        "cpu" => Some(allocatable.0),
        "memory" => Some(allocatable.1),
        _ => None,
    };
    let value = match kind {
        "limits" => get(&limits, res).or(default_limit)?,
        // Requests default to limits (API defaulting), else 0.
        "requests" => get(&requests, res)
            .or_else(|| get(&limits, res))
            .unwrap_or(0.0),
        _ => return None,
    };
    let d = divisor
        .and_then(|q| parse_quantity(&q.0).ok())
        .filter(|d| *d > 0.0)
        .unwrap_or(1.0);
    let v = (value / d - 1e-9).ceil().max(0.0);
    Some(format!("{}", v as i64))
}

/// Quoted like Go's `%q` for the labels/annotations files.
fn go_quote(s: &str) -> String {
    let mut o = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            c if c.is_control() => o.push_str(&format!("\\x{:02x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Downward API files for a pod. Pure.
pub fn downward_files(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
    pod_ip: &str,
    host_ip: &str,
    allocatable: (f64, f64),
) -> Vec<VolFile> {
    let dm = default_mode.map(|m| m as u32).unwrap_or(DEFAULT_MODE);
    items
        .iter()
        .filter_map(|i| {
            let v = if let Some(f) = &i.field_ref {
                match f.field_path.as_str() {
                    "metadata.labels" | "metadata.annotations" => {
                        let m = if f.field_path == "metadata.labels" {
                            pod.metadata.labels.clone()
                        } else {
                            pod.metadata.annotations.clone()
                        };
                        m.unwrap_or_default()
                            .iter()
                            .map(|(k, v)| format!("{k}={}\n", go_quote(v)))
                            .collect::<String>()
                    }
                    p => crate::pods::field_ref(pod, p, pod_ip, host_ip).unwrap_or_default(),
                }
            } else if let Some(r) = &i.resource_field_ref {
                let spec = pod.spec.as_ref()?;
                let name = r.container_name.clone().unwrap_or_default();
                let c = spec
                    .containers
                    .iter()
                    .find(|c| c.name == name)
                    .or_else(|| spec.containers.first())?;
                resource_value(c, &r.resource, r.divisor.as_ref(), allocatable)?
            } else {
                return None;
            };
            Some(VolFile {
                path: i.path.clone(),
                data: v.into_bytes(),
                mode: i.mode.map(|m| m as u32).unwrap_or(dm),
            })
        })
        .collect()
}

fn bytes_map(cm: ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.unwrap_or_default() {
        data.insert(k, v.0);
    }
    data
}

fn secret_map(s: Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = s
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in s.string_data.unwrap_or_default() {
        data.insert(k, v.into_bytes());
    }
    data
}

/// Whether the pod has volumes whose contents come from the API (refreshed
/// periodically by the worker).
pub fn has_api_volumes(pod: &Pod) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .any(|v| {
            v.config_map.is_some()
                || v.secret.is_some()
                || v.downward_api.is_some()
                || v.projected.is_some()
        })
}

/// Materializes (or refreshes) the pod's volumes; returns name → host path.
/// `first` = the pod's first preparation (tmpfs mounts, token requests).
pub async fn prepare(
    client: &Client,
    pod: &Pod,
    pod_dir: &Path,
    pod_ip: &str,
    host_ip: &str,
) -> Result<HashMap<String, PathBuf>, String> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut out = HashMap::new();
    let base = pod_dir.join("volumes");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(out);
    };
    let fs_group = spec
        .security_context
        .as_ref()
        .and_then(|s| s.fs_group)
        .map(|g| g as u32);
    let alloc = node_allocatable();
    let sync =
        |dir: &Path, files: &[VolFile]| sync_dir(dir, files, fs_group).map_err(|e| e.to_string());
    for v in spec.volumes.iter().flatten() {
        let dir = base.join(&v.name);
        if let Some(ed) = &v.empty_dir {
            if !dir.exists() {
                std::fs::create_dir_all(&dir).map_err(|e| format!("emptyDir {}: {e}", v.name))?;
                let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777));
                if let Some(g) = fs_group {
                    chown_group(&dir, Some(g));
                    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o2777));
                }
            }
            if ed.medium.as_deref() == Some("Memory") && !crate::runtime::is_mountpoint(&dir) {
                let size = ed
                    .size_limit
                    .as_ref()
                    .and_then(|q| parse_quantity(&q.0).ok())
                    .map(|b| format!(",size={}", b as u64))
                    .unwrap_or_default();
                let mode = if fs_group.is_some() { "2777" } else { "777" };
                let data = format!("mode={mode}{size}");
                nix::mount::mount(
                    Some("tmpfs"),
                    &dir,
                    Some("tmpfs"),
                    nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
                    Some(data.as_str()),
                )
                .map_err(|e| format!("emptyDir {} (medium Memory): mounting tmpfs: {e}", v.name))?;
                chown_group(&dir, fs_group);
            }
            out.insert(v.name.clone(), dir);
        } else if let Some(hp) = &v.host_path {
            let p = PathBuf::from(&hp.path);
            match hp.type_.as_deref() {
                Some("DirectoryOrCreate") => {
                    std::fs::create_dir_all(&p).map_err(|e| format!("hostPath {}: {e}", hp.path))?
                }
                Some("FileOrCreate") if !p.exists() => {
                    if let Some(parent) = p.parent() {
                        let _ = std::fs::create_dir_all(parent);
                    }
                    std::fs::write(&p, b"").map_err(|e| format!("hostPath {}: {e}", hp.path))?
                }
                Some("Directory") if !p.is_dir() => {
                    return Err(format!(
                        "hostPath type check failed: {} is not a directory",
                        hp.path
                    ))
                }
                Some("File") if !p.is_file() => {
                    return Err(format!(
                        "hostPath type check failed: {} is not a file",
                        hp.path
                    ))
                }
                Some("Socket") | Some("CharDevice") | Some("BlockDevice") if !p.exists() => {
                    return Err(format!(
                        "hostPath type check failed: {} does not exist",
                        hp.path
                    ))
                }
                _ => {}
            }
            out.insert(v.name.clone(), p);
        } else if let Some(claim) = &v.persistent_volume_claim {
            out.insert(
                v.name.clone(),
                claim_path(client, &ns, &claim.claim_name).await?,
            );
        } else if v.ephemeral.is_some() {
            let claim = ephemeral_claim_name(pod, &v.name);
            out.insert(v.name.clone(), claim_path(client, &ns, &claim).await?);
        } else if let Some(cm) = &v.config_map {
            let files = match cms.get_opt(&cm.name).await {
                Ok(Some(obj)) => pick_items(&bytes_map(obj), cm.items.as_deref(), cm.default_mode),
                Ok(None) if cm.optional == Some(true) => vec![],
                Ok(None) => return Err(format!("configmap \"{}\" not found", cm.name)),
                Err(e) => return Err(format!("reading configmap \"{}\": {e}", cm.name)),
            };
            sync(&dir, &files)?;
            out.insert(v.name.clone(), dir);
        } else if let Some(sec) = &v.secret {
            let name = sec.secret_name.clone().unwrap_or_default();
            let files = match secrets.get_opt(&name).await {
                Ok(Some(obj)) => {
                    pick_items(&secret_map(obj), sec.items.as_deref(), sec.default_mode)
                }
                Ok(None) if sec.optional == Some(true) => vec![],
                Ok(None) => return Err(format!("secret \"{name}\" not found")),
                Err(e) => return Err(format!("reading secret \"{name}\": {e}")),
            };
            sync(&dir, &files)?;
            out.insert(v.name.clone(), dir);
        } else if let Some(d) = &v.downward_api {
            let files = downward_files(
                pod,
                d.items.as_deref().unwrap_or_default(),
                d.default_mode,
                pod_ip,
                host_ip,
                alloc,
            );
            sync(&dir, &files)?;
            out.insert(v.name.clone(), dir);
        } else if let Some(p) = &v.projected {
            let mut files = Vec::new();
            for src in p.sources.iter().flatten() {
                if let Some(cm) = &src.config_map {
                    match cms.get_opt(&cm.name).await {
                        Ok(Some(obj)) => files.extend(pick_items(
                            &bytes_map(obj),
                            cm.items.as_deref(),
                            p.default_mode,
                        )),
                        Ok(None) if cm.optional == Some(true) => {}
                        // kube-root-ca.crt may not be published yet; keep going.
                        Ok(None) => tracing::warn!(
                            "projected volume {}: configmap {} not found",
                            v.name,
                            cm.name
                        ),
                        Err(e) => return Err(format!("reading configmap \"{}\": {e}", cm.name)),
                    }
                }
                if let Some(sec) = &src.secret {
                    match secrets.get_opt(&sec.name).await {
                        Ok(Some(obj)) => files.extend(pick_items(
                            &secret_map(obj),
                            sec.items.as_deref(),
                            p.default_mode,
                        )),
                        Ok(None) if sec.optional == Some(true) => {}
                        Ok(None) => return Err(format!("secret \"{}\" not found", sec.name)),
                        Err(e) => return Err(format!("reading secret \"{}\": {e}", sec.name)),
                    }
                }
                if let Some(d) = &src.downward_api {
                    files.extend(downward_files(
                        pod,
                        d.items.as_deref().unwrap_or_default(),
                        p.default_mode,
                        pod_ip,
                        host_ip,
                        alloc,
                    ));
                }
                if let Some(t) = &src.service_account_token {
                    // Keep an existing token; request one only when missing.
                    let existing = std::fs::read(dir.join(&t.path))
                        .ok()
                        .filter(|d| !d.is_empty());
                    let token = match existing {
                        Some(d) => Some(d),
                        None => {
                            request_token(client, &ns, spec.service_account_name.as_deref(), t)
                                .await
                        }
                    };
                    if let Some(data) = token {
                        files.push(VolFile {
                            path: t.path.clone(),
                            data,
                            mode: p.default_mode.map(|m| m as u32).unwrap_or(DEFAULT_MODE),
                        });
                    }
                }
            }
            sync(&dir, &files)?;
            out.insert(v.name.clone(), dir);
        }
    }
    Ok(out)
}

/// Why a claim cannot be mounted yet (pure): it must exist, not be being
/// deleted, and be Bound to a volume. The message names what to fix.
pub fn claim_unready_reason(
    claim: &str,
    pvc: Option<&k8s_openapi::api::core::v1::PersistentVolumeClaim>,
) -> Option<String> {
    let Some(pvc) = pvc else {
        return Some(format!(
            "persistentvolumeclaim \"{claim}\" not found: create it, or fix the pod's claimName"
        ));
    };
    if pvc.metadata.deletion_timestamp.is_some() {
        return Some(format!(
            "persistentvolumeclaim \"{claim}\" is being deleted"
        ));
    }
    let phase = pvc
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending");
    let volume = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("");
    if phase != "Bound" || volume.is_empty() {
        return Some(format!(
            "persistentvolumeclaim \"{claim}\" is not bound (phase {phase}); `kubectl describe pvc {claim}` says why"
        ));
    }
    None
}

/// The pod's PersistentVolumeClaim volumes that are not ready to mount, as
/// one message per claim (empty: all Bound). The pod worker waits on these
/// before creating the sandbox, as the kubelet's volume manager does.
pub async fn unready_claims(client: &Client, pod: &Pod) -> Vec<String> {
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let api = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns);
    let mut out = Vec::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let (name, ephemeral) = match (&v.persistent_volume_claim, &v.ephemeral) {
            (Some(c), _) => (c.claim_name.clone(), false),
            (None, Some(_)) => (ephemeral_claim_name(pod, &v.name), true),
            _ => continue,
        };
        match api.get_opt(&name).await {
            Ok(Some(pvc)) if ephemeral && !owned_by(&pvc, pod) => out.push(format!(
                "persistentvolumeclaim \"{name}\" was not created for pod {ns}/{} (pod is not owner): delete or rename that claim",
                pod.metadata.name.as_deref().unwrap_or_default()
            )),
            Ok(pvc) => out.extend(claim_unready_reason(&name, pvc.as_ref())),
            Err(e) => out.push(format!("reading persistentvolumeclaim \"{name}\": {e}")),
        }
    }
    out
}

/// The claim of a generic ephemeral volume: `<pod>-<volume>`.
pub fn ephemeral_claim_name(pod: &Pod, volume: &str) -> String {
    format!(
        "{}-{volume}",
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn owned_by(pvc: &k8s_openapi::api::core::v1::PersistentVolumeClaim, pod: &Pod) -> bool {
    pvc.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == pod.metadata.uid.as_ref())
}

/// Whether a volume is a claim mounted read-only (`persistentVolumeClaim.readOnly`):
/// every mount of it is then read-only, whatever the container asks.
pub fn claim_read_only(pod: &Pod, volume: &str) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .any(|v| {
            v.name == volume
                && v.persistent_volume_claim
                    .as_ref()
                    .is_some_and(|c| c.read_only == Some(true))
        })
}

/// The host directory behind a bound PersistentVolumeClaim (hostPath or
/// local PersistentVolumes: what a single node can offer).
async fn claim_path(client: &Client, ns: &str, claim: &str) -> Result<PathBuf, String> {
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    let pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .get_opt(claim)
        .await
        .map_err(|e| format!("reading persistentvolumeclaim \"{claim}\": {e}"))?;
    if let Some(why) = claim_unready_reason(claim, pvc.as_ref()) {
        return Err(why);
    }
    let pv_name = pvc
        .and_then(|p| p.spec)
        .and_then(|s| s.volume_name)
        .unwrap_or_default();
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get_opt(&pv_name)
        .await
        .map_err(|e| format!("reading persistentvolume \"{pv_name}\": {e}"))?
        .ok_or_else(|| format!("persistentvolume \"{pv_name}\" not found"))?;
    let spec = pv.spec.unwrap_or_default();
    let path = spec
        .host_path
        .map(|h| h.path)
        .or_else(|| spec.local.map(|l| l.path))
        .ok_or_else(|| {
            format!("persistentvolume \"{pv_name}\" is neither hostPath nor local; minik cannot mount it")
        })?;
    let p = PathBuf::from(path);
    std::fs::create_dir_all(&p)
        .map_err(|e| format!("persistentvolume {pv_name} at {}: {e}", p.display()))?;
    Ok(p)
}

async fn request_token(
    client: &Client,
    ns: &str,
    sa: Option<&str>,
    t: &k8s_openapi::api::core::v1::ServiceAccountTokenProjection,
) -> Option<Vec<u8>> {
    let sa = sa.filter(|s| !s.is_empty()).unwrap_or("default");
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: t.audience.clone().map(|a| vec![a]).unwrap_or_default(),
            expiration_seconds: t.expiration_seconds,
            ..Default::default()
        },
        ..Default::default()
    };
    match api
        .create_subresource::<_, TokenRequest>("token", sa, &PostParams::default(), &req)
        .await
    {
        Ok(tr) => tr.status.map(|s| s.token.into_bytes()),
        Err(e) => {
            tracing::warn!("service account token for {ns}/{sa}: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("minik-vol-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn sync_in_place_with_modes_and_stale_removal() {
        let d = tmp("sync");
        let f = |p: &str, s: &str, m| VolFile {
            path: p.into(),
            data: s.as_bytes().to_vec(),
            mode: m,
        };
        sync_dir(&d, &[f("a", "1", 0o644), f("sub/b", "2", 0o400)], None).unwrap();
        let ino = std::fs::metadata(&d).unwrap().ino();
        assert_eq!(std::fs::read_to_string(d.join("sub/b")).unwrap(), "2");
        assert_eq!(
            std::fs::metadata(d.join("sub/b")).unwrap().mode() & 0o777,
            0o400
        );
        sync_dir(&d, &[f("a", "updated", 0o644)], Some(1001)).unwrap();
        assert_eq!(
            std::fs::metadata(&d).unwrap().ino(),
            ino,
            "directory kept (bind mounts)"
        );
        assert_eq!(std::fs::read_to_string(d.join("a")).unwrap(), "updated");
        assert!(!d.join("sub").exists(), "stale entries removed");
        let md = std::fs::metadata(d.join("a")).unwrap();
        assert_eq!(md.gid(), 1001);
        assert_eq!(md.mode() & 0o777, 0o644);
        assert!(sync_dir(&d, &[f("../x", "", 0o644)], None).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn claims_must_be_bound_to_mount() {
        use k8s_openapi::api::core::v1::PersistentVolumeClaim;
        let pvc = |phase: Option<&str>, volume: Option<&str>| -> PersistentVolumeClaim {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "data"},
                "spec": {"volumeName": volume},
                "status": {"phase": phase},
            }))
            .unwrap()
        };
        assert!(claim_unready_reason("data", None)
            .unwrap()
            .contains("not found"));
        let pending = claim_unready_reason("data", Some(&pvc(Some("Pending"), None))).unwrap();
        assert!(
            pending.contains("persistentvolumeclaim \"data\" is not bound"),
            "{pending}"
        );
        assert!(claim_unready_reason("data", Some(&pvc(None, None))).is_some());
        assert_eq!(
            claim_unready_reason("data", Some(&pvc(Some("Bound"), Some("pv1")))),
            None
        );
        let mut deleting = pvc(Some("Bound"), Some("pv1"));
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert!(claim_unready_reason("data", Some(&deleting))
            .unwrap()
            .contains("being deleted"));
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [], "volumes": [
                {"name": "ro", "persistentVolumeClaim": {"claimName": "a", "readOnly": true}},
                {"name": "rw", "persistentVolumeClaim": {"claimName": "b"}},
            ]},
        }))
        .unwrap();
        assert!(claim_read_only(&pod, "ro"));
        assert!(!claim_read_only(&pod, "rw"));
        assert!(!claim_read_only(&pod, "other"));
    }

    #[test]
    fn items_and_modes() {
        let data: BTreeMap<String, Vec<u8>> = [
            ("k1".to_string(), b"v1".to_vec()),
            ("k2".to_string(), b"v2".to_vec()),
        ]
        .into();
        let all = pick_items(&data, None, Some(0o400));
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|f| f.mode == 0o400));
        let items = vec![KeyToPath {
            key: "k2".into(),
            path: "path/to/k2".into(),
            mode: Some(0o600),
        }];
        let one = pick_items(&data, Some(&items), None);
        assert_eq!(
            one,
            vec![VolFile {
                path: "path/to/k2".into(),
                data: b"v2".to_vec(),
                mode: 0o600
            }]
        );
    }

    #[test]
    fn resource_values() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "resources": {"limits": {"cpu": "1250m", "memory": "64Mi"}, "requests": {"cpu": "250m"}}
        }))
        .unwrap();
        let alloc = (2.0, 8.0 * 1024.0 * 1024.0 * 1024.0);
        assert_eq!(
            resource_value(&c, "limits.cpu", None, alloc).as_deref(),
            Some("2")
        );
        let milli = Quantity("1m".into());
        assert_eq!(
            resource_value(&c, "limits.cpu", Some(&milli), alloc).as_deref(),
            Some("1250")
        );
        assert_eq!(
            resource_value(&c, "requests.cpu", Some(&milli), alloc).as_deref(),
            Some("250")
        );
        let mi = Quantity("1Mi".into());
        assert_eq!(
            resource_value(&c, "limits.memory", Some(&mi), alloc).as_deref(),
            Some("64")
        );
        assert_eq!(
            resource_value(&c, "requests.memory", Some(&mi), alloc).as_deref(),
            Some("64"),
            "requests default to limits"
        );
        let bare: Container = serde_json::from_value(serde_json::json!({"name": "c"})).unwrap();
        assert_eq!(
            resource_value(&bare, "limits.cpu", None, alloc).as_deref(),
            Some("2"),
            "node allocatable"
        );
        assert_eq!(
            resource_value(&bare, "limits.memory", None, alloc).as_deref(),
            Some("8589934592")
        );
    }

    #[test]
    fn downward_labels_quoted() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "labels": {"a": "x\"y", "b": "2"}},
            "spec": {"containers": [{"name": "c"}]}
        }))
        .unwrap();
        let items: Vec<DownwardAPIVolumeFile> = serde_json::from_value(serde_json::json!([
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 256}
        ]))
        .unwrap();
        let f = downward_files(&pod, &items, None, "10.0.0.1", "1.1.1.1", (1.0, 1.0));
        assert_eq!(
            String::from_utf8_lossy(&f[0].data),
            "a=\"x\\\"y\"\nb=\"2\"\n"
        );
        assert_eq!(f[0].mode, 0o644);
        assert_eq!(f[1].data, b"p");
        assert_eq!(f[1].mode, 0o400);
    }
}
