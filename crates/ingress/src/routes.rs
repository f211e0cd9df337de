//! The routing table: pure logic, no I/O. Owns which Ingresses are ours
//! (their IngressClass), how their rules merge into one table, and how a
//! request's host and path pick a backend (exact host, then `*.domain`
//! wildcard, then rules without a host; Exact and Prefix paths, longest
//! match wins, Exact before Prefix on a tie). Backends arrive already
//! resolved to endpoint addresses (`backends.rs`); certificates are looked
//! up by `certs.rs` from the `tls` map kept here.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};

use crate::backends::{self, Backend};

/// The IngressClass `spec.controller` this controller answers to.
pub const CONTROLLER_NAME: &str = "k8s.io/minik-ingress";
/// Annotation marking the default IngressClass.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// The pre-IngressClass way of naming a class.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// ingress-nginx's annotations, honoured here with the same meaning.
pub const SSL_REDIRECT_ANNOTATION: &str = "nginx.ingress.kubernetes.io/ssl-redirect";
pub const FORCE_SSL_REDIRECT_ANNOTATION: &str = "nginx.ingress.kubernetes.io/force-ssl-redirect";
/// `HTTPS`: the backends speak TLS (not verified, as ingress-nginx's
/// default `proxy_ssl_verify off`).
pub const BACKEND_PROTOCOL_ANNOTATION: &str = "nginx.ingress.kubernetes.io/backend-protocol";
/// Paths are case-insensitive regular expressions matched at the start
/// of the request path (`^path`), longest path first.
pub const USE_REGEX_ANNOTATION: &str = "nginx.ingress.kubernetes.io/use-regex";
/// The path the backend sees: the matched path's captures expanded into
/// this template (`/$2`), the query string kept. Implies use-regex.
pub const REWRITE_TARGET_ANNOTATION: &str = "nginx.ingress.kubernetes.io/rewrite-target";

/// Whether `ing` is served by the controller named `controller`: its
/// `ingressClassName` (or legacy annotation) names an IngressClass of that
/// controller, or it names no class and one of ours is the default.
pub fn is_ours(ing: &Ingress, classes: &[Arc<IngressClass>], controller: &str) -> bool {
    let ours = |c: &IngressClass| {
        c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(controller)
    };
    let named = ing
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.clone())
        .or_else(|| annotation(&ing.metadata.annotations, LEGACY_CLASS_ANNOTATION));
    match named.filter(|n| !n.is_empty()) {
        Some(name) => classes
            .iter()
            .any(|c| c.metadata.name.as_deref() == Some(name.as_str()) && ours(c)),
        None => classes.iter().any(|c| {
            ours(c)
                && annotation(&c.metadata.annotations, DEFAULT_CLASS_ANNOTATION).as_deref()
                    == Some("true")
        }),
    }
}

fn annotation(a: &Option<BTreeMap<String, String>>, key: &str) -> Option<String> {
    a.as_ref().and_then(|a| a.get(key)).cloned()
}

/// How a path rule compares with a request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// The whole path, case-sensitive.
    Exact,
    /// Element-wise prefix: `/foo` matches `/foo`, `/foo/`, `/foo/bar`, not `/foobar`.
    /// ImplementationSpecific is treated the same.
    Prefix,
}

impl PathKind {
    fn parse(path_type: &str) -> PathKind {
        if path_type == "Exact" {
            PathKind::Exact
        } else {
            PathKind::Prefix
        }
    }
}

/// One `rules[].http.paths[]` entry after merging.
#[derive(Debug)]
pub struct PathRule {
    pub path: String,
    /// The path's non-empty `/`-separated elements (Prefix matching).
    segments: Vec<String>,
    pub kind: PathKind,
    pub backend: Arc<Backend>,
    /// Plain-HTTP requests get a 308 to https (TLS configured for the host
    /// and `ssl-redirect` not "false", or `force-ssl-redirect: "true"`).
    pub ssl_redirect: bool,
    /// `namespace/name` of the Ingress the rule comes from.
    pub ingress: String,
    /// use-regex: `(?i)^path` decides Prefix matches instead of elements.
    regex: Option<regex::Regex>,
    /// rewrite-target of the rule's Ingress.
    pub rewrite: Option<Arc<Rewrite>>,
}

/// ingress-nginx's rewrite-target: when the rule's path (as a regular
/// expression) matches, the request path becomes the target with `$1`,
/// `$2`... filled from its captures (nginx's `rewrite ... break`).
#[derive(Debug)]
pub struct Rewrite {
    re: regex::Regex,
    target: String,
}

impl Rewrite {
    /// The path and query the backend gets for `path` and `query`.
    pub fn apply(&self, path: &str, query: Option<&str>) -> String {
        let Some(caps) = self.re.captures(path) else {
            return match query {
                Some(q) => format!("{path}?{q}"),
                None => path.to_string(),
            };
        };
        let mut out = String::new();
        caps.expand(&self.target, &mut out);
        if !out.starts_with('/') {
            out.insert(0, '/');
        }
        match query {
            // A target with its own query replaces the client's (as nginx).
            Some(q) if !out.contains('?') => format!("{out}?{q}"),
            _ => out,
        }
    }
}

/// `(?i)^path`, the form ingress-nginx gives regex paths.
fn path_regex(path: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("(?i)^{path}"))
}

impl PathRule {
    /// The match's strength (more elements, then longer text, then Exact), or None.
    fn score(&self, path: &str, req_segments: &[&str]) -> Option<(usize, usize, bool)> {
        match self.kind {
            PathKind::Exact => {
                (self.path == path).then_some((self.segments.len(), self.path.len(), true))
            }
            PathKind::Prefix if self.regex.is_some() => self
                .regex
                .as_ref()
                .is_some_and(|re| re.is_match(path))
                .then_some((self.segments.len(), self.path.len(), false)),
            PathKind::Prefix => {
                let n = self.segments.len();
                (req_segments.len() >= n
                    && self.segments.iter().zip(req_segments).all(|(a, b)| a == b))
                .then_some((n, self.path.trim_end_matches('/').len(), false))
            }
        }
    }
}

/// The rules of one host (or of no host), from every Ingress naming it.
#[derive(Debug, Default)]
pub struct HostRules {
    pub paths: Vec<PathRule>,
    /// The `defaultBackend` of the oldest Ingress with rules for this host.
    pub fallback: Option<(Arc<Backend>, bool)>,
}

impl HostRules {
    fn best(&self, path: &str) -> Option<&PathRule> {
        let segs = segments(path);
        let mut best: Option<(&PathRule, (usize, usize, bool))> = None;
        for r in &self.paths {
            if let Some(s) = r.score(path, &segs) {
                if best.as_ref().is_none_or(|(_, b)| s > *b) {
                    best = Some((r, s));
                }
            }
        }
        best.map(|(r, _)| r)
    }
}

fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// Where a request goes.
#[derive(Debug, Clone)]
pub enum Route {
    Backend {
        backend: Arc<Backend>,
        ssl_redirect: bool,
        rewrite: Option<Arc<Rewrite>>,
    },
    /// Nothing matched and there is no default backend: 404.
    NotFound,
}

/// `spec.tls[]` of our Ingresses: which Secret serves which host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TlsRef {
    pub namespace: String,
    pub secret: String,
}

/// Every Ingress of our class merged into one lookup structure.
#[derive(Debug, Default)]
pub struct Table {
    /// Exact host names (lower case).
    hosts: HashMap<String, HostRules>,
    /// `*.example.com` rules, keyed by `example.com`.
    wildcards: HashMap<String, HostRules>,
    /// Rules without a host: any host.
    any: HostRules,
    /// The oldest Ingress `defaultBackend`: requests nothing else matches.
    default_backend: Option<Arc<Backend>>,
    /// TLS host (exact or `*.domain`, lower case) → Secret.
    pub tls: BTreeMap<String, TlsRef>,
    /// `namespace/name` of every Ingress in the table, oldest first.
    pub ingresses: Vec<String>,
    /// Rules that could not be used (bad regular expressions), to log.
    pub warnings: Vec<String>,
}

/// `Host` header → the name rules compare with: lower case, no port, no final dot.
pub fn normalize_host(host: &str) -> String {
    let h = host.trim();
    let h = if let Some(rest) = h.strip_prefix('[') {
        // [::1]:80
        rest.split(']').next().unwrap_or(rest)
    } else if h.matches(':').count() == 1 {
        h.split(':').next().unwrap_or(h)
    } else {
        h
    };
    h.trim_end_matches('.').to_ascii_lowercase()
}

/// The `*.example.com` key for a host: `foo.example.com` → `example.com`
/// (a wildcard covers exactly one label, as the Ingress API says).
fn wildcard_key(host: &str) -> Option<&str> {
    host.split_once('.')
        .map(|(_, rest)| rest)
        .filter(|r| !r.is_empty())
}

impl Table {
    /// Builds the table from our Ingresses (any order; the oldest wins a
    /// conflict, as with ingress-nginx), resolving backends against
    /// Services and EndpointSlices.
    pub fn build(
        ingresses: &[Arc<Ingress>],
        services: &[Arc<Service>],
        slices: &[Arc<EndpointSlice>],
    ) -> Table {
        let mut ings: Vec<&Arc<Ingress>> = ingresses.iter().collect();
        ings.sort_by_key(|i| {
            (
                i.metadata.creation_timestamp.as_ref().map(|t| t.0),
                i.metadata.namespace.clone(),
                i.metadata.name.clone(),
            )
        });
        let index = backends::Index::new(services, slices);
        let mut cache: HashMap<String, Arc<Backend>> = HashMap::new();
        let mut resolve = |ns: &str, b: &IngressBackend, tls: bool| -> Arc<Backend> {
            let key = format!(
                "{}{}",
                backends::key(ns, b),
                if tls { " https" } else { "" }
            );
            cache
                .entry(key)
                .or_insert_with(|| {
                    let mut backend = index.resolve(ns, b);
                    backend.tls = tls;
                    Arc::new(backend)
                })
                .clone()
        };
        let mut t = Table::default();
        let mut warnings = Vec::new();
        for ing in ings {
            let ns = ing
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let name = format!("{ns}/{}", ing.metadata.name.clone().unwrap_or_default());
            t.ingresses.push(name.clone());
            let Some(spec) = &ing.spec else { continue };
            let anns = &ing.metadata.annotations;
            let force = annotation(anns, FORCE_SSL_REDIRECT_ANNOTATION).as_deref() == Some("true");
            let redirect_off =
                annotation(anns, SSL_REDIRECT_ANNOTATION).as_deref() == Some("false");
            let rewrite_target =
                annotation(anns, REWRITE_TARGET_ANNOTATION).filter(|t| !t.is_empty());
            let use_regex = rewrite_target.is_some()
                || annotation(anns, USE_REGEX_ANNOTATION).as_deref() == Some("true");
            let upstream_tls = match annotation(anns, BACKEND_PROTOCOL_ANNOTATION) {
                Some(p) if p.eq_ignore_ascii_case("HTTPS") => true,
                Some(p) if !p.eq_ignore_ascii_case("HTTP") => {
                    warnings.push(format!(
                        "ingress {name}: backend-protocol {p:?} is not supported (HTTP and HTTPS are); its backends are spoken to in HTTP"
                    ));
                    false
                }
                _ => false,
            };
            let tls_hosts: Vec<String> = spec
                .tls
                .iter()
                .flatten()
                .flat_map(|tls| tls.hosts.iter().flatten().map(|h| normalize_host(h)))
                .collect();
            for tls in spec.tls.iter().flatten() {
                let Some(secret) = tls.secret_name.clone().filter(|s| !s.is_empty()) else {
                    continue;
                };
                for h in tls.hosts.iter().flatten() {
                    t.tls.entry(normalize_host(h)).or_insert(TlsRef {
                        namespace: ns.clone(),
                        secret: secret.clone(),
                    });
                }
            }
            let redirect_for = |host: &str| {
                force
                    || (!redirect_off
                        && !host.is_empty()
                        && tls_hosts.iter().any(|h| {
                            h == host
                                || (h.starts_with("*.")
                                    && wildcard_key(host) == Some(&h[2..])
                                    && !host.starts_with("*."))
                        }))
            };
            let default = spec
                .default_backend
                .as_ref()
                .map(|b| resolve(&ns, b, upstream_tls));
            if let Some(d) = &default {
                if t.default_backend.is_none() {
                    t.default_backend = Some(d.clone());
                }
            }
            for rule in spec.rules.iter().flatten() {
                let host = rule.host.as_deref().map(normalize_host).unwrap_or_default();
                let redirect = redirect_for(&host);
                let rules = if host.is_empty() {
                    &mut t.any
                } else if let Some(domain) = host.strip_prefix("*.") {
                    t.wildcards.entry(domain.to_string()).or_default()
                } else {
                    t.hosts.entry(host.clone()).or_default()
                };
                if rules.fallback.is_none() {
                    if let Some(d) = &default {
                        rules.fallback = Some((d.clone(), redirect));
                    }
                }
                for p in rule.http.iter().flat_map(|h| &h.paths) {
                    let path = p
                        .path
                        .clone()
                        .filter(|p| !p.is_empty())
                        .unwrap_or_else(|| "/".into());
                    let kind = PathKind::parse(&p.path_type);
                    if rules.paths.iter().any(|r| r.path == path && r.kind == kind) {
                        continue; // an older Ingress has it
                    }
                    let re = if use_regex {
                        match path_regex(&path) {
                            Ok(re) => Some(re),
                            Err(e) => {
                                warnings.push(format!(
                                    "ingress {name}: path {path:?} is not a valid regular expression (use-regex / rewrite-target are set), so it is skipped: {e}"
                                ));
                                continue;
                            }
                        }
                    } else {
                        None
                    };
                    let rewrite = match (&rewrite_target, &re) {
                        (Some(target), Some(re)) => Some(Arc::new(Rewrite {
                            re: re.clone(),
                            target: target.clone(),
                        })),
                        _ => None,
                    };
                    rules.paths.push(PathRule {
                        segments: segments(&path).into_iter().map(String::from).collect(),
                        path,
                        kind,
                        backend: resolve(&ns, &p.backend, upstream_tls),
                        ssl_redirect: redirect,
                        ingress: name.clone(),
                        regex: re.filter(|_| kind == PathKind::Prefix),
                        rewrite,
                    });
                }
            }
        }
        t.warnings = warnings;
        t
    }

    /// Where a request for `host` (a `Host` header) and `path` goes:
    /// the host's own rules (exact name, else wildcard), that host's
    /// Ingress `defaultBackend`, rules without a host, the default backend.
    pub fn route(&self, host: &str, path: &str) -> Route {
        let host = normalize_host(host);
        let path = if path.is_empty() { "/" } else { path };
        let named = self
            .hosts
            .get(&host)
            .or_else(|| wildcard_key(&host).and_then(|d| self.wildcards.get(d)));
        if let Some(rules) = named {
            if let Some(r) = rules.best(path) {
                return Route::Backend {
                    backend: r.backend.clone(),
                    ssl_redirect: r.ssl_redirect,
                    rewrite: r.rewrite.clone(),
                };
            }
            if let Some((b, redirect)) = &rules.fallback {
                return Route::Backend {
                    backend: b.clone(),
                    ssl_redirect: *redirect,
                    rewrite: None,
                };
            }
        }
        if let Some(r) = self.any.best(path) {
            return Route::Backend {
                backend: r.backend.clone(),
                ssl_redirect: r.ssl_redirect,
                rewrite: r.rewrite.clone(),
            };
        }
        if let Some((b, redirect)) = &self.any.fallback {
            return Route::Backend {
                backend: b.clone(),
                ssl_redirect: *redirect,
                rewrite: None,
            };
        }
        match &self.default_backend {
            Some(b) => Route::Backend {
                backend: b.clone(),
                ssl_redirect: false,
                rewrite: None,
            },
            None => Route::NotFound,
        }
    }

    /// The Secret for a TLS server name: exact, else `*.domain`.
    pub fn tls_for(&self, server_name: &str) -> Option<&TlsRef> {
        let h = normalize_host(server_name);
        self.tls
            .get(&h)
            .or_else(|| wildcard_key(&h).and_then(|d| self.tls.get(&format!("*.{d}"))))
    }

    /// Every backend the table routes to (for logging and tests).
    pub fn backends(&self) -> Vec<Arc<Backend>> {
        let mut out: Vec<Arc<Backend>> = Vec::new();
        let mut push = |b: &Arc<Backend>| {
            if !out.iter().any(|o| Arc::ptr_eq(o, b)) {
                out.push(b.clone());
            }
        };
        for rules in self
            .hosts
            .values()
            .chain(self.wildcards.values())
            .chain([&self.any])
        {
            for p in &rules.paths {
                push(&p.backend);
            }
            if let Some((b, _)) = &rules.fallback {
                push(b);
            }
        }
        if let Some(b) = &self.default_backend {
            push(b);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ingress(v: serde_json::Value) -> Arc<Ingress> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn svc(ns: &str, name: &str, ports: serde_json::Value) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"namespace": ns, "name": name},
                "spec": {"ports": ports}
            }))
            .unwrap(),
        )
    }

    fn slice(ns: &str, svc: &str, port_name: &str, port: i32, ips: &[&str]) -> Arc<EndpointSlice> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"namespace": ns, "name": format!("{svc}-x"),
                    "labels": {"kubernetes.io/service-name": svc}},
                "addressType": "IPv4",
                "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
                "endpoints": ips.iter().map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}})).collect::<Vec<_>>()
            }))
            .unwrap(),
        )
    }

    fn backend_of(r: Route) -> String {
        match r {
            Route::Backend { backend, .. } => backend.name.clone(),
            Route::NotFound => "404".into(),
        }
    }

    fn be(name: &str, port: i32) -> serde_json::Value {
        json!({"service": {"name": name, "port": {"number": port}}})
    }

    fn world() -> (Vec<Arc<Service>>, Vec<Arc<EndpointSlice>>) {
        let ports = json!([{"name": "http", "port": 80, "targetPort": 8080}]);
        (
            vec![
                svc("default", "a", ports.clone()),
                svc("default", "b", ports.clone()),
                svc("default", "c", ports),
            ],
            vec![
                slice("default", "a", "http", 8080, &["10.244.0.2"]),
                slice("default", "b", "http", 8080, &["10.244.0.3"]),
                slice("default", "c", "http", 8080, &["10.244.0.4"]),
            ],
        )
    }

    fn the_test_ingress() -> Arc<Ingress> {
        ingress(json!({
            "metadata": {"namespace": "default", "name": "web", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"rules": [
                {"host": "hello.local", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": be("a", 80)},
                    {"path": "/v2", "pathType": "Prefix", "backend": be("b", 80)},
                    {"path": "/v2/exact", "pathType": "Exact", "backend": be("c", 80)},
                ]}},
                {"host": "other.local", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": be("b", 80)}]}},
                {"host": "*.wild.local", "http": {"paths": [
                    {"path": "/", "pathType": "ImplementationSpecific", "backend": be("c", 80)}]}},
            ]}
        }))
    }

    #[test]
    fn hosts_and_prefix_paths_longest_match_wins() {
        let (s, e) = world();
        let t = Table::build(&[the_test_ingress()], &s, &e);
        assert_eq!(backend_of(t.route("hello.local", "/")), "default/a:80");
        assert_eq!(
            backend_of(t.route("hello.local", "/index.html")),
            "default/a:80"
        );
        assert_eq!(backend_of(t.route("hello.local", "/v2")), "default/b:80");
        assert_eq!(backend_of(t.route("hello.local", "/v2/")), "default/b:80");
        assert_eq!(backend_of(t.route("hello.local", "/v2/x")), "default/b:80");
        // element-wise: /v2 is not a prefix of /v20
        assert_eq!(backend_of(t.route("hello.local", "/v20")), "default/a:80");
        // Exact beats the shorter Prefix; not its sub-paths
        assert_eq!(
            backend_of(t.route("hello.local", "/v2/exact")),
            "default/c:80"
        );
        assert_eq!(
            backend_of(t.route("hello.local", "/v2/exact/y")),
            "default/b:80"
        );
        // Host is case-insensitive, port and final dot ignored
        assert_eq!(
            backend_of(t.route("HELLO.local:80", "/v2/x")),
            "default/b:80"
        );
        assert_eq!(backend_of(t.route("hello.local.", "/")), "default/a:80");
        assert_eq!(
            backend_of(t.route("other.local", "/anything")),
            "default/b:80"
        );
        assert_eq!(backend_of(t.route("unknown.local", "/")), "404");
        assert_eq!(backend_of(t.route("127.0.0.1", "/")), "404");
    }

    #[test]
    fn wildcards_cover_exactly_one_label() {
        let (s, e) = world();
        let t = Table::build(&[the_test_ingress()], &s, &e);
        assert_eq!(backend_of(t.route("foo.wild.local", "/x")), "default/c:80");
        assert_eq!(backend_of(t.route("a.b.wild.local", "/")), "404");
        assert_eq!(backend_of(t.route("wild.local", "/")), "404");
    }

    #[test]
    fn exact_paths_and_prefix_with_trailing_slash() {
        let (s, e) = world();
        let ing = ingress(json!({
            "metadata": {"namespace": "default", "name": "x"},
            "spec": {"rules": [{"http": {"paths": [
                {"path": "/foo", "pathType": "Exact", "backend": be("a", 80)},
                {"path": "/aaa/bbb/", "pathType": "Prefix", "backend": be("b", 80)},
            ]}}]}
        }));
        let t = Table::build(&[ing], &s, &e);
        // no host: any host
        assert_eq!(backend_of(t.route("whatever", "/foo")), "default/a:80");
        assert_eq!(backend_of(t.route("whatever", "/foo/")), "404");
        assert_eq!(backend_of(t.route("whatever", "/aaa/bbb")), "default/b:80");
        assert_eq!(
            backend_of(t.route("whatever", "/aaa/bbb/ccc")),
            "default/b:80"
        );
        assert_eq!(backend_of(t.route("whatever", "/aaa/bbbxyz")), "404");
        assert_eq!(backend_of(t.route("whatever", "/aaa")), "404");
    }

    #[test]
    fn equal_prefix_and_exact_prefers_exact() {
        let (s, e) = world();
        let ing = ingress(json!({
            "metadata": {"namespace": "default", "name": "x"},
            "spec": {"rules": [{"host": "h", "http": {"paths": [
                {"path": "/p", "pathType": "Prefix", "backend": be("a", 80)},
                {"path": "/p", "pathType": "Exact", "backend": be("b", 80)},
            ]}}]}
        }));
        let t = Table::build(&[ing], &s, &e);
        assert_eq!(backend_of(t.route("h", "/p")), "default/b:80");
        assert_eq!(backend_of(t.route("h", "/p/q")), "default/a:80");
    }

    #[test]
    fn default_backends_and_the_oldest_ingress_wins() {
        let (s, e) = world();
        let older = ingress(json!({
            "metadata": {"namespace": "default", "name": "old", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"defaultBackend": be("c", 80),
                     "rules": [{"host": "h", "http": {"paths": [
                        {"path": "/x", "pathType": "Prefix", "backend": be("a", 80)}]}}]}
        }));
        let newer = ingress(json!({
            "metadata": {"namespace": "default", "name": "new", "creationTimestamp": "2026-02-01T00:00:00Z"},
            "spec": {"defaultBackend": be("b", 80),
                     "rules": [{"host": "h", "http": {"paths": [
                        {"path": "/x", "pathType": "Prefix", "backend": be("b", 80)},
                        {"path": "/y", "pathType": "Prefix", "backend": be("b", 80)}]}}]}
        }));
        // order of the input does not matter
        let t = Table::build(&[newer, older], &s, &e);
        assert_eq!(t.ingresses, ["default/old", "default/new"]);
        assert_eq!(backend_of(t.route("h", "/x")), "default/a:80");
        assert_eq!(backend_of(t.route("h", "/y")), "default/b:80");
        // unmatched path on h: the oldest Ingress' defaultBackend for h
        assert_eq!(backend_of(t.route("h", "/z")), "default/c:80");
        // unknown host: the global default backend (oldest)
        assert_eq!(backend_of(t.route("nope", "/")), "default/c:80");
    }

    #[test]
    fn backends_by_port_name_and_number_resolve_to_ready_endpoints() {
        let ports = json!([{"name": "web", "port": 80, "targetPort": "http"},
                           {"name": "admin", "port": 9000, "targetPort": 9001}]);
        let services = vec![svc("ns", "s", ports)];
        let slices: Vec<Arc<EndpointSlice>> = vec![Arc::new(
            serde_json::from_value(json!({
                "metadata": {"namespace": "ns", "name": "s-1", "labels": {"kubernetes.io/service-name": "s"}},
                "addressType": "IPv4",
                "ports": [{"name": "web", "port": 8080}, {"name": "admin", "port": 9001}],
                "endpoints": [
                    {"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
                    {"addresses": ["10.0.0.2"], "conditions": {"ready": false}},
                    {"addresses": ["10.0.0.3"]}
                ]
            }))
            .unwrap(),
        )];
        let ing = ingress(json!({
            "metadata": {"namespace": "ns", "name": "i"},
            "spec": {"rules": [{"host": "h", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "s", "port": {"name": "web"}}}},
                {"path": "/admin", "pathType": "Prefix", "backend": be("s", 9000)},
                {"path": "/bad", "pathType": "Prefix", "backend": be("s", 1234)},
                {"path": "/gone", "pathType": "Prefix", "backend": be("missing", 80)},
            ]}}]}
        }));
        let t = Table::build(&[ing], &services, &slices);
        let get = |p: &str| match t.route("h", p) {
            Route::Backend { backend, .. } => backend,
            Route::NotFound => panic!("no route for {p}"),
        };
        let addrs = |b: &Backend| {
            b.endpoints
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(addrs(&get("/")), ["10.0.0.1:8080", "10.0.0.3:8080"]);
        assert_eq!(addrs(&get("/admin")), ["10.0.0.1:9001", "10.0.0.3:9001"]);
        assert!(get("/bad").endpoints.is_empty());
        assert!(get("/bad")
            .problem
            .as_deref()
            .unwrap()
            .contains("no port 1234"));
        assert!(get("/gone")
            .problem
            .as_deref()
            .unwrap()
            .contains("not found"));
    }

    #[test]
    fn ssl_redirect_follows_tls_hosts_and_annotations() {
        let (s, e) = world();
        let mk = |name: &str, anns: serde_json::Value, host: &str| {
            ingress(json!({
                "metadata": {"namespace": "default", "name": name, "annotations": anns},
                "spec": {"tls": [{"hosts": ["secure.local", "*.secure.local"], "secretName": "tls-1"}],
                         "rules": [{"host": host, "http": {"paths": [
                            {"path": "/", "pathType": "Prefix", "backend": be("a", 80)}]}}]}
            }))
        };
        let redirect = |t: &Table, h: &str| match t.route(h, "/") {
            Route::Backend { ssl_redirect, .. } => ssl_redirect,
            Route::NotFound => panic!("404"),
        };
        let t = Table::build(
            &[
                mk("a", json!({}), "secure.local"),
                mk("b", json!({}), "x.secure.local"),
                mk("c", json!({}), "plain.local"),
                mk("d", json!({SSL_REDIRECT_ANNOTATION: "false"}), "off.local"),
                mk(
                    "e",
                    json!({FORCE_SSL_REDIRECT_ANNOTATION: "true"}),
                    "forced.local",
                ),
            ],
            &s,
            &e,
        );
        assert!(redirect(&t, "secure.local"));
        assert!(redirect(&t, "x.secure.local"));
        assert!(!redirect(&t, "plain.local"));
        assert!(!redirect(&t, "off.local"));
        assert!(redirect(&t, "forced.local"));
        let r = t.tls_for("secure.local").unwrap();
        assert_eq!(
            (r.namespace.as_str(), r.secret.as_str()),
            ("default", "tls-1")
        );
        assert_eq!(t.tls_for("y.secure.local").unwrap().secret, "tls-1");
        assert!(t.tls_for("a.b.secure.local").is_none());
        assert!(t.tls_for("hello.local").is_none());
    }

    #[test]
    fn class_selection() {
        let class = |name: &str, controller: &str, default: bool| {
            let mut anns = serde_json::Map::new();
            if default {
                anns.insert(DEFAULT_CLASS_ANNOTATION.into(), "true".into());
            }
            Arc::new(
                serde_json::from_value::<IngressClass>(json!({
                    "metadata": {"name": name, "annotations": anns},
                    "spec": {"controller": controller}
                }))
                .unwrap(),
            )
        };
        let with_class = |c: Option<&str>, legacy: Option<&str>| {
            let mut anns = serde_json::Map::new();
            if let Some(l) = legacy {
                anns.insert(LEGACY_CLASS_ANNOTATION.into(), l.into());
            }
            ingress(json!({"metadata": {"name": "i", "annotations": anns},
                           "spec": {"ingressClassName": c}}))
        };
        let ours_default = vec![
            class("nginx", CONTROLLER_NAME, true),
            class("other", "x.io/other", false),
        ];
        let ours_not_default = vec![class("nginx", CONTROLLER_NAME, false)];
        assert!(is_ours(
            &with_class(Some("nginx"), None),
            &ours_default,
            CONTROLLER_NAME
        ));
        assert!(!is_ours(
            &with_class(Some("other"), None),
            &ours_default,
            CONTROLLER_NAME
        ));
        assert!(!is_ours(
            &with_class(Some("missing"), None),
            &ours_default,
            CONTROLLER_NAME
        ));
        assert!(is_ours(
            &with_class(None, None),
            &ours_default,
            CONTROLLER_NAME
        ));
        assert!(!is_ours(
            &with_class(None, None),
            &ours_not_default,
            CONTROLLER_NAME
        ));
        assert!(is_ours(
            &with_class(None, Some("nginx")),
            &ours_not_default,
            CONTROLLER_NAME
        ));
        assert!(!is_ours(
            &with_class(None, Some("other")),
            &ours_default,
            CONTROLLER_NAME
        ));
        assert!(!is_ours(&with_class(None, None), &[], CONTROLLER_NAME));
    }

    #[test]
    fn regex_paths_and_rewrite_target() {
        let (s, e) = world();
        let ing = ingress(json!({
            "metadata": {"namespace": "default", "name": "rw", "annotations": {
                REWRITE_TARGET_ANNOTATION: "/$2"}},
            "spec": {"rules": [{"host": "h", "http": {"paths": [
                {"path": "/something(/|$)(.*)", "pathType": "ImplementationSpecific", "backend": be("a", 80)},
                {"path": "/(", "pathType": "Prefix", "backend": be("b", 80)},
            ]}}]}
        }));
        let plain = ingress(json!({
            "metadata": {"namespace": "default", "name": "plain"},
            "spec": {"rules": [{"host": "h", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": be("c", 80)}]}}]}
        }));
        let t = Table::build(&[ing, plain], &s, &e);
        assert_eq!(t.warnings.len(), 1, "{:?}", t.warnings);
        assert!(t.warnings[0].contains("\"/(\""), "{:?}", t.warnings);
        let rewritten = |path: &str, query: Option<&str>| match t.route("h", path) {
            Route::Backend {
                backend, rewrite, ..
            } => (
                backend.name.clone(),
                rewrite
                    .map(|r| r.apply(path, query))
                    .unwrap_or_else(|| path.to_string()),
            ),
            Route::NotFound => ("404".into(), String::new()),
        };
        assert_eq!(
            rewritten("/something/new/x", Some("a=1")),
            ("default/a:80".into(), "/new/x?a=1".into())
        );
        assert_eq!(
            rewritten("/SOMETHING", None),
            ("default/a:80".into(), "/".into())
        );
        // not a match of the regex: the plain Ingress' / (no rewrite)
        assert_eq!(
            rewritten("/somethingelse", None),
            ("default/c:80".into(), "/somethingelse".into())
        );
        assert_eq!(
            rewritten("/other", None),
            ("default/c:80".into(), "/other".into())
        );
    }

    #[test]
    fn rewrite_replaces_the_whole_path_as_nginx() {
        let r = Rewrite {
            re: path_regex("/").unwrap(),
            target: "/$1".into(),
        };
        // nginx: `rewrite (?i)/ /$1 break;` sends every path to /
        assert_eq!(r.apply("/foo/bar", None), "/");
        let r = Rewrite {
            re: path_regex("/api(/|$)(.*)").unwrap(),
            target: "/v1/$2?from=api".into(),
        };
        assert_eq!(r.apply("/api/users", Some("x=1")), "/v1/users?from=api");
        let r = Rewrite {
            re: path_regex("/app").unwrap(),
            target: "app-root".into(),
        };
        assert_eq!(r.apply("/app", None), "/app-root");
    }

    #[test]
    fn backend_protocol_marks_backends_tls() {
        let (s, e) = world();
        let mk = |name: &str, host: &str, proto: &str| {
            ingress(json!({
                "metadata": {"namespace": "default", "name": name,
                             "annotations": {BACKEND_PROTOCOL_ANNOTATION: proto}},
                "spec": {"rules": [{"host": host, "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": be("a", 80)}]}}]}
            }))
        };
        let t = Table::build(
            &[
                mk("x", "x", "HTTPS"),
                mk("y", "y", "http"),
                mk("z", "z", "GRPC"),
            ],
            &s,
            &e,
        );
        let tls = |h: &str| match t.route(h, "/") {
            Route::Backend { backend, .. } => backend.tls,
            Route::NotFound => panic!("404"),
        };
        assert!(tls("x"));
        assert!(!tls("y"));
        assert!(!tls("z"));
        assert_eq!(t.warnings.len(), 1, "{:?}", t.warnings);
        assert!(t.warnings[0].contains("GRPC"), "{:?}", t.warnings);
    }

    #[test]
    fn host_normalization() {
        assert_eq!(normalize_host("Example.COM:8080"), "example.com");
        assert_eq!(normalize_host("[::1]:80"), "::1");
        assert_eq!(normalize_host("::1"), "::1");
        assert_eq!(normalize_host("a.b."), "a.b");
    }
}
