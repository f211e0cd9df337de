//! The proxy's view of the cluster: which (IP, protocol, port) goes where.
//!
//! Owns the pure translation from typed API objects (Services, EndpointSlices,
//! Endpoints) to [`ServicePort`] rules. No I/O here: the watch loop feeds it
//! snapshots, the renderer turns its output into nftables text.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// Label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Transport protocol of a service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// Parses the Kubernetes spelling; `None` (unset) means TCP.
    pub fn from_k8s(p: Option<&str>) -> Option<Self> {
        match p.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The nftables keyword (`inet_proto` value).
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One backend of a service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Backend {
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// One port of one Service, with everything needed to program it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub namespace: String,
    pub name: String,
    /// The service port's name ("" when unnamed); matches endpoint port names.
    pub port_name: String,
    pub protocol: Protocol,
    /// The ClusterIP followed by any `spec.externalIPs` (IPv4 only).
    pub ips: Vec<Ipv4Addr>,
    pub port: u16,
    /// Set for type NodePort and LoadBalancer.
    pub node_port: Option<u16>,
    /// Ready backends, sorted and de-duplicated.
    pub backends: Vec<Backend>,
}

/// Builds the rule model from snapshots of the watched objects.
///
/// Endpoints for a Service come from its EndpointSlices when at least one
/// exists (`kubernetes.io/service-name` label), otherwise from the Endpoints
/// object of the same name (selector-less Services with manual Endpoints and
/// clusters without the slice mirroring controller). Services that the proxy
/// does not handle (headless, ExternalName, IPv6-only) produce nothing.
/// The result is sorted so that equal inputs render to byte-equal scripts.
pub fn build(
    services: &[impl Borrow<Service>],
    slices: &[impl Borrow<EndpointSlice>],
    endpoints: &[impl Borrow<Endpoints>],
) -> Vec<ServicePort> {
    // (namespace, service) -> slices
    let mut slices_by_svc: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for s in slices {
        let s: &EndpointSlice = s.borrow();
        if s.address_type != "IPv4" {
            continue;
        }
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        if let Some(svc) = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        {
            slices_by_svc.entry((ns, svc.clone())).or_default().push(s);
        }
    }
    let mut eps_by_svc: BTreeMap<(String, String), &Endpoints> = BTreeMap::new();
    for e in endpoints {
        let e: &Endpoints = e.borrow();
        let ns = e.metadata.namespace.clone().unwrap_or_default();
        if let Some(name) = &e.metadata.name {
            eps_by_svc.insert((ns, name.clone()), e);
        }
    }

    let mut out = Vec::new();
    for svc in services {
        let svc: &Service = svc.borrow();
        let (Some(name), Some(spec)) = (&svc.metadata.name, &svc.spec) else {
            continue;
        };
        let namespace = svc.metadata.namespace.clone().unwrap_or_default();
        if !is_dns_name(&namespace) || !is_dns_name(name) {
            continue;
        }
        let svc_type = spec.type_.as_deref().unwrap_or("ClusterIP");
        if svc_type == "ExternalName" {
            continue;
        }
        let Some(cluster_ip) = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        else {
            continue; // headless ("None"), unallocated or IPv6
        };
        let mut ips = vec![cluster_ip];
        for ip in spec.external_ips.iter().flatten() {
            if let Ok(ip) = ip.parse::<Ipv4Addr>() {
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
        let with_node_ports = matches!(svc_type, "NodePort" | "LoadBalancer");
        let key = (namespace.clone(), name.clone());
        for sp in spec.ports.iter().flatten() {
            let Some(protocol) = Protocol::from_k8s(sp.protocol.as_deref()) else {
                continue;
            };
            let Ok(port) = u16::try_from(sp.port) else {
                continue;
            };
            if port == 0 {
                continue;
            }
            let port_name = sp.name.clone().unwrap_or_default();
            if !port_name.is_empty() && !is_dns_name(&port_name) {
                continue;
            }
            let node_port = if with_node_ports {
                sp.node_port
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p != 0)
            } else {
                None
            };
            let backends = match slices_by_svc.get(&key) {
                Some(slices) => backends_from_slices(slices, &port_name, protocol),
                None => eps_by_svc
                    .get(&key)
                    .map(|e| backends_from_endpoints(e, &port_name, protocol))
                    .unwrap_or_default(),
            };
            out.push(ServicePort {
                namespace: namespace.clone(),
                name: name.clone(),
                port_name,
                protocol,
                ips: ips.clone(),
                port,
                node_port,
                backends,
            });
        }
    }
    out.sort_by(|a, b| {
        (&a.namespace, &a.name, a.protocol, a.port).cmp(&(
            &b.namespace,
            &b.name,
            b.protocol,
            b.port,
        ))
    });
    out
}

fn backends_from_slices(
    slices: &[&EndpointSlice],
    port_name: &str,
    protocol: Protocol,
) -> Vec<Backend> {
    let mut set = BTreeSet::new();
    for s in slices {
        let Some(port) = s.ports.iter().flatten().find_map(|p| {
            let name = p.name.as_deref().unwrap_or("");
            let proto = Protocol::from_k8s(p.protocol.as_deref());
            (name == port_name && proto == Some(protocol))
                .then_some(p.port)
                .flatten()
                .and_then(|p| u16::try_from(p).ok())
        }) else {
            continue;
        };
        for ep in &s.endpoints {
            // An unset `ready` means "unknown" and must be read as ready.
            let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if !ready {
                continue;
            }
            for addr in &ep.addresses {
                if let Ok(ip) = addr.parse::<Ipv4Addr>() {
                    set.insert(Backend { ip, port });
                }
            }
        }
    }
    set.into_iter().collect()
}

fn backends_from_endpoints(e: &Endpoints, port_name: &str, protocol: Protocol) -> Vec<Backend> {
    let mut set = BTreeSet::new();
    for subset in e.subsets.iter().flatten() {
        let Some(port) = subset.ports.iter().flatten().find_map(|p| {
            let name = p.name.as_deref().unwrap_or("");
            let proto = Protocol::from_k8s(p.protocol.as_deref());
            (name == port_name && proto == Some(protocol))
                .then(|| u16::try_from(p.port).ok())
                .flatten()
        }) else {
            continue;
        };
        for addr in subset.addresses.iter().flatten() {
            if let Ok(ip) = addr.ip.parse::<Ipv4Addr>() {
                set.insert(Backend { ip, port });
            }
        }
    }
    set.into_iter().collect()
}

/// True for names safe to embed in nftables identifiers: lowercase
/// RFC 1123 labels joined by dots (what the API server admits anyway).
pub fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.as_bytes()[0].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        EndpointAddress, EndpointPort as CoreEndpointPort, EndpointSubset, ServicePort as K8sPort,
        ServiceSpec,
    };
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn svc(ns: &str, name: &str, ty: &str, ip: &str, ports: Vec<K8sPort>) -> Service {
        Service {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                type_: Some(ty.into()),
                cluster_ip: Some(ip.into()),
                ports: Some(ports),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn port(name: Option<&str>, proto: &str, port: i32, node_port: Option<i32>) -> K8sPort {
        K8sPort {
            name: name.map(Into::into),
            protocol: Some(proto.into()),
            port,
            node_port,
            ..Default::default()
        }
    }

    fn slice(
        ns: &str,
        svc: &str,
        eps: Vec<(&str, Option<bool>)>,
        ports: Vec<(&str, &str, i32)>,
    ) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(format!("{svc}-abc")),
                labels: Some([(SERVICE_NAME_LABEL.to_string(), svc.to_string())].into()),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: eps
                .into_iter()
                .map(|(ip, ready)| Endpoint {
                    addresses: vec![ip.into()],
                    conditions: Some(EndpointConditions {
                        ready,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
            ports: Some(
                ports
                    .into_iter()
                    .map(|(n, p, port)| EndpointPort {
                        name: Some(n.into()),
                        protocol: Some(p.into()),
                        port: Some(port),
                        ..Default::default()
                    })
                    .collect(),
            ),
        }
    }

    const NO_EPS: &[Endpoints] = &[];
    const NO_SLICES: &[EndpointSlice] = &[];

    #[test]
    fn slices_give_ready_backends_matched_by_port_name_and_protocol() {
        let s = svc(
            "default",
            "web",
            "NodePort",
            "10.96.0.20",
            vec![
                port(Some("http"), "TCP", 80, Some(30080)),
                port(Some("dns"), "UDP", 53, Some(30053)),
            ],
        );
        let sl = slice(
            "default",
            "web",
            vec![
                ("10.244.0.5", Some(true)),
                ("10.244.0.6", Some(false)),
                ("10.244.0.7", None),
            ],
            vec![("http", "TCP", 8080), ("dns", "UDP", 5353)],
        );
        let m = build(&[s], &[sl], NO_EPS);
        assert_eq!(m.len(), 2);
        let http = m.iter().find(|p| p.protocol == Protocol::Tcp).unwrap();
        assert_eq!(http.port, 80);
        assert_eq!(http.node_port, Some(30080));
        assert_eq!(
            http.backends,
            vec![
                Backend {
                    ip: "10.244.0.5".parse().unwrap(),
                    port: 8080
                },
                Backend {
                    ip: "10.244.0.7".parse().unwrap(),
                    port: 8080
                },
            ]
        );
        let dns = m.iter().find(|p| p.protocol == Protocol::Udp).unwrap();
        assert_eq!(dns.backends[0].port, 5353);
    }

    #[test]
    fn clusterip_services_get_no_node_port_and_headless_are_skipped() {
        let a = svc(
            "default",
            "a",
            "ClusterIP",
            "10.96.0.30",
            vec![port(None, "TCP", 80, Some(30001))],
        );
        let b = svc(
            "default",
            "b",
            "ClusterIP",
            "None",
            vec![port(None, "TCP", 80, None)],
        );
        let c = svc(
            "default",
            "c",
            "ExternalName",
            "",
            vec![port(None, "TCP", 80, None)],
        );
        let m = build(&[a, b, c], NO_SLICES, NO_EPS);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].name, "a");
        assert_eq!(m[0].node_port, None);
        assert!(m[0].backends.is_empty());
    }

    #[test]
    fn manual_endpoints_are_used_when_no_slice_exists() {
        let k = svc(
            "default",
            "kubernetes",
            "ClusterIP",
            "10.96.0.1",
            vec![port(Some("https"), "TCP", 443, None)],
        );
        let e = Endpoints {
            metadata: ObjectMeta {
                namespace: Some("default".into()),
                name: Some("kubernetes".into()),
                ..Default::default()
            },
            subsets: Some(vec![EndpointSubset {
                addresses: Some(vec![EndpointAddress {
                    ip: "192.0.2.2".into(),
                    ..Default::default()
                }]),
                ports: Some(vec![CoreEndpointPort {
                    name: Some("https".into()),
                    port: 8443,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }]),
        };
        let m = build(&[k], NO_SLICES, &[e]);
        assert_eq!(
            m[0].backends,
            vec![Backend {
                ip: "192.0.2.2".parse().unwrap(),
                port: 8443
            }]
        );
    }

    #[test]
    fn duplicate_endpoints_across_slices_are_merged() {
        let s = svc(
            "ns1",
            "x",
            "ClusterIP",
            "10.96.0.40",
            vec![port(None, "TCP", 80, None)],
        );
        let a = slice(
            "ns1",
            "x",
            vec![("10.244.0.9", Some(true))],
            vec![("", "TCP", 80)],
        );
        let mut b = a.clone();
        b.metadata.name = Some("x-def".into());
        let m = build(&[s], &[a, b], NO_EPS);
        assert_eq!(m[0].backends.len(), 1);
    }

    #[test]
    fn names_that_could_break_nft_syntax_are_rejected() {
        assert!(is_dns_name("kube-system"));
        assert!(!is_dns_name("a b"));
        assert!(!is_dns_name("x\"; flush ruleset"));
        assert!(!is_dns_name(""));
        let s = svc(
            "default",
            "Bad Name",
            "ClusterIP",
            "10.96.0.50",
            vec![port(None, "TCP", 80, None)],
        );
        assert!(build(&[s], NO_SLICES, NO_EPS).is_empty());
    }
}
