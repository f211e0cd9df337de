//! Server-side apply field ownership, as Kubernetes' structured-merge-diff
//! does it: every object carries `metadata.managedFields`, one entry per
//! (manager, operation, subresource) with the set of fields it owns in the
//! `FieldsV1` trie form (`f:<field>`, `k:{<list-map keys>}`, `v:<set value>`,
//! `i:<index>`, `.` = the node itself).
//!
//! - [`apply`]: merges an applied configuration into the live object with the
//!   list semantics of the schema (list-map keys, sets, atomic lists and
//!   structs), removes what the manager applied before and no longer applies
//!   (unless someone else owns it), and refuses with [`Conflicts`] when
//!   another manager owns a field the configuration changes (`force` takes it).
//! - [`update`]: the bookkeeping of every other write (create, PUT, PATCH,
//!   subresources): the writer's Update entry gains the fields the write
//!   added or changed; every entry loses the fields it removed or changed.
//!
//! List semantics come from the kinds' schemas ([`crate::schema`]): a
//! strategic-merge key makes a list a map keyed by it, `merge` without a key
//! makes a set, anything else is atomic; [`LIST_MAPS`] and [`ATOMIC_STRUCTS`]
//! add what Kubernetes marks with `+listType`/`+listMapKey`/`+structType`.
//! Pure: no I/O, no clock (callers pass the time).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::schema;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A struct field or map key: `f:<name>`.
    Field(String),
    /// A list-map element by its keys: `k:{"name":"web"}` (canonical JSON, keys sorted).
    Key(String),
    /// A set element: `v:<json>`.
    Value(String),
    /// A list element by position: `i:<n>` (read, never written by us).
    Index(usize),
}

impl PathElement {
    fn fields_v1_key(&self) -> String {
        match self {
            PathElement::Field(f) => format!("f:{f}"),
            PathElement::Key(k) => format!("k:{k}"),
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    fn parse(s: &str) -> Option<PathElement> {
        let (kind, rest) = s.split_at_checked(2)?;
        match kind {
            "f:" => Some(PathElement::Field(rest.to_string())),
            "k:" => {
                let v: Value = serde_json::from_str(rest).ok()?;
                v.is_object().then(|| PathElement::Key(canonical(&v)))
            }
            "v:" => {
                let v: Value = serde_json::from_str(rest).ok()?;
                Some(PathElement::Value(canonical(&v)))
            }
            "i:" => rest.parse().ok().map(PathElement::Index),
            _ => None,
        }
    }

    /// Kubernetes' path display: `.spec`, `[name="web"]`, `[="a"]`, `[0]`.
    fn display(&self) -> String {
        match self {
            PathElement::Field(f) => format!(".{f}"),
            PathElement::Key(k) => {
                let v: Value = serde_json::from_str(k).unwrap_or(Value::Null);
                let parts: Vec<String> = v
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(n, x)| format!("{n}={x}"))
                    .collect();
                format!("[{}]", parts.join(","))
            }
            PathElement::Value(v) => format!("[={v}]"),
            PathElement::Index(i) => format!("[{i}]"),
        }
    }
}

/// JSON text with object keys sorted (serde_json keeps insertion order here).
fn canonical(v: &Value) -> String {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let sorted: BTreeMap<&String, Value> =
                    m.iter().map(|(k, x)| (k, sort(x))).collect();
                let mut out = Map::new();
                for (k, x) in sorted {
                    out.insert(k.clone(), x);
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(v).to_string()
}

/// A field path.
pub type Path = Vec<PathElement>;

/// Kubernetes' display of a path: `.spec.template.spec.containers[name="web"].image`.
pub fn path_string(p: &[PathElement]) -> String {
    p.iter().map(PathElement::display).collect()
}

/// A set of field paths, as a trie: `members` are paths that end here,
/// `children` continue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn new() -> FieldSet {
        FieldSet::default()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.values().all(FieldSet::is_empty)
    }

    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, c) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(c),
                None => c.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    /// The paths of `self` not in `other` (membership only: a member of
    /// `other` does not take `self`'s paths below it).
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        for m in &self.members {
            if !other.members.contains(m) {
                out.members.insert(m.clone());
            }
        }
        for (pe, c) in &self.children {
            let d = match other.children.get(pe) {
                Some(o) => c.difference(o),
                None => c.clone(),
            };
            if !d.is_empty() {
                out.children.insert(pe.clone(), d);
            }
        }
        out
    }

    /// The paths of `self` not in `other`, where a member of `other` also
    /// takes everything below it.
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        for m in &self.members {
            if !other.members.contains(m) {
                out.members.insert(m.clone());
            }
        }
        for (pe, c) in &self.children {
            if other.members.contains(pe) {
                continue;
            }
            let d = match other.children.get(pe) {
                Some(o) => c.recursive_difference(o),
                None => c.clone(),
            };
            if !d.is_empty() {
                out.children.insert(pe.clone(), d);
            }
        }
        out
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        for m in &self.members {
            if other.members.contains(m) {
                out.members.insert(m.clone());
            }
        }
        for (pe, c) in &self.children {
            if let Some(o) = other.children.get(pe) {
                let i = c.intersection(o);
                if !i.is_empty() {
                    out.children.insert(pe.clone(), i);
                }
            }
        }
        out
    }

    /// Every member path, sorted.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.walk(&mut Vec::new(), &mut out);
        out
    }

    fn walk(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        let keys: BTreeSet<&PathElement> =
            self.members.iter().chain(self.children.keys()).collect();
        for pe in keys {
            prefix.push(pe.clone());
            if self.members.contains(pe) {
                out.push(prefix.clone());
            }
            if let Some(c) = self.children.get(pe) {
                c.walk(prefix, out);
            }
            prefix.pop();
        }
    }

    /// Reads a `fieldsV1` trie; unknown keys are skipped.
    pub fn from_fields_v1(v: &Value) -> FieldSet {
        let mut out = FieldSet::new();
        for (k, child) in v.as_object().into_iter().flatten() {
            let Some(pe) = PathElement::parse(k) else {
                continue;
            };
            let Some(cm) = child.as_object() else {
                continue;
            };
            if cm.is_empty() || cm.contains_key(".") {
                out.members.insert(pe.clone());
            }
            let c = FieldSet::from_fields_v1(child);
            if !c.is_empty() {
                out.children.insert(pe, c);
            }
        }
        out
    }

    /// The `fieldsV1` trie (`.` first, then keys in order).
    pub fn to_fields_v1(&self) -> Value {
        let mut entries: BTreeMap<String, Value> = BTreeMap::new();
        let keys: BTreeSet<&PathElement> =
            self.members.iter().chain(self.children.keys()).collect();
        for pe in keys {
            let child = self.children.get(pe).filter(|c| !c.is_empty());
            if child.is_none() && !self.members.contains(pe) {
                continue;
            }
            let v = match child {
                None => json!({}),
                Some(c) => {
                    let mut m = Map::new();
                    if self.members.contains(pe) {
                        m.insert(".".into(), json!({}));
                    }
                    if let Value::Object(inner) = c.to_fields_v1() {
                        m.extend(inner);
                    }
                    Value::Object(m)
                }
            };
            entries.insert(pe.fields_v1_key(), v);
        }
        Value::Object(entries.into_iter().collect())
    }
}

// ------------------------------------------------------------------ schema

/// How a list merges.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ListKind {
    Atomic,
    Set,
    Map(Vec<&'static str>),
}

/// The shape of a value, from the schema.
#[derive(Debug, Clone)]
enum Ty {
    /// A struct with named fields (`def` names its definition, when it has one).
    Struct {
        def: Option<&'static str>,
        schema: &'static Value,
    },
    /// A map (`additionalProperties`, or an untyped object): its keys are members.
    Map { elem: Option<&'static Value> },
    List {
        elem: Option<&'static Value>,
        kind: ListKind,
    },
    /// Scalars and everything owned whole.
    Atomic,
}

/// Lists Kubernetes marks `+listType=map` with keys other than (or more than)
/// their strategic-merge key: (definition, property, keys).
pub static LIST_MAPS: &[(&str, &str, &[&str])] = &[
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        &["containerPort", "protocol"],
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "ports",
        &["containerPort", "protocol"],
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        &["port", "protocol"],
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        &["topologyKey", "whenUnsatisfiable"],
    ),
    (
        "io.k8s.api.core.v1.Container",
        "resizePolicy",
        &["resourceName"],
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "readinessGates",
        &["conditionType"],
    ),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", &["ip"]),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        &["type"],
    ),
];

/// Structs Kubernetes marks `+structType=atomic` (owned whole).
pub static ATOMIC_STRUCTS: &[&str] = &[
    "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
    "io.k8s.api.core.v1.LocalObjectReference",
    "io.k8s.api.core.v1.ObjectReference",
    "io.k8s.api.core.v1.TypedLocalObjectReference",
    "io.k8s.api.core.v1.NodeSelector",
    "io.k8s.api.core.v1.ConfigMapKeySelector",
    "io.k8s.api.core.v1.SecretKeySelector",
    "io.k8s.api.core.v1.ObjectFieldSelector",
    "io.k8s.api.core.v1.ResourceFieldSelector",
];

/// Default values of list-map key fields (used when an element omits them).
fn key_default(field: &str) -> Option<Value> {
    (field == "protocol").then(|| json!("TCP"))
}

fn list_kind(parent: Option<&str>, prop: &str) -> ListKind {
    let Some(def) = parent else {
        return ListKind::Atomic;
    };
    if let Some((_, _, keys)) = LIST_MAPS.iter().find(|(d, p, _)| *d == def && *p == prop) {
        return ListKind::Map(keys.to_vec());
    }
    match schema::patch_meta(def, prop) {
        Some(m) if m.strategy.contains("merge") => match m.merge_key {
            Some(k) => ListKind::Map(vec![k]),
            None => ListKind::Set,
        },
        _ => ListKind::Atomic,
    }
}

/// The type of a schema found as property `prop` of `parent` (or as a list
/// element / map value, with `prop` empty).
fn ty_of(s: Option<&'static Value>, parent: Option<&'static str>, prop: &str) -> Ty {
    let Some(s) = s else {
        return Ty::Map { elem: None };
    };
    let (name, _) = schema::resolve(s);
    if let Some(n) = name {
        if ATOMIC_STRUCTS.contains(&n) {
            return Ty::Atomic;
        }
    }
    // `resolve` hands back a 'static definition or the schema itself
    let resolved: &'static Value = match name {
        Some(n) => schema::definitions().get(n).unwrap_or(s),
        None => s,
    };
    if resolved.get("properties").is_some() {
        return Ty::Struct {
            def: name,
            schema: resolved,
        };
    }
    match resolved.get("type").and_then(Value::as_str) {
        Some("object") => Ty::Map {
            elem: resolved
                .get("additionalProperties")
                .filter(|v| v.is_object()),
        },
        Some("array") => Ty::List {
            elem: resolved.get("items"),
            kind: list_kind(parent, prop),
        },
        Some(_) => Ty::Atomic,
        // untyped (RawExtension-like): granular when it holds an object
        None => Ty::Map { elem: None },
    }
}

/// The type of field `k` of a struct or map.
fn child_ty(ty: &Ty, k: &str) -> Ty {
    match ty {
        Ty::Struct { def, schema } => match schema.get("properties").and_then(|p| p.get(k)) {
            Some(p) => ty_of(Some(p), *def, k),
            None => Ty::Map { elem: None },
        },
        Ty::Map { elem: Some(e) } => ty_of(Some(e), None, ""),
        _ => Ty::Map { elem: None },
    }
}

fn is_struct_field(ty: &Ty, k: &str) -> bool {
    matches!(ty, Ty::Struct { schema, .. } if schema.get("properties").and_then(|p| p.get(k)).is_some())
}

/// The type of a whole object of `apiVersion`/`kind` (untyped when unknown).
fn root_ty(obj: &Value) -> Ty {
    let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    match schema::kind_schema(av, kind)
        .and_then(|k| schema::definitions().get_key_value(&k.definition))
    {
        Some((name, s)) => Ty::Struct {
            def: Some(name.as_str()),
            schema: s,
        },
        None => Ty::Map { elem: None },
    }
}

/// The path element of list item `item`, or `None` when it has no key (the
/// list is then treated as atomic).
fn item_pe(kind: &ListKind, item: &Value) -> Option<PathElement> {
    match kind {
        ListKind::Atomic => None,
        ListKind::Set => Some(PathElement::Value(canonical(item))),
        ListKind::Map(keys) => {
            let o = item.as_object()?;
            let mut k = Map::new();
            for f in keys {
                let v = o.get(*f).cloned().or_else(|| key_default(f))?;
                k.insert((*f).to_string(), v);
            }
            Some(PathElement::Key(canonical(&Value::Object(k))))
        }
    }
}

/// The items of a list by path element; `None` when some item has no key or
/// two items share one (then the list is owned whole).
fn keyed<'a>(kind: &ListKind, a: &'a [Value]) -> Option<Vec<(PathElement, &'a Value)>> {
    if *kind == ListKind::Atomic {
        return None;
    }
    let mut out = Vec::with_capacity(a.len());
    let mut seen = BTreeSet::new();
    for item in a {
        let pe = item_pe(kind, item)?;
        if !seen.insert(pe.clone()) {
            return None;
        }
        out.push((pe, item));
    }
    Some(out)
}

fn elem_ty(elem: Option<&'static Value>) -> Ty {
    match elem {
        Some(e) => ty_of(Some(e), None, ""),
        None => Ty::Atomic,
    }
}

// ------------------------------------------------------- field set of a value

fn to_set(v: &Value, ty: &Ty, path: &mut Path, out: &mut FieldSet) {
    match (ty, v) {
        (Ty::Struct { .. } | Ty::Map { .. }, Value::Object(m)) => {
            for (k, child) in m {
                path.push(PathElement::Field(k.clone()));
                let cty = child_ty(ty, k);
                to_set(child, &cty, path, out);
                let empty = child.is_null() || child.as_object().is_some_and(Map::is_empty);
                if empty || !is_struct_field(ty, k) {
                    out.insert(path);
                }
                path.pop();
            }
        }
        (Ty::List { elem, kind }, Value::Array(a)) => match keyed(kind, a) {
            Some(items) => {
                let ety = elem_ty(*elem);
                for (pe, item) in items {
                    path.push(pe);
                    to_set(item, &ety, path, out);
                    out.insert(path);
                    path.pop();
                }
            }
            None => out.insert(path),
        },
        _ => out.insert(path),
    }
}

/// The set of fields a value sets (structured-merge-diff's `ToFieldSet`).
fn field_set(v: &Value, ty: &Ty) -> FieldSet {
    let mut out = FieldSet::new();
    to_set(v, ty, &mut Vec::new(), &mut out);
    out
}

// ------------------------------------------------------------- comparison

#[derive(Debug, Default)]
struct Comparison {
    added: FieldSet,
    modified: FieldSet,
    removed: FieldSet,
}

/// Added, changed and removed paths from `old` to `new`. A list or map that
/// appears is owned as a node too (`.`), unless its field is required (Go
/// serializes it even when empty, so it is never new: kube's `containers`).
fn compare(
    old: Option<&Value>,
    new: Option<&Value>,
    ty: &Ty,
    required: bool,
    path: &mut Path,
    c: &mut Comparison,
) {
    let container = match (ty, old.or(new)) {
        (Ty::Struct { .. } | Ty::Map { .. }, Some(Value::Object(_))) => true,
        (Ty::List { kind, .. }, Some(Value::Array(_))) => *kind != ListKind::Atomic,
        _ => false,
    };
    let same_shape = match (old, new) {
        (Some(a), Some(b)) => a.is_object() == b.is_object() && a.is_array() == b.is_array(),
        _ => true,
    };
    if !container || !same_shape {
        match (old, new) {
            (None, Some(_)) => c.added.insert(path),
            (Some(_), None) => c.removed.insert(path),
            (Some(a), Some(b)) if a != b => c.modified.insert(path),
            _ => {}
        }
        return;
    }
    if let Ty::List { elem, kind } = ty {
        let empty = Vec::new();
        let oa = old.and_then(Value::as_array).unwrap_or(&empty);
        let na = new.and_then(Value::as_array).unwrap_or(&empty);
        let (Some(ok), Some(nk)) = (keyed(kind, oa), keyed(kind, na)) else {
            // not keyable: the list is one leaf
            match (old, new) {
                (None, Some(_)) => c.added.insert(path),
                (Some(_), None) => c.removed.insert(path),
                (Some(a), Some(b)) if a != b => c.modified.insert(path),
                _ => {}
            }
            return;
        };
        if old.is_none() && new.is_some() && !required {
            c.added.insert(path);
        } else if new.is_none() {
            c.removed.insert(path);
        }
        let ety = elem_ty(*elem);
        let om: BTreeMap<_, _> = ok.into_iter().collect();
        let nm: BTreeMap<_, _> = nk.into_iter().collect();
        let keys: BTreeSet<&PathElement> = om.keys().chain(nm.keys()).collect();
        for pe in keys {
            path.push(pe.clone());
            let (o, n) = (om.get(pe).copied(), nm.get(pe).copied());
            match (o, n) {
                (None, Some(_)) => c.added.insert(path),
                (Some(_), None) => c.removed.insert(path),
                _ => {}
            }
            compare(o, n, &ety, false, path, c);
            path.pop();
        }
        return;
    }
    let empty = Map::new();
    let om = old.and_then(Value::as_object).unwrap_or(&empty);
    let nm = new.and_then(Value::as_object).unwrap_or(&empty);
    if !path.is_empty() {
        // a new map, or a new struct that is empty, is owned as a node; a
        // struct with fields is owned through them
        let node = !matches!(ty, Ty::Struct { .. }) || nm.is_empty();
        if old.is_none() && node && !required {
            c.added.insert(path);
        } else if new.is_none() {
            c.removed.insert(path);
        }
    }
    let keys: BTreeSet<&String> = om.keys().chain(nm.keys()).collect();
    for k in keys {
        path.push(PathElement::Field(k.clone()));
        let req = matches!(ty, Ty::Struct { schema, .. } if schema["required"].as_array().is_some_and(|r| r.iter().any(|x| x == k.as_str())));
        compare(om.get(k), nm.get(k), &child_ty(ty, k), req, path, c);
        path.pop();
    }
}

// ----------------------------------------------------------------- merging

fn merge(live: &Value, cfg: &Value, ty: &Ty) -> Value {
    match (ty, live, cfg) {
        (Ty::Struct { .. } | Ty::Map { .. }, Value::Object(l), Value::Object(c)) => {
            let mut out = l.clone();
            for (k, cv) in c {
                let v = match l.get(k) {
                    Some(lv) => merge(lv, cv, &child_ty(ty, k)),
                    None => cv.clone(),
                };
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        (Ty::List { elem, kind }, Value::Array(l), Value::Array(c)) => {
            let (Some(lk), Some(ck)) = (keyed(kind, l), keyed(kind, c)) else {
                return cfg.clone();
            };
            let ety = elem_ty(*elem);
            let mut out: Vec<Value> = Vec::with_capacity(l.len() + c.len());
            let cm: BTreeMap<&PathElement, &Value> = ck.iter().map(|(p, v)| (p, *v)).collect();
            for (pe, lv) in &lk {
                out.push(match cm.get(pe) {
                    Some(cv) => merge(lv, cv, &ety),
                    None => (*lv).clone(),
                });
            }
            let lset: BTreeSet<&PathElement> = lk.iter().map(|(p, _)| p).collect();
            for (pe, cv) in &ck {
                if !lset.contains(pe) {
                    out.push((*cv).clone());
                }
            }
            Value::Array(out)
        }
        _ => cfg.clone(),
    }
}

/// Removes every member of `set` from `v` (fields, list items), with their subtrees.
fn remove_set(v: &mut Value, set: &FieldSet, ty: &Ty) {
    match (ty, v) {
        (Ty::Struct { .. } | Ty::Map { .. }, Value::Object(m)) => {
            for pe in &set.members {
                if let PathElement::Field(f) = pe {
                    m.shift_remove(f);
                }
            }
            for (pe, child) in &set.children {
                if let PathElement::Field(f) = pe {
                    let cty = child_ty(ty, f);
                    if let Some(cv) = m.get_mut(f) {
                        remove_set(cv, child, &cty);
                    }
                }
            }
        }
        (Ty::List { elem, kind }, Value::Array(a)) => {
            a.retain(|item| item_pe(kind, item).is_none_or(|pe| !set.members.contains(&pe)));
            let ety = elem_ty(*elem);
            for item in a.iter_mut() {
                if let Some(child) = item_pe(kind, item).and_then(|pe| set.children.get(&pe)) {
                    remove_set(item, child, &ety);
                }
            }
        }
        _ => {}
    }
}

// ------------------------------------------------------------ the entries

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub api_version: String,
    pub time: Option<String>,
    pub subresource: String,
    pub fields: FieldSet,
}

impl Entry {
    fn is_apply(&self) -> bool {
        self.operation == "Apply"
    }

    /// Same manager identity (kube's manager identifier: name, operation,
    /// subresource, and the apiVersion of Update entries).
    fn same_manager(
        &self,
        manager: &str,
        operation: &str,
        subresource: &str,
        api_version: &str,
    ) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource == subresource
            && (operation == "Apply" || self.api_version == api_version)
    }

    /// How a conflict names this manager: `"kubectl"`, `"kubectl" with
    /// subresource "scale" using apps/v1` (Update entries name their version).
    pub fn display(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if !self.is_apply() {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation));
        m.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if !self.subresource.is_empty() {
            m.insert("subresource".into(), json!(self.subresource));
        }
        Value::Object(m)
    }
}

/// The entries of an object's `metadata.managedFields`.
pub fn entries(obj: &Value) -> Vec<Entry> {
    let s = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| !s(e, "manager").is_empty() || e.get("fieldsV1").is_some())
        .map(|e| Entry {
            manager: s(e, "manager"),
            operation: s(e, "operation"),
            api_version: s(e, "apiVersion"),
            time: e.get("time").and_then(Value::as_str).map(str::to_string),
            subresource: s(e, "subresource"),
            fields: FieldSet::from_fields_v1(e.get("fieldsV1").unwrap_or(&Value::Null)),
        })
        .collect()
}

/// Writes `entries` (Apply entries first, then by time, as kube orders
/// them) into `obj.metadata.managedFields`, or removes it when empty.
pub fn set_entries(obj: &mut Value, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.fields.is_empty());
    cap_update_managers(&mut entries);
    entries.sort_by(|a, b| {
        (
            a.operation.as_str(),
            a.time.as_deref().unwrap_or(""),
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                b.operation.as_str(),
                b.time.as_deref().unwrap_or(""),
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    let Some(obj) = obj.as_object_mut() else {
        return;
    };
    let meta = obj.entry("metadata").or_insert_with(|| json!({}));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    if entries.is_empty() {
        meta.shift_remove("managedFields");
    } else {
        meta.insert(
            "managedFields".into(),
            Value::Array(entries.iter().map(Entry::to_json).collect()),
        );
    }
}

/// Kubernetes keeps at most this many Update entries; older ones merge into
/// an `ancient-changes` entry per apiVersion.
pub const MAX_UPDATE_MANAGERS: usize = 10;

fn cap_update_managers(entries: &mut Vec<Entry>) {
    const BUCKET: &str = "ancient-changes";
    loop {
        let mut updaters: Vec<usize> = (0..entries.len())
            .filter(|&i| !entries[i].is_apply())
            .collect();
        if updaters.len() <= MAX_UPDATE_MANAGERS {
            return;
        }
        updaters.sort_by(|&a, &b| entries[a].time.cmp(&entries[b].time));
        let Some(oldest) = updaters.into_iter().find(|&i| entries[i].manager != BUCKET) else {
            return;
        };
        let e = entries.remove(oldest);
        let bucket = entries
            .iter_mut()
            .find(|b| b.manager == BUCKET && !b.is_apply() && b.api_version == e.api_version);
        match bucket {
            Some(b) => {
                b.fields = b.fields.union(&e.fields);
                b.time = b.time.clone().max(e.time);
            }
            None => entries.push(Entry {
                manager: BUCKET.into(),
                operation: "Update".into(),
                subresource: String::new(),
                ..e
            }),
        }
    }
}

/// The object without the fields nobody owns (identity and server-set
/// metadata), and without the fields the subresource may not change.
fn stripped(obj: &Value, subresource: &str) -> Value {
    let mut c = obj.clone();
    if let Some(m) = c.as_object_mut() {
        m.shift_remove("apiVersion");
        m.shift_remove("kind");
        match subresource {
            "" => {
                m.shift_remove("status");
            }
            "status" => {
                m.shift_remove("spec");
            }
            _ => {}
        }
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in [
                "name",
                "namespace",
                "uid",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "managedFields",
                "selfLink",
            ] {
                meta.shift_remove(f);
            }
            if meta.is_empty() {
                m.shift_remove("metadata");
            }
        }
    }
    c
}

/// The `fieldsV1` an applied configuration would own.
pub fn applied_fields_v1(cfg: &Value) -> Value {
    field_set(&stripped(cfg, ""), &root_ty(cfg)).to_fields_v1()
}

/// An apply another manager's ownership refused: each (manager, path).
#[derive(Debug, Clone, PartialEq)]
pub struct Conflicts(pub Vec<(String, Path)>);

impl Conflicts {
    /// Kubernetes' message: `Apply failed with 1 conflict: conflict with
    /// "kubectl-client-side-apply" using apps/v1: .spec.replicas`.
    pub fn message(&self) -> String {
        if let [(m, p)] = self.0.as_slice() {
            return format!(
                "Apply failed with 1 conflict: conflict with {m}: {}",
                path_string(p)
            );
        }
        let mut by: BTreeMap<&String, Vec<&Path>> = BTreeMap::new();
        for (m, p) in &self.0 {
            by.entry(m).or_default().push(p);
        }
        let mut lines = Vec::new();
        for (m, ps) in by {
            lines.push(format!("conflicts with {m}:"));
            for p in ps {
                lines.push(format!("- {}", path_string(p)));
            }
        }
        format!(
            "Apply failed with {} conflicts: {}",
            self.0.len(),
            lines.join("\n")
        )
    }

    /// `status.details.causes`: `{type: FieldManagerConflict, message: "conflict with …", field: ".spec.replicas"}`.
    pub fn causes(&self) -> Value {
        Value::Array(
            self.0
                .iter()
                .map(|(m, p)| json!({"type": "FieldManagerConflict", "message": format!("conflict with {m}"), "field": path_string(p)}))
                .collect(),
        )
    }
}

/// Shared by apply and update: ownership after `live` became `new`, where
/// `actor` (an index into `entries`, or none) made the change. Returns the
/// comparison and, without `force`, the conflicts with the other managers.
fn reassign(
    live: &Value,
    new: &Value,
    ty: &Ty,
    subresource: &str,
    entries: &mut [Entry],
    actor: Option<usize>,
    force: bool,
) -> Result<Comparison, Conflicts> {
    let mut cmp = Comparison::default();
    compare(
        Some(&stripped(live, subresource)),
        Some(&stripped(new, subresource)),
        ty,
        false,
        &mut Vec::new(),
        &mut cmp,
    );
    let changed = cmp.modified.union(&cmp.added);
    let mut conflicts = Vec::new();
    let mut taken: Vec<(usize, FieldSet)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if Some(i) == actor {
            continue;
        }
        let c = e.fields.intersection(&changed);
        if !c.is_empty() {
            for p in c.paths() {
                conflicts.push((e.display(), p));
            }
            taken.push((i, c));
        }
    }
    if !force && !conflicts.is_empty() {
        return Err(Conflicts(conflicts));
    }
    for (i, c) in taken {
        entries[i].fields = entries[i].fields.difference(&c);
    }
    for e in entries.iter_mut() {
        e.fields = e.fields.difference(&cmp.removed);
    }
    Ok(cmp)
}

/// Server-side apply of `cfg` by `manager` onto `live` (`None`: the object
/// does not exist yet). Returns the new object with its managedFields.
/// `now` stamps the entries that changed.
pub fn apply(
    live: Option<&Value>,
    cfg: &Value,
    manager: &str,
    subresource: &str,
    force: bool,
    now: &str,
) -> Result<Value, Conflicts> {
    let ty = root_ty(cfg);
    let api_version = cfg
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let empty = json!({});
    let live_v = live.unwrap_or(&empty);
    let mut entries = entries(live_v);
    if live.is_some() && entries.is_empty() {
        // an object nobody tracked yet: its fields belong to "before-first-apply"
        let fields = field_set(&stripped(live_v, subresource), &ty);
        if !fields.is_empty() {
            entries.push(Entry {
                manager: "before-first-apply".into(),
                operation: "Update".into(),
                api_version: api_version.clone(),
                time: None,
                subresource: String::new(),
                fields,
            });
        }
    }
    let new_set = field_set(&stripped(cfg, subresource), &ty);
    let mine = entries
        .iter()
        .position(|e| e.same_manager(manager, "Apply", subresource, &api_version));
    let last_set = mine.map(|i| entries[i].fields.clone()).unwrap_or_default();
    let mut merged = match live {
        Some(l) => merge(l, &stripped_cfg(cfg, subresource), &ty),
        None => cfg.clone(),
    };
    // what this manager no longer applies, and nobody else owns, goes away
    let mut gone = last_set.difference(&new_set);
    for (i, e) in entries.iter().enumerate() {
        if Some(i) != mine {
            gone = gone.difference(&e.fields);
        }
    }
    if !gone.is_empty() {
        remove_set(&mut merged, &gone, &ty);
    }
    let idx = match mine {
        Some(i) => i,
        None => {
            entries.push(Entry {
                manager: manager.to_string(),
                operation: "Apply".into(),
                api_version: api_version.clone(),
                time: None,
                subresource: subresource.to_string(),
                fields: FieldSet::new(),
            });
            entries.len() - 1
        }
    };
    let before = entries[idx].clone();
    entries[idx].fields = new_set;
    entries[idx].api_version = api_version;
    reassign(
        live_v,
        &merged,
        &ty,
        subresource,
        &mut entries,
        Some(idx),
        force,
    )?;
    let object_changed = stripped(live_v, "") != stripped(&merged, "");
    if object_changed
        || entries[idx].fields != before.fields
        || before.time.is_none()
        || entries[idx].api_version != before.api_version
    {
        entries[idx].time = Some(now.to_string());
    }
    set_entries(&mut merged, entries);
    Ok(merged)
}

/// The configuration without what the subresource may not change.
fn stripped_cfg(cfg: &Value, subresource: &str) -> Value {
    let mut c = cfg.clone();
    if let Some(m) = c.as_object_mut() {
        match subresource {
            "" => {
                m.shift_remove("status");
            }
            "status" => {
                m.shift_remove("spec");
            }
            _ => {}
        }
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.shift_remove("managedFields");
            meta.shift_remove("resourceVersion");
        }
    }
    c
}

/// The bookkeeping of a non-apply write by `manager` (create when `old` is
/// `None`), starting from the managedFields `new` carries (the caller puts
/// the stored ones there, or keeps the ones a client sent to replace them:
/// `[{}]` clears them): the fields this write added or changed move to the
/// manager's Update entry (stamped `now`), removed fields leave every entry.
pub fn update(old: Option<&Value>, new: &mut Value, manager: &str, subresource: &str, now: &str) {
    let ty = root_ty(new);
    let api_version = new
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let empty = json!({});
    let live = old.unwrap_or(&empty);
    let mut entries = entries(new);
    let Ok(cmp) = reassign(live, new, &ty, subresource, &mut entries, None, true) else {
        return; // force: never a conflict
    };
    let took = cmp.modified.union(&cmp.added);
    if !took.is_empty() {
        match entries
            .iter_mut()
            .find(|e| e.same_manager(manager, "Update", subresource, &api_version))
        {
            Some(e) => {
                e.fields = e.fields.union(&took);
                e.time = Some(now.to_string());
            }
            None => entries.push(Entry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version,
                time: Some(now.to_string()),
                subresource: subresource.to_string(),
                fields: took,
            }),
        }
    }
    set_entries(new, entries);
}

/// The manager name of a write without `fieldManager`: the User-Agent up to
/// its first `/` (`kubectl/v1.33.2 (linux/amd64) …` → `kubectl`), at most
/// 128 characters, `unknown` when there is none.
pub fn manager_from_user_agent(ua: &str) -> String {
    let p: String = ua
        .split('/')
        .next()
        .unwrap_or("")
        .trim()
        .chars()
        .take(128)
        .collect();
    if p.is_empty() {
        "unknown".into()
    } else {
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "2026-01-01T00:00:00Z";
    const T2: &str = "2026-01-01T00:01:00Z";

    fn deploy(replicas: i64, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 80}]}]}}}})
    }

    fn entry<'a>(obj: &'a Value, manager: &str) -> &'a Value {
        obj["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["manager"] == manager)
            .unwrap_or_else(|| panic!("no entry for {manager}: {obj}"))
    }

    #[test]
    fn fields_v1_round_trip_and_kube_layout() {
        let f = applied_fields_v1(&deploy(2, "a"));
        assert_eq!(f["f:metadata"], json!({"f:labels": {"f:app": {}}}));
        assert_eq!(f["f:spec"]["f:replicas"], json!({}));
        assert_eq!(
            f["f:spec"]["f:selector"],
            json!({}),
            "LabelSelector is atomic"
        );
        let c = &f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
        assert_eq!(c["."], json!({}));
        assert_eq!(c["f:image"], json!({}));
        assert_eq!(
            c["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"],
            json!({".": {}, "f:containerPort": {}})
        );
        assert!(f.get("f:apiVersion").is_none() && f["f:metadata"].get("f:name").is_none());
        let set = FieldSet::from_fields_v1(&f);
        assert_eq!(set.to_fields_v1(), f);
        assert!(set.has(&[
            PathElement::Field("spec".into()),
            PathElement::Field("replicas".into())
        ]));
        assert_eq!(
            path_string(&[
                PathElement::Field("spec".into()),
                PathElement::Field("containers".into()),
                PathElement::Key("{\"name\":\"web\"}".into()),
                PathElement::Field("image".into())
            ]),
            ".spec.containers[name=\"web\"].image"
        );
    }

    #[test]
    fn apply_creates_then_removes_what_it_no_longer_applies() {
        let mut cfg = deploy(2, "a");
        cfg["metadata"]["labels"]["tier"] = json!("fe");
        cfg["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "side", "image": "s"}));
        let live = apply(None, &cfg, "kubectl", "", false, T1).unwrap();
        assert_eq!(entry(&live, "kubectl")["operation"], "Apply");
        assert_eq!(entry(&live, "kubectl")["time"], T1);
        let mut live = live;
        // the server defaulted a field nobody applied
        live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] =
            json!("/dev/termination-log");
        let next = apply(Some(&live), &deploy(2, "a"), "kubectl", "", false, T2).unwrap();
        assert_eq!(next["metadata"]["labels"], json!({"app": "web"}));
        let cs = next["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(cs.len(), 1, "the side container is gone: {cs:?}");
        assert_eq!(
            cs[0]["terminationMessagePath"], "/dev/termination-log",
            "unowned fields stay"
        );
        // applying the same again changes nothing, not even the time
        let again = apply(
            Some(&next),
            &deploy(2, "a"),
            "kubectl",
            "",
            false,
            "2027-01-01T00:00:00Z",
        )
        .unwrap();
        assert_eq!(again, next);
    }

    #[test]
    fn conflicts_with_an_update_manager_and_force_takes_ownership() {
        // client-side apply created it (an Update entry owns everything)
        let mut created = deploy(2, "a");
        update(None, &mut created, "kubectl-client-side-apply", "", T1);
        let e = entry(&created, "kubectl-client-side-apply");
        assert_eq!(e["operation"], "Update");
        // required lists (containers) are not new nodes; optional ones (ports) are
        let pod = &e["fieldsV1"]["f:spec"]["f:template"]["f:spec"];
        assert!(pod["f:containers"].get(".").is_none(), "{pod}");
        assert_eq!(
            pod["f:containers"]["k:{\"name\":\"web\"}"]["f:ports"]["."],
            json!({})
        );
        assert_eq!(
            e["fieldsV1"]["f:metadata"]["f:labels"],
            json!({".": {}, "f:app": {}})
        );
        // the same values: shared ownership, no conflict
        let shared = apply(Some(&created), &deploy(2, "a"), "kubectl", "", false, T2).unwrap();
        assert!(entry(&shared, "kubectl")["fieldsV1"]["f:spec"]
            .get("f:replicas")
            .is_some());
        assert!(
            entry(&shared, "kubectl-client-side-apply")["fieldsV1"]["f:spec"]
                .get("f:replicas")
                .is_some()
        );
        // a different value: 409 with kube's message
        let err = apply(Some(&created), &deploy(3, "a"), "kubectl", "", false, T2).unwrap_err();
        assert_eq!(
            err.message(),
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
        );
        assert_eq!(
            err.causes(),
            json!([{"type": "FieldManagerConflict", "message": "conflict with \"kubectl-client-side-apply\" using apps/v1", "field": ".spec.replicas"}])
        );
        let two = apply(Some(&created), &deploy(3, "b"), "kubectl", "", false, T2).unwrap_err();
        assert!(two.message().starts_with("Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:\n- .spec.replicas\n- .spec.template.spec.containers[name=\"web\"].image"), "{}", two.message());
        // force: the value changes and the other manager loses the field
        let forced = apply(Some(&created), &deploy(3, "a"), "kubectl", "", true, T2).unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        let csa = entry(&forced, "kubectl-client-side-apply");
        assert!(
            csa["fieldsV1"]["f:spec"].get("f:replicas").is_none(),
            "{csa}"
        );
        assert!(entry(&forced, "kubectl")["fieldsV1"]["f:spec"]
            .get("f:replicas")
            .is_some());
    }

    #[test]
    fn updates_move_ownership_to_the_writer() {
        let applied = apply(None, &deploy(2, "a"), "kubectl", "", false, T1).unwrap();
        // kubectl scale: an Update through the scale subresource
        let mut scaled = applied.clone();
        scaled["spec"]["replicas"] = json!(5);
        update(Some(&applied), &mut scaled, "kubectl", "scale", T2);
        let s = entry(&scaled, "kubectl");
        assert_eq!(s["operation"], "Apply", "Apply entries sort first");
        let upd = &scaled["metadata"]["managedFields"][1];
        assert_eq!(
            (upd["operation"].as_str(), upd["subresource"].as_str()),
            (Some("Update"), Some("scale"))
        );
        assert_eq!(upd["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
        assert!(
            s["fieldsV1"]["f:spec"].get("f:replicas").is_none(),
            "the applier lost replicas"
        );
        // applying replicas again now conflicts with the scaler
        let err = apply(Some(&scaled), &deploy(2, "a"), "kubectl", "", false, T2).unwrap_err();
        assert_eq!(
            err.message(),
            "Apply failed with 1 conflict: conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas"
        );
        // an update that changes nothing records nothing
        let mut same = scaled.clone();
        update(
            Some(&scaled),
            &mut same,
            "other",
            "",
            "2030-01-01T00:00:00Z",
        );
        assert_eq!(same, scaled);
        // removing a field takes it from every owner
        let mut unlabeled = scaled.clone();
        unlabeled["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .shift_remove("app");
        update(Some(&scaled), &mut unlabeled, "editor", "", T2);
        assert!(entry(&unlabeled, "kubectl")["fieldsV1"]["f:metadata"].is_null());
    }

    #[test]
    fn update_managers_are_capped_into_ancient_changes() {
        let mut obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {}});
        for i in 0..13 {
            let old = obj.clone();
            obj["data"][format!("k{i}")] = json!("v");
            update(
                Some(&old),
                &mut obj,
                &format!("m{i:02}"),
                "",
                &format!("2026-01-01T00:00:{i:02}Z"),
            );
        }
        let ms = obj["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(ms.len(), MAX_UPDATE_MANAGERS, "{ms:?}");
        let ancient = ms
            .iter()
            .find(|e| e["manager"] == "ancient-changes")
            .unwrap();
        // m00..m03 merged (4 oldest), keeping the newest of their times
        for k in ["k0", "k1", "k2", "k3"] {
            assert!(
                ancient["fieldsV1"]["f:data"]
                    .get(format!("f:{k}"))
                    .is_some(),
                "{ancient}"
            );
        }
        assert_eq!(ancient["time"], "2026-01-01T00:00:03Z");
        assert!(ms.iter().any(|e| e["manager"] == "m12"));
        assert!(!ms.iter().any(|e| e["manager"] == "m03"));
    }

    #[test]
    fn a_client_may_clear_managed_fields() {
        let applied = apply(None, &deploy(2, "a"), "kubectl", "", false, T1).unwrap();
        let mut cleared = applied.clone();
        cleared["metadata"]["managedFields"] = json!([{}]);
        update(Some(&applied), &mut cleared, "kubectl-patch", "", T2);
        assert!(
            cleared["metadata"].get("managedFields").is_none(),
            "{cleared}"
        );
    }

    #[test]
    fn objects_without_managed_fields_belong_to_before_first_apply() {
        let live = deploy(2, "a");
        let err = apply(Some(&live), &deploy(4, "a"), "kubectl", "", false, T1).unwrap_err();
        assert!(
            err.message()
                .contains("\"before-first-apply\" using apps/v1: .spec.replicas"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn sets_and_list_maps_merge_by_key() {
        let mut a = deploy(1, "a");
        a["metadata"]["finalizers"] = json!(["x"]);
        let live = apply(None, &a, "one", "", false, T1).unwrap();
        let mut b = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "finalizers": ["y"]},
            "spec": {"template": {"spec": {"containers": [{"name": "side", "image": "s"}]}}}});
        let merged = apply(Some(&live), &b, "two", "", false, T2).unwrap();
        assert_eq!(merged["metadata"]["finalizers"], json!(["x", "y"]));
        let names: Vec<_> = merged["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["web", "side"]);
        assert!(
            entry(&merged, "two")["fieldsV1"]["f:metadata"]["f:finalizers"]
                .get("v:\"y\"")
                .is_some()
        );
        // manager two drops its container: only that one goes
        b["spec"]["template"]["spec"]["containers"] = json!([]);
        let after = apply(Some(&merged), &b, "two", "", false, T2).unwrap();
        assert_eq!(
            after["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn user_agent_prefix() {
        assert_eq!(
            manager_from_user_agent("kubectl/v1.33.2 (linux/amd64) kubernetes/abc"),
            "kubectl"
        );
        assert_eq!(manager_from_user_agent(""), "unknown");
    }
}
