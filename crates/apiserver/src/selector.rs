//! Label and field selectors: parsing the `labelSelector` / `fieldSelector`
//! query strings and matching objects (pure, no I/O). Also converts a
//! `metav1.LabelSelector` JSON (`matchLabels` / `matchExpressions`) to its
//! string form, as `status.selector` of a Scale and the wide table columns
//! show it.

use serde_json::Value;
use std::collections::BTreeMap;

/// Why a selector string could not be parsed (answered 400 BadRequest).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SelectorError {
    #[error("unable to parse requirement: {0}")]
    Label(String),
    #[error("invalid field selector {0:?}: expected field=value, field==value or field!=value")]
    Field(String),
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

/// One label requirement.
#[derive(Debug, Clone, PartialEq)]
pub enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
    Gt(String, i64),
    Lt(String, i64),
}

/// A parsed label selector: all requirements must hold (empty = everything).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c)
            }
            ')' => {
                depth -= 1;
                cur.push(c)
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 316
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn parse_set(rest: &str, whole: &str) -> Result<Vec<String>, SelectorError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| {
            SelectorError::Label(format!(
                "{whole:?}: expected a set of values in parentheses"
            ))
        })?;
    let vals: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
    for v in &vals {
        if !valid_value(v) {
            return Err(SelectorError::Label(format!(
                "{whole:?}: invalid label value {v:?}"
            )));
        }
    }
    Ok(vals)
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let mut requirements = Vec::new();
        if s.trim().is_empty() {
            return Ok(LabelSelector { requirements });
        }
        for part in split_top_level(s) {
            let p = part.trim();
            if p.is_empty() {
                return Err(SelectorError::Label(format!("{s:?}: empty requirement")));
            }
            let req = if let Some(k) = p.strip_prefix('!') {
                Requirement::DoesNotExist(k.trim().to_string())
            } else if let Some((k, v)) = p.split_once("!=") {
                Requirement::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = p.split_once("==") {
                Requirement::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = p.split_once('=') {
                Requirement::Eq(k.trim().into(), v.trim().into())
            } else if let Some(idx) = p.find(" notin ") {
                Requirement::NotIn(p[..idx].trim().into(), parse_set(&p[idx + 7..], p)?)
            } else if let Some(idx) = p.find(" in ") {
                Requirement::In(p[..idx].trim().into(), parse_set(&p[idx + 4..], p)?)
            } else if let Some((k, v)) = p.split_once('>') {
                let n = v
                    .trim()
                    .parse()
                    .map_err(|_| SelectorError::Label(format!("{p:?}: not an integer")))?;
                Requirement::Gt(k.trim().into(), n)
            } else if let Some((k, v)) = p.split_once('<') {
                let n = v
                    .trim()
                    .parse()
                    .map_err(|_| SelectorError::Label(format!("{p:?}: not an integer")))?;
                Requirement::Lt(k.trim().into(), n)
            } else {
                Requirement::Exists(p.to_string())
            };
            let key = match &req {
                Requirement::Eq(k, _)
                | Requirement::NotEq(k, _)
                | Requirement::In(k, _)
                | Requirement::NotIn(k, _)
                | Requirement::Exists(k)
                | Requirement::DoesNotExist(k)
                | Requirement::Gt(k, _)
                | Requirement::Lt(k, _) => k,
            };
            if !valid_key(key) {
                return Err(SelectorError::Label(format!(
                    "{p:?}: invalid label key {key:?}"
                )));
            }
            if let Requirement::Eq(_, v) | Requirement::NotEq(_, v) = &req {
                if !valid_value(v) {
                    return Err(SelectorError::Label(format!(
                        "{p:?}: invalid label value {v:?}"
                    )));
                }
            }
            requirements.push(req);
        }
        Ok(LabelSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether a label map satisfies every requirement (kube semantics:
    /// `!=` and `notin` match when the key is absent).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Eq(k, v) => labels.get(k) == Some(v),
            Requirement::NotEq(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
            Requirement::Gt(k, n) => labels
                .get(k)
                .and_then(|l| l.parse::<i64>().ok())
                .is_some_and(|l| l > *n),
            Requirement::Lt(k, n) => labels
                .get(k)
                .and_then(|l| l.parse::<i64>().ok())
                .is_some_and(|l| l < *n),
        })
    }

    /// Matches an object's `metadata.labels`.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.is_empty() || self.matches(&labels_of(obj))
    }

    /// Builds a selector from a `metav1.LabelSelector` JSON object.
    pub fn from_json(sel: &Value) -> LabelSelector {
        let mut requirements = Vec::new();
        if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in m {
                requirements.push(Requirement::Eq(
                    k.clone(),
                    v.as_str().unwrap_or_default().to_string(),
                ));
            }
        }
        if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e
                    .get("key")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                match e
                    .get("operator")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                {
                    "In" => requirements.push(Requirement::In(key, values)),
                    "NotIn" => requirements.push(Requirement::NotIn(key, values)),
                    "Exists" => requirements.push(Requirement::Exists(key)),
                    "DoesNotExist" => requirements.push(Requirement::DoesNotExist(key)),
                    _ => {}
                }
            }
        }
        LabelSelector { requirements }
    }
}

impl std::fmt::Display for LabelSelector {
    /// The canonical string form (`app=hello,tier in (a,b)`), sorted by key as kube does.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<(String, String)> = self
            .requirements
            .iter()
            .map(|r| match r {
                Requirement::Eq(k, v) => (k.clone(), format!("{k}={v}")),
                Requirement::NotEq(k, v) => (k.clone(), format!("{k}!={v}")),
                Requirement::In(k, vs) => {
                    let mut vs = vs.clone();
                    vs.sort();
                    (k.clone(), format!("{k} in ({})", vs.join(",")))
                }
                Requirement::NotIn(k, vs) => {
                    let mut vs = vs.clone();
                    vs.sort();
                    (k.clone(), format!("{k} notin ({})", vs.join(",")))
                }
                Requirement::Exists(k) => (k.clone(), k.clone()),
                Requirement::DoesNotExist(k) => (k.clone(), format!("!{k}")),
                Requirement::Gt(k, n) => (k.clone(), format!("{k}>{n}")),
                Requirement::Lt(k, n) => (k.clone(), format!("{k}<{n}")),
            })
            .collect();
        parts.sort();
        let s: Vec<String> = parts.into_iter().map(|(_, s)| s).collect();
        f.write_str(&s.join(","))
    }
}

/// `metadata.labels` as a sorted map (non-string values ignored).
pub fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// One `field=value` / `field!=value` term.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldRequirement {
    pub field: String,
    pub value: String,
    pub negate: bool,
}

/// A parsed field selector.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

/// Fields a resource supports in field selectors besides `metadata.name` and
/// `metadata.namespace` (from kube's `pkg/registry/*/strategy.go` field sets).
pub fn supported_fields(group: &str, resource: &str) -> &'static [&'static str] {
    match (group, resource) {
        ("", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("", "secrets") => &["type"],
        ("", "namespaces") => &["status.phase"],
        ("", "nodes") => &["spec.unschedulable"],
        ("apps", "replicasets") => &["status.replicas"],
        ("", "replicationcontrollers") => &["status.replicas"],
        _ => &[],
    }
}

impl FieldSelector {
    /// Parses and checks every field against what `group/resource` supports.
    pub fn parse(s: &str, group: &str, resource: &str) -> Result<FieldSelector, SelectorError> {
        let mut requirements = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector { requirements });
        }
        for part in split_top_level(s) {
            let p = part.trim();
            let (field, value, negate) = if let Some((f, v)) = p.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = p.split_once("==") {
                (f, v, false)
            } else if let Some((f, v)) = p.split_once('=') {
                (f, v, false)
            } else {
                return Err(SelectorError::Field(p.to_string()));
            };
            let field = field.trim();
            if field != "metadata.name"
                && field != "metadata.namespace"
                && !supported_fields(group, resource).contains(&field)
            {
                return Err(SelectorError::UnsupportedField(field.to_string()));
            }
            requirements.push(FieldRequirement {
                field: field.to_string(),
                value: value.trim().to_string(),
                negate,
            });
        }
        Ok(FieldSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether the object satisfies every term. A missing field reads as `""`
    /// (so `spec.nodeName=` selects unscheduled pods, as in kube).
    pub fn matches(&self, obj: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let actual = field_value(obj, &r.field);
            (actual == r.value) != r.negate
        })
    }

    /// The `metadata.name=X` value when the selector pins one name.
    pub fn pinned_name(&self) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == "metadata.name" && !r.negate)
            .map(|r| r.value.as_str())
    }
}

/// The string value of a dotted field path (`source` of events is `source.component`).
pub fn field_value(obj: &Value, field: &str) -> String {
    let path = match field {
        "source" => "source.component",
        f => f,
    };
    let mut cur = obj;
    for seg in path.split('.') {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => {
                // booleans default to false in kube's field sets
                return if matches!(field, "spec.hostNetwork" | "spec.unschedulable") {
                    "false".into()
                } else {
                    String::new()
                };
            }
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_operator() {
        let s =
            LabelSelector::parse("app=web,tier==fe,env!=prod,zone in (a, b),x notin (c),has,!gone")
                .unwrap();
        assert_eq!(s.requirements.len(), 7);
        assert_eq!(
            s.requirements[3],
            Requirement::In("zone".into(), vec!["a".into(), "b".into()])
        );
        assert_eq!(s.requirements[6], Requirement::DoesNotExist("gone".into()));
        let l = labels(&[("app", "web"), ("tier", "fe"), ("zone", "b"), ("has", "")]);
        assert!(s.matches(&l));
        let l2 = labels(&[
            ("app", "web"),
            ("tier", "fe"),
            ("zone", "b"),
            ("has", ""),
            ("gone", "1"),
        ]);
        assert!(!s.matches(&l2));
    }

    #[test]
    fn not_equal_and_notin_match_missing_keys() {
        let s = LabelSelector::parse("env!=prod,x notin (a)").unwrap();
        assert!(s.matches(&labels(&[])));
        assert!(!s.matches(&labels(&[("env", "prod")])));
        assert!(!s.matches(&labels(&[("x", "a")])));
    }

    #[test]
    fn rejects_garbage() {
        assert!(LabelSelector::parse("a=b,,c").is_err());
        assert!(LabelSelector::parse("a in b").is_err());
        assert!(LabelSelector::parse("a=b c").is_err());
        assert!(LabelSelector::parse("").unwrap().is_empty());
    }

    #[test]
    fn label_selector_from_json_and_display() {
        let sel = json!({"matchLabels": {"app": "hw", "a": "b"}, "matchExpressions": [{"key": "t", "operator": "In", "values": ["y", "x"]}]});
        let s = LabelSelector::from_json(&sel);
        assert_eq!(s.to_string(), "a=b,app=hw,t in (x,y)");
        assert!(s.matches(&labels(&[("app", "hw"), ("a", "b"), ("t", "x")])));
    }

    #[test]
    fn field_selectors() {
        let pod = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"nodeName": "minik"}, "status": {"phase": "Running"}});
        let f =
            FieldSelector::parse("spec.nodeName=minik,status.phase!=Failed", "", "pods").unwrap();
        assert!(f.matches(&pod));
        let f = FieldSelector::parse("metadata.name=q", "", "pods").unwrap();
        assert!(!f.matches(&pod));
        assert_eq!(f.pinned_name(), Some("q"));
        let unscheduled = FieldSelector::parse("spec.nodeName=", "", "pods").unwrap();
        assert!(unscheduled.matches(&json!({"spec": {}})));
        assert_eq!(
            FieldSelector::parse("spec.foo=1", "", "pods").unwrap_err(),
            SelectorError::UnsupportedField("spec.foo".into())
        );
        let ev = json!({"involvedObject": {"name": "hw", "namespace": "default", "uid": "u"}, "source": {"component": "kubelet"}});
        let f = FieldSelector::parse("involvedObject.name=hw,involvedObject.namespace=default,involvedObject.uid=u,source=kubelet", "", "events").unwrap();
        assert!(f.matches(&ev));
        let sec = FieldSelector::parse("type=Opaque", "", "secrets").unwrap();
        assert!(sec.matches(&json!({"type": "Opaque"})));
    }
}
