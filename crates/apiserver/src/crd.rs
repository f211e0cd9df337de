//! CustomResourceDefinitions (apiextensions.k8s.io/v1): the registry of the
//! resources CRDs define (rebuilt from the stored CRDs at start and after
//! every CRD write), the CRD's own strategy (defaults, validation, the
//! NamesAccepted / Established conditions and name conflicts, the
//! `customresourcecleanup` finalizer) and what a custom resource needs from
//! its CRD version: the structural schema (pruning, defaults, validation;
//! see `crd_schema`), printer columns, the scale subresource paths and the
//! storage version. Deleting a CRD deletes its objects, then the CRD.

use crate::crd_schema::{self, PrinterColumn};
use crate::error::{ApiError, Cause};
use crate::rest::{storage_prefix, DeleteOptions, UpdateMode};
use crate::Inner;
use minik_apimachinery::resources::{self, OwnedResourceInfo, ResourceInfo};
use serde_json::{json, Value};
use std::sync::{Arc, RwLock};

/// The finalizer that makes a CRD wait until its objects are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";
pub const GROUP: &str = "apiextensions.k8s.io";

/// `.spec.scale` paths of the scale subresource.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// One served version of a CRD.
#[derive(Debug, Clone)]
pub struct CrdVersion {
    pub info: &'static ResourceInfo,
    pub crd_name: String,
    pub schema: Option<Value>,
    pub columns: Vec<PrinterColumn>,
    pub scale: Option<ScalePaths>,
    /// The version objects are stored in (conversion strategy None: only
    /// `apiVersion` differs between versions).
    pub storage_version: String,
    /// The CRD is being deleted: no new objects.
    pub terminating: bool,
}

impl CrdVersion {
    /// Applies the schema's defaults to an object read from storage (a
    /// default added to the CRD later shows on objects stored before it).
    pub fn default_on_read(&self, obj: &mut Value) {
        if let Some(s) = &self.schema {
            crd_schema::apply_defaults(s, obj);
        }
    }

    /// Columns of a Table of this resource: Name, then the printer columns
    /// (or Age when the version declares none), as kube's CRD table convertor.
    pub fn table_columns(&self) -> Vec<PrinterColumn> {
        let mut cols = self.columns.clone();
        if cols.is_empty() {
            cols.push(PrinterColumn {
                name: "Age".into(),
                ty: "date".into(),
                format: String::new(),
                description: "CreationTimestamp is a timestamp representing the server time when this object was created.".into(),
                priority: 0,
                json_path: ".metadata.creationTimestamp".into(),
            });
        }
        cols
    }
}

/// The served custom resources.
#[derive(Default)]
pub struct Registry {
    versions: RwLock<Vec<Arc<CrdVersion>>>,
}

/// `.spec.replicas` → `/spec/replicas`.
pub fn json_pointer(path: &str) -> String {
    path.trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
        .fold(String::new(), |acc, s| format!("{acc}/{s}"))
}

fn strs(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn condition_true(crd: &Value, ty: &str) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == ty && c["status"] == "True"))
}

/// The served versions of one stored CRD (none until its names are accepted).
pub fn versions_of(crd: &Value) -> Vec<CrdVersion> {
    // served once Established (names accepted once; a later conflicting
    // rename keeps the previously accepted names)
    if !condition_true(crd, "Established") {
        return Vec::new();
    }
    let group = crd
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or("");
    let names = crd
        .pointer("/status/acceptedNames")
        .cloned()
        .unwrap_or_default();
    let s = |k: &str| {
        names
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let namespaced = crd.pointer("/spec/scope").and_then(Value::as_str) != Some("Cluster");
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let storage_version = versions
        .iter()
        .find(|v| v["storage"] == true)
        .and_then(|v| v["name"].as_str())
        .unwrap_or("")
        .to_string();
    let terminating = crd
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null());
    let crd_name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut out = Vec::new();
    for v in &versions {
        if v["served"] != true {
            continue;
        }
        let Some(version) = v["name"].as_str() else {
            continue;
        };
        let mut subresources = Vec::new();
        if v.pointer("/subresources/status").is_some() {
            subresources.push("status".to_string());
        }
        let scale = v.pointer("/subresources/scale").map(|sc| ScalePaths {
            spec_replicas: sc["specReplicasPath"]
                .as_str()
                .unwrap_or(".spec.replicas")
                .into(),
            status_replicas: sc["statusReplicasPath"]
                .as_str()
                .unwrap_or(".status.replicas")
                .into(),
            label_selector: sc["labelSelectorPath"].as_str().map(String::from),
        });
        if scale.is_some() {
            subresources.push("scale".to_string());
        }
        let info = resources::intern(&OwnedResourceInfo {
            group: group.into(),
            version: version.into(),
            kind: s("kind"),
            resource: s("plural"),
            singular: s("singular"),
            namespaced,
            short_names: strs(names.get("shortNames")),
            categories: strs(names.get("categories")),
            subresources,
            verbs: resources::read_write_verbs()
                .iter()
                .map(|s| s.to_string())
                .collect(),
        });
        out.push(CrdVersion {
            info,
            crd_name: crd_name.clone(),
            schema: v.pointer("/schema/openAPIV3Schema").cloned(),
            columns: v
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .map(|cs| cs.iter().filter_map(PrinterColumn::from_json).collect())
                .unwrap_or_default(),
            scale,
            storage_version: storage_version.clone(),
            terminating,
        });
    }
    out
}

impl Registry {
    /// Replaces the served set with the versions of `crds`.
    pub fn load(&self, crds: &[Value]) {
        let all: Vec<Arc<CrdVersion>> = crds.iter().flat_map(versions_of).map(Arc::new).collect();
        match self.versions.write() {
            Ok(mut v) => *v = all,
            Err(p) => *p.into_inner() = all,
        }
    }

    fn read(&self) -> Vec<Arc<CrdVersion>> {
        match self.versions.read() {
            Ok(v) => v.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The resource for a URL's group, version and plural.
    pub fn find(
        &self,
        group: &str,
        version: &str,
        resource: &str,
    ) -> Option<&'static ResourceInfo> {
        self.read()
            .iter()
            .find(|v| {
                v.info.group == group && v.info.version == version && v.info.resource == resource
            })
            .map(|v| v.info)
    }

    /// The CRD version behind a resource, None for built-ins.
    pub fn get(&self, info: &ResourceInfo) -> Option<Arc<CrdVersion>> {
        self.read().into_iter().find(|v| std::ptr::eq(v.info, info))
    }

    /// Every served custom resource version.
    pub fn all(&self) -> Vec<Arc<CrdVersion>> {
        self.read()
    }
}

fn crd_info() -> &'static ResourceInfo {
    static INFO: std::sync::OnceLock<&'static ResourceInfo> = std::sync::OnceLock::new();
    INFO.get_or_init(|| {
        resources::find(GROUP, "v1", "customresourcedefinitions")
            .expect("customresourcedefinitions is a row of the built-in table")
    })
}

/// Whether `info` is the CRD resource itself.
pub fn is_crd_resource(info: &ResourceInfo) -> bool {
    info.group == GROUP && info.resource == "customresourcedefinitions"
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Defaults of a CRD (singular, listKind, conversion, schema-less columns).
pub fn default_crd(crd: &mut Value) {
    let kind = crd
        .pointer("/spec/names/kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(names) = crd
        .pointer_mut("/spec/names")
        .and_then(Value::as_object_mut)
    {
        if !kind.is_empty() {
            names
                .entry("singular")
                .or_insert_with(|| json!(kind.to_lowercase()));
            names
                .entry("listKind")
                .or_insert_with(|| json!(format!("{kind}List")));
        }
    }
    if let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut) {
        spec.entry("conversion")
            .or_insert_with(|| json!({"strategy": "None"}));
    }
}

/// Validates a CRD like apiextensions' `ValidateCustomResourceDefinition`
/// (the parts this server relies on).
pub fn validate_crd(crd: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut c = Vec::new();
    let s = |p: &str| crd.pointer(p).and_then(Value::as_str).unwrap_or("");
    let name = s("/metadata/name");
    let group = s("/spec/group");
    let plural = s("/spec/names/plural");
    if group.is_empty() {
        c.push(Cause::required("spec.group", ""));
    } else if !group.contains('.') {
        c.push(Cause::invalid(
            "spec.group",
            &json!(group),
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        c.push(Cause::required("spec.names.plural", ""));
    } else if !is_dns_label(plural) {
        c.push(Cause::invalid(
            "spec.names.plural",
            &json!(plural),
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
        ));
    }
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        c.push(Cause::invalid(
            "metadata.name",
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let singular = s("/spec/names/singular");
    if !singular.is_empty() && !is_dns_label(singular) {
        c.push(Cause::invalid(
            "spec.names.singular",
            &json!(singular),
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
        ));
    }
    for (i, sn) in strs(crd.pointer("/spec/names/shortNames"))
        .iter()
        .enumerate()
    {
        if !is_dns_label(sn) {
            c.push(Cause::invalid(
                format!("spec.names.shortNames[{i}]"),
                &json!(sn),
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
            ));
        }
    }
    let kind = s("/spec/names/kind");
    if kind.is_empty() {
        c.push(Cause::required("spec.names.kind", ""));
    }
    if kind == s("/spec/names/listKind") && !kind.is_empty() {
        c.push(Cause::invalid(
            "spec.names.listKind",
            &json!(kind),
            "kind and listKind may not be the same",
        ));
    }
    match s("/spec/scope") {
        "Namespaced" | "Cluster" => {}
        "" => c.push(Cause::required("spec.scope", "")),
        other => c.push(Cause::not_supported(
            "spec.scope",
            &json!(other),
            &["Cluster", "Namespaced"],
        )),
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        c.push(Cause::invalid(
            "spec.versions",
            &json!(null),
            "must have exactly one version marked as storage version",
        ));
    }
    let storage = versions.iter().filter(|v| v["storage"] == true).count();
    if !versions.is_empty() && storage != 1 {
        c.push(Cause::invalid(
            "spec.versions",
            &json!(versions),
            "must have exactly one version marked as storage version",
        ));
    }
    let mut seen = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let vname = v["name"].as_str().unwrap_or("");
        if vname.is_empty() {
            c.push(Cause::required(format!("spec.versions[{i}].name"), ""));
        } else if !is_dns_label(vname) {
            c.push(Cause::invalid(
                format!("spec.versions[{i}].name"),
                &json!(vname),
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-'",
            ));
        }
        if seen.contains(&vname) {
            c.push(Cause::duplicate(
                format!("spec.versions[{i}].name"),
                &json!(vname),
            ));
        }
        seen.push(vname);
        match v.pointer("/schema/openAPIV3Schema") {
            None => c.push(Cause::required(
                format!("spec.versions[{i}].schema.openAPIV3Schema"),
                "schemas are required",
            )),
            Some(schema) => {
                let base = format!("spec.versions[{i}].schema.openAPIV3Schema");
                if schema.get("type").and_then(Value::as_str) != Some("object") {
                    c.push(Cause::invalid(
                        format!("{base}.type"),
                        &schema.get("type").cloned().unwrap_or(json!("")),
                        "must be object at the root",
                    ));
                }
                for (field, msg) in crd_schema::check_schema(schema, &base) {
                    c.push(Cause::invalid(field, &json!(""), &msg));
                }
            }
        }
        for (j, col) in v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let base = format!("spec.versions[{i}].additionalPrinterColumns[{j}]");
            if col["name"].as_str().unwrap_or("").is_empty() {
                c.push(Cause::required(format!("{base}.name"), ""));
            }
            match col["type"].as_str().unwrap_or("") {
                "integer" | "number" | "string" | "boolean" | "date" => {}
                other => c.push(Cause::not_supported(
                    format!("{base}.type"),
                    &json!(other),
                    &["boolean", "date", "integer", "number", "string"],
                )),
            }
            let jp = col["jsonPath"].as_str().unwrap_or("");
            if jp.is_empty() {
                c.push(Cause::required(format!("{base}.jsonPath"), ""));
            } else if !crd_schema::valid_json_path(jp) {
                c.push(Cause::invalid(
                    format!("{base}.jsonPath"),
                    &json!(jp),
                    "must be a simple json path",
                ));
            }
        }
    }
    if let Some(old) = old {
        let og = old
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or("");
        if og != group {
            c.push(Cause::invalid(
                "spec.group",
                &json!(group),
                "field is immutable",
            ));
        }
        let os = old
            .pointer("/spec/scope")
            .and_then(Value::as_str)
            .unwrap_or("");
        if os != s("/spec/scope") {
            c.push(Cause::invalid(
                "spec.scope",
                &json!(s("/spec/scope")),
                "field is immutable",
            ));
        }
    }
    c
}

fn names_of(crd: &Value) -> Vec<(String, &'static str)> {
    let n = |k: &str| {
        crd.pointer(&format!("/spec/names/{k}"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut out = vec![
        (n("plural"), "plural"),
        (n("singular"), "singular"),
        (n("kind"), "kind"),
        (n("listKind"), "listKind"),
    ];
    for sn in strs(crd.pointer("/spec/names/shortNames")) {
        out.push((sn, "shortNames"));
    }
    out.retain(|(v, _)| !v.is_empty());
    out
}

fn condition(ty: &str, ok: bool, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": ty, "status": if ok { "True" } else { "False" }, "lastTransitionTime": now,
           "reason": reason, "message": message})
}

/// Computes a CRD's status the way kube's naming and establishing
/// controllers do: names conflicting with another CRD of the same group
/// (or a built-in resource) are not accepted; accepted names make it
/// Established. `others` are the other stored CRDs.
pub fn compute_status(crd: &mut Value, others: &[Value], now: &str) {
    let group = crd
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut conflict = None;
    let mine = names_of(crd);
    for (value, what) in &mine {
        if *what == "plural" {
            for v in crd
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let ver = v["name"].as_str().unwrap_or("");
                if resources::find(&group, ver, value).is_some() {
                    conflict = Some(format!(
                        "{what} {value:?} is already in use by a built-in resource"
                    ));
                }
            }
        }
    }
    for other in others.iter().filter(|o| {
        o.pointer("/spec/group").and_then(Value::as_str) == Some(group.as_str())
            && o.pointer("/metadata/name") != crd.pointer("/metadata/name")
    }) {
        let theirs: Vec<String> = other
            .pointer("/status/acceptedNames")
            .map(|a| {
                let mut v = Vec::new();
                for k in ["plural", "singular", "kind", "listKind"] {
                    if let Some(s) = a.get(k).and_then(Value::as_str) {
                        v.push(s.to_string());
                    }
                }
                v.extend(strs(a.get("shortNames")));
                v
            })
            .unwrap_or_default();
        for (value, what) in &mine {
            if theirs.contains(value) {
                conflict = Some(format!(
                    "{what} {value:?} is already in use by {}",
                    other
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                ));
            }
        }
    }
    let old_conditions: Vec<Value> = crd
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let keep_time = |c: Value| -> Value {
        match old_conditions
            .iter()
            .find(|o| o["type"] == c["type"] && o["status"] == c["status"])
        {
            Some(o) => {
                let mut c = c;
                c["lastTransitionTime"] = o["lastTransitionTime"].clone();
                c
            }
            None => c,
        }
    };
    let storage = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .and_then(|vs| vs.iter().find(|v| v["storage"] == true))
        .and_then(|v| v["name"].as_str())
        .unwrap_or("")
        .to_string();
    let mut stored = strs(crd.pointer("/status/storedVersions"));
    let terminating = crd
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null());
    let mut status = crd.get("status").cloned().unwrap_or_else(|| json!({}));
    let conditions = match &conflict {
        Some(msg) => {
            // previously accepted names stay served (and the CRD Established)
            let had_names = status
                .pointer("/acceptedNames/plural")
                .and_then(Value::as_str)
                .is_some_and(|p| !p.is_empty());
            if status.get("acceptedNames").is_none() {
                status["acceptedNames"] = json!({"plural": "", "kind": ""});
            }
            let established = if had_names {
                keep_time(condition(
                    "Established",
                    true,
                    "InitialNamesAccepted",
                    "the initial names have been accepted",
                    now,
                ))
            } else {
                keep_time(condition(
                    "Established",
                    false,
                    "NotAccepted",
                    "not all names are accepted",
                    now,
                ))
            };
            vec![
                keep_time(condition(
                    "NamesAccepted",
                    false,
                    "MultipleNamesConflict",
                    msg,
                    now,
                )),
                established,
            ]
        }
        None => {
            let mut names = crd
                .pointer("/spec/names")
                .cloned()
                .unwrap_or_else(|| json!({}));
            if let Some(m) = names.as_object_mut() {
                m.retain(|_, v| !v.is_null());
            }
            status["acceptedNames"] = names;
            if !storage.is_empty() && !stored.contains(&storage) {
                stored.push(storage);
            }
            let mut cs = vec![
                keep_time(condition(
                    "NamesAccepted",
                    true,
                    "NoConflicts",
                    "no conflicts found",
                    now,
                )),
                keep_time(condition(
                    "Established",
                    true,
                    "InitialNamesAccepted",
                    "the initial names have been accepted",
                    now,
                )),
            ];
            if terminating {
                cs.push(keep_time(condition(
                    "Terminating",
                    true,
                    "InstanceDeletionInProgress",
                    "CustomResource deletion is in progress",
                    now,
                )));
            }
            cs
        }
    };
    status["conditions"] = json!(conditions);
    status["storedVersions"] = json!(stored);
    crd["status"] = status;
}

impl Inner {
    /// All stored CRDs.
    pub(crate) fn stored_crds(&self) -> Vec<Value> {
        let (kvs, _) = self.store.list(&storage_prefix(crd_info(), None));
        kvs.iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect()
    }

    /// Rebuilds the registry of served custom resources from the store.
    pub(crate) fn reload_crds(&self) {
        self.crds.load(&self.stored_crds());
    }

    /// The CRD strategy on create and update: defaults, validation, the
    /// cleanup finalizer and the computed status.
    pub(crate) fn prepare_crd(&self, crd: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
        default_crd(crd);
        let causes = validate_crd(crd, old);
        if !causes.is_empty() {
            let name = crd
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            return Err(ApiError::invalid(crd_info(), &name, causes));
        }
        let deleting = crd
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|t| !t.is_null());
        if old.is_none() && !deleting {
            let meta = crd
                .as_object_mut()
                .map(|m| m.entry("metadata").or_insert_with(|| json!({})));
            if let Some(meta) = meta {
                let fins = meta
                    .as_object_mut()
                    .map(|m| m.entry("finalizers").or_insert_with(|| json!([])));
                if let Some(Value::Array(f)) = fins {
                    if !f.iter().any(|x| x == CLEANUP_FINALIZER) {
                        f.push(json!(CLEANUP_FINALIZER));
                    }
                }
            }
        }
        let others = self.stored_crds();
        compute_status(crd, &others, &crate::rest::now_rfc3339());
        Ok(())
    }

    /// After a CRD write: refresh the registry, and if the CRD is being
    /// deleted, delete its objects and drop the cleanup finalizer.
    pub(crate) async fn after_crd_write(self: &Arc<Self>, name: &str) {
        self.reload_crds();
        self.retry_rejected_names(name).await;
        self.sync_crd_apiservices().await;
        if self.cleanup_crd(name).await {
            return;
        }
        // some objects wait for finalizers of their own: try again until they are gone
        let weak = Arc::downgrade(self);
        let n = name.to_string();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                // the server going away ends the wait
                let Some(me) = weak.upgrade() else { return };
                me.reload_crds();
                if me.cleanup_crd(&n).await {
                    return;
                }
            }
        });
    }

    /// As kube's CRD registration controller: a Local APIService
    /// `<version>.<group>` (label `kube-aggregator.kubernetes.io/automanaged:
    /// "true"`) for every served CRD group-version, removed with the last CRD
    /// that serves it.
    pub(crate) async fn sync_crd_apiservices(&self) {
        let Some(info) = resources::find(crate::aggregator::GROUP, "v1", "apiservices") else {
            return;
        };
        let mut want: Vec<(String, String)> = Vec::new();
        for v in self.crds.all() {
            let gv = (v.info.group.to_string(), v.info.version.to_string());
            if !v.terminating && !want.contains(&gv) {
                want.push(gv);
            }
        }
        for (g, ver) in &want {
            let name = format!("{ver}.{g}");
            if self
                .store
                .get(&crate::rest::storage_key(info, None, &name))
                .is_some()
            {
                continue;
            }
            let obj = json!({"metadata": {"name": name, "labels": {"kube-aggregator.kubernetes.io/automanaged": "true"}},
                             "spec": {"group": g, "version": ver, "groupPriorityMinimum": 1000, "versionPriority": 100}});
            if let Err(e) = self.create_object(info, None, obj, false).await {
                if e.reason != "AlreadyExists" {
                    tracing::warn!("registering APIService {name} for a CRD: {}", e.message);
                }
            }
        }
        for api in self.stored_apiservices() {
            let auto = api
                .pointer("/metadata/labels/kube-aggregator.kubernetes.io~1automanaged")
                .and_then(Value::as_str)
                == Some("true");
            let g = api
                .pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or("");
            let ver = api
                .pointer("/spec/version")
                .and_then(Value::as_str)
                .unwrap_or("");
            if auto && !want.iter().any(|(wg, wv)| wg == g && wv == ver) {
                let name = api
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let _ = self
                    .delete_object(info, None, name, &DeleteOptions::default())
                    .await;
            }
        }
        self.reload_apiservices();
    }

    /// As kube's naming controller: CRDs whose names were not accepted are
    /// checked again when another CRD changes (its names may be free now).
    async fn retry_rejected_names(&self, changed: &str) {
        let info = crd_info();
        let all = self.stored_crds();
        let mut any = false;
        for crd in &all {
            let name = crd
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            if name == changed || condition_true(crd, "NamesAccepted") {
                continue;
            }
            let others: Vec<Value> = self
                .stored_crds()
                .into_iter()
                .filter(|o| o.pointer("/metadata/name").and_then(Value::as_str) != Some(name))
                .collect();
            let mut next = crd.clone();
            compute_status(&mut next, &others, &crate::rest::now_rfc3339());
            if condition_true(&next, "NamesAccepted") {
                let status = next["status"].clone();
                let res = self
                    .update_with(info, None, name, UpdateMode::Raw, false, |old| {
                        let mut n = old.clone();
                        n["status"] = status.clone();
                        Ok(n)
                    })
                    .await;
                any |= res.is_ok();
            }
        }
        if any {
            self.reload_crds();
        }
    }

    /// Deletes the objects of a CRD being deleted, then its finalizer.
    /// Returns false when objects are left (their own finalizers).
    async fn cleanup_crd(&self, name: &str) -> bool {
        let info = crd_info();
        let Ok((crd, _)) = self.read(info, None, name) else {
            return true;
        };
        let deleting = crd
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|t| !t.is_null());
        let has_fin = crd
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|x| x == CLEANUP_FINALIZER));
        if !deleting || !has_fin {
            return true;
        }
        // mark Terminating, then delete every object (any version shares one key space)
        let _ = self
            .update_with(info, None, name, UpdateMode::Raw, false, |old| {
                let mut new = old.clone();
                compute_status(&mut new, &[], &crate::rest::now_rfc3339());
                Ok(new)
            })
            .await;
        if let Some(v) = versions_of(&crd).into_iter().next() {
            let opts = DeleteOptions {
                grace_period: Some(0),
                ..Default::default()
            };
            for _ in 0..5 {
                let (kvs, _) = self.store.list(&storage_prefix(v.info, None));
                if kvs.is_empty() {
                    break;
                }
                for kv in kvs {
                    let Ok(obj) = serde_json::from_slice::<Value>(&kv.value) else {
                        continue;
                    };
                    let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
                    let n = obj
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    // objects with finalizers of their own wait for them
                    let _ = self.delete_object(v.info, ns, n, &opts).await;
                }
                let (left, _) = self.store.list(&storage_prefix(v.info, None));
                if left.is_empty() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            let (left, _) = self.store.list(&storage_prefix(v.info, None));
            if !left.is_empty() {
                tracing::warn!(
                    "CRD {name}: {} objects still have finalizers; the CRD stays until they are gone",
                    left.len()
                );
                return false;
            }
        }
        let _ = self
            .update_with(info, None, name, UpdateMode::Raw, false, |old| {
                let mut new = old.clone();
                if let Some(Value::Array(f)) = new.pointer_mut("/metadata/finalizers") {
                    f.retain(|x| x != CLEANUP_FINALIZER);
                }
                Ok(new)
            })
            .await;
        self.reload_crds();
        true
    }

    /// Creates, updates and patches of a custom resource: schema defaults and validation.
    pub(crate) fn prepare_custom(
        &self,
        info: &'static ResourceInfo,
        obj: &mut Value,
        creating: bool,
    ) -> Result<(), ApiError> {
        let Some(v) = self.crds.get(info) else {
            return Ok(());
        };
        if creating && v.terminating {
            return Err(ApiError::new(
                405,
                "MethodNotAllowed",
                format!(
                    "create not allowed while custom resource definition {} is terminating",
                    v.crd_name
                ),
            ));
        }
        if let Some(schema) = &v.schema {
            crd_schema::apply_defaults(schema, obj);
            let causes = crd_schema::validate(schema, obj);
            if !causes.is_empty() {
                let name = obj
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                return Err(ApiError::invalid(info, &name, causes));
            }
        }
        Ok(())
    }

    /// The unknown fields of a custom object (removed from it).
    pub(crate) fn prune_custom(&self, info: &ResourceInfo, obj: &mut Value) -> Option<Vec<String>> {
        let v = self.crds.get(info)?;
        Some(match &v.schema {
            Some(s) => crd_schema::prune(s, obj),
            None => Vec::new(),
        })
    }
}

/// The OpenAPI v3 document of one CRD group-version, for `kubectl explain`.
pub fn openapi_doc(versions: &[Arc<CrdVersion>]) -> Value {
    let mut schemas = serde_json::Map::new();
    let mut roots = Vec::new();
    for v in versions {
        let info = v.info;
        let rev_group: Vec<&str> = info.group.split('.').rev().collect();
        let def_name = format!("{}.{}.{}", rev_group.join("."), info.version, info.kind);
        let mut schema = v
            .schema
            .clone()
            .unwrap_or_else(|| json!({"type": "object"}));
        if let Some(props) = schema
            .as_object_mut()
            .map(|m| m.entry("properties").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut)
        {
            props.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values."}));
            props.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. In CamelCase."}));
            props.insert("metadata".into(), json!({"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}], "description": "Standard object's metadata."}));
        }
        schema["x-kubernetes-group-version-kind"] =
            json!([{"group": info.group, "version": info.version, "kind": info.kind}]);
        schemas.insert(def_name.clone(), schema);
        let list_name = format!("{def_name}List");
        schemas.insert(list_name.clone(), json!({
            "type": "object", "description": format!("{}List is a list of {}", info.kind, info.kind),
            "required": ["items"],
            "properties": {
                "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{def_name}")}},
                "metadata": {"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"}]}
            },
            "x-kubernetes-group-version-kind": [{"group": info.group, "version": info.version, "kind": format!("{}List", info.kind)}]
        }));
        roots.push((info, def_name, list_name));
    }
    // ObjectMeta and everything it refers to, from the built-in definitions
    let defs = minik_apimachinery::schema::definitions();
    let mut todo = vec![
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta".to_string(),
        "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta".to_string(),
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status".to_string(),
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions".to_string(),
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch".to_string(),
    ];
    while let Some(n) = todo.pop() {
        if schemas.contains_key(&n) {
            continue;
        }
        let Some(d) = defs.get(&n) else { continue };
        collect_refs(d, &mut todo);
        schemas.insert(n, d.clone());
    }
    let mut paths = serde_json::Map::new();
    for (info, def, list) in &roots {
        let gvk = json!({"group": info.group, "version": info.version, "kind": info.kind});
        let base = if info.namespaced {
            format!(
                "/apis/{}/{}/namespaces/{{namespace}}/{}",
                info.group, info.version, info.resource
            )
        } else {
            format!("/apis/{}/{}/{}", info.group, info.version, info.resource)
        };
        let r = |n: &str| json!({"$ref": format!("#/components/schemas/{n}")});
        let body = |n: &str, types: &[&str]| {
            let mut content = serde_json::Map::new();
            for t in types {
                content.insert(t.to_string(), json!({"schema": r(n)}));
            }
            json!({"content": content, "required": true})
        };
        let ok = |n: &str| json!({"200": {"description": "OK", "content": {"application/json": {"schema": r(n)}}}});
        let field_validation = json!({"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}});
        let dry_run = json!({"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}});
        paths.insert(base.clone(), json!({
            "get": {"operationId": format!("list{}", info.kind), "responses": ok(list), "x-kubernetes-action": "list", "x-kubernetes-group-version-kind": gvk},
            "post": {"operationId": format!("create{}", info.kind), "requestBody": body(def, &["application/json", "application/yaml"]),
                     "parameters": [dry_run, field_validation], "responses": ok(def), "x-kubernetes-action": "post", "x-kubernetes-group-version-kind": gvk},
        }));
        paths.insert(format!("{base}/{{name}}"), json!({
            "get": {"operationId": format!("read{}", info.kind), "responses": ok(def), "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk},
            "put": {"operationId": format!("replace{}", info.kind), "requestBody": body(def, &["application/json", "application/yaml"]),
                    "parameters": [dry_run, field_validation], "responses": ok(def), "x-kubernetes-action": "put", "x-kubernetes-group-version-kind": gvk},
            "patch": {"operationId": format!("patch{}", info.kind),
                      "requestBody": body("io.k8s.apimachinery.pkg.apis.meta.v1.Patch", &["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"]),
                      "parameters": [dry_run, field_validation], "responses": ok(def), "x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": gvk},
            "delete": {"operationId": format!("delete{}", info.kind), "responses": ok("io.k8s.apimachinery.pkg.apis.meta.v1.Status"), "x-kubernetes-action": "delete", "x-kubernetes-group-version-kind": gvk},
        }));
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                if let Some(n) = minik_apimachinery::schema::ref_name(r) {
                    out.push(n.to_string());
                }
            }
            for x in m.values() {
                collect_refs(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn crontab_crd() -> Value {
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {"group": "stable.example.com", "scope": "Namespaced",
            "names": {"plural": "crontabs", "kind": "CronTab", "shortNames": ["ct"]},
            "versions": [
                {"name": "v1", "served": true, "storage": true,
                 "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}}},
                 "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                 "additionalPrinterColumns": [{"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}]},
                {"name": "v1beta1", "served": true, "storage": false,
                 "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                {"name": "v0", "served": false, "storage": false,
                 "schema": {"openAPIV3Schema": {"type": "object"}}}
            ]}})
    }

    #[test]
    fn accepted_crds_serve_their_versions() {
        let mut crd = crontab_crd();
        default_crd(&mut crd);
        assert!(
            validate_crd(&crd, None).is_empty(),
            "{:?}",
            validate_crd(&crd, None)
        );
        assert!(versions_of(&crd).is_empty(), "not accepted yet");
        compute_status(&mut crd, &[], "2026-01-01T00:00:00Z");
        assert_eq!(crd["status"]["acceptedNames"]["singular"], "crontab");
        assert_eq!(crd["status"]["acceptedNames"]["listKind"], "CronTabList");
        assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
        let vs = versions_of(&crd);
        assert_eq!(vs.len(), 2);
        assert_eq!(vs[0].info.resource, "crontabs");
        assert_eq!(vs[0].info.subresources, &["status", "scale"]);
        assert_eq!(vs[0].info.short_names, &["ct"]);
        assert_eq!(vs[1].info.version, "v1beta1");
        assert!(vs[1].info.subresources.is_empty());
        assert_eq!(vs[1].storage_version, "v1");
        let reg = Registry::default();
        reg.load(&[crd]);
        let info = reg.find("stable.example.com", "v1", "crontabs").unwrap();
        assert!(reg.get(info).is_some());
        assert!(reg.find("stable.example.com", "v0", "crontabs").is_none());
        assert!(reg
            .get(resources::find("", "v1", "pods").unwrap())
            .is_none());
    }

    #[test]
    fn name_conflicts_are_not_accepted() {
        let mut a = crontab_crd();
        default_crd(&mut a);
        compute_status(&mut a, &[], "t");
        let mut b = crontab_crd();
        b["metadata"]["name"] = json!("crontabs2.stable.example.com");
        b["spec"]["names"] =
            json!({"plural": "crontabs2", "kind": "CronTab2", "shortNames": ["ct"]});
        default_crd(&mut b);
        compute_status(&mut b, &[a], "t");
        let cond = &b["status"]["conditions"][0];
        assert_eq!(
            (cond["type"].as_str(), cond["status"].as_str()),
            (Some("NamesAccepted"), Some("False"))
        );
        assert!(
            cond["message"].as_str().unwrap().contains("\"ct\""),
            "{cond}"
        );
        assert!(versions_of(&b).is_empty());
        let mut builtin = crontab_crd();
        builtin["spec"]["group"] = json!("apps");
        compute_status(&mut builtin, &[], "t");
        // "apps" has no dot, so validation refuses it anyway; the name check still sees deployments
        builtin["spec"]["names"]["plural"] = json!("deployments");
        compute_status(&mut builtin, &[], "t");
        assert_eq!(builtin["status"]["conditions"][0]["status"], "False");
    }

    #[test]
    fn a_conflicting_rename_keeps_the_accepted_names() {
        let mut a = crontab_crd();
        default_crd(&mut a);
        compute_status(&mut a, &[], "t");
        let mut b = crontab_crd();
        b["metadata"]["name"] = json!("widgets.stable.example.com");
        b["spec"]["names"] = json!({"plural": "widgets", "kind": "Widget"});
        default_crd(&mut b);
        compute_status(&mut b, &[a.clone()], "t");
        assert_eq!(versions_of(&b)[0].info.resource, "widgets");
        // rename the short name into a conflict with a's
        b["spec"]["names"]["shortNames"] = json!(["ct"]);
        compute_status(&mut b, &[a], "t2");
        assert_eq!(b["status"]["conditions"][0]["status"], "False");
        assert_eq!(b["status"]["conditions"][1]["status"], "True");
        let vs = versions_of(&b);
        assert_eq!(vs[0].info.resource, "widgets");
        assert!(
            vs[0].info.short_names.is_empty(),
            "the conflicting name is not served"
        );
    }

    #[test]
    fn crd_validation_messages() {
        let mut bad = crontab_crd();
        bad["metadata"]["name"] = json!("wrong");
        bad["spec"]["versions"][1]["storage"] = json!(true);
        bad["spec"]["versions"][0]["additionalPrinterColumns"][0]["type"] = json!("list");
        let msgs: Vec<String> = validate_crd(&bad, None).iter().map(Cause::render).collect();
        assert!(msgs.iter().any(|m| m.starts_with("metadata.name: Invalid value: \"wrong\": must be spec.names.plural+\".\"+spec.group")), "{msgs:?}");
        assert!(
            msgs.iter()
                .any(|m| m.contains("must have exactly one version marked as storage version")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter().any(|m| m.starts_with(
                "spec.versions[0].additionalPrinterColumns[0].type: Unsupported value"
            )),
            "{msgs:?}"
        );
        let mut no_schema = crontab_crd();
        no_schema["spec"]["versions"][0]
            .as_object_mut()
            .unwrap()
            .remove("schema");
        let msgs: Vec<String> = validate_crd(&no_schema, None)
            .iter()
            .map(Cause::render)
            .collect();
        assert_eq!(
            msgs,
            vec!["spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"]
        );
    }

    #[tokio::test]
    async fn objects_are_stored_in_the_storage_version_and_removed_with_the_crd() {
        let dir = tempfile::tempdir().unwrap();
        let store = minik_store::Store::open(&dir.path().join("store")).unwrap();
        let server = crate::ApiServer::new(store.clone(), crate::ApiServerOptions::default())
            .await
            .unwrap();
        let inner = server.inner.clone();
        inner
            .create_object(crd_info(), None, crontab_crd(), false)
            .await
            .unwrap();
        inner.after_crd_write("crontabs.stable.example.com").await;
        let beta = inner
            .crds
            .find("stable.example.com", "v1beta1", "crontabs")
            .unwrap();
        let v1 = inner
            .crds
            .find("stable.example.com", "v1", "crontabs")
            .unwrap();
        let obj = json!({"apiVersion": "stable.example.com/v1beta1", "kind": "CronTab",
            "metadata": {"name": "a"}, "spec": {"anything": true}});
        let created = inner
            .create_object(beta, Some("default"), obj, false)
            .await
            .unwrap();
        assert_eq!(created["apiVersion"], "stable.example.com/v1beta1");
        let raw = store
            .get("/registry/stable.example.com/crontabs/default/a")
            .unwrap();
        let stored: Value = serde_json::from_slice(&raw.value).unwrap();
        assert_eq!(stored["apiVersion"], "stable.example.com/v1");
        let (read, _) = inner.read(v1, Some("default"), "a").unwrap();
        assert_eq!(read["apiVersion"], "stable.example.com/v1");
        assert_eq!(read["metadata"]["generation"], 1);
        // delete the CRD: its objects go, then the CRD
        inner
            .delete_object(
                crd_info(),
                None,
                "crontabs.stable.example.com",
                &DeleteOptions::default(),
            )
            .await
            .unwrap();
        inner.after_crd_write("crontabs.stable.example.com").await;
        assert!(store
            .get("/registry/stable.example.com/crontabs/default/a")
            .is_none());
        assert!(inner
            .read(crd_info(), None, "crontabs.stable.example.com")
            .is_err());
        assert!(inner.crds.all().is_empty());
    }

    #[test]
    fn openapi_document_names_the_kind() {
        let mut crd = crontab_crd();
        default_crd(&mut crd);
        compute_status(&mut crd, &[], "t");
        let vs: Vec<Arc<CrdVersion>> = versions_of(&crd)
            .into_iter()
            .take(1)
            .map(Arc::new)
            .collect();
        let doc = openapi_doc(&vs);
        let def = &doc["components"]["schemas"]["com.example.stable.v1.CronTab"];
        assert_eq!(def["x-kubernetes-group-version-kind"][0]["kind"], "CronTab");
        assert!(def["properties"]["spec"]["properties"]["replicas"].is_object());
        assert!(
            doc["components"]["schemas"]["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]
                .is_object()
        );
        assert!(
            doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]
                ["patch"]
                .is_object()
        );
        assert_eq!(json_pointer(".spec.replicas"), "/spec/replicas");
    }
}
