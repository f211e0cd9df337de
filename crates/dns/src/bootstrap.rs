//! The `kube-dns` Service and its endpoints.
//!
//! Owns `kube-system/kube-dns` (Service, Endpoints, EndpointSlice
//! `kube-dns-minik`): a selector-less Service at the fixed DNS ClusterIP
//! whose endpoints are this server's listen address, so the proxy routes
//! `10.96.0.10:53` to us and pods find DNS the usual way. The object
//! builders are pure; [`ensure`] creates or repairs them through the API.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort as CoreEndpointPort, EndpointSubset, Endpoints, Service,
    ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::PostParams;
use kube::Api;

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "kube-dns";
pub const SLICE_NAME: &str = "kube-dns-minik";

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn meta(name: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NAMESPACE.into()),
        labels: Some(labels),
        ..Default::default()
    }
}

const SERVICE_LABELS: &[(&str, &str)] = &[
    ("k8s-app", "kube-dns"),
    ("kubernetes.io/cluster-service", "true"),
    ("kubernetes.io/name", "CoreDNS"),
];

/// The `kube-dns` Service: no selector, fixed ClusterIP, dns/UDP + dns-tcp/TCP on 53.
pub fn service(cluster_ip: &str) -> Service {
    let port = |name: &str, proto: &str| ServicePort {
        name: Some(name.into()),
        protocol: Some(proto.into()),
        port: 53,
        target_port: Some(IntOrString::Int(53)),
        ..Default::default()
    };
    Service {
        metadata: meta(NAME, labels(SERVICE_LABELS)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some(cluster_ip.into()),
            cluster_ips: Some(vec![cluster_ip.into()]),
            ports: Some(vec![port("dns", "UDP"), port("dns-tcp", "TCP")]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Endpoints pointing at the listener. `skip-mirror` keeps the slice
/// mirroring controller from duplicating the slice we write ourselves.
pub fn endpoints(listen: SocketAddr) -> Endpoints {
    let mut l = labels(SERVICE_LABELS);
    l.insert(
        "endpointslice.kubernetes.io/skip-mirror".into(),
        "true".into(),
    );
    let port = |name: &str, proto: &str| CoreEndpointPort {
        name: Some(name.into()),
        protocol: Some(proto.into()),
        port: i32::from(listen.port()),
        ..Default::default()
    };
    Endpoints {
        metadata: meta(NAME, l),
        subsets: Some(vec![EndpointSubset {
            addresses: Some(vec![EndpointAddress {
                ip: listen.ip().to_string(),
                ..Default::default()
            }]),
            ports: Some(vec![port("dns", "UDP"), port("dns-tcp", "TCP")]),
            ..Default::default()
        }]),
    }
}

/// The EndpointSlice for the same address (what the proxy prefers).
pub fn endpoint_slice(listen: SocketAddr) -> EndpointSlice {
    let mut l = labels(SERVICE_LABELS);
    l.insert("kubernetes.io/service-name".into(), NAME.into());
    l.insert(
        "endpointslice.kubernetes.io/managed-by".into(),
        "minik-dns".into(),
    );
    let port = |name: &str, proto: &str| EndpointPort {
        name: Some(name.into()),
        protocol: Some(proto.into()),
        port: Some(i32::from(listen.port())),
        ..Default::default()
    };
    EndpointSlice {
        metadata: meta(SLICE_NAME, l),
        address_type: if listen.is_ipv4() { "IPv4" } else { "IPv6" }.into(),
        endpoints: vec![Endpoint {
            addresses: vec![listen.ip().to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                serving: Some(true),
                terminating: Some(false),
            }),
            ..Default::default()
        }],
        ports: Some(vec![port("dns", "UDP"), port("dns-tcp", "TCP")]),
    }
}

/// Creates the Service if missing and creates or repairs its Endpoints and
/// EndpointSlice so they point at `listen`.
pub async fn ensure(
    client: &kube::Client,
    cluster_ip: &str,
    listen: SocketAddr,
) -> Result<(), kube::Error> {
    let pp = PostParams::default();
    let svcs: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    match svcs.get_opt(NAME).await? {
        None => {
            svcs.create(&pp, &service(cluster_ip)).await?;
            tracing::info!(cluster_ip, "dns created Service kube-system/kube-dns");
        }
        Some(existing) => {
            let ip = existing.spec.as_ref().and_then(|s| s.cluster_ip.as_deref());
            if ip != Some(cluster_ip) {
                tracing::warn!(
                    found = ?ip, expected = cluster_ip,
                    "Service kube-system/kube-dns has another ClusterIP; pods' resolv.conf will not reach DNS. Delete it to let minik recreate it"
                );
            }
        }
    }

    let eps: Api<Endpoints> = Api::namespaced(client.clone(), NAMESPACE);
    let want = endpoints(listen);
    match eps.get_opt(NAME).await? {
        None => {
            eps.create(&pp, &want).await?;
        }
        Some(cur) if cur.subsets != want.subsets => {
            let mut next = want;
            next.metadata.resource_version = cur.metadata.resource_version;
            eps.replace(NAME, &pp, &next).await?;
        }
        Some(_) => {}
    }

    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let want = endpoint_slice(listen);
    match slices.get_opt(SLICE_NAME).await? {
        None => {
            slices.create(&pp, &want).await?;
        }
        Some(cur) if cur.endpoints != want.endpoints || cur.ports != want.ports => {
            let mut next = want;
            next.metadata.resource_version = cur.metadata.resource_version;
            slices.replace(SLICE_NAME, &pp, &next).await?;
        }
        Some(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_dns_service_matches_what_pods_and_kubectl_expect() {
        let s = service("10.96.0.10");
        let spec = s.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
        assert!(spec.selector.is_none());
        let ports = spec.ports.unwrap();
        assert_eq!(ports.len(), 2);
        assert_eq!(
            (ports[0].name.as_deref(), ports[0].protocol.as_deref()),
            (Some("dns"), Some("UDP"))
        );
        assert_eq!(
            (ports[1].name.as_deref(), ports[1].protocol.as_deref()),
            (Some("dns-tcp"), Some("TCP"))
        );
        let l = s.metadata.labels.unwrap();
        assert_eq!(l["k8s-app"], "kube-dns");
        assert_eq!(l["kubernetes.io/name"], "CoreDNS");
    }

    #[test]
    fn endpoints_point_at_the_listener() {
        let listen: SocketAddr = "10.244.0.1:53".parse().unwrap();
        let e = endpoints(listen);
        let subset = &e.subsets.unwrap()[0];
        assert_eq!(subset.addresses.as_ref().unwrap()[0].ip, "10.244.0.1");
        let sl = endpoint_slice(listen);
        assert_eq!(
            sl.metadata.labels.unwrap()["kubernetes.io/service-name"],
            "kube-dns"
        );
        assert_eq!(sl.endpoints[0].addresses, vec!["10.244.0.1".to_string()]);
        assert_eq!(sl.ports.unwrap()[0].port, Some(53));
    }
}
