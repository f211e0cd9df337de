//! The DNS cache: what the cluster's names point at.
//!
//! Owns the pure translation from Services + EndpointSlices (or Endpoints for
//! services that have no slices) to a [`Catalog`] the resolver reads. The
//! watch loop rebuilds it on changes; nothing here does I/O.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// How a Service name resolves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A ClusterIP service: its IPv4 ClusterIP.
    ClusterIp(Ipv4Addr),
    /// A headless service: its (ready) endpoints.
    Headless(Vec<EndpointRecord>),
    /// `type: ExternalName`: a CNAME to this name.
    ExternalName(String),
}

/// One endpoint of a headless service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EndpointRecord {
    pub ip: Ipv4Addr,
    /// `spec.hostname` (StatefulSet pods) if set; names `<hostname>.<svc>.<ns>.svc.<domain>`.
    pub hostname: Option<String>,
}

impl EndpointRecord {
    /// The label under the service name: the hostname, else the dashed IP.
    pub fn label(&self) -> String {
        self.hostname
            .clone()
            .unwrap_or_else(|| self.ip.to_string().replace('.', "-"))
    }
}

/// A named service port (for SRV records).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NamedPort {
    /// Lowercase port name.
    pub name: String,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEntry {
    pub target: Target,
    /// Named ports. For headless services these are the endpoint ports.
    pub ports: Vec<NamedPort>,
}

/// Everything the resolver answers from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    /// (namespace, service) → entry.
    pub services: BTreeMap<(String, String), ServiceEntry>,
    /// ClusterIP / endpoint IP → (namespace, service, optional endpoint label) for PTR.
    pub reverse: HashMap<Ipv4Addr, (String, String, Option<String>)>,
}

impl Catalog {
    pub fn service(&self, namespace: &str, name: &str) -> Option<&ServiceEntry> {
        self.services
            .get(&(namespace.to_string(), name.to_string()))
    }

    /// True if any service lives in `namespace` (so `<ns>.svc.<domain>` exists).
    pub fn has_namespace(&self, namespace: &str) -> bool {
        self.services
            .range((namespace.to_string(), String::new())..)
            .next()
            .is_some_and(|((ns, _), _)| ns == namespace)
    }

    /// Adds a service by hand (tests, and the bootstrap's own entry).
    pub fn insert(&mut self, namespace: &str, name: &str, entry: ServiceEntry) {
        match &entry.target {
            Target::ClusterIp(ip) => {
                self.reverse
                    .insert(*ip, (namespace.to_string(), name.to_string(), None));
            }
            Target::Headless(eps) => {
                for ep in eps {
                    self.reverse.entry(ep.ip).or_insert_with(|| {
                        (namespace.to_string(), name.to_string(), Some(ep.label()))
                    });
                }
            }
            Target::ExternalName(_) => {}
        }
        self.services
            .insert((namespace.to_string(), name.to_string()), entry);
    }

    /// Builds the catalog from snapshots of the watched objects.
    pub fn build(
        services: &[impl Borrow<Service>],
        slices: &[impl Borrow<EndpointSlice>],
        endpoints: &[impl Borrow<Endpoints>],
    ) -> Catalog {
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
            if let Some(name) = &e.metadata.name {
                let ns = e.metadata.namespace.clone().unwrap_or_default();
                eps_by_svc.insert((ns, name.clone()), e);
            }
        }

        let mut catalog = Catalog::default();
        for svc in services {
            let svc: &Service = svc.borrow();
            let (Some(name), Some(spec)) = (&svc.metadata.name, &svc.spec) else {
                continue;
            };
            let ns = svc.metadata.namespace.clone().unwrap_or_default();
            let key = (ns.clone(), name.clone());
            let service_ports: Vec<NamedPort> = spec
                .ports
                .iter()
                .flatten()
                .filter_map(|p| named_port(p.name.as_deref(), p.protocol.as_deref(), Some(p.port)))
                .collect();
            let target = if spec.type_.as_deref() == Some("ExternalName") {
                match &spec.external_name {
                    Some(n) if !n.is_empty() => {
                        Target::ExternalName(n.trim_end_matches('.').to_string())
                    }
                    _ => continue,
                }
            } else {
                match spec.cluster_ip.as_deref() {
                    Some("None") => {
                        let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
                        let (eps, ports) = match slices_by_svc.get(&key) {
                            Some(sl) => from_slices(sl, publish_not_ready),
                            None => eps_by_svc
                                .get(&key)
                                .map(|e| from_endpoints(e, publish_not_ready))
                                .unwrap_or_default(),
                        };
                        let entry = ServiceEntry {
                            target: Target::Headless(eps),
                            ports,
                        };
                        catalog.insert(&ns, name, entry);
                        continue;
                    }
                    Some(ip) => match ip.parse::<Ipv4Addr>() {
                        Ok(ip) => Target::ClusterIp(ip),
                        Err(_) => continue,
                    },
                    None => continue,
                }
            };
            catalog.insert(
                &ns,
                name,
                ServiceEntry {
                    target,
                    ports: service_ports,
                },
            );
        }
        catalog
    }
}

fn named_port(name: Option<&str>, protocol: Option<&str>, port: Option<i32>) -> Option<NamedPort> {
    let name = name.filter(|n| !n.is_empty())?.to_ascii_lowercase();
    let port = u16::try_from(port?).ok()?;
    Some(NamedPort {
        name,
        protocol: protocol.unwrap_or("TCP").to_ascii_lowercase(),
        port,
    })
}

fn from_slices(
    slices: &[&EndpointSlice],
    publish_not_ready: bool,
) -> (Vec<EndpointRecord>, Vec<NamedPort>) {
    let mut eps = BTreeSet::new();
    let mut ports = BTreeSet::new();
    for s in slices {
        for p in s.ports.iter().flatten() {
            if let Some(np) = named_port(p.name.as_deref(), p.protocol.as_deref(), p.port) {
                ports.insert(np);
            }
        }
        for ep in &s.endpoints {
            let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if !ready && !publish_not_ready {
                continue;
            }
            for a in &ep.addresses {
                if let Ok(ip) = a.parse() {
                    eps.insert(EndpointRecord {
                        ip,
                        hostname: ep.hostname.clone().filter(|h| !h.is_empty()),
                    });
                }
            }
        }
    }
    (eps.into_iter().collect(), ports.into_iter().collect())
}

fn from_endpoints(e: &Endpoints, publish_not_ready: bool) -> (Vec<EndpointRecord>, Vec<NamedPort>) {
    let mut eps = BTreeSet::new();
    let mut ports = BTreeSet::new();
    for subset in e.subsets.iter().flatten() {
        for p in subset.ports.iter().flatten() {
            if let Some(np) = named_port(p.name.as_deref(), p.protocol.as_deref(), Some(p.port)) {
                ports.insert(np);
            }
        }
        let not_ready = if publish_not_ready {
            subset
                .not_ready_addresses
                .iter()
                .flatten()
                .collect::<Vec<_>>()
        } else {
            Vec::new()
        };
        for a in subset.addresses.iter().flatten().chain(not_ready) {
            if let Ok(ip) = a.ip.parse() {
                eps.insert(EndpointRecord {
                    ip,
                    hostname: a.hostname.clone().filter(|h| !h.is_empty()),
                });
            }
        }
    }
    (eps.into_iter().collect(), ports.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn svc(name: &str, cluster_ip: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                namespace: Some("default".into()),
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(cluster_ip.into()),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const NO_EPS: &[Endpoints] = &[];

    #[test]
    fn cluster_ip_services_and_headless_endpoints() {
        let slice = EndpointSlice {
            metadata: ObjectMeta {
                namespace: Some("default".into()),
                name: Some("db-1".into()),
                labels: Some([(SERVICE_NAME_LABEL.to_string(), "db".to_string())].into()),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: vec![
                Endpoint {
                    addresses: vec!["10.244.0.7".into()],
                    hostname: Some("db-0".into()),
                    ..Default::default()
                },
                Endpoint {
                    addresses: vec!["10.244.0.8".into()],
                    conditions: Some(EndpointConditions {
                        ready: Some(false),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ],
            ports: Some(vec![EndpointPort {
                name: Some("pg".into()),
                port: Some(5432),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
        };
        let c = Catalog::build(
            &[svc("web", "10.96.0.20"), svc("db", "None")],
            &[slice],
            NO_EPS,
        );
        assert_eq!(
            c.service("default", "web").unwrap().target,
            Target::ClusterIp("10.96.0.20".parse().unwrap())
        );
        let db = c.service("default", "db").unwrap();
        assert_eq!(
            db.target,
            Target::Headless(vec![EndpointRecord {
                ip: "10.244.0.7".parse().unwrap(),
                hostname: Some("db-0".into())
            }])
        );
        assert_eq!(db.ports[0].port, 5432);
        assert!(c.has_namespace("default"));
        assert!(!c.has_namespace("def"));
        assert_eq!(
            c.reverse.get(&"10.96.0.20".parse().unwrap()),
            Some(&("default".to_string(), "web".to_string(), None))
        );
    }

    #[test]
    fn manual_endpoints_external_names_and_publish_not_ready() {
        use k8s_openapi::api::core::v1::{EndpointAddress, EndpointSubset};
        let mut headless = svc("manual", "None");
        headless.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let eps = Endpoints {
            metadata: ObjectMeta {
                namespace: Some("default".into()),
                name: Some("manual".into()),
                ..Default::default()
            },
            subsets: Some(vec![EndpointSubset {
                addresses: Some(vec![EndpointAddress {
                    ip: "192.0.2.10".into(),
                    ..Default::default()
                }]),
                not_ready_addresses: Some(vec![EndpointAddress {
                    ip: "192.0.2.11".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }]),
        };
        let mut ext = svc("ext", "");
        let spec = ext.spec.as_mut().unwrap();
        spec.type_ = Some("ExternalName".into());
        spec.external_name = Some("db.example.com.".into());
        let c = Catalog::build(&[headless, ext], &[] as &[EndpointSlice], &[eps]);
        let Target::Headless(eps) = &c.service("default", "manual").unwrap().target else {
            panic!("not headless");
        };
        assert_eq!(
            eps.len(),
            2,
            "publishNotReadyAddresses includes not-ready ones"
        );
        assert_eq!(
            c.service("default", "ext").unwrap().target,
            Target::ExternalName("db.example.com".into())
        );
    }
}
