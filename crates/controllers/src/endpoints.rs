//! Endpoints controller: for every Service with a selector, an `Endpoints`
//! object of the same name listing the selected pods' IPs (Ready pods in
//! `addresses`, others in `notReadyAddresses`) with ports resolved from each
//! Service port's `targetPort` (a number, or a named container port).
//! Deletes the Endpoints it manages when their Service goes away. Services
//! without a selector are left alone (their Endpoints belong to the user).
//!
//! Also holds the pod/port selection shared with the EndpointSlice controller.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::util::{is_conflict, is_not_found, is_pod_ready, map_selector_matches, pod_phase};

/// Label on Endpoints this controller manages (as kube 1.33).
pub const MANAGED_BY_LABEL: &str = "endpoints.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "endpoint-controller";
const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

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

/// The Service's selector, None for selector-less Services.
pub fn service_selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
}

/// Services in `ns` that select `pod` (for mapping pod events to Services).
pub fn services_selecting(store: &Store<Service>, pod: &Pod) -> Vec<ObjectRef<Service>> {
    let ns = pod.namespace().unwrap_or_default();
    store
        .state()
        .iter()
        .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
        .filter(|s| service_selector(s).is_some_and(|sel| map_selector_matches(sel, pod.labels())))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// Resolves a Service port's targetPort for `pod` (kube's `podutil.FindPort`):
/// a number as is, a name via the pod's container ports with that name and
/// protocol. None when the named port does not exist in this pod.
pub fn resolve_target_port(sp: &ServicePort, pod: &Pod) -> Option<i32> {
    let protocol = sp.protocol.as_deref().unwrap_or("TCP");
    match &sp.target_port {
        None => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            pod.spec.as_ref()?.containers.iter().find_map(|c| {
                c.ports.iter().flatten().find_map(|p| {
                    (p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol)
                        .then_some(p.container_port)
                })
            })
        }
    }
}

/// A pod the Service's endpoints should list: selected, has an IP, not
/// terminated. Terminating pods are included only when `include_terminating`.
pub fn pod_is_endpoint(pod: &Pod, include_terminating: bool) -> bool {
    let has_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty());
    let phase = pod_phase(pod);
    has_ip
        && phase != "Succeeded"
        && phase != "Failed"
        && (include_terminating || pod.metadata.deletion_timestamp.is_none())
}

/// targetRef for a pod.
pub fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The pod's hostname for DNS, when it sets one and its subdomain is the Service.
pub fn pod_hostname(pod: &Pod, svc_name: &str) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let host = spec.hostname.as_ref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == Some(svc_name)).then(|| host.clone())
}

fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// The Endpoints subsets for a Service over the namespace's pods, grouped by
/// resolved port set, addresses sorted by IP (deterministic, so an unchanged
/// cluster gives an unchanged object).
pub fn desired_subsets(svc: &Service, pods: &[Pod]) -> Vec<EndpointSubset> {
    let Some(selector) = service_selector(svc) else {
        return vec![];
    };
    let svc_name = svc.name_any();
    let svc_ports: Vec<ServicePort> = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let tolerate = publish_not_ready(svc);
    // ports (as a sortable key) -> (ports, ready, not ready)
    type Group = (
        Vec<EndpointPort>,
        Vec<EndpointAddress>,
        Vec<EndpointAddress>,
    );
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for pod in pods {
        if !map_selector_matches(selector, pod.labels()) || !pod_is_endpoint(pod, false) {
            continue;
        }
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_default();
        let addr = EndpointAddress {
            ip,
            hostname: pod_hostname(pod, &svc_name),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(pod_ref(pod)),
        };
        let ports: Vec<EndpointPort> = svc_ports
            .iter()
            .filter_map(|sp| {
                Some(EndpointPort {
                    name: sp.name.clone(),
                    port: resolve_target_port(sp, pod)?,
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        if !svc_ports.is_empty() && ports.is_empty() {
            continue;
        }
        let key = ports
            .iter()
            .map(|p| {
                format!(
                    "{}/{}/{}",
                    p.name.as_deref().unwrap_or(""),
                    p.port,
                    p.protocol.as_deref().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        let g = groups.entry(key).or_insert_with(|| (ports, vec![], vec![]));
        if tolerate || is_pod_ready(pod) {
            g.1.push(addr);
        } else {
            g.2.push(addr);
        }
    }
    groups
        .into_values()
        .map(|(ports, mut ready, mut not_ready)| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

/// Labels of the Endpoints: the Service's, plus managed-by and headless.
pub fn desired_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.labels().clone();
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
    let headless = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None");
    if headless {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

/// Runs the Endpoints controller until the task is dropped.
pub async fn run(client: Client) -> anyhow::Result<()> {
    let controller = Controller::new(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    );
    let store = controller.store();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
    });
    let reconcile_loop = controller
        .watches(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default(),
            move |pod: Pod| services_selecting(&store, &pod),
        )
        .watches(
            Api::<Endpoints>::all(client.clone()),
            watcher::Config::default(),
            |ep: Endpoints| {
                let ns = ep.namespace().unwrap_or_default();
                Some(ObjectRef::new(&ep.name_any()).within(&ns))
            },
        )
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "endpoints reconcile");
            }
        });
    tokio::join!(reconcile_loop, sweep_loop(client));
    Ok(())
}

fn error_policy(_svc: Arc<Service>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(error = %err, "endpoints reconcile failed; retrying");
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
    let ep_api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    let subsets = desired_subsets(&svc, &pods);
    let labels = desired_labels(&svc);
    let subsets_opt = (!subsets.is_empty()).then_some(subsets);
    match ep_api.get_opt(&name).await? {
        None => {
            let ep = Endpoints {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    ..Default::default()
                },
                subsets: subsets_opt,
            };
            match ep_api.create(&PostParams::default(), &ep).await {
                Ok(_) => {}
                Err(e) if is_conflict(&e) => {
                    return Ok(Action::requeue(Duration::from_millis(200)))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Some(mut cur) => {
            let same_labels = cur.metadata.labels.as_ref() == Some(&labels);
            let cur_subsets = cur.subsets.clone().filter(|s| !s.is_empty());
            if same_labels && cur_subsets == subsets_opt {
                return Ok(Action::requeue(Duration::from_secs(300)));
            }
            cur.metadata.labels = Some(labels);
            cur.subsets = subsets_opt;
            match ep_api.replace(&name, &PostParams::default(), &cur).await {
                Ok(_) => {}
                Err(e) if is_conflict(&e) => {
                    return Ok(Action::requeue(Duration::from_millis(200)))
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Deletes managed Endpoints whose Service is gone: on every Service
/// deletion seen by a watch, and every 30 seconds (a missed watch event
/// must not leave stale endpoints behind).
async fn sweep_loop(client: Client) {
    let svc_api: Api<Service> = Api::all(client.clone());
    let mut deletions = watcher::watcher(svc_api, watcher::Config::default()).boxed();
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            ev = deletions.next() => match ev {
                Some(Ok(watcher::Event::Delete(svc))) => {
                    if let Some(ns) = svc.namespace() {
                        let api: Api<Endpoints> = Api::namespaced(client.clone(), &ns);
                        if let Ok(Some(ep)) = api.get_opt(&svc.name_any()).await {
                            if ep.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE) {
                                delete_quietly(&api, &svc.name_any()).await;
                            }
                        }
                    }
                }
                Some(_) => {}
                None => return,
            },
            _ = tick.tick() => sweep(&client).await,
        }
    }
}

async fn sweep(client: &Client) {
    let lp = ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"));
    let Ok(eps) = Api::<Endpoints>::all(client.clone()).list(&lp).await else {
        return;
    };
    for ep in eps.items {
        // The label selector may be ignored by a server: check the label again.
        if ep.labels().get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY_VALUE) {
            continue;
        }
        let Some(ns) = ep.namespace() else { continue };
        let svc_api: Api<Service> = Api::namespaced(client.clone(), &ns);
        if let Ok(None) = svc_api.get_opt(&ep.name_any()).await {
            delete_quietly(
                &Api::<Endpoints>::namespaced(client.clone(), &ns),
                &ep.name_any(),
            )
            .await;
        }
    }
}

async fn delete_quietly<K>(api: &Api<K>, name: &str)
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => tracing::debug!(name, error = %e, "could not delete stale endpoints"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::util::testutil::{labels, pod};
    use k8s_openapi::api::core::v1::{Container, ContainerPort, ServiceSpec};

    pub fn web_pod(name: &str, ip: &str, ready: bool) -> Pod {
        let mut p = pod(name, "Running", ready.then_some(1), Some("minik"), 1);
        p.metadata.labels = Some(labels(&[("app", "web")]));
        if let Some(s) = p.status.as_mut() {
            s.pod_ip = Some(ip.into());
        }
        if let Some(spec) = p.spec.as_mut() {
            spec.containers = vec![Container {
                name: "c".into(),
                ports: Some(vec![ContainerPort {
                    name: Some("http".into()),
                    container_port: 8080,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }];
        }
        p
    }

    pub fn web_service(target: IntOrString) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("svc-uid".into()),
                labels: Some(labels(&[("team", "a")])),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(labels(&[("app", "web")])),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    target_port: Some(target),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn ready_and_not_ready_addresses_with_named_port() {
        let svc = web_service(IntOrString::String("http".into()));
        let mut other = web_pod("other", "10.244.0.9", true);
        other.metadata.labels = Some(labels(&[("app", "db")]));
        let mut no_ip = web_pod("noip", "", true);
        if let Some(s) = no_ip.status.as_mut() {
            s.pod_ip = None;
        }
        let pods = vec![
            web_pod("b", "10.244.0.6", true),
            web_pod("a", "10.244.0.5", true),
            web_pod("c", "10.244.0.7", false),
            other,
            no_ip,
        ];
        let subsets = desired_subsets(&svc, &pods);
        assert_eq!(subsets.len(), 1);
        let s = &subsets[0];
        let ips: Vec<&str> = s
            .addresses
            .iter()
            .flatten()
            .map(|a| a.ip.as_str())
            .collect();
        assert_eq!(ips, vec!["10.244.0.5", "10.244.0.6"]);
        let nr: Vec<&str> = s
            .not_ready_addresses
            .iter()
            .flatten()
            .map(|a| a.ip.as_str())
            .collect();
        assert_eq!(nr, vec!["10.244.0.7"]);
        let port = &s.ports.as_ref().expect("ports")[0];
        assert_eq!((port.name.as_deref(), port.port), (Some("http"), 8080));
        let a = &s.addresses.as_ref().expect("addresses")[0];
        assert_eq!(a.node_name.as_deref(), Some("minik"));
        assert_eq!(
            a.target_ref.as_ref().and_then(|r| r.name.as_deref()),
            Some("a")
        );
    }

    #[test]
    fn numeric_target_port_and_terminating_pods() {
        let svc = web_service(IntOrString::Int(9090));
        let mut gone = web_pod("gone", "10.244.0.8", true);
        gone.metadata.deletion_timestamp = gone.metadata.creation_timestamp.clone();
        let subsets = desired_subsets(&svc, &[web_pod("a", "10.244.0.5", true), gone]);
        assert_eq!(subsets.len(), 1);
        assert_eq!(subsets[0].addresses.as_ref().map(Vec::len), Some(1));
        assert_eq!(subsets[0].ports.as_ref().map(|p| p[0].port), Some(9090));
    }

    #[test]
    fn unresolvable_named_port_skips_pod_and_no_selector_means_nothing() {
        let svc = web_service(IntOrString::String("metrics".into()));
        assert!(desired_subsets(&svc, &[web_pod("a", "10.244.0.5", true)]).is_empty());
        let mut manual = web_service(IntOrString::Int(80));
        if let Some(s) = manual.spec.as_mut() {
            s.selector = None;
        }
        assert!(desired_subsets(&manual, &[web_pod("a", "10.244.0.5", true)]).is_empty());
        assert!(service_selector(&manual).is_none());
    }

    #[test]
    fn labels_mark_managed_and_headless() {
        let mut svc = web_service(IntOrString::Int(80));
        if let Some(s) = svc.spec.as_mut() {
            s.cluster_ip = Some("None".into());
        }
        let l = desired_labels(&svc);
        assert_eq!(l.get("team").map(String::as_str), Some("a"));
        assert_eq!(
            l.get(MANAGED_BY_LABEL).map(String::as_str),
            Some(MANAGED_BY_VALUE)
        );
        assert!(l.contains_key(HEADLESS_LABEL));
    }
}
