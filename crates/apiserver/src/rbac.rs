//! Authorization with RBAC, as kube's RBAC authorizer: a request is allowed
//! when a rule of a (Cluster)Role bound to the user (directly, through a
//! group, or as a service account) covers its verb, API group, resource,
//! subresource and name, or its non-resource path. `system:masters` is
//! always allowed (and the in-process router does not authorize at all).
//!
//! The default roles and bindings of kube's bootstrap policy that matter
//! here are created at startup: cluster-admin, admin, edit, view,
//! system:discovery, system:basic-user, system:public-info-viewer. The rule
//! matching is pure and unit-tested.

use crate::tls::UserInfo;
use serde_json::{json, Value};

/// What a request wants to do.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Attributes {
    pub verb: String,
    /// Resource requests: API group, resource, subresource, namespace, name.
    pub resource_request: bool,
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// Non-resource requests: the URL path.
    pub path: String,
}

fn strs(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Whether one PolicyRule covers the attributes.
pub fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    let verbs = strs(rule.get("verbs"));
    if !verbs.iter().any(|v| *v == "*" || *v == a.verb) {
        return false;
    }
    if !a.resource_request {
        return strs(rule.get("nonResourceURLs")).iter().any(|u| {
            *u == "*"
                || *u == a.path
                || u.strip_suffix('*')
                    .is_some_and(|prefix| a.path.starts_with(prefix))
        });
    }
    if !strs(rule.get("apiGroups"))
        .iter()
        .any(|g| *g == "*" || *g == a.api_group)
    {
        return false;
    }
    let combined = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let resource_ok = strs(rule.get("resources")).iter().any(|r| {
        *r == "*"
            || *r == combined
            || (a.subresource.is_empty() && *r == a.resource)
            || (!a.subresource.is_empty() && *r == format!("*/{}", a.subresource))
    });
    if !resource_ok {
        return false;
    }
    let names = strs(rule.get("resourceNames"));
    names.is_empty() || (!a.name.is_empty() && names.contains(&a.name.as_str()))
}

/// Whether a binding subject is this user.
pub fn subject_matches(subject: &Value, user: &UserInfo, binding_ns: &str) -> bool {
    let kind = subject.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = subject.get("name").and_then(Value::as_str).unwrap_or("");
    match kind {
        "User" => name == user.name,
        "Group" => {
            user.groups.iter().any(|g| g == name)
                || (name == "system:authenticated" && user.name != "system:anonymous")
        }
        "ServiceAccount" => {
            let ns = subject
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_ns);
            user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

/// kube's Forbidden message for a denied request.
pub fn forbidden_message(user: &UserInfo, a: &Attributes) -> String {
    if !a.resource_request {
        return format!(
            "forbidden: User \"{}\" cannot {} path \"{}\"",
            user.name, a.verb, a.path
        );
    }
    let res = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let what = if a.api_group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.api_group)
    };
    let subject = if a.name.is_empty() {
        format!("{what} is forbidden")
    } else {
        format!("{what} \"{}\" is forbidden", a.name)
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    format!(
        "{subject}: User \"{}\" cannot {} resource \"{res}\" in API group \"{}\" {scope}",
        user.name, a.verb, a.api_group
    )
}

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

/// The bootstrap ClusterRoles (name, rules), after kube's bootstrap policy.
pub fn bootstrap_cluster_roles() -> Vec<(&'static str, Vec<Value>)> {
    let view_core = [
        "pods",
        "pods/log",
        "pods/status",
        "services",
        "services/status",
        "endpoints",
        "configmaps",
        "serviceaccounts",
        "events",
        "replicationcontrollers",
        "persistentvolumeclaims",
        "resourcequotas",
        "limitranges",
        "namespaces",
        "namespaces/status",
    ];
    let apps = [
        "deployments",
        "deployments/scale",
        "deployments/status",
        "replicasets",
        "replicasets/scale",
        "replicasets/status",
        "statefulsets",
        "statefulsets/scale",
        "statefulsets/status",
        "daemonsets",
        "daemonsets/status",
        "controllerrevisions",
    ];
    let batch = ["jobs", "jobs/status", "cronjobs", "cronjobs/status"];
    let view = vec![
        rule(&[""], &view_core, READ),
        rule(&["apps"], &apps, READ),
        rule(&["batch"], &batch, READ),
        rule(
            &["networking.k8s.io"],
            &["ingresses", "ingresses/status", "networkpolicies"],
            READ,
        ),
        rule(
            &["policy"],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
            READ,
        ),
        rule(&["discovery.k8s.io"], &["endpointslices"], READ),
        rule(&["events.k8s.io"], &["events"], READ),
    ];
    let mut edit = view.clone();
    edit.extend([
        rule(
            &[""],
            &[
                "pods",
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "pods/eviction",
                "services",
                "services/proxy",
                "endpoints",
                "configmaps",
                "secrets",
                "serviceaccounts",
                "persistentvolumeclaims",
                "replicationcontrollers",
                "replicationcontrollers/scale",
            ],
            WRITE,
        ),
        rule(&[""], &["secrets"], READ),
        rule(&[""], &["serviceaccounts/token"], &["create"]),
        rule(&["apps"], &apps, WRITE),
        rule(&["batch"], &batch, WRITE),
        rule(
            &["networking.k8s.io"],
            &["ingresses", "networkpolicies"],
            WRITE,
        ),
        rule(&["policy"], &["poddisruptionbudgets"], WRITE),
        rule(&["discovery.k8s.io"], &["endpointslices"], WRITE),
        rule(
            &["coordination.k8s.io"],
            &["leases"],
            &[
                "get",
                "list",
                "watch",
                "create",
                "delete",
                "deletecollection",
                "patch",
                "update",
            ],
        ),
    ]);
    let mut admin = edit.clone();
    admin.extend([
        rule(
            &["rbac.authorization.k8s.io"],
            &["roles", "rolebindings"],
            &[
                "get",
                "list",
                "watch",
                "create",
                "delete",
                "deletecollection",
                "patch",
                "update",
            ],
        ),
        rule(
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews"],
            &["create"],
        ),
    ]);
    vec![
        (
            "cluster-admin",
            vec![
                rule(&["*"], &["*"], &["*"]),
                json!({"nonResourceURLs": ["*"], "verbs": ["*"]}),
            ],
        ),
        ("admin", admin),
        ("edit", edit),
        ("view", view),
        (
            "system:discovery",
            vec![
                json!({"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"], "verbs": ["get"]}),
            ],
        ),
        (
            "system:basic-user",
            vec![
                rule(
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    &["create"],
                ),
                rule(
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                    &["create"],
                ),
            ],
        ),
        (
            "system:public-info-viewer",
            vec![
                json!({"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": ["get"]}),
            ],
        ),
    ]
}

/// The bootstrap ClusterRoleBindings: (name, role, group subjects).
pub fn bootstrap_bindings() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    vec![
        ("cluster-admin", "cluster-admin", vec!["system:masters"]),
        (
            "system:discovery",
            "system:discovery",
            vec!["system:authenticated"],
        ),
        (
            "system:basic-user",
            "system:basic-user",
            vec!["system:authenticated"],
        ),
        (
            "system:public-info-viewer",
            "system:public-info-viewer",
            vec!["system:authenticated", "system:unauthenticated"],
        ),
    ]
}

impl crate::Inner {
    fn load(&self, group: &str, resource: &str, ns: Option<&str>) -> Vec<Value> {
        let Some(info) = minik_apimachinery::resources::find(group, "v1", resource) else {
            return Vec::new();
        };
        let (kvs, _) = self.store.list(&crate::rest::storage_prefix(info, ns));
        kvs.iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect()
    }

    fn role_rules(&self, role_ref: &Value, binding_ns: Option<&str>) -> Vec<Value> {
        let kind = role_ref.get("kind").and_then(Value::as_str).unwrap_or("");
        let name = role_ref.get("name").and_then(Value::as_str).unwrap_or("");
        let (resource, ns) = match (kind, binding_ns) {
            ("ClusterRole", _) => ("clusterroles", None),
            ("Role", Some(ns)) => ("roles", Some(ns)),
            _ => return Vec::new(),
        };
        let Some(info) =
            minik_apimachinery::resources::find("rbac.authorization.k8s.io", "v1", resource)
        else {
            return Vec::new();
        };
        let Some(kv) = self.store.get(&crate::rest::storage_key(info, ns, name)) else {
            return Vec::new();
        };
        serde_json::from_slice::<Value>(&kv.value)
            .ok()
            .and_then(|r| r.get("rules").and_then(Value::as_array).cloned())
            .unwrap_or_default()
    }

    /// The RBAC decision for a user (`system:masters` is always allowed).
    pub fn authorize(&self, user: &UserInfo, a: &Attributes) -> bool {
        if user.is_admin() {
            return true;
        }
        let allowed_by = |binding: &Value, ns: Option<&str>| -> bool {
            let subjects = binding
                .get("subjects")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            if !subjects
                .iter()
                .any(|s| subject_matches(s, user, ns.unwrap_or("")))
            {
                return false;
            }
            let role_ref = binding.get("roleRef").cloned().unwrap_or_default();
            self.role_rules(&role_ref, ns)
                .iter()
                .any(|r| rule_allows(r, a))
        };
        if self
            .load("rbac.authorization.k8s.io", "clusterrolebindings", None)
            .iter()
            .any(|b| allowed_by(b, None))
        {
            return true;
        }
        if a.resource_request && !a.namespace.is_empty() {
            let ns = a.namespace.as_str();
            return self
                .load("rbac.authorization.k8s.io", "rolebindings", Some(ns))
                .iter()
                .any(|b| allowed_by(b, Some(ns)));
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(verb: &str, group: &str, res: &str, sub: &str, ns: &str, name: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            resource: res.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: name.into(),
            path: String::new(),
        }
    }

    #[test]
    fn rules_match_like_kube() {
        let r = rule(&[""], &["pods", "pods/log"], READ);
        assert!(rule_allows(
            &r,
            &attrs("list", "", "pods", "", "default", "")
        ));
        assert!(rule_allows(
            &r,
            &attrs("get", "", "pods", "log", "default", "hw")
        ));
        assert!(!rule_allows(
            &r,
            &attrs("get", "", "pods", "exec", "default", "hw")
        ));
        assert!(!rule_allows(
            &r,
            &attrs("delete", "", "pods", "", "default", "hw")
        ));
        assert!(!rule_allows(
            &r,
            &attrs("get", "apps", "pods", "", "default", "hw")
        ));
        let star = rule(&["*"], &["*"], &["*"]);
        assert!(rule_allows(
            &star,
            &attrs("delete", "apps", "deployments", "scale", "x", "y")
        ));
        let sub = rule(&[""], &["*/status"], &["update"]);
        assert!(rule_allows(
            &sub,
            &attrs("update", "", "pods", "status", "d", "p")
        ));
        assert!(!rule_allows(
            &sub,
            &attrs("update", "", "pods", "", "d", "p")
        ));
        let named = json!({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["app-config"], "verbs": ["get"]});
        assert!(rule_allows(
            &named,
            &attrs("get", "", "configmaps", "", "d", "app-config")
        ));
        assert!(!rule_allows(
            &named,
            &attrs("get", "", "configmaps", "", "d", "other")
        ));
        assert!(!rule_allows(
            &named,
            &attrs("list", "", "configmaps", "", "d", "")
        ));
        let nr = json!({"nonResourceURLs": ["/api", "/apis/*"], "verbs": ["get"]});
        let path = |p: &str| Attributes {
            verb: "get".into(),
            path: p.into(),
            ..Default::default()
        };
        assert!(rule_allows(&nr, &path("/api")));
        assert!(rule_allows(&nr, &path("/apis/apps/v1")));
        assert!(!rule_allows(&nr, &path("/api/v1")));
    }

    #[test]
    fn subjects_and_messages() {
        let sa = UserInfo {
            name: "system:serviceaccount:default:robot".into(),
            groups: vec!["system:serviceaccounts".into()],
        };
        assert!(subject_matches(
            &json!({"kind": "ServiceAccount", "name": "robot", "namespace": "default"}),
            &sa,
            "x"
        ));
        assert!(subject_matches(
            &json!({"kind": "ServiceAccount", "name": "robot"}),
            &sa,
            "default"
        ));
        assert!(!subject_matches(
            &json!({"kind": "ServiceAccount", "name": "robot", "namespace": "other"}),
            &sa,
            "x"
        ));
        assert!(subject_matches(
            &json!({"kind": "Group", "name": "system:serviceaccounts"}),
            &sa,
            ""
        ));
        assert!(subject_matches(
            &json!({"kind": "Group", "name": "system:authenticated"}),
            &sa,
            ""
        ));
        assert!(!subject_matches(
            &json!({"kind": "User", "name": "alice"}),
            &sa,
            ""
        ));
        assert_eq!(
            forbidden_message(&sa, &attrs("list", "", "pods", "", "default", "")),
            "pods is forbidden: User \"system:serviceaccount:default:robot\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        assert_eq!(
            forbidden_message(&sa, &attrs("get", "apps", "deployments", "", "", "x")),
            "deployments.apps \"x\" is forbidden: User \"system:serviceaccount:default:robot\" cannot get resource \"deployments\" in API group \"apps\" at the cluster scope"
        );
    }

    #[test]
    fn view_cannot_read_secrets_but_edit_can() {
        let roles = bootstrap_cluster_roles();
        let find = |n: &str| roles.iter().find(|(r, _)| *r == n).unwrap().1.clone();
        let secrets = attrs("get", "", "secrets", "", "default", "s");
        assert!(!find("view").iter().any(|r| rule_allows(r, &secrets)));
        assert!(find("edit").iter().any(|r| rule_allows(r, &secrets)));
        assert!(find("admin").iter().any(|r| rule_allows(
            r,
            &attrs(
                "create",
                "rbac.authorization.k8s.io",
                "rolebindings",
                "",
                "d",
                ""
            )
        )));
        assert!(!find("edit").iter().any(|r| rule_allows(
            r,
            &attrs(
                "create",
                "rbac.authorization.k8s.io",
                "rolebindings",
                "",
                "d",
                ""
            )
        )));
    }
}
