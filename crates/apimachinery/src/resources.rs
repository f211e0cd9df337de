//! The built-in resources the apiserver serves: one row per resource.
//! Discovery, OpenAPI, the REST paths and `kubectl api-resources` all read
//! this table; adding a resource starts here.

/// One served resource (group/version/resource and how it looks in discovery).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Plural resource name used in URLs (`pods`).
    pub resource: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Subresources served, e.g. `status`, `scale`, `log`, `binding`.
    pub subresources: &'static [&'static str],
    /// Verbs for discovery.
    pub verbs: &'static [&'static str],
}

impl ResourceInfo {
    /// `v1` for core, `apps/v1` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    /// The group name used in store keys (`core` for the core group).
    pub fn storage_group(&self) -> &'static str {
        if self.group.is_empty() {
            "core"
        } else {
            self.group
        }
    }
}

const RW: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const RO_EVENTS: &[&str] = RW;

macro_rules! res {
    ($g:expr, $v:expr, $k:expr, $r:expr, $s:expr, $ns:expr, $short:expr, $cat:expr, $sub:expr) => {
        ResourceInfo {
            group: $g,
            version: $v,
            kind: $k,
            resource: $r,
            singular: $s,
            namespaced: $ns,
            short_names: $short,
            categories: $cat,
            subresources: $sub,
            verbs: RW,
        }
    };
}

static BUILTIN: &[ResourceInfo] = &[
    res!(
        "",
        "v1",
        "Namespace",
        "namespaces",
        "namespace",
        false,
        &["ns"],
        &[],
        &["status", "finalize"]
    ),
    res!(
        "",
        "v1",
        "Node",
        "nodes",
        "node",
        false,
        &["no"],
        &[],
        &["status", "proxy"]
    ),
    res!(
        "",
        "v1",
        "Pod",
        "pods",
        "pod",
        true,
        &["po"],
        &["all"],
        &[
            "status",
            "log",
            "binding",
            "exec",
            "attach",
            "portforward",
            "eviction",
            "ephemeralcontainers",
            "proxy"
        ]
    ),
    res!(
        "",
        "v1",
        "Service",
        "services",
        "service",
        true,
        &["svc"],
        &["all"],
        &["status", "proxy"]
    ),
    res!(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        "replicationcontroller",
        true,
        &["rc"],
        &["all"],
        &["status", "scale"]
    ),
    res!(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        "endpoints",
        true,
        &["ep"],
        &[],
        &[]
    ),
    res!(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "configmap",
        true,
        &["cm"],
        &[],
        &[]
    ),
    res!("", "v1", "Secret", "secrets", "secret", true, &[], &[], &[]),
    res!(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        true,
        &["sa"],
        &[],
        &["token"]
    ),
    ResourceInfo {
        verbs: RO_EVENTS,
        ..res!(
            "",
            "v1",
            "Event",
            "events",
            "event",
            true,
            &["ev"],
            &[],
            &[]
        )
    },
    res!(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        true,
        &["deploy"],
        &["all"],
        &["status", "scale"]
    ),
    res!(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        true,
        &["rs"],
        &["all"],
        &["status", "scale"]
    ),
    res!(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        true,
        &[],
        &[],
        &[]
    ),
    res!(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        "lease",
        true,
        &[],
        &[],
        &[]
    ),
    res!(
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        "event",
        true,
        &["ev"],
        &[],
        &[]
    ),
    res!(
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        "resourcequota",
        true,
        &["quota"],
        &[],
        &["status"]
    ),
    res!(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        true,
        &["sts"],
        &["all"],
        &["status", "scale"]
    ),
    res!(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        "daemonset",
        true,
        &["ds"],
        &["all"],
        &["status"]
    ),
    res!(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        "controllerrevision",
        true,
        &[],
        &[],
        &[]
    ),
    res!(
        "batch",
        "v1",
        "Job",
        "jobs",
        "job",
        true,
        &[],
        &["all"],
        &["status"]
    ),
    res!(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        "cronjob",
        true,
        &["cj"],
        &["all"],
        &["status"]
    ),
    res!(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        "role",
        true,
        &[],
        &[],
        &[]
    ),
    res!(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        "rolebinding",
        true,
        &[],
        &[],
        &[]
    ),
    res!(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        "clusterrole",
        false,
        &[],
        &[],
        &[]
    ),
    res!(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        "clusterrolebinding",
        false,
        &[],
        &[],
        &[]
    ),
    res!(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        true,
        &["pdb"],
        &[],
        &["status"]
    ),
    res!(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        "ingress",
        true,
        &["ing"],
        &[],
        &["status"]
    ),
    res!(
        "",
        "v1",
        "LimitRange",
        "limitranges",
        "limitrange",
        true,
        &["limits"],
        &[],
        &[]
    ),
    res!(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        "persistentvolume",
        false,
        &["pv"],
        &[],
        &["status"]
    ),
    res!(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        true,
        &["pvc"],
        &[],
        &["status"]
    ),
    res!(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        "storageclass",
        false,
        &["sc"],
        &[],
        &[]
    ),
    res!(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        true,
        &["hpa"],
        &["all"],
        &["status"]
    ),
    res!(
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        "ingressclass",
        false,
        &[],
        &[],
        &[]
    ),
    res!(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        "networkpolicy",
        true,
        &["netpol"],
        &[],
        &[]
    ),
    res!(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        "priorityclass",
        false,
        &["pc"],
        &[],
        &[]
    ),
    res!(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        "customresourcedefinition",
        false,
        &["crd", "crds"],
        &["api-extensions"],
        &["status"]
    ),
    res!(
        "apiregistration.k8s.io",
        "v1",
        "APIService",
        "apiservices",
        "apiservice",
        false,
        &[],
        &["api-extensions"],
        &["status"]
    ),
];

/// Every built-in resource, in discovery order.
pub fn builtin_resources() -> &'static [ResourceInfo] {
    BUILTIN
}

/// Finds a resource by group, version and plural name.
pub fn find(group: &str, version: &str, resource: &str) -> Option<&'static ResourceInfo> {
    BUILTIN
        .iter()
        .find(|r| r.group == group && r.version == version && r.resource == resource)
}

/// Finds a resource by group, version and kind.
pub fn find_kind(group: &str, version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    BUILTIN
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// Whether `info` is a row of the built-in table (not one made at run time
/// for a CustomResourceDefinition or an aggregated API).
pub fn is_builtin(info: &ResourceInfo) -> bool {
    BUILTIN.iter().any(|r| std::ptr::eq(r, info))
}

/// A resource described at run time (a CustomResourceDefinition's served
/// version, or a resource an aggregated API server lists in discovery).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OwnedResourceInfo {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub resource: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub subresources: Vec<String>,
    pub verbs: Vec<String>,
}

/// The `&'static ResourceInfo` for a run-time resource. Every consumer of the
/// resource table (routing, REST, RBAC, discovery, tables) works on
/// `&'static ResourceInfo`, so the strings of a run-time resource are leaked
/// once; identical descriptions are interned and share one leaked row, so
/// re-reading the same CustomResourceDefinition or discovery document leaks
/// nothing new. The total is bounded by the distinct resource shapes a cluster
/// ever defines (a few hundred bytes each).
pub fn intern(owned: &OwnedResourceInfo) -> &'static ResourceInfo {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static TABLE: OnceLock<Mutex<HashMap<OwnedResourceInfo, &'static ResourceInfo>>> =
        OnceLock::new();
    let table = TABLE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut t = match table.lock() {
        Ok(t) => t,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(r) = t.get(owned) {
        return r;
    }
    fn leak(s: &str) -> &'static str {
        Box::leak(s.to_string().into_boxed_str())
    }
    fn leak_all(v: &[String]) -> &'static [&'static str] {
        Box::leak(
            v.iter()
                .map(|s| leak(s))
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        )
    }
    let info: &'static ResourceInfo = Box::leak(Box::new(ResourceInfo {
        group: leak(&owned.group),
        version: leak(&owned.version),
        kind: leak(&owned.kind),
        resource: leak(&owned.resource),
        singular: leak(&owned.singular),
        namespaced: owned.namespaced,
        short_names: leak_all(&owned.short_names),
        categories: leak_all(&owned.categories),
        subresources: leak_all(&owned.subresources),
        verbs: leak_all(&owned.verbs),
    }));
    t.insert(owned.clone(), info);
    info
}

/// The verbs every stored resource serves.
pub fn read_write_verbs() -> &'static [&'static str] {
    RW
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_agree() {
        let d = find("apps", "v1", "deployments").unwrap();
        assert_eq!(d.kind, "Deployment");
        assert_eq!(d.api_version(), "apps/v1");
        assert_eq!(find_kind("", "v1", "Pod").unwrap().resource, "pods");
        assert_eq!(find_kind("", "v1", "Pod").unwrap().storage_group(), "core");
        assert!(find("", "v1", "nosuch").is_none());
        let rc = find_kind("", "v1", "ReplicationController").unwrap();
        assert_eq!(rc.short_names, &["rc"]);
        assert!(rc.subresources.contains(&"scale"));
    }

    #[test]
    fn interned_rows_are_shared_and_not_builtin() {
        let o = OwnedResourceInfo {
            group: "stable.example.com".into(),
            version: "v1".into(),
            kind: "CronTab".into(),
            resource: "crontabs".into(),
            singular: "crontab".into(),
            namespaced: true,
            short_names: vec!["ct".into()],
            categories: vec![],
            subresources: vec!["status".into()],
            verbs: RW.iter().map(|s| s.to_string()).collect(),
        };
        let a = intern(&o);
        let b = intern(&o.clone());
        assert!(std::ptr::eq(a, b));
        assert_eq!(a.short_names, &["ct"]);
        assert_eq!(a.api_version(), "stable.example.com/v1");
        assert!(!is_builtin(a));
        assert!(is_builtin(find("", "v1", "pods").unwrap()));
    }

    #[test]
    fn resources_and_kinds_are_unique() {
        let all = builtin_resources();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert!(
                    !(a.group == b.group && a.version == b.version && a.resource == b.resource),
                    "{a:?}"
                );
                assert!(
                    !(a.group == b.group && a.version == b.version && a.kind == b.kind),
                    "{a:?}"
                );
            }
        }
    }
}
