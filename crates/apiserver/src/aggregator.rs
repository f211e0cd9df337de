//! API aggregation (apiregistration.k8s.io/v1 APIService), as
//! kube-aggregator does it: an APIService with `spec.service` makes this
//! server proxy every request under `/apis/<group>/<version>` to the
//! Service's ready endpoint over TLS (verified with `caBundle`, or not with
//! `insecureSkipTLSVerify`), after its own authentication and RBAC, with the
//! user passed as `X-Remote-User` / `X-Remote-Group`. A checker fetches each
//! backend's discovery document (`/apis/<group>/<version>`), keeps it for the
//! discovery this server answers, and sets the APIService's `Available`
//! condition (`Passed`, `ServiceNotFound`, `MissingEndpoints`,
//! `FailedDiscoveryCheck`, ...). APIServices without a service are Local.

use crate::error::{ApiError, Cause};
use crate::request::Query;
use crate::rest::{storage_key, storage_prefix, UpdateMode};
use crate::upstream::{self, Scheme, Target};
use crate::{Inner, UserInfo};
use axum::body::Body;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use base64::Engine;
use minik_apimachinery::resources::{self, OwnedResourceInfo, ResourceInfo};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

pub const GROUP: &str = "apiregistration.k8s.io";

/// An APIService served by a Service in the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Remote {
    pub name: String,
    pub group: String,
    pub version: String,
    pub namespace: String,
    pub service: String,
    pub port: u16,
    /// PEM of `spec.caBundle`.
    pub ca: Option<Vec<u8>>,
    pub insecure: bool,
}

impl Remote {
    /// The APIService's remote backend, None for a Local one.
    pub fn from_json(api: &Value) -> Option<Remote> {
        let spec = api.get("spec")?;
        let svc = spec.get("service").filter(|s| s.is_object())?;
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let ca = spec
            .get("caBundle")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok());
        Some(Remote {
            name: s(api.get("metadata")?, "name"),
            group: s(spec, "group"),
            version: s(spec, "version"),
            namespace: s(svc, "namespace"),
            service: s(svc, "name"),
            port: svc.get("port").and_then(Value::as_u64).unwrap_or(443) as u16,
            ca,
            insecure: spec
                .get("insecureSkipTLSVerify")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }

    fn target(&self, host: String, port: u16) -> Target {
        let server_name = format!("{}.{}.svc", self.service, self.namespace);
        Target {
            host,
            port,
            scheme: Scheme::Https {
                ca: if self.insecure {
                    None
                } else {
                    self.ca.clone().or(Some(Vec::new()))
                },
                server_name,
            },
        }
    }
}

/// The APIServices this server proxies and what their backends serve.
#[derive(Default)]
pub struct Registry {
    remotes: RwLock<Vec<Arc<Remote>>>,
    /// APIService name → the resources its backend listed.
    discovered: RwLock<HashMap<String, Vec<&'static ResourceInfo>>>,
    /// Wakes the availability checker (an APIService or Endpoints changed).
    pub(crate) wake: Arc<tokio::sync::Notify>,
}

fn read<T: Clone>(l: &RwLock<T>) -> T {
    match l.read() {
        Ok(v) => v.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

impl Registry {
    pub fn load(&self, apiservices: &[Value]) {
        let remotes: Vec<Arc<Remote>> = apiservices
            .iter()
            .filter_map(Remote::from_json)
            .map(Arc::new)
            .collect();
        let names: Vec<String> = remotes.iter().map(|r| r.name.clone()).collect();
        match self.remotes.write() {
            Ok(mut v) => *v = remotes,
            Err(p) => *p.into_inner() = remotes,
        }
        if let Ok(mut d) = self.discovered.write() {
            d.retain(|k, _| names.contains(k));
        }
    }

    /// The remote serving a group-version, if any.
    pub fn remote_for(&self, group: &str, version: &str) -> Option<Arc<Remote>> {
        read(&self.remotes)
            .into_iter()
            .find(|r| r.group == group && r.version == version)
    }

    pub fn remotes(&self) -> Vec<Arc<Remote>> {
        read(&self.remotes)
    }

    /// Every resource the backends listed (for discovery).
    pub fn resources(&self) -> Vec<&'static ResourceInfo> {
        let d = read(&self.discovered);
        let mut names: Vec<&String> = d.keys().collect();
        names.sort();
        names.into_iter().flat_map(|n| d[n].clone()).collect()
    }

    fn set_discovered(&self, name: &str, infos: Option<Vec<&'static ResourceInfo>>) {
        if let Ok(mut d) = self.discovered.write() {
            match infos {
                Some(i) => {
                    d.insert(name.to_string(), i);
                }
                None => {
                    d.remove(name);
                }
            }
        }
    }
}

/// The resources of an `APIResourceList` as resource rows (subresources
/// folded into their parent).
pub fn parse_resource_list(group: &str, version: &str, list: &Value) -> Vec<&'static ResourceInfo> {
    let entries = list
        .get("resources")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let strs = |v: &Value, k: &str| -> Vec<String> {
        v.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for e in entries.iter() {
        let Some(name) = e.get("name").and_then(Value::as_str) else {
            continue;
        };
        if name.contains('/') {
            continue;
        }
        let kind = e
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let subresources: Vec<String> = entries
            .iter()
            .filter_map(|s| s.get("name").and_then(Value::as_str))
            .filter_map(|n| n.strip_prefix(&format!("{name}/")))
            .map(String::from)
            .collect();
        let singular = e
            .get("singularName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .unwrap_or_else(|| kind.to_lowercase());
        out.push(resources::intern(&OwnedResourceInfo {
            group: group.into(),
            version: version.into(),
            kind,
            resource: name.into(),
            singular,
            namespaced: e
                .get("namespaced")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            short_names: strs(e, "shortNames"),
            categories: strs(e, "categories"),
            subresources,
            verbs: strs(e, "verbs"),
        }));
    }
    out
}

/// The Service port an APIService names: (port name, target port as
/// number or name). Err(reason, message) when the Service does not have it.
pub fn service_port(svc: &Value, port: u16) -> Result<(String, Value), (String, String)> {
    let ports = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let p = ports
        .iter()
        .find(|p| p.get("port").and_then(Value::as_u64) == Some(port as u64))
        .ok_or_else(|| {
            (
                "ServicePortError".to_string(),
                format!(
                    "service has no port {port}: add it to the Service or fix spec.service.port"
                ),
            )
        })?;
    let name = p
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let target = p.get("targetPort").cloned().unwrap_or(json!(port));
    Ok((name, target))
}

/// A ready address and port of an Endpoints object for a service port name.
pub fn endpoint_from_endpoints(ep: &Value, port_name: &str) -> Option<(String, u16)> {
    for subset in ep
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let ports = subset
            .get("ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let port = ports
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name)
            .or_else(|| {
                if ports.len() == 1 {
                    ports.first()
                } else {
                    None
                }
            })
            .and_then(|p| p.get("port").and_then(Value::as_u64))?;
        let addr = subset
            .get("addresses")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(|a| a.get("ip").and_then(Value::as_str));
        if let Some(ip) = addr {
            return Some((ip.to_string(), port as u16));
        }
    }
    None
}

/// A ready address and port from EndpointSlices for a service port name.
pub fn endpoint_from_slices(slices: &[Value], port_name: &str) -> Option<(String, u16)> {
    for s in slices {
        let ports = s
            .get("ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let Some(port) = ports
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name)
            .or_else(|| {
                if ports.len() == 1 {
                    ports.first()
                } else {
                    None
                }
            })
            .and_then(|p| p.get("port").and_then(Value::as_u64))
        else {
            continue;
        };
        for e in s
            .get("endpoints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if e.pointer("/conditions/ready").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            if let Some(ip) = e.pointer("/addresses/0").and_then(Value::as_str) {
                return Some((ip.to_string(), port as u16));
            }
        }
    }
    None
}

/// The built-in (group, version) pairs, core first, in table order.
pub fn builtin_group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in resources::builtin_resources() {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// Validates an APIService (name `<version>.<group>`, priorities, port).
pub fn validate_apiservice(api: &Value) -> Vec<Cause> {
    let mut c = Vec::new();
    let s = |p: &str| api.pointer(p).and_then(Value::as_str).unwrap_or("");
    let name = s("/metadata/name");
    let group = s("/spec/group");
    let version = s("/spec/version");
    if version.is_empty() {
        c.push(Cause::required("spec.version", ""));
    }
    // `v1.` for the core group, `v1beta1.metrics.k8s.io` otherwise
    let want = format!("{version}.{group}");
    if !version.is_empty() && name != want {
        c.push(Cause::invalid(
            "metadata.name",
            &json!(name),
            &format!("must be {want}"),
        ));
    }
    let gp = api
        .pointer("/spec/groupPriorityMinimum")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if gp <= 0 || gp > 20000 {
        c.push(Cause::invalid(
            "spec.groupPriorityMinimum",
            &json!(gp),
            "must be positive and less than 20000",
        ));
    }
    let vp = api
        .pointer("/spec/versionPriority")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if vp <= 0 || vp > 1000 {
        c.push(Cause::invalid(
            "spec.versionPriority",
            &json!(vp),
            "must be positive and less than 1000",
        ));
    }
    if let Some(svc) = api.pointer("/spec/service").filter(|v| v.is_object()) {
        if svc
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            c.push(Cause::required("spec.service.namespace", ""));
        }
        if svc
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            c.push(Cause::required("spec.service.name", ""));
        }
        if let Some(p) = svc.get("port").and_then(Value::as_i64) {
            if !(1..=65535).contains(&p) {
                c.push(Cause::invalid(
                    "spec.service.port",
                    &json!(p),
                    "must be a valid port number (1-65535)",
                ));
            }
        }
        let insecure = api
            .pointer("/spec/insecureSkipTLSVerify")
            .and_then(Value::as_bool)
            == Some(true);
        if insecure && !s("/spec/caBundle").is_empty() {
            c.push(Cause::invalid(
                "spec.insecureSkipTLSVerify",
                &json!(true),
                "may not be true if caBundle is present",
            ));
        }
    }
    c
}

/// The `Available` condition, keeping the transition time when unchanged.
fn with_available(api: &Value, ok: bool, reason: &str, message: &str) -> Value {
    let status = if ok { "True" } else { "False" };
    let old = api
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Available"))
        .cloned();
    let time = match &old {
        Some(o) if o["status"] == status => o["lastTransitionTime"].clone(),
        _ => json!(crate::rest::now_rfc3339()),
    };
    let mut new = api.clone();
    new["status"] = json!({"conditions": [{"type": "Available", "status": status,
        "lastTransitionTime": time, "reason": reason, "message": message}]});
    new
}

fn apiservice_info() -> Option<&'static ResourceInfo> {
    resources::find(GROUP, "v1", "apiservices")
}

/// Whether `info` is the APIService resource.
pub fn is_apiservice_resource(info: &ResourceInfo) -> bool {
    info.group == GROUP && info.resource == "apiservices"
}

impl Inner {
    fn stored(&self, group: &str, resource: &str, ns: Option<&str>, name: &str) -> Option<Value> {
        let info = resources::find(group, "v1", resource)?;
        let kv = self.store.get(&storage_key(info, ns, name))?;
        serde_json::from_slice(&kv.value).ok()
    }

    pub(crate) fn stored_apiservices(&self) -> Vec<Value> {
        let Some(info) = apiservice_info() else {
            return Vec::new();
        };
        let (kvs, _) = self.store.list(&storage_prefix(info, None));
        kvs.iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect()
    }

    pub(crate) fn reload_apiservices(&self) {
        self.apis.load(&self.stored_apiservices());
        self.apis.wake.notify_one();
    }

    /// The address of a Service's ready endpoint for a service port, as the
    /// aggregator and `services/proxy` resolve it.
    pub(crate) fn resolve_service(
        &self,
        ns: &str,
        name: &str,
        port: Option<u16>,
        port_name: Option<&str>,
    ) -> Result<(String, u16), (String, String)> {
        let svc = self.stored("", "services", Some(ns), name).ok_or_else(|| {
            (
                "ServiceNotFound".to_string(),
                format!("service/{name} in \"{ns}\" is not present: create it"),
            )
        })?;
        let (pname, target) = match (port, port_name) {
            (Some(p), _) => service_port(&svc, p)?,
            (None, Some(n)) => {
                let ports = svc
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let p = ports
                    .iter()
                    .find(|p| p.get("name").and_then(Value::as_str) == Some(n))
                    .ok_or_else(|| {
                        (
                            "ServicePortError".to_string(),
                            format!("service {name} has no port named {n:?}"),
                        )
                    })?;
                (
                    n.to_string(),
                    p.get("targetPort").cloned().unwrap_or(json!(0)),
                )
            }
            (None, None) => {
                let ports = svc
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let p = ports.first().ok_or_else(|| {
                    (
                        "ServicePortError".to_string(),
                        format!("service {name} has no ports"),
                    )
                })?;
                (
                    p.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    p.get("targetPort").cloned().unwrap_or(json!(0)),
                )
            }
        };
        if let Some(ep) = self.stored("", "endpoints", Some(ns), name) {
            if let Some(a) = endpoint_from_endpoints(&ep, &pname) {
                return Ok(a);
            }
        }
        if let Some(info) = resources::find("discovery.k8s.io", "v1", "endpointslices") {
            let (kvs, _) = self.store.list(&storage_prefix(info, Some(ns)));
            let slices: Vec<Value> = kvs
                .iter()
                .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
                .filter(|s| {
                    s.pointer("/metadata/labels/kubernetes.io~1service-name")
                        .and_then(Value::as_str)
                        == Some(name)
                })
                .collect();
            if let Some(a) = endpoint_from_slices(&slices, &pname) {
                return Ok(a);
            }
        }
        let _ = target;
        Err((
            "MissingEndpoints".to_string(),
            format!("endpoints for service/{name} in \"{ns}\" have no addresses with port name {pname:?}"),
        ))
    }

    /// Checks one remote: resolve, fetch discovery. Ok(resources) or Err(reason, message).
    async fn check_remote(
        &self,
        r: &Remote,
    ) -> Result<Vec<&'static ResourceInfo>, (String, String)> {
        let (ip, port) = self.resolve_service(&r.namespace, &r.service, Some(r.port), None)?;
        let target = r.target(ip.clone(), port);
        let path = format!("/apis/{}/{}", r.group, r.version);
        let mut headers = HeaderMap::new();
        headers.insert("accept", "application/json".parse().expect("static header"));
        upstream::add_identity(
            &mut headers,
            "system:kube-aggregator",
            &["system:masters".into()],
        );
        let list = upstream::get_json(&target, &path, &headers)
            .await
            .map_err(|e| {
                (
                    "FailedDiscoveryCheck".to_string(),
                    format!("failing or missing response from https://{ip}:{port}{path}: {e}"),
                )
            })?;
        Ok(parse_resource_list(&r.group, &r.version, &list))
    }

    /// Checks every APIService once and records the results.
    pub(crate) async fn check_apiservices(&self) {
        let Some(info) = apiservice_info() else {
            return;
        };
        for api in self.stored_apiservices() {
            let name = api
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let (ok, reason, message) = match Remote::from_json(&api) {
                None => (
                    true,
                    "Local".to_string(),
                    "Local APIServices are always available".to_string(),
                ),
                Some(r) => match self.check_remote(&r).await {
                    Ok(infos) => {
                        self.apis.set_discovered(&name, Some(infos));
                        (true, "Passed".to_string(), "all checks passed".to_string())
                    }
                    Err((reason, msg)) => {
                        self.apis.set_discovered(&name, None);
                        (false, reason, msg)
                    }
                },
            };
            let new = with_available(&api, ok, &reason, &message);
            if new.get("status") != api.get("status") {
                let status = new["status"].clone();
                let res = self
                    .update_with(info, None, &name, UpdateMode::Status, false, |old| {
                        let mut n = old.clone();
                        n["status"] = status.clone();
                        Ok(n)
                    })
                    .await;
                if let Err(e) = res {
                    tracing::debug!("updating APIService {name} status: {}", e.message);
                }
            }
        }
    }

    /// Proxies a request for an aggregated group-version to its backend.
    pub(crate) async fn proxy_aggregated(
        &self,
        remote: &Remote,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Body,
        user: &UserInfo,
    ) -> Result<Response, ApiError> {
        let (ip, port) = self
            .resolve_service(&remote.namespace, &remote.service, Some(remote.port), None)
            .map_err(|(reason, msg)| {
                ApiError::service_unavailable(format!(
                    "the API {}/{} is served by APIService {} but it is not available ({reason}): {msg}",
                    remote.group, remote.version, remote.name
                ))
            })?;
        let mut h = upstream::forwarded_headers(headers);
        upstream::add_identity(&mut h, &user.name, &crate::user_groups(user));
        let target = remote.target(ip, port);
        Ok(upstream::forward(&target, method, path_and_query, &h, body).await?)
    }
}

/// RBAC attributes of a request under an aggregated group-version
/// (`rest` = the path segments after `/apis/<group>/<version>`).
pub fn attributes(
    method: &Method,
    group: &str,
    rest: &[&str],
    q: &Query,
    path: &str,
) -> crate::rbac::Attributes {
    let (watch, rest) = match rest {
        ["watch", r @ ..] => (true, r),
        r => (q.flag("watch"), r),
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, r @ ..] if !r.is_empty() => (ns.to_string(), r),
        r => (String::new(), r),
    };
    let Some(resource) = rest.first() else {
        // the group-version's discovery document
        return crate::rbac::Attributes {
            verb: "get".into(),
            path: path.into(),
            ..Default::default()
        };
    };
    let name = rest.get(1).map(|s| s.to_string()).unwrap_or_default();
    let sub = rest.get(2).map(|s| s.to_string()).unwrap_or_default();
    let verb = match (method.as_str(), name.is_empty()) {
        ("GET" | "HEAD", _) if watch => "watch",
        ("GET" | "HEAD", false) => "get",
        ("GET" | "HEAD", true) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", false) => "delete",
        ("DELETE", true) => "deletecollection",
        (m, _) => {
            return crate::rbac::Attributes {
                verb: m.to_lowercase(),
                path: path.into(),
                ..Default::default()
            }
        }
    };
    crate::rbac::Attributes {
        verb: verb.into(),
        resource_request: true,
        api_group: group.into(),
        resource: resource.to_string(),
        subresource: sub,
        namespace: ns,
        name,
        path: String::new(),
    }
}

/// Checks the APIServices every few seconds, and at once when woken.
pub(crate) fn spawn_checker(inner: Weak<Inner>) {
    tokio::spawn(async move {
        loop {
            // hold the server only while checking, so dropping it stops this task
            let wake = {
                let Some(i) = inner.upgrade() else { return };
                i.check_apiservices().await;
                i.apis.wake.clone()
            };
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_and_discovery_lists() {
        let api = json!({"metadata": {"name": "v1beta1.metrics.k8s.io"}, "spec": {"group": "metrics.k8s.io", "version": "v1beta1",
            "service": {"namespace": "kube-system", "name": "metrics-server"}, "insecureSkipTLSVerify": true,
            "groupPriorityMinimum": 100, "versionPriority": 100}});
        let r = Remote::from_json(&api).unwrap();
        assert_eq!(
            (r.port, r.insecure, r.service.as_str()),
            (443, true, "metrics-server")
        );
        assert!(validate_apiservice(&api).is_empty());
        let mut bad = api.clone();
        bad["metadata"]["name"] = json!("metrics");
        bad["spec"]["versionPriority"] = json!(0);
        let msgs: Vec<String> = validate_apiservice(&bad)
            .iter()
            .map(Cause::render)
            .collect();
        assert_eq!(
            msgs,
            vec![
                "metadata.name: Invalid value: \"metrics\": must be v1beta1.metrics.k8s.io",
                "spec.versionPriority: Invalid value: 0: must be positive and less than 1000",
            ]
        );
        assert!(Remote::from_json(
            &json!({"metadata": {"name": "v1.apps"}, "spec": {"group": "apps", "version": "v1"}})
        )
        .is_none());
        let list = json!({"kind": "APIResourceList", "groupVersion": "metrics.k8s.io/v1beta1", "resources": [
            {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
            {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]},
            {"name": "pods/status", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get"]}]});
        let infos = parse_resource_list("metrics.k8s.io", "v1beta1", &list);
        assert_eq!(infos.len(), 2);
        assert_eq!(
            (infos[0].resource, infos[0].singular, infos[0].namespaced),
            ("nodes", "nodemetrics", false)
        );
        assert_eq!(infos[1].subresources, &["status"]);
        assert_eq!(infos[1].verbs, &["get", "list"]);
    }

    #[test]
    fn local_apiservices_for_builtin_groups() {
        let core = json!({"metadata": {"name": "v1."}, "spec": {"group": "", "version": "v1", "groupPriorityMinimum": 18000, "versionPriority": 1}});
        assert!(validate_apiservice(&core).is_empty());
        assert_eq!(builtin_group_versions()[0], ("", "v1"));
        assert!(builtin_group_versions().contains(&("apps", "v1")));
    }

    #[test]
    fn endpoints_resolve_by_port_name() {
        let svc =
            json!({"spec": {"ports": [{"name": "https", "port": 443, "targetPort": "https"}]}});
        assert_eq!(service_port(&svc, 443).unwrap().0, "https");
        assert_eq!(service_port(&svc, 80).unwrap_err().0, "ServicePortError");
        let ep = json!({"subsets": [{"addresses": [{"ip": "10.244.0.5"}], "ports": [{"name": "https", "port": 10250}]}]});
        assert_eq!(
            endpoint_from_endpoints(&ep, "https"),
            Some(("10.244.0.5".into(), 10250))
        );
        assert_eq!(
            endpoint_from_endpoints(
                &json!({"subsets": [{"notReadyAddresses": [{"ip": "1.2.3.4"}], "ports": [{"port": 1}]}]}),
                ""
            ),
            None
        );
        let slices = vec![
            json!({"endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": false}}, {"addresses": ["10.0.0.2"], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": 4443}]}),
        ];
        assert_eq!(
            endpoint_from_slices(&slices, "https"),
            Some(("10.0.0.2".into(), 4443))
        );
    }

    #[test]
    fn attributes_of_aggregated_requests() {
        let q = Query::default();
        let a = attributes(
            &Method::GET,
            "metrics.k8s.io",
            &["namespaces", "default", "pods", "web"],
            &q,
            "/x",
        );
        assert_eq!(
            (
                a.verb.as_str(),
                a.resource.as_str(),
                a.namespace.as_str(),
                a.name.as_str()
            ),
            ("get", "pods", "default", "web")
        );
        let a = attributes(&Method::GET, "metrics.k8s.io", &["nodes"], &q, "/x");
        assert_eq!((a.verb.as_str(), a.resource.as_str()), ("list", "nodes"));
        let a = attributes(
            &Method::GET,
            "metrics.k8s.io",
            &[],
            &q,
            "/apis/metrics.k8s.io/v1beta1",
        );
        assert!(!a.resource_request);
    }

    #[test]
    fn available_condition_keeps_its_transition_time() {
        let api = json!({"status": {"conditions": [{"type": "Available", "status": "True", "lastTransitionTime": "t0", "reason": "Passed", "message": "all checks passed"}]}});
        assert_eq!(
            with_available(&api, true, "Passed", "all checks passed"),
            api
        );
        let down = with_available(&api, false, "MissingEndpoints", "none");
        assert_eq!(
            down["status"]["conditions"][0]["reason"],
            "MissingEndpoints"
        );
        assert_ne!(down["status"]["conditions"][0]["lastTransitionTime"], "t0");
    }
}
