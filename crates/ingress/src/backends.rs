//! Ingress backends → endpoint addresses: pure logic, no I/O. Owns the
//! service-port lookup (by number or name), the EndpointSlice port that
//! goes with it, which endpoints are ready, and the round-robin order the
//! proxy tries them in.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::IngressBackend;

/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One Service port an Ingress routes to, with its ready endpoints.
#[derive(Debug)]
pub struct Backend {
    /// `namespace/service:port` (port number or name as the Ingress says).
    pub name: String,
    /// Ready endpoint addresses (pod IP + target port), stable order.
    pub endpoints: Vec<SocketAddr>,
    /// Why there are no endpoints when the Service itself is the problem
    /// (missing Service or port, unsupported backend), for the 503 page.
    pub problem: Option<String>,
    /// An ExternalName Service: the DNS name and port, resolved per request.
    pub external: Option<(String, u16)>,
    /// Speak TLS to the endpoints (backend-protocol: HTTPS).
    pub tls: bool,
    next: AtomicUsize,
}

impl Backend {
    pub fn new(name: String, endpoints: Vec<SocketAddr>, problem: Option<String>) -> Backend {
        Backend {
            name,
            endpoints,
            problem,
            external: None,
            tls: false,
            next: AtomicUsize::new(0),
        }
    }

    /// The endpoints in the order to try them for one request: round
    /// robin over requests, the rest following for retries.
    pub fn attempt_order(&self) -> Vec<SocketAddr> {
        let n = self.endpoints.len();
        if n == 0 {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n).map(|i| self.endpoints[(start + i) % n]).collect()
    }
}

/// The cache key of a backend: equal keys resolve to the same Backend.
pub fn key(ns: &str, b: &IngressBackend) -> String {
    match &b.service {
        Some(s) => {
            let port = s.port.as_ref();
            match (
                port.and_then(|p| p.number),
                port.and_then(|p| p.name.as_deref()),
            ) {
                (Some(n), _) => format!("{ns}/{}:{n}", s.name),
                (None, Some(name)) => format!("{ns}/{}:{name}", s.name),
                (None, None) => format!("{ns}/{}:", s.name),
            }
        }
        None => match &b.resource {
            Some(r) => format!("{ns}/resource:{}/{}", r.kind, r.name),
            None => format!("{ns}/(empty)"),
        },
    }
}

/// Services and EndpointSlices indexed by namespace/name.
pub struct Index<'a> {
    services: HashMap<(&'a str, &'a str), &'a Service>,
    slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
}

impl<'a> Index<'a> {
    pub fn new(services: &'a [Arc<Service>], slices: &'a [Arc<EndpointSlice>]) -> Index<'a> {
        let mut s = HashMap::new();
        for svc in services {
            if let (Some(ns), Some(name)) = (&svc.metadata.namespace, &svc.metadata.name) {
                s.insert((ns.as_str(), name.as_str()), svc.as_ref());
            }
        }
        let mut e: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for sl in slices {
            let owner = sl
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL));
            if let (Some(ns), Some(svc)) = (&sl.metadata.namespace, owner) {
                e.entry((ns.as_str(), svc.as_str()))
                    .or_default()
                    .push(sl.as_ref());
            }
        }
        Index {
            services: s,
            slices: e,
        }
    }

    /// Resolves one Ingress backend in namespace `ns`.
    pub fn resolve(&self, ns: &str, b: &IngressBackend) -> Backend {
        let name = key(ns, b);
        let Some(sb) = &b.service else {
            return Backend::new(
                name,
                Vec::new(),
                Some("resource backends are not supported by minik's ingress controller; use a service backend".into()),
            );
        };
        let Some(svc) = self.services.get(&(ns, sb.name.as_str())) else {
            return Backend::new(
                name,
                Vec::new(),
                Some(format!("service {ns}/{} not found", sb.name)),
            );
        };
        let spec = svc.spec.as_ref();
        let wanted = sb.port.as_ref();
        if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
            // The Ingress' port number, else the named Service port's.
            let port = wanted.and_then(|w| w.number).or_else(|| {
                let n = wanted.and_then(|w| w.name.as_deref())?;
                spec?
                    .ports
                    .as_ref()?
                    .iter()
                    .find(|p| p.name.as_deref() == Some(n))
                    .map(|p| p.port)
            });
            let host = spec
                .and_then(|s| s.external_name.clone())
                .filter(|h| !h.is_empty());
            return match (host, port.and_then(|p| u16::try_from(p).ok())) {
                (Some(host), Some(port)) => {
                    let mut b = Backend::new(name, Vec::new(), None);
                    b.external = Some((host, port));
                    b
                }
                (None, _) => Backend::new(
                    name,
                    Vec::new(),
                    Some(format!("service {ns}/{} is of type ExternalName but has no externalName", sb.name)),
                ),
                (_, None) => Backend::new(
                    name,
                    Vec::new(),
                    Some(format!("service {ns}/{} is of type ExternalName: give the Ingress backend a port number", sb.name)),
                ),
            };
        }
        let port = spec.and_then(|s| s.ports.as_ref()).and_then(|ports| {
            ports.iter().find(|p| match wanted {
                Some(w) if w.number.is_some() => Some(p.port) == w.number,
                Some(w) if w.name.is_some() => p.name.as_deref() == w.name.as_deref(),
                // no port given: a Service with one port
                _ => ports.len() == 1,
            })
        });
        let Some(port) = port else {
            let what = match wanted {
                Some(w) if w.number.is_some() => format!("no port {}", w.number.unwrap_or(0)),
                Some(w) if w.name.is_some() => {
                    format!("no port named {:?}", w.name.as_deref().unwrap_or(""))
                }
                _ => "no single port (name one in the Ingress)".to_string(),
            };
            return Backend::new(
                name,
                Vec::new(),
                Some(format!("service {ns}/{} has {what}", sb.name)),
            );
        };
        if port.protocol.as_deref().is_some_and(|p| p != "TCP") {
            return Backend::new(
                name,
                Vec::new(),
                Some(format!(
                    "service {ns}/{} port {} is not TCP",
                    sb.name, port.port
                )),
            );
        }
        let port_name = port.name.as_deref().unwrap_or("");
        let mut endpoints = Vec::new();
        for sl in self
            .slices
            .get(&(ns, sb.name.as_str()))
            .into_iter()
            .flatten()
        {
            if !matches!(sl.address_type.as_str(), "IPv4" | "IPv6") {
                continue;
            }
            let Some(target) = sl.ports.iter().flatten().find_map(|p| {
                (p.name.as_deref().unwrap_or("") == port_name
                    && p.protocol.as_deref().unwrap_or("TCP") == "TCP")
                    .then_some(p.port)
                    .flatten()
            }) else {
                continue;
            };
            let Ok(target) = u16::try_from(target) else {
                continue;
            };
            for ep in &sl.endpoints {
                // `ready` unset means ready (the EndpointSlice API says so).
                let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                if !ready {
                    continue;
                }
                for a in &ep.addresses {
                    if let Ok(ip) = a.parse::<IpAddr>() {
                        let sa = SocketAddr::new(ip, target);
                        if !endpoints.contains(&sa) {
                            endpoints.push(sa);
                        }
                    }
                }
            }
        }
        endpoints.sort();
        Backend::new(name, endpoints, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_with_retry_order() {
        let eps: Vec<SocketAddr> = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let b = Backend::new("x".into(), eps.clone(), None);
        let firsts: Vec<SocketAddr> = (0..6).map(|_| b.attempt_order()[0]).collect();
        assert_eq!(firsts, [eps[0], eps[1], eps[2], eps[0], eps[1], eps[2]]);
        // every attempt list holds every endpoint once
        let mut order = b.attempt_order();
        assert_eq!(order, [eps[0], eps[1], eps[2]]);
        order = b.attempt_order();
        assert_eq!(order, [eps[1], eps[2], eps[0]]);
        assert!(Backend::new("y".into(), vec![], None)
            .attempt_order()
            .is_empty());
    }

    #[test]
    fn external_name_and_resource_backends() {
        let services: Vec<Arc<Service>> = vec![Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": "n", "name": "ext"},
                "spec": {"type": "ExternalName", "externalName": "example.com"}
            }))
            .unwrap(),
        )];
        let idx = Index::new(&services, &[]);
        let b: IngressBackend = serde_json::from_value(
            serde_json::json!({"service": {"name": "ext", "port": {"number": 80}}}),
        )
        .unwrap();
        let ext = idx.resolve("n", &b);
        assert_eq!(ext.problem, None);
        assert_eq!(ext.external, Some(("example.com".to_string(), 80)));
        let by_name: IngressBackend = serde_json::from_value(
            serde_json::json!({"service": {"name": "ext", "port": {"name": "web"}}}),
        )
        .unwrap();
        assert!(idx
            .resolve("n", &by_name)
            .problem
            .unwrap()
            .contains("port number"));
        let r: IngressBackend = serde_json::from_value(
            serde_json::json!({"resource": {"kind": "Bucket", "name": "b"}}),
        )
        .unwrap();
        assert!(idx
            .resolve("n", &r)
            .problem
            .unwrap()
            .contains("resource backends"));
        assert_eq!(key("n", &r), "n/resource:Bucket/b");
    }
}
