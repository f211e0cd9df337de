//! ReplicaSet controller: keeps `spec.replicas` active pods for every
//! ReplicaSet, adopts orphan pods that match its selector, releases pods that
//! stopped matching, and writes `status` (replicas, fullyLabeledReplicas,
//! readyReplicas, availableReplicas, observedGeneration).
//!
//! Level-triggered: every reconcile re-lists the namespace's pods from the
//! API (read-after-write consistent, so no "expectations" bookkeeping is
//! needed), computes the difference and makes one step. Owns nothing but
//! pods it creates; it never touches Deployments.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

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
    #[error("ReplicaSet has no namespace or name; it cannot be reconciled")]
    MissingMeta,
    #[error("talking to the API server failed: {0}")]
    Kube(#[from] kube::Error),
}

struct Ctx {
    client: Client,
    recorder: Recorder,
}

/// Runs the ReplicaSet controller until the task is dropped.
pub async fn run(client: Client) -> anyhow::Result<()> {
    let rs_api: Api<ReplicaSet> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let controller = Controller::new(rs_api, watcher::Config::default());
    let store = controller.store();
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), "replicaset-controller"),
        client,
    });
    controller
        .watches(pods, watcher::Config::default(), move |pod: Pod| {
            let ns = pod.namespace().unwrap_or_default();
            if let Some(owner) = controller_ref(&pod.metadata) {
                if owner.kind == "ReplicaSet" {
                    return vec![ObjectRef::new(&owner.name).within(&ns)];
                }
                return vec![];
            }
            // An orphan: wake every ReplicaSet in its namespace that would adopt it.
            store
                .state()
                .iter()
                .filter(|rs| rs.namespace().as_deref() == Some(ns.as_str()))
                .filter(|rs| {
                    rs.spec
                        .as_ref()
                        .is_some_and(|s| selector_matches(&s.selector, pod.labels()))
                })
                .map(|rs| ObjectRef::from_obj(rs.as_ref()))
                .collect()
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "replicaset reconcile");
            }
        })
        .await;
    Ok(())
}

fn error_policy(_rs: Arc<ReplicaSet>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    if matches!(err, Error::Kube(e) if crate::util::is_namespace_terminating(e)) {
        tracing::debug!(error = %err, "replicaset in a terminating namespace");
        return Action::requeue(Duration::from_secs(5));
    }
    if matches!(err, Error::Kube(e) if crate::util::is_conflict(e)) {
        // Someone else wrote the object meanwhile: just look again.
        tracing::debug!(error = %err, "replicaset write conflict; retrying");
        return Action::requeue(Duration::from_millis(300));
    }
    tracing::warn!(error = %err, "replicaset reconcile failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let (Some(ns), Some(name), Some(uid)) = (
        rs.metadata.namespace.clone(),
        rs.metadata.name.clone(),
        rs.metadata.uid.clone(),
    ) else {
        return Err(Error::MissingMeta);
    };
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    // Re-read the ReplicaSet: the cached copy may be older than our last write.
    let rs = match rs_api.get(&name).await {
        Ok(rs) => rs,
        Err(e) if is_not_found(&e) => return Ok(Action::await_change()),
        Err(e) => return Err(e.into()),
    };
    if rs.metadata.uid.as_deref() != Some(uid.as_str()) {
        return Ok(Action::await_change());
    }
    let Some(spec) = rs.spec.clone() else {
        return Ok(Action::await_change());
    };
    let all_pods = pods_api.list(&ListParams::default()).await?.items;
    let deleting = rs.metadata.deletion_timestamp.is_some();

    // Claim pods: ours that still match, adopt matching orphans, release the rest.
    let mut owned: Vec<Pod> = Vec::new();
    for pod in all_pods {
        let matches = selector_matches(&spec.selector, pod.labels());
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
            if let Some(adopted) = adopt(&pods_api, &pod, &rs).await {
                owned.push(adopted);
            }
        }
    }

    let active: Vec<&Pod> = owned.iter().filter(|p| is_pod_active(p)).collect();
    let want = spec.replicas.unwrap_or(1).max(0) as usize;
    if !deleting {
        if active.len() < want {
            let n = (want - active.len()).min(BURST_REPLICAS);
            create_pods(&ctx, &pods_api, &rs, n).await?;
        } else if active.len() > want {
            let victims = pods_to_delete(&active, active.len() - want);
            for pod in victims {
                let pname = pod.name_any();
                match pods_api.delete(&pname, &DeleteParams::default()).await {
                    Ok(_) => {
                        ctx.recorder
                            .publish(
                                &rs,
                                EventType::Normal,
                                "SuccessfulDelete",
                                &format!("Deleted pod: {pname}"),
                            )
                            .await
                    }
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }

    let now = Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let status = compute_status(&rs, &active, &template_labels, min_ready, now);
    if rs.status.as_ref() != Some(&status) {
        let patch = serde_json::json!({ "status": status });
        match rs_api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
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
async fn create_pods(ctx: &Ctx, api: &Api<Pod>, rs: &ReplicaSet, n: usize) -> Result<(), Error> {
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

/// The pod a ReplicaSet creates: generateName `<rs>-`, the template's labels,
/// annotations and spec, and a controller ownerReference.
pub fn pod_from_template(rs: &ReplicaSet) -> Option<Pod> {
    let template = rs.spec.as_ref()?.template.clone()?;
    let tmeta = template.metadata.unwrap_or_default();
    Some(Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.metadata.name.as_deref()?)),
            namespace: rs.metadata.namespace.clone(),
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

async fn adopt(api: &Api<Pod>, pod: &Pod, rs: &ReplicaSet) -> Option<Pod> {
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
pub fn compute_status(
    rs: &ReplicaSet,
    active: &[&Pod],
    template_labels: &std::collections::BTreeMap<String, String>,
    min_ready_seconds: i32,
    now: Timestamp,
) -> ReplicaSetStatus {
    let count = |f: &dyn Fn(&Pod) -> bool| active.iter().filter(|p| f(p)).count() as i32;
    ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: Some(count(&|p| {
            map_selector_matches(template_labels, p.labels())
        })),
        ready_replicas: Some(count(&is_pod_ready)),
        available_replicas: Some(count(&|p| is_pod_available(p, min_ready_seconds, now))),
        observed_generation: rs.metadata.generation,
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
        terminating_replicas: None,
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
    use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
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
        assert_eq!(st.ready_replicas, Some(2));
        assert_eq!(st.available_replicas, Some(1));
        assert_eq!(st.fully_labeled_replicas, Some(1));
        assert_eq!(st.observed_generation, Some(3));
    }
}
