//! Discovery documents built from the served resources (the built-in table,
//! CRD versions and the resources aggregated API servers list): aggregated
//! discovery v2 (`APIGroupDiscoveryList`, what kubectl asks for first) and
//! the legacy `APIVersions` / `APIGroupList` / `APIResourceList`.

use minik_apimachinery::ResourceInfo;
use serde_json::{json, Value};

/// The content type kubectl recognises for aggregated discovery v2.
pub const AGG_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
pub const AGG_V2BETA1: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// Which aggregated version the Accept header asks for, if any.
pub fn wants_aggregated(accept: &str) -> Option<&'static str> {
    let mut best = None;
    for part in accept.split(',') {
        let p: String = part.chars().filter(|c| !c.is_whitespace()).collect();
        if p.contains("as=APIGroupDiscoveryList") && p.contains("g=apidiscovery.k8s.io") {
            if p.contains("v=v2;") || p.ends_with("v=v2") {
                return Some("v2");
            }
            if p.contains("v=v2beta1") && best.is_none() {
                best = Some("v2beta1");
            }
        }
    }
    best
}

/// (kind, group, version, verbs) of a subresource in discovery.
fn subresource_kind(info: &ResourceInfo, sub: &str) -> (String, String, String, Vec<&'static str>) {
    let same = (
        info.kind.to_string(),
        info.group.to_string(),
        info.version.to_string(),
    );
    let (k, g, v) = match sub {
        "scale" => (
            "Scale".to_string(),
            "autoscaling".to_string(),
            "v1".to_string(),
        ),
        "binding" => ("Binding".into(), "".into(), "v1".into()),
        "exec" => ("PodExecOptions".into(), "".into(), "v1".into()),
        "attach" => ("PodAttachOptions".into(), "".into(), "v1".into()),
        "portforward" => ("PodPortForwardOptions".into(), "".into(), "v1".into()),
        "eviction" => ("Eviction".into(), "policy".into(), "v1".into()),
        "token" => (
            "TokenRequest".into(),
            "authentication.k8s.io".into(),
            "v1".into(),
        ),
        "proxy" if info.resource == "nodes" => ("NodeProxyOptions".into(), "".into(), "v1".into()),
        "proxy" if info.resource == "pods" => ("PodProxyOptions".into(), "".into(), "v1".into()),
        "proxy" => ("ServiceProxyOptions".into(), "".into(), "v1".into()),
        _ => same,
    };
    let verbs = match sub {
        "status" | "scale" | "ephemeralcontainers" => vec!["get", "patch", "update"],
        "log" => vec!["get"],
        "binding" | "eviction" | "token" => vec!["create"],
        "exec" | "attach" | "portforward" => vec!["create", "get"],
        "finalize" => vec!["update"],
        "proxy" => vec!["create", "delete", "get", "patch", "update"],
        _ => vec!["get"],
    };
    (k, g, v, verbs)
}

fn agg_resource(info: &ResourceInfo) -> Value {
    let subs: Vec<Value> = info
        .subresources
        .iter()
        .map(|s| {
            let (k, g, v, verbs) = subresource_kind(info, s);
            json!({"subresource": s, "responseKind": {"group": g, "version": v, "kind": k}, "verbs": verbs})
        })
        .collect();
    let mut r = json!({
        "resource": info.resource,
        "responseKind": {"group": info.group, "version": info.version, "kind": info.kind},
        "scope": if info.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": info.singular,
        "verbs": info.verbs,
    });
    if !info.short_names.is_empty() {
        r["shortNames"] = json!(info.short_names);
    }
    if !info.categories.is_empty() {
        r["categories"] = json!(info.categories);
    }
    if !subs.is_empty() {
        r["subresources"] = json!(subs);
    }
    r
}

/// Kubernetes' version priority: GA before beta before alpha, higher
/// numbers first, anything else last (alphabetically).
pub fn version_priority(v: &str) -> (u8, i64, i64, String) {
    let parse = || -> Option<(u8, i64, i64)> {
        let rest = v.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: i64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((0, -major, 0));
        }
        for (word, rank) in [("beta", 1u8), ("alpha", 2u8)] {
            if let Some(n) = tail.strip_prefix(word) {
                let minor: i64 = if n.is_empty() { 0 } else { n.parse().ok()? };
                return Some((rank, -major, -minor));
            }
        }
        None
    };
    match parse() {
        Some((a, b, c)) => (a, b, c, String::new()),
        None => (3, 0, 0, v.to_string()),
    }
}

/// Groups in discovery order: (group, [versions], preferred version first).
fn groups(all: &[&'static ResourceInfo]) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in all {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, vs)) => {
                if !vs.contains(&r.version) {
                    vs.push(r.version)
                }
            }
            None => out.push((r.group, vec![r.version])),
        }
    }
    for (_, vs) in &mut out {
        vs.sort_by_key(|v| version_priority(v));
    }
    out
}

/// `APIGroupDiscoveryList` for `/api` (core = true) or `/apis`.
pub fn aggregated(core: bool, version: &str, all: &[&'static ResourceInfo]) -> Value {
    let items: Vec<Value> = groups(all)
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, versions)| {
            let vs: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = all
                        .iter()
                        .copied()
                        .filter(|r| r.group == g && r.version == *v)
                        .map(agg_resource)
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": vs})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": format!("apidiscovery.k8s.io/{version}"), "metadata": {}, "items": items})
}

/// `GET /api` (legacy).
pub fn api_versions(server_address: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
           "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]})
}

fn group_json(g: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({"name": g, "versions": vs, "preferredVersion": vs[0]})
}

/// `GET /apis` (legacy).
pub fn api_group_list(all: &[&'static ResourceInfo]) -> Value {
    let groups: Vec<Value> = groups(all)
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_json(g, &vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/<group>`; None when the group is not served.
pub fn api_group(group: &str, all: &[&'static ResourceInfo]) -> Option<Value> {
    groups(all)
        .into_iter()
        .find(|(g, _)| *g == group && !g.is_empty())
        .map(|(g, vs)| {
            let mut v = group_json(g, &vs);
            v["kind"] = json!("APIGroup");
            v["apiVersion"] = json!("v1");
            v
        })
}

/// `GET /api/v1` or `/apis/<g>/<v>`; None when not served.
pub fn resource_list(group: &str, version: &str, all: &[&'static ResourceInfo]) -> Option<Value> {
    let rs: Vec<&ResourceInfo> = all
        .iter()
        .copied()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if rs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for r in rs {
        let mut main = json!({"name": r.resource, "singularName": r.singular, "namespaced": r.namespaced,
                              "kind": r.kind, "verbs": r.verbs});
        if !r.short_names.is_empty() {
            main["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            main["categories"] = json!(r.categories);
        }
        resources.push(main);
        for s in r.subresources {
            let (k, g, v, verbs) = subresource_kind(r, s);
            let mut sub = json!({"name": format!("{}/{}", r.resource, s), "singularName": "", "namespaced": r.namespaced,
                                 "kind": k, "verbs": verbs});
            if g != r.group || v != r.version {
                sub["group"] = json!(g);
                sub["version"] = json!(v);
            }
            resources.push(sub);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtins() -> Vec<&'static ResourceInfo> {
        minik_apimachinery::builtin_resources().iter().collect()
    }

    #[test]
    fn versions_sort_by_kubernetes_priority() {
        let mut vs = vec![
            "v1alpha1", "v2beta1", "v1", "v1beta2", "foo", "v2", "v1beta1",
        ];
        vs.sort_by_key(|v| version_priority(v));
        assert_eq!(
            vs,
            vec!["v2", "v1", "v2beta1", "v1beta2", "v1beta1", "v1alpha1", "foo"]
        );
    }

    #[test]
    fn accept_negotiation() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(wants_aggregated(kubectl), Some("v2"));
        assert_eq!(
            wants_aggregated(
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            ),
            Some("v2beta1")
        );
        assert_eq!(wants_aggregated("application/json, */*"), None);
    }

    #[test]
    fn aggregated_core_and_groups() {
        let core = aggregated(true, "v2", &builtins());
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        assert_eq!(core["items"][0]["metadata"]["name"], "");
        let pods = core["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .unwrap()
            .clone();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["scope"], "Namespaced");
        assert!(pods["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["subresource"] == "log"));
        let apis = aggregated(false, "v2", &builtins());
        assert!(apis["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["metadata"]["name"] == "apps"));
        assert!(apis["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["metadata"]["name"] != ""));
    }

    #[test]
    fn legacy_documents() {
        let l = resource_list("apps", "v1", &builtins()).unwrap();
        let names: Vec<&str> = l["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"deployments/scale"));
        let scale = l["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(scale["group"], "autoscaling");
        assert!(resource_list("nope", "v1", &builtins()).is_none());
        assert!(api_group_list(&builtins())["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "apps"));
        assert_eq!(
            api_group("apps", &builtins()).unwrap()["preferredVersion"]["groupVersion"],
            "apps/v1"
        );
    }
}
