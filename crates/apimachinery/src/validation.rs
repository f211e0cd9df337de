//! Strict field validation (`fieldValidation=Strict`): fields the schema of a
//! kind does not have. The schemas are the ones in [`crate::schema`].

use serde_json::Value;

use crate::schema;

/// Paths of fields in `obj` that the schema of `api_version`/`kind` does not
/// know, in the form the Kubernetes API server reports them
/// (`spec.template.spec.containers[0].imagee`), in document order. Empty when
/// all are known or the kind has no schema here.
pub fn unknown_fields(api_version: &str, kind: &str, obj: &Value) -> Vec<String> {
    let Some(k) = schema::kind_schema(api_version, kind) else {
        return Vec::new();
    };
    let Some(root) = schema::definitions().get(&k.definition) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk(root, obj, "", &mut out, 0);
    out
}

/// Whether the kind has a schema here (so [`unknown_fields`] can check it).
pub fn has_schema(api_version: &str, kind: &str) -> bool {
    schema::kind_schema(api_version, kind).is_some()
}

/// Deeper than any Kubernetes type; stops runaway recursion on hostile input.
const MAX_DEPTH: usize = 64;

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn walk(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let (_, schema) = schema::resolve(schema);
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            if props.is_none() && additional.is_none() {
                // An arbitrary JSON object (RawExtension, FieldsV1, JSON):
                // anything goes.
                return;
            }
            for (k, v) in map {
                if let Some(p) = props.and_then(|p| p.get(k)) {
                    walk(p, v, &join(path, k), out, depth + 1);
                } else if let Some(a) = additional {
                    match a {
                        Value::Bool(false) => out.push(join(path, k)),
                        Value::Bool(true) => {}
                        s => walk(s, v, &join(path, k), out, depth + 1),
                    }
                } else {
                    out.push(join(path, k));
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    walk(item_schema, v, &format!("{path}[{i}]"), out, depth + 1);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "any/key": "x"},
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                         "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {"name": "a", "image": "nginx", "ports": [{"containerPort": 80}],
                             "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                             "env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}
                        ],
                        "volumes": [{"name": "v", "emptyDir": {}}]
                    }
                }
            },
            "status": {}
        })
    }

    #[test]
    fn a_valid_deployment_has_no_unknown_fields() {
        assert_eq!(
            unknown_fields("apps/v1", "Deployment", &deployment()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn unknown_fields_are_reported_with_apiserver_paths() {
        let mut d = deployment();
        d["spec"]["template"]["spec"]["containers"][0]["imagee"] = json!("x");
        d["spec"]["foo"] = json!(1);
        d["bar"] = json!({"baz": 1});
        d["metadata"]["nam"] = json!("x");
        d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["hostport"] = json!(1);
        d["spec"]["template"]["spec"]["volumes"][0]["emptyDir"]["sizelimit"] = json!("1Gi");
        let got = unknown_fields("apps/v1", "Deployment", &d);
        assert_eq!(
            got,
            [
                "metadata.nam",
                "spec.template.spec.containers[0].ports[0].hostport",
                "spec.template.spec.containers[0].imagee",
                "spec.template.spec.volumes[0].emptyDir.sizelimit",
                "spec.foo",
                "bar",
            ]
        );
    }

    #[test]
    fn maps_and_arbitrary_json_accept_any_key() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                        "data": {"anything": "x", "else": "y"}, "binaryData": {"b": "AAA="}});
        assert!(unknown_fields("v1", "ConfigMap", &cm).is_empty());
        let cr = json!({"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "c"},
                        "data": {"whatever": {"deep": [1, 2]}}, "revision": 1});
        assert!(unknown_fields("apps/v1", "ControllerRevision", &cr).is_empty());
        let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"},
                           "spec": {"hard": {"cpu": "1", "pods": 10}, "hrad": {}}});
        assert_eq!(unknown_fields("v1", "ResourceQuota", &quota), ["spec.hrad"]);
    }

    #[test]
    fn every_kind_of_the_brief_is_checked() {
        for (av, kind) in [
            ("v1", "Pod"),
            ("v1", "Service"),
            ("v1", "Namespace"),
            ("v1", "Node"),
            ("v1", "Endpoints"),
            ("v1", "ConfigMap"),
            ("v1", "Secret"),
            ("v1", "ServiceAccount"),
            ("v1", "Event"),
            ("v1", "ResourceQuota"),
            ("apps/v1", "Deployment"),
            ("apps/v1", "ReplicaSet"),
            ("discovery.k8s.io/v1", "EndpointSlice"),
            ("coordination.k8s.io/v1", "Lease"),
            ("events.k8s.io/v1", "Event"),
            ("authorization.k8s.io/v1", "SelfSubjectAccessReview"),
            ("batch/v1", "Job"),
            ("batch/v1", "CronJob"),
            ("rbac.authorization.k8s.io/v1", "Role"),
            ("rbac.authorization.k8s.io/v1", "RoleBinding"),
            ("rbac.authorization.k8s.io/v1", "ClusterRole"),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
            ("policy/v1", "PodDisruptionBudget"),
            ("networking.k8s.io/v1", "Ingress"),
            ("scheduling.k8s.io/v1", "PriorityClass"),
        ] {
            let obj = json!({"apiVersion": av, "kind": kind, "metadata": {"name": "x"}, "zzz": 1});
            assert_eq!(unknown_fields(av, kind, &obj), ["zzz"], "{av} {kind}");
        }
        for r in crate::resources::builtin_resources() {
            assert!(
                has_schema(&r.api_version(), r.kind),
                "{} {}",
                r.api_version(),
                r.kind
            );
        }
    }

    #[test]
    fn unknown_kinds_are_not_checked() {
        assert!(unknown_fields("example.com/v1", "Widget", &json!({"x": 1})).is_empty());
    }
}
