//! Server-side apply and managedFields for the REST handlers; the logic is
//! `minik_apimachinery::fieldmanager` (pure, unit-tested there).
//!
//! - [`with_writer`] wraps a resource request: it names the writer (the
//!   `fieldManager` query parameter, else the User-Agent's product, as kube
//!   does) and the subresource, for the duration of the request.
//! - [`track_update`]: called by every non-apply write (create, PUT, PATCH,
//!   status/scale) with the stored and the new object; records the writer's
//!   Update entry in the new object's managedFields.
//! - [`apply`]: the merge of an applied configuration, with conflicts (409,
//!   Kubernetes' message and causes) unless `force`.
//!
//! The older helpers below ([`fields_v1`], [`paths`], [`removed`], [`remove`],
//! [`applied_fields`], [`with_entry`]) are kept for callers that build an
//! Apply entry themselves; `fields_v1` uses the schema's list semantics.

use crate::error::ApiError;
use crate::request::{Query, ResourcePath};
use axum::http::{header, HeaderMap};
use minik_apimachinery::fieldmanager;
use serde_json::{json, Map, Value};
use std::future::Future;

/// Who is writing, for the managedFields of the objects a request changes.
#[derive(Debug, Default)]
pub struct Writer {
    pub manager: String,
    /// `""` for the main resource, else `status`, `scale`, …
    pub subresource: String,
    /// The managedFields an apply to a subresource computed: the subresource
    /// update that stores it keeps them instead of recording an Update.
    applied: std::sync::Mutex<Option<Value>>,
}

tokio::task_local! {
    static WRITER: Writer;
}

/// The writer of a request: `fieldManager`, else the User-Agent's product.
pub fn writer_of(p: &ResourcePath, q: &Query, headers: &HeaderMap) -> Writer {
    let manager = match q.get("fieldManager").filter(|m| !m.is_empty()) {
        Some(m) => m.to_string(),
        None => fieldmanager::manager_from_user_agent(
            headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        ),
    };
    Writer {
        manager,
        subresource: p.subresource.clone().unwrap_or_default(),
        applied: Default::default(),
    }
}

/// Runs a resource request with its writer known to [`track_update`].
pub async fn with_writer<F: Future>(
    p: &ResourcePath,
    q: &Query,
    headers: &HeaderMap,
    fut: F,
) -> F::Output {
    WRITER.scope(writer_of(p, q, headers), fut).await
}

/// Records a non-apply write in `new`'s managedFields (`old`: the stored
/// object, `None` on create). Outside a request (the server's own
/// bookkeeping) the stored managedFields are kept as they are.
pub fn track_update(old: Option<&Value>, new: &mut Value) {
    let _ = WRITER.try_with(|w| {
        let applied = w.applied.lock().unwrap_or_else(|e| e.into_inner()).take();
        match applied {
            // an apply to a subresource: its Apply entry, not an Update
            Some(mf) => {
                if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                    match mf {
                        Value::Array(a) if !a.is_empty() => {
                            meta.insert("managedFields".into(), Value::Array(a));
                        }
                        _ => {
                            meta.remove("managedFields");
                        }
                    }
                }
            }
            None => fieldmanager::update(
                old,
                new,
                &w.manager,
                &w.subresource,
                &crate::rest::now_rfc3339(),
            ),
        }
    });
}

/// Server-side apply of `applied` by `manager` onto the stored `old`.
/// Another manager's field changed without `force` is a 409 Conflict with
/// Kubernetes' message and `details.causes`.
pub fn apply(
    old: &Value,
    applied: &Value,
    manager: &str,
    force: bool,
    subresource: &str,
) -> Result<Value, ApiError> {
    let merged = fieldmanager::apply(
        Some(old),
        applied,
        manager,
        subresource,
        force,
        &crate::rest::now_rfc3339(),
    )
    .map_err(|c| {
        ApiError::new(409, "Conflict", c.message()).with_details(json!({ "causes": c.causes() }))
    })?;
    if !subresource.is_empty() {
        let mf = merged
            .pointer("/metadata/managedFields")
            .cloned()
            .unwrap_or(json!([]));
        let _ = WRITER.try_with(|w| {
            *w.applied.lock().unwrap_or_else(|e| e.into_inner()) = Some(mf);
        });
    }
    Ok(merged)
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq)]
pub enum Seg {
    Field(String),
    /// A list element, by the values of its merge key.
    Key(Map<String, Value>),
}

/// The `fieldsV1` of an applied configuration (identity fields left out),
/// with the list semantics of its kind's schema.
pub fn fields_v1(cfg: &Value) -> Value {
    fieldmanager::applied_fields_v1(cfg)
}

fn parse_seg(k: &str) -> Option<Seg> {
    if let Some(f) = k.strip_prefix("f:") {
        return Some(Seg::Field(f.to_string()));
    }
    let key = k.strip_prefix("k:")?;
    match serde_json::from_str::<Value>(key).ok()? {
        Value::Object(m) => Some(Seg::Key(m)),
        _ => None,
    }
}

/// Every owned path of a `fieldsV1` (leaves and keyed elements).
pub fn paths(fields: &Value) -> Vec<Vec<Seg>> {
    let mut out = Vec::new();
    walk(fields, &mut Vec::new(), &mut out);
    out
}

fn walk(v: &Value, prefix: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    let Some(m) = v.as_object() else { return };
    if (m.is_empty() || m.contains_key(".")) && !prefix.is_empty() {
        out.push(prefix.clone());
    }
    for (k, child) in m {
        if k == "." {
            continue;
        }
        if let Some(seg) = parse_seg(k) {
            prefix.push(seg);
            walk(child, prefix, out);
            prefix.pop();
        }
    }
}

/// Paths owned before but not any more, without those under another removed path.
pub fn removed(prev: &Value, now: &Value) -> Vec<Vec<Seg>> {
    let now_paths = paths(now);
    let gone: Vec<Vec<Seg>> = paths(prev)
        .into_iter()
        .filter(|p| !now_paths.iter().any(|n| n == p || n.starts_with(p)))
        .collect();
    gone.iter()
        .filter(|p| !gone.iter().any(|q| q.len() < p.len() && p.starts_with(q)))
        .cloned()
        .collect()
}

fn key_matches(e: &Value, key: &Map<String, Value>) -> bool {
    key.iter().all(|(k, v)| match e.get(k) {
        Some(x) => x == v,
        None => k == "protocol" && v == "TCP",
    })
}

/// Removes the field or list element at `path` from `obj`, if present.
pub fn remove(obj: &mut Value, path: &[Seg]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for seg in parents {
        let next = match seg {
            Seg::Field(f) => cur.get_mut(f.as_str()),
            Seg::Key(k) => cur
                .as_array_mut()
                .and_then(|a| a.iter_mut().find(|e| key_matches(e, k))),
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match last {
        Seg::Field(f) => {
            if let Some(m) = cur.as_object_mut() {
                m.remove(f);
            }
        }
        Seg::Key(k) => {
            if let Some(a) = cur.as_array_mut() {
                a.retain(|e| !key_matches(e, k));
            }
        }
    }
}

/// The Apply entry of `manager` in an object's managedFields.
pub fn applied_fields(obj: &Value, manager: &str) -> Option<Value> {
    obj.pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|e| {
            e.get("manager").and_then(Value::as_str) == Some(manager)
                && e.get("operation").and_then(Value::as_str) == Some("Apply")
        })
        .and_then(|e| e.get("fieldsV1").cloned())
}

/// managedFields with `manager`'s Apply entry set to `fields` (its time kept
/// when the fields did not change, so a no-op apply stays a no-op).
pub fn with_entry(
    old_entries: Option<&Value>,
    manager: &str,
    api_version: &str,
    fields: Value,
    now: &str,
) -> Value {
    let mut entries: Vec<Value> = old_entries
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let pos = entries.iter().position(|e| {
        e.get("manager").and_then(Value::as_str) == Some(manager)
            && e.get("operation").and_then(Value::as_str) == Some("Apply")
    });
    if let Some(i) = pos {
        if entries[i].get("fieldsV1") == Some(&fields)
            && entries[i].get("apiVersion").and_then(Value::as_str) == Some(api_version)
        {
            return Value::Array(entries);
        }
        entries.remove(i);
    }
    entries.push(json!({"manager": manager, "operation": "Apply", "apiVersion": api_version, "time": now, "fieldsType": "FieldsV1", "fieldsV1": fields}));
    Value::Array(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_sets_key_list_elements() {
        let cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": "a", "ports": [{"containerPort": 80}]}], "args": ["x"]}}}});
        let f = fields_v1(&cfg);
        assert_eq!(f["f:metadata"], json!({"f:labels": {"f:app": {}}}));
        let c = &f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
        assert_eq!(c["."], json!({}));
        assert_eq!(c["f:image"], json!({}));
        assert!(c["f:ports"]
            .get("k:{\"containerPort\":80,\"protocol\":\"TCP\"}")
            .is_some());
        assert_eq!(
            f["f:spec"]["f:template"]["f:spec"]["f:args"],
            json!({}),
            "unkeyed lists are owned whole"
        );
    }

    #[test]
    fn fields_no_longer_applied_are_removed() {
        let v1 = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"labels": {"app": "web", "tier": "fe"}}, "spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "a", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"name": "side", "image": "s"}]}}}});
        let v2 = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"labels": {"app": "web"}}, "spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "a", "env": [{"name": "A", "value": "1"}]}]}}}});
        let gone = removed(&fields_v1(&v1), &fields_v1(&v2));
        let mut live = v1.clone();
        live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] =
            json!("/dev/termination-log");
        for p in &gone {
            remove(&mut live, p);
        }
        assert_eq!(live["metadata"]["labels"], json!({"app": "web"}));
        let cs = live["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(cs.len(), 1, "the side container is gone");
        assert_eq!(cs[0]["env"], json!([{"name": "A", "value": "1"}]));
        assert_eq!(
            cs[0]["terminationMessagePath"], "/dev/termination-log",
            "fields nobody applied stay"
        );
        assert!(removed(&fields_v1(&v2), &fields_v1(&v2)).is_empty());
    }

    #[test]
    fn entries_keep_their_time_when_unchanged() {
        let f = json!({"f:spec": {"f:replicas": {}}});
        let e1 = with_entry(None, "kubectl", "apps/v1", f.clone(), "T1");
        let e2 = with_entry(Some(&e1), "kubectl", "apps/v1", f.clone(), "T2");
        assert_eq!(e1, e2);
        let e3 = with_entry(Some(&e2), "kubectl", "apps/v1", json!({}), "T3");
        assert_eq!(e3[0]["time"], "T3");
        let obj = json!({"metadata": {"managedFields": e3}});
        assert_eq!(applied_fields(&obj, "kubectl"), Some(json!({})));
        assert_eq!(applied_fields(&obj, "other"), None);
    }
}
