//! minik-scheduler: binds pending pods to nodes.
//!
//! A pure API client (kube-rs): reflectors cache pods and nodes; a loop takes
//! every pod that has no `spec.nodeName`, is for `default-scheduler` (or no
//! scheduler name) and is not terminating, filters and scores the nodes
//! ([`predicates`]), and POSTs a `Binding` to `pods/{name}/binding`. A pod
//! that fits nowhere gets `PodScheduled=False` (reason Unschedulable, kube's
//! `0/1 nodes are available: ...` message) and a `FailedScheduling` Event,
//! and is retried with exponential backoff (1s..60s) or at once when nodes or
//! bound pods change. Pods just bound are "assumed" on their node until the
//! cache sees the binding, so two pods are never placed on the same free
//! capacity. Must not depend on the apiserver or the store crates.

/// The Event recorder (shared with the other API-client components).
pub use minik_events as events;
pub mod predicates;

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use tokio::sync::Notify;

use events::{EventType, Recorder};
use predicates::{pod_occupies_node, pod_requests, select_node, NodeInfo, Resources};

/// The scheduler name this scheduler answers to.
pub const SCHEDULER_NAME: &str = "default-scheduler";

const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("pod has no namespace or name; it cannot be bound")]
    MissingMeta,
    #[error("binding the pod failed: {0}")]
    Bind(kube::Error),
}

/// Whether this scheduler should place the pod now.
pub fn needs_scheduling(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let unbound = spec
        .and_then(|s| s.node_name.as_deref())
        .is_none_or(str::is_empty);
    let ours = spec
        .and_then(|s| s.scheduler_name.as_deref())
        .is_none_or(|n| n.is_empty() || n == SCHEDULER_NAME);
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("");
    unbound
        && ours
        && pod.metadata.deletion_timestamp.is_none()
        && phase != "Succeeded"
        && phase != "Failed"
}

fn bound_node(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// Scheduling order: higher priority first, then older first.
pub fn queue_order(a: &Pod, b: &Pod) -> std::cmp::Ordering {
    let prio = |p: &Pod| p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
    let created = |p: &Pod| {
        p.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second())
            .unwrap_or(0)
    };
    prio(b)
        .cmp(&prio(a))
        .then(created(a).cmp(&created(b)))
        .then(a.name_any().cmp(&b.name_any()))
}

/// A hash of everything that can make an unschedulable pod fit: nodes'
/// schedulability fields and the set of pods occupying nodes. Heartbeats
/// (condition timestamps) do not change it.
pub fn cluster_fingerprint(nodes: &[Arc<Node>], pods: &[Arc<Pod>]) -> u64 {
    let mut h = DefaultHasher::new();
    let mut ns: Vec<String> = nodes
        .iter()
        .map(|n| {
            let spec = n.spec.as_ref();
            let st = n.status.as_ref();
            let ready = st
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .map(|c| c.status.clone());
            serde_json::json!([
                n.metadata.name,
                n.metadata.labels,
                spec.and_then(|s| s.unschedulable),
                spec.and_then(|s| s.taints.as_ref()),
                st.and_then(|s| s.allocatable.as_ref()),
                ready,
            ])
            .to_string()
        })
        .collect();
    ns.sort();
    ns.hash(&mut h);
    let mut ps: Vec<(String, String)> = pods
        .iter()
        .filter(|p| pod_occupies_node(p))
        .filter_map(|p| Some((p.metadata.uid.clone()?, bound_node(p)?.to_string())))
        .collect();
    ps.sort();
    ps.hash(&mut h);
    h.finish()
}

struct Backoff {
    next: Instant,
    delay: Duration,
    fingerprint: u64,
}

/// The Binding for `pod` onto `node`.
pub fn binding(pod: &Pod, node: &str) -> Binding {
    Binding {
        metadata: ObjectMeta {
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.into()),
            ..Default::default()
        },
    }
}

/// Runs the scheduler until the task is dropped.
pub async fn run(client: Client) -> anyhow::Result<()> {
    let wake = Arc::new(Notify::new());
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (nodes, node_writer) = reflector::store::<Node>();
    let pod_watch = {
        let wake = wake.clone();
        reflector::reflector(
            pod_writer,
            watcher::watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()),
        )
        .default_backoff()
        .for_each(move |ev| {
            if let Err(e) = ev {
                tracing::debug!(error = %e, "scheduler pod watch");
            }
            wake.notify_one();
            futures::future::ready(())
        })
    };
    let node_watch = {
        let wake = wake.clone();
        reflector::reflector(
            node_writer,
            watcher::watcher(Api::<Node>::all(client.clone()), watcher::Config::default()),
        )
        .default_backoff()
        .for_each(move |ev| {
            if let Err(e) = ev {
                tracing::debug!(error = %e, "scheduler node watch");
            }
            wake.notify_one();
            futures::future::ready(())
        })
    };
    let scheduler = Scheduler {
        recorder: Recorder::new(client.clone(), SCHEDULER_NAME),
        client,
        pods,
        nodes,
        assumed: HashMap::new(),
        backoff: HashMap::new(),
    };
    tokio::join!(pod_watch, node_watch, scheduler.run(wake));
    Ok(())
}

struct Scheduler {
    client: Client,
    recorder: Recorder,
    pods: Store<Pod>,
    nodes: Store<Node>,
    /// pod uid -> (node, requests) for pods bound by us that the cache still shows unbound
    assumed: HashMap<String, (String, Resources)>,
    backoff: HashMap<String, Backoff>,
}

impl Scheduler {
    async fn run(mut self, wake: Arc<Notify>) {
        // A placement needs the full picture of what is already bound.
        let (p, n) = tokio::join!(self.pods.wait_until_ready(), self.nodes.wait_until_ready());
        if p.is_err() || n.is_err() {
            tracing::error!(
                "scheduler caches were dropped before becoming ready; scheduler stopped"
            );
            return;
        }
        tracing::info!("scheduler started");
        loop {
            self.schedule_pending().await;
            tokio::select! {
                _ = wake.notified() => {
                    // Let a burst of watch events settle into one pass.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn schedule_pending(&mut self) {
        let pods = self.pods.state();
        let nodes = self.nodes.state();
        // Forget assumptions the cache caught up with (bound or gone).
        self.assumed.retain(|uid, _| {
            pods.iter()
                .any(|p| p.metadata.uid.as_deref() == Some(uid.as_str()) && bound_node(p).is_none())
        });
        let mut pending: Vec<&Arc<Pod>> = pods.iter().filter(|p| needs_scheduling(p)).collect();
        pending.sort_by(|a, b| queue_order(a, b));
        self.backoff.retain(|uid, _| {
            pending
                .iter()
                .any(|p| p.metadata.uid.as_deref() == Some(uid.as_str()))
        });
        if pending.is_empty() {
            return;
        }
        let fingerprint = cluster_fingerprint(&nodes, &pods);
        let mut node_list: Vec<&Arc<Node>> = nodes.iter().collect();
        node_list.sort_by_key(|n| n.name_any());
        for pod in pending {
            let Some(uid) = pod.metadata.uid.clone() else {
                continue;
            };
            if self.assumed.contains_key(&uid) {
                continue;
            }
            if let Some(b) = self.backoff.get(&uid) {
                if Instant::now() < b.next && b.fingerprint == fingerprint {
                    continue;
                }
            }
            let infos: Vec<NodeInfo> = node_list
                .iter()
                .map(|n| {
                    let name = n.name_any();
                    NodeInfo {
                        node: n.as_ref(),
                        pods: pods
                            .iter()
                            .filter(|p| {
                                bound_node(p) == Some(name.as_str()) && pod_occupies_node(p)
                            })
                            .map(|p| p.as_ref())
                            .collect(),
                        assumed: self
                            .assumed
                            .values()
                            .filter(|(n, _)| *n == name)
                            .map(|(_, r)| r.clone())
                            .collect(),
                    }
                })
                .collect();
            match select_node(pod, &infos) {
                Ok(node) => match self.bind(pod, &node).await {
                    Ok(()) => {
                        self.backoff.remove(&uid);
                        self.assumed.insert(uid, (node, pod_requests(pod)));
                    }
                    Err(e) => {
                        tracing::warn!(pod = %pod.name_any(), error = %e, "binding failed; will retry");
                        self.back_off(&uid, fingerprint);
                    }
                },
                Err(message) => {
                    self.unschedulable(pod, &message).await;
                    self.back_off(&uid, fingerprint);
                }
            }
        }
    }

    fn back_off(&mut self, uid: &str, fingerprint: u64) {
        let delay = self
            .backoff
            .get(uid)
            .map(|b| (b.delay * 2).min(MAX_BACKOFF))
            .unwrap_or(INITIAL_BACKOFF);
        self.backoff.insert(
            uid.to_string(),
            Backoff {
                next: Instant::now() + delay,
                delay,
                fingerprint,
            },
        );
    }

    async fn bind(&self, pod: &Pod, node: &str) -> Result<(), Error> {
        let (Some(ns), Some(name)) = (pod.metadata.namespace.clone(), pod.metadata.name.clone())
        else {
            return Err(Error::MissingMeta);
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        api.create_subresource::<Binding, serde_json::Value>(
            "binding",
            &name,
            &PostParams::default(),
            &binding(pod, node),
        )
        .await
        .map_err(Error::Bind)?;
        tracing::info!(pod = %format!("{ns}/{name}"), node, "scheduled");
        self.recorder
            .publish(
                pod,
                EventType::Normal,
                "Scheduled",
                &format!("Successfully assigned {ns}/{name} to {node}"),
            )
            .await;
        // The apiserver's binding normally sets PodScheduled=True; make sure a
        // previous Unschedulable condition does not linger.
        if let Ok(fresh) = api.get(&name).await {
            if scheduled_condition(&fresh).is_none_or(|(status, _, _)| status != "True") {
                set_scheduled_condition(&api, &fresh, "True", None, None).await;
            }
        }
        Ok(())
    }

    async fn unschedulable(&self, pod: &Pod, message: &str) {
        let (Some(ns), Some(name)) = (pod.metadata.namespace.clone(), pod.metadata.name.clone())
        else {
            return;
        };
        tracing::debug!(pod = %format!("{ns}/{name}"), message, "unschedulable");
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let same = scheduled_condition(pod).is_some_and(|(s, r, m)| {
            s == "False" && r.as_deref() == Some("Unschedulable") && m.as_deref() == Some(message)
        });
        if !same {
            set_scheduled_condition(&api, pod, "False", Some("Unschedulable"), Some(message)).await;
        }
        self.recorder
            .publish(pod, EventType::Warning, "FailedScheduling", message)
            .await;
    }
}

/// (status, reason, message) of the PodScheduled condition.
fn scheduled_condition(pod: &Pod) -> Option<(String, Option<String>, Option<String>)> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Writes the PodScheduled condition through the status subresource: a
/// strategic merge patch (conditions merge by type, so the kubelet's own
/// conditions are untouched), or a merge patch of the whole list when the
/// server refuses strategic patches.
async fn set_scheduled_condition(
    api: &Api<Pod>,
    pod: &Pod,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
) {
    let name = pod.name_any();
    let cond = serde_json::json!({
        "type": "PodScheduled",
        "status": status,
        "reason": reason,
        "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": Time(Timestamp::now()),
    });
    let strategic = serde_json::json!({"status": {"conditions": [cond.clone()]}});
    let res = api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Strategic(&strategic),
        )
        .await;
    let Err(e) = res else { return };
    tracing::debug!(pod = %name, error = %e, "strategic status patch failed; trying a merge patch");
    let mut conds: Vec<serde_json::Value> = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.type_ != "PodScheduled")
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    conds.push(cond);
    let merge = serde_json::json!({"status": {"conditions": conds}});
    if let Err(e) = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&merge))
        .await
    {
        tracing::warn!(pod = %name, error = %e, "could not set the PodScheduled condition");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};

    fn pod(name: &str, node: Option<&str>, scheduler: Option<&str>, phase: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("u-{name}")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(Into::into),
                scheduler_name: scheduler.map(Into::into),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn only_unbound_live_pods_for_us_are_scheduled() {
        assert!(needs_scheduling(&pod("a", None, None, "Pending")));
        assert!(needs_scheduling(&pod(
            "a",
            Some(""),
            Some("default-scheduler"),
            "Pending"
        )));
        assert!(!needs_scheduling(&pod("a", Some("minik"), None, "Pending")));
        assert!(!needs_scheduling(&pod(
            "a",
            None,
            Some("my-scheduler"),
            "Pending"
        )));
        assert!(!needs_scheduling(&pod("a", None, None, "Failed")));
        let mut deleting = pod("a", None, None, "Pending");
        deleting.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        assert!(!needs_scheduling(&deleting));
    }

    #[test]
    fn binding_targets_the_node() {
        let b = binding(&pod("web", None, None, "Pending"), "minik");
        assert_eq!(b.metadata.name.as_deref(), Some("web"));
        assert_eq!(b.metadata.uid.as_deref(), Some("u-web"));
        assert_eq!(
            (b.target.kind.as_deref(), b.target.name.as_deref()),
            (Some("Node"), Some("minik"))
        );
    }

    #[test]
    fn fingerprint_changes_with_bound_pods_not_with_pending_ones() {
        let nodes: Vec<Arc<Node>> = vec![Arc::new(Node {
            metadata: ObjectMeta {
                name: Some("minik".into()),
                ..Default::default()
            },
            ..Default::default()
        })];
        let base = cluster_fingerprint(
            &nodes,
            &[Arc::new(pod("a", Some("minik"), None, "Running"))],
        );
        let with_pending = cluster_fingerprint(
            &nodes,
            &[
                Arc::new(pod("a", Some("minik"), None, "Running")),
                Arc::new(pod("b", None, None, "Pending")),
            ],
        );
        assert_eq!(base, with_pending);
        let finished = cluster_fingerprint(
            &nodes,
            &[Arc::new(pod("a", Some("minik"), None, "Succeeded"))],
        );
        assert_ne!(base, finished);
    }

    #[test]
    fn queue_prefers_priority_then_age() {
        let mut hi = pod("hi", None, None, "Pending");
        if let Some(s) = hi.spec.as_mut() {
            s.priority = Some(100);
        }
        let mut old = pod("old", None, None, "Pending");
        old.metadata.creation_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        let mut new = pod("new", None, None, "Pending");
        new.metadata.creation_timestamp = Some(Time(Timestamp::from_second(100).expect("ts")));
        let mut v = [&new, &old, &hi];
        v.sort_by(|a, b| queue_order(a, b));
        let names: Vec<String> = v.iter().map(|p| p.name_any()).collect();
        assert_eq!(names, vec!["hi", "old", "new"]);
    }
}
