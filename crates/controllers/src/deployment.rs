//! Deployment controller: turns a Deployment into ReplicaSets named
//! `<deployment>-<pod-template-hash>` and rolls between them.
//!
//! Follows kube's `pkg/controller/deployment`: the new ReplicaSet is the one
//! whose template equals the Deployment's (ignoring `pod-template-hash`);
//! every other owned ReplicaSet is old. Each reconcile makes one step:
//! RollingUpdate (maxSurge rounded up, maxUnavailable rounded down),
//! Recreate (old to zero, wait for old pods to vanish, then the new one),
//! proportional scaling for scaling events and paused Deployments,
//! revisionHistoryLimit cleanup, the `deployment.kubernetes.io/revision`
//! annotation (a template coming back reuses its old ReplicaSet with the next
//! revision, which is what `kubectl rollout undo` relies on), and `status`
//! with the Available and Progressing conditions `kubectl rollout status` reads.
//!
//! Owns ReplicaSets only (never pods directly, except reading them for Recreate).
//! The decision logic is pure (functions over [`RsView`]) and unit tested.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::events::EventType;
use crate::reconcile::Ctx;
use crate::util::{
    controller_owner_ref, controller_ref, is_conflict, is_controlled_by, is_not_found,
    resolve_int_or_percent, selector_matches, time_secs, UtilError,
};

pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
pub const HASH_LABEL: &str = "pod-template-hash";

/// Annotations of a Deployment that are not copied to its ReplicaSets.
const SKIP_COPY_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    "deployment.kubernetes.io/revision-history",
    DESIRED_REPLICAS_ANNOTATION,
    MAX_REPLICAS_ANNOTATION,
    "deprecated.deployment.rollback.to",
];

const DEFAULT_PROGRESS_DEADLINE: i32 = 600;
const DEFAULT_REVISION_HISTORY: i32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Deployment has no namespace, name or uid; it cannot be reconciled")]
    MissingMeta,
    #[error("Deployment {0} has an invalid rolling update parameter: {1}")]
    Strategy(String, UtilError),
    #[error(
        "ReplicaSet name {0} is taken by a different template; bumped collisionCount, will retry"
    )]
    HashCollision(String),
    #[error("talking to the API server failed: {0}")]
    Kube(#[from] kube::Error),
}

/// Runs the Deployment controller until the task is dropped.
pub async fn run(client: Client) -> anyhow::Result<()> {
    let ctx = Ctx::new(&client, "deployment-controller");
    Controller::new(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<ReplicaSet>::all(client), watcher::Config::default())
    .run(reconcile, error_policy, ctx)
    .for_each(|res| crate::reconcile::log_result("deployment", res))
    .await;
    Ok(())
}

fn error_policy(_d: Arc<Deployment>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    let kube_err = match err {
        Error::Kube(e) => Some(e),
        _ => None,
    };
    Action::requeue(crate::reconcile::error_requeue("deployment", kube_err, err))
}

// ---------------------------------------------------------------------------
// Pure logic
// ---------------------------------------------------------------------------

/// What the rollout logic needs to know about one ReplicaSet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RsView {
    pub name: String,
    /// spec.replicas
    pub replicas: i32,
    /// status.availableReplicas, capped at spec.replicas: right after a
    /// scale-down the status still counts pods that are about to go, and
    /// trusting it would let a rollout drop below minAvailable.
    pub available: i32,
    /// status.replicas (pods that exist and are not terminating)
    pub actual: i32,
    /// creation time, seconds
    pub created: i64,
    /// `deployment.kubernetes.io/max-replicas`, if set
    pub max_replicas: Option<i32>,
}

impl RsView {
    pub fn of(rs: &ReplicaSet) -> RsView {
        let replicas = rs_replicas(rs);
        RsView {
            name: rs.name_any(),
            replicas,
            available: rs
                .status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0)
                .min(replicas.max(0)),
            actual: rs.status.as_ref().map(|s| s.replicas).unwrap_or(0),
            created: time_secs(rs.metadata.creation_timestamp.as_ref()),
            max_replicas: annotation_i32(&rs.metadata, MAX_REPLICAS_ANNOTATION),
        }
    }
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn annotation_i32(meta: &ObjectMeta, key: &str) -> Option<i32> {
    meta.annotations.as_ref()?.get(key)?.parse().ok()
}

/// The revision annotation of an object, 0 when missing or invalid.
pub fn revision(meta: &ObjectMeta) -> i64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// FNV-1a 32-bit, the hash kube uses for `pod-template-hash`.
fn fnv32a(data: &[u8], mut h: u32) -> u32 {
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// kube's `rand.SafeEncodeString`: map each character onto an alphabet
/// without vowels (no accidental words) and without look-alike characters.
fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// The `pod-template-hash` of a template (and collisionCount): a stable
/// short string like kube's `controller.ComputeHash`. The hash label itself
/// is ignored so a ReplicaSet's template hashes like its Deployment's.
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let t = strip_hash_label(template);
    let bytes = serde_json::to_vec(&t).unwrap_or_default();
    let mut h = fnv32a(&bytes, 0x811c_9dc5);
    if let Some(c) = collision_count {
        h = fnv32a(&(c as u32).to_le_bytes(), h);
    }
    safe_encode(&h.to_string())
}

fn strip_hash_label(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = template.clone();
    if let Some(m) = t.metadata.as_mut() {
        if let Some(l) = m.labels.as_mut() {
            l.remove(HASH_LABEL);
            if l.is_empty() {
                m.labels = None;
            }
        }
    }
    t
}

/// kube's `EqualIgnoreHash`: templates equal apart from `pod-template-hash`.
pub fn templates_equal_ignoring_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    serde_json::to_value(strip_hash_label(a)).ok() == serde_json::to_value(strip_hash_label(b)).ok()
}

/// Whether the Deployment uses the Recreate strategy.
fn is_recreate(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

fn desired_replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// (maxSurge, maxUnavailable) resolved against spec.replicas; surge rounds
/// up, unavailable down, and both zero becomes unavailable = 1 (kube's
/// `ResolveFenceposts`). Recreate: (0, 0).
pub fn surge_and_unavailable(d: &Deployment) -> Result<(i32, i32), UtilError> {
    if is_recreate(d) {
        return Ok((0, 0));
    }
    let replicas = desired_replicas(d);
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let default = IntOrString::String("25%".into());
    let surge_v = ru
        .and_then(|r| r.max_surge.clone())
        .unwrap_or(default.clone());
    let unav_v = ru
        .and_then(|r| r.max_unavailable.clone())
        .unwrap_or(default);
    let surge = resolve_int_or_percent(&surge_v, replicas, true)?.max(0);
    let mut unavailable = resolve_int_or_percent(&unav_v, replicas, false)?.max(0);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable.min(replicas.max(0))))
}

/// Replicas the new ReplicaSet may have now during a rolling update
/// (kube's `NewRSNewReplicas`). `all` includes `new`. A ReplicaSet counts
/// with its pods that still exist when they exceed its spec (a scale-down
/// in progress), so the surge bound holds for real pods, not just specs.
pub fn new_rs_new_replicas(replicas: i32, max_surge: i32, new: &RsView, all: &[RsView]) -> i32 {
    let current: i32 = all
        .iter()
        .map(|r| {
            if r.name == new.name {
                r.replicas
            } else {
                r.replicas.max(r.actual)
            }
        })
        .sum();
    let max_total = replicas + max_surge;
    if current >= max_total {
        return new.replicas;
    }
    let up = (max_total - current).min(replicas - new.replicas).max(0);
    new.replicas + up
}

/// Target size of the new ReplicaSet in a rolling update, None when unchanged
/// (kube's `reconcileNewReplicaSet`).
pub fn rolling_new_rs_target(
    replicas: i32,
    max_surge: i32,
    new: &RsView,
    all: &[RsView],
) -> Option<i32> {
    if new.replicas == replicas {
        return None;
    }
    if new.replicas > replicas {
        return Some(replicas);
    }
    let n = new_rs_new_replicas(replicas, max_surge, new, all);
    (n != new.replicas).then_some(n)
}

fn by_creation(olds: &[RsView]) -> Vec<RsView> {
    let mut v = olds.to_vec();
    v.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
    v
}

/// New sizes for old ReplicaSets in a rolling update: first scale down
/// unhealthy replicas, then as many available ones as maxUnavailable allows
/// (kube's `reconcileOldReplicaSets`). Returns only changed ReplicaSets.
pub fn rolling_old_rs_targets(
    replicas: i32,
    max_unavailable: i32,
    new: &RsView,
    olds: &[RsView],
) -> Vec<(String, i32)> {
    let old_count: i32 = olds.iter().map(|r| r.replicas).sum();
    if old_count == 0 {
        return vec![];
    }
    let all_count = old_count + new.replicas;
    let min_available = replicas - max_unavailable;
    let new_unavailable = (new.replicas - new.available).max(0);
    let max_scaled_down = all_count - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return vec![];
    }
    let mut olds = by_creation(olds);
    let original: HashMap<String, i32> =
        olds.iter().map(|r| (r.name.clone(), r.replicas)).collect();
    // 1. Unhealthy replicas go first: they do not count toward availability.
    let mut cleaned = 0;
    for rs in olds.iter_mut() {
        if cleaned >= max_scaled_down {
            break;
        }
        if rs.replicas == 0 || rs.replicas <= rs.available {
            continue;
        }
        let n = (max_scaled_down - cleaned).min(rs.replicas - rs.available);
        rs.replicas -= n;
        cleaned += n;
    }
    // 2. Then available ones, keeping at least minAvailable.
    let available: i32 = olds.iter().map(|r| r.available).sum::<i32>() + new.available;
    if available > min_available {
        let total = available - min_available;
        let mut scaled = 0;
        for rs in olds.iter_mut() {
            if scaled >= total {
                break;
            }
            if rs.replicas == 0 {
                continue;
            }
            let n = rs.replicas.min(total - scaled);
            rs.replicas -= n;
            scaled += n;
        }
    }
    olds.into_iter()
        .filter(|r| original.get(&r.name) != Some(&r.replicas))
        .map(|r| (r.name, r.replicas))
        .collect()
}

/// New sizes for a scaling event or a paused Deployment (kube's
/// `DeploymentController.scale`), including proportional scaling of several
/// active ReplicaSets during a rollout. `status_replicas` is the Deployment's
/// `status.replicas` (fallback for a missing max-replicas annotation).
pub fn scale_targets(
    replicas: i32,
    max_surge: i32,
    rolling: bool,
    status_replicas: i32,
    new: Option<&RsView>,
    olds: &[RsView],
    new_saturated: bool,
) -> Vec<(String, i32)> {
    let mut all: Vec<RsView> = olds.to_vec();
    if let Some(n) = new {
        all.push(n.clone());
    }
    let active: Vec<RsView> = all.iter().filter(|r| r.replicas > 0).cloned().collect();
    // One active (or none: the latest) ReplicaSet takes the whole size.
    let single = match active.len() {
        1 => Some(active[0].clone()),
        0 => new.cloned().or_else(|| {
            let mut o = olds.to_vec();
            o.sort_by(|a, b| b.created.cmp(&a.created).then(b.name.cmp(&a.name)));
            o.into_iter().next()
        }),
        _ => None,
    };
    if let Some(rs) = single {
        return if rs.replicas != replicas {
            vec![(rs.name, replicas)]
        } else {
            vec![]
        };
    }
    if new_saturated {
        return active
            .iter()
            .filter(|r| Some(&r.name) != new.map(|n| &n.name))
            .map(|r| (r.name.clone(), 0))
            .collect();
    }
    if !rolling {
        return vec![];
    }
    let allowed = if replicas > 0 {
        replicas + max_surge
    } else {
        0
    };
    let current: i32 = active.iter().map(|r| r.replicas).sum();
    let to_add = allowed - current;
    if to_add == 0 {
        return vec![];
    }
    let mut sorted = active.clone();
    if to_add > 0 {
        // Bigger first, newer first.
        sorted.sort_by(|a, b| b.replicas.cmp(&a.replicas).then(b.created.cmp(&a.created)));
    } else {
        // Bigger first, older first.
        sorted.sort_by(|a, b| b.replicas.cmp(&a.replicas).then(a.created.cmp(&b.created)));
    }
    let mut added = 0;
    let mut sizes: Vec<(String, i32)> = Vec::new();
    for rs in &sorted {
        let mut proportion = 0;
        if rs.replicas != 0 && to_add != added {
            let fraction = if replicas == 0 {
                -rs.replicas
            } else {
                let annotated = rs.max_replicas.unwrap_or(status_replicas).max(1);
                let target = (f64::from(rs.replicas) * f64::from(replicas + max_surge)
                    / f64::from(annotated))
                .round() as i32;
                target - rs.replicas
            };
            let allowed_left = to_add - added;
            proportion = if to_add > 0 {
                fraction.min(allowed_left)
            } else {
                fraction.max(allowed_left)
            };
        }
        added += proportion;
        sizes.push((rs.name.clone(), rs.replicas + proportion));
    }
    // The leftover goes to the first (largest) ReplicaSet.
    if let Some(first) = sizes.first_mut() {
        first.1 = (first.1 + to_add - added).max(0);
    }
    sizes
        .into_iter()
        .filter(|(n, v)| active.iter().any(|r| &r.name == n && r.replicas != *v))
        .collect()
}

/// Old ReplicaSets to delete for `revisionHistoryLimit`: fully scaled down,
/// observed, not being deleted; lowest revision first.
pub fn history_to_delete(limit: i32, olds: &[&ReplicaSet]) -> Vec<String> {
    let mut alive: Vec<&&ReplicaSet> = olds
        .iter()
        .filter(|r| r.metadata.deletion_timestamp.is_none())
        .collect();
    let diff = alive.len() as i64 - i64::from(limit.max(0));
    if diff <= 0 {
        return vec![];
    }
    alive.sort_by(|a, b| {
        revision(&a.metadata).cmp(&revision(&b.metadata)).then(
            time_secs(a.metadata.creation_timestamp.as_ref())
                .cmp(&time_secs(b.metadata.creation_timestamp.as_ref())),
        )
    });
    alive
        .into_iter()
        .take(diff as usize)
        .filter(|r| {
            let st = r.status.as_ref();
            rs_replicas(r) == 0
                && st.map(|s| s.replicas).unwrap_or(0) == 0
                && r.metadata.generation.unwrap_or(0)
                    <= st.and_then(|s| s.observed_generation).unwrap_or(0)
        })
        .map(|r| r.name_any())
        .collect()
}

/// Status counts from the ReplicaSets (kube's `calculateStatus`), with the
/// Available condition; Progressing is handled by [`progress_conditions`].
pub fn calculate_status(
    d: &Deployment,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    max_unavailable: i32,
    conditions: Vec<DeploymentCondition>,
    now: &Time,
) -> DeploymentStatus {
    let st = |rs: &ReplicaSet| rs.status.clone().unwrap_or_default();
    let spec_total: i32 = all.iter().map(|r| rs_replicas(r)).sum();
    let actual: i32 = all.iter().map(|r| st(r).replicas).sum();
    let ready: i32 = all.iter().map(|r| st(r).ready_replicas.unwrap_or(0)).sum();
    let available: i32 = all
        .iter()
        .map(|r| st(r).available_replicas.unwrap_or(0))
        .sum();
    let updated = new.map(|r| st(r).replicas).unwrap_or(0);
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(actual),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        unavailable_replicas: Some((spec_total - available).max(0)),
        collision_count: d.status.as_ref().and_then(|s| s.collision_count),
        conditions: Some(conditions),
        terminating_replicas: None,
    };
    let replicas = desired_replicas(d);
    let cond = if available >= replicas - max_unavailable {
        new_condition(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            now,
        )
    } else {
        new_condition(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            now,
        )
    };
    set_condition(&mut status, cond);
    status
}

fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &Time,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    }
}

fn get_condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// kube's `SetDeploymentCondition`: same status and reason is a no-op; same
/// status keeps the lastTransitionTime.
fn set_condition(status: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    let conds = status.conditions.get_or_insert_with(Vec::new);
    if let Some(cur) = conds.iter().find(|c| c.type_ == cond.type_) {
        if cur.status == cond.status && cur.reason == cond.reason {
            // kube keeps the old condition; but a new message must show.
            if cur.message == cond.message {
                return;
            }
            cond.last_update_time = cur.last_update_time.clone();
        }
        if cur.status == cond.status {
            cond.last_transition_time = cur.last_transition_time.clone();
        }
    }
    conds.retain(|c| c.type_ != cond.type_);
    conds.push(cond);
}

fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = status.conditions.as_mut() {
        c.retain(|c| c.type_ != type_);
    }
}

fn progress_deadline(d: &Deployment) -> Option<i32> {
    let v = d
        .spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .unwrap_or(DEFAULT_PROGRESS_DEADLINE);
    (v != i32::MAX).then_some(v)
}

/// kube's `DeploymentComplete`.
pub fn deployment_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let r = desired_replicas(d);
    s.updated_replicas == Some(r)
        && s.replicas == Some(r)
        && s.available_replicas == Some(r)
        && s.observed_generation >= d.metadata.generation
}

/// Sets the Progressing condition on `new_status` as kube's
/// `syncRolloutStatus` does: NewReplicaSetAvailable when complete,
/// ReplicaSetUpdated while making progress, ProgressDeadlineExceeded when no
/// progress happened for progressDeadlineSeconds.
pub fn progress_conditions(
    d: &Deployment,
    new_status: &mut DeploymentStatus,
    new_rs_name: Option<&str>,
    now: &Time,
) {
    let Some(deadline) = progress_deadline(d) else {
        remove_condition(new_status, "Progressing");
        return;
    };
    let old = d.status.clone().unwrap_or_default();
    let current = get_condition(new_status, "Progressing").cloned();
    let complete_already = new_status.replicas == new_status.updated_replicas
        && current.as_ref().and_then(|c| c.reason.as_deref()) == Some("NewReplicaSetAvailable");
    if complete_already {
        return;
    }
    let rs_name = new_rs_name.unwrap_or("");
    let progressing = {
        let old_old = old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
        let new_old = new_status.replicas.unwrap_or(0) - new_status.updated_replicas.unwrap_or(0);
        new_status.updated_replicas.unwrap_or(0) > old.updated_replicas.unwrap_or(0)
            || new_old < old_old
            || new_status.ready_replicas.unwrap_or(0) > old.ready_replicas.unwrap_or(0)
            || new_status.available_replicas.unwrap_or(0) > old.available_replicas.unwrap_or(0)
    };
    if deployment_complete(d, new_status) {
        set_condition(
            new_status,
            new_condition(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                &format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
                now,
            ),
        );
    } else if progressing {
        let mut cond = new_condition(
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            &format!("ReplicaSet \"{rs_name}\" is progressing."),
            now,
        );
        if let Some(cur) = &current {
            if cur.status == "True" {
                cond.last_transition_time = cur.last_transition_time.clone();
            }
        }
        remove_condition(new_status, "Progressing");
        set_condition(new_status, cond);
    } else if timed_out(current.as_ref(), deadline, now) {
        set_condition(
            new_status,
            new_condition(
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                &format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                now,
            ),
        );
    }
}

fn timed_out(cond: Option<&DeploymentCondition>, deadline: i32, now: &Time) -> bool {
    let Some(c) = cond else { return false };
    match c.reason.as_deref() {
        Some("NewReplicaSetAvailable") => false,
        Some("ProgressDeadlineExceeded") => true,
        _ => c
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0.as_second() + i64::from(deadline) < now.0.as_second()),
    }
}

/// The Deployment annotations its ReplicaSets carry (all but the
/// controller's own and kubectl's last-applied configuration).
pub fn copied_annotations(d: &Deployment) -> BTreeMap<String, String> {
    d.metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| !SKIP_COPY_ANNOTATIONS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Labels/selector/template of the ReplicaSet for `hash`.
pub fn new_replica_set(
    d: &Deployment,
    hash: &str,
    replicas: i32,
    revision: i64,
    max_surge: i32,
) -> Option<ReplicaSet> {
    let spec = d.spec.as_ref()?;
    let mut template = spec.template.clone();
    let tmeta = template.metadata.get_or_insert_with(Default::default);
    tmeta
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(HASH_LABEL.into(), hash.into());
    let labels = tmeta.labels.clone();
    let mut selector: LabelSelector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(HASH_LABEL.into(), hash.into());
    let mut annotations = copied_annotations(d);
    annotations.insert(REVISION_ANNOTATION.into(), revision.to_string());
    annotations.insert(
        DESIRED_REPLICAS_ANNOTATION.into(),
        desired_replicas(d).to_string(),
    );
    annotations.insert(
        MAX_REPLICAS_ANNOTATION.into(),
        (desired_replicas(d) + max_surge).to_string(),
    );
    Some(ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", d.metadata.name.as_deref()?)),
            namespace: d.metadata.namespace.clone(),
            labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_owner_ref(d)?]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    })
}

// ---------------------------------------------------------------------------
// I/O
// ---------------------------------------------------------------------------

/// The state one reconcile works on.
struct Work {
    d: Deployment,
    client: Client,
    rs_api: Api<ReplicaSet>,
    d_api: Api<Deployment>,
    /// Owned ReplicaSets, kept current as we patch them.
    rses: Vec<ReplicaSet>,
    conditions: Vec<DeploymentCondition>,
    now: Time,
}

impl Work {
    fn new_rs(&self) -> Option<&ReplicaSet> {
        let template = &self.d.spec.as_ref()?.template;
        if let Some(rs) = self.rses.iter().find(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| templates_equal_ignoring_hash(t, template))
        }) {
            return Some(rs);
        }
        // Defaulting could make templates differ; the hash label still identifies it.
        let hash = pod_template_hash(template, self.collision_count());
        self.rses
            .iter()
            .find(|rs| rs.labels().get(HASH_LABEL) == Some(&hash))
    }
    fn olds(&self) -> Vec<&ReplicaSet> {
        let new = self.new_rs().map(|r| r.name_any());
        self.rses
            .iter()
            .filter(|r| Some(r.name_any()) != new)
            .collect()
    }
    fn collision_count(&self) -> Option<i32> {
        self.d.status.as_ref().and_then(|s| s.collision_count)
    }
    fn status_with_conditions(&self) -> DeploymentStatus {
        DeploymentStatus {
            conditions: Some(self.conditions.clone()),
            ..Default::default()
        }
    }
    fn set_cond(&mut self, c: DeploymentCondition) {
        let mut st = self.status_with_conditions();
        set_condition(&mut st, c);
        self.conditions = st.conditions.unwrap_or_default();
    }
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some((ns, name, uid)) = crate::reconcile::ns_name_uid(&d.metadata) else {
        return Err(Error::MissingMeta);
    };
    let d_api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(d) = crate::reconcile::get_current(&d_api, &name, &uid).await? else {
        return Ok(Action::await_change());
    };
    let Some(spec) = d.spec.clone() else {
        return Ok(Action::await_change());
    };
    let (max_surge, max_unavailable) =
        surge_and_unavailable(&d).map_err(|e| Error::Strategy(name.clone(), e))?;

    // Claim ReplicaSets: ours, plus orphans matching the selector.
    let mut rses = Vec::new();
    let deleting = d.metadata.deletion_timestamp.is_some();
    let empty_selector = spec
        .selector
        .match_labels
        .as_ref()
        .is_none_or(|m| m.is_empty())
        && spec
            .selector
            .match_expressions
            .as_ref()
            .is_none_or(|m| m.is_empty());
    for rs in rs_api.list(&ListParams::default()).await?.items {
        if is_controlled_by(&rs.metadata, &uid) {
            rses.push(rs);
        } else if controller_ref(&rs.metadata).is_none()
            && !deleting
            && !empty_selector
            && selector_matches(&spec.selector, rs.labels())
        {
            if let Some(owner) = controller_owner_ref(&d) {
                let mut refs = rs.metadata.owner_references.clone().unwrap_or_default();
                refs.push(owner);
                let patch = serde_json::json!({"metadata": {"ownerReferences": refs, "uid": rs.metadata.uid}});
                match rs_api
                    .patch(
                        &rs.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    Ok(rs) => rses.push(rs),
                    Err(e) => tracing::debug!(error = %e, "could not adopt replicaset"),
                }
            }
        }
    }
    let now = Time(Timestamp::now());
    let mut w = Work {
        conditions: d
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default(),
        d,
        client: ctx.client.clone(),
        rs_api,
        d_api,
        rses,
        now,
    };
    if deleting || empty_selector {
        sync_status(&mut w, max_unavailable).await?;
        return Ok(Action::await_change());
    }

    // Paused / resumed condition (kube's checkPausedConditions).
    let paused = spec.paused.unwrap_or(false);
    if progress_deadline(&w.d).is_some() {
        let reason = w
            .conditions
            .iter()
            .find(|c| c.type_ == "Progressing")
            .and_then(|c| c.reason.clone());
        if paused && reason.as_deref() != Some("DeploymentPaused") {
            let c = new_condition(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused",
                &w.now,
            );
            w.set_cond(c);
        } else if !paused && reason.as_deref() == Some("DeploymentPaused") {
            let c = new_condition(
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed",
                &w.now,
            );
            w.set_cond(c);
        }
    }

    let replicas = desired_replicas(&w.d);
    let scaling_event = w.rses.iter().filter(|r| rs_replicas(r) > 0).any(|r| {
        annotation_i32(&r.metadata, DESIRED_REPLICAS_ANNOTATION).is_some_and(|v| v != replicas)
    });
    if paused || scaling_event {
        sync_revision(&ctx, &mut w, false, max_surge).await?;
        scale(&ctx, &mut w, max_surge).await?;
        if paused {
            cleanup(&w, &spec).await?;
        }
        sync_status(&mut w, max_unavailable).await?;
        return Ok(Action::requeue(Duration::from_secs(60)));
    }

    if is_recreate(&w.d) {
        rollout_recreate(&ctx, &mut w, &spec, max_surge).await?;
    } else {
        rollout_rolling(&ctx, &mut w, &spec, max_surge, max_unavailable).await?;
    }
    let st = sync_status(&mut w, max_unavailable).await?;
    if deployment_complete(&w.d, &st) {
        Ok(Action::requeue(Duration::from_secs(300)))
    } else {
        // Not done: come back for minReadySeconds and the progress deadline.
        Ok(Action::requeue(Duration::from_secs(requeue_not_done(
            &w.d, &st, &w.now,
        ))))
    }
}

/// Seconds until an unfinished Deployment should be looked at again: at most
/// 5, sooner when its progress deadline expires before that.
pub fn requeue_not_done(d: &Deployment, st: &DeploymentStatus, now: &Time) -> u64 {
    let deadline_in = progress_deadline(d).and_then(|deadline| {
        let c = get_condition(st, "Progressing")?;
        if c.reason.as_deref() == Some("ProgressDeadlineExceeded") {
            return None;
        }
        let since = c.last_update_time.as_ref()?.0.as_second();
        Some(since + i64::from(deadline) + 1 - now.0.as_second())
    });
    deadline_in.map(|s| s.clamp(1, 5) as u64).unwrap_or(5)
}

/// kube's getNewReplicaSet: revision bookkeeping, and creation of the new
/// ReplicaSet when `create` and it does not exist yet.
async fn sync_revision(ctx: &Ctx, w: &mut Work, create: bool, max_surge: i32) -> Result<(), Error> {
    let max_old = w
        .olds()
        .iter()
        .map(|r| revision(&r.metadata))
        .max()
        .unwrap_or(0);
    let new_revision = max_old + 1;
    if let Some(new) = w.new_rs().cloned() {
        // Keep the Deployment's own annotations (e.g. kubernetes.io/change-cause,
        // which `kubectl rollout history` shows) copied onto the new ReplicaSet.
        let mut changes: BTreeMap<String, String> = copied_annotations(&w.d)
            .into_iter()
            .filter(|(k, v)| new.annotations().get(k) != Some(v))
            .collect();
        if revision(&new.metadata) < new_revision {
            changes.insert(REVISION_ANNOTATION.into(), new_revision.to_string());
        }
        if !changes.is_empty() {
            let patch = serde_json::json!({"metadata": {"annotations": changes}});
            let updated = w
                .rs_api
                .patch(
                    &new.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
            replace_rs(w, updated);
        }
        let rev = w
            .new_rs()
            .map(|r| revision(&r.metadata))
            .unwrap_or(new_revision);
        set_deployment_revision(w, rev).await?;
        if progress_deadline(&w.d).is_some()
            && !w.conditions.iter().any(|c| c.type_ == "Progressing")
        {
            let msg = format!("Found new replica set \"{}\"", new.name_any());
            let c = new_condition("Progressing", "True", "FoundNewReplicaSet", &msg, &w.now);
            w.set_cond(c);
        }
        return Ok(());
    }
    if !create {
        return Ok(());
    }
    let Some(spec) = w.d.spec.clone() else {
        return Ok(());
    };
    let hash = pod_template_hash(&spec.template, w.collision_count());
    let replicas = if is_recreate(&w.d) {
        desired_replicas(&w.d)
    } else {
        let all: Vec<RsView> = w.rses.iter().map(RsView::of).collect();
        let empty = RsView {
            name: String::new(),
            replicas: 0,
            available: 0,
            actual: 0,
            created: 0,
            max_replicas: None,
        };
        new_rs_new_replicas(desired_replicas(&w.d), max_surge, &empty, &all)
    };
    let Some(rs) = new_replica_set(&w.d, &hash, replicas, new_revision, max_surge) else {
        return Ok(());
    };
    let rs_name = rs.name_any();
    let created = match w.rs_api.create(&PostParams::default(), &rs).await {
        Ok(c) => c,
        Err(e) if is_conflict(&e) => {
            let existing = w.rs_api.get(&rs_name).await?;
            let same = existing
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| templates_equal_ignoring_hash(t, &spec.template));
            if same
                && is_controlled_by(
                    &existing.metadata,
                    w.d.metadata.uid.as_deref().unwrap_or(""),
                )
            {
                existing
            } else {
                // A different template already has this name: change the hash.
                let cc = w.collision_count().unwrap_or(0) + 1;
                let patch = serde_json::json!({"status": {"collisionCount": cc}});
                w.d_api
                    .patch_status(
                        &w.d.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
                return Err(Error::HashCollision(rs_name));
            }
        }
        Err(e) => return Err(e.into()),
    };
    if replicas > 0 {
        ctx.recorder
            .publish(
                &w.d,
                EventType::Normal,
                "ScalingReplicaSet",
                &format!("Scaled up replica set {rs_name} to {replicas}"),
            )
            .await;
    }
    if progress_deadline(&w.d).is_some() {
        let msg = format!("Created new replica set \"{rs_name}\"");
        let c = new_condition("Progressing", "True", "NewReplicaSetCreated", &msg, &w.now);
        w.set_cond(c);
    }
    w.rses.push(created);
    set_deployment_revision(w, new_revision).await
}

async fn set_deployment_revision(w: &mut Work, rev: i64) -> Result<(), Error> {
    if revision(&w.d.metadata) == rev {
        return Ok(());
    }
    let patch =
        serde_json::json!({"metadata": {"annotations": {REVISION_ANNOTATION: rev.to_string()}}});
    w.d = w
        .d_api
        .patch(
            &w.d.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

fn replace_rs(w: &mut Work, rs: ReplicaSet) {
    if let Some(slot) = w
        .rses
        .iter_mut()
        .find(|r| r.metadata.uid == rs.metadata.uid)
    {
        *slot = rs;
    }
}

/// Sets a ReplicaSet's size and its desired/max-replicas annotations; emits
/// ScalingReplicaSet. Returns whether the size changed.
async fn scale_rs(
    ctx: &Ctx,
    w: &mut Work,
    name: &str,
    target: i32,
    max_surge: i32,
) -> Result<bool, Error> {
    let Some(rs) = w.rses.iter().find(|r| r.name_any() == name).cloned() else {
        return Ok(false);
    };
    let current = rs_replicas(&rs);
    let desired = desired_replicas(&w.d);
    let ann_ok = annotation_i32(&rs.metadata, DESIRED_REPLICAS_ANNOTATION) == Some(desired)
        && annotation_i32(&rs.metadata, MAX_REPLICAS_ANNOTATION) == Some(desired + max_surge);
    if current == target && ann_ok {
        return Ok(false);
    }
    let patch = serde_json::json!({
        "metadata": {"annotations": {
            DESIRED_REPLICAS_ANNOTATION: desired.to_string(),
            MAX_REPLICAS_ANNOTATION: (desired + max_surge).to_string(),
        }},
        "spec": {"replicas": target},
    });
    let updated = w
        .rs_api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    replace_rs(w, updated);
    if current != target {
        let dir = if target > current { "up" } else { "down" };
        ctx.recorder
            .publish(
                &w.d,
                EventType::Normal,
                "ScalingReplicaSet",
                &format!("Scaled {dir} replica set {name} to {target}"),
            )
            .await;
    }
    Ok(current != target)
}

async fn rollout_rolling(
    ctx: &Ctx,
    w: &mut Work,
    spec: &k8s_openapi::api::apps::v1::DeploymentSpec,
    max_surge: i32,
    max_unavailable: i32,
) -> Result<(), Error> {
    sync_revision(ctx, w, true, max_surge).await?;
    let replicas = desired_replicas(&w.d);
    let Some(new) = w.new_rs().map(RsView::of) else {
        return Ok(());
    };
    let all: Vec<RsView> = w.rses.iter().map(RsView::of).collect();
    if let Some(target) = rolling_new_rs_target(replicas, max_surge, &new, &all) {
        if scale_rs(ctx, w, &new.name, target, max_surge).await? {
            return Ok(());
        }
    }
    let olds: Vec<RsView> = w.olds().into_iter().map(RsView::of).collect();
    let targets = rolling_old_rs_targets(replicas, max_unavailable, &new, &olds);
    let mut scaled = false;
    for (name, target) in targets {
        scaled |= scale_rs(ctx, w, &name, target, max_surge).await?;
    }
    if scaled {
        return Ok(());
    }
    let st = calculate_status(
        &w.d,
        &w.rses.iter().collect::<Vec<_>>(),
        w.new_rs(),
        max_unavailable,
        vec![],
        &w.now,
    );
    if deployment_complete(&w.d, &st) {
        cleanup(w, spec).await?;
    }
    Ok(())
}

async fn rollout_recreate(
    ctx: &Ctx,
    w: &mut Work,
    spec: &k8s_openapi::api::apps::v1::DeploymentSpec,
    max_surge: i32,
) -> Result<(), Error> {
    sync_revision(ctx, w, false, max_surge).await?;
    let active_olds: Vec<String> = w
        .olds()
        .iter()
        .filter(|r| rs_replicas(r) > 0)
        .map(|r| r.name_any())
        .collect();
    let mut scaled = false;
    for name in active_olds {
        scaled |= scale_rs(ctx, w, &name, 0, max_surge).await?;
    }
    if scaled {
        return Ok(());
    }
    // Wait until every old pod is gone (not just terminating).
    let old_uids: Vec<String> = w
        .olds()
        .iter()
        .filter_map(|r| r.metadata.uid.clone())
        .collect();
    let pods_api: Api<Pod> =
        Api::namespaced(w.client.clone(), &w.d.namespace().unwrap_or_default());
    let pods = pods_api.list(&ListParams::default()).await?.items;
    let old_running = pods.iter().any(|p| {
        controller_ref(&p.metadata).is_some_and(|o| old_uids.contains(&o.uid))
            && !matches!(crate::util::pod_phase(p), "Succeeded" | "Failed")
    });
    if old_running {
        return Ok(());
    }
    if w.new_rs().is_none() {
        sync_revision(ctx, w, true, max_surge).await?;
    }
    if let Some(new) = w.new_rs().map(|r| r.name_any()) {
        let replicas = desired_replicas(&w.d);
        scale_rs(ctx, w, &new, replicas, max_surge).await?;
    }
    let st = calculate_status(
        &w.d,
        &w.rses.iter().collect::<Vec<_>>(),
        w.new_rs(),
        0,
        vec![],
        &w.now,
    );
    if deployment_complete(&w.d, &st) {
        cleanup(w, spec).await?;
    }
    Ok(())
}

async fn scale(ctx: &Ctx, w: &mut Work, max_surge: i32) -> Result<(), Error> {
    let replicas = desired_replicas(&w.d);
    let new = w.new_rs().map(RsView::of);
    let olds: Vec<RsView> = w.olds().into_iter().map(RsView::of).collect();
    let saturated = w.new_rs().is_some_and(|rs| {
        rs_replicas(rs) == replicas
            && annotation_i32(&rs.metadata, DESIRED_REPLICAS_ANNOTATION) == Some(replicas)
            && rs
                .status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0)
                == replicas
    });
    let status_replicas = w.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let targets = scale_targets(
        replicas,
        max_surge,
        !is_recreate(&w.d),
        status_replicas,
        new.as_ref(),
        &olds,
        saturated,
    );
    let mut touched: Vec<String> = Vec::new();
    for (name, target) in targets {
        scale_rs(ctx, w, &name, target, max_surge).await?;
        touched.push(name);
    }
    // Refresh the annotations of the other active ReplicaSets so the scaling
    // event is over.
    let rest: Vec<(String, i32)> = w
        .rses
        .iter()
        .filter(|r| rs_replicas(r) > 0 && !touched.contains(&r.name_any()))
        .map(|r| (r.name_any(), rs_replicas(r)))
        .collect();
    for (name, size) in rest {
        scale_rs(ctx, w, &name, size, max_surge).await?;
    }
    Ok(())
}

async fn cleanup(w: &Work, spec: &k8s_openapi::api::apps::v1::DeploymentSpec) -> Result<(), Error> {
    let limit = spec
        .revision_history_limit
        .unwrap_or(DEFAULT_REVISION_HISTORY);
    for name in history_to_delete(limit, &w.olds()) {
        match w.rs_api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn sync_status(w: &mut Work, max_unavailable: i32) -> Result<DeploymentStatus, Error> {
    let all: Vec<&ReplicaSet> = w.rses.iter().collect();
    let new = w.new_rs();
    let mut st = calculate_status(
        &w.d,
        &all,
        new,
        max_unavailable,
        w.conditions.clone(),
        &w.now,
    );
    let paused = w.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    if !paused {
        let name = new.map(|r| r.name_any());
        progress_conditions(&w.d, &mut st, name.as_deref(), &w.now);
    }
    if w.d.status.as_ref() != Some(&st) {
        let patch = serde_json::json!({"status": st});
        match w
            .d_api
            .patch_status(
                &w.d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(d) => w.d = d,
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::testutil::labels;
    use k8s_openapi::api::apps::v1::{
        DeploymentSpec, DeploymentStrategy, ReplicaSetStatus, RollingUpdateDeployment,
    };
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn rs(name: &str, replicas: i32, available: i32, created: i64) -> RsView {
        RsView {
            name: name.into(),
            replicas,
            available,
            actual: replicas,
            created,
            max_replicas: None,
        }
    }

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn deployment(replicas: i32, surge: &str, unavailable: &str) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("d-uid".into()),
                generation: Some(2),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(labels(&[("app", "web")])),
                    ..Default::default()
                },
                template: template("nginx:1"),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(IntOrString::String(surge.into())),
                        max_unavailable: Some(IntOrString::String(unavailable.into())),
                    }),
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn hash_is_stable_short_and_ignores_hash_label() {
        let t = template("nginx:1");
        let h = pod_template_hash(&t, None);
        assert_eq!(h, pod_template_hash(&t, None));
        assert!(h.len() <= 10 && !h.is_empty());
        assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        let mut with_label = t.clone();
        with_label
            .metadata
            .as_mut()
            .and_then(|m| m.labels.as_mut())
            .map(|l| l.insert(HASH_LABEL.into(), h.clone()));
        assert_eq!(pod_template_hash(&with_label, None), h);
        assert!(templates_equal_ignoring_hash(&t, &with_label));
        assert_ne!(pod_template_hash(&template("nginx:2"), None), h);
        assert_ne!(pod_template_hash(&t, Some(1)), h);
        assert!(!templates_equal_ignoring_hash(&t, &template("nginx:2")));
    }

    #[test]
    fn surge_rounds_up_unavailable_rounds_down() {
        assert_eq!(
            surge_and_unavailable(&deployment(3, "25%", "25%")),
            Ok((1, 0))
        );
        assert_eq!(
            surge_and_unavailable(&deployment(10, "25%", "25%")),
            Ok((3, 2))
        );
        // Both zero: one may be unavailable so the rollout can move.
        assert_eq!(surge_and_unavailable(&deployment(3, "0", "0")), Ok((0, 1)));
        assert_eq!(surge_and_unavailable(&deployment(2, "0", "5")), Ok((0, 2)));
    }

    #[test]
    fn rolling_update_surges_then_scales_old_down() {
        // 3 replicas, surge 1, unavailable 0: the new RS may go to 1.
        let old = rs("old", 3, 3, 1);
        let new = rs("new", 0, 0, 2);
        let all = vec![old.clone(), new.clone()];
        assert_eq!(rolling_new_rs_target(3, 1, &new, &all), Some(1));
        // New pod not available yet: old must not shrink below 3 available.
        let new = rs("new", 1, 0, 2);
        assert_eq!(
            rolling_old_rs_targets(3, 0, &new, std::slice::from_ref(&old)),
            vec![]
        );
        // New pod available: one old can go.
        let new = rs("new", 1, 1, 2);
        assert_eq!(
            rolling_old_rs_targets(3, 0, &new, std::slice::from_ref(&old)),
            vec![("old".into(), 2)]
        );
        // At max total (4): no more surge until old shrinks.
        let all = vec![old, new.clone()];
        assert_eq!(rolling_new_rs_target(3, 1, &new, &all), None);
    }

    #[test]
    fn surge_counts_pods_of_a_scale_down_in_progress() {
        // Old RS was just scaled 3 -> 2 but still has 3 pods: no surge room.
        let mut old = rs("old", 2, 2, 1);
        old.actual = 3;
        let new = rs("new", 1, 1, 2);
        assert_eq!(
            new_rs_new_replicas(3, 1, &new, &[old.clone(), new.clone()]),
            1
        );
        old.actual = 2;
        assert_eq!(new_rs_new_replicas(3, 1, &new, &[old, new.clone()]), 2);
    }

    #[test]
    fn stale_available_count_is_capped_by_spec() {
        let mut r = full_rs("old", 1, 2, 1);
        if let Some(s) = r.status.as_mut() {
            s.available_replicas = Some(3);
        }
        assert_eq!(RsView::of(&r).available, 2);
    }

    #[test]
    fn unhealthy_old_replicas_are_removed_first() {
        // Old RS has 3 replicas, 1 available; new RS fully available at 1.
        let old = rs("old", 3, 1, 1);
        let new = rs("new", 1, 1, 2);
        // replicas 3, maxUnavailable 1: minAvailable 2; maxScaledDown = 4-2-0 = 2
        // cleanup removes 2 unhealthy; then available 2 <= 2: stop.
        assert_eq!(
            rolling_old_rs_targets(3, 1, &new, &[old]),
            vec![("old".into(), 1)]
        );
    }

    #[test]
    fn new_rs_shrinks_when_over_desired() {
        let new = rs("new", 5, 5, 1);
        assert_eq!(
            rolling_new_rs_target(3, 1, &new, std::slice::from_ref(&new)),
            Some(3)
        );
    }

    #[test]
    fn scale_single_active_rs_takes_everything() {
        let new = rs("new", 3, 3, 2);
        let old = rs("old", 0, 0, 1);
        assert_eq!(
            scale_targets(5, 2, true, 3, Some(&new), &[old], false),
            vec![("new".to_string(), 5)]
        );
    }

    #[test]
    fn scale_proportionally_during_rollout() {
        // 10 replicas, surge 3 => max 13; old 8 and new 5 (max-replicas 13 each).
        let mut old = rs("old", 8, 8, 1);
        let mut new = rs("new", 5, 0, 2);
        old.max_replicas = Some(13);
        new.max_replicas = Some(13);
        // Scale to 20 replicas, surge 5: allowed 25, add 12.
        let mut t = scale_targets(20, 5, true, 13, Some(&new), &[old], false);
        t.sort();
        let total: i32 = t.iter().map(|(_, v)| v).sum();
        assert_eq!(total, 25);
        assert_eq!(t, vec![("new".to_string(), 10), ("old".to_string(), 15)]);
    }

    #[test]
    fn saturated_new_rs_scales_olds_to_zero() {
        let new = rs("new", 3, 3, 2);
        let old = rs("old", 1, 1, 1);
        assert_eq!(
            scale_targets(3, 1, true, 4, Some(&new), &[old], true),
            vec![("old".to_string(), 0)]
        );
    }

    fn full_rs(name: &str, rev: i64, replicas: i32, created: i64) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: Some(BTreeMap::from([(
                    REVISION_ANNOTATION.to_string(),
                    rev.to_string(),
                )])),
                creation_timestamp: Some(Time(Timestamp::from_second(created).expect("ts"))),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            status: Some(ReplicaSetStatus {
                replicas,
                observed_generation: Some(1),
                available_replicas: Some(replicas),
                ready_replicas: Some(replicas),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn history_limit_deletes_oldest_scaled_down_revisions() {
        let a = full_rs("a", 1, 0, 1);
        let b = full_rs("b", 2, 0, 2);
        let c = full_rs("c", 3, 1, 3);
        let d = full_rs("d", 4, 0, 4);
        assert_eq!(
            history_to_delete(2, &[&d, &c, &b, &a]),
            vec!["a".to_string(), "b".to_string()]
        );
        // c still has replicas: skipped even when over the limit.
        assert_eq!(history_to_delete(0, &[&d, &c, &b, &a]), vec!["a", "b", "d"]);
        assert!(history_to_delete(10, &[&a, &b]).is_empty());
    }

    #[test]
    fn new_replica_set_carries_hash_owner_and_revision() {
        let mut d = deployment(3, "25%", "25%");
        d.metadata.annotations = Some(BTreeMap::from([
            (
                "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                "{}".to_string(),
            ),
            ("team".to_string(), "a".to_string()),
        ]));
        let rs = new_replica_set(&d, "abc12", 1, 2, 1).expect("rs");
        assert_eq!(rs.name_any(), "web-abc12");
        assert_eq!(
            rs.labels().get(HASH_LABEL).map(String::as_str),
            Some("abc12")
        );
        let spec = rs.spec.as_ref().expect("spec");
        assert_eq!(
            spec.selector
                .match_labels
                .as_ref()
                .and_then(|m| m.get(HASH_LABEL))
                .map(String::as_str),
            Some("abc12")
        );
        let tl = spec
            .template
            .as_ref()
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.as_ref())
            .expect("labels");
        assert_eq!(tl.get(HASH_LABEL).map(String::as_str), Some("abc12"));
        assert_eq!(tl.get("app").map(String::as_str), Some("web"));
        let ann = rs.annotations();
        assert_eq!(ann.get(REVISION_ANNOTATION).map(String::as_str), Some("2"));
        assert_eq!(
            ann.get(DESIRED_REPLICAS_ANNOTATION).map(String::as_str),
            Some("3")
        );
        assert_eq!(
            ann.get(MAX_REPLICAS_ANNOTATION).map(String::as_str),
            Some("4")
        );
        assert_eq!(ann.get("team").map(String::as_str), Some("a"));
        assert!(!ann.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
        let owner = &rs.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Deployment", "d-uid", Some(true))
        );
    }

    fn rs_status(replicas: i32, ready: i32, available: i32) -> ReplicaSet {
        let mut r = full_rs("web-x", 1, replicas, 1);
        r.status = Some(ReplicaSetStatus {
            replicas,
            ready_replicas: Some(ready),
            available_replicas: Some(available),
            ..Default::default()
        });
        r
    }

    #[test]
    fn status_and_conditions_follow_rollout() {
        let d = deployment(3, "25%", "25%");
        let now = Time(Timestamp::from_second(1000).expect("ts"));
        let new = rs_status(3, 1, 1);
        let mut st = calculate_status(&d, &[&new], Some(&new), 0, vec![], &now);
        assert_eq!(st.replicas, Some(3));
        assert_eq!(st.updated_replicas, Some(3));
        assert_eq!(st.unavailable_replicas, Some(2));
        assert_eq!(st.observed_generation, Some(2));
        let avail = get_condition(&st, "Available").expect("available");
        assert_eq!(
            (avail.status.as_str(), avail.reason.as_deref()),
            ("False", Some("MinimumReplicasUnavailable"))
        );
        progress_conditions(&d, &mut st, Some("web-x"), &now);
        let p = get_condition(&st, "Progressing").expect("progressing");
        assert_eq!(p.reason.as_deref(), Some("ReplicaSetUpdated"));

        let new = rs_status(3, 3, 3);
        let mut st = calculate_status(&d, &[&new], Some(&new), 0, vec![], &now);
        assert!(deployment_complete(&d, &st));
        progress_conditions(&d, &mut st, Some("web-x"), &now);
        let p = get_condition(&st, "Progressing").expect("progressing");
        assert_eq!(p.reason.as_deref(), Some("NewReplicaSetAvailable"));
        assert_eq!(
            p.message.as_deref(),
            Some("ReplicaSet \"web-x\" has successfully progressed.")
        );
        assert_eq!(
            get_condition(&st, "Available").map(|c| c.status.as_str()),
            Some("True")
        );
    }

    #[test]
    fn requeue_in_time_for_the_deadline() {
        let mut d = deployment(3, "25%", "25%");
        if let Some(s) = d.spec.as_mut() {
            s.progress_deadline_seconds = Some(2);
        }
        let t0 = Time(Timestamp::from_second(1000).expect("ts"));
        let mut st = DeploymentStatus::default();
        set_condition(
            &mut st,
            new_condition("Progressing", "True", "ReplicaSetUpdated", "m", &t0),
        );
        assert_eq!(requeue_not_done(&d, &st, &t0), 3);
        let later = Time(Timestamp::from_second(1002).expect("ts"));
        assert_eq!(requeue_not_done(&d, &st, &later), 1);
        if let Some(s) = d.spec.as_mut() {
            s.progress_deadline_seconds = Some(600);
        }
        assert_eq!(requeue_not_done(&d, &st, &t0), 5);
    }

    #[test]
    fn no_progress_past_deadline_times_out() {
        let mut d = deployment(3, "25%", "25%");
        let start = Time(Timestamp::from_second(1000).expect("ts"));
        let stuck = rs_status(3, 0, 0);
        let mut st = calculate_status(&d, &[&stuck], Some(&stuck), 0, vec![], &start);
        set_condition(
            &mut st,
            new_condition(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                "ReplicaSet \"web-x\" is progressing.",
                &start,
            ),
        );
        d.status = Some(st.clone());
        let later = Time(Timestamp::from_second(1000 + 601).expect("ts"));
        let mut st2 = calculate_status(
            &d,
            &[&stuck],
            Some(&stuck),
            0,
            st.conditions.clone().unwrap_or_default(),
            &later,
        );
        progress_conditions(&d, &mut st2, Some("web-x"), &later);
        let p = get_condition(&st2, "Progressing").expect("progressing");
        assert_eq!(
            (p.status.as_str(), p.reason.as_deref()),
            ("False", Some("ProgressDeadlineExceeded"))
        );
        // Before the deadline: unchanged.
        let early = Time(Timestamp::from_second(1000 + 10).expect("ts"));
        let mut st3 = calculate_status(
            &d,
            &[&stuck],
            Some(&stuck),
            0,
            st.conditions.clone().unwrap_or_default(),
            &early,
        );
        progress_conditions(&d, &mut st3, Some("web-x"), &early);
        assert_eq!(
            get_condition(&st3, "Progressing").and_then(|c| c.reason.as_deref()),
            Some("ReplicaSetUpdated")
        );
    }
}
