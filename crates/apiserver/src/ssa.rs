//! Server-side apply field ownership, simplified: each Apply manager's
//! managedFields entry records the fields of the configuration it last
//! applied (`fieldsV1`), so that when it applies again without a field,
//! that field is removed from the object, as kube does. List elements are
//! identified by their merge key (`name`, `containerPort`+`protocol`,
//! `port`+`protocol`); other lists are owned whole. Not modelled: fields
//! owned by Update managers (PUT/PATCH), shared ownership and conflicts
//! (`force`). Pure and unit-tested.

use serde_json::{json, Map, Value};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq)]
pub enum Seg {
    Field(String),
    /// A list element, by the values of its merge key.
    Key(Map<String, Value>),
}

/// The merge key of a list element, when it has one.
fn element_key(e: &Value) -> Option<Map<String, Value>> {
    let o = e.as_object()?;
    let proto = || o.get("protocol").cloned().unwrap_or_else(|| json!("TCP"));
    let mut k = Map::new();
    if let Some(n) = o.get("name").filter(|v| v.is_string()) {
        k.insert("name".into(), n.clone());
    } else if let Some(p) = o.get("containerPort").filter(|v| v.is_number()) {
        k.insert("containerPort".into(), p.clone());
        k.insert("protocol".into(), proto());
    } else if let Some(p) = o.get("port").filter(|v| v.is_number()) {
        k.insert("port".into(), p.clone());
        k.insert("protocol".into(), proto());
    } else {
        return None;
    }
    Some(k)
}

fn list_keys(a: &[Value]) -> Option<Vec<Map<String, Value>>> {
    let keys: Option<Vec<_>> = a.iter().map(element_key).collect();
    let keys = keys?;
    let same_shape = keys.windows(2).all(|w| w[0].keys().eq(w[1].keys()));
    (!keys.is_empty() && same_shape).then_some(keys)
}

fn fields_of(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, val) in m {
                out.insert(format!("f:{k}"), fields_of(val));
            }
            Value::Object(out)
        }
        Value::Array(a) => match list_keys(a) {
            Some(keys) => {
                let mut out = Map::new();
                for (key, e) in keys.into_iter().zip(a) {
                    let mut inner = match fields_of(e) {
                        Value::Object(m) => m,
                        _ => Map::new(),
                    };
                    inner.insert(".".into(), json!({}));
                    out.insert(format!("k:{}", Value::Object(key)), Value::Object(inner));
                }
                Value::Object(out)
            }
            None => json!({}),
        },
        _ => json!({}),
    }
}

/// The `fieldsV1` of an applied configuration (identity fields left out).
pub fn fields_v1(cfg: &Value) -> Value {
    let mut c = cfg.clone();
    if let Some(m) = c.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in [
                "name",
                "namespace",
                "uid",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "managedFields",
            ] {
                meta.remove(f);
            }
            if meta.is_empty() {
                m.remove("metadata");
            }
        }
    }
    fields_of(&c)
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
        let v1 = json!({"metadata": {"labels": {"app": "web", "tier": "fe"}}, "spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "a", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"name": "side", "image": "s"}]}}}});
        let v2 = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"template": {"spec": {"containers": [
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
