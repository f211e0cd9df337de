//! Answers one DNS query from the [`Catalog`].
//!
//! Owns the cluster DNS naming scheme (the Kubernetes DNS spec):
//! - `<svc>.<ns>.svc.<domain>` A → ClusterIP, or the ready endpoint IPs of a
//!   headless service; CNAME for ExternalName services
//! - `<ep>.<svc>.<ns>.svc.<domain>` A → a headless endpoint (hostname or dashed IP)
//! - `_<port>._<proto>.<svc>.<ns>.svc.<domain>` SRV for named ports
//! - `<a-b-c-d>.<ns>.pod.<domain>` A → a.b.c.d
//! - `d.c.b.a.in-addr.arpa` PTR for service and headless endpoint IPs
//! - unknown names in the domain → NXDOMAIN, known names with another type
//!   (AAAA …) → empty NOERROR; both with the zone SOA in authority.
//!
//! Everything else is [`Outcome::Forward`]ed by the server. Pure: no I/O.

use std::net::Ipv4Addr;

use hickory_proto::op::{Edns, Message, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, NS, PTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::ProtoError;

use crate::catalog::{Catalog, ServiceEntry, Target};

/// TTL of every answer (CoreDNS's kubernetes plugin default).
pub const TTL: u32 = 5;
/// EDNS payload size we advertise.
pub const EDNS_PAYLOAD: u16 = 1232;

/// The authoritative zone.
#[derive(Clone, Debug)]
pub struct Zone {
    /// Lowercase labels of the cluster domain, e.g. `["cluster", "local"]`.
    labels: Vec<String>,
    domain: String,
}

impl Zone {
    pub fn new(cluster_domain: &str) -> Self {
        let domain = cluster_domain.trim_matches('.').to_ascii_lowercase();
        Zone {
            labels: domain.split('.').map(str::to_string).collect(),
            domain,
        }
    }

    fn name(&self, relative: &str) -> Result<Name, ProtoError> {
        if relative.is_empty() {
            Name::from_ascii(format!("{}.", self.domain))
        } else {
            Name::from_ascii(format!("{relative}.{}.", self.domain))
        }
    }

    fn soa(&self) -> Result<Record, ProtoError> {
        let soa = SOA::new(
            self.name("ns.dns")?,
            self.name("hostmaster")?,
            1,
            7200,
            1800,
            86400,
            TTL,
        );
        Ok(Record::from_rdata(self.name("")?, TTL, RData::SOA(soa)))
    }
}

/// What to do with a query.
#[derive(Debug)]
pub enum Outcome {
    /// Send this message back.
    Reply(Box<Message>),
    /// Not ours: pass the raw query to the upstream resolver.
    Forward,
}

/// Result of looking a name up in our zone.
enum Lookup {
    /// The name exists; the answers may be empty (NODATA).
    Found {
        answers: Vec<Record>,
        additionals: Vec<Record>,
    },
    NxDomain,
}

impl Lookup {
    fn nodata() -> Self {
        Lookup::Found {
            answers: Vec::new(),
            additionals: Vec::new(),
        }
    }
}

/// Decides the answer to `req`. `recursion` says whether unknown names can be
/// forwarded (sets RA in our replies).
pub fn answer(catalog: &Catalog, zone: &Zone, req: &Message, recursion: bool) -> Outcome {
    let mut meta = Metadata::response_from_request(&req.metadata);
    meta.recursion_available = recursion;
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata = meta;
    resp.add_queries(req.queries.iter().cloned());
    if req.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        resp.set_edns(edns);
    }
    if req.metadata.op_code != OpCode::Query {
        resp.metadata.response_code = ResponseCode::NotImp;
        return Outcome::Reply(Box::new(resp));
    }
    let [query] = req.queries.as_slice() else {
        resp.metadata.response_code = ResponseCode::FormErr;
        return Outcome::Reply(Box::new(resp));
    };
    let qname = query.name();
    let labels: Vec<String> = qname
        .iter()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect();

    let lookup = if let Some(rel) = labels.strip_suffix(zone.labels.as_slice()) {
        lookup_zone(catalog, zone, rel, qname, query.query_type())
    } else if let Some(ip) = arpa_ip(&labels) {
        match catalog.reverse.get(&ip) {
            Some(target) if matches!(query.query_type(), RecordType::PTR | RecordType::ANY) => {
                let (ns, svc, ep) = target;
                let rel = match ep {
                    Some(ep) => format!("{ep}.{svc}.{ns}.svc"),
                    None => format!("{svc}.{ns}.svc"),
                };
                zone.name(&rel).map(|n| Lookup::Found {
                    answers: vec![Record::from_rdata(qname.clone(), TTL, RData::PTR(PTR(n)))],
                    additionals: Vec::new(),
                })
            }
            Some(_) => Ok(Lookup::nodata()),
            None => return Outcome::Forward,
        }
    } else {
        return Outcome::Forward;
    };

    resp.metadata.authoritative = true;
    match lookup {
        Ok(Lookup::Found {
            answers,
            additionals,
        }) => {
            if answers.is_empty() {
                if let Ok(soa) = zone.soa() {
                    resp.add_authority(soa);
                }
            }
            resp.add_answers(answers);
            resp.add_additionals(additionals);
        }
        Ok(Lookup::NxDomain) => {
            resp.metadata.response_code = ResponseCode::NXDomain;
            if let Ok(soa) = zone.soa() {
                resp.add_authority(soa);
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, name = %qname, "dns: cannot build answer");
            resp.metadata.authoritative = false;
            resp.metadata.response_code = ResponseCode::ServFail;
        }
    }
    Outcome::Reply(Box::new(resp))
}

/// `d.c.b.a.in-addr.arpa` → a.b.c.d
fn arpa_ip(labels: &[String]) -> Option<Ipv4Addr> {
    let [d, c, b, a, inaddr, arpa] = labels else {
        return None;
    };
    if inaddr != "in-addr" || arpa != "arpa" {
        return None;
    }
    format!("{a}.{b}.{c}.{d}").parse().ok()
}

fn lookup_zone(
    catalog: &Catalog,
    zone: &Zone,
    rel: &[String],
    qname: &Name,
    qtype: RecordType,
) -> Result<Lookup, ProtoError> {
    // Walk from the zone apex down: rel is leftmost-first.
    let r: Vec<&str> = rel.iter().rev().map(String::as_str).collect();
    match r.as_slice() {
        [] => {
            let answers = match qtype {
                RecordType::SOA => vec![zone.soa()?],
                RecordType::NS => vec![Record::from_rdata(
                    zone.name("")?,
                    TTL,
                    RData::NS(NS(zone.name("ns.dns")?)),
                )],
                _ => Vec::new(),
            };
            Ok(Lookup::Found {
                answers,
                additionals: Vec::new(),
            })
        }
        ["svc"] | ["pod"] => Ok(Lookup::nodata()),
        ["svc", ns] | ["pod", ns] => Ok(if catalog.has_namespace(ns) {
            Lookup::nodata()
        } else {
            Lookup::NxDomain
        }),
        ["pod", _ns, ip] => Ok(match ip.replace('-', ".").parse::<Ipv4Addr>() {
            Ok(addr) if ip.split('-').count() == 4 => Lookup::Found {
                answers: if matches!(qtype, RecordType::A | RecordType::ANY) {
                    vec![a_record(qname, addr)]
                } else {
                    Vec::new()
                },
                additionals: Vec::new(),
            },
            _ => Lookup::NxDomain,
        }),
        ["svc", ns, svc, rest @ ..] => {
            let Some(entry) = catalog.service(ns, svc) else {
                return Ok(Lookup::NxDomain);
            };
            let svc_rel = format!("{svc}.{ns}.svc");
            match rest {
                [] => service_records(zone, entry, &svc_rel, qname, qtype, None),
                [proto] if proto.starts_with('_') => {
                    let proto = &proto[1..];
                    Ok(if entry.ports.iter().any(|p| p.protocol == proto) {
                        Lookup::nodata()
                    } else {
                        Lookup::NxDomain
                    })
                }
                [proto, port] if proto.starts_with('_') && port.starts_with('_') => {
                    let (proto, port) = (&proto[1..], &port[1..]);
                    if !entry
                        .ports
                        .iter()
                        .any(|p| p.protocol == proto && p.name == port)
                    {
                        return Ok(Lookup::NxDomain);
                    }
                    service_records(zone, entry, &svc_rel, qname, qtype, Some((proto, port)))
                }
                [label] => {
                    let Target::Headless(eps) = &entry.target else {
                        return Ok(Lookup::NxDomain);
                    };
                    let matching: Vec<Ipv4Addr> = eps
                        .iter()
                        .filter(|e| e.label() == *label)
                        .map(|e| e.ip)
                        .collect();
                    if matching.is_empty() {
                        return Ok(Lookup::NxDomain);
                    }
                    Ok(Lookup::Found {
                        answers: if matches!(qtype, RecordType::A | RecordType::ANY) {
                            matching.into_iter().map(|ip| a_record(qname, ip)).collect()
                        } else {
                            Vec::new()
                        },
                        additionals: Vec::new(),
                    })
                }
                _ => Ok(Lookup::NxDomain),
            }
        }
        _ => Ok(Lookup::NxDomain),
    }
}

fn a_record(owner: &Name, ip: Ipv4Addr) -> Record {
    Record::from_rdata(owner.clone(), TTL, RData::A(A(ip)))
}

/// Records for a service name (or one of its SRV names when `port` is set).
fn service_records(
    zone: &Zone,
    entry: &ServiceEntry,
    svc_rel: &str,
    qname: &Name,
    qtype: RecordType,
    port: Option<(&str, &str)>,
) -> Result<Lookup, ProtoError> {
    if let Target::ExternalName(target) = &entry.target {
        let target = Name::from_ascii(format!("{target}."))?;
        return Ok(Lookup::Found {
            answers: vec![Record::from_rdata(
                qname.clone(),
                TTL,
                RData::CNAME(CNAME(target)),
            )],
            additionals: Vec::new(),
        });
    }
    let mut answers = Vec::new();
    let mut additionals = Vec::new();
    match qtype {
        RecordType::A | RecordType::ANY => match &entry.target {
            Target::ClusterIp(ip) => answers.push(a_record(qname, *ip)),
            Target::Headless(eps) => answers.extend(eps.iter().map(|e| a_record(qname, e.ip))),
            Target::ExternalName(_) => {}
        },
        RecordType::SRV => {
            let ports = entry.ports.iter().filter(|p| match port {
                Some((proto, name)) => p.protocol == proto && p.name == name,
                None => true,
            });
            for p in ports {
                match &entry.target {
                    Target::ClusterIp(ip) => {
                        let target = zone.name(svc_rel)?;
                        answers.push(Record::from_rdata(
                            qname.clone(),
                            TTL,
                            RData::SRV(SRV::new(0, 100, p.port, target.clone())),
                        ));
                        let a = Record::from_rdata(target, TTL, RData::A(A(*ip)));
                        if !additionals.contains(&a) {
                            additionals.push(a);
                        }
                    }
                    Target::Headless(eps) => {
                        let weight = u16::try_from(100 / eps.len().max(1)).unwrap_or(100);
                        for e in eps {
                            let target = zone.name(&format!("{}.{svc_rel}", e.label()))?;
                            answers.push(Record::from_rdata(
                                qname.clone(),
                                TTL,
                                RData::SRV(SRV::new(0, weight, p.port, target.clone())),
                            ));
                            let a = Record::from_rdata(target, TTL, RData::A(A(e.ip)));
                            if !additionals.contains(&a) {
                                additionals.push(a);
                            }
                        }
                    }
                    Target::ExternalName(_) => {}
                }
            }
        }
        _ => {}
    }
    Ok(Lookup::Found {
        answers,
        additionals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{EndpointRecord, NamedPort};
    use hickory_proto::op::Query;

    fn catalog() -> Catalog {
        let mut c = Catalog::default();
        c.insert(
            "default",
            "hello",
            ServiceEntry {
                target: Target::ClusterIp("10.96.0.20".parse().unwrap()),
                ports: vec![NamedPort {
                    name: "http".into(),
                    protocol: "tcp".into(),
                    port: 80,
                }],
            },
        );
        c.insert(
            "default",
            "db",
            ServiceEntry {
                target: Target::Headless(vec![
                    EndpointRecord {
                        ip: "10.244.0.7".parse().unwrap(),
                        hostname: Some("db-0".into()),
                    },
                    EndpointRecord {
                        ip: "10.244.0.8".parse().unwrap(),
                        hostname: None,
                    },
                ]),
                ports: vec![NamedPort {
                    name: "pg".into(),
                    protocol: "tcp".into(),
                    port: 5432,
                }],
            },
        );
        c.insert(
            "default",
            "ext",
            ServiceEntry {
                target: Target::ExternalName("example.com".into()),
                ports: vec![],
            },
        );
        c
    }

    fn ask(name: &str, qtype: RecordType) -> Outcome {
        let mut req = Message::query();
        req.metadata.recursion_desired = true;
        req.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        answer(&catalog(), &Zone::new("cluster.local"), &req, true)
    }

    fn reply(name: &str, qtype: RecordType) -> Message {
        match ask(name, qtype) {
            Outcome::Reply(m) => *m,
            Outcome::Forward => panic!("{name} was forwarded"),
        }
    }

    fn a_ips(m: &Message) -> Vec<Ipv4Addr> {
        m.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn service_name_resolves_to_cluster_ip() {
        let m = reply("hello.default.svc.cluster.local.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert!(m.metadata.recursion_available);
        assert_eq!(a_ips(&m), vec!["10.96.0.20".parse::<Ipv4Addr>().unwrap()]);
        // case-insensitive
        let m = reply("Hello.Default.SVC.cluster.local.", RecordType::A);
        assert_eq!(a_ips(&m).len(), 1);
    }

    #[test]
    fn headless_service_resolves_to_endpoints() {
        let m = reply("db.default.svc.cluster.local.", RecordType::A);
        assert_eq!(a_ips(&m).len(), 2);
        let m = reply("db-0.db.default.svc.cluster.local.", RecordType::A);
        assert_eq!(a_ips(&m), vec!["10.244.0.7".parse::<Ipv4Addr>().unwrap()]);
        let m = reply("10-244-0-8.db.default.svc.cluster.local.", RecordType::A);
        assert_eq!(a_ips(&m), vec!["10.244.0.8".parse::<Ipv4Addr>().unwrap()]);
    }

    #[test]
    fn unknown_names_are_nxdomain_with_soa() {
        for name in [
            "nope.default.svc.cluster.local.",
            "hello.other.svc.cluster.local.",
            "x.hello.default.svc.cluster.local.",
            "a.b.c.d.e.svc.cluster.local.",
            "foo.cluster.local.",
        ] {
            let m = reply(name, RecordType::A);
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
            assert!(matches!(m.authorities[0].data, RData::SOA(_)), "{name}");
            assert!(m.answers.is_empty());
        }
    }

    #[test]
    fn aaaa_for_existing_name_is_empty_noerror() {
        let m = reply("hello.default.svc.cluster.local.", RecordType::AAAA);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        assert!(matches!(m.authorities[0].data, RData::SOA(_)));
        // namespaces and the svc subtree exist as empty non-terminals
        let m = reply("default.svc.cluster.local.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    }

    #[test]
    fn srv_for_named_ports() {
        let m = reply(
            "_http._tcp.hello.default.svc.cluster.local.",
            RecordType::SRV,
        );
        assert_eq!(m.answers.len(), 1);
        let RData::SRV(srv) = &m.answers[0].data else {
            panic!()
        };
        assert_eq!(srv.port, 80);
        assert_eq!(srv.target.to_ascii(), "hello.default.svc.cluster.local.");
        let mut extra = m.clone();
        extra.answers = m.additionals.clone();
        assert_eq!(
            a_ips(&extra),
            vec!["10.96.0.20".parse::<Ipv4Addr>().unwrap()]
        );
        let m = reply("_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(m.answers.len(), 2);
        let m = reply("_pg._udp.db.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn pod_names_resolve_to_their_ip() {
        let m = reply("10-244-0-9.default.pod.cluster.local.", RecordType::A);
        assert_eq!(a_ips(&m), vec!["10.244.0.9".parse::<Ipv4Addr>().unwrap()]);
        let m = reply("10-244-0.default.pod.cluster.local.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn ptr_for_service_ips_and_others_forwarded() {
        let m = reply("20.0.96.10.in-addr.arpa.", RecordType::PTR);
        let RData::PTR(ptr) = &m.answers[0].data else {
            panic!()
        };
        assert_eq!(ptr.0.to_ascii(), "hello.default.svc.cluster.local.");
        assert!(matches!(
            ask("1.1.168.192.in-addr.arpa.", RecordType::PTR),
            Outcome::Forward
        ));
    }

    #[test]
    fn external_name_is_a_cname() {
        let m = reply("ext.default.svc.cluster.local.", RecordType::A);
        let RData::CNAME(c) = &m.answers[0].data else {
            panic!()
        };
        assert_eq!(c.0.to_ascii(), "example.com.");
    }

    #[test]
    fn other_domains_are_forwarded() {
        assert!(matches!(
            ask("example.com.", RecordType::A),
            Outcome::Forward
        ));
        assert!(matches!(ask("local.", RecordType::A), Outcome::Forward));
    }

    #[test]
    fn zone_apex_has_soa_and_ns() {
        let m = reply("cluster.local.", RecordType::SOA);
        assert!(matches!(m.answers[0].data, RData::SOA(_)));
        let m = reply("cluster.local.", RecordType::NS);
        assert!(matches!(m.answers[0].data, RData::NS(_)));
    }
}
