//! DaemonSet controller: one pod per eligible node.
//!
//! Follows kube's `pkg/controller/daemon`:
//! - a node is eligible when the pod template's nodeSelector and required
//!   node affinity match it and every NoSchedule/NoExecute taint is tolerated
//!   (with the tolerations every daemon pod gets: not-ready, unreachable,
//!   disk/memory/pid-pressure, unschedulable, network-unavailable for
//!   hostNetwork pods);
//! - pods are created unbound but pinned with a required node affinity
//!   `matchFields metadata.name In [<node>]` (the scheduler binds them), labelled
//!   `controller-revision-hash` (the revision's hash) and `pod-template-generation`;
//! - failed pods are replaced, extra pods on a node and pods on nodes that are
//!   no longer eligible are deleted;
//! - updateStrategy `RollingUpdate` (maxUnavailable, or maxSurge: the new
//!   pod starts before the old one goes) and `OnDelete`; ControllerRevisions
//!   as for StatefulSets (`crate::statefulset::sync_revisions`);
//! - status: desiredNumberScheduled, currentNumberScheduled, numberReady,
//!   numberAvailable, numberUnavailable, updatedNumberScheduled,
//!   numberMisscheduled, observedGeneration (what `kubectl rollout status ds/x` reads).
//!
//! Owns the pods it creates and the DaemonSet's revisions. Node changes wake
//! every DaemonSet.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use minik_apimachinery::scheduling;

use crate::events::EventType;
use crate::job::claim_pods;
use crate::reconcile::Ctx;
use crate::statefulset::{
    sync_revisions, truncate_history, Error, REVISION_HASH_LABEL, REVISION_LABEL,
};
use crate::util::{
    controller_owner_ref, is_namespace_terminating, is_not_found, is_pod_available, is_pod_ready,
    pod_phase, pod_target_node, resolve_int_or_percent, time_secs,
};

pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// Runs the DaemonSet controller until the task is dropped.
pub async fn run(client: Client) -> anyhow::Result<()> {
    let ctx = Ctx::new(&client, "daemonset-controller");
    let controller = Controller::new(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let store = controller.store();
    controller
        .watches(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default(),
            {
                let store = store.clone();
                move |pod: Pod| {
                    crate::util::pod_owner_refs(&pod, &store.state(), |d: &DaemonSet| {
                        d.spec.as_ref().map(|s| &s.selector)
                    })
                }
            },
        )
        .watches(
            Api::<Node>::all(client),
            watcher::Config::default(),
            move |_node: Node| {
                store
                    .state()
                    .iter()
                    .map(|d| ObjectRef::from_obj(&**d))
                    .collect::<Vec<_>>()
            },
        )
        .run(reconcile, error_policy, ctx)
        .for_each(|res| crate::reconcile::log_result("daemonset", res))
        .await;
    Ok(())
}

fn error_policy(_d: Arc<DaemonSet>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    match err {
        // A new name to try: at once.
        Error::HashCollision(_) => Action::requeue(Duration::from_millis(100)),
        Error::Kube(e) => {
            Action::requeue(crate::reconcile::error_requeue("daemonset", Some(e), err))
        }
        _ => Action::requeue(crate::reconcile::error_requeue("daemonset", None, err)),
    }
}

// ---------------------------------------------------------------------------
// Pure logic
// ---------------------------------------------------------------------------

/// The tolerations every daemon pod gets (kube's `AddOrUpdateDaemonPodTolerations`).
pub fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let tol = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut v = vec![
        tol("node.kubernetes.io/not-ready", "NoExecute"),
        tol("node.kubernetes.io/unreachable", "NoExecute"),
        tol("node.kubernetes.io/disk-pressure", "NoSchedule"),
        tol("node.kubernetes.io/memory-pressure", "NoSchedule"),
        tol("node.kubernetes.io/pid-pressure", "NoSchedule"),
        tol("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        v.push(tol("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    v
}

/// Adds the default tolerations a pod spec does not have yet.
fn add_default_tolerations(spec: &mut PodSpec) {
    let host_network = spec.host_network.unwrap_or(false);
    let list = spec.tolerations.get_or_insert_with(Vec::new);
    for t in default_tolerations(host_network) {
        if !list
            .iter()
            .any(|e| e.key == t.key && e.effect == t.effect && e.operator == t.operator)
        {
            list.push(t);
        }
    }
}

/// Whether a daemon pod with `spec` should run on `node` (kube's
/// `NodeShouldRunDaemonPod`): node name, nodeSelector, required node
/// affinity, and every NoSchedule/NoExecute taint tolerated.
pub fn node_should_run(node: &Node, spec: &PodSpec) -> bool {
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        if Some(n) != node.metadata.name.as_deref() {
            return false;
        }
    }
    if !scheduling::node_selector_and_affinity_match(spec, node) {
        return false;
    }
    let mut with_defaults = spec.clone();
    add_default_tolerations(&mut with_defaults);
    let tols = with_defaults.tolerations.unwrap_or_default();
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|taint| scheduling::tolerated_by(&tols, taint))
}

/// The pod a DaemonSet runs on `node`: the template pinned to the node with a
/// required `matchFields metadata.name` affinity (replacing other required
/// terms, as kube's `ReplaceDaemonSetPodNodeNameNodeAffinity`), the default
/// tolerations, and the revision labels.
pub fn new_pod(ds: &DaemonSet, template: &PodTemplateSpec, hash: &str, node: &str) -> Option<Pod> {
    let name = ds.metadata.name.as_deref()?;
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.insert(REVISION_LABEL.into(), hash.to_string());
    if let Some(g) = ds.metadata.generation {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), g.to_string());
    }
    let mut spec = template.spec.clone().unwrap_or_default();
    add_default_tolerations(&mut spec);
    let term = NodeSelectorTerm {
        match_expressions: None,
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.to_string()]),
        }]),
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![term],
    });
    Some(Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![controller_owner_ref(ds)?]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    })
}

fn is_terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

fn is_updated(p: &Pod, hash: &str) -> bool {
    p.labels().get(REVISION_LABEL).map(String::as_str) == Some(hash)
}

/// Oldest first, then by name (kube's `podByCreationTimestampAndPhase`, roughly).
fn by_age(pods: &mut [&Pod]) {
    pods.sort_by(|a, b| {
        time_secs(a.metadata.creation_timestamp.as_ref())
            .cmp(&time_secs(b.metadata.creation_timestamp.as_ref()))
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
}

/// One node as the sync sees it.
#[derive(Debug)]
pub struct NodeView<'a> {
    pub name: String,
    pub should_run: bool,
    /// The DaemonSet's non-terminating pods targeting the node.
    pub pods: Vec<&'a Pod>,
}

/// What one sync does: nodes to create a pod on, pods to delete.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub create_on: Vec<String>,
    pub delete: Vec<String>,
}

/// The pure part of a sync (kube's `manage` + `rollingUpdate`): `surge` and
/// `unavailable` are the resolved rolling-update bounds, None for OnDelete.
pub fn plan(
    nodes: &[NodeView],
    hash: &str,
    rolling: Option<(i32, i32)>,
    min_ready: i32,
    now: Timestamp,
) -> Plan {
    let mut p = Plan::default();
    let available = |pod: &Pod| is_pod_available(pod, min_ready, now);
    // manage: missing, failed, duplicate and misscheduled pods.
    let mut healthy: Vec<(&NodeView, Vec<&Pod>)> = Vec::new();
    for n in nodes {
        if !n.should_run {
            p.delete.extend(n.pods.iter().map(|x| x.name_any()));
            continue;
        }
        let (failed, mut running): (Vec<&Pod>, Vec<&Pod>) =
            n.pods.iter().partition(|x| pod_phase(x) == "Failed");
        p.delete.extend(failed.iter().map(|x| x.name_any()));
        if running.is_empty() {
            p.create_on.push(n.name.clone());
            continue;
        }
        by_age(&mut running);
        let surging = rolling.is_some_and(|(s, _)| s > 0);
        if running.len() > 1 {
            if surging {
                // Keep the oldest old pod and the oldest updated pod.
                let old = running.iter().find(|x| !is_updated(x, hash)).copied();
                let new = running.iter().find(|x| is_updated(x, hash)).copied();
                let keep: Vec<&Pod> = old.into_iter().chain(new).collect();
                for x in &running {
                    if !keep.iter().any(|k| k.metadata.uid == x.metadata.uid) {
                        p.delete.push(x.name_any());
                    }
                }
                running = keep;
            } else {
                p.delete.extend(running[1..].iter().map(|x| x.name_any()));
                running.truncate(1);
            }
        }
        healthy.push((n, running));
    }
    let Some((max_surge, max_unavailable)) = rolling else {
        return p;
    };
    // rollingUpdate.
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut candidates: Vec<String> = Vec::new();
        for n in nodes.iter().filter(|n| n.should_run) {
            let pods = healthy
                .iter()
                .find(|(h, _)| h.name == n.name)
                .map(|(_, v)| v.as_slice())
                .unwrap_or(&[]);
            match pods.first() {
                None => unavailable += 1,
                Some(pod) if is_updated(pod, hash) => {
                    if !available(pod) {
                        unavailable += 1;
                    }
                }
                Some(pod) => {
                    if !available(pod) {
                        // Not serving anyway: replace without using the budget.
                        p.delete.push(pod.name_any());
                        unavailable += 1;
                    } else {
                        candidates.push(pod.name_any());
                    }
                }
            }
        }
        let budget = (max_unavailable - unavailable).max(0) as usize;
        p.delete.extend(candidates.into_iter().take(budget));
    } else {
        let mut surging = 0;
        let mut candidates: Vec<String> = Vec::new();
        for (n, pods) in &healthy {
            let old = pods.iter().find(|x| !is_updated(x, hash));
            let new = pods.iter().find(|x| is_updated(x, hash));
            match (old, new) {
                (Some(o), Some(nw)) => {
                    if available(nw) {
                        p.delete.push(o.name_any());
                    } else {
                        surging += 1;
                    }
                }
                (Some(o), None) => {
                    if !available(o) {
                        p.delete.push(o.name_any());
                    } else {
                        candidates.push(n.name.clone());
                    }
                }
                _ => {}
            }
        }
        let room = (max_surge - surging).max(0) as usize;
        p.create_on.extend(candidates.into_iter().take(room));
    }
    p
}

/// Status from the nodes (kube's `updateDaemonSetStatus`).
pub fn compute_status(
    ds: &DaemonSet,
    nodes: &[NodeView],
    hash: &str,
    min_ready: i32,
    now: Timestamp,
) -> DaemonSetStatus {
    let mut st = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
        ..Default::default()
    };
    let (mut available, mut updated) = (0, 0);
    for n in nodes {
        if n.should_run {
            st.desired_number_scheduled += 1;
            if n.pods.is_empty() {
                continue;
            }
            st.current_number_scheduled += 1;
            let mut pods = n.pods.clone();
            by_age(&mut pods);
            let pod = pods[0];
            if is_pod_ready(pod) {
                st.number_ready += 1;
                if is_pod_available(pod, min_ready, now) {
                    available += 1;
                }
            }
            if is_updated(pod, hash) {
                updated += 1;
            }
        } else if !n.pods.is_empty() {
            st.number_misscheduled += 1;
        }
    }
    st.number_available = Some(available);
    st.number_unavailable = Some(st.desired_number_scheduled - available);
    st.updated_number_scheduled = Some(updated);
    st
}

/// (maxSurge, maxUnavailable) for RollingUpdate, None for OnDelete (kube's
/// `ResolveFenceposts`: surge rounds up, unavailable down, both zero means one unavailable).
pub fn rolling_bounds(ds: &DaemonSet, desired: i32) -> Option<(i32, i32)> {
    let us = ds.spec.as_ref()?.update_strategy.as_ref();
    if us
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
        != "RollingUpdate"
    {
        return None;
    }
    let ru = us.and_then(|u| u.rolling_update.as_ref());
    let surge = ru
        .and_then(|r| r.max_surge.clone())
        .unwrap_or(IntOrString::Int(0));
    let unav = ru
        .and_then(|r| r.max_unavailable.clone())
        .unwrap_or(IntOrString::Int(1));
    let surge = resolve_int_or_percent(&surge, desired, true)
        .unwrap_or(0)
        .max(0);
    let mut unav = resolve_int_or_percent(&unav, desired, false)
        .unwrap_or(1)
        .max(0);
    if surge == 0 && unav == 0 {
        unav = 1;
    }
    Some((surge, unav))
}

// ---------------------------------------------------------------------------
// Reconcile
// ---------------------------------------------------------------------------

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some((ns, name, uid)) = crate::reconcile::ns_name_uid(&ds.metadata) else {
        return Err(Error::MissingMeta);
    };
    let ds_api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(ds) = crate::reconcile::get_current(&ds_api, &name, &uid).await? else {
        return Ok(Action::await_change());
    };
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(spec) = ds.spec.clone() else {
        return Ok(Action::await_change());
    };
    let collision = ds
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    let revs = sync_revisions(&ctx.client, &ds, &spec.template, collision).await?;
    let hash = revs
        .update
        .labels()
        .get(REVISION_HASH_LABEL)
        .cloned()
        .unwrap_or_else(|| {
            revs.update
                .name_any()
                .rsplit('-')
                .next()
                .unwrap_or_default()
                .to_string()
        });

    let nodes = Api::<Node>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let all_pods = pods_api.list(&ListParams::default()).await?.items;
    let pods = claim_pods(
        &pods_api,
        controller_owner_ref(&ds),
        &spec.selector,
        all_pods,
        true,
        None,
    )
    .await;
    let template_spec = spec.template.spec.clone().unwrap_or_default();
    let mut views: Vec<NodeView> = nodes
        .iter()
        .map(|n| NodeView {
            name: n.name_any(),
            should_run: node_should_run(n, &template_spec),
            pods: Vec::new(),
        })
        .collect();
    for p in pods.iter().filter(|p| !is_terminating(p)) {
        match pod_target_node(p) {
            Some(node) => match views.iter_mut().find(|v| v.name == node) {
                Some(v) => v.pods.push(p),
                None => {
                    // Its node is gone: nothing will ever run it.
                    delete_pod(&ctx, &pods_api, &ds, &p.name_any(), None).await?;
                }
            },
            None => delete_pod(&ctx, &pods_api, &ds, &p.name_any(), None).await?,
        }
    }

    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let now = Timestamp::now();
    let desired = views.iter().filter(|v| v.should_run).count() as i32;
    let rolling = rolling_bounds(&ds, desired);
    let plan = plan(&views, &hash, rolling, min_ready, now);
    for node in &plan.create_on {
        let Some(pod) = new_pod(&ds, &spec.template, &hash, node) else {
            continue;
        };
        match pods_api.create(&PostParams::default(), &pod).await {
            Ok(p) => {
                ctx.recorder
                    .publish(
                        &ds,
                        EventType::Normal,
                        "SuccessfulCreate",
                        &format!("Created pod: {}", p.name_any()),
                    )
                    .await
            }
            Err(e) if is_namespace_terminating(&e) => return Ok(Action::await_change()),
            Err(e) => {
                ctx.recorder
                    .publish(
                        &ds,
                        EventType::Warning,
                        "FailedCreate",
                        &format!("Error creating: {e}"),
                    )
                    .await;
                return Err(e.into());
            }
        }
    }
    for pname in &plan.delete {
        let failed_on = views
            .iter()
            .find(|v| {
                v.pods
                    .iter()
                    .any(|p| &p.name_any() == pname && pod_phase(p) == "Failed")
            })
            .map(|v| v.name.clone());
        delete_pod(&ctx, &pods_api, &ds, pname, failed_on).await?;
    }

    let status = compute_status(&ds, &views, &hash, min_ready, now);
    let status = DaemonSetStatus {
        collision_count: Some(revs.collision_count),
        ..status
    };
    if ds.status.as_ref() != Some(&status)
        && !crate::reconcile::merge_status(&ds_api, &name, serde_json::json!(status)).await?
    {
        return Ok(Action::await_change());
    }
    let update_name = revs.update.name_any();
    let live_hashes: Vec<String> = pods
        .iter()
        .filter_map(|p| p.labels().get(REVISION_LABEL).cloned())
        .collect();
    let live_names: Vec<String> = revs
        .all
        .iter()
        .filter(|r| {
            r.labels()
                .get(REVISION_HASH_LABEL)
                .is_some_and(|h| live_hashes.contains(h))
        })
        .map(|r| r.name_any())
        .collect();
    let mut live: Vec<&str> = vec![update_name.as_str()];
    live.extend(live_names.iter().map(String::as_str));
    truncate_history(
        &ctx.client,
        &ns,
        &revs.all,
        &live,
        spec.revision_history_limit.unwrap_or(10),
    )
    .await;

    // Ready pods waiting out minReadySeconds need a wake-up.
    if let Some(wait) = crate::reconcile::next_available_in(pods.iter(), min_ready, now) {
        return Ok(Action::requeue(wait));
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

async fn delete_pod(
    ctx: &Ctx,
    api: &Api<Pod>,
    ds: &DaemonSet,
    pname: &str,
    failed_on: Option<String>,
) -> Result<(), Error> {
    if let Some(node) = &failed_on {
        ctx.recorder
            .publish(
                ds,
                EventType::Warning,
                "FailedDaemonPod",
                &format!(
                    "Found failed daemon pod {}/{pname} on node {node}, will try to kill it",
                    ds.namespace().unwrap_or_default()
                ),
            )
            .await;
    }
    match api.delete(pname, &DeleteParams::default()).await {
        Ok(_) => {
            ctx.recorder
                .publish(
                    ds,
                    EventType::Normal,
                    "SuccessfulDelete",
                    &format!("Deleted pod: {pname}"),
                )
                .await;
            Ok(())
        }
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::testutil::{labels, pod, ts};
    use k8s_openapi::api::apps::v1::{
        DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
    };
    use k8s_openapi::api::core::v1::NodeSpec;
    use k8s_openapi::api::core::v1::Taint;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn node(name: &str, lbls: &[(&str, &str)], taints: Vec<Taint>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels(lbls)),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(taints),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            ..Default::default()
        }
    }

    #[test]
    fn eligibility_selector_affinity_and_taints() {
        let n = node("n1", &[("disk", "ssd")], vec![]);
        let mut spec = PodSpec::default();
        assert!(node_should_run(&n, &spec));
        spec.node_selector = Some(labels(&[("disk", "hdd")]));
        assert!(!node_should_run(&n, &spec));
        spec.node_selector = Some(labels(&[("disk", "ssd")]));
        assert!(node_should_run(&n, &spec));
        // Default tolerations cover unschedulable and not-ready.
        let n = node(
            "n1",
            &[],
            vec![
                taint("node.kubernetes.io/unschedulable", "NoSchedule"),
                taint("node.kubernetes.io/not-ready", "NoExecute"),
            ],
        );
        assert!(node_should_run(&n, &PodSpec::default()));
        let n = node("n1", &[], vec![taint("dedicated", "NoSchedule")]);
        assert!(!node_should_run(&n, &PodSpec::default()));
        let n2 = node("n1", &[], vec![taint("dedicated", "PreferNoSchedule")]);
        assert!(node_should_run(&n2, &PodSpec::default()));
        let tolerant = PodSpec {
            tolerations: Some(vec![Toleration {
                key: Some("dedicated".into()),
                operator: Some("Exists".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert!(node_should_run(&n, &tolerant));
        // network-unavailable is tolerated only for hostNetwork pods.
        let n = node(
            "n1",
            &[],
            vec![taint(
                "node.kubernetes.io/network-unavailable",
                "NoSchedule",
            )],
        );
        assert!(!node_should_run(&n, &PodSpec::default()));
        let hn = PodSpec {
            host_network: Some(true),
            ..Default::default()
        };
        assert!(node_should_run(&n, &hn));
    }

    fn ds(surge: i32, unavailable: i32) -> DaemonSet {
        DaemonSet {
            metadata: ObjectMeta {
                name: Some("agent".into()),
                namespace: Some("default".into()),
                uid: Some("ds-uid".into()),
                generation: Some(4),
                ..Default::default()
            },
            spec: Some(DaemonSetSpec {
                selector: LabelSelector {
                    match_labels: Some(labels(&[("app", "agent")])),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels(&[("app", "agent")])),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec::default()),
                },
                update_strategy: Some(DaemonSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDaemonSet {
                        max_surge: Some(IntOrString::Int(surge)),
                        max_unavailable: Some(IntOrString::Int(unavailable)),
                    }),
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn pod_is_pinned_and_tolerant() {
        let d = ds(0, 1);
        let p = new_pod(&d, &d.spec.as_ref().unwrap().template, "h1", "minik").expect("pod");
        assert_eq!(p.metadata.generate_name.as_deref(), Some("agent-"));
        assert_eq!(p.labels()[REVISION_LABEL], "h1");
        assert_eq!(p.labels()[TEMPLATE_GENERATION_LABEL], "4");
        assert_eq!(pod_target_node(&p).as_deref(), Some("minik"));
        let tols = p.spec.as_ref().unwrap().tolerations.as_ref().unwrap();
        assert_eq!(tols.len(), 6);
        assert!(tols
            .iter()
            .any(|t| t.key.as_deref() == Some("node.kubernetes.io/unschedulable")));
    }

    fn dpod(name: &str, hash: &str, ready: bool, created: i64) -> Pod {
        let mut p = pod(name, "Running", ready.then_some(1), Some("n"), created);
        p.metadata.labels = Some(labels(&[("app", "agent"), (REVISION_LABEL, hash)]));
        p
    }

    #[test]
    fn manage_creates_missing_and_removes_extras() {
        let a = dpod("a", "h", true, 1);
        let b = dpod("b", "h", true, 2);
        let views = vec![
            NodeView {
                name: "n1".into(),
                should_run: true,
                pods: vec![],
            },
            NodeView {
                name: "n2".into(),
                should_run: true,
                pods: vec![&b, &a],
            },
            NodeView {
                name: "n3".into(),
                should_run: false,
                pods: vec![],
            },
        ];
        let p = plan(&views, "h", Some((0, 1)), 0, ts(10));
        assert_eq!(p.create_on, vec!["n1"]);
        assert_eq!(p.delete, vec!["b"], "the oldest pod is kept");
        let c = dpod("c", "h", true, 1);
        let views = vec![NodeView {
            name: "n3".into(),
            should_run: false,
            pods: vec![&c],
        }];
        assert_eq!(plan(&views, "h", None, 0, ts(10)).delete, vec!["c"]);
    }

    #[test]
    fn rolling_update_respects_max_unavailable() {
        let (a, b, c) = (
            dpod("a", "old", true, 1),
            dpod("b", "old", true, 1),
            dpod("c", "old", false, 1),
        );
        let views = vec![
            NodeView {
                name: "n1".into(),
                should_run: true,
                pods: vec![&a],
            },
            NodeView {
                name: "n2".into(),
                should_run: true,
                pods: vec![&b],
            },
            NodeView {
                name: "n3".into(),
                should_run: true,
                pods: vec![&c],
            },
        ];
        // c is unavailable: replaced for free, and it uses up the budget of 1.
        let p = plan(&views, "new", Some((0, 1)), 0, ts(10));
        assert_eq!(p.delete, vec!["c"]);
        let p = plan(&views, "new", Some((0, 2)), 0, ts(10));
        assert_eq!(p.delete, vec!["c", "a"]);
        // OnDelete: nothing is replaced.
        assert!(plan(&views, "new", None, 0, ts(10)).delete.is_empty());
    }

    #[test]
    fn surge_starts_new_before_removing_old() {
        let old = dpod("old", "h0", true, 1);
        let views = vec![NodeView {
            name: "n1".into(),
            should_run: true,
            pods: vec![&old],
        }];
        let p = plan(&views, "h1", Some((1, 0)), 0, ts(10));
        assert_eq!(p.create_on, vec!["n1"]);
        assert!(p.delete.is_empty());
        let new_unready = dpod("new", "h1", false, 2);
        let views = vec![NodeView {
            name: "n1".into(),
            should_run: true,
            pods: vec![&old, &new_unready],
        }];
        assert_eq!(plan(&views, "h1", Some((1, 0)), 0, ts(10)), Plan::default());
        let new_ready = dpod("new", "h1", true, 2);
        let views = vec![NodeView {
            name: "n1".into(),
            should_run: true,
            pods: vec![&old, &new_ready],
        }];
        assert_eq!(
            plan(&views, "h1", Some((1, 0)), 0, ts(10)).delete,
            vec!["old"]
        );
    }

    #[test]
    fn status_counts_per_node() {
        let d = ds(0, 1);
        let a = dpod("a", "h", true, 1);
        let b = dpod("b", "old", false, 1);
        let c = dpod("c", "h", true, 1);
        let views = vec![
            NodeView {
                name: "n1".into(),
                should_run: true,
                pods: vec![&a],
            },
            NodeView {
                name: "n2".into(),
                should_run: true,
                pods: vec![&b],
            },
            NodeView {
                name: "n3".into(),
                should_run: true,
                pods: vec![],
            },
            NodeView {
                name: "n4".into(),
                should_run: false,
                pods: vec![&c],
            },
        ];
        let st = compute_status(&d, &views, "h", 0, ts(10));
        assert_eq!(st.desired_number_scheduled, 3);
        assert_eq!(st.current_number_scheduled, 2);
        assert_eq!(st.number_ready, 1);
        assert_eq!(st.number_available, Some(1));
        assert_eq!(st.number_unavailable, Some(2));
        assert_eq!(st.updated_number_scheduled, Some(1));
        assert_eq!(st.number_misscheduled, 1);
        assert_eq!(st.observed_generation, Some(4));
        assert_eq!(rolling_bounds(&d, 3), Some((0, 1)));
        assert_eq!(rolling_bounds(&ds(0, 0), 3), Some((0, 1)));
    }
}
