//! OpenAPI v3 documents for the built-in resources, as kubectl needs them
//! for `apply`, `create -f` (strict validation) and `explain`.
//!
//! One document per group-version (`/openapi/v3/api/v1`,
//! `/openapi/v3/apis/apps/v1`): a path per resource collection and item (and
//! the `status`/`scale` subresources) whose operations carry
//! `x-kubernetes-group-version-kind`; every PATCH lists the `fieldValidation`
//! query parameter and accepts `application/strategic-merge-patch+json` (kubectl
//! checks both), and `components.schemas` holds the kinds' schemas from
//! [`crate::schema`] with their patch-merge extensions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use serde_json::{json, Map, Value};
use sha2::Digest as _;

use crate::resources::{builtin_resources, ResourceInfo};
use crate::schema;

/// The Kubernetes version the documents describe.
const INFO_VERSION: &str = "v1.33.0";

struct Docs {
    /// `api/v1`, `apis/apps/v1` → (document, hash)
    by_path: BTreeMap<String, (Arc<Value>, String)>,
    index: Value,
}

fn docs() -> &'static Docs {
    static DOCS: OnceLock<Docs> = OnceLock::new();
    DOCS.get_or_init(build_all)
}

/// `api/v1` for the core group, `apis/<group>/<version>` otherwise.
pub fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn build_all() -> Docs {
    let mut gvs: Vec<(&'static str, &'static str)> = Vec::new();
    for r in builtin_resources() {
        if !gvs.contains(&(r.group, r.version)) {
            gvs.push((r.group, r.version));
        }
    }
    let mut by_path = BTreeMap::new();
    let mut index = Map::new();
    for (g, v) in gvs {
        let doc = build_group_version(g, v);
        let bytes = serde_json::to_vec(&doc).unwrap_or_default();
        let hash = hex::encode_upper(sha2::Sha512::digest(&bytes));
        let path = gv_path(g, v);
        index.insert(
            path.clone(),
            json!({ "serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}") }),
        );
        by_path.insert(path, (Arc::new(doc), hash));
    }
    Docs {
        by_path,
        index: json!({ "paths": index }),
    }
}

/// `GET /openapi/v3`: `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=H"}, ...}}`.
pub fn v3_index() -> Value {
    docs().index.clone()
}

/// `GET /openapi/v3/<gv_path>` where `gv_path` is `api/v1` or `apis/<group>/<version>`.
/// `None` when the group-version is not served.
pub fn v3_group_version(gv_path: &str) -> Option<std::sync::Arc<Value>> {
    let p = gv_path
        .trim_start_matches('/')
        .trim_start_matches("openapi/v3/")
        .trim_end_matches('/');
    docs().by_path.get(p).map(|(d, _)| d.clone())
}

/// The content hash of a group-version document (the `hash=` of its URL), for
/// `ETag` and immutable caching when the request's hash matches.
pub fn v3_hash(gv_path: &str) -> Option<&'static str> {
    let p = gv_path
        .trim_start_matches('/')
        .trim_start_matches("openapi/v3/")
        .trim_end_matches('/');
    docs().by_path.get(p).map(|(_, h)| h.as_str())
}

fn query(name: &str, description: &str, ty: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": ty, "uniqueItems": true}})
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "description": description, "required": true, "schema": {"type": "string", "uniqueItems": true}})
}

fn dry_run() -> Value {
    query("dryRun", "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed", "string")
}
fn field_manager() -> Value {
    query(
        "fieldManager",
        "fieldManager is a name associated with the actor or entity that is making these changes.",
        "string",
    )
}
fn field_validation() -> Value {
    query(
        "fieldValidation",
        "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict",
        "string",
    )
}
fn pretty() -> Value {
    query(
        "pretty",
        "If 'true', then the output is pretty printed.",
        "string",
    )
}

fn list_params() -> Vec<Value> {
    vec![
        query("allowWatchBookmarks", "allowWatchBookmarks requests watch events with type \"BOOKMARK\".", "boolean"),
        query("continue", "The continue option should be set when retrieving more results from the server.", "string"),
        query("fieldSelector", "A selector to restrict the list of returned objects by their fields. Defaults to everything.", "string"),
        query("labelSelector", "A selector to restrict the list of returned objects by their labels. Defaults to everything.", "string"),
        query("limit", "limit is a maximum number of responses to return for a list call.", "integer"),
        query("resourceVersion", "resourceVersion sets a constraint on what resource versions a request may be served from.", "string"),
        query("resourceVersionMatch", "resourceVersionMatch determines how resourceVersion is applied to list calls.", "string"),
        query("sendInitialEvents", "`sendInitialEvents=true` may be set together with `watch=true`.", "boolean"),
        query("timeoutSeconds", "Timeout for the list/watch call.", "integer"),
        query("watch", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.", "boolean"),
    ]
}

fn delete_params() -> Vec<Value> {
    vec![
        dry_run(),
        query("gracePeriodSeconds", "The duration in seconds before the object should be deleted.", "integer"),
        query("orphanDependents", "Deprecated: please use the PropagationPolicy.", "boolean"),
        query("propagationPolicy", "Whether and how garbage collection will be performed: 'Orphan', 'Background' or 'Foreground'.", "string"),
    ]
}

fn schema_ref(def: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{def}") })
}

fn content(def: &str, types: &[&str]) -> Value {
    let mut m = Map::new();
    for t in types {
        m.insert((*t).to_string(), json!({ "schema": schema_ref(def) }));
    }
    Value::Object(m)
}

const RESPONSE_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];
const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];
const META_V1: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";

fn response(code: &str, def: &str) -> (String, Value) {
    let description = match code {
        "200" => "OK",
        "201" => "Created",
        "202" => "Accepted",
        _ => "",
    };
    (
        code.to_string(),
        json!({"description": description, "content": content(def, RESPONSE_TYPES)}),
    )
}

/// `Apps`/`V1` style prefix for operation ids: `rbac.authorization.k8s.io` → `RbacAuthorization`.
fn op_group(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    let base = group.strip_suffix(".k8s.io").unwrap_or(group);
    base.split(['.', '-'])
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn tag(group: &str, version: &str) -> String {
    let g = op_group(group);
    let mut c = g.chars();
    let lower = c
        .next()
        .map(|f| f.to_lowercase().collect::<String>() + c.as_str())
        .unwrap_or_default();
    format!("{lower}_{version}")
}

struct Op<'a> {
    action: &'a str,
    op_id: String,
    description: String,
    params: Vec<Value>,
    body: Option<(&'a str, &'a [&'a str])>,
    responses: Vec<(&'a str, &'a str)>,
    gvk: (&'a str, &'a str, &'a str),
    tag: String,
}

fn operation(op: Op<'_>) -> Value {
    let mut o = Map::new();
    o.insert("tags".into(), json!([op.tag]));
    o.insert("description".into(), Value::String(op.description));
    o.insert("operationId".into(), Value::String(op.op_id));
    if !op.params.is_empty() {
        o.insert("parameters".into(), Value::Array(op.params));
    }
    if let Some((def, types)) = op.body {
        o.insert(
            "requestBody".into(),
            json!({"content": content(def, types), "required": true}),
        );
    }
    let mut responses: Map<String, Value> =
        op.responses.iter().map(|(c, d)| response(c, d)).collect();
    responses.insert("401".into(), json!({"description": "Unauthorized"}));
    o.insert("responses".into(), Value::Object(responses));
    o.insert(
        "x-kubernetes-action".into(),
        Value::String(op.action.into()),
    );
    o.insert(
        "x-kubernetes-group-version-kind".into(),
        json!({"group": op.gvk.0, "version": op.gvk.1, "kind": op.gvk.2}),
    );
    Value::Object(o)
}

fn resource_paths(
    r: &ResourceInfo,
    def: &str,
    paths: &mut Map<String, Value>,
    roots: &mut BTreeSet<String>,
) {
    let prefix = format!("/{}", gv_path(r.group, r.version));
    let tag = tag(r.group, r.version);
    let og = format!("{}{}", op_group(r.group), capitalize(r.version));
    let ns = if r.namespaced { "Namespaced" } else { "" };
    let coll = if r.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", r.resource)
    } else {
        format!("{prefix}/{}", r.resource)
    };
    let gvk = (r.group, r.version, r.kind);
    let list_def = format!("{def}List");
    let has_list = schema::definitions().contains_key(&list_def);
    let verbs = r.verbs;
    let can = |v: &str| verbs.contains(&v);
    let mut common = vec![pretty()];
    if r.namespaced {
        common.insert(
            0,
            path_param(
                "namespace",
                "object name and auth scope, such as for teams and projects",
            ),
        );
    }
    let status_def = format!("{META_V1}.Status");
    let delete_def = format!("{META_V1}.DeleteOptions");
    let patch_def = format!("{META_V1}.Patch");
    roots.insert(def.to_string());
    roots.insert(status_def.clone());
    roots.insert(delete_def.clone());
    roots.insert(patch_def.clone());
    if has_list {
        roots.insert(list_def.clone());
    }

    // collection
    let mut c = Map::new();
    if can("list") && has_list {
        c.insert(
            "get".into(),
            operation(Op {
                action: "list",
                op_id: format!("list{og}{ns}{}", r.kind),
                description: format!("list or watch objects of kind {}", r.kind),
                params: list_params(),
                body: None,
                responses: vec![("200", &list_def)],
                gvk,
                tag: tag.clone(),
            }),
        );
    }
    if can("create") {
        c.insert(
            "post".into(),
            operation(Op {
                action: "post",
                op_id: format!("create{og}{ns}{}", r.kind),
                description: format!("create a {}", r.kind),
                params: vec![dry_run(), field_manager(), field_validation()],
                body: Some((def, &["*/*"])),
                responses: vec![("200", def), ("201", def), ("202", def)],
                gvk,
                tag: tag.clone(),
            }),
        );
    }
    if can("deletecollection") {
        let mut p = delete_params();
        p.extend(list_params());
        c.insert(
            "delete".into(),
            operation(Op {
                action: "deletecollection",
                op_id: format!("deletecollection{og}{ns}{}", r.kind),
                description: format!("delete collection of {}", r.kind),
                params: p,
                body: Some((&delete_def, &["*/*"])),
                responses: vec![("200", &status_def)],
                gvk,
                tag: tag.clone(),
            }),
        );
    }
    if !c.is_empty() {
        c.insert("parameters".into(), Value::Array(common.clone()));
        paths.insert(coll.clone(), Value::Object(c));
    }

    // all namespaces
    if r.namespaced && can("list") && has_list {
        let mut p = list_params();
        p.push(pretty());
        let mut a = Map::new();
        a.insert(
            "get".into(),
            operation(Op {
                action: "list",
                op_id: format!("list{og}{}ForAllNamespaces", r.kind),
                description: format!("list or watch objects of kind {}", r.kind),
                params: vec![],
                body: None,
                responses: vec![("200", &list_def)],
                gvk,
                tag: tag.clone(),
            }),
        );
        a.insert("parameters".into(), Value::Array(p));
        paths.insert(format!("{prefix}/{}", r.resource), Value::Object(a));
    }

    // item
    let mut item_common = common.clone();
    item_common.insert(0, path_param("name", &format!("name of the {}", r.kind)));
    let mut i = Map::new();
    if can("get") {
        i.insert(
            "get".into(),
            operation(Op {
                action: "get",
                op_id: format!("read{og}{ns}{}", r.kind),
                description: format!("read the specified {}", r.kind),
                params: vec![],
                body: None,
                responses: vec![("200", def)],
                gvk,
                tag: tag.clone(),
            }),
        );
    }
    if can("update") {
        i.insert(
            "put".into(),
            operation(Op {
                action: "put",
                op_id: format!("replace{og}{ns}{}", r.kind),
                description: format!("replace the specified {}", r.kind),
                params: vec![dry_run(), field_manager(), field_validation()],
                body: Some((def, &["*/*"])),
                responses: vec![("200", def), ("201", def)],
                gvk,
                tag: tag.clone(),
            }),
        );
    }
    if can("patch") {
        i.insert(
            "patch".into(),
            patch_op(
                &format!("patch{og}{ns}{}", r.kind),
                r.kind,
                def,
                &patch_def,
                gvk,
                &tag,
            ),
        );
    }
    if can("delete") {
        i.insert(
            "delete".into(),
            operation(Op {
                action: "delete",
                op_id: format!("delete{og}{ns}{}", r.kind),
                description: format!("delete a {}", r.kind),
                params: delete_params(),
                body: Some((&delete_def, &["*/*"])),
                responses: vec![("200", &status_def), ("202", &status_def)],
                gvk,
                tag: tag.clone(),
            }),
        );
    }
    if !i.is_empty() {
        i.insert("parameters".into(), Value::Array(item_common.clone()));
        paths.insert(format!("{coll}/{{name}}"), Value::Object(i));
    }

    // status and scale subresources
    for sub in r.subresources {
        let (sub_def, sub_gvk, word) = match *sub {
            "status" => (def.to_string(), gvk, "Status"),
            "scale" => (
                "io.k8s.api.autoscaling.v1.Scale".to_string(),
                ("autoscaling", "v1", "Scale"),
                "Scale",
            ),
            _ => continue,
        };
        roots.insert(sub_def.clone());
        let mut s = Map::new();
        s.insert(
            "get".into(),
            operation(Op {
                action: "get",
                op_id: format!("read{og}{ns}{}{word}", r.kind),
                description: format!("read {} of the specified {}", sub, r.kind),
                params: vec![],
                body: None,
                responses: vec![("200", &sub_def)],
                gvk: sub_gvk,
                tag: tag.clone(),
            }),
        );
        s.insert(
            "put".into(),
            operation(Op {
                action: "put",
                op_id: format!("replace{og}{ns}{}{word}", r.kind),
                description: format!("replace {} of the specified {}", sub, r.kind),
                params: vec![dry_run(), field_manager(), field_validation()],
                body: Some((&sub_def, &["*/*"])),
                responses: vec![("200", &sub_def), ("201", &sub_def)],
                gvk: sub_gvk,
                tag: tag.clone(),
            }),
        );
        s.insert(
            "patch".into(),
            patch_op(
                &format!("patch{og}{ns}{}{word}", r.kind),
                r.kind,
                &sub_def,
                &patch_def,
                sub_gvk,
                &tag,
            ),
        );
        s.insert("parameters".into(), Value::Array(item_common.clone()));
        paths.insert(format!("{coll}/{{name}}/{sub}"), Value::Object(s));
    }
}

fn patch_op(
    op_id: &str,
    kind: &str,
    def: &str,
    patch_def: &str,
    gvk: (&str, &str, &str),
    tag: &str,
) -> Value {
    let mut p = vec![dry_run(), field_manager(), field_validation()];
    p.push(query(
        "force",
        "Force is going to \"force\" Apply requests. It must be unset for non-apply patch requests.",
        "boolean",
    ));
    operation(Op {
        action: "patch",
        op_id: op_id.to_string(),
        description: format!("partially update the specified {kind}"),
        params: p,
        body: Some((patch_def, PATCH_TYPES)),
        responses: vec![("200", def), ("201", def)],
        gvk,
        tag: tag.to_string(),
    })
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// Collects `roots` and every definition they reference.
fn reachable(roots: &BTreeSet<String>) -> Map<String, Value> {
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    if k == "$ref" {
                        if let Some(n) = v.as_str().and_then(schema::ref_name) {
                            out.push(n.to_string());
                        }
                    } else {
                        refs(v, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let defs = schema::definitions();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut todo: Vec<String> = roots.iter().cloned().collect();
    while let Some(n) = todo.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        if let Some(d) = defs.get(&n) {
            refs(d, &mut todo);
        }
    }
    seen.into_iter()
        .filter_map(|n| defs.get(&n).map(|d| (n, d.clone())))
        .collect()
}

fn build_group_version(group: &str, version: &str) -> Value {
    let mut paths = Map::new();
    let mut roots = BTreeSet::new();
    for r in builtin_resources()
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let Some(k) = schema::kind_schema(&r.api_version(), r.kind) else {
            continue;
        };
        resource_paths(r, &k.definition, &mut paths, &mut roots);
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": INFO_VERSION},
        "paths": paths,
        "components": {"schemas": reachable(&roots)},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_lists_every_group_version_with_a_stable_hash() {
        let idx = v3_index();
        let paths = idx["paths"].as_object().unwrap();
        for r in builtin_resources() {
            let p = gv_path(r.group, r.version);
            let url = paths[&p]["serverRelativeURL"].as_str().unwrap();
            assert!(url.starts_with(&format!("/openapi/v3/{p}?hash=")), "{url}");
            let hash = url.split("hash=").nth(1).unwrap();
            assert_eq!(Some(hash), v3_hash(&p));
            // the hash is the content's
            let doc = v3_group_version(&p).unwrap();
            let h = hex::encode_upper(sha2::Sha512::digest(serde_json::to_vec(&*doc).unwrap()));
            assert_eq!(h, hash);
        }
        assert_eq!(
            build_group_version("apps", "v1"),
            build_group_version("apps", "v1")
        );
        assert!(v3_group_version("apis/nope/v1").is_none());
    }

    /// What kubectl's `supportsQueryParamV3` and `gvkSupportsPatchOpenAPIV3`
    /// look for: the first PATCH operation with the kind's GVK must list
    /// `fieldValidation` in the query and accept strategic merge patch.
    #[test]
    fn every_patch_operation_supports_field_validation_and_smp() {
        let mut checked = 0;
        for r in builtin_resources() {
            let doc = v3_group_version(&gv_path(r.group, r.version)).unwrap();
            let mut found = false;
            for (_, item) in doc["paths"].as_object().unwrap() {
                let Some(op) = item.get("patch") else {
                    continue;
                };
                let gvk = &op["x-kubernetes-group-version-kind"];
                assert!(gvk.is_object(), "GVK extension is a single object");
                let params = op["parameters"].as_array().unwrap();
                assert!(params
                    .iter()
                    .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
                assert!(op["requestBody"]["content"]
                    .get("application/strategic-merge-patch+json")
                    .is_some());
                if gvk["kind"] == r.kind && gvk["group"] == r.group {
                    found = true;
                }
            }
            assert!(found, "no PATCH operation for {}", r.kind);
            checked += 1;
        }
        assert!(checked > 10);
    }

    #[test]
    fn paths_for_pods_and_deployments() {
        let core = v3_group_version("api/v1").unwrap();
        let p = &core["paths"];
        let item = &p["/api/v1/namespaces/{namespace}/pods/{name}"];
        for m in ["get", "put", "patch", "delete"] {
            assert_eq!(
                item[m]["x-kubernetes-group-version-kind"]["kind"], "Pod",
                "{m}"
            );
        }
        assert_eq!(
            p["/api/v1/namespaces/{namespace}/pods"]["post"]["x-kubernetes-action"],
            "post"
        );
        assert_eq!(
            p["/api/v1/namespaces/{namespace}/pods"]["get"]["operationId"],
            "listCoreV1NamespacedPod"
        );
        assert!(p["/api/v1/pods"]["get"].is_object());
        assert!(
            p["/api/v1/namespaces/{name}"]["get"].is_object(),
            "cluster-scoped path"
        );
        assert!(p["/api/v1/namespaces/{namespace}/pods/{name}/status"]["patch"].is_object());
        let apps = v3_group_version("apis/apps/v1").unwrap();
        let scale = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
            ["patch"];
        assert_eq!(scale["x-kubernetes-group-version-kind"]["kind"], "Scale");
        assert!(apps["components"]["schemas"]
            .get("io.k8s.api.autoscaling.v1.Scale")
            .is_some());
    }

    /// `kubectl explain` finds the schema by its GVK extension and follows `$ref`s.
    #[test]
    fn components_are_complete_for_explain() {
        let core = v3_group_version("api/v1").unwrap();
        let schemas = core["components"]["schemas"].as_object().unwrap();
        let pod = &schemas["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod["x-kubernetes-group-version-kind"],
            json!([{"group": "", "version": "v1", "kind": "Pod"}])
        );
        assert!(pod["description"]
            .as_str()
            .unwrap()
            .starts_with("Pod is a collection of containers"));
        assert!(
            pod.get("required").is_none(),
            "metadata is not required in Kubernetes"
        );
        // every $ref inside the document resolves inside the document
        let text = serde_json::to_string(&*core).unwrap();
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &part[..part.find('"').unwrap()];
            assert!(schemas.contains_key(name), "dangling $ref {name}");
        }
        let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(
            schemas["io.k8s.api.core.v1.PodList"]["x-kubernetes-group-version-kind"][0]["kind"],
            "PodList"
        );
        // only the group's kinds carry this group's GVKs
        let apps = v3_group_version("apis/apps/v1").unwrap();
        assert!(apps["components"]["schemas"]
            .get("io.k8s.api.apps.v1.Deployment")
            .is_some());
        assert!(core["components"]["schemas"]
            .get("io.k8s.api.apps.v1.Deployment")
            .is_none());
    }

    #[test]
    fn operation_id_groups() {
        assert_eq!(op_group("rbac.authorization.k8s.io"), "RbacAuthorization");
        assert_eq!(op_group("apps"), "Apps");
        assert_eq!(tag("", "v1"), "core_v1");
        assert_eq!(tag("discovery.k8s.io", "v1"), "discovery_v1");
    }
}
