//! The three patch types kubectl sends: strategic merge patch
//! (`application/strategic-merge-patch+json`), JSON merge patch (RFC 7386) and
//! JSON patch (RFC 6902).

use serde_json::{Map, Value};

use crate::schema;

/// Why a patch could not be applied (answered 422 / 400 by the apiserver).
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("the patch is invalid: {0}")]
    Invalid(String),
    #[error("the JSON patch could not be applied: {0}")]
    Failed(String),
}

/// Applies a strategic merge patch to `original` for an object of `api_version`/`kind`.
///
/// Semantics of Kubernetes' `strategicpatch.StrategicMergePatch`: maps merge;
/// `null` deletes; a list whose field has patch strategy `merge` merges by its
/// merge key (or, for a list of scalars, as a set union), any other list is
/// replaced. Directives: `$patch: replace|merge|delete` (in maps and list
/// items), `$retainKeys`, `$setElementOrder/<field>`,
/// `$deleteFromPrimitiveList/<field>`; none of them is left in the result.
/// The strategy and merge key of a field come from [`crate::schema`] (the
/// same table the OpenAPI documents publish), looked up by the field's
/// position in the kind's schema. A kind without a schema here is merged with
/// every list replaced.
pub fn strategic_merge(
    original: &Value,
    patch: &Value,
    api_version: &str,
    kind: &str,
) -> Result<Value, PatchError> {
    let Value::Object(p) = patch else {
        return Err(PatchError::Invalid(
            "a strategic merge patch must be a JSON object".into(),
        ));
    };
    let root = schema::kind_schema(api_version, kind)
        .and_then(|k| schema::definitions().get(&k.definition))
        .map(Node::of)
        .unwrap_or(Node::NONE);
    let base = match original {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    Ok(Value::Object(smp::merge_map(base, p, root, "")?))
}

/// Where in a kind's schema a value sits: the schema (resolved through
/// `$ref`) and, when it is a named definition, its name (the key of the patch
/// metadata table).
#[derive(Clone, Copy)]
struct Node {
    def: Option<&'static str>,
    schema: Option<&'static Value>,
}

impl Node {
    const NONE: Node = Node {
        def: None,
        schema: None,
    };

    fn of(s: &'static Value) -> Node {
        let (def, schema) = schema::resolve(s);
        Node {
            def,
            schema: Some(schema),
        }
    }

    /// The schema of property `k` of this object, and the field's patch metadata.
    fn prop(&self, k: &str) -> (Node, Option<schema::PatchMeta>) {
        let Some(s) = self.schema else {
            return (Node::NONE, None);
        };
        if let Some(p) = s.get("properties").and_then(|p| p.get(k)) {
            return (Node::of(p), self.def.and_then(|d| schema::patch_meta(d, k)));
        }
        match s.get("additionalProperties") {
            Some(a @ Value::Object(_)) => (Node::of(a), None),
            _ => (Node::NONE, None),
        }
    }

    fn items(&self) -> Node {
        self.schema
            .and_then(|s| s.get("items"))
            .map(Node::of)
            .unwrap_or(Node::NONE)
    }
}

mod smp {
    use super::{Node, PatchError};
    use crate::schema::PatchMeta;
    use serde_json::{Map, Value};

    const PATCH: &str = "$patch";
    const RETAIN_KEYS: &str = "$retainKeys";
    const SET_ORDER: &str = "$setElementOrder/";
    const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList/";

    fn join(path: &str, k: &str) -> String {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    }

    pub(super) fn merge_map(
        mut orig: Map<String, Value>,
        patch: &Map<String, Value>,
        node: Node,
        path: &str,
    ) -> Result<Map<String, Value>, PatchError> {
        match patch.get(PATCH) {
            None => {}
            Some(Value::String(d)) if d == "merge" => {}
            Some(Value::String(d)) if d == "replace" => return Ok(clean_map(patch)),
            Some(Value::String(d)) if d == "delete" => return Ok(Map::new()),
            Some(other) => {
                return Err(PatchError::Invalid(format!(
                    "unknown $patch directive {other} at {}; use replace, merge or delete",
                    if path.is_empty() {
                        "the top level"
                    } else {
                        path
                    }
                )))
            }
        }
        if let Some(keys) = patch.get(RETAIN_KEYS) {
            let keys = string_list(keys).ok_or_else(|| {
                PatchError::Invalid(format!(
                    "$retainKeys at {path} must be a list of field names"
                ))
            })?;
            orig.retain(|k, _| keys.iter().any(|r| r == k));
        }
        // $deleteFromPrimitiveList/<field>: remove those values from the list.
        for (k, v) in patch {
            let Some(field) = k.strip_prefix(DELETE_PRIMITIVE) else {
                continue;
            };
            let Value::Array(del) = v else {
                return Err(PatchError::Invalid(format!("{k} at {path} must be a list")));
            };
            if let Some(Value::Array(list)) = orig.get_mut(field) {
                list.retain(|item| !del.contains(item));
            }
        }
        for (k, v) in patch {
            if k.starts_with('$') {
                continue;
            }
            let child_path = join(path, k);
            if v.is_null() {
                orig.remove(k);
                continue;
            }
            let (child, meta) = node.prop(k);
            let order = match patch.get(&format!("{SET_ORDER}{k}")) {
                None => None,
                Some(Value::Array(o)) => Some(o.as_slice()),
                Some(_) => {
                    return Err(PatchError::Invalid(format!(
                        "{SET_ORDER}{k} at {path} must be a list"
                    )))
                }
            };
            let merged = match (orig.remove(k), v) {
                (Some(Value::Object(o)), Value::Object(p)) => {
                    Value::Object(merge_map(o, p, child, &child_path)?)
                }
                (Some(Value::Array(o)), Value::Array(p)) => {
                    Value::Array(merge_list(o, p, child.items(), meta, order, &child_path)?)
                }
                (None, Value::Array(p)) => Value::Array(merge_list(
                    Vec::new(),
                    p,
                    child.items(),
                    meta,
                    order,
                    &child_path,
                )?),
                (_, p) => clean(p),
            };
            orig.insert(k.clone(), merged);
        }
        // An order given for a list the patch does not otherwise touch.
        for (k, v) in patch {
            let Some(field) = k.strip_prefix(SET_ORDER) else {
                continue;
            };
            if patch.contains_key(field) {
                continue;
            }
            let (Value::Array(order), Some(Value::Array(list))) = (v, orig.get_mut(field)) else {
                continue;
            };
            let (_, meta) = node.prop(field);
            let key = meta.and_then(|m| m.merge_key);
            let original = list.clone();
            *list = normalize_order(std::mem::take(list), order, &original, key);
        }
        Ok(orig)
    }

    fn is_merge(meta: Option<PatchMeta>) -> bool {
        meta.is_some_and(|m| m.strategy.split(',').any(|s| s == "merge"))
    }

    fn merge_list(
        orig: Vec<Value>,
        patch: &[Value],
        items: Node,
        meta: Option<PatchMeta>,
        order: Option<&[Value]>,
        path: &str,
    ) -> Result<Vec<Value>, PatchError> {
        let directive = |v: &Value| v.get(PATCH).and_then(Value::as_str).map(str::to_string);
        // A `{"$patch": "replace"}` element replaces the whole list.
        if patch
            .iter()
            .any(|e| directive(e).as_deref() == Some("replace"))
        {
            return Ok(patch
                .iter()
                .filter(|e| directive(e).is_none())
                .map(clean)
                .collect());
        }
        if !is_merge(meta) {
            return Ok(patch
                .iter()
                .filter(|e| directive(e).as_deref() != Some("delete"))
                .map(clean)
                .collect());
        }
        let original = orig.clone();
        let mut out = orig;
        let key = meta.and_then(|m| m.merge_key);
        match key {
            Some(key) => {
                for (i, item) in patch.iter().enumerate() {
                    let Value::Object(p) = item else {
                        return Err(PatchError::Invalid(format!(
                            "{path}[{i}] must be an object: the list merges on key {key:?}"
                        )));
                    };
                    let Some(id) = p.get(key) else {
                        return Err(PatchError::Invalid(format!(
                            "{path}[{i}] does not contain declared merge key: {key}"
                        )));
                    };
                    let pos = out.iter().position(|o| o.get(key) == Some(id));
                    match directive(item).as_deref() {
                        Some("delete") => {
                            if let Some(pos) = pos {
                                out.remove(pos);
                            }
                            continue;
                        }
                        None | Some("merge") => {}
                        Some(other) => {
                            return Err(PatchError::Invalid(format!(
                                "unknown $patch directive {other:?} in {path}[{i}]; use delete or replace"
                            )))
                        }
                    }
                    match pos {
                        Some(pos) => {
                            let base = match out[pos].take() {
                                Value::Object(m) => m,
                                _ => Map::new(),
                            };
                            out[pos] = Value::Object(merge_map(
                                base,
                                p,
                                items,
                                &format!("{path}[{pos}]"),
                            )?);
                        }
                        None => out.push(Value::Object(merge_map(
                            Map::new(),
                            p,
                            items,
                            &format!("{path}[{i}]"),
                        )?)),
                    }
                }
            }
            None => {
                // A merged list of scalars is a set union.
                for item in patch {
                    if directive(item).is_some() {
                        continue;
                    }
                    if !out.contains(item) {
                        out.push(clean(item));
                    }
                }
            }
        }
        Ok(match order {
            Some(order) => normalize_order(out, order, &original, key),
            None => out,
        })
    }

    /// Orders a merged list as `$setElementOrder` says: the listed elements in
    /// the given order, the elements only the server had kept at their
    /// original places relative to them (Kubernetes' `normalizeElementOrder`).
    fn normalize_order(
        merged: Vec<Value>,
        order: &[Value],
        original: &[Value],
        key: Option<&str>,
    ) -> Vec<Value> {
        let id = |v: &Value| -> Value {
            match key {
                Some(k) => v.get(k).cloned().unwrap_or(Value::Null),
                None => v.clone(),
            }
        };
        let index = |list: &[Value], v: &Value| list.iter().position(|o| id(o) == id(v));
        let (mut patched, mut server_only): (Vec<Value>, Vec<Value>) =
            merged.into_iter().partition(|v| index(order, v).is_some());
        patched.sort_by_key(|v| index(order, v));
        server_only.sort_by_key(|v| index(original, v).unwrap_or(usize::MAX));
        let mut out = Vec::with_capacity(patched.len() + server_only.len());
        let (mut i, mut j) = (0, 0);
        while i < server_only.len() || j < patched.len() {
            let take_server = if i >= server_only.len() {
                false
            } else if j >= patched.len() {
                true
            } else {
                match (
                    index(original, &server_only[i]),
                    index(original, &patched[j]),
                ) {
                    (Some(l), Some(r)) => l < r,
                    _ => false,
                }
            };
            if take_server {
                out.push(server_only[i].clone());
                i += 1;
            } else {
                out.push(patched[j].clone());
                j += 1;
            }
        }
        out
    }

    fn string_list(v: &Value) -> Option<Vec<String>> {
        v.as_array()?
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect()
    }

    /// A patch value taken as is (nothing to merge with): without directives
    /// and without `null`s (Kubernetes ignores unmatched nulls).
    pub(super) fn clean(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(clean_map(m)),
            Value::Array(a) => Value::Array(
                a.iter()
                    .filter(|e| e.get(PATCH).is_none())
                    .map(clean)
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn clean_map(m: &Map<String, Value>) -> Map<String, Value> {
        m.iter()
            .filter(|(k, v)| !v.is_null() && !is_directive(k))
            .map(|(k, v)| (k.clone(), clean(v)))
            .collect()
    }

    fn is_directive(k: &str) -> bool {
        k == PATCH
            || k == RETAIN_KEYS
            || k.starts_with(SET_ORDER)
            || k.starts_with(DELETE_PRIMITIVE)
    }
}

/// Applies an RFC 7386 JSON merge patch.
pub fn merge(original: &Value, patch: &Value) -> Value {
    let mut out = original.clone();
    merge_into(&mut out, patch);
    out
}

fn merge_into(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_into(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Applies an RFC 6902 JSON patch (a JSON array of operations).
pub fn json_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| PatchError::Invalid(e.to_string()))?;
    let mut out = original.clone();
    json_patch::patch(&mut out, &ops).map_err(|e| PatchError::Failed(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live_deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web-app", "namespace": "default", "resourceVersion": "7",
                         "annotations": {"deployment.kubernetes.io/revision": "1"},
                         "finalizers": ["a", "b"]},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "nginx",
                            "image": "nginx:1.25",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "imagePullPolicy": "IfNotPresent"
                        }],
                        "restartPolicy": "Always",
                        "tolerations": [{"key": "x", "operator": "Exists"}]
                    }
                }
            },
            "status": {"replicas": 2}
        })
    }

    /// The body `kubectl apply -f d2.yaml` sends (kubectl-wire.md §1).
    #[test]
    fn kubectl_apply_of_a_changed_deployment() {
        let patch = json!({"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"kind\":\"Deployment\"}\n"}},
            "spec":{"replicas":4,"template":{"spec":{"$setElementOrder/containers":[{"name":"nginx"}],
            "containers":[{"image":"nginx:1.27","name":"nginx"}]}}}});
        let got = strategic_merge(&live_deployment(), &patch, "apps/v1", "Deployment").unwrap();
        let mut want = live_deployment();
        want["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
            json!("{\"kind\":\"Deployment\"}\n");
        want["spec"]["replicas"] = json!(4);
        want["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.27");
        assert_eq!(got, want);
        assert!(
            !serde_json::to_string(&got).unwrap().contains('$'),
            "no directive left"
        );
    }

    /// The body `kubectl set image deployment/hw nginx=nginx:2` sends.
    #[test]
    fn kubectl_set_image() {
        let patch = json!({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"nginx"}],
            "containers":[{"image":"nginx:2","name":"nginx"}]}}}});
        let got = strategic_merge(&live_deployment(), &patch, "apps/v1", "Deployment").unwrap();
        let c = &got["spec"]["template"]["spec"]["containers"];
        assert_eq!(c.as_array().unwrap().len(), 1);
        assert_eq!(c[0]["image"], "nginx:2");
        assert_eq!(
            c[0]["ports"],
            json!([{"containerPort": 80, "protocol": "TCP"}])
        );
        assert_eq!(c[0]["imagePullPolicy"], "IfNotPresent");
    }

    #[test]
    fn merge_keys_depend_on_the_position_in_the_schema() {
        // Service spec.ports merge on `port` ...
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                               {"name": "https", "port": 443, "protocol": "TCP"}]}});
        let got = strategic_merge(
            &svc,
            &json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
            "v1",
            "Service",
        )
        .unwrap();
        assert_eq!(
            got["spec"]["ports"],
            json!([
            {"name": "http", "port": 80, "targetPort": 9090, "protocol": "TCP"},
            {"name": "https", "port": 443, "protocol": "TCP"}])
        );
        // ... container ports on `containerPort`.
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "nginx", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 81}]}]}}}});
        let got = strategic_merge(&live_deployment(), &patch, "apps/v1", "Deployment").unwrap();
        assert_eq!(
            got["spec"]["template"]["spec"]["containers"][0]["ports"],
            json!([
            {"containerPort": 80, "protocol": "TCP", "name": "http"}, {"containerPort": 81}])
        );
        // A field named `ports` elsewhere (no patch strategy) is replaced.
        let ep = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e"},
            "subsets": [{"ports": [{"port": 1}]}]});
        let got = strategic_merge(
            &ep,
            &json!({"subsets": [{"ports": [{"port": 2}]}]}),
            "v1",
            "Endpoints",
        )
        .unwrap();
        assert_eq!(got["subsets"], json!([{"ports": [{"port": 2}]}]));
    }

    #[test]
    fn lists_without_strategy_are_replaced_and_maps_merge() {
        let patch = json!({"metadata": {"labels": {"new": "x"}},
            "spec": {"template": {"spec": {"tolerations": [{"key": "y", "operator": "Exists"}]}}}});
        let got = strategic_merge(&live_deployment(), &patch, "apps/v1", "Deployment").unwrap();
        assert_eq!(
            got["spec"]["template"]["spec"]["tolerations"],
            json!([{"key": "y", "operator": "Exists"}])
        );
        assert_eq!(got["metadata"]["labels"], json!({"new": "x"}));
        assert_eq!(
            got["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
            "1"
        );
    }

    #[test]
    fn null_deletes_and_patch_delete_removes_list_items() {
        let patch = json!({"metadata": {"annotations": null},
            "spec": {"template": {"spec": {"containers": [{"name": "nginx",
                "env": [{"name": "A", "$patch": "delete"}, {"name": "C", "value": "3"}],
                "imagePullPolicy": null}]}}}});
        let got = strategic_merge(&live_deployment(), &patch, "apps/v1", "Deployment").unwrap();
        assert!(got["metadata"].get("annotations").is_none());
        let c = &got["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            c["env"],
            json!([{"name": "B", "value": "2"}, {"name": "C", "value": "3"}])
        );
        assert!(c.get("imagePullPolicy").is_none());
        // deleting a whole container
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "$patch": "delete"}]}}}});
        let got = strategic_merge(&live_deployment(), &patch, "apps/v1", "Deployment").unwrap();
        assert_eq!(got["spec"]["template"]["spec"]["containers"], json!([]));
    }

    #[test]
    fn patch_replace_directives() {
        // on a list
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "sidecar", "image": "busybox"}, {"$patch": "replace"}]}}}});
        let got = strategic_merge(&live_deployment(), &patch, "apps/v1", "Deployment").unwrap();
        assert_eq!(
            got["spec"]["template"]["spec"]["containers"],
            json!([{"name": "sidecar", "image": "busybox"}])
        );
        // on a map
        let patch =
            json!({"spec": {"selector": {"$patch": "replace", "matchLabels": {"app": "other"}}}});
        let got = strategic_merge(&live_deployment(), &patch, "apps/v1", "Deployment").unwrap();
        assert_eq!(
            got["spec"]["selector"],
            json!({"matchLabels": {"app": "other"}})
        );
        // delete on a map empties it
        let patch = json!({"spec": {"selector": {"$patch": "delete"}}});
        let got = strategic_merge(&live_deployment(), &patch, "apps/v1", "Deployment").unwrap();
        assert_eq!(got["spec"]["selector"], json!({}));
        assert!(strategic_merge(
            &live_deployment(),
            &json!({"spec": {"$patch": "bogus"}}),
            "apps/v1",
            "Deployment"
        )
        .is_err());
    }

    /// `kubectl apply` switching a Deployment to Recreate sends `$retainKeys`.
    #[test]
    fn retain_keys_drops_other_fields() {
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        let got = strategic_merge(&live_deployment(), &patch, "apps/v1", "Deployment").unwrap();
        assert_eq!(got["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn primitive_lists_merge_as_sets_and_delete_from_primitive_list() {
        let patch = json!({"metadata": {"finalizers": ["b", "c"], "$deleteFromPrimitiveList/finalizers": ["a"]}});
        let got = strategic_merge(&live_deployment(), &patch, "apps/v1", "Deployment").unwrap();
        assert_eq!(got["metadata"]["finalizers"], json!(["b", "c"]));
        let patch = json!({"metadata": {"$setElementOrder/finalizers": ["c", "b", "a"], "finalizers": ["c"]}});
        let got = strategic_merge(&live_deployment(), &patch, "apps/v1", "Deployment").unwrap();
        assert_eq!(got["metadata"]["finalizers"], json!(["c", "b", "a"]));
    }

    #[test]
    fn set_element_order_orders_and_keeps_server_only_items_in_place() {
        let mut live = live_deployment();
        live["spec"]["template"]["spec"]["containers"] = json!([
            {"name": "a", "image": "1"}, {"name": "server-only", "image": "s"}, {"name": "b", "image": "2"}]);
        // the user's manifest now lists b before a, and adds c
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}, {"name": "c"}],
            "containers": [{"name": "c", "image": "3"}]}}}});
        let got = strategic_merge(&live, &patch, "apps/v1", "Deployment").unwrap();
        let names: Vec<_> = got["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        // (Kubernetes' mergeSortedSlice: a server-only item goes before a
        // patched item that came after it in the live list.)
        assert_eq!(names, ["server-only", "b", "a", "c"]);
        // an order for a list the patch does not touch also applies
        let patch = json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}}});
        let got = strategic_merge(&live, &patch, "apps/v1", "Deployment").unwrap();
        let names: Vec<_> = got["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["server-only", "b", "a"]);
        let mut live2 = live.clone();
        live2["spec"]["template"]["spec"]["containers"] = json!([
            {"name": "a"}, {"name": "b"}, {"name": "server-only"}]);
        let got = strategic_merge(&live2, &patch, "apps/v1", "Deployment").unwrap();
        let names: Vec<_> = got["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["b", "a", "server-only"]);
    }

    #[test]
    fn merge_key_missing_is_an_error_not_a_panic() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
        let err = strategic_merge(&live_deployment(), &patch, "apps/v1", "Deployment").unwrap_err();
        assert!(err.to_string().contains("merge key: name"), "{err}");
        assert!(strategic_merge(&live_deployment(), &json!([1]), "apps/v1", "Deployment").is_err());
    }

    #[test]
    fn new_fields_are_taken_without_directives_or_nulls() {
        let patch = json!({"spec": {"template": {"spec": {"volumes": [{"name": "v", "emptyDir": {}, "hostPath": null}]}}}});
        let got = strategic_merge(&live_deployment(), &patch, "apps/v1", "Deployment").unwrap();
        assert_eq!(
            got["spec"]["template"]["spec"]["volumes"],
            json!([{"name": "v", "emptyDir": {}}])
        );
    }

    #[test]
    fn unknown_kinds_merge_maps_and_replace_lists() {
        let orig = json!({"spec": {"items": [{"name": "a", "v": 1}], "keep": 1}});
        let got = strategic_merge(
            &orig,
            &json!({"spec": {"items": [{"name": "a", "v": 2}]}}),
            "example.com/v1",
            "Widget",
        )
        .unwrap();
        assert_eq!(
            got,
            json!({"spec": {"items": [{"name": "a", "v": 2}], "keep": 1}})
        );
    }

    #[test]
    fn json_merge_patch_rfc7386() {
        let orig = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        let got = merge(&orig, &json!({"a": "z", "c": {"f": null}, "l": [3]}));
        assert_eq!(got, json!({"a": "z", "c": {"d": "e"}, "l": [3]}));
        assert_eq!(merge(&json!({"a": 1}), &json!("x")), json!("x"));
        assert_eq!(
            merge(&json!([1]), &json!({"a": {"b": 1}})),
            json!({"a": {"b": 1}})
        );
    }

    /// `kubectl rollout undo` sends a JSON patch.
    #[test]
    fn json_patch_rfc6902() {
        let orig = live_deployment();
        let patch = json!([{"op": "replace", "path": "/spec/template", "value": {"spec": {"containers": []}}},
                           {"op": "replace", "path": "/metadata/annotations", "value": {"deployment.kubernetes.io/revision": "2"}}]);
        let got = json_patch(&orig, &patch).unwrap();
        assert_eq!(got["spec"]["template"], json!({"spec": {"containers": []}}));
        assert_eq!(
            got["metadata"]["annotations"],
            json!({"deployment.kubernetes.io/revision": "2"})
        );
        assert!(matches!(
            json_patch(&orig, &json!({"op": "x"})),
            Err(PatchError::Invalid(_))
        ));
        assert!(matches!(
            json_patch(
                &orig,
                &json!([{"op": "test", "path": "/spec/replicas", "value": 9}])
            ),
            Err(PatchError::Failed(_))
        ));
    }
}
