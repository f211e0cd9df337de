//! Namespace controller: when a Namespace has a deletionTimestamp, delete
//! every namespaced object in it (every type discovery reports, not a fixed
//! list), wait until nothing is left, then remove the `kubernetes` finalizer
//! through `PUT /api/v1/namespaces/{name}/finalize` so the apiserver can
//! delete the Namespace. Active namespaces are not touched.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::discovery::{discover, ResourceType};
use crate::util::is_not_found;

/// The finalizer the namespace controller owns.
pub const KUBERNETES_FINALIZER: &str = "kubernetes";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("talking to the API server failed: {0}")]
    Kube(#[from] kube::Error),
}

struct Ctx {
    client: Client,
}

/// Whether the namespace is being deleted and still waits for us.
pub fn needs_finalize(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_some()
        && ns
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.as_ref())
            .is_some_and(|f| f.iter().any(|x| x == KUBERNETES_FINALIZER))
}

/// The Namespace body for `/finalize`: spec.finalizers without `kubernetes`.
pub fn finalized(ns: &Namespace) -> Namespace {
    let mut out = ns.clone();
    if let Some(spec) = out.spec.as_mut() {
        if let Some(f) = spec.finalizers.as_mut() {
            f.retain(|x| x != KUBERNETES_FINALIZER);
        }
    }
    out
}

/// Types whose objects the namespace controller deletes.
pub fn deletable_namespaced(types: &[ResourceType]) -> Vec<&ResourceType> {
    types
        .iter()
        .filter(|t| t.namespaced && t.deletable)
        .collect()
}

/// kube's namespace deletion conditions (type, status, reason, message)
/// for what is left: objects by resource (`configmaps`, `deployments.apps`)
/// and the finalizers they hold.
pub fn deletion_conditions(
    left: &BTreeMap<String, usize>,
    finalizers: &BTreeMap<String, usize>,
) -> Vec<(&'static str, &'static str, &'static str, String)> {
    let mut out = vec![
        (
            "NamespaceDeletionDiscoveryFailure",
            "False",
            "ResourcesDiscovered",
            "All resources successfully discovered".to_string(),
        ),
        (
            "NamespaceDeletionGroupVersionParsingFailure",
            "False",
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".to_string(),
        ),
        (
            "NamespaceDeletionContentFailure",
            "False",
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization".to_string(),
        ),
    ];
    if left.is_empty() {
        out.push((
            "NamespaceContentRemaining",
            "False",
            "ContentRemoved",
            "All content successfully removed".to_string(),
        ));
    } else {
        let parts: Vec<String> = left
            .iter()
            .map(|(r, n)| format!("{r} has {n} resource instances"))
            .collect();
        out.push((
            "NamespaceContentRemaining",
            "True",
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", parts.join(", ")),
        ));
    }
    if finalizers.is_empty() {
        out.push((
            "NamespaceFinalizersRemaining",
            "False",
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished".to_string(),
        ));
    } else {
        let parts: Vec<String> = finalizers
            .iter()
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        out.push((
            "NamespaceFinalizersRemaining",
            "True",
            "SomeFinalizersRemain",
            format!(
                "Some content in the namespace has finalizers remaining: {}",
                parts.join(", ")
            ),
        ));
    }
    out
}

fn same_conditions(
    ns: &Namespace,
    want: &[(&'static str, &'static str, &'static str, String)],
) -> bool {
    let have: Vec<(String, String, String)> = ns
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c.type_.clone(),
                c.status.clone(),
                c.message.clone().unwrap_or_default(),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(t, s, _, m)| (t.to_string(), s.to_string(), m.clone()))
        .collect();
    have == want
}

/// Runs the Namespace controller until the task is dropped.
pub async fn run(client: Client) -> anyhow::Result<()> {
    let ctx = Arc::new(Ctx {
        client: client.clone(),
    });
    Controller::new(Api::<Namespace>::all(client), watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "namespace reconcile");
            }
        })
        .await;
    Ok(())
}

fn error_policy(_ns: Arc<Namespace>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(error = %err, "namespace reconcile failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if !needs_finalize(&ns) {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let ns_api: Api<Namespace> = Api::all(ctx.client.clone());
    if ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating") {
        let patch = serde_json::json!({"status": {"phase": "Terminating"}});
        if let Err(e) = ns_api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::debug!(namespace = %name, error = %e, "could not set phase Terminating");
        }
    }
    let types = discover(&ctx.client).await;
    let mut remaining = 0usize;
    // what is left, for the status conditions kubectl describe shows
    let mut left_by_resource: BTreeMap<String, usize> = BTreeMap::new();
    let mut left_finalizers: BTreeMap<String, usize> = BTreeMap::new();
    for t in deletable_namespaced(&types) {
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &name, &t.ar);
        let list = match api.list(&ListParams::default()).await {
            Ok(l) => l,
            Err(e) if is_not_found(&e) || matches!(&e, kube::Error::Api(s) if s.code == 405) => {
                continue
            }
            Err(e) => {
                tracing::debug!(kind = %t.ar.kind, error = %e, "could not list for namespace deletion");
                remaining += 1;
                continue;
            }
        };
        for obj in list.items {
            remaining += 1;
            let gr = if t.ar.group.is_empty() {
                t.ar.plural.clone()
            } else {
                format!("{}.{}", t.ar.plural, t.ar.group)
            };
            *left_by_resource.entry(gr).or_default() += 1;
            for f in obj.metadata.finalizers.iter().flatten() {
                *left_finalizers.entry(f.clone()).or_default() += 1;
            }
            if obj.metadata.deletion_timestamp.is_some() {
                continue;
            }
            match api
                .delete(&obj.name_any(), &DeleteParams::background())
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    tracing::debug!(kind = %t.ar.kind, name = %obj.name_any(), error = %e, "could not delete")
                }
            }
        }
    }
    let conditions = deletion_conditions(&left_by_resource, &left_finalizers);
    if !same_conditions(&ns, &conditions) {
        let now = crate::util::now_time();
        let conds: Vec<serde_json::Value> = conditions
            .iter()
            .map(|(ty, status, reason, message)| {
                serde_json::json!({"type": ty, "status": status, "reason": reason,
                    "message": message, "lastTransitionTime": now})
            })
            .collect();
        let patch = serde_json::json!({"status": {"conditions": conds}});
        if let Err(e) = ns_api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::debug!(namespace = %name, error = %e, "could not set deletion conditions");
        }
    }
    if remaining > 0 {
        tracing::debug!(namespace = %name, remaining, "waiting for namespace content to go away");
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    // Finalize with the freshest object (the PUT carries the whole Namespace).
    let fresh = match ns_api.get(&name).await {
        Ok(n) => n,
        Err(e) if is_not_found(&e) => return Ok(Action::await_change()),
        Err(e) => return Err(e.into()),
    };
    if !needs_finalize(&fresh) {
        return Ok(Action::await_change());
    }
    match ns_api
        .replace_subresource(
            "finalize",
            &name,
            &PostParams::default(),
            &finalized(&fresh),
        )
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(e) if is_not_found(&e) => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::builtin_types;
    use k8s_openapi::api::core::v1::NamespaceSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn ns(deleting: bool, finalizers: &[&str]) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some("team".into()),
                deletion_timestamp: deleting
                    .then_some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
                ..Default::default()
            },
            spec: Some(NamespaceSpec {
                finalizers: Some(finalizers.iter().map(|s| s.to_string()).collect()),
            }),
            status: None,
        }
    }

    #[test]
    fn finalize_only_deleting_namespaces_with_our_finalizer() {
        assert!(needs_finalize(&ns(true, &["kubernetes"])));
        assert!(!needs_finalize(&ns(false, &["kubernetes"])));
        assert!(!needs_finalize(&ns(true, &[])));
        let f = finalized(&ns(true, &["kubernetes", "example.com/x"]));
        assert_eq!(
            f.spec.and_then(|s| s.finalizers),
            Some(vec!["example.com/x".to_string()])
        );
    }

    #[test]
    fn deletion_conditions_name_what_is_left() {
        let left = BTreeMap::from([("configmaps".to_string(), 1)]);
        let fins = BTreeMap::from([("example.com/hold".to_string(), 1)]);
        let c = deletion_conditions(&left, &fins);
        let remaining = c
            .iter()
            .find(|c| c.0 == "NamespaceContentRemaining")
            .unwrap();
        assert_eq!(remaining.1, "True");
        assert_eq!(
            remaining.3,
            "Some resources are remaining: configmaps has 1 resource instances"
        );
        let f = c
            .iter()
            .find(|c| c.0 == "NamespaceFinalizersRemaining")
            .unwrap();
        assert_eq!(
            f.3,
            "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
        );
        let done = deletion_conditions(&BTreeMap::new(), &BTreeMap::new());
        assert!(done.iter().all(|c| c.1 == "False"));
    }

    #[test]
    fn deletes_every_namespaced_type_but_not_cluster_ones() {
        let types = builtin_types();
        let kinds: Vec<&str> = deletable_namespaced(&types)
            .iter()
            .map(|t| t.ar.kind.as_str())
            .collect();
        for k in [
            "Pod",
            "Service",
            "Endpoints",
            "EndpointSlice",
            "ConfigMap",
            "Secret",
            "ServiceAccount",
            "Event",
            "Deployment",
            "ReplicaSet",
            "Lease",
        ] {
            assert!(kinds.contains(&k), "{k} missing");
        }
        assert!(!kinds.contains(&"Node") && !kinds.contains(&"Namespace"));
    }
}
