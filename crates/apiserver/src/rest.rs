//! The one generic REST implementation over the store: get, list, create,
//! update, patch, delete, deletecollection for every resource in
//! `builtin_resources()`, plus the status / scale / binding / finalize /
//! eviction subresources. Per-resource behaviour comes from `strategy`
//! (and `alloc` for Services); there is no handler per kind.

use crate::error::{qualified_resource, ApiError};
use crate::request::{
    body_type, decode_json_or_yaml, decode_object, BodyType, Output, Query, ResourcePath,
};
use crate::selector::{FieldSelector, LabelSelector};
use crate::{strategy, table, Inner};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{SecondsFormat, Utc};
use minik_apimachinery::ResourceInfo;
use minik_store::{KeyValue, StoreError};
use serde_json::{json, Map, Value};

/// How an update treats the incoming object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMode {
    /// PUT/PATCH of the main resource: strategy prepare + validate.
    Main,
    /// The `status` subresource: only status changes.
    Status,
    /// `namespaces/<n>/finalize`: only spec.finalizers changes.
    Finalize,
    /// Server-internal edits (binding, delete bookkeeping): stored as given.
    Raw,
    /// Server-side apply: as `Main`, but the new object's managedFields
    /// (the applier's updated entry) are kept.
    Apply,
}

/// `/registry/<group>/<resource>/[<ns>/]<name>`.
pub fn storage_key(info: &'static ResourceInfo, ns: Option<&str>, name: &str) -> String {
    let info = crate::convert::storage_info(info);
    match (info.namespaced, ns) {
        (true, Some(ns)) => format!(
            "/registry/{}/{}/{}/{}",
            info.storage_group(),
            info.resource,
            ns,
            name
        ),
        _ => format!(
            "/registry/{}/{}/{}",
            info.storage_group(),
            info.resource,
            name
        ),
    }
}

/// The prefix of a collection (trailing `/`).
pub fn storage_prefix(info: &'static ResourceInfo, ns: Option<&str>) -> String {
    let info = crate::convert::storage_info(info);
    match (info.namespaced, ns) {
        (true, Some(ns)) => format!(
            "/registry/{}/{}/{}/",
            info.storage_group(),
            info.resource,
            ns
        ),
        _ => format!("/registry/{}/{}/", info.storage_group(), info.resource),
    }
}

/// Decodes a stored value and stamps `metadata.resourceVersion`.
pub fn from_kv(info: &ResourceInfo, kv: &KeyValue) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(&kv.value).map_err(|e| {
        ApiError::internal(format!("stored object {} is not valid JSON: {e}", kv.key))
    })?;
    let mut v = crate::convert::from_storage(info, v);
    set_rv(&mut v, kv.mod_revision);
    // a custom resource is served in every version from one storage
    // (conversion strategy None): only apiVersion changes
    if !minik_apimachinery::resources::is_builtin(info) {
        if let Some(m) = v.as_object_mut() {
            m.insert("apiVersion".into(), json!(info.api_version()));
        }
    }
    if let Some(m) = v.as_object_mut() {
        m.entry("apiVersion")
            .or_insert_with(|| json!(info.api_version()));
        m.entry("kind").or_insert_with(|| json!(info.kind));
    }
    Ok(v)
}

pub fn set_rv(v: &mut Value, rev: i64) {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), json!(rev.to_string()));
    }
}

fn to_bytes(info: &ResourceInfo, v: &Value) -> Vec<u8> {
    let mut c = crate::convert::to_storage(info, v.clone());
    if let Some(m) = c.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("selfLink");
    }
    serde_json::to_vec(&c).unwrap_or_default()
}

fn without_rv(v: &Value) -> Value {
    let mut c = v.clone();
    if let Some(m) = c.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    c
}

pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn meta_str<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn meta_mut(v: &mut Value) -> &mut Map<String, Value> {
    if !v.get("metadata").is_some_and(Value::is_object) {
        if let Some(m) = v.as_object_mut() {
            m.insert("metadata".into(), json!({}));
        }
    }
    match v.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

fn finalizers(v: &Value) -> Vec<String> {
    v.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// A JSON reply.
pub fn json_response(code: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut r = (code, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn with_warnings(mut r: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {}", serde_json::to_string(w).unwrap_or_default());
        if let Ok(h) = HeaderValue::from_str(&text) {
            r.headers_mut().append("Warning", h);
        }
    }
    r
}

/// Converts one object to the form the client asked for.
pub fn render_object(info: &ResourceInfo, obj: &Value, output: Output) -> Value {
    render_object_with(info, None, obj, output)
}

/// `render_object` for a resource that may be a CRD's (its printer columns).
pub fn render_object_with(
    info: &ResourceInfo,
    custom: Option<&crate::crd::CrdVersion>,
    obj: &Value,
    output: Output,
) -> Value {
    match output {
        Output::Json => obj.clone(),
        Output::Table(include) if custom.is_some() => {
            let rv = meta_str(obj, "resourceVersion").to_string();
            let cols = custom.map(|c| c.table_columns()).unwrap_or_default();
            table::custom_table(
                &cols,
                std::slice::from_ref(obj),
                json!({"resourceVersion": rv}),
                include,
                Utc::now(),
            )
        }
        Output::Table(include) => {
            let rv = meta_str(obj, "resourceVersion").to_string();
            table::table(
                info,
                std::slice::from_ref(obj),
                json!({"resourceVersion": rv}),
                include,
                Utc::now(),
            )
        }
        Output::PartialMetadata => table::partial_object(obj),
    }
}

/// Which `fieldValidation` the request asked for.
fn unknown_field_check(
    inner: &Inner,
    info: &ResourceInfo,
    obj: &mut Value,
    q: &Query,
) -> Result<Vec<String>, ApiError> {
    let mode = q.get("fieldValidation").unwrap_or("Warn");
    let strict = mode.eq_ignore_ascii_case("Strict");
    let warn = mode.eq_ignore_ascii_case("Warn");
    if !strict && !warn && !mode.eq_ignore_ascii_case("Ignore") {
        return Err(ApiError::bad_request(format!(
            "fieldValidation parameter {mode:?} is not valid: use Strict, Warn or Ignore"
        )));
    }
    // a custom resource's unknown fields are pruned by its structural schema
    let mut pruned_copy = obj.clone();
    let unknown = match inner.prune_custom(info, &mut pruned_copy) {
        Some(paths) => paths,
        None => minik_apimachinery::validation::unknown_fields(&info.api_version(), info.kind, obj),
    };
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    let msgs: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field {f:?}"))
        .collect();
    if strict {
        return Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            msgs.join(", ")
        )));
    }
    // like kube's decoder, Warn and Ignore drop what the schema does not know
    for path in &unknown {
        prune_path(obj, path);
    }
    Ok(if warn { msgs } else { Vec::new() })
}

/// The keys a JSON document repeats inside one object, as paths
/// (`spec.replicas`); serde_json keeps only the last value of each.
pub fn duplicate_fields(body: &[u8], yaml: bool) -> Vec<String> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    struct Dups<'a> {
        path: String,
        out: &'a mut Vec<String>,
    }
    fn join(path: &str, key: &str) -> String {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    }
    impl<'de> DeserializeSeed<'de> for Dups<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Dups<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let out = self.out;
            let mut seen = std::collections::HashSet::new();
            while let Some(k) = map.next_key::<String>()? {
                let path = join(&self.path, &k);
                if !seen.insert(k) {
                    out.push(path.clone());
                }
                map.next_value_seed(Dups {
                    path,
                    out: &mut *out,
                })?;
            }
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let out = self.out;
            let mut i = 0;
            while seq
                .next_element_seed(Dups {
                    path: format!("{}[{i}]", self.path),
                    out: &mut *out,
                })?
                .is_some()
            {
                i += 1;
            }
            Ok(())
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    }
    let mut out = Vec::new();
    let seed = Dups {
        path: String::new(),
        out: &mut out,
    };
    if yaml {
        if let Some(doc) = serde_yaml::Deserializer::from_slice(body).next() {
            let _ = seed.deserialize(doc);
        }
    } else {
        let mut de = serde_json::Deserializer::from_slice(body);
        let _ = seed.deserialize(&mut de);
    }
    out
}

/// `fieldValidation` for fields a JSON body repeats: Strict refuses them,
/// Warn warns (the last value is kept), Ignore says nothing.
fn duplicate_field_check(body: &[u8], ty: BodyType, q: &Query) -> Result<Vec<String>, ApiError> {
    let yaml = match ty {
        BodyType::Json => false,
        BodyType::Yaml | BodyType::Apply => true,
        _ => return Ok(Vec::new()),
    };
    let dups = duplicate_fields(body, yaml);
    if dups.is_empty() {
        return Ok(Vec::new());
    }
    let msgs: Vec<String> = dups
        .iter()
        .map(|f| {
            if yaml {
                format!("yaml: duplicate field {f:?}")
            } else {
                format!("json: duplicate field {f:?}")
            }
        })
        .collect();
    match q.get("fieldValidation").unwrap_or("Warn") {
        m if m.eq_ignore_ascii_case("Strict") => Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            msgs.join(", ")
        ))),
        m if m.eq_ignore_ascii_case("Warn") => Ok(msgs),
        _ => Ok(Vec::new()),
    }
}

/// Removes the field at a path such as `spec.template.spec.containers[0].foo`.
pub fn prune_path(obj: &mut Value, path: &str) {
    let mut steps: Vec<Result<String, usize>> = Vec::new();
    for seg in path.split('.') {
        let (name, mut rest) = match seg.find('[') {
            Some(i) => (&seg[..i], &seg[i..]),
            None => (seg, ""),
        };
        if !name.is_empty() {
            steps.push(Ok(name.to_string()));
        }
        while let Some(close) = rest.find(']') {
            match rest[1..close].parse::<usize>() {
                Ok(n) => steps.push(Err(n)),
                Err(_) => return,
            }
            rest = &rest[close + 1..];
        }
    }
    let Some(Ok(last)) = steps.pop() else { return };
    let mut cur = obj;
    for step in steps {
        let next = match step {
            Ok(k) => cur.get_mut(k.as_str()),
            Err(i) => cur.get_mut(i),
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(&last);
    }
}

/// Fills or checks `apiVersion` / `kind` of a request body against the endpoint.
fn check_type(info: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    let want_av = info.api_version();
    let m = obj
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the request body must be a JSON object"))?;
    match m.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            m.insert("kind".into(), json!(info.kind));
        }
        Some(k) if k != info.kind => {
            return Err(ApiError::bad_request(format!(
                "the object provided is a {k}, but this endpoint serves {} ({want_av}); send it to the {k} endpoint",
                info.kind
            )))
        }
        _ => {}
    }
    match m.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            m.insert("apiVersion".into(), json!(want_av));
        }
        Some(av) if av != want_av => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want_av})"
            )))
        }
        _ => {}
    }
    if m.get("metadata")
        .is_some_and(|v| !v.is_object() && !v.is_null())
    {
        return Err(ApiError::bad_request("metadata must be a JSON object"));
    }
    Ok(())
}

fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// `DeleteOptions` from the body and query of a DELETE.
#[derive(Debug, Default)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`; pods default to their terminationGracePeriodSeconds.
    pub grace_period: Option<i64>,
    /// `Background`, `Foreground` or `Orphan`.
    pub propagation: Option<String>,
    /// `preconditions.uid`
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`
    pub resource_version: Option<String>,
    pub dry_run: bool,
}

fn delete_options(q: &Query, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let mut o = DeleteOptions::default();
    if !body.iter().all(u8::is_ascii_whitespace) {
        let v = decode_json_or_yaml(body, false)?;
        o.grace_period = v.get("gracePeriodSeconds").and_then(Value::as_i64);
        o.propagation = v
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .map(String::from);
        if v.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
            o.propagation = Some("Orphan".into());
        }
        o.uid = v
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from);
        o.resource_version = v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from);
        o.dry_run = v
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|d| d == "All"));
    }
    if let Some(g) = q.int("gracePeriodSeconds")? {
        o.grace_period = Some(g);
    }
    if let Some(p) = q.get("propagationPolicy") {
        o.propagation = Some(p.to_string());
    }
    if q.get("orphanDependents") == Some("true") {
        o.propagation = Some("Orphan".into());
    }
    if let Some(p) = &o.propagation {
        if !["Background", "Foreground", "Orphan"].contains(&p.as_str()) {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy {p:?} is not valid: use Background, Foreground or Orphan"
            )));
        }
    }
    o.dry_run |= q.dry_run()?;
    Ok(o)
}

/// A decoded `continue` token.
fn encode_continue(rev: i64, last_key: &str) -> String {
    let raw = json!({"v": "meta.k8s.io/v1", "rv": rev, "start": last_key}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// Decodes a `continue` token into (revision of the first page, last key).
fn decode_continue(token: &str, prefix: &str) -> Result<(i64, String), ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "continue key {token:?} is not valid: start the list again without `continue`"
        ))
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    let rev = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    if !start.starts_with(prefix) {
        return Err(bad());
    }
    Ok((rev, start.to_string()))
}

/// kube answers 410 Expired when the revision a `continue` token was
/// issued at has been compacted away; clients then start a fresh list.
fn check_continue_not_compacted(rev: i64, compacted: i64) -> Result<(), ApiError> {
    if rev < compacted {
        return Err(ApiError::gone(format!(
            "The provided continue parameter is too old to display a consistent list result (revision {rev} is compacted up to {compacted}). You can start a new list without the continue parameter."
        )));
    }
    Ok(())
}

/// Parsed label + field selectors of a list/watch request.
#[derive(Debug, Clone, Default)]
pub struct Selectors {
    pub label: LabelSelector,
    pub field: FieldSelector,
}

impl Selectors {
    pub fn from_query(
        info: &ResourceInfo,
        q: &Query,
        name: Option<&str>,
    ) -> Result<Selectors, ApiError> {
        let label = LabelSelector::parse(q.get("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("invalid labelSelector: {e}")))?;
        let mut field = FieldSelector::parse(
            q.get("fieldSelector").unwrap_or(""),
            info.group,
            info.resource,
        )
        .map_err(|e| ApiError::bad_request(format!("invalid fieldSelector: {e}")))?;
        if let Some(n) = name {
            field.requirements.push(crate::selector::FieldRequirement {
                field: "metadata.name".into(),
                value: n.into(),
                negate: false,
            });
        }
        Ok(Selectors { label, field })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.label.matches_object(obj) && self.field.matches(obj)
    }
}

impl Inner {
    /// The bytes stored for an object: a custom resource is stored in its
    /// CRD's storage version (conversion None: only apiVersion changes).
    fn stored_bytes(&self, info: &ResourceInfo, v: &Value) -> Vec<u8> {
        if let Some(c) = self.crds.get(info) {
            if !c.storage_version.is_empty() && c.storage_version != info.version {
                let mut v = v.clone();
                v["apiVersion"] = json!(format!("{}/{}", info.group, c.storage_version));
                return to_bytes(info, &v);
            }
        }
        to_bytes(info, v)
    }

    fn not_found(&self, info: &ResourceInfo, name: &str) -> ApiError {
        ApiError::not_found(info, name)
    }

    /// Reads one object.
    pub fn read(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
    ) -> Result<(Value, KeyValue), ApiError> {
        let kv = self
            .store
            .get(&storage_key(info, ns, name))
            .ok_or_else(|| self.not_found(info, name))?;
        let mut obj = from_kv(info, &kv)?;
        if let Some(c) = self.crds.get(info) {
            c.default_on_read(&mut obj);
        }
        Ok((obj, kv))
    }

    pub async fn get(&self, p: &ResourcePath, output: Output) -> Result<Response, ApiError> {
        let name = p.name.as_deref().unwrap_or_default();
        let (obj, _) = self.read(p.info, p.namespace.as_deref(), name)?;
        let custom = self.crds.get(p.info);
        Ok(json_response(
            StatusCode::OK,
            &render_object_with(p.info, custom.as_deref(), &obj, output),
        ))
    }

    /// Lists matching objects; returns (items, revision, continue token).
    pub fn list_objects(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        sel: &Selectors,
        limit: usize,
        cont: Option<&str>,
    ) -> Result<(Vec<Value>, i64, Option<String>), ApiError> {
        let prefix = storage_prefix(info, ns);
        // a pinned name in one namespace is one key: skip the scan
        if let (Some(name), true) = (sel.field.pinned_name(), ns.is_some() || !info.namespaced) {
            if cont.is_none() {
                let rev = self.store.revision();
                let items = match self.store.get(&storage_key(info, ns, name)) {
                    Some(kv) => {
                        let mut o = from_kv(info, &kv)?;
                        if let Some(c) = self.crds.get(info) {
                            c.default_on_read(&mut o);
                        }
                        if sel.matches(&o) {
                            vec![o]
                        } else {
                            vec![]
                        }
                    }
                    None => vec![],
                };
                return Ok((items, rev, None));
            }
        }
        let start = match cont {
            Some(c) => {
                let (rev, key) = decode_continue(c, &prefix)?;
                check_continue_not_compacted(rev, self.store.compacted_revision())?;
                Some(key)
            }
            None => None,
        };
        let mut items = Vec::new();
        let custom = self.crds.get(info);
        let mut start_after = start;
        let mut rev;
        let mut next = None;
        // As kube's etcd3 store: scan in batches of `limit` keys, keep at
        // most `limit` matching objects, and continue after the last key
        // examined (so a selector that filters never overfills a page).
        'scan: loop {
            let (kvs, r, more) = self.store.list_page(&prefix, start_after.as_deref(), limit);
            rev = r;
            for kv in &kvs {
                if limit > 0 && items.len() >= limit {
                    next = start_after.as_deref().map(|k| encode_continue(rev, k));
                    break 'scan;
                }
                // a cluster-wide prefix of a namespaced resource also holds nested keys: fine.
                let mut o = from_kv(info, kv)?;
                if let Some(c) = &custom {
                    c.default_on_read(&mut o);
                }
                if sel.matches(&o) {
                    items.push(o);
                }
                start_after = Some(kv.key.clone());
            }
            if !more || limit == 0 || kvs.is_empty() {
                break;
            }
            if items.len() >= limit {
                next = start_after.as_deref().map(|k| encode_continue(rev, k));
                break;
            }
        }
        Ok((items, rev, next))
    }

    pub async fn list(
        &self,
        p: &ResourcePath,
        q: &Query,
        output: Output,
    ) -> Result<Response, ApiError> {
        let sel = Selectors::from_query(p.info, q, None)?;
        let limit = q.int("limit")?.unwrap_or(0).max(0) as usize;
        let (items, rev, cont) = self.list_objects(
            p.info,
            p.namespace.as_deref(),
            &sel,
            limit,
            q.get("continue").filter(|c| !c.is_empty()),
        )?;
        let mut meta = json!({"resourceVersion": rev.to_string()});
        if let Some(c) = cont {
            meta["continue"] = json!(c);
        }
        let body = match output {
            Output::Table(include) => match self.crds.get(p.info) {
                Some(c) => {
                    table::custom_table(&c.table_columns(), &items, meta, include, Utc::now())
                }
                None => table::table(p.info, &items, meta, include, Utc::now()),
            },
            Output::PartialMetadata => json!({
                "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
                "items": items.iter().map(table::partial_object).collect::<Vec<_>>(),
            }),
            Output::Json => json!({
                "kind": format!("{}List", p.info.kind), "apiVersion": p.info.api_version(), "metadata": meta, "items": items,
            }),
        };
        Ok(json_response(StatusCode::OK, &body))
    }

    /// Checks that a namespace exists and accepts new objects.
    fn check_namespace(&self, ns: &str) -> Result<(), ApiError> {
        let info = minik_apimachinery::resources::find("", "v1", "namespaces")
            .ok_or_else(|| ApiError::internal("namespaces resource missing"))?;
        let (obj, _) = self.read(info, None, ns)?;
        if obj
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null())
        {
            return Err(ApiError::forbidden(format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ))
            .with_details(json!({"name": ns, "kind": "namespaces", "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]})));
        }
        Ok(())
    }

    /// The whole create path: metadata, namespace, defaults, validation,
    /// allocation, store. Returns the stored object.
    pub async fn create_object(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        obj: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        self.create_object_managed(info, ns, obj, dry_run, None)
            .await
    }

    /// `create_object` that records `managed_fields` (server-side apply).
    async fn create_object_managed(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        mut obj: Value,
        dry_run: bool,
        managed_fields: Option<Value>,
    ) -> Result<Value, ApiError> {
        check_type(info, &mut obj)?;
        let meta = meta_mut(&mut obj);
        if info.namespaced {
            let url_ns = ns.ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{} are namespaced: create them under /namespaces/<namespace>/",
                    info.resource
                ))
            })?;
            match meta.get("namespace").and_then(Value::as_str) {
                Some(b) if !b.is_empty() && b != url_ns => {
                    return Err(ApiError::bad_request(format!(
                        "the namespace of the provided object ({b}) does not match the namespace sent on the request ({url_ns})"
                    )))
                }
                _ => {}
            }
            meta.insert("namespace".into(), json!(url_ns));
        } else {
            meta.remove("namespace");
        }
        let mut name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            if let Some(g) = meta
                .get("generateName")
                .and_then(Value::as_str)
                .filter(|g| !g.is_empty())
            {
                name = format!("{g}{}", random_suffix());
                meta.insert("name".into(), json!(name));
            }
        }
        if name.is_empty() {
            return Err(ApiError::invalid(
                info,
                "",
                vec![crate::error::Cause::required(
                    "metadata.name",
                    "name or generateName is required",
                )],
            ));
        }
        let name_errs = crate::names::validate_name(&name, strategy::name_rule(info));
        if !name_errs.is_empty() {
            let causes = name_errs
                .iter()
                .map(|e| crate::error::Cause::invalid("metadata.name", &json!(name), e))
                .collect();
            return Err(ApiError::invalid(info, &name, causes));
        }
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        for f in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(f);
        }
        let track = managed_fields.is_none();
        if let Some(mf) = managed_fields {
            meta.insert("managedFields".into(), mf);
        }
        if let Some(ns) = ns.filter(|_| info.namespaced) {
            self.check_namespace(ns)?;
        }
        strategy::apply_defaults(info, &mut obj);
        strategy::prepare_for_create(info, &mut obj);
        if info.group.is_empty() && info.resource == "pods" {
            self.admit_service_account(&mut obj);
        }
        if crate::crd::is_crd_resource(info) {
            self.prepare_crd(&mut obj, None)?;
        } else {
            self.prepare_custom(info, &mut obj, true)?;
        }
        let causes = strategy::validate(info, &obj, None);
        if !causes.is_empty() {
            return Err(ApiError::invalid(info, &name, causes));
        }
        self.admit_create(info, &mut obj, dry_run).await?;
        if track {
            crate::ssa::track_update(None, &mut obj);
        }
        let key = storage_key(info, ns, &name);
        let is_service = info.group.is_empty() && info.resource == "services";
        let _guard = if is_service {
            Some(self.svc_lock.lock().await)
        } else {
            None
        };
        if is_service {
            self.allocate_service(info, &mut obj, None)?;
        }
        if dry_run {
            if self.store.get(&key).is_some() {
                return Err(ApiError::already_exists(info, &name));
            }
            return Ok(obj);
        }
        match self.store.create(&key, self.stored_bytes(info, &obj)).await {
            Ok(kv) => {
                if info.group.is_empty() && info.resource == "namespaces" {
                    self.ca_notify.notify_one();
                }
                set_rv(&mut obj, kv.mod_revision);
                Ok(obj)
            }
            Err(StoreError::AlreadyExists { .. }) => Err(ApiError::already_exists(info, &name)),
            Err(e) => Err(e.into()),
        }
    }

    /// kube's ServiceAccount admission: mount the service account's API
    /// credentials (token, cluster CA, namespace) into every container,
    /// unless `automountServiceAccountToken` (pod, else service account)
    /// says no, and give a pod without `imagePullSecrets` those of its
    /// service account. A missing service account is not an error here
    /// (kube refuses the pod until the ServiceAccount controller made it):
    /// the kubelet's token request simply fails until it exists.
    fn admit_service_account(&self, pod: &mut Value) {
        if pod
            .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
            .is_some()
        {
            return;
        }
        let ns = meta_str(pod, "namespace").to_string();
        let sa_name = pod
            .pointer("/spec/serviceAccountName")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        let sa = minik_apimachinery::resources::find("", "v1", "serviceaccounts")
            .and_then(|info| self.store.get(&storage_key(info, Some(&ns), &sa_name)))
            .and_then(|kv| serde_json::from_slice::<Value>(&kv.value).ok());
        let sa_automount = sa.as_ref().and_then(|sa| {
            sa.get("automountServiceAccountToken")
                .and_then(Value::as_bool)
        });
        strategy::inherit_image_pull_secrets(pod, sa.as_ref());
        let automount = pod
            .pointer("/spec/automountServiceAccountToken")
            .and_then(Value::as_bool)
            .or(sa_automount)
            .unwrap_or(true);
        if automount {
            strategy::mount_service_account_token(pod, &random_suffix());
        }
    }

    fn allocate_service(
        &self,
        info: &'static ResourceInfo,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let (kvs, _) = self.store.list(&storage_prefix(info, None));
        let services: Vec<Value> = kvs
            .iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect();
        let ns = meta_str(obj, "namespace").to_string();
        let name = meta_str(obj, "name").to_string();
        let used = crate::alloc::Used::from_services(services.iter(), Some((&ns, &name)));
        self.alloc
            .allocate(obj, old, &used)
            .map_err(|causes| ApiError::invalid(info, &name, causes))
    }

    pub async fn create(
        &self,
        p: &ResourcePath,
        q: &Query,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Response, ApiError> {
        let ty = body_type(content_type(headers))?;
        let mut obj = decode_object(body, ty)?;
        check_type(p.info, &mut obj)?;
        let mut warnings = duplicate_field_check(body, ty, q)?;
        warnings.extend(unknown_field_check(self, p.info, &mut obj, q)?);
        let created = self
            .create_object(p.info, p.namespace.as_deref(), obj, q.dry_run()?)
            .await?;
        Ok(with_warnings(
            json_response(StatusCode::CREATED, &created),
            &warnings,
        ))
    }

    /// Applies the update mode's rules to `new` (old = stored object).
    fn finish_update(
        &self,
        info: &'static ResourceInfo,
        mode: UpdateMode,
        new: Value,
        old: &Value,
    ) -> Result<Value, ApiError> {
        let name = meta_str(old, "name").to_string();
        let mut new = match mode {
            UpdateMode::Status => {
                let mut new = strategy::prepare_for_status_update(&new, old);
                self.prepare_custom(info, &mut new, false)?;
                new
            }
            UpdateMode::Finalize => {
                let mut out = old.clone();
                let f = new
                    .pointer("/spec/finalizers")
                    .cloned()
                    .unwrap_or(json!([]));
                if let Some(m) = out.as_object_mut() {
                    let spec = m.entry("spec").or_insert_with(|| json!({}));
                    spec["finalizers"] = f;
                }
                out
            }
            UpdateMode::Raw => new,
            UpdateMode::Main | UpdateMode::Apply => {
                let mut new = new;
                check_type(info, &mut new)?;
                let new_name = meta_str(&new, "name");
                if !new_name.is_empty() && new_name != name {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({new_name}) does not match the name on the URL ({name})"
                    )));
                }
                let new_ns = meta_str(&new, "namespace");
                let old_ns = meta_str(old, "namespace");
                if info.namespaced && !new_ns.is_empty() && new_ns != old_ns {
                    return Err(ApiError::bad_request(format!(
                        "the namespace of the provided object ({new_ns}) does not match the namespace sent on the request ({old_ns})"
                    )));
                }
                let was_deleting = old
                    .pointer("/metadata/deletionTimestamp")
                    .is_some_and(|v| !v.is_null());
                if was_deleting {
                    let old_f = finalizers(old);
                    if finalizers(&new).iter().any(|f| !old_f.contains(f)) {
                        return Err(ApiError::invalid(
                            info,
                            &name,
                            vec![crate::error::Cause::forbidden(
                                "metadata.finalizers",
                                "no new finalizers can be added if the object is being deleted",
                            )],
                        ));
                    }
                }
                {
                    let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
                    let m = meta_mut(&mut new);
                    m.insert("name".into(), json!(name));
                    if info.namespaced {
                        m.insert("namespace".into(), json!(old_ns));
                    }
                    for f in [
                        "uid",
                        "creationTimestamp",
                        "deletionTimestamp",
                        "deletionGracePeriodSeconds",
                    ] {
                        match old_meta.get(f) {
                            Some(v) => m.insert(f.into(), v.clone()),
                            None => m.remove(f),
                        };
                    }
                    // managedFields: server-side apply sets them; a client may
                    // replace them on the main resource (`[{}]` clears them)
                    let sent = mode == UpdateMode::Main
                        && m.get("managedFields")
                            .and_then(Value::as_array)
                            .is_some_and(|a| !a.is_empty());
                    if mode != UpdateMode::Apply && !sent {
                        match old_meta.get("managedFields") {
                            Some(v) => m.insert("managedFields".into(), v.clone()),
                            None => m.remove("managedFields"),
                        };
                    }
                    m.remove("selfLink");
                    if let Some(g) = old_meta.get("generation") {
                        m.insert("generation".into(), g.clone());
                    } else {
                        m.remove("generation");
                    }
                }
                strategy::apply_defaults(info, &mut new);
                strategy::prepare_for_update(info, &mut new, old);
                if crate::crd::is_crd_resource(info) {
                    self.prepare_crd(&mut new, Some(old))?;
                } else {
                    self.prepare_custom(info, &mut new, false)?;
                }
                let causes = strategy::validate(info, &new, Some(old));
                if !causes.is_empty() {
                    return Err(ApiError::invalid(info, &name, causes));
                }
                new
            }
        };
        if matches!(mode, UpdateMode::Main | UpdateMode::Status) {
            crate::ssa::track_update(Some(old), &mut new);
        }
        if info.group.is_empty()
            && info.resource == "services"
            && matches!(mode, UpdateMode::Main | UpdateMode::Apply)
        {
            self.allocate_service(info, &mut new, Some(old))?;
        }
        Ok(new)
    }

    /// Read-modify-write with optimistic concurrency. `f` computes the new
    /// object from the stored one; a `metadata.resourceVersion` it leaves
    /// that differs from the stored one is a precondition (409). Without one,
    /// store conflicts are retried.
    pub async fn update_with(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        mode: UpdateMode,
        dry_run: bool,
        mut f: impl FnMut(&Value) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let key = storage_key(info, ns, name);
        let is_service = info.group.is_empty() && info.resource == "services";
        let _guard = if is_service {
            Some(self.svc_lock.lock().await)
        } else {
            None
        };
        for _ in 0..64 {
            let (old, kv) = self.read(info, ns, name)?;
            // `f` sees the object without its resourceVersion, so the result
            // carries one only when the caller sent it (a PUT body, or a
            // patch that sets it): only then is a concurrent write a 409;
            // otherwise the update is retried on the newer object, as kube does.
            let mut unversioned = old.clone();
            if let Some(m) = unversioned
                .get_mut("metadata")
                .and_then(Value::as_object_mut)
            {
                m.remove("resourceVersion");
            }
            let new = f(&unversioned)?;
            let current = kv.mod_revision.to_string();
            let explicit = match meta_str(&new, "resourceVersion") {
                "" => false,
                rv if rv == current => true,
                _ => return Err(ApiError::conflict(info, name)),
            };
            let mut new = self.finish_update(info, mode, new, &old)?;
            if without_rv(&new) == without_rv(&old) {
                return Ok(old);
            }
            if matches!(mode, UpdateMode::Main | UpdateMode::Apply) {
                self.admit_update(info, &new, &old, dry_run).await?;
            }
            let deleting = new
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|v| !v.is_null());
            let spec_finalizers_empty = new
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
            let grace_zero = new
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .is_none_or(|g| g == 0);
            let finished = deleting
                && finalizers(&new).is_empty()
                && grace_zero
                && (info.resource != "namespaces" || spec_finalizers_empty);
            if dry_run {
                set_rv(&mut new, kv.mod_revision);
                return Ok(new);
            }
            let res = if finished {
                self.store.delete(&key, Some(kv.mod_revision)).await
            } else {
                self.store
                    .update(&key, self.stored_bytes(info, &new), Some(kv.mod_revision))
                    .await
            };
            match res {
                Ok(kv) => {
                    set_rv(&mut new, kv.mod_revision);
                    return Ok(new);
                }
                Err(StoreError::Conflict { .. }) if !explicit => continue,
                Err(StoreError::Conflict { .. }) => return Err(ApiError::conflict(info, name)),
                Err(StoreError::NotFound { .. }) => return Err(self.not_found(info, name)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::conflict(info, name))
    }

    pub async fn update(
        &self,
        p: &ResourcePath,
        q: &Query,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Response, ApiError> {
        let name = p.name.clone().unwrap_or_default();
        let ty = body_type(content_type(headers))?;
        let mut obj = decode_object(body, ty)?;
        let mode = match p.subresource.as_deref() {
            None => UpdateMode::Main,
            Some("status") => UpdateMode::Status,
            Some("finalize") if p.info.resource == "namespaces" => UpdateMode::Finalize,
            Some("scale") => return self.scale_write(p, q, Some(obj), None).await,
            Some(s) => {
                return Err(ApiError::method_not_allowed(format!(
                    "PUT is not supported on {}/{s}",
                    p.info.resource
                )))
            }
        };
        check_type(p.info, &mut obj)?;
        let body_name = meta_str(&obj, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let mut warnings = duplicate_field_check(body, ty, q)?;
        warnings.extend(unknown_field_check(self, p.info, &mut obj, q)?);
        let updated = self
            .update_with(
                p.info,
                p.namespace.as_deref(),
                &name,
                mode,
                q.dry_run()?,
                |_| Ok(obj.clone()),
            )
            .await?;
        Ok(with_warnings(
            json_response(StatusCode::OK, &updated),
            &warnings,
        ))
    }

    pub async fn patch(
        &self,
        p: &ResourcePath,
        q: &Query,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Response, ApiError> {
        let name = p.name.clone().unwrap_or_default();
        let ty = body_type(content_type(headers))?;
        if ty == BodyType::Apply {
            return self.apply(p, q, body).await;
        }
        if !matches!(
            ty,
            BodyType::StrategicMerge | BodyType::MergePatch | BodyType::JsonPatch
        ) {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {:?})",
                    content_type(headers)
                ),
            ));
        }
        if ty == BodyType::StrategicMerge && self.crds.get(p.info).is_some() {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (strategic merge patch is not supported for custom resources such as {}; use --type=merge or --type=json)",
                    crate::error::qualified_resource(p.info)
                ),
            ));
        }
        let patch = decode_json_or_yaml(body, false)?;
        if ty == BodyType::JsonPatch && !patch.is_array() {
            return Err(ApiError::bad_request(
                "a JSON patch must be a JSON array of operations",
            ));
        }
        if ty != BodyType::JsonPatch && !patch.is_object() {
            return Err(ApiError::bad_request("a merge patch must be a JSON object"));
        }
        let mode = match p.subresource.as_deref() {
            None => UpdateMode::Main,
            Some("status") => UpdateMode::Status,
            Some("scale") => return self.scale_write(p, q, None, Some((ty, patch))).await,
            Some(s) => {
                return Err(ApiError::method_not_allowed(format!(
                    "PATCH is not supported on {}/{s}",
                    p.info.resource
                )))
            }
        };
        let info = p.info;
        let mut warnings = Vec::new();
        let updated = self
            .update_with(
                info,
                p.namespace.as_deref(),
                &name,
                mode,
                q.dry_run()?,
                |old| {
                    let new = apply_patch(info, old, &patch, ty)?;
                    let mut new = new;
                    warnings = unknown_field_check(self, info, &mut new, q)?;
                    Ok(new)
                },
            )
            .await?;
        Ok(with_warnings(
            json_response(StatusCode::OK, &updated),
            &warnings,
        ))
    }

    /// Server-side apply (`application/apply-patch+yaml`). Creates the object
    /// when missing, otherwise merges the applied configuration into it
    /// with the schema's list semantics, removes the fields this manager
    /// applied last time but not now, and refuses (409) to change fields
    /// other managers own unless `force=true` (see `ssa`).
    async fn apply(&self, p: &ResourcePath, q: &Query, body: &[u8]) -> Result<Response, ApiError> {
        let name = p.name.clone().unwrap_or_default();
        let manager = q
            .get("fieldManager")
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "PATCH with application/apply-patch+yaml needs a fieldManager query parameter",
                )
            })?
            .to_string();
        let mut applied = decode_object(body, BodyType::Apply)?;
        let typed = |k: &str| {
            applied
                .get(k)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        };
        if !typed("kind") || !typed("apiVersion") {
            return Err(ApiError::bad_request(
                "server-side apply needs apiVersion and kind in the applied configuration",
            ));
        }
        check_type(p.info, &mut applied)?;
        let body_name = meta_str(&applied, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        {
            let m = meta_mut(&mut applied);
            m.insert("name".into(), json!(name));
            m.remove("managedFields");
            m.remove("resourceVersion");
        }
        let mut warnings = duplicate_field_check(body, BodyType::Apply, q)?;
        warnings.extend(unknown_field_check(self, p.info, &mut applied, q)?);
        let dry_run = q.dry_run()?;
        let info = p.info;
        let api_version = info.api_version();
        let fields = crate::ssa::fields_v1(&applied);
        if p.subresource.is_none()
            && self
                .store
                .get(&storage_key(info, p.namespace.as_deref(), &name))
                .is_none()
        {
            let managed = crate::ssa::with_entry(
                None,
                &manager,
                &api_version,
                fields.clone(),
                &now_rfc3339(),
            );
            let created = self
                .create_object_managed(
                    info,
                    p.namespace.as_deref(),
                    applied.clone(),
                    dry_run,
                    Some(managed),
                )
                .await;
            match created {
                Ok(obj) => {
                    return Ok(with_warnings(
                        json_response(StatusCode::CREATED, &obj),
                        &warnings,
                    ))
                }
                Err(e) if e.reason == "AlreadyExists" => {} // raced with a create: merge instead
                Err(e) => return Err(e),
            }
        }
        let mode = if p.subresource.as_deref() == Some("status") {
            UpdateMode::Status
        } else {
            UpdateMode::Apply
        };
        let updated = self
            .update_with(info, p.namespace.as_deref(), &name, mode, dry_run, |old| {
                // merge by the schema's list semantics, prune what this manager
                // dropped, 409 on another manager's fields unless force (see ssa)
                let sub = p.subresource.as_deref().unwrap_or("");
                crate::ssa::apply(old, &applied, &manager, q.flag("force"), sub)
            })
            .await?;
        Ok(with_warnings(
            json_response(StatusCode::OK, &updated),
            &warnings,
        ))
    }

    /// DELETE of one object, with graceful deletion for pods, finalizers,
    /// namespace termination and propagation policies.
    pub async fn delete_object(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        o: &DeleteOptions,
    ) -> Result<(Value, bool), ApiError> {
        let key = storage_key(info, ns, name);
        for _ in 0..8 {
            let (obj, kv) = self.read(info, ns, name)?;
            if let Some(uid) = &o.uid {
                if uid != meta_str(&obj, "uid") {
                    return Err(ApiError::conflict_msg(info, name, &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}", meta_str(&obj, "uid")
                    )));
                }
            }
            if let Some(rv) = &o.resource_version {
                if *rv != kv.mod_revision.to_string() {
                    return Err(ApiError::conflict_msg(info, name, &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}", kv.mod_revision
                    )));
                }
            }
            if info.group.is_empty()
                && info.resource == "namespaces"
                && ["default", "kube-system", "kube-public"].contains(&name)
            {
                return Err(ApiError::forbidden(format!(
                    "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
                ))
                .with_details(json!({"name": name, "kind": "namespaces"})));
            }
            let deleting = obj
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|v| !v.is_null());
            let mut fins = finalizers(&obj);
            match o.propagation.as_deref() {
                Some("Foreground") if !fins.iter().any(|f| f == "foregroundDeletion") => {
                    fins.push("foregroundDeletion".into())
                }
                Some("Orphan") if !fins.iter().any(|f| f == "orphan") => fins.push("orphan".into()),
                _ => {}
            }
            let mut new = obj.clone();
            let graceful: Option<i64>;
            if info.group.is_empty() && info.resource == "namespaces" {
                let spec_fins = obj
                    .pointer("/spec/finalizers")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty());
                if deleting && (!fins.is_empty() || spec_fins) {
                    return Ok((obj, false));
                }
                if spec_fins || !fins.is_empty() {
                    let m = meta_mut(&mut new);
                    m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
                    m.insert("deletionGracePeriodSeconds".into(), json!(0));
                    m.insert("finalizers".into(), json!(fins));
                    if fins.is_empty() {
                        m.remove("finalizers");
                    }
                    new["status"]["phase"] = json!("Terminating");
                    graceful = Some(0);
                } else {
                    graceful = None;
                }
            } else if info.group.is_empty() && info.resource == "pods" {
                let bound = !obj
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty();
                let phase = obj
                    .pointer("/status/phase")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let mut grace = o.grace_period.unwrap_or_else(|| {
                    obj.pointer("/spec/terminationGracePeriodSeconds")
                        .and_then(Value::as_i64)
                        .unwrap_or(30)
                });
                if !bound || phase == "Succeeded" || phase == "Failed" {
                    grace = 0;
                }
                grace = grace.max(0);
                let current_grace = obj
                    .pointer("/metadata/deletionGracePeriodSeconds")
                    .and_then(Value::as_i64);
                if grace == 0 && fins.is_empty() {
                    graceful = None;
                } else if deleting
                    && current_grace.is_some_and(|g| g <= grace)
                    && fins == finalizers(&obj)
                {
                    return Ok((obj, false));
                } else {
                    let ts = Utc::now() + chrono::Duration::seconds(grace);
                    let m = meta_mut(&mut new);
                    m.insert(
                        "deletionTimestamp".into(),
                        json!(ts.to_rfc3339_opts(SecondsFormat::Secs, true)),
                    );
                    m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                    if !fins.is_empty() {
                        m.insert("finalizers".into(), json!(fins));
                    }
                    graceful = Some(grace);
                }
            } else if !fins.is_empty() {
                if deleting && fins == finalizers(&obj) {
                    return Ok((obj, false));
                }
                let m = meta_mut(&mut new);
                if !deleting {
                    m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
                    m.insert("deletionGracePeriodSeconds".into(), json!(0));
                }
                m.insert("finalizers".into(), json!(fins));
                graceful = Some(0);
            } else {
                graceful = None;
            }
            if o.dry_run {
                return Ok((new, graceful.is_none()));
            }
            let res = match graceful {
                Some(_) => {
                    self.store
                        .update(&key, self.stored_bytes(info, &new), Some(kv.mod_revision))
                        .await
                }
                None => self.store.delete(&key, Some(kv.mod_revision)).await,
            };
            match res {
                Ok(kv) => {
                    set_rv(&mut new, kv.mod_revision);
                    return Ok((new, graceful.is_none()));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound { .. }) => return Err(self.not_found(info, name)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::conflict(info, name))
    }

    pub async fn delete(
        &self,
        p: &ResourcePath,
        q: &Query,
        body: &[u8],
    ) -> Result<Response, ApiError> {
        let opts = delete_options(q, body)?;
        let name = p.name.clone().unwrap_or_default();
        let (obj, gone) = self
            .delete_object(p.info, p.namespace.as_deref(), &name, &opts)
            .await?;
        if gone && !(p.info.group.is_empty() && p.info.resource == "pods") {
            let status = json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "group": p.info.group, "kind": p.info.resource, "uid": meta_str(&obj, "uid")},
            });
            return Ok(json_response(StatusCode::OK, &status));
        }
        // kube answers 200 whether the object is gone or only being deleted
        Ok(json_response(StatusCode::OK, &obj))
    }

    pub async fn delete_collection(
        &self,
        p: &ResourcePath,
        q: &Query,
        body: &[u8],
    ) -> Result<Response, ApiError> {
        let opts = delete_options(q, body)?;
        let sel = Selectors::from_query(p.info, q, None)?;
        let (items, rev, _) = self.list_objects(p.info, p.namespace.as_deref(), &sel, 0, None)?;
        let mut out = Vec::new();
        for it in items {
            let ns = it
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(String::from);
            let name = meta_str(&it, "name").to_string();
            match self
                .delete_object(p.info, ns.as_deref(), &name, &opts)
                .await
            {
                Ok((obj, _)) => out.push(obj),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "kind": format!("{}List", p.info.kind), "apiVersion": p.info.api_version(),
                "metadata": {"resourceVersion": rev.to_string()}, "items": out,
            }),
        ))
    }
}

pub(crate) fn patch_error(e: minik_apimachinery::patch::PatchError) -> ApiError {
    match e {
        minik_apimachinery::patch::PatchError::Invalid(m) => {
            ApiError::bad_request(format!("the patch is invalid: {m}"))
        }
        minik_apimachinery::patch::PatchError::Failed(m) => ApiError::new(
            422,
            "Invalid",
            format!("the JSON patch could not be applied: {m}"),
        ),
    }
}

/// Applies a patch of the given type to a stored object.
pub fn apply_patch(
    info: &ResourceInfo,
    old: &Value,
    patch: &Value,
    ty: BodyType,
) -> Result<Value, ApiError> {
    let out = match ty {
        BodyType::MergePatch => minik_apimachinery::patch::merge(old, patch),
        BodyType::JsonPatch => {
            minik_apimachinery::patch::json_patch(old, patch).map_err(patch_error)?
        }
        BodyType::StrategicMerge => {
            minik_apimachinery::patch::strategic_merge(old, patch, &info.api_version(), info.kind)
                .map_err(patch_error)?
        }
        _ => return Err(ApiError::unsupported_media_type("not a patch type")),
    };
    if !out.is_object() {
        return Err(ApiError::bad_request(
            "the patch turned the object into something that is not a JSON object",
        ));
    }
    Ok(out)
}

pub fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The message for a resource that exists but does not serve a verb.
pub fn verb_not_allowed(method: &str, info: &ResourceInfo) -> ApiError {
    ApiError::method_not_allowed(format!(
        "the server does not allow this method on the requested resource ({} {})",
        method,
        qualified_resource(info)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use minik_apimachinery::resources::find;

    #[test]
    fn keys_and_prefixes() {
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(
            storage_key(pods, Some("default"), "x"),
            "/registry/core/pods/default/x"
        );
        assert_eq!(
            storage_prefix(pods, Some("default")),
            "/registry/core/pods/default/"
        );
        assert_eq!(storage_prefix(pods, None), "/registry/core/pods/");
        let d = find("apps", "v1", "deployments").unwrap();
        assert_eq!(
            storage_key(d, Some("ns"), "web"),
            "/registry/apps/deployments/ns/web"
        );
        let ns = find("", "v1", "namespaces").unwrap();
        assert_eq!(
            storage_key(ns, Some("ignored"), "kube-system"),
            "/registry/core/namespaces/kube-system"
        );
    }

    #[tokio::test]
    async fn pages_hold_exactly_limit_matching_objects_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = minik_store::Store::open(&dir.path().join("store")).unwrap();
        let server = crate::ApiServer::new(store.clone(), crate::ApiServerOptions::default())
            .await
            .unwrap();
        let cms = find("", "v1", "configmaps").unwrap();
        let mut want = Vec::new();
        for i in 0..40 {
            let name = format!("cm-{i:02}");
            // every third one does not match, so raw batches hold fewer matches than `limit`
            let app = if i % 3 == 0 { "other" } else { "web" };
            let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "default", "labels": {"app": app}}});
            store
                .create(
                    &storage_key(cms, Some("default"), &name),
                    serde_json::to_vec(&obj).unwrap(),
                )
                .await
                .unwrap();
            if app == "web" {
                want.push(name);
            }
        }
        let q = crate::request::Query::parse(Some("labelSelector=app%3Dweb"));
        let sel = Selectors::from_query(cms, &q, None).unwrap();
        let (mut got, mut cont, mut pages) = (Vec::new(), None::<String>, 0);
        loop {
            let (items, _, next) = server
                .inner
                .list_objects(cms, Some("default"), &sel, 7, cont.as_deref())
                .unwrap();
            pages += 1;
            if next.is_some() {
                assert_eq!(items.len(), 7, "page {pages} is not full");
            }
            assert!(items.len() <= 7);
            got.extend(
                items
                    .iter()
                    .map(|o| o["metadata"]["name"].as_str().unwrap().to_string()),
            );
            cont = next;
            if cont.is_none() {
                break;
            }
        }
        assert_eq!(got, want);
        assert_eq!(pages, want.len().div_ceil(7));
    }

    #[test]
    fn continue_tokens_round_trip() {
        let t = encode_continue(42, "/registry/core/pods/default/b");
        assert_eq!(
            decode_continue(&t, "/registry/core/pods/").unwrap(),
            (42, "/registry/core/pods/default/b".to_string())
        );
        assert!(decode_continue(&t, "/registry/core/secrets/").is_err());
        assert!(check_continue_not_compacted(42, 42).is_ok());
        let gone = check_continue_not_compacted(42, 43).unwrap_err().status();
        assert_eq!(
            (gone["code"].as_i64(), gone["reason"].as_str()),
            (Some(410), Some("Expired"))
        );
        assert!(decode_continue("garbage!", "/").is_err());
    }

    #[test]
    fn type_checks() {
        let d = find("apps", "v1", "deployments").unwrap();
        let mut o = json!({"metadata": {"name": "x"}});
        check_type(d, &mut o).unwrap();
        assert_eq!(o["kind"], "Deployment");
        assert_eq!(o["apiVersion"], "apps/v1");
        let mut wrong = json!({"kind": "Pod", "apiVersion": "v1"});
        assert!(check_type(d, &mut wrong)
            .unwrap_err()
            .message
            .contains("Pod"));
        let mut av = json!({"kind": "Deployment", "apiVersion": "apps/v1beta1"});
        assert!(check_type(d, &mut av).is_err());
    }

    #[test]
    fn duplicate_json_fields_are_found() {
        let body = br#"{"metadata": {"name": "a", "name": "b"}, "spec": {"items": [{"x": 1, "x": 2}], "y": 1}, "spec": {}}"#;
        assert_eq!(
            duplicate_fields(body, false),
            vec!["metadata.name", "spec.items[0].x", "spec"]
        );
        assert!(duplicate_fields(br#"{"a": {"b": 1}, "b": [1, 2]}"#, false).is_empty());
        assert_eq!(
            duplicate_fields(
                b"spec:\n  a: 1\n  list:\n  - x: 1\n    x: 2\n  a: 2\n",
                true
            ),
            vec!["spec.list[0].x", "spec.a"]
        );
        let strict = Query::parse(Some("fieldValidation=Strict"));
        let e = duplicate_field_check(body, BodyType::Json, &strict).unwrap_err();
        assert!(
            e.message
                .contains("json: duplicate field \"metadata.name\""),
            "{}",
            e.message
        );
        assert_eq!(
            duplicate_field_check(body, BodyType::Json, &Query::default())
                .unwrap()
                .len(),
            3
        );
        let e = duplicate_field_check(b"a: 1\na: 2\n", BodyType::Apply, &strict).unwrap_err();
        assert!(
            e.message.contains("yaml: duplicate field \"a\""),
            "{}",
            e.message
        );
    }

    #[test]
    fn prune_unknown_paths() {
        let mut o = json!({"spec": {"foo": 1, "template": {"spec": {"containers": [{"name": "a", "imagee": "x"}]}}}, "top": 2});
        prune_path(&mut o, "spec.foo");
        prune_path(&mut o, "spec.template.spec.containers[0].imagee");
        prune_path(&mut o, "top");
        prune_path(&mut o, "spec.missing.deeper");
        assert_eq!(
            o,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}})
        );
    }

    #[test]
    fn delete_options_parse() {
        let q = Query::parse(Some("gracePeriodSeconds=0"));
        let o = delete_options(
            &q,
            br#"{"propagationPolicy":"Foreground","preconditions":{"uid":"u"}}"#,
        )
        .unwrap();
        assert_eq!(o.grace_period, Some(0));
        assert_eq!(o.propagation.as_deref(), Some("Foreground"));
        assert_eq!(o.uid.as_deref(), Some("u"));
        assert!(delete_options(&Query::default(), br#"{"propagationPolicy":"Sideways"}"#).is_err());
        assert!(delete_options(&Query::default(), b"{").is_err());
    }
}
