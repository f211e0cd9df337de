//! Garbage collector: deletes objects whose owners are all gone, and carries
//! out the Orphan and Foreground deletion policies.
//!
//! * Background (the default): an object whose every ownerReference points
//!   to a uid that no longer exists is deleted (after a live GET confirms the
//!   owner is really gone — the scan is not an atomic snapshot). Dangling
//!   references next to a live owner are removed instead.
//! * Orphan: an owner being deleted with the `orphan` finalizer has its
//!   ownerReference removed from every dependent, then the finalizer removed.
//! * Foreground: dependents of an owner with the `foregroundDeletion`
//!   finalizer are deleted (in foreground too); once no blocking dependent
//!   (blockOwnerDeletion) remains, the finalizer is removed.
//!
//! It scans every listable type discovery reports: on owner-type watch
//! events (Deployments, ReplicaSets, Services, Namespaces), again shortly after it acted
//! (to follow chains: Deployment -> ReplicaSet -> Pod), and every 10 seconds.
//! The decisions are a pure function of a snapshot ([`plan`]).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions,
    PropagationPolicy,
};
use kube::runtime::watcher;
use kube::Client;
use tokio::sync::Notify;

use crate::discovery::{discover, resolve, ResourceType};
use crate::util::is_not_found;

pub const ORPHAN_FINALIZER: &str = "orphan";
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// One object in the scan.
#[derive(Clone, Debug)]
pub struct Node {
    /// index into the resource type list
    pub type_idx: usize,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub owners: Vec<OwnerReference>,
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

/// What the collector does to one object.
#[derive(Clone, Debug, PartialEq)]
pub enum GcAction {
    /// Delete an object whose owners are gone (`verify`: owner refs to
    /// confirm absent first) or whose owner is deleted in foreground.
    Delete {
        node: usize,
        foreground: bool,
        verify: Vec<OwnerReference>,
    },
    /// Remove these owner uids from the object's ownerReferences.
    RemoveOwners { node: usize, uids: Vec<String> },
    /// Remove a finalizer from an owner being deleted.
    RemoveFinalizer { node: usize, finalizer: String },
}

/// Decides the actions for a snapshot. `namespaced[type_idx]` says whether a
/// type is namespaced (a namespaced dependent can only be owned by an object
/// in its own namespace or a cluster-scoped one).
pub fn plan(nodes: &[Node], namespaced: &[bool]) -> Vec<GcAction> {
    let by_uid: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.uid.as_str(), i))
        .collect();
    let mut actions = Vec::new();
    // Owner uid -> whether some dependent still blocks it / references it at all.
    let mut blocking: HashSet<&str> = HashSet::new();
    let mut referenced: HashSet<&str> = HashSet::new();
    for (i, n) in nodes.iter().enumerate() {
        if n.owners.is_empty() {
            continue;
        }
        let mut dangling = Vec::new();
        let mut orphaning = Vec::new();
        let mut foreground = false;
        let mut live = false;
        for r in &n.owners {
            let owner = by_uid.get(r.uid.as_str()).map(|&j| &nodes[j]).filter(|o| {
                let owner_namespaced = namespaced.get(o.type_idx).copied().unwrap_or(true);
                !owner_namespaced || o.namespace == n.namespace
            });
            match owner {
                None => dangling.push(r.clone()),
                Some(o) if o.deleting && o.finalizers.iter().any(|f| f == ORPHAN_FINALIZER) => {
                    orphaning.push(r.uid.clone());
                    referenced.insert(r.uid.as_str());
                }
                Some(o) if o.deleting && o.finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) => {
                    foreground = true;
                    referenced.insert(r.uid.as_str());
                    if r.block_owner_deletion == Some(true) {
                        blocking.insert(r.uid.as_str());
                    }
                }
                Some(_) => {
                    live = true;
                    referenced.insert(r.uid.as_str());
                }
            }
        }
        if live || !orphaning.is_empty() {
            // The object stays: drop references that are gone or orphaning.
            let mut uids: Vec<String> = orphaning;
            if live {
                uids.extend(dangling.iter().map(|r| r.uid.clone()));
            }
            if !uids.is_empty() {
                actions.push(GcAction::RemoveOwners { node: i, uids });
            }
            continue;
        }
        if n.deleting {
            continue;
        }
        if foreground {
            actions.push(GcAction::Delete {
                node: i,
                foreground: true,
                verify: vec![],
            });
        } else if !dangling.is_empty() {
            actions.push(GcAction::Delete {
                node: i,
                foreground: false,
                verify: dangling,
            });
        }
    }
    for (i, n) in nodes.iter().enumerate() {
        if !n.deleting {
            continue;
        }
        if n.finalizers.iter().any(|f| f == ORPHAN_FINALIZER)
            && !referenced.contains(n.uid.as_str())
        {
            actions.push(GcAction::RemoveFinalizer {
                node: i,
                finalizer: ORPHAN_FINALIZER.into(),
            });
        }
        if n.finalizers.iter().any(|f| f == FOREGROUND_FINALIZER)
            && !blocking.contains(n.uid.as_str())
        {
            actions.push(GcAction::RemoveFinalizer {
                node: i,
                finalizer: FOREGROUND_FINALIZER.into(),
            });
        }
    }
    actions
}

/// Runs the garbage collector until the task is dropped.
pub async fn run(client: Client) -> anyhow::Result<()> {
    let wake = std::sync::Arc::new(Notify::new());
    let triggers = {
        let w1 = wake.clone();
        let w2 = wake.clone();
        let w3 = wake.clone();
        let w4 = wake.clone();
        let c = client.clone();
        async move {
            tokio::join!(
                trigger_on::<Deployment>(Api::all(c.clone()), w1),
                trigger_on::<ReplicaSet>(Api::all(c.clone()), w2),
                trigger_on::<Service>(Api::all(c.clone()), w3),
                trigger_on::<k8s_openapi::api::core::v1::Namespace>(Api::all(c), w4),
            );
        }
    };
    let collector = async {
        let mut types: Vec<ResourceType> = Vec::new();
        let mut discovered_at: Option<Instant> = None;
        loop {
            if discovered_at.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                types = discover(&client).await;
                discovered_at = Some(Instant::now());
            }
            let acted = scan(&client, &types).await;
            if acted {
                // Follow ownership chains quickly.
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
            tokio::select! {
                _ = wake.notified() => tokio::time::sleep(Duration::from_millis(100)).await,
                _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            }
        }
    };
    tokio::join!(triggers, collector);
    Ok(())
}

/// Wakes the collector on deletions and on objects entering deletion.
async fn trigger_on<K>(api: Api<K>, wake: std::sync::Arc<Notify>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::Delete(_)) => wake.notify_one(),
            Ok(watcher::Event::Apply(o)) if o.meta().deletion_timestamp.is_some() => {
                wake.notify_one()
            }
            _ => {}
        }
    }
}

/// One pass over the cluster. Returns whether anything was changed.
async fn scan(client: &Client, types: &[ResourceType]) -> bool {
    let mut nodes = Vec::new();
    for (idx, t) in types.iter().enumerate() {
        // Events are never owners and are the most numerous objects.
        if t.ar.kind == "Event" {
            continue;
        }
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &t.ar);
        let Ok(list) = api.list(&ListParams::default()).await else {
            continue;
        };
        for obj in list.items {
            let m = obj.metadata;
            let (Some(name), Some(uid)) = (m.name, m.uid) else {
                continue;
            };
            nodes.push(Node {
                type_idx: idx,
                namespace: m.namespace,
                name,
                uid,
                owners: m.owner_references.unwrap_or_default(),
                deleting: m.deletion_timestamp.is_some(),
                finalizers: m.finalizers.unwrap_or_default(),
            });
        }
    }
    let namespaced: Vec<bool> = types.iter().map(|t| t.namespaced).collect();
    let actions = plan(&nodes, &namespaced);
    let mut acted = false;
    for a in actions {
        match execute(client, types, &nodes, &a).await {
            Ok(true) => acted = true,
            Ok(false) => {}
            Err(e) => {
                tracing::debug!(action = ?a, error = %e, "garbage collector action failed; will retry")
            }
        }
    }
    acted
}

fn api_for(client: &Client, t: &ResourceType, ns: Option<&str>) -> Api<DynamicObject> {
    match (t.namespaced, ns) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &t.ar),
        _ => Api::all_with(client.clone(), &t.ar),
    }
}

/// Confirms with a live read that an owner is gone (404 or another uid).
/// Unknown owner kinds are treated as present: never delete on a guess.
async fn owner_absent(
    client: &Client,
    types: &[ResourceType],
    dependent: &Node,
    r: &OwnerReference,
) -> Result<bool, kube::Error> {
    let Some(t) = resolve(types, &r.api_version, &r.kind) else {
        return Ok(false);
    };
    let api = api_for(client, t, dependent.namespace.as_deref());
    match api.get_opt(&r.name).await? {
        None => Ok(true),
        Some(o) => Ok(o.metadata.uid.as_deref() != Some(r.uid.as_str())),
    }
}

async fn execute(
    client: &Client,
    types: &[ResourceType],
    nodes: &[Node],
    a: &GcAction,
) -> Result<bool, kube::Error> {
    match a {
        GcAction::Delete {
            node,
            foreground,
            verify,
        } => {
            let n = &nodes[*node];
            for r in verify {
                if !owner_absent(client, types, n, r).await? {
                    return Ok(false);
                }
            }
            let api = api_for(client, &types[n.type_idx], n.namespace.as_deref());
            let dp = DeleteParams {
                propagation_policy: Some(if *foreground {
                    PropagationPolicy::Foreground
                } else {
                    PropagationPolicy::Background
                }),
                preconditions: Some(Preconditions {
                    uid: Some(n.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            tracing::info!(kind = %types[n.type_idx].ar.kind, namespace = ?n.namespace, name = %n.name, "garbage collecting");
            match api.delete(&n.name, &dp).await {
                Ok(_) => Ok(true),
                Err(e) if is_not_found(&e) => Ok(false),
                Err(e) => Err(e),
            }
        }
        GcAction::RemoveOwners { node, uids } => {
            let n = &nodes[*node];
            let refs: Vec<&OwnerReference> =
                n.owners.iter().filter(|r| !uids.contains(&r.uid)).collect();
            let patch = serde_json::json!({"metadata": {"ownerReferences": refs, "uid": n.uid}});
            let api = api_for(client, &types[n.type_idx], n.namespace.as_deref());
            match api
                .patch(&n.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => Ok(true),
                Err(e) if is_not_found(&e) => Ok(false),
                Err(e) => Err(e),
            }
        }
        GcAction::RemoveFinalizer { node, finalizer } => {
            let n = &nodes[*node];
            let rest: Vec<&String> = n.finalizers.iter().filter(|f| *f != finalizer).collect();
            let patch = serde_json::json!({"metadata": {"finalizers": rest, "uid": n.uid}});
            let api = api_for(client, &types[n.type_idx], n.namespace.as_deref());
            match api
                .patch(&n.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => Ok(true),
                Err(e) if is_not_found(&e) => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner_ref(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: format!("n-{uid}"),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(block),
        }
    }

    fn node(uid: &str, owners: Vec<OwnerReference>, deleting: bool, finalizers: &[&str]) -> Node {
        Node {
            type_idx: 0,
            namespace: Some("default".into()),
            name: format!("n-{uid}"),
            uid: uid.into(),
            owners,
            deleting,
            finalizers: finalizers.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn orphans_with_all_owners_gone_are_deleted() {
        let nodes = vec![node("pod", vec![owner_ref("rs", true)], false, &[])];
        assert_eq!(
            plan(&nodes, &[true]),
            vec![GcAction::Delete {
                node: 0,
                foreground: false,
                verify: vec![owner_ref("rs", true)]
            }]
        );
    }

    #[test]
    fn live_owner_keeps_object_and_drops_dangling_refs() {
        let nodes = vec![
            node("rs", vec![], false, &[]),
            node(
                "pod",
                vec![owner_ref("rs", true), owner_ref("gone", false)],
                false,
                &[],
            ),
        ];
        assert_eq!(
            plan(&nodes, &[true]),
            vec![GcAction::RemoveOwners {
                node: 1,
                uids: vec!["gone".into()]
            }]
        );
        let healthy = vec![
            node("rs", vec![], false, &[]),
            node("pod", vec![owner_ref("rs", true)], false, &[]),
        ];
        assert!(plan(&healthy, &[true]).is_empty());
    }

    #[test]
    fn owner_in_other_namespace_does_not_count() {
        let mut owner = node("rs", vec![], false, &[]);
        owner.namespace = Some("other".into());
        let nodes = vec![owner, node("pod", vec![owner_ref("rs", true)], false, &[])];
        assert!(matches!(
            plan(&nodes, &[true])[0],
            GcAction::Delete { node: 1, .. }
        ));
    }

    #[test]
    fn orphan_policy_releases_dependents_then_finalizer() {
        let nodes = vec![
            node("rs", vec![], true, &["orphan"]),
            node("pod", vec![owner_ref("rs", true)], false, &[]),
        ];
        assert_eq!(
            plan(&nodes, &[true]),
            vec![GcAction::RemoveOwners {
                node: 1,
                uids: vec!["rs".into()]
            }]
        );
        let released = vec![
            node("rs", vec![], true, &["orphan"]),
            node("pod", vec![], false, &[]),
        ];
        assert_eq!(
            plan(&released, &[true]),
            vec![GcAction::RemoveFinalizer {
                node: 0,
                finalizer: "orphan".into()
            }]
        );
    }

    #[test]
    fn foreground_deletes_dependents_before_owner() {
        let nodes = vec![
            node("rs", vec![], true, &["foregroundDeletion"]),
            node("pod", vec![owner_ref("rs", true)], false, &[]),
        ];
        assert_eq!(
            plan(&nodes, &[true]),
            vec![GcAction::Delete {
                node: 1,
                foreground: true,
                verify: vec![]
            }]
        );
        // Dependent terminating: still blocks the owner.
        let waiting = vec![
            node("rs", vec![], true, &["foregroundDeletion"]),
            node("pod", vec![owner_ref("rs", true)], true, &[]),
        ];
        assert!(plan(&waiting, &[true]).is_empty());
        let done = vec![node("rs", vec![], true, &["foregroundDeletion"])];
        assert_eq!(
            plan(&done, &[true]),
            vec![GcAction::RemoveFinalizer {
                node: 0,
                finalizer: "foregroundDeletion".into()
            }]
        );
    }
}
