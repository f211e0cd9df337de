//! StatefulSet controller: pods with stable identities `<sts>-<ordinal>`,
//! created and removed in order, rolled one at a time from the highest
//! ordinal down, with one PersistentVolumeClaim per claim template and
//! ordinal.
//!
//! Follows kube's `pkg/controller/statefulset` (`defaultStatefulSetControl`):
//! - revisions: every distinct template is a ControllerRevision
//!   `<sts>-<hash>` (data = strategic merge patch of `spec.template`, which is
//!   what `kubectl rollout undo` applies); a template coming back reuses its
//!   revision with the next revision number. See [`sync_revisions`], shared
//!   with the DaemonSet controller.
//! - podManagementPolicy `OrderedReady`: pod i+1 is created only once pods
//!   0..=i are Running and Ready, scale-down removes the highest ordinal first
//!   and waits for it to be gone; `Parallel` creates and deletes all at once.
//! - pods get hostname `<sts>-<i>`, subdomain `spec.serviceName` and the labels
//!   `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index`,
//!   `controller-revision-hash`; claims `<template>-<sts>-<i>` are created
//!   before the pod (binding them is the PV controller's job).
//! - updateStrategy `RollingUpdate` (ordinals below `partition` keep the
//!   current revision) and `OnDelete`.
//! - status: replicas, readyReplicas, availableReplicas, currentReplicas,
//!   updatedReplicas, currentRevision, updateRevision, observedGeneration,
//!   collisionCount (what `kubectl rollout status sts/x` reads).
//!
//! Owns pods it creates, their claims and the StatefulSet's revisions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

use crate::events::EventType;
use crate::reconcile::Ctx;
use crate::util::{
    controller_owner_ref, controller_ref, is_conflict, is_controlled_by, is_namespace_terminating,
    is_not_found, is_pod_available, is_pod_ready, pod_phase, revision_hash, revision_name,
    selector_matches, template_from_revision_data, template_revision_data,
};

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// Label on ControllerRevisions with their hash (kube 1.27+).
pub const REVISION_HASH_LABEL: &str = "controller.kubernetes.io/hash";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("object has no namespace, name or uid; it cannot be reconciled")]
    MissingMeta,
    #[error(
        "ControllerRevision {0} exists with different data (hash collision); bumped collisionCount, will retry"
    )]
    HashCollision(String),
    #[error("talking to the API server failed: {0}")]
    Kube(#[from] kube::Error),
}

/// Runs the StatefulSet controller until the task is dropped.
pub async fn run(client: Client) -> anyhow::Result<()> {
    let ctx = Ctx::new(&client, "statefulset-controller");
    let controller = Controller::new(
        Api::<StatefulSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let store = controller.store();
    controller
        .watches(
            Api::<Pod>::all(client),
            watcher::Config::default(),
            move |pod: Pod| {
                crate::util::pod_owner_refs(&pod, &store.state(), |s: &StatefulSet| {
                    s.spec.as_ref().map(|s| &s.selector)
                })
            },
        )
        .run(reconcile, error_policy, ctx)
        .for_each(|res| crate::reconcile::log_result("statefulset", res))
        .await;
    Ok(())
}

fn error_policy(_s: Arc<StatefulSet>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    match err {
        // A new name to try: at once.
        Error::HashCollision(_) => Action::requeue(Duration::from_millis(100)),
        Error::Kube(e) => {
            Action::requeue(crate::reconcile::error_requeue("statefulset", Some(e), err))
        }
        _ => Action::requeue(crate::reconcile::error_requeue("statefulset", None, err)),
    }
}

// ---------------------------------------------------------------------------
// Pure logic
// ---------------------------------------------------------------------------

/// The ordinal of a pod named `<parent>-<n>`, None for any other name.
pub fn parse_ordinal(parent: &str, pod_name: &str) -> Option<i32> {
    let rest = pod_name.strip_prefix(parent)?.strip_prefix('-')?;
    if rest.is_empty() || (rest.len() > 1 && rest.starts_with('0')) {
        return None;
    }
    rest.parse::<i32>().ok().filter(|n| *n >= 0)
}

/// The pod name of an ordinal.
pub fn pod_name(sts: &str, ordinal: i32) -> String {
    format!("{sts}-{ordinal}")
}

/// The claim name for a claim template and ordinal: `<template>-<sts>-<i>`.
pub fn claim_name(template: &str, sts: &str, ordinal: i32) -> String {
    format!("{template}-{sts}-{ordinal}")
}

fn is_terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

fn is_created(p: &Pod) -> bool {
    !pod_phase(p).is_empty()
}

fn is_finished(p: &Pod) -> bool {
    matches!(pod_phase(p), "Failed" | "Succeeded")
}

/// Running, Ready and (with minReadySeconds) available: may the next ordinal start?
pub fn is_healthy(p: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    pod_phase(p) == "Running" && !is_terminating(p) && is_pod_available(p, min_ready_seconds, now)
}

fn pod_revision(p: &Pod) -> &str {
    p.labels()
        .get(REVISION_LABEL)
        .map(String::as_str)
        .unwrap_or("")
}

/// The pod a StatefulSet runs at `ordinal` from `template` at `revision`.
pub fn new_pod(
    sts: &StatefulSet,
    template: &PodTemplateSpec,
    revision: &str,
    ordinal: i32,
) -> Option<Pod> {
    let name = sts.metadata.name.as_deref()?;
    let spec = sts.spec.as_ref()?;
    let pname = pod_name(name, ordinal);
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), pname.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_LABEL.into(), revision.to_string());
    let mut pspec = template.spec.clone().unwrap_or_default();
    pspec.hostname = Some(pname.clone());
    if let Some(svc) = spec.service_name.as_ref().filter(|s| !s.is_empty()) {
        pspec.subdomain = Some(svc.clone());
    }
    // Claim templates replace same-named volumes of the template.
    let claims = spec.volume_claim_templates.as_deref().unwrap_or(&[]);
    if !claims.is_empty() {
        let mut vols: Vec<Volume> = pspec.volumes.take().unwrap_or_default();
        for c in claims {
            let cname = c.metadata.name.clone().unwrap_or_default();
            vols.retain(|v| v.name != cname);
            vols.push(Volume {
                name: cname.clone(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim_name(&cname, name, ordinal),
                    read_only: None,
                }),
                ..Default::default()
            });
        }
        pspec.volumes = Some(vols);
    }
    Some(Pod {
        metadata: ObjectMeta {
            name: Some(pname),
            namespace: sts.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![controller_owner_ref(sts)?]),
            ..Default::default()
        },
        spec: Some(pspec),
        status: None,
    })
}

/// The claims a pod at `ordinal` needs (kube's `getPersistentVolumeClaims`):
/// the templates named per ordinal, labelled with the selector's matchLabels;
/// owned by the StatefulSet when `whenDeleted: Delete`.
pub fn claims_for(sts: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let Some(spec) = sts.spec.as_ref() else {
        return vec![];
    };
    let name = sts.metadata.name.clone().unwrap_or_default();
    let delete_with_set = spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .and_then(|p| p.when_deleted.as_deref())
        == Some("Delete");
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|t| {
            let tname = t.metadata.name.clone().unwrap_or_default();
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            for (k, v) in spec.selector.match_labels.iter().flatten() {
                labels.insert(k.clone(), v.clone());
            }
            let owners = if delete_with_set {
                controller_owner_ref(sts).map(|mut o| {
                    o.controller = None;
                    vec![o]
                })
            } else {
                None
            };
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(&tname, &name, ordinal)),
                    namespace: sts.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: t.metadata.annotations.clone(),
                    owner_references: owners,
                    ..Default::default()
                },
                spec: t.spec.clone(),
                status: None,
            }
        })
        .collect()
}

/// Which revision a newly created pod at `ordinal` gets (kube's
/// `newVersionedStatefulSetPod`): with RollingUpdate, ordinals below the
/// partition keep the current revision; otherwise the update revision.
pub fn ordinal_uses_current(sts: &StatefulSet, ordinal: i32) -> bool {
    let Some(spec) = sts.spec.as_ref() else {
        return false;
    };
    let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
    let Some(us) = spec.update_strategy.as_ref() else {
        return false;
    };
    if us.type_.as_deref().unwrap_or("RollingUpdate") != "RollingUpdate" {
        return false;
    }
    match us.rolling_update.as_ref() {
        Some(ru) => ordinal < start + ru.partition.unwrap_or(0),
        None => {
            ordinal
                < start
                    + sts
                        .status
                        .as_ref()
                        .and_then(|s| s.current_replicas)
                        .unwrap_or(0)
        }
    }
}

/// Status from the owned pods (kube's `computeReplicaStatus` plus
/// `completeRollingUpdate`).
pub fn compute_status(
    sts: &StatefulSet,
    pods: &[&Pod],
    current_revision: &str,
    update_revision: &str,
    collision_count: i32,
    now: Timestamp,
) -> StatefulSetStatus {
    let spec = sts.spec.as_ref();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let mut st = StatefulSetStatus {
        observed_generation: sts.metadata.generation,
        collision_count: Some(collision_count),
        current_revision: Some(current_revision.to_string()),
        update_revision: Some(update_revision.to_string()),
        conditions: sts.status.as_ref().and_then(|s| s.conditions.clone()),
        ..Default::default()
    };
    let (mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0);
    for p in pods {
        if is_created(p) {
            st.replicas += 1;
        }
        if pod_phase(p) == "Running" && is_pod_ready(p) && !is_terminating(p) {
            ready += 1;
            if is_pod_available(p, min_ready, now) {
                available += 1;
            }
        }
        if is_created(p) && !is_terminating(p) {
            let rev = pod_revision(p);
            if rev == current_revision {
                current += 1;
            }
            if rev == update_revision {
                updated += 1;
            }
        }
    }
    st.ready_replicas = Some(ready);
    st.available_replicas = Some(available);
    st.current_replicas = Some(current);
    st.updated_replicas = Some(updated);
    let rolling = spec
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    if rolling && updated == st.replicas && ready == st.replicas {
        st.current_revision = Some(update_revision.to_string());
        st.current_replicas = Some(updated);
    }
    st
}

/// Revisions to delete for `revisionHistoryLimit`: not live (current, update
/// or used by a pod), oldest revision first.
pub fn history_to_delete(
    revisions: &[ControllerRevision],
    live: &[&str],
    limit: i32,
) -> Vec<String> {
    let mut old: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| !live.contains(&r.name_any().as_str()))
        .collect();
    let excess = old.len() as i64 - i64::from(limit.max(0));
    if excess <= 0 {
        return vec![];
    }
    old.sort_by_key(|r| r.revision);
    old.into_iter()
        .take(excess as usize)
        .map(|r| r.name_any())
        .collect()
}

// ---------------------------------------------------------------------------
// Revisions (shared with the DaemonSet controller)
// ---------------------------------------------------------------------------

/// What [`sync_revisions`] found or made.
pub(crate) struct Revisions {
    /// Every revision the owner controls, the update revision included.
    pub all: Vec<ControllerRevision>,
    /// The revision of the owner's current template.
    pub update: ControllerRevision,
    /// The owner's collisionCount (bumped on a hash collision).
    pub collision_count: i32,
}

/// Finds or creates the ControllerRevision of `template` for `owner` (kube's
/// `history` package): an existing revision with equal data is reused (and
/// gets the next revision number if it is not the newest: a rollback);
/// otherwise a new one `<owner>-<hash>` is created. On a name collision with
/// different data the owner's `status.collisionCount` is bumped through
/// `bump_collision` and an error returned so the caller retries.
pub(crate) async fn sync_revisions<K>(
    client: &Client,
    owner: &K,
    template: &PodTemplateSpec,
    collision_count: i32,
) -> Result<Revisions, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let meta = owner.meta();
    let (Some(ns), Some(name), Some(uid)) = (
        meta.namespace.as_deref(),
        meta.name.as_deref(),
        meta.uid.as_deref(),
    ) else {
        return Err(Error::MissingMeta);
    };
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
    let mut all: Vec<ControllerRevision> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|r| is_controlled_by(&r.metadata, uid))
        .collect();
    all.sort_by_key(|r| r.revision);
    let data = template_revision_data(template);
    let max_rev = all.iter().map(|r| r.revision).max().unwrap_or(0);
    let equal = all
        .iter()
        .filter(|r| r.data.as_ref().map(|d| &d.0) == Some(&data))
        .max_by_key(|r| r.revision)
        .cloned();
    if let Some(mut rev) = equal {
        if rev.revision < max_rev {
            let patch = serde_json::json!({ "revision": max_rev + 1 });
            rev = api
                .patch(
                    &rev.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
            if let Some(slot) = all.iter_mut().find(|r| r.name_any() == rev.name_any()) {
                *slot = rev.clone();
            }
        }
        return Ok(Revisions {
            all,
            update: rev,
            collision_count,
        });
    }
    let hash = revision_hash(&data, Some(collision_count));
    let rname = revision_name(name, &hash);
    let mut labels: BTreeMap<String, String> = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.into(), hash.clone());
    let rev = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(rname.clone()),
            namespace: Some(ns.to_string()),
            labels: Some(labels),
            owner_references: controller_owner_ref(owner).map(|o| vec![o]),
            ..Default::default()
        },
        data: Some(RawExtension(data.clone())),
        revision: max_rev + 1,
    };
    match api.create(&PostParams::default(), &rev).await {
        Ok(created) => {
            all.push(created.clone());
            Ok(Revisions {
                all,
                update: created,
                collision_count,
            })
        }
        Err(e) if is_conflict(&e) => {
            let existing = api.get(&rname).await?;
            if is_controlled_by(&existing.metadata, uid)
                && existing.data.as_ref().map(|d| &d.0) == Some(&data)
            {
                all.push(existing.clone());
                return Ok(Revisions {
                    all,
                    update: existing,
                    collision_count,
                });
            }
            // Same name, other content: bump collisionCount so the next hash differs.
            let owner_api: Api<K> = Api::namespaced(client.clone(), ns);
            let patch = serde_json::json!({ "status": { "collisionCount": collision_count + 1 } });
            owner_api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            Err(Error::HashCollision(rname))
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes the revisions [`history_to_delete`] names.
pub(crate) async fn truncate_history(
    client: &Client,
    ns: &str,
    revisions: &[ControllerRevision],
    live: &[&str],
    limit: i32,
) {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
    for name in history_to_delete(revisions, live, limit) {
        if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
            if !is_not_found(&e) {
                tracing::debug!(revision = %name, error = %e, "could not delete old revision");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Reconcile
// ---------------------------------------------------------------------------

async fn reconcile(sts: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some((ns, name, uid)) = crate::reconcile::ns_name_uid(&sts.metadata) else {
        return Err(Error::MissingMeta);
    };
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(sts) = crate::reconcile::get_current(&sts_api, &name, &uid).await? else {
        return Ok(Action::await_change());
    };
    if sts.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(spec) = sts.spec.clone() else {
        return Ok(Action::await_change());
    };
    let collision = sts
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    let revs = sync_revisions(&ctx.client, &sts, &spec.template, collision).await?;
    let update_name = revs.update.name_any();
    let current = sts
        .status
        .as_ref()
        .and_then(|s| s.current_revision.as_deref())
        .and_then(|c| revs.all.iter().find(|r| r.name_any() == c))
        .unwrap_or(&revs.update)
        .clone();
    let current_name = current.name_any();
    let current_template = current
        .data
        .as_ref()
        .and_then(|d| template_from_revision_data(&d.0))
        .unwrap_or_else(|| spec.template.clone());

    // Claim pods: ours that still match; adopt matching orphans with our naming.
    let all_pods = pods_api.list(&ListParams::default()).await?.items;
    let mut owned: Vec<Pod> = Vec::new();
    for pod in all_pods {
        let matches = selector_matches(&spec.selector, pod.labels());
        if is_controlled_by(&pod.metadata, &uid) {
            if matches {
                owned.push(pod);
            }
        } else if controller_ref(&pod.metadata).is_none()
            && matches
            && parse_ordinal(&name, &pod.name_any()).is_some()
            && pod.metadata.deletion_timestamp.is_none()
        {
            let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
            refs.extend(controller_owner_ref(&sts));
            let patch =
                serde_json::json!({"metadata": {"ownerReferences": refs, "uid": pod.metadata.uid}});
            if let Ok(p) = pods_api
                .patch(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                owned.push(p);
            }
        }
    }

    let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let monotonic = spec.pod_management_policy.as_deref() != Some("Parallel");
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let now = Timestamp::now();
    let mut slots: Vec<Option<&Pod>> = vec![None; replicas as usize];
    let mut condemned: Vec<(i32, &Pod)> = Vec::new();
    for p in &owned {
        match parse_ordinal(&name, &p.name_any()) {
            Some(o) if o >= start && o < start + replicas => slots[(o - start) as usize] = Some(p),
            Some(o) => condemned.push((o, p)),
            None => condemned.push((i32::MAX, p)),
        }
    }
    condemned.sort_by_key(|c| std::cmp::Reverse(c.0));

    let mut blocked = false;
    // 1. Create missing pods, replace finished ones, in ordinal order.
    for (i, slot) in slots.iter().enumerate() {
        let ordinal = start + i as i32;
        let pname = pod_name(&name, ordinal);
        let mut missing = slot.is_none();
        if let Some(p) = slot {
            if is_finished(p) && !is_terminating(p) {
                delete_pod(&ctx, &pods_api, &sts, &pname).await?;
                missing = true;
            }
        }
        if missing {
            create_claims(&ctx, &sts, ordinal, &pname).await?;
            let (template, rev) = if ordinal_uses_current(&sts, ordinal) {
                (&current_template, current_name.as_str())
            } else {
                (&spec.template, update_name.as_str())
            };
            if let Some(pod) = new_pod(&sts, template, rev, ordinal) {
                match pods_api.create(&PostParams::default(), &pod).await {
                    Ok(_) => {
                        ctx.recorder
                            .publish(
                                &sts,
                                EventType::Normal,
                                "SuccessfulCreate",
                                &format!("create Pod {pname} in StatefulSet {name} successful"),
                            )
                            .await
                    }
                    // The old pod is still terminating: its deletion event wakes us.
                    Err(e) if is_conflict(&e) => {}
                    Err(e) if is_namespace_terminating(&e) => return Ok(Action::await_change()),
                    Err(e) => {
                        ctx.recorder
                            .publish(
                                &sts,
                                EventType::Warning,
                                "FailedCreate",
                                &format!(
                                    "create Pod {pname} in StatefulSet {name} failed error: {e}"
                                ),
                            )
                            .await;
                        return Err(e.into());
                    }
                }
            }
            if monotonic {
                blocked = true;
                break;
            }
            continue;
        }
        let Some(p) = slot else { continue };
        if !spec
            .volume_claim_templates
            .as_deref()
            .unwrap_or(&[])
            .is_empty()
        {
            create_claims(&ctx, &sts, ordinal, &pname).await?;
        }
        if monotonic && (is_terminating(p) || !is_healthy(p, min_ready, now)) {
            blocked = true;
            break;
        }
    }

    // 2. Remove condemned pods, highest ordinal first.
    if !blocked {
        let unhealthy_replica = slots
            .iter()
            .any(|s| s.is_none_or(|p| !is_healthy(p, min_ready, now)));
        // kube's firstUnhealthyPod: only the lowest unhealthy pod may go while others are unhealthy.
        let first_unhealthy = condemned
            .iter()
            .filter(|(_, p)| !is_healthy(p, min_ready, now))
            .map(|(o, _)| *o)
            .min();
        for (ordinal, p) in &condemned {
            if is_terminating(p) {
                if monotonic {
                    blocked = true;
                    break;
                }
                continue;
            }
            if monotonic
                && (unhealthy_replica
                    || (!is_healthy(p, min_ready, now) && Some(*ordinal) != first_unhealthy))
            {
                blocked = true;
                break;
            }
            if let Some(o) = parse_ordinal(&name, &p.name_any()) {
                retain_claims_on_scale_down(&ctx, &sts, p, o).await;
            }
            delete_pod(&ctx, &pods_api, &sts, &p.name_any()).await?;
            if monotonic {
                blocked = true;
                break;
            }
        }
        if !monotonic && !condemned.is_empty() {
            blocked = true;
        }
    }

    // 3. Rolling update: highest ordinal first, one at a time, down to the partition.
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    if !blocked && rolling {
        let partition = spec
            .update_strategy
            .as_ref()
            .and_then(|u| u.rolling_update.as_ref())
            .and_then(|r| r.partition)
            .unwrap_or(0)
            .max(0);
        let min_index = partition.min(replicas);
        for i in (min_index..replicas).rev() {
            let Some(p) = slots[i as usize] else { break };
            if pod_revision(p) != update_name && !is_terminating(p) {
                delete_pod(&ctx, &pods_api, &sts, &p.name_any()).await?;
                break;
            }
            if !is_healthy(p, min_ready, now) {
                break;
            }
        }
    }

    // 4. Status and history.
    let pods: Vec<&Pod> = owned.iter().collect();
    let status = compute_status(
        &sts,
        &pods,
        &current_name,
        &update_name,
        revs.collision_count,
        now,
    );
    if sts.status.as_ref() != Some(&status)
        && !crate::reconcile::merge_status(&sts_api, &name, serde_json::json!(status)).await?
    {
        return Ok(Action::await_change());
    }
    let mut live: Vec<&str> = vec![current_name.as_str(), update_name.as_str()];
    live.extend(owned.iter().map(pod_revision));
    let final_current = status.current_revision.clone().unwrap_or_default();
    live.push(&final_current);
    truncate_history(
        &ctx.client,
        &ns,
        &revs.all,
        &live,
        spec.revision_history_limit.unwrap_or(10),
    )
    .await;

    // Ready pods waiting out minReadySeconds need a wake-up.
    if let Some(wait) = crate::reconcile::next_available_in(owned.iter(), min_ready, now) {
        return Ok(Action::requeue(wait));
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

async fn delete_pod(
    ctx: &Ctx,
    api: &Api<Pod>,
    sts: &StatefulSet,
    pname: &str,
) -> Result<(), Error> {
    match api.delete(pname, &DeleteParams::default()).await {
        Ok(_) => {
            ctx.recorder
                .publish(
                    sts,
                    EventType::Normal,
                    "SuccessfulDelete",
                    &format!(
                        "delete Pod {pname} in StatefulSet {} successful",
                        sts.name_any()
                    ),
                )
                .await;
            Ok(())
        }
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Creates the claims of `ordinal` that do not exist yet.
async fn create_claims(
    ctx: &Ctx,
    sts: &StatefulSet,
    ordinal: i32,
    pname: &str,
) -> Result<(), Error> {
    let Some(ns) = sts.metadata.namespace.as_deref() else {
        return Ok(());
    };
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    for claim in claims_for(sts, ordinal) {
        let cname = claim.name_any();
        match api.get_opt(&cname).await? {
            Some(_) => continue,
            None => match api.create(&PostParams::default(), &claim).await {
                Ok(_) => {
                    ctx.recorder
                        .publish(
                            sts,
                            EventType::Normal,
                            "SuccessfulCreate",
                            &format!(
                                "create Claim {cname} Pod {pname} in StatefulSet {} success",
                                sts.name_any()
                            ),
                        )
                        .await
                }
                Err(e) if is_conflict(&e) => {}
                Err(e) => {
                    ctx.recorder
                        .publish(
                            sts,
                            EventType::Warning,
                            "FailedCreate",
                            &format!(
                                "create Claim {cname} for Pod {pname} in StatefulSet {} failed error: {e}",
                                sts.name_any()
                            ),
                        )
                        .await;
                    return Err(e.into());
                }
            },
        }
    }
    Ok(())
}

/// `whenScaled: Delete`: the claims of a pod removed by a scale-down get the
/// pod as owner, so the garbage collector deletes them after it.
async fn retain_claims_on_scale_down(ctx: &Ctx, sts: &StatefulSet, pod: &Pod, ordinal: i32) {
    let when_scaled = sts
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref())
        .and_then(|p| p.when_scaled.as_deref());
    if when_scaled != Some("Delete") {
        return;
    }
    let (Some(ns), Some(puid)) = (sts.metadata.namespace.as_deref(), pod.metadata.uid.clone())
    else {
        return;
    };
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    for claim in claims_for(sts, ordinal) {
        let cname = claim.name_any();
        let Ok(Some(existing)) = api.get_opt(&cname).await else {
            continue;
        };
        let mut refs = existing
            .metadata
            .owner_references
            .clone()
            .unwrap_or_default();
        if refs.iter().any(|r| r.uid == puid) {
            continue;
        }
        refs.push(OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: pod.name_any(),
            uid: puid.clone(),
            controller: None,
            block_owner_deletion: None,
        });
        let patch = serde_json::json!({"metadata": {"ownerReferences": refs}});
        if let Err(e) = api
            .patch(&cname, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::debug!(claim = %cname, error = %e, "could not hand the claim to its pod");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::testutil::{labels, pod, ts};
    use k8s_openapi::api::apps::v1::{
        RollingUpdateStatefulSetStrategy, StatefulSetSpec, StatefulSetUpdateStrategy,
    };
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn sts(partition: Option<i32>) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("sts-uid".into()),
                generation: Some(2),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(3),
                service_name: Some("nginx".into()),
                selector: LabelSelector {
                    match_labels: Some(labels(&[("app", "web")])),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels(&[("app", "web")])),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        volumes: Some(vec![Volume {
                            name: "www".into(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }),
                },
                update_strategy: Some(StatefulSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: partition.map(|p| RollingUpdateStatefulSetStrategy {
                        partition: Some(p),
                        max_unavailable: None,
                    }),
                }),
                volume_claim_templates: Some(vec![PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: Some("www".into()),
                        ..Default::default()
                    },
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn ordinals_parse_only_our_names() {
        assert_eq!(parse_ordinal("web", "web-0"), Some(0));
        assert_eq!(parse_ordinal("web", "web-12"), Some(12));
        assert_eq!(parse_ordinal("web", "web-01"), None);
        assert_eq!(parse_ordinal("web", "web-"), None);
        assert_eq!(parse_ordinal("web", "webx-1"), None);
        assert_eq!(parse_ordinal("web", "web-a"), None);
        assert_eq!(parse_ordinal("web-1", "web-1-2"), Some(2));
        assert_eq!(pod_name("web", 3), "web-3");
        assert_eq!(claim_name("www", "web", 1), "www-web-1");
    }

    #[test]
    fn pod_has_identity_labels_and_claim_volume() {
        let s = sts(None);
        let p = new_pod(&s, &s.spec.as_ref().unwrap().template, "web-abc", 1).expect("pod");
        assert_eq!(p.metadata.name.as_deref(), Some("web-1"));
        let l = p.labels();
        assert_eq!(l[POD_NAME_LABEL], "web-1");
        assert_eq!(l[POD_INDEX_LABEL], "1");
        assert_eq!(l[REVISION_LABEL], "web-abc");
        assert_eq!(l["app"], "web");
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-1"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let vols = spec.volumes.as_ref().unwrap();
        assert_eq!(
            vols.len(),
            1,
            "the template volume is replaced by the claim"
        );
        assert_eq!(
            vols[0].persistent_volume_claim.as_ref().unwrap().claim_name,
            "www-web-1"
        );
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("StatefulSet", Some(true))
        );
    }

    #[test]
    fn claims_carry_selector_labels_and_retention_owner() {
        let mut s = sts(None);
        let c = claims_for(&s, 2);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].metadata.name.as_deref(), Some("www-web-2"));
        assert_eq!(c[0].labels()["app"], "web");
        assert!(c[0].metadata.owner_references.is_none(), "Retain: no owner");
        s.spec
            .as_mut()
            .unwrap()
            .persistent_volume_claim_retention_policy = Some(
            k8s_openapi::api::apps::v1::StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some("Delete".into()),
                when_scaled: Some("Retain".into()),
            },
        );
        let c = claims_for(&s, 2);
        assert_eq!(
            c[0].metadata.owner_references.as_ref().unwrap()[0].uid,
            "sts-uid"
        );
    }

    #[test]
    fn partition_keeps_low_ordinals_on_current_revision() {
        let s = sts(Some(2));
        assert!(ordinal_uses_current(&s, 0));
        assert!(ordinal_uses_current(&s, 1));
        assert!(!ordinal_uses_current(&s, 2));
        let s = sts(None);
        assert!(!ordinal_uses_current(&s, 0));
        let mut s = sts(None);
        s.spec.as_mut().unwrap().update_strategy = Some(StatefulSetUpdateStrategy {
            type_: Some("OnDelete".into()),
            rolling_update: None,
        });
        assert!(!ordinal_uses_current(&s, 0));
    }

    fn rev_pod(name: &str, rev: &str, ready: bool) -> Pod {
        let mut p = pod(name, "Running", ready.then_some(1), Some("n"), 0);
        p.metadata.labels = Some(labels(&[("app", "web"), (REVISION_LABEL, rev)]));
        p
    }

    #[test]
    fn status_counts_revisions_and_completes_rollout() {
        let s = sts(None);
        let a = rev_pod("web-0", "r1", true);
        let b = rev_pod("web-1", "r2", true);
        let mut c = rev_pod("web-2", "r2", false);
        c.status.as_mut().unwrap().phase = None; // not created yet
        let st = compute_status(&s, &[&a, &b, &c], "r1", "r2", 0, ts(100));
        assert_eq!(st.replicas, 2);
        assert_eq!(st.ready_replicas, Some(2));
        assert_eq!(st.current_replicas, Some(1));
        assert_eq!(st.updated_replicas, Some(1));
        assert_eq!(st.current_revision.as_deref(), Some("r1"));
        assert_eq!(st.update_revision.as_deref(), Some("r2"));
        assert_eq!(st.observed_generation, Some(2));
        // All updated and ready: the update revision becomes current.
        let a = rev_pod("web-0", "r2", true);
        let st = compute_status(&s, &[&a, &b], "r1", "r2", 0, ts(100));
        assert_eq!(st.current_revision.as_deref(), Some("r2"));
        assert_eq!(st.current_replicas, Some(2));
    }

    #[test]
    fn healthy_needs_running_ready_and_min_ready() {
        let p = pod("web-0", "Running", Some(100), Some("n"), 0);
        assert!(is_healthy(&p, 0, ts(100)));
        assert!(!is_healthy(&p, 10, ts(105)));
        assert!(!is_healthy(
            &pod("web-0", "Pending", None, None, 0),
            0,
            ts(1)
        ));
    }

    #[test]
    fn history_keeps_live_and_newest() {
        let rev = |n: &str, r: i64| ControllerRevision {
            metadata: ObjectMeta {
                name: Some(n.into()),
                ..Default::default()
            },
            data: None,
            revision: r,
        };
        let revs = vec![rev("a", 1), rev("b", 2), rev("c", 3), rev("d", 4)];
        assert_eq!(history_to_delete(&revs, &["d"], 1), vec!["a", "b"]);
        assert_eq!(history_to_delete(&revs, &["a", "d"], 1), vec!["b"]);
        assert!(history_to_delete(&revs, &["d"], 10).is_empty());
    }
}
