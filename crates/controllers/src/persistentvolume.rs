//! PersistentVolume controller (kube's `persistentvolume-binder`, plus the
//! `pvc-protection` and `pv-protection` controllers): binds Pending claims to
//! the smallest Available volume that fits (class, access modes, capacity,
//! volume mode, selector, `volumeName` pre-binding), writes both sides
//! (`spec.claimRef` / `spec.volumeName`, the `bind-completed` and
//! `bound-by-controller` annotations, phases and the claim's
//! capacity/accessModes), gives class-less claims the default StorageClass
//! (retroactively, as Kubernetes 1.28+), hands claims it cannot bind to their
//! class's provisioner (`volume.kubernetes.io/storage-provisioner`), releases
//! volumes whose claim is gone and reclaims them (Retain keeps, Delete
//! deletes the object or leaves it to the provisioner that made it, Recycle
//! fails), and keeps the protection finalizers.
//!
//! Level-triggered like the others, but over the whole (small) set at once:
//! watches on volumes, claims, classes and claim-using pods only wake one
//! loop, which lists everything fresh and makes every object converge; a
//! periodic resync covers anything missed. Decisions are pure functions
//! below (unit tested); writes use the listed resourceVersion, so a conflict
//! just means "look again".

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus,
    PersistentVolumeStatus, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use tokio::sync::Notify;

use crate::events::{EventType, Recorder};
use crate::util::{is_conflict, is_not_found, now_time, selector_matches, time_secs};

/// Set on a claim once the controller finished binding it.
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on whichever side the controller (not the user) pointed at the other.
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// Which provisioner is asked to make a volume for a claim.
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// The beta spelling of [`ANN_STORAGE_PROVISIONER`] (still written by kube).
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// Which provisioner made a volume.
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// The node a WaitForFirstConsumer claim's first pod runs on.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// Marks the default StorageClass.
pub const ANN_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// The beta spelling of [`ANN_DEFAULT_CLASS`].
pub const ANN_BETA_DEFAULT_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";
/// The pre-`storageClassName` way to name a class.
pub const ANN_BETA_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// Keeps a claim while a pod uses it.
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
/// Keeps a volume while it is bound.
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";
/// The provisioner of classes for static volumes only.
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

const RESYNC: Duration = Duration::from_secs(15);
const COMPONENT: &str = "persistentvolume-controller";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("talking to the API server failed: {0}")]
    Kube(#[from] kube::Error),
}

// ---------------------------------------------------------------------------
// Pure helpers
// ---------------------------------------------------------------------------

/// A storage quantity (`1Gi`, `500M`, `1.5Ti`, `1e9`) in bytes, rounded up;
/// None when it is not a valid non-negative quantity.
pub fn parse_storage(q: &str) -> Option<u128> {
    let q = q.trim();
    let q = q.strip_prefix('+').unwrap_or(q);
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return None;
    }
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits = format!("{int}{frac}");
    let mantissa: u128 = digits.parse().ok()?;
    let scale = 10u128.checked_pow(frac.len() as u32)?;
    // value = mantissa / scale * num / den
    let (mul, den): (u128, u128) = match suffix {
        "" => (1, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        "Ei" => (1 << 60, 1),
        "n" => (1, 1_000_000_000),
        "u" => (1, 1_000_000),
        "m" => (1, 1_000),
        "k" => (1_000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000, 1),
        "E" => (1_000_000_000_000_000_000, 1),
        s if s.starts_with(['e', 'E']) => {
            let exp: i32 = s[1..].parse().ok()?;
            if exp >= 0 {
                (10u128.checked_pow(exp as u32)?, 1)
            } else {
                (1, 10u128.checked_pow(exp.unsigned_abs())?)
            }
        }
        _ => return None,
    };
    let top = mantissa.checked_mul(mul)?;
    let bottom = scale.checked_mul(den)?;
    Some(top.div_ceil(bottom))
}

fn storage_of(m: Option<&BTreeMap<String, Quantity>>) -> Option<u128> {
    m.and_then(|m| m.get("storage"))
        .and_then(|q| parse_storage(&q.0))
}

/// The storage a claim requests (0 when it names none).
pub fn claim_request(pvc: &PersistentVolumeClaim) -> u128 {
    storage_of(
        pvc.spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref()),
    )
    .unwrap_or(0)
}

/// A volume's capacity (0 when it names none).
pub fn volume_capacity(pv: &PersistentVolume) -> u128 {
    storage_of(pv.spec.as_ref().and_then(|s| s.capacity.as_ref())).unwrap_or(0)
}

/// The class a claim asks for: `spec.storageClassName`, else the beta
/// annotation; None = unset (the default class applies), `Some("")` = none.
pub fn claim_class(pvc: &PersistentVolumeClaim) -> Option<String> {
    if let Some(c) = pvc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_BETA_CLASS))
    {
        return Some(c.clone());
    }
    pvc.spec.as_ref().and_then(|s| s.storage_class_name.clone())
}

/// A volume's class ("" when none).
pub fn volume_class(pv: &PersistentVolume) -> String {
    if let Some(c) = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_BETA_CLASS))
    {
        return c.clone();
    }
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default()
}

/// Whether a StorageClass is marked default.
pub fn is_default_class(sc: &StorageClass) -> bool {
    sc.metadata.annotations.as_ref().is_some_and(|a| {
        a.get(ANN_DEFAULT_CLASS).map(String::as_str) == Some("true")
            || a.get(ANN_BETA_DEFAULT_CLASS).map(String::as_str) == Some("true")
    })
}

/// The default StorageClass: with several, the newest (then the first by
/// name), as Kubernetes 1.28+ picks.
pub fn default_class(classes: &[StorageClass]) -> Option<&StorageClass> {
    classes
        .iter()
        .filter(|c| is_default_class(c) && c.metadata.deletion_timestamp.is_none())
        .max_by(|a, b| {
            time_secs(a.metadata.creation_timestamp.as_ref())
                .cmp(&time_secs(b.metadata.creation_timestamp.as_ref()))
                .then_with(|| b.name_any().cmp(&a.name_any()))
        })
}

fn annotation<'a>(meta: &'a kube::api::ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn phase_of_pv(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn phase_of_pvc(pvc: &PersistentVolumeClaim) -> &str {
    pvc.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn volume_mode(m: Option<&String>) -> &str {
    m.map(String::as_str).unwrap_or("Filesystem")
}

/// Whether a volume's `claimRef` names this claim (and, when the reference
/// carries a uid, this very claim rather than an older one of that name).
pub fn is_bound_to(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    if r.name.as_deref() != pvc.metadata.name.as_deref()
        || r.namespace.as_deref().unwrap_or("default")
            != pvc.metadata.namespace.as_deref().unwrap_or("default")
    {
        return false;
    }
    match r.uid.as_deref().filter(|u| !u.is_empty()) {
        Some(uid) => pvc.metadata.uid.as_deref() == Some(uid),
        None => true,
    }
}

/// Why a volume cannot serve a claim (capacity, volume mode, class, access
/// modes), or Ok. Selector and availability are checked by [`find_best_match`].
pub fn check_volume_satisfies(
    pv: &PersistentVolume,
    pvc: &PersistentVolumeClaim,
) -> Result<(), String> {
    let pv_spec = pv.spec.clone().unwrap_or_default();
    let pvc_spec = pvc.spec.clone().unwrap_or_default();
    let (have, want) = (volume_capacity(pv), claim_request(pvc));
    if have < want {
        return Err(format!(
            "requested PV is too small: it has {have} bytes, the claim requests {want}"
        ));
    }
    let (vm, cm) = (
        volume_mode(pv_spec.volume_mode.as_ref()),
        volume_mode(pvc_spec.volume_mode.as_ref()),
    );
    if vm != cm {
        return Err(format!(
            "incompatible volumeMode: the volume is {vm}, the claim asks for {cm}"
        ));
    }
    let (pc, cc) = (volume_class(pv), claim_class(pvc).unwrap_or_default());
    if pc != cc {
        return Err(format!(
            "storageClassName does not match: the volume has {pc:?}, the claim asks for {cc:?}"
        ));
    }
    let modes = pv_spec.access_modes.unwrap_or_default();
    for m in pvc_spec.access_modes.iter().flatten() {
        if !modes.contains(m) {
            return Err(format!(
                "incompatible accessMode: the volume offers {modes:?}, the claim asks for {m}"
            ));
        }
    }
    Ok(())
}

/// The volume an unbound claim should bind to: a volume already pre-bound to
/// it (`claimRef`) that fits, else the smallest Available, unclaimed volume
/// of its class that fits and matches its selector.
pub fn find_best_match<'a>(
    pvs: &'a [PersistentVolume],
    pvc: &PersistentVolumeClaim,
) -> Option<&'a PersistentVolume> {
    let spec = pvc.spec.clone().unwrap_or_default();
    let mut best: Option<&PersistentVolume> = None;
    for pv in pvs {
        if pv.metadata.deletion_timestamp.is_some() || check_volume_satisfies(pv, pvc).is_err() {
            continue;
        }
        if is_bound_to(pv, pvc) {
            return Some(pv);
        }
        let claimed = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_some();
        let available = matches!(phase_of_pv(pv), "Available" | "" | "Pending");
        if claimed || !available {
            continue;
        }
        if let Some(sel) = &spec.selector {
            if !selector_matches(sel, pv.labels()) {
                continue;
            }
        }
        if best.is_none_or(|b| volume_capacity(pv) < volume_capacity(b)) {
            best = Some(pv);
        }
    }
    best
}

/// The pod's volumes that are this claim (`persistentVolumeClaim` or a
/// generic ephemeral volume, whose claim is `<pod>-<volume>`).
pub fn pod_references_claim(pod: &Pod, claim: &str) -> bool {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .any(|v| {
            v.persistent_volume_claim
                .as_ref()
                .is_some_and(|c| c.claim_name == claim)
                || (v.ephemeral.is_some() && format!("{pod_name}-{}", v.name) == claim)
        })
}

/// Whether a pod keeps a claim in use (pvc-protection): scheduled and not
/// finished.
pub fn pod_uses_claim(pod: &Pod, claim: &str) -> bool {
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("");
    scheduled && phase != "Succeeded" && phase != "Failed" && pod_references_claim(pod, claim)
}

fn pod_has_claims(pod: &Pod) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .any(|v| v.persistent_volume_claim.is_some() || v.ephemeral.is_some())
}

/// The claim of each generic ephemeral volume of a pod: `<pod>-<volume>`,
/// from the volume's template, owned by the pod (so it goes with it), as
/// kube's ephemeral-volume controller makes them. Pure.
pub fn ephemeral_claims(pod: &Pod) -> Vec<PersistentVolumeClaim> {
    let (Some(name), Some(uid)) = (pod.metadata.name.clone(), pod.metadata.uid.clone()) else {
        return Vec::new();
    };
    let owner = k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: name.clone(),
        uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            let tpl = v.ephemeral.as_ref()?.volume_claim_template.as_ref()?;
            let meta = tpl.metadata.clone().unwrap_or_default();
            Some(PersistentVolumeClaim {
                metadata: kube::api::ObjectMeta {
                    name: Some(format!("{name}-{}", v.name)),
                    namespace: pod.metadata.namespace.clone(),
                    labels: meta.labels,
                    annotations: meta.annotations,
                    owner_references: Some(vec![owner.clone()]),
                    ..Default::default()
                },
                spec: Some(tpl.spec.clone()),
                status: None,
            })
        })
        .collect()
}

/// The `claimRef` a volume gets for a claim.
pub fn claim_reference(pvc: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        name: pvc.metadata.name.clone(),
        namespace: pvc.metadata.namespace.clone(),
        uid: pvc.metadata.uid.clone(),
        resource_version: pvc.metadata.resource_version.clone(),
        field_path: None,
    }
}

fn has_finalizer(meta: &kube::api::ObjectMeta, f: &str) -> bool {
    meta.finalizers.iter().flatten().any(|x| x == f)
}

fn set_annotation(meta: &mut kube::api::ObjectMeta, key: &str, value: &str) {
    meta.annotations
        .get_or_insert_with(Default::default)
        .insert(key.to_string(), value.to_string());
}

/// The status a bound claim shows: phase Bound, the volume's capacity and
/// access modes (other status fields kept).
pub fn bound_claim_status(
    old: Option<&PersistentVolumeClaimStatus>,
    pv: &PersistentVolume,
) -> PersistentVolumeClaimStatus {
    let spec = pv.spec.clone().unwrap_or_default();
    PersistentVolumeClaimStatus {
        phase: Some("Bound".into()),
        access_modes: spec.access_modes,
        capacity: spec.capacity,
        ..old.cloned().unwrap_or_default()
    }
}

/// What to do with a volume whose claim is gone, by reclaim policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reclaim {
    /// Keep the volume Released (Retain).
    Keep,
    /// Delete the PersistentVolume object (Delete, not made by a provisioner).
    DeleteObject,
    /// Leave it to the provisioner that made it (Delete, provisioned).
    Provisioner(String),
    /// Unsupported policy: Failed with this message.
    Fail(String),
}

/// The reclaim decision for a Released volume.
pub fn reclaim(pv: &PersistentVolume) -> Reclaim {
    let policy = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain");
    match policy {
        "Delete" => match annotation(&pv.metadata, ANN_PROVISIONED_BY) {
            Some(p) => Reclaim::Provisioner(p.to_string()),
            None => Reclaim::DeleteObject,
        },
        "Recycle" => Reclaim::Fail(
            "Recycle is not supported by minik (it is deprecated in Kubernetes): set persistentVolumeReclaimPolicy to Delete or Retain"
                .into(),
        ),
        _ => Reclaim::Keep,
    }
}

// ---------------------------------------------------------------------------
// The loop
// ---------------------------------------------------------------------------

/// Runs the PersistentVolume controller until the task is dropped.
pub async fn run(client: Client) -> anyhow::Result<()> {
    let notify = Arc::new(Notify::new());
    let mut tasks = tokio::task::JoinSet::new();
    wake_on::<PersistentVolume>(&mut tasks, &client, &notify, |_| true);
    wake_on::<PersistentVolumeClaim>(&mut tasks, &client, &notify, |_| true);
    wake_on::<StorageClass>(&mut tasks, &client, &notify, |_| true);
    wake_on::<Pod>(&mut tasks, &client, &notify, pod_has_claims);
    let mut ctl = PvController {
        client: client.clone(),
        recorder: Recorder::new(client, COMPONENT),
        last_event: HashMap::new(),
    };
    loop {
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep(RESYNC) => {}
        }
        // Let a burst of watch events settle into one pass.
        tokio::time::sleep(Duration::from_millis(20)).await;
        match ctl.sync_all().await {
            Ok(true) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                notify.notify_one();
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "persistentvolume sync failed; retrying in 2 s");
                tokio::time::sleep(Duration::from_secs(2)).await;
                notify.notify_one();
            }
        }
    }
}

/// Wakes `notify` on every watch event of `K` that `filter` accepts.
fn wake_on<K>(
    tasks: &mut tokio::task::JoinSet<()>,
    client: &Client,
    notify: &Arc<Notify>,
    filter: fn(&K) -> bool,
) where
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
                Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::Delete(o)) => {
                    warned = false;
                    if filter(&o) {
                        notify.notify_one();
                    }
                }
                Ok(watcher::Event::InitDone) => notify.notify_one(),
                Ok(_) => {}
                Err(e) if !warned => {
                    tracing::warn!(kind = %K::kind(&()), error = %e, "persistentvolume controller watch failed; retrying");
                    warned = true;
                }
                Err(_) => {}
            }
        }
    });
}

struct PvController {
    client: Client,
    recorder: Recorder,
    /// uid → the last (reason, message) published, so a state is announced
    /// once rather than at every pass.
    last_event: HashMap<String, (String, String)>,
}

/// Pods of a namespace, listed at most once per pass.
struct PodCache {
    client: Client,
    by_ns: HashMap<String, Vec<Pod>>,
}

impl PodCache {
    async fn pods(&mut self, ns: &str) -> Result<&[Pod], kube::Error> {
        if !self.by_ns.contains_key(ns) {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
            let items = api.list(&ListParams::default()).await?.items;
            self.by_ns.insert(ns.to_string(), items);
        }
        Ok(self.by_ns.get(ns).map(Vec::as_slice).unwrap_or_default())
    }
}

/// Ok(true): something was written or conflicted; look again soon.
type Step = Result<bool, Error>;

fn conflict_is_retry(r: Result<bool, kube::Error>) -> Step {
    match r {
        Err(e) if is_conflict(&e) || is_not_found(&e) => Ok(true),
        Err(e) => Err(e.into()),
        Ok(v) => Ok(v),
    }
}

impl PvController {
    async fn event<K: kube::Resource<DynamicType = ()>>(
        &mut self,
        obj: &K,
        t: EventType,
        reason: &str,
        msg: &str,
    ) {
        let uid = obj.meta().uid.clone().unwrap_or_default();
        let key = (reason.to_string(), msg.to_string());
        if self.last_event.get(&uid) == Some(&key) {
            return;
        }
        if self.last_event.len() > 4096 {
            self.last_event.clear();
        }
        self.last_event.insert(uid, key);
        self.recorder.publish(obj, t, reason, msg).await;
    }

    /// One pass over every claim and volume. Ok(true) asks for another soon.
    async fn sync_all(&mut self) -> Step {
        let classes = Api::<StorageClass>::all(self.client.clone())
            .list(&ListParams::default())
            .await?
            .items;
        let mut claims = Api::<PersistentVolumeClaim>::all(self.client.clone())
            .list(&ListParams::default())
            .await?
            .items;
        let mut again = self.sync_ephemeral(&mut claims).await?;
        let mut pvs = Api::<PersistentVolume>::all(self.client.clone())
            .list(&ListParams::default())
            .await?
            .items;
        let mut pods = PodCache {
            client: self.client.clone(),
            by_ns: HashMap::new(),
        };
        for pvc in &claims {
            match self.sync_claim(pvc, &mut pvs, &classes, &mut pods).await {
                Ok(a) => again |= a,
                Err(e) => {
                    tracing::warn!(claim = %pvc.name_any(), error = %e, "syncing a persistentvolumeclaim failed");
                    again = true;
                }
            }
        }
        let by_key: HashMap<(String, String), &PersistentVolumeClaim> = claims
            .iter()
            .map(|c| {
                (
                    (c.namespace().unwrap_or_default(), c.name_any()),
                    c as &PersistentVolumeClaim,
                )
            })
            .collect();
        for pv in &pvs {
            match self.sync_volume(pv, &by_key).await {
                Ok(a) => again |= a,
                Err(e) => {
                    tracing::warn!(volume = %pv.name_any(), error = %e, "syncing a persistentvolume failed");
                    again = true;
                }
            }
        }
        Ok(again)
    }

    /// Creates the missing claims of pods' generic ephemeral volumes (the
    /// garbage collector removes them with their pod).
    async fn sync_ephemeral(&mut self, claims: &mut Vec<PersistentVolumeClaim>) -> Step {
        let pods = Api::<Pod>::all(self.client.clone())
            .list(&ListParams::default())
            .await?
            .items;
        let mut again = false;
        for pod in pods.iter().filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
        }) {
            for want in ephemeral_claims(pod) {
                let ns = want.namespace().unwrap_or_else(|| "default".into());
                let exists = claims.iter().any(|c| {
                    c.namespace().as_deref() == Some(ns.as_str()) && c.name_any() == want.name_any()
                });
                if exists {
                    continue;
                }
                let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
                match api.create(&PostParams::default(), &want).await {
                    Ok(c) => {
                        tracing::info!(claim = %format!("{ns}/{}", c.name_any()), "created the claim of an ephemeral volume");
                        claims.push(c);
                        again = true;
                    }
                    Err(e) if is_conflict(&e) => again = true,
                    Err(e) => {
                        self.event(
                            pod,
                            EventType::Warning,
                            "FailedCreate",
                            &format!(
                                "creating the claim {} of an ephemeral volume failed: {e}",
                                want.name_any()
                            ),
                        )
                        .await;
                    }
                }
            }
        }
        Ok(again)
    }

    // ----- claims ---------------------------------------------------------

    async fn sync_claim(
        &mut self,
        pvc: &PersistentVolumeClaim,
        pvs: &mut [PersistentVolume],
        classes: &[StorageClass],
        pods: &mut PodCache,
    ) -> Step {
        let ns = pvc.namespace().unwrap_or_else(|| "default".into());
        let name = pvc.name_any();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        if pvc.metadata.deletion_timestamp.is_some() {
            if !has_finalizer(&pvc.metadata, PVC_PROTECTION) {
                return Ok(false);
            }
            let used = pods
                .pods(&ns)
                .await?
                .iter()
                .any(|p| pod_uses_claim(p, &name));
            if used {
                return Ok(false);
            }
            let mut c = pvc.clone();
            if let Some(f) = c.metadata.finalizers.as_mut() {
                f.retain(|x| x != PVC_PROTECTION);
            }
            tracing::info!(claim = %format!("{ns}/{name}"), "no pod uses the claim any more; letting it go");
            return conflict_is_retry(
                api.replace(&name, &PostParams::default(), &c)
                    .await
                    .map(|_| true),
            );
        }
        if !has_finalizer(&pvc.metadata, PVC_PROTECTION) {
            let mut c = pvc.clone();
            c.metadata
                .finalizers
                .get_or_insert_with(Vec::new)
                .push(PVC_PROTECTION.into());
            return conflict_is_retry(
                api.replace(&name, &PostParams::default(), &c)
                    .await
                    .map(|_| true),
            );
        }
        let volume_name = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .filter(|n| !n.is_empty());
        let Some(volume_name) = volume_name else {
            return self.sync_unbound_claim(pvc, pvs, classes, pods).await;
        };
        let Some(idx) = pvs.iter().position(|p| p.name_any() == volume_name) else {
            if annotation(&pvc.metadata, ANN_BIND_COMPLETED).is_some() {
                self.event(
                    pvc,
                    EventType::Warning,
                    "ClaimLost",
                    "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
                )
                .await;
                return self.set_claim_phase(pvc, "Lost").await;
            }
            self.event(
                pvc,
                EventType::Warning,
                "FailedBinding",
                &format!("volume \"{volume_name}\" requested by the claim does not exist; create it or remove spec.volumeName"),
            )
            .await;
            return self.set_claim_phase(pvc, "Pending").await;
        };
        let pv = &pvs[idx];
        let claimed = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_some();
        if !claimed {
            // Pre-bound by the user through spec.volumeName.
            if let Err(why) = check_volume_satisfies(pv, pvc) {
                self.event(
                    pvc,
                    EventType::Warning,
                    "FailedBinding",
                    &format!("Cannot bind to requested volume \"{volume_name}\": {why}"),
                )
                .await;
                return self.set_claim_phase(pvc, "Pending").await;
            }
            return self.bind(idx, pvs, pvc).await;
        }
        if is_bound_to(pv, pvc) {
            return self.bind(idx, pvs, pvc).await;
        }
        if annotation(&pvc.metadata, ANN_BIND_COMPLETED).is_some() {
            self.event(
                pvc,
                EventType::Warning,
                "ClaimMisbound",
                "Two claims are bound to the same volume, this one is bound incorrectly",
            )
            .await;
            return self.set_claim_phase(pvc, "Lost").await;
        }
        self.event(
            pvc,
            EventType::Warning,
            "FailedBinding",
            &format!("volume \"{volume_name}\" already bound to a different claim."),
        )
        .await;
        self.set_claim_phase(pvc, "Pending").await
    }

    async fn sync_unbound_claim(
        &mut self,
        pvc: &PersistentVolumeClaim,
        pvs: &mut [PersistentVolume],
        classes: &[StorageClass],
        pods: &mut PodCache,
    ) -> Step {
        let ns = pvc.namespace().unwrap_or_else(|| "default".into());
        let name = pvc.name_any();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        let class = claim_class(pvc);
        if class.is_none() {
            if let Some(def) = default_class(classes) {
                // Retroactive default StorageClass assignment.
                let mut c = pvc.clone();
                c.spec
                    .get_or_insert_with(Default::default)
                    .storage_class_name = Some(def.name_any());
                tracing::info!(claim = %format!("{ns}/{name}"), class = %def.name_any(), "assigning the default storage class");
                return conflict_is_retry(
                    api.replace(&name, &PostParams::default(), &c)
                        .await
                        .map(|_| true),
                );
            }
        }
        let class = class.unwrap_or_default();
        let sc = classes.iter().find(|c| c.name_any() == class);
        let wait_for_consumer =
            sc.is_some_and(|s| s.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"));
        let mut selected_node = annotation(&pvc.metadata, ANN_SELECTED_NODE).map(String::from);
        if wait_for_consumer && selected_node.is_none() {
            selected_node = pods
                .pods(&ns)
                .await?
                .iter()
                .filter(|p| pod_uses_claim(p, &name))
                .find_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()));
            if selected_node.is_none() {
                self.event(
                    pvc,
                    EventType::Normal,
                    "WaitForFirstConsumer",
                    "waiting for first consumer to be created before binding",
                )
                .await;
                return self.set_claim_phase(pvc, "Pending").await;
            }
        }
        if let Some(pv) = find_best_match(pvs, pvc) {
            let pv_name = pv.name_any();
            let idx = pvs
                .iter()
                .position(|p| p.name_any() == pv_name)
                .unwrap_or_default();
            return self.bind(idx, pvs, pvc).await;
        }
        if class.is_empty() {
            self.event(
                pvc,
                EventType::Normal,
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set",
            )
            .await;
            return self.set_claim_phase(pvc, "Pending").await;
        }
        let Some(sc) = sc else {
            self.event(
                pvc,
                EventType::Warning,
                "ProvisioningFailed",
                &format!("storageclass.storage.k8s.io \"{class}\" not found"),
            )
            .await;
            return self.set_claim_phase(pvc, "Pending").await;
        };
        if sc.provisioner == NO_PROVISIONER || sc.provisioner.is_empty() {
            self.event(
                pvc,
                EventType::Normal,
                "FailedBinding",
                "no persistent volumes available for this claim",
            )
            .await;
            return self.set_claim_phase(pvc, "Pending").await;
        }
        // Ask the class's provisioner.
        let wanted = [
            (ANN_STORAGE_PROVISIONER, Some(sc.provisioner.clone())),
            (ANN_BETA_STORAGE_PROVISIONER, Some(sc.provisioner.clone())),
            (
                ANN_SELECTED_NODE,
                selected_node.filter(|_| wait_for_consumer),
            ),
        ];
        let missing = wanted.iter().any(|(k, v)| {
            v.as_deref()
                .is_some_and(|v| annotation(&pvc.metadata, k) != Some(v))
        });
        if missing {
            let mut c = pvc.clone();
            for (k, v) in &wanted {
                if let Some(v) = v {
                    set_annotation(&mut c.metadata, k, v);
                }
            }
            let r = api.replace(&name, &PostParams::default(), &c).await;
            let c = match r {
                Ok(c) => c,
                Err(e) => return conflict_is_retry(Err(e)),
            };
            self.event(
                &c,
                EventType::Normal,
                "ExternalProvisioning",
                &format!("Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.", sc.provisioner),
            )
            .await;
            self.set_claim_phase(&c, "Pending").await?;
            return Ok(true);
        }
        self.set_claim_phase(pvc, "Pending").await
    }

    async fn set_claim_phase(&mut self, pvc: &PersistentVolumeClaim, phase: &str) -> Step {
        if phase_of_pvc(pvc) == phase {
            return Ok(false);
        }
        let mut c = pvc.clone();
        c.status.get_or_insert_with(Default::default).phase = Some(phase.into());
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), &pvc.namespace().unwrap_or_default());
        conflict_is_retry(
            api.replace_status(&pvc.name_any(), &PostParams::default(), &c)
                .await
                .map(|_| true),
        )
    }

    /// Makes `pvs[idx]` and `pvc` point at each other, Bound (each step only
    /// when missing, so a half-done binding is finished by the next pass).
    async fn bind(
        &mut self,
        idx: usize,
        pvs: &mut [PersistentVolume],
        pvc: &PersistentVolumeClaim,
    ) -> Step {
        let ns = pvc.namespace().unwrap_or_else(|| "default".into());
        let claim_name = pvc.name_any();
        let pv_api: Api<PersistentVolume> = Api::all(self.client.clone());
        let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        let mut wrote = false;
        let mut pv = pvs[idx].clone();
        let pv_name = pv.name_any();
        // 1. The volume's claimRef.
        let has_uid_ref = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_some_and(|r| r.uid.is_some() && r.uid == pvc.metadata.uid);
        if !has_uid_ref {
            let spec = pv.spec.get_or_insert_with(Default::default);
            if spec.claim_ref.is_none() {
                set_annotation(&mut pv.metadata, ANN_BOUND_BY_CONTROLLER, "yes");
            }
            let spec = pv.spec.get_or_insert_with(Default::default);
            spec.claim_ref = Some(claim_reference(pvc));
            pv = match pv_api.replace(&pv_name, &PostParams::default(), &pv).await {
                Ok(p) => p,
                Err(e) => return conflict_is_retry(Err(e)),
            };
            wrote = true;
        }
        // 2. The volume's phase.
        if phase_of_pv(&pv) != "Bound" {
            let reason = pv.status.as_ref().and_then(|s| s.reason.clone());
            pv.status = Some(PersistentVolumeStatus {
                phase: Some("Bound".into()),
                last_phase_transition_time: Some(now_time()),
                message: None,
                reason,
            });
            pv = match pv_api
                .replace_status(&pv_name, &PostParams::default(), &pv)
                .await
            {
                Ok(p) => p,
                Err(e) => return conflict_is_retry(Err(e)),
            };
            wrote = true;
        }
        pvs[idx] = pv.clone();
        // 3. The claim's volumeName and annotations.
        let mut c = pvc.clone();
        let current = c.spec.as_ref().and_then(|s| s.volume_name.clone());
        if current.as_deref() != Some(pv_name.as_str())
            || annotation(&c.metadata, ANN_BIND_COMPLETED).is_none()
        {
            if current.as_deref().is_none_or(str::is_empty) {
                set_annotation(&mut c.metadata, ANN_BOUND_BY_CONTROLLER, "yes");
            }
            set_annotation(&mut c.metadata, ANN_BIND_COMPLETED, "yes");
            c.spec.get_or_insert_with(Default::default).volume_name = Some(pv_name.clone());
            c = match pvc_api
                .replace(&claim_name, &PostParams::default(), &c)
                .await
            {
                Ok(c) => c,
                Err(e) => return conflict_is_retry(Err(e)),
            };
            wrote = true;
        }
        // 4. The claim's status.
        let status = bound_claim_status(c.status.as_ref(), &pv);
        if c.status.as_ref() != Some(&status) {
            c.status = Some(status);
            if let Err(e) = pvc_api
                .replace_status(&claim_name, &PostParams::default(), &c)
                .await
            {
                return conflict_is_retry(Err(e));
            }
            tracing::info!(claim = %format!("{ns}/{claim_name}"), volume = %pv_name, "bound");
            wrote = true;
        }
        if wrote {
            if let Some(uid) = pvc.metadata.uid.as_ref() {
                self.last_event.remove(uid);
            }
        }
        Ok(wrote)
    }

    // ----- volumes --------------------------------------------------------

    async fn sync_volume(
        &mut self,
        pv: &PersistentVolume,
        claims: &HashMap<(String, String), &PersistentVolumeClaim>,
    ) -> Step {
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let name = pv.name_any();
        if pv.metadata.deletion_timestamp.is_some() {
            if has_finalizer(&pv.metadata, PV_PROTECTION) && phase_of_pv(pv) != "Bound" {
                let mut p = pv.clone();
                if let Some(f) = p.metadata.finalizers.as_mut() {
                    f.retain(|x| x != PV_PROTECTION);
                }
                return conflict_is_retry(
                    api.replace(&name, &PostParams::default(), &p)
                        .await
                        .map(|_| true),
                );
            }
        } else if !has_finalizer(&pv.metadata, PV_PROTECTION) {
            let mut p = pv.clone();
            p.metadata
                .finalizers
                .get_or_insert_with(Vec::new)
                .push(PV_PROTECTION.into());
            return conflict_is_retry(
                api.replace(&name, &PostParams::default(), &p)
                    .await
                    .map(|_| true),
            );
        }
        let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.clone());
        let Some(cr) = claim_ref else {
            return self.set_volume_phase(pv, "Available", None).await;
        };
        let Some(uid) = cr.uid.clone().filter(|u| !u.is_empty()) else {
            // Pre-bound by the user to a claim that is not bound yet.
            return self.set_volume_phase(pv, "Available", None).await;
        };
        let key = (
            cr.namespace.clone().unwrap_or_else(|| "default".into()),
            cr.name.clone().unwrap_or_default(),
        );
        let mut claim = claims
            .get(&key)
            .filter(|c| c.metadata.uid.as_deref() == Some(uid.as_str()))
            .map(|c| (*c).clone());
        if claim.is_none() {
            // The list may predate the claim: ask the API before releasing.
            let capi: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &key.0);
            claim = capi
                .get_opt(&key.1)
                .await?
                .filter(|c| c.metadata.uid.as_deref() == Some(uid.as_str()));
        }
        let Some(claim) = claim else {
            return self.release(pv).await;
        };
        let bound_to = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .unwrap_or_default();
        if bound_to.is_empty() {
            // The claim side is finished by the claim pass.
            return Ok(false);
        }
        if bound_to == name {
            return self.set_volume_phase(pv, "Bound", None).await;
        }
        // The claim is bound to another volume: let this one go.
        let mut p = pv.clone();
        let by_controller = annotation(&p.metadata, ANN_BOUND_BY_CONTROLLER).is_some();
        if let Some(spec) = p.spec.as_mut() {
            if by_controller {
                spec.claim_ref = None;
            } else if let Some(r) = spec.claim_ref.as_mut() {
                r.uid = None;
            }
        }
        if by_controller {
            if let Some(a) = p.metadata.annotations.as_mut() {
                a.remove(ANN_BOUND_BY_CONTROLLER);
            }
        }
        conflict_is_retry(
            api.replace(&name, &PostParams::default(), &p)
                .await
                .map(|_| true),
        )
    }

    async fn release(&mut self, pv: &PersistentVolume) -> Step {
        let name = pv.name_any();
        let phase = phase_of_pv(pv);
        if phase != "Released" && phase != "Failed" {
            tracing::info!(volume = %name, "its claim is gone: Released");
            return self.set_volume_phase(pv, "Released", None).await;
        }
        if phase == "Failed" {
            return Ok(false);
        }
        match reclaim(pv) {
            Reclaim::Keep => Ok(false),
            Reclaim::Provisioner(_) => Ok(false),
            Reclaim::DeleteObject => {
                if pv.metadata.deletion_timestamp.is_some() {
                    return Ok(false);
                }
                tracing::info!(volume = %name, "reclaim policy Delete: deleting the volume object (its data stays where it is)");
                let api: Api<PersistentVolume> = Api::all(self.client.clone());
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => Ok(true),
                    Err(e) if is_not_found(&e) => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }
            Reclaim::Fail(msg) => {
                self.event(pv, EventType::Warning, "VolumeFailedRecycle", &msg)
                    .await;
                self.set_volume_phase(pv, "Failed", Some(msg)).await
            }
        }
    }

    async fn set_volume_phase(
        &mut self,
        pv: &PersistentVolume,
        phase: &str,
        message: Option<String>,
    ) -> Step {
        let st = pv.status.clone().unwrap_or_default();
        let same_phase = st.phase.as_deref() == Some(phase);
        // Within a phase, reason/message belong to whoever wrote them (an
        // admin, a test): only a message of ours replaces them.
        if same_phase && (message.is_none() || st.message == message) {
            return Ok(false);
        }
        let mut p = pv.clone();
        p.status = Some(PersistentVolumeStatus {
            phase: Some(phase.into()),
            last_phase_transition_time: if same_phase {
                st.last_phase_transition_time
            } else {
                Some(now_time())
            },
            message,
            reason: st.reason,
        });
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        conflict_is_retry(
            api.replace_status(&pv.name_any(), &PostParams::default(), &p)
                .await
                .map(|_| true),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::testutil::labels;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

    fn pv(name: &str, size: &str, class: &str, modes: &[&str]) -> PersistentVolume {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "uid": format!("uid-{name}")},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": modes,
                "storageClassName": class,
                "hostPath": {"path": format!("/data/{name}")},
            },
            "status": {"phase": "Available"},
        }))
        .unwrap()
    }

    fn pvc(name: &str, size: &str, class: Option<&str>, modes: &[&str]) -> PersistentVolumeClaim {
        let mut c: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "spec": {
                "accessModes": modes,
                "resources": {"requests": {"storage": size}},
            },
        }))
        .unwrap();
        c.spec.as_mut().unwrap().storage_class_name = class.map(Into::into);
        c
    }

    #[test]
    fn storage_quantities() {
        assert_eq!(parse_storage("1Gi"), Some(1 << 30));
        assert_eq!(parse_storage("500Mi"), Some(500 << 20));
        assert_eq!(parse_storage("1G"), Some(1_000_000_000));
        assert_eq!(parse_storage("1.5Gi"), Some(3 << 29));
        assert_eq!(parse_storage("1e3"), Some(1000));
        assert_eq!(parse_storage("100"), Some(100));
        assert_eq!(parse_storage("1500m"), Some(2), "rounded up");
        assert_eq!(parse_storage("2k"), Some(2000));
        assert_eq!(parse_storage("abc"), None);
        assert_eq!(parse_storage("1Qi"), None);
        assert_eq!(parse_storage("-1Gi"), None);
        assert_eq!(parse_storage("1.2.3"), None);
    }

    #[test]
    fn smallest_fitting_volume_wins() {
        let pvs = vec![
            pv("big", "10Gi", "manual", &["ReadWriteOnce"]),
            pv("small", "1Gi", "manual", &["ReadWriteOnce"]),
            pv("tiny", "100Mi", "manual", &["ReadWriteOnce"]),
            pv("other-class", "1Gi", "fast", &["ReadWriteOnce"]),
        ];
        let c = pvc("c", "500Mi", Some("manual"), &["ReadWriteOnce"]);
        assert_eq!(find_best_match(&pvs, &c).unwrap().name_any(), "small");
        let huge = pvc("c", "20Gi", Some("manual"), &["ReadWriteOnce"]);
        assert!(find_best_match(&pvs, &huge).is_none());
        let fast = pvc("c", "1Gi", Some("fast"), &["ReadWriteOnce"]);
        assert_eq!(
            find_best_match(&pvs, &fast).unwrap().name_any(),
            "other-class"
        );
        let none = pvc("c", "1Gi", Some(""), &["ReadWriteOnce"]);
        assert!(find_best_match(&pvs, &none).is_none(), "class must match");
    }

    #[test]
    fn access_modes_and_volume_mode_must_fit() {
        let pvs = vec![pv("rwo", "1Gi", "", &["ReadWriteOnce"])];
        let rwx = pvc("c", "1Gi", Some(""), &["ReadWriteMany"]);
        assert!(find_best_match(&pvs, &rwx).is_none());
        assert!(check_volume_satisfies(&pvs[0], &rwx)
            .unwrap_err()
            .contains("accessMode"));
        let mut block = pvc("c", "1Gi", Some(""), &["ReadWriteOnce"]);
        block.spec.as_mut().unwrap().volume_mode = Some("Block".into());
        assert!(check_volume_satisfies(&pvs[0], &block)
            .unwrap_err()
            .contains("volumeMode"));
        let ok = pvc("c", "1Gi", None, &["ReadWriteOnce"]);
        assert!(check_volume_satisfies(&pvs[0], &ok).is_ok());
    }

    #[test]
    fn selector_and_claimed_volumes() {
        let mut labelled = pv("labelled", "5Gi", "manual", &["ReadWriteOnce"]);
        labelled.metadata.labels = Some(labels(&[("type", "local")]));
        let plain = pv("plain", "1Gi", "manual", &["ReadWriteOnce"]);
        let mut taken = pv("taken", "1Gi", "manual", &["ReadWriteOnce"]);
        taken.spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
            name: Some("someone".into()),
            namespace: Some("default".into()),
            uid: Some("uid-someone".into()),
            ..Default::default()
        });
        let mut released = pv("released", "1Gi", "manual", &["ReadWriteOnce"]);
        released.status.as_mut().unwrap().phase = Some("Released".into());
        let pvs = vec![labelled, plain, taken, released];
        let mut c = pvc("c", "1Gi", Some("manual"), &["ReadWriteOnce"]);
        assert_eq!(find_best_match(&pvs, &c).unwrap().name_any(), "plain");
        c.spec.as_mut().unwrap().selector = Some(LabelSelector {
            match_labels: Some(labels(&[("type", "local")])),
            ..Default::default()
        });
        assert_eq!(find_best_match(&pvs, &c).unwrap().name_any(), "labelled");
        // Claimed and released volumes are never picked.
        let only = vec![pvs[2].clone(), pvs[3].clone()];
        let c = pvc("c", "1Gi", Some("manual"), &["ReadWriteOnce"]);
        assert!(find_best_match(&only, &c).is_none());
    }

    #[test]
    fn prebound_volume_is_preferred() {
        let mut pre = pv("pre", "10Gi", "manual", &["ReadWriteOnce"]);
        pre.spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
            name: Some("c".into()),
            namespace: Some("default".into()),
            ..Default::default()
        });
        let pvs = vec![pv("small", "1Gi", "manual", &["ReadWriteOnce"]), pre];
        let c = pvc("c", "1Gi", Some("manual"), &["ReadWriteOnce"]);
        assert_eq!(find_best_match(&pvs, &c).unwrap().name_any(), "pre");
        assert!(is_bound_to(&pvs[1], &c));
        // A claimRef with another uid is an older claim of the same name.
        let mut old = pvs[1].clone();
        old.spec.as_mut().unwrap().claim_ref.as_mut().unwrap().uid = Some("older".into());
        assert!(!is_bound_to(&old, &c));
        let other = pvc("d", "1Gi", Some("manual"), &["ReadWriteOnce"]);
        assert!(!is_bound_to(&pvs[1], &other));
    }

    #[test]
    fn default_class_is_newest_marked_one() {
        let sc = |name: &str, default: bool, created: i64| -> StorageClass {
            let mut s: StorageClass = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "provisioner": "minik.io/hostpath",
            }))
            .unwrap();
            if default {
                s.metadata.annotations = Some(labels(&[(ANN_DEFAULT_CLASS, "true")]));
            }
            s.metadata.creation_timestamp = Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(created).unwrap(),
            ));
            s
        };
        assert!(default_class(&[sc("a", false, 1)]).is_none());
        let classes = [sc("a", true, 1), sc("b", true, 5), sc("c", false, 9)];
        assert_eq!(default_class(&classes).unwrap().name_any(), "b");
        let mut beta = sc("d", false, 1);
        beta.metadata.annotations = Some(labels(&[(ANN_BETA_DEFAULT_CLASS, "true")]));
        assert!(is_default_class(&beta));
    }

    #[test]
    fn claim_class_unset_empty_or_beta() {
        assert_eq!(claim_class(&pvc("c", "1Gi", None, &[])), None);
        assert_eq!(
            claim_class(&pvc("c", "1Gi", Some(""), &[])),
            Some(String::new())
        );
        let mut beta = pvc("c", "1Gi", None, &[]);
        beta.metadata.annotations = Some(labels(&[(ANN_BETA_CLASS, "slow")]));
        assert_eq!(claim_class(&beta), Some("slow".into()));
    }

    #[test]
    fn protection_counts_scheduled_running_pods_only() {
        let pod = |node: Option<&str>, phase: &str| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p", "namespace": "default"},
                "spec": {
                    "nodeName": node,
                    "containers": [{"name": "c", "image": "busybox"}],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}],
                },
                "status": {"phase": phase},
            }))
            .unwrap()
        };
        assert!(pod_uses_claim(&pod(Some("minik"), "Running"), "c"));
        assert!(!pod_uses_claim(&pod(Some("minik"), "Running"), "other"));
        assert!(!pod_uses_claim(&pod(None, "Pending"), "c"));
        assert!(!pod_uses_claim(&pod(Some("minik"), "Succeeded"), "c"));
        assert!(!pod_uses_claim(&pod(Some("minik"), "Failed"), "c"));
        let eph: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"nodeName": "minik", "containers": [],
                     "volumes": [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]},
        }))
        .unwrap();
        assert!(pod_uses_claim(&eph, "web-scratch"));
    }

    #[test]
    fn ephemeral_volumes_get_owned_claims() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "team", "uid": "pod-uid"},
            "spec": {"containers": [], "volumes": [
                {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {
                    "metadata": {"labels": {"type": "scratch"}},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}},
                {"name": "plain", "emptyDir": {}},
            ]},
        }))
        .unwrap();
        let claims = ephemeral_claims(&pod);
        assert_eq!(claims.len(), 1);
        let c = &claims[0];
        assert_eq!(c.name_any(), "web-scratch");
        assert_eq!(c.namespace().as_deref(), Some("team"));
        assert_eq!(c.labels().get("type").map(String::as_str), Some("scratch"));
        let owner = &c.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Pod", "pod-uid", Some(true))
        );
        assert_eq!(claim_request(c), 1 << 30);
        assert!(pod_references_claim(&pod, "web-scratch"));
    }

    #[test]
    fn reclaim_policies() {
        let mut v = pv("v", "1Gi", "", &["ReadWriteOnce"]);
        assert_eq!(reclaim(&v), Reclaim::Keep, "Retain is the default");
        v.spec.as_mut().unwrap().persistent_volume_reclaim_policy = Some("Delete".into());
        assert_eq!(reclaim(&v), Reclaim::DeleteObject);
        v.metadata.annotations = Some(labels(&[(ANN_PROVISIONED_BY, "minik.io/hostpath")]));
        assert_eq!(
            reclaim(&v),
            Reclaim::Provisioner("minik.io/hostpath".into())
        );
        v.spec.as_mut().unwrap().persistent_volume_reclaim_policy = Some("Recycle".into());
        assert!(matches!(reclaim(&v), Reclaim::Fail(m) if m.contains("Recycle")));
    }

    #[test]
    fn bound_status_copies_capacity_and_modes() {
        let v = pv("v", "2Gi", "", &["ReadWriteOnce", "ReadOnlyMany"]);
        let s = bound_claim_status(None, &v);
        assert_eq!(s.phase.as_deref(), Some("Bound"));
        assert_eq!(s.capacity.unwrap()["storage"].0, "2Gi");
        assert_eq!(s.access_modes.unwrap().len(), 2);
    }
}
