//! Service ClusterIP and NodePort allocation. The allocation state is not
//! stored separately: it is derived from the stored Services each time (the
//! caller serialises service writes), so it survives restarts by
//! construction. The pure part (`allocate`) is unit-tested here.

use crate::error::Cause;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::Ipv4Addr;

/// Why the allocator configuration is unusable (checked once at startup).
#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    #[error("invalid service CIDR {0:?}: expected an IPv4 CIDR such as 10.96.0.0/12")]
    BadCidr(String),
    #[error("invalid NodePort range {0}-{1}: the first port must not be above the last")]
    BadRange(u16, u16),
}

/// An IPv4 service range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub base: u32,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, AllocError> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| AllocError::BadCidr(s.into()))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| AllocError::BadCidr(s.into()))?;
        let prefix: u8 = prefix.parse().map_err(|_| AllocError::BadCidr(s.into()))?;
        if !(8..=30).contains(&prefix) {
            return Err(AllocError::BadCidr(s.into()));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Cidr {
            base: u32::from(ip) & mask,
            prefix,
        })
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == self.base
    }

    /// The n-th address of the range (1 = `.1`).
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + n)
    }

    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

/// Allocator configuration.
#[derive(Debug, Clone, Copy)]
pub struct Allocator {
    pub cidr: Cidr,
    pub node_ports: (u16, u16),
}

/// What other Services already hold.
#[derive(Debug, Default, Clone)]
pub struct Used {
    pub ips: HashSet<Ipv4Addr>,
    pub node_ports: HashSet<(u16, String)>,
}

impl Used {
    /// Collects the allocations of `services`, skipping `skip` (namespace, name).
    pub fn from_services<'a>(
        services: impl Iterator<Item = &'a Value>,
        skip: Option<(&str, &str)>,
    ) -> Used {
        let mut used = Used::default();
        for s in services {
            let ns = s
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("");
            let name = s
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            if skip == Some((ns, name)) {
                continue;
            }
            let ips = s
                .pointer("/spec/clusterIPs")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let single = s.pointer("/spec/clusterIP").cloned();
            for ip in ips.iter().chain(single.iter()) {
                if let Some(ip) = ip.as_str().and_then(|i| i.parse::<Ipv4Addr>().ok()) {
                    used.ips.insert(ip);
                }
            }
            for p in s
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                if let Some(np) = p.get("nodePort").and_then(Value::as_u64).filter(|n| *n > 0) {
                    let proto = p
                        .get("protocol")
                        .and_then(Value::as_str)
                        .unwrap_or("TCP")
                        .to_string();
                    used.node_ports.insert((np as u16, proto));
                }
            }
        }
        used
    }
}

impl Allocator {
    pub fn new(cidr: &str, node_ports: (u16, u16)) -> Result<Allocator, AllocError> {
        if node_ports.0 > node_ports.1 {
            return Err(AllocError::BadRange(node_ports.0, node_ports.1));
        }
        Ok(Allocator {
            cidr: Cidr::parse(cidr)?,
            node_ports,
        })
    }

    /// Addresses only one well-known Service may hold: `.1` = `default/kubernetes`, `.10` = `kube-system/kube-dns`.
    fn reserved_for(&self, ip: Ipv4Addr) -> Option<(&'static str, &'static str)> {
        if ip == self.cidr.nth(1) {
            Some(("default", "kubernetes"))
        } else if ip == self.cidr.nth(10) {
            Some(("kube-system", "kube-dns"))
        } else {
            None
        }
    }

    /// Fills `spec.clusterIP(s)` and NodePorts of a defaulted Service.
    /// `old` is the stored Service on update (its allocations are kept).
    pub fn allocate(
        &self,
        svc: &mut Value,
        old: Option<&Value>,
        used: &Used,
    ) -> Result<(), Vec<Cause>> {
        let ns = svc
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let name = svc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let ty = svc
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        let spec = match svc.get_mut("spec").and_then(Value::as_object_mut) {
            Some(s) => s,
            None => return Ok(()),
        };
        let mut causes = Vec::new();

        if ty == "ExternalName" {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        } else {
            let mut requested = spec
                .get("clusterIP")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .or_else(|| {
                    spec.get("clusterIPs")
                        .and_then(|v| v.get(0))
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                });
            if requested.is_none() {
                requested = old
                    .and_then(|o| o.pointer("/spec/clusterIP"))
                    .and_then(Value::as_str)
                    .map(String::from);
            }
            let old_ip = old
                .and_then(|o| o.pointer("/spec/clusterIP"))
                .and_then(Value::as_str);
            let ip = match requested.as_deref() {
                Some("None") => Some("None".to_string()),
                Some(r) if Some(r) == old_ip => Some(r.to_string()),
                Some(r) if old_ip.is_some_and(|o| !o.is_empty() && o != "None") && r != "None" => {
                    causes.push(Cause::invalid(
                        "spec.clusterIPs[0]",
                        &json!(r),
                        "may not change once set",
                    ));
                    None
                }
                Some(r) => {
                    match r.parse::<Ipv4Addr>() {
                        Err(_) => {
                            causes.push(Cause::invalid(
                                "spec.clusterIPs[0]",
                                &json!(r),
                                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                            ));
                            None
                        }
                        Ok(ip) if !self.cidr.contains(ip) || ip == self.cidr.nth(0) => {
                            causes.push(Cause::invalid(
                            "spec.clusterIPs",
                            &json!([r]),
                            &format!("failed to allocate IP {r}: the provided IP ({r}) is not in the valid range. The range of valid IPs is {}", self.cidr),
                        ));
                            None
                        }
                        Ok(ip) => {
                            let reserved_other = self
                                .reserved_for(ip)
                                .is_some_and(|owner| owner != (ns.as_str(), name.as_str()));
                            if used.ips.contains(&ip) || reserved_other {
                                causes.push(Cause::invalid(
                                "spec.clusterIPs",
                                &json!([r]),
                                &format!("failed to allocate IP {r}: provided IP is already allocated"),
                            ));
                                None
                            } else {
                                Some(r.to_string())
                            }
                        }
                    }
                }
                None => {
                    let free = (11..self.cidr.size() - 1)
                        .map(|n| self.cidr.nth(n))
                        .find(|ip| !used.ips.contains(ip));
                    match free {
                        Some(ip) => Some(ip.to_string()),
                        None => {
                            causes.push(Cause::invalid(
                                "spec.clusterIPs",
                                &json!([]),
                                &format!(
                                    "failed to allocate a serviceIP: range is full ({})",
                                    self.cidr
                                ),
                            ));
                            None
                        }
                    }
                }
            };
            if let Some(ip) = ip {
                spec.insert("clusterIP".into(), json!(ip));
                spec.insert("clusterIPs".into(), json!([ip]));
                spec.entry("ipFamilies").or_insert_with(|| json!(["IPv4"]));
                spec.entry("ipFamilyPolicy")
                    .or_insert_with(|| json!("SingleStack"));
            }
        }

        let wants_node_ports = ty == "NodePort"
            || (ty == "LoadBalancer"
                && spec
                    .get("allocateLoadBalancerNodePorts")
                    .and_then(Value::as_bool)
                    != Some(false));
        let old_ports: Vec<Value> = old
            .and_then(|o| o.pointer("/spec/ports"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut taken: HashSet<(u16, String)> = used.node_ports.clone();
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for (i, p) in ports.iter_mut().enumerate() {
                let proto = p
                    .get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("TCP")
                    .to_string();
                if !wants_node_ports {
                    if let Some(m) = p.as_object_mut() {
                        if m.get("nodePort").and_then(Value::as_u64).unwrap_or(0) == 0
                            || ty == "ClusterIP"
                        {
                            m.remove("nodePort");
                        }
                    }
                    continue;
                }
                let requested = p
                    .get("nodePort")
                    .and_then(Value::as_i64)
                    .filter(|n| *n != 0)
                    .or_else(|| {
                        // keep the NodePort an unchanged port already had
                        old_ports
                            .iter()
                            .find(|o| {
                                o.get("port") == p.get("port")
                                    && o.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                                        == proto
                            })
                            .and_then(|o| o.get("nodePort").and_then(Value::as_i64))
                            .filter(|n| *n != 0)
                    });
                let port = match requested {
                    Some(n) => {
                        if n < self.node_ports.0 as i64 || n > self.node_ports.1 as i64 {
                            causes.push(Cause::invalid(
                                format!("spec.ports[{i}].nodePort"),
                                &json!(n),
                                &format!("provided port is not in the valid range. The range of valid ports is {}-{}", self.node_ports.0, self.node_ports.1),
                            ));
                            continue;
                        }
                        if taken.contains(&(n as u16, proto.clone())) {
                            causes.push(Cause::invalid(
                                format!("spec.ports[{i}].nodePort"),
                                &json!(n),
                                "provided port is already allocated",
                            ));
                            continue;
                        }
                        n as u16
                    }
                    None => match (self.node_ports.0..=self.node_ports.1)
                        .find(|n| !taken.contains(&(*n, proto.clone())))
                    {
                        Some(n) => n,
                        None => {
                            causes.push(Cause::invalid(
                                format!("spec.ports[{i}].nodePort"),
                                &json!(0),
                                "range is full: no NodePort left to allocate",
                            ));
                            continue;
                        }
                    },
                };
                taken.insert((port, proto));
                p["nodePort"] = json!(port);
            }
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(causes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc() -> Allocator {
        Allocator::new("10.96.0.0/12", (30000, 32767)).unwrap()
    }

    fn svc(ns: &str, name: &str, spec: Value) -> Value {
        json!({"metadata": {"namespace": ns, "name": name}, "spec": spec})
    }

    #[test]
    fn cidr_parsing() {
        let c = Cidr::parse("10.96.0.0/12").unwrap();
        assert!(c.contains("10.100.1.2".parse().unwrap()));
        assert!(!c.contains("10.112.0.1".parse().unwrap()));
        assert_eq!(c.nth(1).to_string(), "10.96.0.1");
        assert!(Cidr::parse("nonsense").is_err());
    }

    #[test]
    fn allocates_unique_ips_skipping_reserved() {
        let a = alloc();
        let mut s = svc(
            "default",
            "web",
            json!({"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP"}]}),
        );
        a.allocate(&mut s, None, &Used::default()).unwrap();
        assert_eq!(s["spec"]["clusterIP"], "10.96.0.11");
        assert_eq!(s["spec"]["clusterIPs"], json!(["10.96.0.11"]));
        assert_eq!(s["spec"]["ipFamilies"], json!(["IPv4"]));
        let used = Used::from_services([s.clone()].iter(), None);
        let mut s2 = svc(
            "default",
            "web2",
            json!({"type": "ClusterIP", "ports": [{"port": 80}]}),
        );
        a.allocate(&mut s2, None, &used).unwrap();
        assert_eq!(s2["spec"]["clusterIP"], "10.96.0.12");
        // a requested, taken address
        let mut s3 = svc(
            "default",
            "web3",
            json!({"clusterIP": "10.96.0.11", "ports": [{"port": 80}]}),
        );
        let e = a.allocate(&mut s3, None, &used).unwrap_err();
        assert!(
            e[0].message.contains("provided IP is already allocated"),
            "{:?}",
            e
        );
        // reserved addresses
        let mut k = svc(
            "default",
            "kubernetes",
            json!({"clusterIP": "10.96.0.1", "ports": [{"port": 443}]}),
        );
        a.allocate(&mut k, None, &used).unwrap();
        let mut dns = svc(
            "default",
            "not-dns",
            json!({"clusterIP": "10.96.0.10", "ports": [{"port": 53}]}),
        );
        assert!(a.allocate(&mut dns, None, &used).is_err());
        let mut dns = svc(
            "kube-system",
            "kube-dns",
            json!({"clusterIP": "10.96.0.10", "ports": [{"port": 53}]}),
        );
        a.allocate(&mut dns, None, &used).unwrap();
        let mut out = svc(
            "default",
            "x",
            json!({"clusterIP": "192.168.0.1", "ports": [{"port": 53}]}),
        );
        assert!(a.allocate(&mut out, None, &used).unwrap_err()[0]
            .message
            .contains("not in the valid range"));
    }

    #[test]
    fn node_ports() {
        let a = alloc();
        let mut s = svc(
            "default",
            "web",
            json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}, {"port": 81, "protocol": "TCP", "nodePort": 30080}]}),
        );
        a.allocate(&mut s, None, &Used::default()).unwrap();
        assert_eq!(s["spec"]["ports"][0]["nodePort"], 30000);
        assert_eq!(s["spec"]["ports"][1]["nodePort"], 30080);
        let used = Used::from_services([s.clone()].iter(), None);
        let mut clash = svc(
            "default",
            "other",
            json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}),
        );
        let e = a.allocate(&mut clash, None, &used).unwrap_err();
        assert_eq!(
            e[0].render(),
            "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        );
        // the update of the same service keeps its ports
        let used_others = Used::from_services([s.clone()].iter(), Some(("default", "web")));
        let mut upd = svc(
            "default",
            "web",
            json!({"type": "NodePort", "clusterIP": s["spec"]["clusterIP"], "ports": [{"port": 80, "protocol": "TCP"}]}),
        );
        a.allocate(&mut upd, Some(&s), &used_others).unwrap();
        assert_eq!(upd["spec"]["ports"][0]["nodePort"], 30000);
        let mut moved = upd.clone();
        moved["spec"]["clusterIP"] = json!("10.96.0.99");
        moved["spec"]["clusterIPs"] = json!(["10.96.0.99"]);
        let e = a
            .allocate(&mut moved, Some(&upd), &used_others)
            .unwrap_err();
        assert!(e[0].message.contains("may not change once set"), "{e:?}");
        let mut out = svc(
            "default",
            "o",
            json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP", "nodePort": 80}]}),
        );
        assert!(a.allocate(&mut out, None, &used).unwrap_err()[0]
            .message
            .contains("30000-32767"));
    }
}
