//! Namespace controller: when a Namespace has a deletionTimestamp, delete
//! every namespaced object in it (every type discovery reports, not a fixed
//! list), wait until nothing is left, then remove the `kubernetes` finalizer
//! through `PUT /api/v1/namespaces/{name}/finalize` so the apiserver can
//! delete the Namespace. Active namespaces are not touched.

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
