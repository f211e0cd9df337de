//! ReplicaSet and ReplicationController controller: keeps `spec.replicas`
//! active pods for every ReplicaSet (apps/v1) and ReplicationController
//! (core/v1), adopts orphan pods that match its selector, releases pods that
//! stopped matching, and writes `status` (replicas, fullyLabeledReplicas,
//! readyReplicas, availableReplicas, observedGeneration).
//!
//! One code path for both kinds: they differ only in data (the selector is a
//! `LabelSelector` on a ReplicaSet and a plain label map on an RC), which the
//! [`Replicated`] trait gives the generic loop.
//!
//! Level-triggered: every reconcile re-lists the namespace's pods from the
//! API (read-after-write consistent, so no "expectations" bookkeeping is
//! needed), computes the difference and makes one step. Owns nothing but
//! pods it creates; it never touches Deployments.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::events::{EventType, Recorder};
use crate::util::{
    controller_owner_ref, controller_ref, is_controlled_by, is_namespace_terminating, is_not_found,
    is_pod_active, is_pod_available, is_pod_ready, map_selector_matches, pod_phase,
    pod_ready_since, selector_matches, time_secs,
};

/// Most pods created in one reconcile (kube's `burstReplicas`).
const BURST_REPLICAS: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} has no namespace, name or uid; it cannot be reconciled")]
    MissingMeta(String),
    #[error("talking to the API server failed: {0}")]
    Kube(#[from] kube::Error),
}

/// What the controller needs of a replicated kind (ReplicaSet, ReplicationController).
pub trait Replicated:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// The Event source (`replicaset-controller`).
    const COMPONENT: &'static str;
    /// Whether the object has a spec at all.
    fn has_spec(&self) -> bool;
    /// Whether its selector selects pods with these labels.
    fn selects(&self, labels: &BTreeMap<String, String>) -> bool;
    /// `spec.replicas` (defaulted to 1).
    fn desired(&self) -> i32;
    fn min_ready_seconds(&self) -> i32;
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// The current `status` as JSON (`null` when unset).
    fn status_json(&self) -> Value;
}

impl Replicated for ReplicaSet {
    const COMPONENT: &'static str = "replicaset-controller";
    fn has_spec(&self) -> bool {
        self.spec.is_some()
    }
    fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.spec
            .as_ref()
            .is_some_and(|s| selector_matches(&s.selector, labels))
    }
    fn desired(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn status_json(&self) -> Value {
        serde_json::to_value(&self.status).unwrap_or(Value::Null)
    }
}

impl Replicated for ReplicationController {
    const COMPONENT: &'static str = "replication-controller";
    fn has_spec(&self) -> bool {
        self.spec.is_some()
    }
    /// An RC's selector is a plain label map, defaulted to the template's
    /// labels; an empty one selects nothing (the apiserver refuses it).
    fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        let Some(spec) = self.spec.as_ref() else {
            return false;
        };
        let sel = spec
            .selector
            .as_ref()
            .filter(|s| !s.is_empty())
            .or_else(|| {
                spec.template
                    .as_ref()
                    .and_then(|t| t.metadata.as_ref())
                    .and_then(|m| m.labels.as_ref())
            });
        sel.is_some_and(|s| !s.is_empty() && map_selector_matches(s, labels))
    }
    fn desired(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn status_json(&self) -> Value {
        serde_json::to_value(&self.status).unwrap_or(Value::Null)
    }
}

/// The status fields this controller owns (the same on both kinds).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    pub replicas: i32,
    pub fully_labeled_replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl ReplicaStatus {
    /// Whether `current` (a `status` JSON) already holds these values;
    /// fields this controller does not own (conditions) are ignored.
    pub fn is_current(&self, current: &Value) -> bool {
        let Ok(Value::Object(mine)) = serde_json::to_value(self) else {
            return false;
        };
        mine.iter().all(|(k, v)| {
            // A zero count may be omitted by a writer; treat absent as 0.
            match current.get(k) {
                Some(have) if !have.is_null() => have == v,
                _ => v.is_null() || v.as_i64() == Some(0),
            }
        })
    }
}

/// The API's message of a failed call (`pods "x" is forbidden: exceeded quota: ...`).
fn error_message(e: &Error) -> String {
    match e {
        Error::Kube(kube::Error::Api(ae)) => ae.message.clone(),
        other => other.to_string(),
    }
}

/// kube's `ReplicaFailure` condition: added (reason `FailedCreate` or
/// `FailedDelete`, the API's message) when managing pods failed, removed once
/// it works again. The new `status.conditions` (`null` for none left), or
/// `None` when they stay as they are.
pub fn replica_failure_conditions(
    current: &Value,
    failure: Option<(&str, &str)>,
    now: &str,
) -> Option<Value> {
    let list: Vec<Value> = current.as_array().cloned().unwrap_or_default();
    let is_failure = |c: &Value| c.get("type").and_then(Value::as_str) == Some("ReplicaFailure");
    let has = list.iter().any(is_failure);
    match (failure, has) {
        (Some((reason, message)), false) => {
            let mut list = list;
            list.push(serde_json::json!({
                "type": "ReplicaFailure",
                "status": "True",
                "reason": reason,
                "message": message,
                "lastTransitionTime": now,
            }));
            Some(Value::Array(list))
        }
        (None, true) => {
            let rest: Vec<Value> = list.into_iter().filter(|c| !is_failure(c)).collect();
            Some(if rest.is_empty() {
                Value::Null
            } else {
                Value::Array(rest)
            })
        }
        _ => None,
    }
}

struct Ctx {
    client: Client,
    recorder: Recorder,
}

/// Runs the ReplicaSet and ReplicationController controllers until the task is dropped.
pub async fn run(client: Client) -> anyhow::Result<()> {
    tokio::try_join!(
        run_kind::<ReplicaSet>(client.clone()),
        run_kind::<ReplicationController>(client),
    )?;
    Ok(())
}

/// The controller loop for one replicated kind.
async fn run_kind<K: Replicated>(client: Client) -> anyhow::Result<()> {
    let api: Api<K> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let controller = Controller::new(api, watcher::Config::default());
    let store = controller.store();
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), K::COMPONENT),
        client,
    });
    let kind = K::kind(&()).into_owned();
    controller
        .watches(pods, watcher::Config::default(), move |pod: Pod| {
            let ns = pod.namespace().unwrap_or_default();
            if let Some(owner) = controller_ref(&pod.metadata) {
                if owner.kind == kind {
                    return vec![ObjectRef::new(&owner.name).within(&ns)];
                }
                return vec![];
            }
            // An orphan: wake every owner in its namespace that would adopt it.
            store
                .state()
                .iter()
                .filter(|o| o.namespace().as_deref() == Some(ns.as_str()))
                .filter(|o| o.selects(pod.labels()))
                .map(|o| ObjectRef::from_obj(o.as_ref()))
                .collect()
        })
        .run(reconcile::<K>, error_policy::<K>, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(kind = %K::kind(&()), error = %e, "replica reconcile");
            }
        })
        .await;
    Ok(())
}

fn error_policy<K: Replicated>(_obj: Arc<K>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    let kind = K::kind(&());
    if matches!(err, Error::Kube(e) if crate::util::is_namespace_terminating(e)) {
        tracing::debug!(%kind, error = %err, "owner in a terminating namespace");
        return Action::requeue(Duration::from_secs(5));
    }
    if matches!(err, Error::Kube(e) if crate::util::is_conflict(e)) {
        // Someone else wrote the object meanwhile: just look again.
        tracing::debug!(%kind, error = %err, "write conflict; retrying");
        return Action::requeue(Duration::from_millis(300));
    }
    tracing::warn!(%kind, error = %err, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile<K: Replicated>(obj: Arc<K>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let meta = obj.meta();
    let (Some(ns), Some(name), Some(uid)) =
        (meta.namespace.clone(), meta.name.clone(), meta.uid.clone())
    else {
        return Err(Error::MissingMeta(K::kind(&()).into_owned()));
    };
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    // Re-read the owner: the cached copy may be older than our last write.
    let obj = match api.get(&name).await {
        Ok(o) => o,
        Err(e) if is_not_found(&e) => return Ok(Action::await_change()),
        Err(e) => return Err(e.into()),
    };
    if obj.meta().uid.as_deref() != Some(uid.as_str()) || !obj.has_spec() {
        return Ok(Action::await_change());
    }
    let all_pods = pods_api.list(&ListParams::default()).await?.items;
    let deleting = obj.meta().deletion_timestamp.is_some();

    // Claim pods: ours that still match, adopt matching orphans, release the rest.
    let mut owned: Vec<Pod> = Vec::new();
    for pod in all_pods {
        let matches = obj.selects(pod.labels());
        if is_controlled_by(&pod.metadata, &uid) {
            if matches {
                owned.push(pod);
            } else if !deleting {
                release(&pods_api, &pod, &uid).await;
            }
        } else if controller_ref(&pod.metadata).is_none()
            && matches
            && !deleting
            && is_pod_active(&pod)
        {
            if let Some(adopted) = adopt(&pods_api, &pod, &obj).await {
                owned.push(adopted);
            }
        }
    }

    let active: Vec<&Pod> = owned.iter().filter(|p| is_pod_active(p)).collect();
    let want = obj.desired().max(0) as usize;
    // Why creating or deleting pods failed: shown as the ReplicaFailure condition.
    let mut manage_err: Option<(&str, Error)> = None;
    if !deleting {
        if active.len() < want {
            let n = (want - active.len()).min(BURST_REPLICAS);
            if let Err(e) = create_pods(&ctx, &pods_api, &obj, n).await {
                manage_err = Some(("FailedCreate", e));
            }
        } else if active.len() > want {
            let victims = pods_to_delete(&active, active.len() - want);
            for pod in victims {
                let pname = pod.name_any();
                match pods_api.delete(&pname, &DeleteParams::default()).await {
                    Ok(_) => {
                        ctx.recorder
                            .publish(
                                &obj,
                                EventType::Normal,
                                "SuccessfulDelete",
                                &format!("Deleted pod: {pname}"),
                            )
                            .await
                    }
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => {
                        manage_err = Some(("FailedDelete", e.into()));
                        break;
                    }
                }
            }
        }
    }

    let now = Timestamp::now();
    let min_ready = obj.min_ready_seconds();
    let template_labels = obj
        .template()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let status = compute_status(&obj, &active, &template_labels, min_ready, now);
    let current = obj.status_json();
    let failure = manage_err
        .as_ref()
        .map(|(reason, e)| (*reason, error_message(e)));
    let conditions = replica_failure_conditions(
        current.get("conditions").unwrap_or(&Value::Null),
        failure.as_ref().map(|(r, m)| (*r, m.as_str())),
        // metav1.Time: whole seconds
        &Timestamp::from_second(now.as_second())
            .map(|t| t.to_string())
            .unwrap_or_default(),
    );
    if !status.is_current(&current) || conditions.is_some() {
        let mut patch = serde_json::json!({ "status": status });
        if let Some(c) = conditions {
            patch["status"]["conditions"] = c;
        }
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
    }
    if let Some((_, e)) = manage_err {
        return Err(e);
    }
    // Pods that are Ready but not yet available need a wake-up when they become available.
    if min_ready > 0 {
        let waiting = active
            .iter()
            .filter(|p| is_pod_ready(p) && !is_pod_available(p, min_ready, now))
            .filter_map(|p| pod_ready_since(p))
            .map(|since| since.as_second() + i64::from(min_ready) - now.as_second())
            .min();
        if let Some(secs) = waiting {
            return Ok(Action::requeue(Duration::from_secs(
                secs.clamp(1, 3600) as u64
            )));
        }
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Creates `n` pods from the template, in slow-start batches (1, 2, 4, ...)
/// like kube so a failing template does not produce a storm of errors.
async fn create_pods<K: Replicated>(
    ctx: &Ctx,
    api: &Api<Pod>,
    rs: &K,
    n: usize,
) -> Result<(), Error> {
    let Some(template) = pod_from_template(rs) else {
        return Ok(());
    };
    let mut remaining = n;
    let mut batch = 1usize;
    while remaining > 0 {
        let this = batch.min(remaining);
        let pp = PostParams::default();
        let mut futs = Vec::with_capacity(this);
        for _ in 0..this {
            futs.push(api.create(&pp, &template));
        }
        let results = futures::future::join_all(futs).await;
        let mut failed = None;
        for r in results {
            match r {
                Ok(pod) => {
                    ctx.recorder
                        .publish(
                            rs,
                            EventType::Normal,
                            "SuccessfulCreate",
                            &format!("Created pod: {}", pod.name_any()),
                        )
                        .await
                }
                Err(e) if is_namespace_terminating(&e) => {
                    // Creation can only fail now; the namespace controller is removing us.
                    return Ok(());
                }
                Err(e) => {
                    ctx.recorder
                        .publish(
                            rs,
                            EventType::Warning,
                            "FailedCreate",
                            &format!("Error creating: {e}"),
                        )
                        .await;
                    failed = Some(e);
                }
            }
        }
        if let Some(e) = failed {
            return Err(e.into());
        }
        remaining -= this;
        batch *= 2;
    }
    Ok(())
}

/// The pod a ReplicaSet or RC creates: generateName `<name>-`, the
/// template's labels, annotations and spec, and a controller ownerReference.
pub fn pod_from_template<K: Replicated>(rs: &K) -> Option<Pod> {
    let template = rs.template()?.clone();
    let tmeta = template.metadata.unwrap_or_default();
    Some(Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.meta().name.as_deref()?)),
            namespace: rs.meta().namespace.clone(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![controller_owner_ref(rs)?]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    })
}

async fn adopt<K: Replicated>(api: &Api<Pod>, pod: &Pod, rs: &K) -> Option<Pod> {
    let owner = controller_owner_ref(rs)?;
    let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
    refs.push(owner);
    let patch = serde_json::json!({
        "metadata": { "ownerReferences": refs, "uid": pod.metadata.uid }
    });
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::debug!(pod = %pod.name_any(), error = %e, "could not adopt pod");
            None
        }
    }
}

async fn release(api: &Api<Pod>, pod: &Pod, uid: &str) {
    let refs: Vec<_> = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|o| o.uid != uid)
        .cloned()
        .collect();
    let patch = serde_json::json!({ "metadata": { "ownerReferences": refs } });
    if let Err(e) = api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        tracing::debug!(pod = %pod.name_any(), error = %e, "could not release pod");
    }
}

/// Status from the active (non-terminating, non-terminal) pods.
pub fn compute_status<K: Replicated>(
    obj: &K,
    active: &[&Pod],
    template_labels: &BTreeMap<String, String>,
    min_ready_seconds: i32,
    now: Timestamp,
) -> ReplicaStatus {
    let count = |f: &dyn Fn(&Pod) -> bool| active.iter().filter(|p| f(p)).count() as i32;
    ReplicaStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: count(&|p| map_selector_matches(template_labels, p.labels())),
        ready_replicas: count(&is_pod_ready),
        available_replicas: count(&|p| is_pod_available(p, min_ready_seconds, now)),
        observed_generation: obj.meta().generation,
    }
}

/// kube's `controller.ActivePods` ordering: `Less` means "delete first".
/// Unscheduled < scheduled; Pending < Unknown < Running; not ready < ready;
/// ready for a shorter time first; more restarts first; newer first.
pub fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let node = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let phase_rank = |p: &Pod| match pod_phase(p) {
        "Pending" | "" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    };
    let restarts = |p: &Pod| -> i32 {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).sum())
            .unwrap_or(0)
    };
    node(a)
        .cmp(&node(b))
        .then(phase_rank(a).cmp(&phase_rank(b)))
        .then(is_pod_ready(a).cmp(&is_pod_ready(b)))
        .then_with(|| {
            // Both ready: the one ready for less time (later transition) goes first.
            let ra = pod_ready_since(a).map(|t| t.as_second());
            let rb = pod_ready_since(b).map(|t| t.as_second());
            rb.cmp(&ra)
        })
        .then(restarts(b).cmp(&restarts(a)))
        .then_with(|| {
            time_secs(b.metadata.creation_timestamp.as_ref())
                .cmp(&time_secs(a.metadata.creation_timestamp.as_ref()))
        })
}

/// The `n` pods to delete when scaling down, least valuable first.
pub fn pods_to_delete<'a>(active: &[&'a Pod], n: usize) -> Vec<&'a Pod> {
    let mut v: Vec<&Pod> = active.to_vec();
    v.sort_by(|a, b| deletion_order(a, b));
    v.truncate(n);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::testutil::{labels, pod, ts};
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{PodSpec, ReplicationControllerSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    #[test]
    fn scale_down_prefers_unscheduled_then_pending_then_not_ready() {
        let ready_old = pod("ready-old", "Running", Some(10), Some("n"), 1);
        let ready_new = pod("ready-new", "Running", Some(50), Some("n"), 2);
        let not_ready = pod("not-ready", "Running", None, Some("n"), 3);
        let pending = pod("pending", "Pending", None, Some("n"), 4);
        let unscheduled = pod("unscheduled", "Pending", None, None, 5);
        let all = vec![&ready_old, &ready_new, &not_ready, &pending, &unscheduled];
        let names: Vec<String> = pods_to_delete(&all, 5)
            .iter()
            .map(|p| p.name_any())
            .collect();
        assert_eq!(
            names,
            vec![
                "unscheduled",
                "pending",
                "not-ready",
                "ready-new",
                "ready-old"
            ]
        );
        let two: Vec<String> = pods_to_delete(&all, 2)
            .iter()
            .map(|p| p.name_any())
            .collect();
        assert_eq!(two, vec!["unscheduled", "pending"]);
    }

    #[test]
    fn newer_pod_deleted_first_when_otherwise_equal() {
        let old = pod("old", "Pending", None, None, 1);
        let new = pod("new", "Pending", None, None, 9);
        let all = vec![&old, &new];
        assert_eq!(pods_to_delete(&all, 1)[0].name_any(), "new");
    }

    fn rs() -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web-abc".into()),
                namespace: Some("default".into()),
                uid: Some("rs-uid".into()),
                generation: Some(3),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(2),
                selector: LabelSelector {
                    match_labels: Some(labels(&[("app", "web")])),
                    ..Default::default()
                },
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels(&[("app", "web"), ("pod-template-hash", "abc")])),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec::default()),
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn pod_template_gets_generate_name_labels_and_owner() {
        let p = pod_from_template(&rs()).expect("pod");
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-abc-"));
        assert_eq!(p.labels().get("app").map(String::as_str), Some("web"));
        let owner = &p.metadata.owner_references.as_ref().expect("owners")[0];
        assert_eq!(owner.kind, "ReplicaSet");
        assert_eq!(owner.uid, "rs-uid");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
    }

    #[test]
    fn status_counts_ready_and_available() {
        let rs = rs();
        let mut a = pod("a", "Running", Some(100), Some("n"), 1);
        a.metadata.labels = Some(labels(&[("app", "web"), ("pod-template-hash", "abc")]));
        let b = pod("b", "Running", Some(108), Some("n"), 1);
        let c = pod("c", "Pending", None, None, 1);
        let tl = labels(&[("app", "web"), ("pod-template-hash", "abc")]);
        let st = compute_status(&rs, &[&a, &b, &c], &tl, 5, ts(110));
        assert_eq!(st.replicas, 3);
        assert_eq!(st.ready_replicas, 2);
        assert_eq!(st.available_replicas, 1);
        assert_eq!(st.fully_labeled_replicas, 1);
        assert_eq!(st.observed_generation, Some(3));
        // The same status JSON is "current"; conditions are not ours to compare.
        let current = serde_json::json!({"replicas": 3, "fullyLabeledReplicas": 1,
            "readyReplicas": 2, "availableReplicas": 1, "observedGeneration": 3,
            "conditions": [{"type": "ReplicaFailure", "status": "False"}]});
        assert!(st.is_current(&current));
        assert!(!st.is_current(&serde_json::json!({"replicas": 2})));
        assert!(!st.is_current(&Value::Null));
        assert!(ReplicaStatus::default().is_current(&serde_json::json!({"replicas": 0})));
    }

    #[test]
    fn replica_failure_condition_comes_and_goes() {
        let now = "2026-01-01T00:00:00Z";
        let set = replica_failure_conditions(
            &Value::Null,
            Some(("FailedCreate", "exceeded quota: q")),
            now,
        )
        .expect("added");
        assert_eq!(set[0]["type"], "ReplicaFailure");
        assert_eq!(set[0]["status"], "True");
        assert_eq!(set[0]["reason"], "FailedCreate");
        assert_eq!(set[0]["message"], "exceeded quota: q");
        // Failing again changes nothing; succeeding removes it.
        assert_eq!(
            replica_failure_conditions(&set, Some(("FailedCreate", "again")), now),
            None
        );
        assert_eq!(
            replica_failure_conditions(&set, None, now),
            Some(Value::Null)
        );
        assert_eq!(replica_failure_conditions(&Value::Null, None, now), None);
        let other = serde_json::json!([{"type": "Other", "status": "True"}, set[0].clone()]);
        assert_eq!(
            replica_failure_conditions(&other, None, now),
            Some(serde_json::json!([{"type": "Other", "status": "True"}]))
        );
    }

    fn rc(selector: Option<&[(&str, &str)]>) -> ReplicationController {
        ReplicationController {
            metadata: ObjectMeta {
                name: Some("nginx".into()),
                namespace: Some("default".into()),
                uid: Some("rc-uid".into()),
                generation: Some(2),
                ..Default::default()
            },
            spec: Some(ReplicationControllerSpec {
                replicas: Some(3),
                selector: selector.map(labels),
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels(&[("name", "nginx"), ("tier", "web")])),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec::default()),
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn rc_selects_by_its_label_map_or_its_template_labels() {
        let explicit = rc(Some(&[("name", "nginx")]));
        assert!(explicit.selects(&labels(&[("name", "nginx"), ("x", "y")])));
        assert!(!explicit.selects(&labels(&[("name", "other")])));
        assert_eq!(explicit.desired(), 3);
        // No selector: the template's labels select (kube's defaulting).
        let defaulted = rc(None);
        assert!(defaulted.selects(&labels(&[("name", "nginx"), ("tier", "web")])));
        assert!(!defaulted.selects(&labels(&[("name", "nginx")])));
        // Nothing to select with: selects nothing, never every pod.
        let mut empty = rc(Some(&[]));
        empty.spec.as_mut().unwrap().template = None;
        assert!(!empty.selects(&labels(&[("a", "b")])));
        assert!(!empty.selects(&BTreeMap::new()));
    }

    #[test]
    fn rc_pods_are_owned_by_the_rc() {
        let p = pod_from_template(&rc(None)).expect("pod");
        assert_eq!(p.metadata.generate_name.as_deref(), Some("nginx-"));
        let owner = &p.metadata.owner_references.as_ref().expect("owners")[0];
        assert_eq!(owner.kind, "ReplicationController");
        assert_eq!(owner.api_version, "v1");
        assert_eq!(owner.uid, "rc-uid");
        assert_eq!(owner.controller, Some(true));
        let a = pod("a", "Running", Some(100), Some("n"), 1);
        let st = compute_status(&rc(None), &[&a], &BTreeMap::new(), 0, ts(110));
        assert_eq!(
            (st.replicas, st.ready_replicas, st.observed_generation),
            (1, 1, Some(2))
        );
    }
}
