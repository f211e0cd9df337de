//! EndpointSlice controller: for every Service with a selector, IPv4
//! EndpointSlices named `<service>-<random>` (generateName), labelled
//! `kubernetes.io/service-name` and managed-by
//! `endpointslice-controller.k8s.io`, owned by the Service (so the garbage
//! collector removes them with it). One endpoint per selected pod with
//! conditions ready/serving/terminating, nodeName and targetRef; endpoints
//! grouped by resolved port set, at most 100 per slice.
//!
//! Touches only slices carrying its managed-by label; Services without a
//! selector are left alone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::endpoints::{
    pod_hostname, pod_is_endpoint, pod_ref, resolve_target_port, service_selector,
    services_selecting,
};
use crate::util::{
    controller_owner_ref, is_conflict, is_not_found, is_pod_ready, map_selector_matches,
};

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "endpointslice-controller.k8s.io";
const MAX_ENDPOINTS_PER_SLICE: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Service has no namespace or name; it cannot be reconciled")]
    MissingMeta,
    #[error("talking to the API server failed: {0}")]
    Kube(#[from] kube::Error),
}

struct Ctx {
    client: Client,
}

/// One desired slice: its ports and endpoints.
#[derive(Clone, Debug, PartialEq)]
pub struct SliceContent {
    pub ports: Vec<EndpointPort>,
    pub endpoints: Vec<Endpoint>,
}

/// Desired slices for a Service over the namespace's pods. A Service that
/// selects nothing still gets one empty slice (as kube's placeholder).
pub fn desired_slices(svc: &Service, pods: &[Pod]) -> Vec<SliceContent> {
    let Some(selector) = service_selector(svc) else {
        return vec![];
    };
    let svc_name = svc.name_any();
    let svc_ports: Vec<ServicePort> = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let tolerate = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let mut groups: BTreeMap<String, SliceContent> = BTreeMap::new();
    for pod in pods {
        if !map_selector_matches(selector, pod.labels()) || !pod_is_endpoint(pod, true) {
            continue;
        }
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
            continue;
        };
        if ip.contains(':') {
            continue; // IPv6: this cluster's slices are IPv4.
        }
        let ports: Vec<EndpointPort> = svc_ports
            .iter()
            .filter_map(|sp| {
                Some(EndpointPort {
                    name: Some(sp.name.clone().unwrap_or_default()),
                    port: Some(resolve_target_port(sp, pod)?),
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        if !svc_ports.is_empty() && ports.is_empty() {
            continue;
        }
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let ready = is_pod_ready(pod);
        let ep = Endpoint {
            addresses: vec![ip],
            conditions: Some(EndpointConditions {
                ready: Some((ready || tolerate) && !terminating),
                serving: Some(ready || tolerate),
                terminating: Some(terminating),
            }),
            hostname: pod_hostname(pod, &svc_name),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(pod_ref(pod)),
            ..Default::default()
        };
        let key = ports
            .iter()
            .map(|p| {
                format!(
                    "{}/{}/{}",
                    p.name.as_deref().unwrap_or(""),
                    p.port.unwrap_or(0),
                    p.protocol.as_deref().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        groups
            .entry(key)
            .or_insert_with(|| SliceContent {
                ports,
                endpoints: vec![],
            })
            .endpoints
            .push(ep);
    }
    let mut out = Vec::new();
    for (_, mut g) in groups {
        g.endpoints.sort_by(|a, b| a.addresses.cmp(&b.addresses));
        for chunk in g.endpoints.chunks(MAX_ENDPOINTS_PER_SLICE) {
            out.push(SliceContent {
                ports: g.ports.clone(),
                endpoints: chunk.to_vec(),
            });
        }
    }
    if out.is_empty() {
        out.push(SliceContent {
            ports: vec![],
            endpoints: vec![],
        });
    }
    out
}

/// Labels of a slice: the Service's, plus service-name, managed-by and
/// (for `clusterIP: None`) headless.
pub fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut l = svc.labels().clone();
    l.insert(SERVICE_NAME_LABEL.into(), svc.name_any());
    l.insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
    let headless = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None");
    if headless {
        l.insert("service.kubernetes.io/headless".into(), String::new());
    }
    l
}

/// What to do with the existing slices of a Service.
#[derive(Debug, Default, PartialEq)]
pub struct SlicePlan {
    pub create: Vec<SliceContent>,
    /// (existing slice name, new content)
    pub update: Vec<(String, SliceContent)>,
    pub delete: Vec<String>,
}

fn content_of(s: &EndpointSlice) -> SliceContent {
    SliceContent {
        ports: s.ports.clone().unwrap_or_default(),
        endpoints: s.endpoints.clone(),
    }
}

/// Matches desired slices to existing ones: an identical slice is kept, then
/// one with the same ports is updated, then any leftover is reused; the rest
/// are created or deleted. `labels_ok(name)` says whether a slice's labels
/// are already right (wrong labels force an update).
pub fn plan_slices(
    existing: &[EndpointSlice],
    desired: Vec<SliceContent>,
    labels_ok: impl Fn(&EndpointSlice) -> bool,
) -> SlicePlan {
    let mut unused: Vec<&EndpointSlice> = existing.iter().collect();
    let mut plan = SlicePlan::default();
    let mut pending = Vec::new();
    for want in desired {
        if let Some(i) = unused
            .iter()
            .position(|s| content_of(s) == want && labels_ok(s))
        {
            unused.remove(i);
        } else {
            pending.push(want);
        }
    }
    let mut still = Vec::new();
    for want in pending {
        if let Some(i) = unused
            .iter()
            .position(|s| s.ports.clone().unwrap_or_default() == want.ports)
        {
            plan.update.push((unused.remove(i).name_any(), want));
        } else {
            still.push(want);
        }
    }
    for want in still {
        if unused.is_empty() {
            plan.create.push(want);
        } else {
            plan.update.push((unused.remove(0).name_any(), want));
        }
    }
    plan.delete = unused.iter().map(|s| s.name_any()).collect();
    plan
}

/// Runs the EndpointSlice controller until the task is dropped.
pub async fn run(client: Client) -> anyhow::Result<()> {
    let controller = Controller::new(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    );
    let store = controller.store();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
    });
    controller
        .watches(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default(),
            move |pod: Pod| services_selecting(&store, &pod),
        )
        .owns(
            Api::<EndpointSlice>::all(client),
            watcher::Config::default(),
        )
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "endpointslice reconcile");
            }
        })
        .await;
    Ok(())
}

fn error_policy(_svc: Arc<Service>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(error = %err, "endpointslice reconcile failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let (Some(ns), Some(name)) = (svc.metadata.namespace.clone(), svc.metadata.name.clone()) else {
        return Err(Error::MissingMeta);
    };
    if service_selector(&svc).is_none() || svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default())
        .await?
        .items;
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    let existing: Vec<EndpointSlice> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|s| {
            s.labels().get(SERVICE_NAME_LABEL) == Some(&name)
                && s.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE)
                && s.metadata.deletion_timestamp.is_none()
        })
        .collect();
    let labels = slice_labels(&svc);
    let owner = controller_owner_ref(svc.as_ref());
    let owner_ok = |s: &EndpointSlice| {
        s.metadata
            .owner_references
            .as_ref()
            .and_then(|o| o.first())
            .map(|o| &o.uid)
            == owner.as_ref().map(|o| &o.uid)
    };
    let plan = plan_slices(&existing, desired_slices(&svc, &pods), |s| {
        s.metadata.labels.as_ref() == Some(&labels) && owner_ok(s)
    });
    for content in plan.create {
        let slice = EndpointSlice {
            metadata: ObjectMeta {
                generate_name: Some(format!("{name}-")),
                namespace: Some(ns.clone()),
                labels: Some(labels.clone()),
                owner_references: owner.clone().map(|o| vec![o]),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: content.endpoints,
            ports: Some(content.ports),
        };
        api.create(&PostParams::default(), &slice).await?;
    }
    for (slice_name, content) in plan.update {
        let Some(mut cur) = existing
            .iter()
            .find(|s| s.name_any() == slice_name)
            .cloned()
        else {
            continue;
        };
        cur.metadata.labels = Some(labels.clone());
        cur.metadata.owner_references = owner.clone().map(|o| vec![o]);
        cur.endpoints = content.endpoints;
        cur.ports = Some(content.ports);
        match api.replace(&slice_name, &PostParams::default(), &cur).await {
            Ok(_) => {}
            Err(e) if is_conflict(&e) || is_not_found(&e) => {
                return Ok(Action::requeue(Duration::from_millis(200)))
            }
            Err(e) => return Err(e.into()),
        }
    }
    for slice_name in plan.delete {
        match api.delete(&slice_name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::tests::{web_pod, web_service};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    #[test]
    fn slices_carry_conditions_ports_and_refs() {
        let svc = web_service(IntOrString::String("http".into()));
        let mut term = web_pod("t", "10.244.0.9", true);
        term.metadata.deletion_timestamp = term.metadata.creation_timestamp.clone();
        let slices = desired_slices(
            &svc,
            &[
                web_pod("b", "10.244.0.6", false),
                web_pod("a", "10.244.0.5", true),
                term,
            ],
        );
        assert_eq!(slices.len(), 1);
        let s = &slices[0];
        assert_eq!(s.ports[0].port, Some(8080));
        assert_eq!(s.ports[0].name.as_deref(), Some("http"));
        let conds: Vec<(String, bool, bool, bool)> = s
            .endpoints
            .iter()
            .map(|e| {
                let c = e.conditions.clone().unwrap_or_default();
                (
                    e.addresses[0].clone(),
                    c.ready.unwrap_or(false),
                    c.serving.unwrap_or(false),
                    c.terminating.unwrap_or(false),
                )
            })
            .collect();
        assert_eq!(
            conds,
            vec![
                ("10.244.0.5".into(), true, true, false),
                ("10.244.0.6".into(), false, false, false),
                ("10.244.0.9".into(), false, true, true),
            ]
        );
        assert_eq!(s.endpoints[0].node_name.as_deref(), Some("minik"));
        assert_eq!(
            s.endpoints[0]
                .target_ref
                .as_ref()
                .and_then(|r| r.kind.as_deref()),
            Some("Pod")
        );
        let l = slice_labels(&svc);
        assert_eq!(l.get(SERVICE_NAME_LABEL).map(String::as_str), Some("web"));
        assert_eq!(
            l.get(MANAGED_BY_LABEL).map(String::as_str),
            Some(MANAGED_BY_VALUE)
        );
    }

    #[test]
    fn no_pods_gives_one_empty_slice() {
        let svc = web_service(IntOrString::Int(80));
        assert_eq!(
            desired_slices(&svc, &[]),
            vec![SliceContent {
                ports: vec![],
                endpoints: vec![]
            }]
        );
    }

    fn existing(name: &str, content: &SliceContent) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: content.endpoints.clone(),
            ports: Some(content.ports.clone()),
        }
    }

    #[test]
    fn plan_keeps_identical_updates_changed_deletes_extra() {
        let svc = web_service(IntOrString::Int(80));
        let want = desired_slices(&svc, &[web_pod("a", "10.244.0.5", true)]);
        let same = existing("web-aaaaa", &want[0]);
        let plan = plan_slices(std::slice::from_ref(&same), want.clone(), |_| true);
        assert_eq!(plan, SlicePlan::default());
        let stale = existing(
            "web-bbbbb",
            &SliceContent {
                ports: want[0].ports.clone(),
                endpoints: vec![],
            },
        );
        let plan = plan_slices(&[stale.clone(), same.clone()], want.clone(), |_| true);
        assert_eq!(plan.delete, vec!["web-bbbbb".to_string()]);
        assert!(plan.create.is_empty() && plan.update.is_empty());
        let plan = plan_slices(&[stale], want.clone(), |_| true);
        assert_eq!(plan.update.len(), 1);
        assert_eq!(plan.update[0].0, "web-bbbbb");
        let plan = plan_slices(&[], want, |_| true);
        assert_eq!(plan.create.len(), 1);
    }
}
