//! ResourceQuota controller: keeps every quota's `status.hard` (a copy of
//! `spec.hard`) and `status.used` (recomputed from the objects in its
//! namespace) current, so `kubectl describe quota` shows Used / Hard right.
//! The apiserver's quota admission charges `status.used` at each create;
//! this controller is the source of truth that also releases usage when
//! objects go away or pods finish. It runs on quota changes, on changes to
//! the objects quotas usually count (pods, services, PVCs, configmaps,
//! secrets), and every `RESYNC` for everything else (`count/<r>.<g>`).
//!
//! The usage rules (which object uses what, in quota resource names, and
//! which quota scopes select it) are `minik_apimachinery::quota`, the same
//! code the apiserver's quota admission charges with.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ResourceQuota, ResourceQuotaStatus, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use minik_apimachinery::quota::{compute_used, counted_resource, parse_list, ResourceList};
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::discovery::{builtin_types, ResourceType};
use crate::util::{is_conflict, is_not_found};

/// How often every quota is recomputed even without a triggering change.
pub const RESYNC: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("talking to the API server failed: {0}")]
    Kube(#[from] kube::Error),
}

// ------------------------------------------------------------ controller

fn to_k8s(l: &ResourceList) -> BTreeMap<String, K8sQuantity> {
    l.iter()
        .map(|(k, v)| (k.clone(), K8sQuantity(v.to_string())))
        .collect()
}

/// Finds the API type for a (group, resource), from the built-in list, else discovery.
async fn resource_type(
    client: &Client,
    cache: &mut Vec<ResourceType>,
    group: &str,
    resource: &str,
) -> Option<ResourceType> {
    let find = |types: &[ResourceType]| {
        types
            .iter()
            .find(|t| t.ar.group == group && t.ar.plural == resource && t.namespaced)
            .cloned()
    };
    if let Some(t) = find(cache) {
        return Some(t);
    }
    let discovered = crate::discovery::discover(client).await;
    let found = find(&discovered);
    if found.is_some() {
        *cache = discovered;
    }
    found
}

/// Recomputes one namespace's quotas; writes status only when it changed.
async fn sync_namespace(
    client: &Client,
    types: &mut Vec<ResourceType>,
    ns: &str,
    quotas: Vec<ResourceQuota>,
) -> Result<(), Error> {
    let qapi: Api<ResourceQuota> = Api::namespaced(client.clone(), ns);
    for quota in quotas {
        // up to a few tries: a conflict means admission charged meanwhile
        for _ in 0..5 {
            let Some(fresh) = qapi.get_opt(&quota.name_any()).await? else {
                break;
            };
            let qv = serde_json::to_value(&fresh).unwrap_or(json!({}));
            let hard = parse_list(qv.pointer("/spec/hard"));
            let wanted: BTreeSet<(String, String)> =
                hard.keys().filter_map(|k| counted_resource(k)).collect();
            let mut objects = BTreeMap::new();
            for (g, r) in wanted {
                let Some(t) = resource_type(client, types, &g, &r).await else {
                    continue;
                };
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &t.ar);
                let list = match api.list(&ListParams::default()).await {
                    Ok(l) => l,
                    Err(e) if is_not_found(&e) => continue,
                    Err(e) => return Err(e.into()),
                };
                let items: Vec<Value> = list
                    .items
                    .iter()
                    .filter_map(|o| serde_json::to_value(o).ok())
                    .collect();
                objects.insert((g, r), items);
            }
            let used = compute_used(&qv, &objects);
            let want = ResourceQuotaStatus {
                hard: Some(to_k8s(&hard)),
                used: Some(to_k8s(&used)),
            };
            let same = fresh.status.as_ref().is_some_and(|s| {
                let norm = |m: &Option<BTreeMap<String, K8sQuantity>>| -> ResourceList {
                    parse_list(serde_json::to_value(m).ok().as_ref())
                };
                norm(&s.hard) == hard && norm(&s.used) == used
            });
            if same {
                break;
            }
            let mut updated = fresh.clone();
            updated.status = Some(want);
            match qapi
                .replace_status(&fresh.name_any(), &PostParams::default(), &updated)
                .await
            {
                Ok(_) => break,
                Err(e) if is_conflict(&e) => continue,
                Err(e) if is_not_found(&e) => break,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

async fn sync_all(client: &Client, types: &mut Vec<ResourceType>) -> Result<(), Error> {
    let all: Api<ResourceQuota> = Api::all(client.clone());
    let mut by_ns: BTreeMap<String, Vec<ResourceQuota>> = BTreeMap::new();
    for q in all.list(&ListParams::default()).await?.items {
        by_ns
            .entry(q.namespace().unwrap_or_default())
            .or_default()
            .push(q);
    }
    for (ns, quotas) in by_ns {
        sync_namespace(client, types, &ns, quotas).await?;
    }
    Ok(())
}

/// Wakes `notify` on every event of a watched type.
async fn trigger<K>(api: Api<K>, notify: Arc<Notify>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + fmt::Debug + Send + 'static,
{
    let mut s = watcher(api, watcher::Config::default()).boxed();
    while let Some(ev) = s.next().await {
        match ev {
            Ok(watcher::Event::Apply(_))
            | Ok(watcher::Event::Delete(_))
            | Ok(watcher::Event::InitDone) => notify.notify_one(),
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "resourcequota trigger watch");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Runs the ResourceQuota controller until the task is dropped.
pub async fn run(client: Client) -> anyhow::Result<()> {
    let notify = Arc::new(Notify::new());
    let c = &client;
    let triggers = futures::future::join_all(vec![
        trigger(Api::<ResourceQuota>::all(c.clone()), notify.clone()).boxed(),
        trigger(Api::<Pod>::all(c.clone()), notify.clone()).boxed(),
        trigger(Api::<Service>::all(c.clone()), notify.clone()).boxed(),
        trigger(Api::<PersistentVolumeClaim>::all(c.clone()), notify.clone()).boxed(),
        trigger(Api::<ConfigMap>::all(c.clone()), notify.clone()).boxed(),
        trigger(Api::<Secret>::all(c.clone()), notify.clone()).boxed(),
    ]);
    let worker = async {
        let mut types = builtin_types();
        loop {
            if let Err(e) = sync_all(&client, &mut types).await {
                tracing::warn!(error = %e, "resourcequota sync failed; retrying");
            }
            let _ = tokio::time::timeout(RESYNC, notify.notified()).await;
            // let a burst of changes settle into one pass
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        _ = triggers => {}
        _ = worker => {}
    }
    Ok(())
}
