//! The JSON schemas of the Kubernetes kinds minik knows, built once from
//! k8s-openapi's `schemars` output in OpenAPI v3 form (`$ref` to
//! `#/components/schemas/<io.k8s...>`), plus the strategic-merge-patch
//! metadata (`x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key`)
//! of the fields that have it. Strict field validation, the `/openapi/v3`
//! documents and strategic merge patch all read these; nothing else defines
//! merge keys.

use std::sync::OnceLock;

use schemars::JsonSchema;
use serde_json::{Map, Value};

/// One kind with a schema: its group/version/kind and definition name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindSchema {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The `components.schemas` key, e.g. `io.k8s.api.apps.v1.Deployment`.
    pub definition: String,
}

struct Schemas {
    definitions: Map<String, Value>,
    kinds: Vec<KindSchema>,
}

macro_rules! kinds {
    ($gen:ident, $out:ident; $( ($g:expr, $v:expr, $k:expr, $t:ty) ),* $(,)?) => {
        $(
            $gen.subschema_for::<$t>();
            $out.push(KindSchema { group: $g, version: $v, kind: $k, definition: <$t as JsonSchema>::schema_name().into_owned() });
        )*
    };
}

fn build() -> Schemas {
    use k8s_openapi::api::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
    let mut gen = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut kinds: Vec<KindSchema> = Vec::new();
    kinds!(gen, kinds;
        ("", "v1", "Namespace", core::v1::Namespace),
        ("", "v1", "Node", core::v1::Node),
        ("", "v1", "Pod", core::v1::Pod),
        ("", "v1", "Service", core::v1::Service),
        ("", "v1", "Endpoints", core::v1::Endpoints),
        ("", "v1", "ConfigMap", core::v1::ConfigMap),
        ("", "v1", "Secret", core::v1::Secret),
        ("", "v1", "ServiceAccount", core::v1::ServiceAccount),
        ("", "v1", "Event", core::v1::Event),
        ("", "v1", "ResourceQuota", core::v1::ResourceQuota),
        ("", "v1", "LimitRange", core::v1::LimitRange),
        ("", "v1", "PersistentVolumeClaim", core::v1::PersistentVolumeClaim),
        ("", "v1", "PersistentVolume", core::v1::PersistentVolume),
        ("", "v1", "PodTemplate", core::v1::PodTemplate),
        ("", "v1", "ReplicationController", core::v1::ReplicationController),
        ("", "v1", "Binding", core::v1::Binding),
        ("apps", "v1", "Deployment", apps::v1::Deployment),
        ("apps", "v1", "ReplicaSet", apps::v1::ReplicaSet),
        ("apps", "v1", "StatefulSet", apps::v1::StatefulSet),
        ("apps", "v1", "DaemonSet", apps::v1::DaemonSet),
        ("apps", "v1", "ControllerRevision", apps::v1::ControllerRevision),
        ("batch", "v1", "Job", batch::v1::Job),
        ("batch", "v1", "CronJob", batch::v1::CronJob),
        ("autoscaling", "v1", "Scale", autoscaling::v1::Scale),
        ("autoscaling", "v2", "HorizontalPodAutoscaler", autoscaling::v2::HorizontalPodAutoscaler),
        ("discovery.k8s.io", "v1", "EndpointSlice", discovery::v1::EndpointSlice),
        ("coordination.k8s.io", "v1", "Lease", coordination::v1::Lease),
        ("events.k8s.io", "v1", "Event", events::v1::Event),
        ("rbac.authorization.k8s.io", "v1", "Role", rbac::v1::Role),
        ("rbac.authorization.k8s.io", "v1", "RoleBinding", rbac::v1::RoleBinding),
        ("rbac.authorization.k8s.io", "v1", "ClusterRole", rbac::v1::ClusterRole),
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", rbac::v1::ClusterRoleBinding),
        ("policy", "v1", "PodDisruptionBudget", policy::v1::PodDisruptionBudget),
        ("policy", "v1", "Eviction", policy::v1::Eviction),
        ("networking.k8s.io", "v1", "Ingress", networking::v1::Ingress),
        ("networking.k8s.io", "v1", "IngressClass", networking::v1::IngressClass),
        ("networking.k8s.io", "v1", "NetworkPolicy", networking::v1::NetworkPolicy),
        ("scheduling.k8s.io", "v1", "PriorityClass", scheduling::v1::PriorityClass),
        ("storage.k8s.io", "v1", "StorageClass", storage::v1::StorageClass),
        ("authorization.k8s.io", "v1", "SelfSubjectAccessReview", authorization::v1::SelfSubjectAccessReview),
        ("authorization.k8s.io", "v1", "SubjectAccessReview", authorization::v1::SubjectAccessReview),
        ("authorization.k8s.io", "v1", "SelfSubjectRulesReview", authorization::v1::SelfSubjectRulesReview),
        ("authentication.k8s.io", "v1", "TokenRequest", authentication::v1::TokenRequest),
        ("authentication.k8s.io", "v1", "TokenReview", authentication::v1::TokenReview),
        ("authentication.k8s.io", "v1", "SelfSubjectReview", authentication::v1::SelfSubjectReview),
        ("certificates.k8s.io", "v1", "CertificateSigningRequest", certificates::v1::CertificateSigningRequest),
        ("apiextensions.k8s.io", "v1", "CustomResourceDefinition", k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition),
        ("apiregistration.k8s.io", "v1", "APIService", k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService),
        ("meta.k8s.io", "v1", "Status", meta::Status),
        ("meta.k8s.io", "v1", "DeleteOptions", meta::DeleteOptions),
        ("meta.k8s.io", "v1", "APIResourceList", meta::APIResourceList),
    );
    gen.subschema_for::<meta::Patch>();
    gen.subschema_for::<meta::ListMeta>();
    gen.subschema_for::<meta::WatchEvent<serde_json::Value>>();
    let mut definitions = gen.take_definitions(true);
    // k8s-openapi's generic List<T> has no schema: write the `<Kind>List`
    // definitions of the served resources the way Kubernetes does.
    for r in crate::resources::builtin_resources() {
        let Some(k) = kinds
            .iter()
            .find(|k| k.group == r.group && k.version == r.version && k.kind == r.kind)
        else {
            continue;
        };
        let list = format!("{}List", k.definition);
        let item_ref = format!("#/components/schemas/{}", k.definition);
        definitions.insert(
            list,
            serde_json::json!({
                "description": format!("{}List is a list of {} objects.", r.kind, r.kind),
                "type": "object",
                "properties": {
                    "apiVersion": {"description": "APIVersion defines the versioned schema of this representation of an object.", "type": "string"},
                    "items": {"description": format!("items is the list of {}s.", r.kind), "type": "array", "items": {"$ref": item_ref}},
                    "kind": {"description": "Kind is a string value representing the REST resource this object represents.", "type": "string"},
                    "metadata": {"description": "Standard list metadata.", "allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"}]}
                },
                "required": ["items"],
                "x-kubernetes-group-version-kind": [{"group": r.group, "version": r.version, "kind": format!("{}List", r.kind)}]
            }),
        );
    }
    // The kind schemas say which GVK they are, as the Kubernetes documents do.
    for k in &kinds {
        if let Some(Value::Object(def)) = definitions.get_mut(&k.definition) {
            // k8s-openapi marks `metadata` required (it is not an Option there);
            // Kubernetes does not.
            if let Some(Value::Array(req)) = def.get_mut("required") {
                req.retain(|r| r != "metadata");
                if req.is_empty() {
                    def.remove("required");
                }
            }
            let gvks = def
                .entry("x-kubernetes-group-version-kind")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(a) = gvks {
                a.push(serde_json::json!({"group": k.group, "version": k.version, "kind": k.kind}));
            }
        }
    }
    // Strategic merge patch metadata on the fields that have it.
    for (def, prop, meta) in PATCH_META {
        let Some(Value::Object(p)) = definitions
            .get_mut(*def)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(*prop))
        else {
            continue;
        };
        p.insert(
            "x-kubernetes-patch-strategy".into(),
            Value::String(meta.strategy.into()),
        );
        if let Some(key) = meta.merge_key {
            p.insert(
                "x-kubernetes-patch-merge-key".into(),
                Value::String(key.into()),
            );
        }
    }
    Schemas { definitions, kinds }
}

fn schemas() -> &'static Schemas {
    static S: OnceLock<Schemas> = OnceLock::new();
    S.get_or_init(build)
}

/// All definitions, keyed like `components.schemas` (`io.k8s.api.core.v1.Pod`).
pub fn definitions() -> &'static Map<String, Value> {
    &schemas().definitions
}

/// Every kind that has a schema.
pub fn kinds() -> &'static [KindSchema] {
    &schemas().kinds
}

/// Splits `apps/v1` into (`apps`, `v1`) and `v1` into (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

/// The kind schema for an `apiVersion`/`kind`, if minik knows it.
pub fn kind_schema(api_version: &str, kind: &str) -> Option<&'static KindSchema> {
    let (group, version) = split_api_version(api_version);
    kinds()
        .iter()
        .find(|k| k.group == group && k.version == version && k.kind == kind)
}

/// The definition name a `$ref` points at (`#/components/schemas/X` → `X`).
pub fn ref_name(r: &str) -> Option<&str> {
    r.strip_prefix("#/components/schemas/")
        .or_else(|| r.strip_prefix("#/$defs/"))
        .or_else(|| r.strip_prefix("#/definitions/"))
}

/// Follows `$ref` (directly or as the single `allOf` entry) to the named
/// definition: returns the definition's name and schema. A schema without a
/// reference is returned as is, with no name.
pub fn resolve(schema: &Value) -> (Option<&'static str>, &Value) {
    let defs = definitions();
    let target = schema.get("$ref").and_then(Value::as_str).or_else(|| {
        schema
            .get("allOf")
            .and_then(Value::as_array)
            .filter(|a| a.len() == 1)
            .and_then(|a| a[0].get("$ref"))
            .and_then(Value::as_str)
    });
    if let Some((name, def)) = target
        .and_then(ref_name)
        .and_then(|n| defs.get_key_value(n))
    {
        return (Some(name.as_str()), def);
    }
    (None, schema)
}

/// How a field is strategically merged (`patchStrategy` / `patchMergeKey`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchMeta {
    /// `merge`, `replace`, `retainKeys` or `merge,retainKeys`.
    pub strategy: &'static str,
    /// For lists of objects merged by key: the key field.
    pub merge_key: Option<&'static str>,
}

const fn pm(strategy: &'static str, key: &'static str) -> PatchMeta {
    PatchMeta {
        strategy,
        merge_key: Some(key),
    }
}
const fn pm_nokey(strategy: &'static str) -> PatchMeta {
    PatchMeta {
        strategy,
        merge_key: None,
    }
}

/// The `patchStrategy`/`patchMergeKey` struct tags of the Kubernetes API types
/// (k8s.io/api v1.33), keyed by (definition, property).
pub static PATCH_META: &[(&str, &str, PatchMeta)] = &[
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        pm_nokey("merge"),
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        pm("merge", "uid"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "volumes",
        pm("merge,retainKeys", "name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "initContainers",
        pm("merge", "name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "containers",
        pm("merge", "name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "ephemeralContainers",
        pm("merge", "name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "imagePullSecrets",
        pm("merge", "name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "hostAliases",
        pm("merge", "ip"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        pm("merge", "topologyKey"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "resourceClaims",
        pm("merge,retainKeys", "name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "schedulingGates",
        pm("merge", "name"),
    ),
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        pm("merge", "containerPort"),
    ),
    ("io.k8s.api.core.v1.Container", "env", pm("merge", "name")),
    (
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        pm("merge", "mountPath"),
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        pm("merge", "devicePath"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "ports",
        pm("merge", "containerPort"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "env",
        pm("merge", "name"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeMounts",
        pm("merge", "mountPath"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeDevices",
        pm("merge", "devicePath"),
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "conditions",
        pm("merge", "type"),
    ),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", pm("merge", "ip")),
    ("io.k8s.api.core.v1.PodStatus", "hostIPs", pm("merge", "ip")),
    (
        "io.k8s.api.core.v1.PodStatus",
        "resourceClaimStatuses",
        pm("merge,retainKeys", "name"),
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        pm("merge", "port"),
    ),
    (
        "io.k8s.api.core.v1.ServiceStatus",
        "conditions",
        pm("merge", "type"),
    ),
    (
        "io.k8s.api.core.v1.ServiceAccount",
        "secrets",
        pm("merge", "name"),
    ),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", pm_nokey("merge")),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "conditions",
        pm("merge", "type"),
    ),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "addresses",
        pm("merge", "type"),
    ),
    (
        "io.k8s.api.core.v1.NamespaceStatus",
        "conditions",
        pm("merge", "type"),
    ),
    (
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "conditions",
        pm("merge", "type"),
    ),
    (
        "io.k8s.api.core.v1.ReplicationControllerStatus",
        "conditions",
        pm("merge", "type"),
    ),
    (
        "io.k8s.api.apps.v1.DeploymentSpec",
        "strategy",
        pm_nokey("retainKeys"),
    ),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        pm("merge", "type"),
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "conditions",
        pm("merge", "type"),
    ),
    (
        "io.k8s.api.apps.v1.StatefulSetStatus",
        "conditions",
        pm("merge", "type"),
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "conditions",
        pm("merge", "type"),
    ),
    (
        "io.k8s.api.batch.v1.JobStatus",
        "conditions",
        pm("merge", "type"),
    ),
    (
        "io.k8s.api.policy.v1.PodDisruptionBudgetSpec",
        "selector",
        pm_nokey("replace"),
    ),
    (
        "io.k8s.api.policy.v1.PodDisruptionBudgetStatus",
        "conditions",
        pm("merge", "type"),
    ),
    (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus",
        "conditions",
        pm("merge", "type"),
    ),
    (
        "io.k8s.api.certificates.v1.CertificateSigningRequestStatus",
        "conditions",
        pm("merge", "type"),
    ),
];

/// The patch metadata of property `prop` of definition `def`, if it has any.
pub fn patch_meta(def: &str, prop: &str) -> Option<PatchMeta> {
    PATCH_META
        .iter()
        .find(|(d, p, _)| *d == def && *p == prop)
        .map(|(_, _, m)| *m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_definitions_with_gvk() {
        for k in kinds() {
            let def = definitions()
                .get(&k.definition)
                .unwrap_or_else(|| panic!("{}", k.definition));
            let gvks = def["x-kubernetes-group-version-kind"].as_array().unwrap();
            assert!(
                gvks.iter()
                    .any(|g| g["kind"] == k.kind && g["group"] == k.group),
                "{}",
                k.definition
            );
        }
        assert_eq!(
            kind_schema("apps/v1", "Deployment").unwrap().definition,
            "io.k8s.api.apps.v1.Deployment"
        );
        assert_eq!(
            kind_schema("v1", "Pod").unwrap().definition,
            "io.k8s.api.core.v1.Pod"
        );
        assert!(kind_schema("v1", "Nope").is_none());
    }

    #[test]
    fn every_patch_meta_row_names_a_real_list_or_field() {
        for (def, prop, _) in PATCH_META {
            let d = definitions()
                .get(*def)
                .unwrap_or_else(|| panic!("no definition {def}"));
            assert!(
                d["properties"].get(*prop).is_some(),
                "{def} has no property {prop}"
            );
        }
        let ports = &definitions()["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"];
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "port");
        let cports = &definitions()["io.k8s.api.core.v1.Container"]["properties"]["ports"];
        assert_eq!(cports["x-kubernetes-patch-merge-key"], "containerPort");
    }

    #[test]
    fn refs_resolve_to_components() {
        let spec = &definitions()["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"];
        let (name, def) = resolve(spec);
        assert_eq!(name, Some("io.k8s.api.apps.v1.DeploymentSpec"));
        assert!(def["properties"].get("template").is_some());
    }
}
