//! Which resource types the server serves, for the namespace controller and
//! the garbage collector (they must handle every type, not a fixed list).
//!
//! Aggregated discovery first, then legacy discovery, then a built-in list of
//! the types a minik apiserver serves (types the server does not know simply
//! 404 on list and are skipped by the callers).

use kube::discovery::{verbs, ApiCapabilities, ApiResource, Discovery, Scope};
use kube::Client;

/// One listable resource type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceType {
    pub ar: ApiResource,
    pub namespaced: bool,
    pub deletable: bool,
}

const BUILTIN: &[(&str, &str, &str, &str, bool)] = &[
    ("", "v1", "Pod", "pods", true),
    ("", "v1", "Service", "services", true),
    ("", "v1", "Endpoints", "endpoints", true),
    ("", "v1", "ConfigMap", "configmaps", true),
    ("", "v1", "Secret", "secrets", true),
    ("", "v1", "ServiceAccount", "serviceaccounts", true),
    ("", "v1", "Event", "events", true),
    (
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
    ),
    (
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        true,
    ),
    ("", "v1", "LimitRange", "limitranges", true),
    ("", "v1", "ResourceQuota", "resourcequotas", true),
    ("", "v1", "Namespace", "namespaces", false),
    ("", "v1", "Node", "nodes", false),
    ("apps", "v1", "Deployment", "deployments", true),
    ("apps", "v1", "ReplicaSet", "replicasets", true),
    ("apps", "v1", "StatefulSet", "statefulsets", true),
    ("apps", "v1", "DaemonSet", "daemonsets", true),
    (
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        true,
    ),
    ("batch", "v1", "Job", "jobs", true),
    ("batch", "v1", "CronJob", "cronjobs", true),
    (
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        true,
    ),
    ("coordination.k8s.io", "v1", "Lease", "leases", true),
    ("networking.k8s.io", "v1", "Ingress", "ingresses", true),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
    ),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
    ),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
    ),
    (
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        true,
    ),
];

/// The built-in fallback list.
pub fn builtin_types() -> Vec<ResourceType> {
    BUILTIN
        .iter()
        .map(|(group, version, kind, plural, namespaced)| ResourceType {
            ar: ApiResource {
                group: group.to_string(),
                version: version.to_string(),
                api_version: if group.is_empty() {
                    version.to_string()
                } else {
                    format!("{group}/{version}")
                },
                kind: kind.to_string(),
                plural: plural.to_string(),
            },
            namespaced: *namespaced,
            deletable: true,
        })
        .collect()
}

fn from_caps(ar: ApiResource, caps: &ApiCapabilities) -> Option<ResourceType> {
    if !caps.supports_operation(verbs::LIST) {
        return None;
    }
    Some(ResourceType {
        ar,
        namespaced: caps.scope == Scope::Namespaced,
        deletable: caps.supports_operation(verbs::DELETE),
    })
}

/// Every listable resource type the server serves (preferred version per group).
pub async fn discover(client: &Client) -> Vec<ResourceType> {
    let disc = match Discovery::new(client.clone()).run_aggregated().await {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::debug!(error = %e, "aggregated discovery failed; trying legacy discovery");
            match Discovery::new(client.clone()).run().await {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::warn!(error = %e, "API discovery failed; using the built-in resource list");
                    None
                }
            }
        }
    };
    let Some(disc) = disc else {
        return builtin_types();
    };
    let mut out: Vec<ResourceType> = disc
        .groups()
        .flat_map(|g| g.recommended_resources())
        .filter_map(|(ar, caps)| from_caps(ar, &caps))
        .collect();
    if out.is_empty() {
        out = builtin_types();
    }
    out
}

/// Finds the type of an ownerReference (apiVersion + kind).
pub fn resolve<'a>(
    types: &'a [ResourceType],
    api_version: &str,
    kind: &str,
) -> Option<&'a ResourceType> {
    types
        .iter()
        .find(|t| t.ar.api_version == api_version && t.ar.kind == kind)
        .or_else(|| {
            // Another version of the same group and kind (the uid is what matters).
            let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
            types
                .iter()
                .find(|t| t.ar.group == group && t.ar.kind == kind)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_list_resolves_owner_kinds() {
        let types = builtin_types();
        let rs = resolve(&types, "apps/v1", "ReplicaSet").expect("replicaset");
        assert_eq!(rs.ar.plural, "replicasets");
        assert!(rs.namespaced);
        assert_eq!(
            resolve(&types, "v1", "Node").map(|t| t.namespaced),
            Some(false)
        );
        // Other version of a known group/kind still resolves.
        assert_eq!(
            resolve(&types, "apps/v1beta2", "Deployment").map(|t| t.ar.plural.as_str()),
            Some("deployments")
        );
        assert!(resolve(&types, "example.com/v1", "Widget").is_none());
    }
}
