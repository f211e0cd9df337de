//! The structural OpenAPI v3 schema of a CustomResourceDefinition version,
//! applied to custom objects as apiextensions-apiserver does: pruning of
//! fields the schema does not know, defaults from `default`, validation
//! (type, required, enum, bounds, lengths, pattern, items, int-or-string,
//! additionalProperties maps, nullable, format int32/int64) with the field
//! paths and wording of Kubernetes' `Invalid` errors; and the JSONPath
//! subset `additionalPrinterColumns` use. Pure functions, unit-tested.

use crate::error::Cause;
use serde_json::{json, Map, Value};

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Removes every field the schema does not specify (below the root, whose
/// `apiVersion`, `kind` and `metadata` are always kept). Returns the paths
/// removed, e.g. `spec.foo`, for `fieldValidation` warnings or errors.
pub fn prune(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut removed = Vec::new();
    if let Value::Object(m) = obj {
        prune_object(schema, m, "", true, &mut removed);
    }
    removed
}

fn prune_object(
    schema: &Value,
    m: &mut Map<String, Value>,
    path: &str,
    root: bool,
    removed: &mut Vec<String>,
) {
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
    let embedded = flag(schema, "x-kubernetes-embedded-resource");
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    let keys: Vec<String> = m.keys().cloned().collect();
    for k in keys {
        if (root || embedded) && k == "metadata" {
            if let Some(Value::Object(meta)) = m.get_mut("metadata") {
                prune_metadata(meta, &join(path, "metadata"), removed);
            }
            continue;
        }
        if (root || embedded) && matches!(k.as_str(), "apiVersion" | "kind") {
            continue;
        }
        let sub = props.and_then(|p| p.get(&k)).or(additional);
        match sub {
            Some(s) => {
                if let Some(v) = m.get_mut(&k) {
                    prune_value(s, v, &join(path, &k), removed);
                }
            }
            None if preserve => {}
            None if schema.get("additionalProperties") == Some(&Value::Bool(true)) => {}
            None => {
                m.remove(&k);
                removed.push(join(path, &k));
            }
        }
    }
}

/// The fields of ObjectMeta; anything else in a custom object's metadata is
/// pruned (and reported under strict validation), as kube does.
const OBJECT_META_FIELDS: &[&str] = &[
    "annotations",
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "finalizers",
    "generateName",
    "generation",
    "labels",
    "managedFields",
    "name",
    "namespace",
    "ownerReferences",
    "resourceVersion",
    "selfLink",
    "uid",
];

fn prune_metadata(meta: &mut Map<String, Value>, path: &str, removed: &mut Vec<String>) {
    let unknown: Vec<String> = meta
        .keys()
        .filter(|k| !OBJECT_META_FIELDS.contains(&k.as_str()))
        .cloned()
        .collect();
    for k in unknown {
        meta.remove(&k);
        removed.push(join(path, &k));
    }
}

fn prune_value(schema: &Value, v: &mut Value, path: &str, removed: &mut Vec<String>) {
    if flag(schema, "x-kubernetes-int-or-string") {
        return;
    }
    match v {
        Value::Object(m) => {
            // an object with no structure and preserve-unknown-fields keeps everything
            if flag(schema, "x-kubernetes-preserve-unknown-fields")
                && schema.get("properties").is_none()
                && schema.get("additionalProperties").is_none()
            {
                // an embedded object's metadata is still ObjectMeta
                if flag(schema, "x-kubernetes-embedded-resource") {
                    if let Some(Value::Object(meta)) = m.get_mut("metadata") {
                        prune_metadata(meta, &join(path, "metadata"), removed);
                    }
                }
                return;
            }
            prune_object(schema, m, path, false, removed)
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items").filter(|i| i.is_object()) {
                for (i, e) in a.iter_mut().enumerate() {
                    prune_value(items, e, &format!("{path}[{i}]"), removed);
                }
            }
        }
        _ => {}
    }
}

/// Fills fields that are missing and have a `default` in the schema,
/// top-down (a defaulted object is defaulted further inside).
pub fn apply_defaults(schema: &Value, obj: &mut Value) {
    match obj {
        Value::Object(m) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, s) in props {
                    if !m.contains_key(k) {
                        if let Some(d) = s.get("default") {
                            m.insert(k.clone(), d.clone());
                        }
                    }
                }
                for (k, s) in props {
                    if let Some(v) = m.get_mut(k) {
                        apply_defaults(s, v);
                    }
                }
            }
            if let Some(a) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for v in m.values_mut() {
                    apply_defaults(a, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items").filter(|i| i.is_object()) {
                for v in items {
                    apply_defaults(s, v);
                }
            }
        }
        _ => {}
    }
}

/// Validates a custom object against the schema; the causes carry kube's
/// field paths and messages (`spec.replicas: Invalid value: ...`).
pub fn validate(schema: &Value, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let Value::Object(m) = obj else {
        causes.push(type_error("", obj, "object"));
        return causes;
    };
    let props = schema.get("properties").and_then(Value::as_object);
    for r in required(schema) {
        if !m.contains_key(r) && !matches!(r, "apiVersion" | "kind" | "metadata") {
            causes.push(Cause::required(r.to_string(), ""));
        }
    }
    for (k, v) in m {
        if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        let sub = props
            .and_then(|p| p.get(k))
            .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
        if let Some(s) = sub {
            validate_value(s, v, k, &mut causes);
        }
    }
    causes
}

fn required(schema: &Value) -> impl Iterator<Item = &str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_error(path: &str, v: &Value, want: &str) -> Cause {
    let got = json_type(v);
    Cause {
        reason: "FieldValueTypeInvalid",
        field: path.to_string(),
        message: format!(
            "Invalid value: \"{got}\": {} in body must be of type {want}: \"{got}\"",
            if path.is_empty() { "body" } else { path }
        ),
    }
}

fn type_matches(want: &str, v: &Value) -> bool {
    match want {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        _ => true,
    }
}

fn validate_value(schema: &Value, v: &Value, path: &str, causes: &mut Vec<Cause>) {
    if v.is_null() {
        if flag(schema, "nullable") {
            return;
        }
        // kube drops nulls of non-nullable fields that have no type check to fail
        if let Some(t) = schema.get("type").and_then(Value::as_str) {
            causes.push(type_error(path, v, t));
        }
        return;
    }
    if flag(schema, "x-kubernetes-int-or-string") {
        if !(v.is_string() || v.is_i64() || v.is_u64()) {
            causes.push(type_error(path, v, "integer,string"));
        }
        return;
    }
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        if !type_matches(t, v) {
            causes.push(type_error(path, v, t));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(v) {
            let list: Vec<String> = allowed.iter().map(render_enum).collect();
            causes.push(Cause {
                reason: "FieldValueNotSupported",
                field: path.to_string(),
                message: format!(
                    "Unsupported value: {}: supported values: {}",
                    render_enum(v),
                    list.join(", ")
                ),
            });
        }
    }
    match v {
        Value::Object(m) => {
            for r in required(schema) {
                if !m.contains_key(r) {
                    causes.push(Cause::required(join(path, r), ""));
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, val) in m {
                if let Some(s) = props.and_then(|p| p.get(k)).or(additional) {
                    validate_value(s, val, &join(path, k), causes);
                }
            }
            if let Some(n) = schema.get("maxProperties").and_then(Value::as_u64) {
                if m.len() as u64 > n {
                    causes.push(Cause {
                        reason: "FieldValueTooMany",
                        field: path.to_string(),
                        message: format!("Too many: {}: must have at most {n} items", m.len()),
                    });
                }
            }
            if let Some(n) = schema.get("minProperties").and_then(Value::as_u64) {
                if (m.len() as u64) < n {
                    causes.push(Cause::invalid(
                        path,
                        &json!(m.len()),
                        &format!("{path} in body should have at least {n} properties"),
                    ));
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items").filter(|i| i.is_object()) {
                for (i, e) in a.iter().enumerate() {
                    validate_value(items, e, &format!("{path}[{i}]"), causes);
                }
            }
            if let Some(n) = schema.get("maxItems").and_then(Value::as_u64) {
                if a.len() as u64 > n {
                    causes.push(Cause {
                        reason: "FieldValueTooMany",
                        field: path.to_string(),
                        message: format!("Too many: {}: must have at most {n} items", a.len()),
                    });
                }
            }
            if let Some(n) = schema.get("minItems").and_then(Value::as_u64) {
                if (a.len() as u64) < n {
                    causes.push(Cause::invalid(
                        path,
                        &json!(a.len()),
                        &format!("{path} in body should have at least {n} items"),
                    ));
                }
            }
            if flag(schema, "uniqueItems") {
                for (i, e) in a.iter().enumerate() {
                    if a[..i].contains(e) {
                        causes.push(Cause::duplicate(format!("{path}[{i}]"), e));
                    }
                }
            }
        }
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(n) = schema.get("maxLength").and_then(Value::as_u64) {
                if len > n {
                    causes.push(Cause {
                        reason: "FieldValueTooLong",
                        field: path.to_string(),
                        message: format!("Too long: may not be more than {n} bytes"),
                    });
                }
            }
            if let Some(n) = schema.get("minLength").and_then(Value::as_u64) {
                if len < n {
                    causes.push(Cause::invalid(
                        path,
                        v,
                        &format!("{path} in body should be at least {n} chars long"),
                    ));
                }
            }
            if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
                // a pattern that does not compile was refused when the CRD was written
                if regex::Regex::new(p).is_ok_and(|re| !re.is_match(s)) {
                    causes.push(Cause::invalid(
                        path,
                        v,
                        &format!("{path} in body should match '{p}'"),
                    ));
                }
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            let excl_max = flag(schema, "exclusiveMaximum");
            let excl_min = flag(schema, "exclusiveMinimum");
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
                if x > max || (excl_max && x == max) {
                    let word = if excl_max {
                        "less than"
                    } else {
                        "less than or equal to"
                    };
                    causes.push(Cause::invalid(
                        path,
                        v,
                        &format!("{path} in body should be {word} {}", num(max)),
                    ));
                }
            }
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
                if x < min || (excl_min && x == min) {
                    let word = if excl_min {
                        "greater than"
                    } else {
                        "greater than or equal to"
                    };
                    causes.push(Cause::invalid(
                        path,
                        v,
                        &format!("{path} in body should be {word} {}", num(min)),
                    ));
                }
            }
            if let Some(m) = schema.get("multipleOf").and_then(Value::as_f64) {
                if m > 0.0 && (x / m).fract() != 0.0 {
                    causes.push(Cause::invalid(
                        path,
                        v,
                        &format!("{path} in body should be a multiple of {}", num(m)),
                    ));
                }
            }
            let range = match schema.get("format").and_then(Value::as_str) {
                Some("int32") => Some((i32::MIN as i64, i32::MAX as i64, "int32")),
                Some("int64") => Some((i64::MIN, i64::MAX, "int64")),
                _ => None,
            };
            if let Some((lo, hi, name)) = range {
                let ok = n.as_i64().is_some_and(|i| i >= lo && i <= hi);
                if !ok {
                    causes.push(Cause::invalid(
                        path,
                        v,
                        &format!("{path} in body must be of type {name}: \"{n}\""),
                    ));
                }
            }
        }
        _ => {}
    }
}

fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

fn render_enum(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Checks a CRD's schema for what this server needs to apply it: the
/// patterns compile and the root is an object. Returns (field, message).
pub fn check_schema(schema: &Value, path: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
        if let Err(e) = regex::Regex::new(p) {
            out.push((
                format!("{path}.pattern"),
                format!("is not a valid regular expression: {e}"),
            ));
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, s) in props {
            out.extend(check_schema(s, &format!("{path}.properties[{k}]")));
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(s) = schema.get(key).filter(|s| s.is_object()) {
            out.extend(check_schema(s, &format!("{path}.{key}")));
        }
    }
    out
}

/// One step of a printer-column JSONPath.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
    /// `[?(@.a.b=="x")]` (or `!=`)
    Filter(Vec<String>, String, bool),
}

fn parse_path(p: &str) -> Option<Vec<Step>> {
    let p = p.trim();
    let p = p
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(p);
    let p = p.strip_prefix('$').unwrap_or(p);
    let mut steps = Vec::new();
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'.' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && b[j] != b'.' && b[j] != b'[' {
                    j += 1;
                }
                if j > start {
                    steps.push(Step::Field(p[start..j].to_string()));
                }
                i = j;
            }
            b'[' => {
                let close = p[i..].find(']').map(|c| i + c)?;
                let inner = p[i + 1..close].trim();
                if inner == "*" {
                    steps.push(Step::All);
                } else if let Some(f) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
                    let (lhs, rhs, neg) = if let Some((l, r)) = f.split_once("==") {
                        (l, r, false)
                    } else {
                        let (l, r) = f.split_once("!=")?;
                        (l, r, true)
                    };
                    let fields = lhs
                        .trim()
                        .strip_prefix("@.")?
                        .split('.')
                        .map(String::from)
                        .collect();
                    let value = rhs
                        .trim()
                        .trim_matches(|c| c == '"' || c == '\'')
                        .to_string();
                    steps.push(Step::Filter(fields, value, neg));
                } else if let Some(q) = inner.strip_prefix('\'').and_then(|q| q.strip_suffix('\''))
                {
                    steps.push(Step::Field(q.to_string()));
                } else {
                    steps.push(Step::Index(inner.parse().ok()?));
                }
                i = close + 1;
            }
            _ => {
                // a path without the leading dot: `spec.x`
                let start = i;
                let mut j = start;
                while j < b.len() && b[j] != b'.' && b[j] != b'[' {
                    j += 1;
                }
                steps.push(Step::Field(p[start..j].to_string()));
                i = j;
            }
        }
    }
    Some(steps)
}

/// Whether a printer column's JSONPath is one this server can evaluate.
pub fn valid_json_path(p: &str) -> bool {
    parse_path(p).is_some_and(|s| !s.is_empty())
}

/// Every value a JSONPath selects in `obj`.
pub fn json_path<'a>(obj: &'a Value, path: &str) -> Vec<&'a Value> {
    let Some(steps) = parse_path(path) else {
        return Vec::new();
    };
    let mut cur: Vec<&Value> = vec![obj];
    for s in &steps {
        let mut next = Vec::new();
        for v in cur {
            match s {
                Step::Field(f) => next.extend(v.get(f.as_str())),
                Step::Index(i) => {
                    if let Some(a) = v.as_array() {
                        let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                        if idx >= 0 {
                            next.extend(a.get(idx as usize));
                        }
                    }
                }
                Step::All => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Filter(fields, want, neg) => {
                    if let Some(a) = v.as_array() {
                        for e in a {
                            let mut x = Some(e);
                            for f in fields {
                                x = x.and_then(|x| x.get(f.as_str()));
                            }
                            let got = match x {
                                Some(Value::String(s)) => Some(s.clone()),
                                Some(other) => Some(other.to_string()),
                                None => None,
                            };
                            let eq = got.as_deref() == Some(want.as_str());
                            if eq != *neg && (got.is_some() || *neg) {
                                next.push(e);
                            }
                        }
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

/// One `additionalPrinterColumns` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    pub ty: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

impl PrinterColumn {
    pub fn from_json(v: &Value) -> Option<PrinterColumn> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        Some(PrinterColumn {
            name: v.get("name")?.as_str()?.to_string(),
            ty: s("type"),
            format: s("format"),
            description: s("description"),
            priority: v.get("priority").and_then(Value::as_i64).unwrap_or(0),
            json_path: v.get("jsonPath")?.as_str()?.to_string(),
        })
    }

    /// The column definition of the Table.
    pub fn definition(&self) -> Value {
        json!({"name": self.name, "type": self.ty, "format": self.format,
               "description": self.description, "priority": self.priority})
    }

    /// The cell for `obj` as kube's CRD table convertor prints it.
    pub fn cell(&self, obj: &Value, now: chrono::DateTime<chrono::Utc>) -> Value {
        let found = json_path(obj, &self.json_path);
        match found.as_slice() {
            [] => Value::Null,
            [one] => match (self.ty.as_str(), one) {
                ("date", v) => json!(crate::table::since(Some(v), now)),
                ("string", Value::String(s)) => json!(s),
                ("string", v) => json!(v.to_string()),
                (_, v) => (*v).clone(),
            },
            many => json!(many
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(",")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crontab_schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["cronSpec"], "properties": {
                "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
                "image": {"type": "string", "minLength": 1, "maxLength": 20},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1, "format": "int32"},
                "policy": {"type": "string", "enum": ["Allow", "Forbid"]},
                "port": {"x-kubernetes-int-or-string": true},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "note": {"type": "string", "nullable": true},
                "items": {"type": "array", "maxItems": 2, "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "weight": {"type": "number", "default": 0.5}}}}
            }},
            "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}
        }})
    }

    #[test]
    fn prunes_unknown_fields_and_reports_paths() {
        let mut o = json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "x"},
            "spec": {"cronSpec": "* * * * */5", "bogus": 1, "extra": {"any": {"thing": 1}},
                     "labels": {"a": "b"}, "items": [{"name": "a", "junk": true}]},
            "top": 3});
        let removed = prune(&crontab_schema(), &mut o);
        assert_eq!(removed, vec!["spec.bogus", "spec.items[0].junk", "top"]);
        let mut m = json!({"metadata": {"name": "x", "labels": {"a": "b"}, "colour": "red"}});
        assert_eq!(prune(&crontab_schema(), &mut m), vec!["metadata.colour"]);
        assert_eq!(m, json!({"metadata": {"name": "x", "labels": {"a": "b"}}}));
        let embedded = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}}}}});
        let mut e = json!({"spec": {"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "junk": 1}, "spec": {"x": 1}}}});
        assert_eq!(
            prune(&embedded, &mut e),
            vec!["spec.template.metadata.junk"]
        );
        assert_eq!(e["spec"]["template"]["spec"]["x"], 1);
        assert_eq!(o["spec"]["extra"]["any"]["thing"], 1);
        assert_eq!(o["spec"]["labels"]["a"], "b");
        assert_eq!(o["metadata"]["name"], "x");
        assert!(o.get("top").is_none());
    }

    #[test]
    fn defaults_fill_missing_fields_top_down() {
        let mut o = json!({"spec": {"cronSpec": "x", "items": [{"name": "a"}, {"name": "b", "weight": 2}]}});
        apply_defaults(&crontab_schema(), &mut o);
        assert_eq!(o["spec"]["replicas"], 1);
        assert_eq!(o["spec"]["items"][0]["weight"], 0.5);
        assert_eq!(o["spec"]["items"][1]["weight"], 2);
    }

    fn messages(obj: Value) -> Vec<String> {
        validate(&crontab_schema(), &obj)
            .iter()
            .map(Cause::render)
            .collect()
    }

    #[test]
    fn validation_messages_read_like_kubernetes() {
        assert!(messages(json!({"spec": {"cronSpec": "* * * * */5", "replicas": 3, "port": "http", "note": null}})).is_empty());
        assert_eq!(
            messages(json!({"spec": {}})),
            vec!["spec.cronSpec: Required value"]
        );
        assert_eq!(
            messages(json!({"spec": {"cronSpec": "* * * * */5", "replicas": "three"}})),
            vec!["spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\""]
        );
        assert_eq!(
            messages(json!({"spec": {"cronSpec": "* * * * */5", "replicas": 20}})),
            vec!["spec.replicas: Invalid value: 20: spec.replicas in body should be less than or equal to 10"]
        );
        assert_eq!(
            messages(json!({"spec": {"cronSpec": "* * * * */5", "replicas": 0}})),
            vec!["spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1"]
        );
        assert_eq!(
            messages(json!({"spec": {"cronSpec": "bad"}})),
            vec![
                r#"spec.cronSpec: Invalid value: "bad": spec.cronSpec in body should match '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'"#
            ]
        );
        assert_eq!(
            messages(json!({"spec": {"cronSpec": "* * * * */5", "policy": "Maybe"}})),
            vec!["spec.policy: Unsupported value: \"Maybe\": supported values: \"Allow\", \"Forbid\""]
        );
        assert_eq!(
            messages(json!({"spec": {"cronSpec": "* * * * */5", "image": ""}})),
            vec!["spec.image: Invalid value: \"\": spec.image in body should be at least 1 chars long"]
        );
        assert_eq!(
            messages(
                json!({"spec": {"cronSpec": "* * * * */5", "image": "a-very-long-image-name-indeed"}})
            ),
            vec!["spec.image: Too long: may not be more than 20 bytes"]
        );
        assert_eq!(
            messages(json!({"spec": {"cronSpec": "* * * * */5", "port": true}})),
            vec!["spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\""]
        );
        assert_eq!(
            messages(json!({"spec": {"cronSpec": "* * * * */5", "labels": {"a": 1}}})),
            vec!["spec.labels.a: Invalid value: \"integer\": spec.labels.a in body must be of type string: \"integer\""]
        );
        assert_eq!(
            messages(json!({"spec": {"cronSpec": "* * * * */5", "items": [{}, {}, {}]}})),
            vec!["spec.items: Too many: 3: must have at most 2 items"]
        );
        assert_eq!(
            messages(json!({"spec": {"cronSpec": "* * * * */5", "replicas": 5000000000i64}})).len(),
            2 // above the maximum and outside int32
        );
        assert_eq!(
            messages(json!({"spec": {"cronSpec": "* * * * */5", "image": null}})),
            vec!["spec.image: Invalid value: \"null\": spec.image in body must be of type string: \"null\""]
        );
    }

    #[test]
    fn schema_checks_find_bad_patterns() {
        let bad =
            json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "("}}});
        let errs = check_schema(&bad, "spec.versions[0].schema.openAPIV3Schema");
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].0,
            "spec.versions[0].schema.openAPIV3Schema.properties[a].pattern"
        );
        assert!(check_schema(&crontab_schema(), "x").is_empty());
    }

    #[test]
    fn json_paths_and_printer_cells() {
        let obj = json!({"metadata": {"creationTimestamp": "2026-01-10T11:00:00Z"},
            "spec": {"cronSpec": "* * * * */5", "replicas": 3, "containers": [{"image": "a"}, {"image": "b"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "False"}]}});
        assert_eq!(
            json_path(&obj, ".spec.cronSpec"),
            vec![&json!("* * * * */5")]
        );
        assert_eq!(
            json_path(&obj, "{.spec.containers[1].image}"),
            vec![&json!("b")]
        );
        assert_eq!(json_path(&obj, ".spec.containers[*].image").len(), 2);
        assert_eq!(
            json_path(&obj, r#".status.conditions[?(@.type=="Ready")].status"#),
            vec![&json!("True")]
        );
        assert!(json_path(&obj, ".spec.missing").is_empty());
        assert!(valid_json_path(".spec.x[0]"));
        assert!(!valid_json_path(".spec.x[abc"));
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-10T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let col = |ty: &str, p: &str| PrinterColumn {
            name: "X".into(),
            ty: ty.into(),
            format: String::new(),
            description: String::new(),
            priority: 0,
            json_path: p.into(),
        };
        assert_eq!(col("integer", ".spec.replicas").cell(&obj, now), json!(3));
        assert_eq!(
            col("date", ".metadata.creationTimestamp").cell(&obj, now),
            json!("60m")
        );
        assert_eq!(col("string", ".spec.replicas").cell(&obj, now), json!("3"));
        assert_eq!(
            col("string", ".spec.containers[*].image").cell(&obj, now),
            json!("a,b")
        );
        assert_eq!(col("string", ".spec.nothing").cell(&obj, now), Value::Null);
    }
}
