//! ServiceAccount controller: every Active namespace has a `default`
//! ServiceAccount; it is recreated when deleted. Touches nothing else.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::util::is_conflict;

pub const DEFAULT_SA: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("talking to the API server failed: {0}")]
    Kube(#[from] kube::Error),
}

struct Ctx {
    client: Client,
}

/// Whether a namespace should have its default ServiceAccount: Active (or
/// no phase yet) and not being deleted.
pub fn namespace_wants_default_sa(ns: &Namespace) -> bool {
    let phase = ns
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Active");
    phase == "Active" && ns.metadata.deletion_timestamp.is_none()
}

/// The `default` ServiceAccount of a namespace.
pub fn default_service_account(ns: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT_SA.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Runs the ServiceAccount controller until the task is dropped.
pub async fn run(client: Client) -> anyhow::Result<()> {
    let ctx = Arc::new(Ctx {
        client: client.clone(),
    });
    Controller::new(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<ServiceAccount>::all(client),
        watcher::Config::default(),
        |sa: ServiceAccount| {
            (sa.name_any() == DEFAULT_SA)
                .then(|| sa.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns)))
                .flatten()
        },
    )
    .run(reconcile, error_policy, ctx)
    .for_each(|res| async move {
        if let Err(e) = res {
            tracing::debug!(error = %e, "serviceaccount reconcile");
        }
    })
    .await;
    Ok(())
}

fn error_policy(_ns: Arc<Namespace>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(error = %err, "serviceaccount reconcile failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if !namespace_wants_default_sa(&ns) {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    if api.get_opt(DEFAULT_SA).await?.is_none() {
        match api
            .create(&PostParams::default(), &default_service_account(&name))
            .await
        {
            Ok(_) => tracing::debug!(namespace = %name, "created default serviceaccount"),
            Err(e) if is_conflict(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ns(phase: Option<&str>, deleting: bool) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some("team".into()),
                deletion_timestamp: deleting
                    .then_some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
                ..Default::default()
            },
            spec: None,
            status: Some(NamespaceStatus {
                phase: phase.map(Into::into),
                conditions: None,
            }),
        }
    }

    #[test]
    fn only_active_namespaces_get_default_sa() {
        assert!(namespace_wants_default_sa(&ns(Some("Active"), false)));
        assert!(namespace_wants_default_sa(&ns(None, false)));
        assert!(!namespace_wants_default_sa(&ns(Some("Terminating"), false)));
        assert!(!namespace_wants_default_sa(&ns(Some("Active"), true)));
        let sa = default_service_account("team");
        assert_eq!(
            (sa.name_any(), sa.namespace()),
            ("default".to_string(), Some("team".to_string()))
        );
    }
}
