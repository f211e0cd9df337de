//! minik-storage: the dynamic hostPath provisioner behind the
//! `storage-provisioner` addon (`minik storage-provisioner --root DIR`, run
//! in a kube-system pod with its own ServiceAccount).
//!
//! It acts as an external provisioner does in Kubernetes: for every claim the
//! PersistentVolume controller handed to `minik.io/hostpath` (or
//! `k8s.io/minikube-hostpath`, minikube's name) through the
//! `volume.kubernetes.io/storage-provisioner` annotation, it makes the
//! directory `<root>/pvc-<claim uid>` (mode 0777) and a PersistentVolume
//! `pvc-<claim uid>` pre-bound to the claim (capacity = the request, the
//! claim's access modes and volume mode, the class's reclaim policy and
//! mount options); the controller then binds the two. When such a volume is
//! Released with policy Delete, it removes the directory and the volume.
//! Volumes it made with policy Delete carry its finalizer, so a volume object
//! never disappears before its data. It owns only `<root>/pvc-*` directories
//! and the PersistentVolumes annotated `pv.kubernetes.io/provisioned-by` with
//! its name.
//!
//! `<root>` is a node path (the pod mounts it at the same path), so the
//! kubelet bind-mounts PV paths straight from the node.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use minik_controllers::persistentvolume::{
    claim_class, claim_reference, ANN_BETA_STORAGE_PROVISIONER, ANN_PROVISIONED_BY,
    ANN_SELECTED_NODE, ANN_STORAGE_PROVISIONER,
};
use minik_events::{EventType, Recorder};
use tokio::sync::Notify;

/// minik's provisioner name (the default StorageClass `standard` uses it).
pub const PROVISIONER: &str = "minik.io/hostpath";
/// minikube's provisioner name, served too so minikube manifests work.
pub const MINIKUBE_PROVISIONER: &str = "k8s.io/minikube-hostpath";
/// On volumes with policy Delete: their directory goes before they do.
pub const FINALIZER: &str = "external-provisioner.volume.kubernetes.io/finalizer";

const RESYNC: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("talking to the API server failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("volume directory {path}: {source}; check that the provisioner's --root is writable (the storage-provisioner pod mounts it from the node)")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("refusing to delete {path}: it is not a directory this provisioner made under {root}")]
    NotOurs { path: String, root: PathBuf },
}

/// What the provisioner needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// The node directory holding one `pvc-<uid>` directory per volume.
    pub root: PathBuf,
    /// Names this instance in Events (`minik.io/hostpath_<host>`).
    pub identity: String,
}

/// Whether a provisioner name is one this provisioner serves.
pub fn is_ours(provisioner: &str) -> bool {
    provisioner == PROVISIONER || provisioner == MINIKUBE_PROVISIONER
}

/// The volume name for a claim: `pvc-<uid>`, as Kubernetes provisioners name them.
pub fn volume_name(pvc: &PersistentVolumeClaim) -> Option<String> {
    pvc.metadata
        .uid
        .as_deref()
        .filter(|u| !u.is_empty())
        .map(|u| format!("pvc-{u}"))
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Why a claim is not (yet) this provisioner's to provision, or the class
/// to provision it with.
#[derive(Debug, PartialEq)]
pub enum Decision<'a> {
    /// Not ours, already bound, being deleted, or not handed over yet.
    Skip,
    /// Ours but it cannot be provisioned: the Event message.
    Refuse(String),
    /// Provision it with this class.
    Provision(&'a StorageClass),
}

/// Whether (and with which class) to provision a claim. Pure.
pub fn decide<'a>(pvc: &PersistentVolumeClaim, classes: &'a [StorageClass]) -> Decision<'a> {
    let meta = &pvc.metadata;
    if meta.deletion_timestamp.is_some() {
        return Decision::Skip;
    }
    let spec = pvc.spec.clone().unwrap_or_default();
    if spec.volume_name.as_deref().is_some_and(|v| !v.is_empty()) {
        return Decision::Skip;
    }
    let asked = annotation(meta, ANN_STORAGE_PROVISIONER)
        .or_else(|| annotation(meta, ANN_BETA_STORAGE_PROVISIONER));
    let Some(asked) = asked.filter(|a| is_ours(a)) else {
        return Decision::Skip;
    };
    let class = claim_class(pvc).unwrap_or_default();
    let Some(sc) = classes.iter().find(|c| c.name_any() == class) else {
        return Decision::Refuse(format!("storageclass.storage.k8s.io \"{class}\" not found"));
    };
    if sc.provisioner != asked {
        return Decision::Skip;
    }
    if sc.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer")
        && annotation(meta, ANN_SELECTED_NODE).is_none()
    {
        return Decision::Skip;
    }
    if spec.selector.is_some() {
        return Decision::Refuse(
            "claim Selector is not supported: remove spec.selector to get a new volume, or create a matching PersistentVolume".into(),
        );
    }
    if spec.data_source.is_some() || spec.data_source_ref.is_some() {
        return Decision::Refuse(
            "dataSource (cloning, snapshots) is not supported by the minik hostpath provisioner"
                .into(),
        );
    }
    Decision::Provision(sc)
}

/// The PersistentVolume for a claim: `pvc-<uid>` at `<root>/pvc-<uid>`,
/// pre-bound to the claim. Pure.
pub fn volume_for(
    pvc: &PersistentVolumeClaim,
    sc: &StorageClass,
    root: &Path,
) -> Option<PersistentVolume> {
    let name = volume_name(pvc)?;
    let spec = pvc.spec.clone().unwrap_or_default();
    let request = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()
        .unwrap_or_else(|| Quantity("0".into()));
    let policy = sc.reclaim_policy.clone().unwrap_or_else(|| "Delete".into());
    let modes = spec
        .access_modes
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| vec!["ReadWriteOnce".into()]);
    let finalizers = (policy == "Delete").then(|| vec![FINALIZER.to_string()]);
    Some(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            annotations: Some(BTreeMap::from([(
                ANN_PROVISIONED_BY.to_string(),
                sc.provisioner.clone(),
            )])),
            finalizers,
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: Some(modes),
            capacity: Some(BTreeMap::from([("storage".to_string(), request)])),
            claim_ref: Some(claim_reference(pvc)),
            host_path: Some(HostPathVolumeSource {
                path: root.join(&name).display().to_string(),
                type_: Some(String::new()),
            }),
            mount_options: sc.mount_options.clone(),
            persistent_volume_reclaim_policy: Some(policy),
            storage_class_name: Some(sc.name_any()),
            volume_mode: Some(spec.volume_mode.unwrap_or_else(|| "Filesystem".into())),
            ..Default::default()
        }),
        status: None,
    })
}

/// The directory of a volume this provisioner made, when the volume's path
/// is exactly `<root>/<volume name>` (anything else is refused). Pure.
pub fn owned_dir(pv: &PersistentVolume, root: &Path) -> Result<PathBuf, Error> {
    let path = pv
        .spec
        .as_ref()
        .and_then(|s| s.host_path.as_ref())
        .map(|h| h.path.clone())
        .unwrap_or_default();
    let name = pv.name_any();
    let want = root.join(&name);
    if name.starts_with("pvc-") && !name.contains('/') && Path::new(&path) == want {
        Ok(want)
    } else {
        Err(Error::NotOurs {
            path,
            root: root.to_path_buf(),
        })
    }
}

/// Creates a volume directory, mode 0777 whatever the umask (any pod user
/// may write its volume).
pub fn make_volume_dir(dir: &Path) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).map_err(io)
}

/// Removes a volume directory and everything in it; false when it was
/// already gone.
pub fn remove_volume_dir(dir: &Path) -> Result<bool, Error> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(Error::Io {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// What to do with a volume this provisioner made. Pure.
#[derive(Debug, PartialEq, Eq)]
pub enum Cleanup {
    Nothing,
    /// Remove the data, drop our finalizer, delete the object.
    DeleteVolume,
    /// Drop our finalizer only (the data is kept: Retain).
    DropFinalizer,
}

pub fn cleanup(pv: &PersistentVolume) -> Cleanup {
    let provisioned = annotation(&pv.metadata, ANN_PROVISIONED_BY).is_some_and(is_ours);
    if !provisioned {
        return Cleanup::Nothing;
    }
    let phase = pv
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("");
    let policy = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain");
    let has_finalizer = pv
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER);
    let deleting = pv.metadata.deletion_timestamp.is_some();
    if phase == "Bound" {
        // In use: never remove data under a claim.
        return Cleanup::Nothing;
    }
    if policy == "Delete" && (phase == "Released" || (deleting && has_finalizer)) {
        return Cleanup::DeleteVolume;
    }
    if deleting && has_finalizer {
        return Cleanup::DropFinalizer;
    }
    Cleanup::Nothing
}

/// Runs the provisioner until the task is dropped.
pub async fn run(client: Client, cfg: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.root).map_err(|source| Error::Io {
        path: cfg.root.clone(),
        source,
    })?;
    tracing::info!(root = %cfg.root.display(), "hostpath provisioner for {PROVISIONER} and {MINIKUBE_PROVISIONER}");
    let notify = Arc::new(Notify::new());
    let mut tasks = tokio::task::JoinSet::new();
    wake_on::<PersistentVolumeClaim>(&mut tasks, &client, &notify);
    wake_on::<PersistentVolume>(&mut tasks, &client, &notify);
    wake_on::<StorageClass>(&mut tasks, &client, &notify);
    let mut p = Provisioner {
        recorder: Recorder::new(client.clone(), &cfg.identity),
        client,
        cfg,
        refused: HashMap::new(),
    };
    loop {
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep(RESYNC) => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Err(e) = p.pass().await {
            tracing::warn!(error = %e, "provisioner pass failed; retrying in 2 s");
            tokio::time::sleep(Duration::from_secs(2)).await;
            notify.notify_one();
        }
    }
}

fn wake_on<K>(tasks: &mut tokio::task::JoinSet<()>, client: &Client, notify: &Arc<Notify>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = Api::all(client.clone());
    let notify = notify.clone();
    tasks.spawn(async move {
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        let mut warned = false;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(_) => {
                    warned = false;
                    notify.notify_one();
                }
                Err(e) if !warned => {
                    tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed (check the provisioner's RBAC); retrying");
                    warned = true;
                }
                Err(_) => {}
            }
        }
    });
}

struct Provisioner {
    client: Client,
    recorder: Recorder,
    cfg: Config,
    /// claim uid → the refusal last announced (announce once).
    refused: HashMap<String, String>,
}

impl Provisioner {
    async fn pass(&mut self) -> Result<(), Error> {
        let classes = Api::<StorageClass>::all(self.client.clone())
            .list(&ListParams::default())
            .await?
            .items;
        let claims = Api::<PersistentVolumeClaim>::all(self.client.clone())
            .list(&ListParams::default())
            .await?
            .items;
        let pvs = Api::<PersistentVolume>::all(self.client.clone())
            .list(&ListParams::default())
            .await?
            .items;
        for pvc in &claims {
            match decide(pvc, &classes) {
                Decision::Skip => {}
                Decision::Refuse(msg) => {
                    let uid = pvc.metadata.uid.clone().unwrap_or_default();
                    if self.refused.get(&uid) != Some(&msg) {
                        self.recorder
                            .publish(pvc, EventType::Warning, "ProvisioningFailed", &msg)
                            .await;
                        self.refused.insert(uid, msg);
                    }
                }
                Decision::Provision(sc) => {
                    let exists =
                        volume_name(pvc).is_some_and(|n| pvs.iter().any(|p| p.name_any() == n));
                    if !exists {
                        if let Err(e) = self.provision(pvc, sc).await {
                            tracing::warn!(claim = %pvc.name_any(), error = %e, "provisioning failed");
                            self.recorder
                                .publish(
                                    pvc,
                                    EventType::Warning,
                                    "ProvisioningFailed",
                                    &format!(
                                        "failed to provision volume with StorageClass \"{}\": {e}",
                                        sc.name_any()
                                    ),
                                )
                                .await;
                        }
                    }
                }
            }
        }
        for pv in &pvs {
            if let Err(e) = self.clean(pv).await {
                tracing::warn!(volume = %pv.name_any(), error = %e, "deleting a volume failed");
                self.recorder
                    .publish(pv, EventType::Warning, "VolumeFailedDelete", &e.to_string())
                    .await;
            }
        }
        Ok(())
    }

    async fn provision(
        &mut self,
        pvc: &PersistentVolumeClaim,
        sc: &StorageClass,
    ) -> Result<(), Error> {
        let ns = pvc.namespace().unwrap_or_default();
        let Some(pv) = volume_for(pvc, sc, &self.cfg.root) else {
            return Ok(());
        };
        let name = pv.name_any();
        self.recorder
            .publish(
                pvc,
                EventType::Normal,
                "Provisioning",
                &format!(
                    "External provisioner is provisioning volume for claim \"{ns}/{}\"",
                    pvc.name_any()
                ),
            )
            .await;
        let dir = self.cfg.root.join(&name);
        make_volume_dir(&dir)?;
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        match api.create(&PostParams::default(), &pv).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        tracing::info!(claim = %format!("{ns}/{}", pvc.name_any()), volume = %name, dir = %dir.display(), "provisioned");
        self.recorder
            .publish(
                pvc,
                EventType::Normal,
                "ProvisioningSucceeded",
                &format!("Successfully provisioned volume {name}"),
            )
            .await;
        Ok(())
    }

    async fn clean(&mut self, pv: &PersistentVolume) -> Result<(), Error> {
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let name = pv.name_any();
        match cleanup(pv) {
            Cleanup::Nothing => Ok(()),
            Cleanup::DropFinalizer => self.drop_finalizer(&api, pv).await,
            Cleanup::DeleteVolume => {
                let dir = owned_dir(pv, &self.cfg.root)?;
                if remove_volume_dir(&dir)? {
                    tracing::info!(volume = %name, dir = %dir.display(), "deleted the volume's data");
                }
                self.drop_finalizer(&api, pv).await?;
                if pv.metadata.deletion_timestamp.is_none() {
                    match api.delete(&name, &DeleteParams::default()).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(())
            }
        }
    }

    async fn drop_finalizer(
        &self,
        api: &Api<PersistentVolume>,
        pv: &PersistentVolume,
    ) -> Result<(), Error> {
        if !pv
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER)
        {
            return Ok(());
        }
        let mut p = pv.clone();
        if let Some(f) = p.metadata.finalizers.as_mut() {
            f.retain(|x| x != FINALIZER);
        }
        match api
            .replace(&pv.name_any(), &PostParams::default(), &p)
            .await
        {
            Ok(_) => Ok(()),
            // Changed meanwhile (the controller's finalizer): the next pass retries.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn class(provisioner: &str, mode: &str, policy: Option<&str>) -> StorageClass {
        let mut sc: StorageClass = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "standard"},
            "provisioner": provisioner,
            "volumeBindingMode": mode,
        }))
        .unwrap();
        sc.reclaim_policy = policy.map(Into::into);
        sc
    }

    fn claim(annotated: Option<&str>) -> PersistentVolumeClaim {
        let mut c: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "data", "namespace": "default", "uid": "1234"},
            "spec": {
                "storageClassName": "standard",
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }))
        .unwrap();
        if let Some(p) = annotated {
            c.metadata.annotations = Some(BTreeMap::from([(
                ANN_STORAGE_PROVISIONER.to_string(),
                p.to_string(),
            )]));
        }
        c
    }

    #[test]
    fn provisions_only_handed_over_claims_of_our_classes() {
        let classes = [class(PROVISIONER, "Immediate", None)];
        assert_eq!(
            decide(&claim(None), &classes),
            Decision::Skip,
            "not handed over yet"
        );
        assert!(matches!(
            decide(&claim(Some(PROVISIONER)), &classes),
            Decision::Provision(_)
        ));
        assert_eq!(
            decide(&claim(Some("other.io/csi")), &classes),
            Decision::Skip
        );
        let mut bound = claim(Some(PROVISIONER));
        bound.spec.as_mut().unwrap().volume_name = Some("pv1".into());
        assert_eq!(decide(&bound, &classes), Decision::Skip);
        let mut gone = claim(Some(PROVISIONER));
        gone.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert_eq!(decide(&gone, &classes), Decision::Skip);
        let minikube = [class(MINIKUBE_PROVISIONER, "Immediate", None)];
        assert!(matches!(
            decide(&claim(Some(MINIKUBE_PROVISIONER)), &minikube),
            Decision::Provision(_)
        ));
        let mut sel = claim(Some(PROVISIONER));
        sel.spec.as_mut().unwrap().selector = Some(Default::default());
        assert!(matches!(decide(&sel, &classes), Decision::Refuse(m) if m.contains("Selector")));
    }

    #[test]
    fn wait_for_first_consumer_needs_a_selected_node() {
        let classes = [class(PROVISIONER, "WaitForFirstConsumer", None)];
        let mut c = claim(Some(PROVISIONER));
        assert_eq!(decide(&c, &classes), Decision::Skip);
        c.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(ANN_SELECTED_NODE.into(), "minik".into());
        assert!(matches!(decide(&c, &classes), Decision::Provision(_)));
    }

    #[test]
    fn volume_is_prebound_and_sized_like_the_claim() {
        let sc = class(PROVISIONER, "Immediate", None);
        let pv = volume_for(&claim(Some(PROVISIONER)), &sc, Path::new("/node/volumes")).unwrap();
        assert_eq!(pv.name_any(), "pvc-1234");
        let spec = pv.spec.as_ref().unwrap();
        assert_eq!(
            spec.host_path.as_ref().unwrap().path,
            "/node/volumes/pvc-1234"
        );
        assert_eq!(spec.capacity.as_ref().unwrap()["storage"].0, "1Gi");
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );
        assert_eq!(spec.storage_class_name.as_deref(), Some("standard"));
        assert_eq!(
            spec.access_modes.as_ref().unwrap(),
            &vec!["ReadWriteOnce".to_string()]
        );
        let r = spec.claim_ref.as_ref().unwrap();
        assert_eq!(
            (r.name.as_deref(), r.uid.as_deref()),
            (Some("data"), Some("1234"))
        );
        assert_eq!(
            annotation(&pv.metadata, ANN_PROVISIONED_BY),
            Some(PROVISIONER)
        );
        assert_eq!(
            pv.metadata.finalizers.as_ref().unwrap(),
            &vec![FINALIZER.to_string()]
        );
        let retain = class(PROVISIONER, "Immediate", Some("Retain"));
        let pv = volume_for(&claim(Some(PROVISIONER)), &retain, Path::new("/v")).unwrap();
        assert!(
            pv.metadata.finalizers.is_none(),
            "Retain volumes need no finalizer"
        );
    }

    #[test]
    fn cleanup_only_released_delete_volumes_we_made() {
        let sc = class(PROVISIONER, "Immediate", None);
        let root = Path::new("/node/volumes");
        let mut pv = volume_for(&claim(Some(PROVISIONER)), &sc, root).unwrap();
        let phase = |pv: &mut PersistentVolume, p: &str| {
            pv.status = Some(k8s_openapi::api::core::v1::PersistentVolumeStatus {
                phase: Some(p.into()),
                ..Default::default()
            })
        };
        phase(&mut pv, "Bound");
        assert_eq!(cleanup(&pv), Cleanup::Nothing);
        pv.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert_eq!(cleanup(&pv), Cleanup::Nothing, "never under a bound claim");
        pv.metadata.deletion_timestamp = None;
        phase(&mut pv, "Released");
        assert_eq!(cleanup(&pv), Cleanup::DeleteVolume);
        assert_eq!(owned_dir(&pv, root).unwrap(), root.join("pvc-1234"));
        // A path elsewhere is never removed.
        pv.spec.as_mut().unwrap().host_path.as_mut().unwrap().path = "/etc".into();
        assert!(owned_dir(&pv, root).is_err());
        // Retain keeps the data; a deleted Retain volume only loses our finalizer.
        pv.spec.as_mut().unwrap().persistent_volume_reclaim_policy = Some("Retain".into());
        assert_eq!(cleanup(&pv), Cleanup::Nothing);
        pv.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert_eq!(cleanup(&pv), Cleanup::DropFinalizer);
        // Someone else's volume.
        pv.metadata.annotations = None;
        assert_eq!(cleanup(&pv), Cleanup::Nothing);
    }

    #[test]
    fn volume_directory_lifecycle() {
        let root = std::env::temp_dir().join(format!("minik-storage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let sc = class(PROVISIONER, "Immediate", None);
        let pv = volume_for(&claim(Some(PROVISIONER)), &sc, &root).unwrap();
        let dir = owned_dir(&pv, &root).unwrap();
        make_volume_dir(&dir).unwrap();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o777,
            "world-writable despite the umask"
        );
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/file"), b"data").unwrap();
        assert!(remove_volume_dir(&dir).unwrap());
        assert!(!dir.exists());
        assert!(!remove_volume_dir(&dir).unwrap(), "already gone is fine");
        assert!(root.exists(), "the root stays");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
