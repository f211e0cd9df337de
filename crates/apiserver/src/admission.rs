//! Admission for compute resources, as kube's `LimitRanger` and
//! `ResourceQuota` plugins: on create (and, for quota, on update) of an
//! object in a namespace, LimitRange defaults are applied to pods
//! (annotation `kubernetes.io/limit-ranger`), LimitRange min / max /
//! maxLimitRequestRatio are enforced for Containers, Pods and PVCs, and every
//! matching ResourceQuota is checked (`used + requested <= hard`) and charged
//! in the same request (optimistic update of the quota's `status.used`,
//! retried on conflict). Violations answer 403 Forbidden with kube's
//! messages. The `resourcequota` controller recomputes `status.used` from
//! scratch; this module only keeps it current between its passes.
//!
//! The quantity arithmetic, the usage of one object in quota resource names
//! and quota scopes are `minik_apimachinery::quota` (shared with the
//! `resourcequota` controller); this module owns the checks and the charging.

use crate::error::{qualified_resource, ApiError};
use crate::rest::storage_prefix;
use crate::{strategy, Inner};
use minik_apimachinery::{resources, ResourceInfo};
use minik_store::StoreError;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

// ------------------------------------------------- quantities, usage, scopes

use minik_apimachinery::quota::{containers, parse_list, pod_resources, render_list};
pub use minik_apimachinery::quota::{
    counted_resource, quota_matches, usage, Quantity, QuantityError, ResourceList,
};

/// `a=1,b=2` in key order, as kube's quota messages print lists.
fn pretty(l: &ResourceList) -> String {
    l.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

// ---------------------------------------------------------------- admission

/// Quota resources that, when a quota tracks them, every container of a
/// pod must set (kube's backward-compatible rule).
const MUST_SPECIFY: [&str; 6] = [
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

/// kube's pod quota constraint: `must specify limits.cpu for: a; requests.cpu for: a,b`.
pub fn pod_quota_constraints(pod: &Value, hard: &ResourceList) -> Result<(), String> {
    let required: BTreeSet<&str> = MUST_SPECIFY
        .iter()
        .copied()
        .filter(|r| hard.contains_key(*r))
        .collect();
    if required.is_empty() {
        return Ok(());
    }
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let spec = pod.get("spec").cloned().unwrap_or(json!({}));
    for key in ["containers", "initContainers"] {
        for c in containers(&spec, key) {
            let req = parse_list(c.pointer("/resources/requests"));
            let lim = parse_list(c.pointer("/resources/limits"));
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            for r in &required {
                let has = match r.split_once('.') {
                    Some(("limits", res)) => lim.contains_key(res),
                    Some((_, res)) => req.contains_key(res),
                    None => req.contains_key(*r),
                };
                if !has {
                    missing.entry(r).or_default().insert(name.to_string());
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| {
            format!(
                "{r} for: {}",
                names.iter().cloned().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

/// One quota check: the new used list, or kube's refusal message.
pub fn check_quota(
    quota_name: &str,
    hard: &ResourceList,
    used: &ResourceList,
    requested: &ResourceList,
) -> Result<ResourceList, String> {
    let mut new_used = used.clone();
    let mut exceeded = Vec::new();
    for (k, h) in hard {
        let Some(req) = requested.get(k) else {
            continue;
        };
        let now = used.get(k).copied().unwrap_or_default();
        let next = now + *req;
        if req.milli() > 0 && next.milli() > h.milli() {
            exceeded.push(k.clone());
        }
        new_used.insert(k.clone(), next);
    }
    if exceeded.is_empty() {
        return Ok(new_used);
    }
    let mask = |l: &ResourceList| -> ResourceList {
        exceeded
            .iter()
            .map(|k| (k.clone(), l.get(k).copied().unwrap_or_default()))
            .collect()
    };
    Err(format!(
        "exceeded quota: {quota_name}, requested: {}, used: {}, limited: {}",
        pretty(&mask(requested)),
        pretty(&mask(used)),
        pretty(&mask(hard))
    ))
}

// ---------------------------------------------------------------- limitrange

/// kube's LimitRange item defaulting (`default` ← `max`, `defaultRequest` ←
/// `default` or `min`), applied when the LimitRange is read.
fn container_defaults(limit_ranges: &[Value]) -> (ResourceList, ResourceList) {
    let (mut req, mut lim) = (ResourceList::new(), ResourceList::new());
    for lr in limit_ranges {
        for item in lr
            .pointer("/spec/limits")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if item.get("type").and_then(Value::as_str) != Some("Container") {
                continue;
            }
            let max = parse_list(item.get("max"));
            let min = parse_list(item.get("min"));
            let mut default = parse_list(item.get("default"));
            for (k, v) in &max {
                default.entry(k.clone()).or_insert(*v);
            }
            let mut default_req = parse_list(item.get("defaultRequest"));
            for (k, v) in default.iter().chain(min.iter()) {
                default_req.entry(k.clone()).or_insert(*v);
            }
            req.extend(default_req);
            lim.extend(default);
        }
    }
    (req, lim)
}

/// Sets missing requests/limits of every container from the LimitRanges;
/// returns the `kubernetes.io/limit-ranger` annotation text, if anything was set.
pub fn apply_limit_range_defaults(pod: &mut Value, limit_ranges: &[Value]) -> Option<String> {
    let (def_req, def_lim) = container_defaults(limit_ranges);
    if def_req.is_empty() && def_lim.is_empty() {
        return None;
    }
    let mut notes = Vec::new();
    for (key, prefix) in [
        ("containers", "container"),
        ("initContainers", "init container"),
    ] {
        let Some(list) = pod
            .pointer_mut(&format!("/spec/{key}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for c in list {
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let res = child(c, "resources");
            let mut set_lim: Vec<&str> = Vec::new();
            let lims = child(res, "limits");
            for (k, v) in &def_lim {
                if !lims.as_object().is_some_and(|m| m.contains_key(k)) {
                    as_map(lims).insert(k.clone(), json!(v.to_string()));
                    set_lim.push(k);
                }
            }
            let mut set_req: Vec<&str> = Vec::new();
            let reqs = child(res, "requests");
            for (k, v) in &def_req {
                if !reqs.as_object().is_some_and(|m| m.contains_key(k)) {
                    as_map(reqs).insert(k.clone(), json!(v.to_string()));
                    set_req.push(k);
                }
            }
            for f in ["limits", "requests"] {
                if res
                    .get(f)
                    .and_then(Value::as_object)
                    .is_some_and(Map::is_empty)
                {
                    as_map(res).remove(f);
                }
            }
            if !set_req.is_empty() {
                notes.push(format!(
                    "{} request for {prefix} {name}",
                    set_req.join(", ")
                ));
            }
            if !set_lim.is_empty() {
                notes.push(format!("{} limit for {prefix} {name}", set_lim.join(", ")));
            }
        }
    }
    if notes.is_empty() {
        return None;
    }
    let text = format!("LimitRanger plugin set: {}", notes.join("; "));
    let ann = child(child(pod, "metadata"), "annotations");
    as_map(ann).insert("kubernetes.io/limit-ranger".into(), json!(text));
    Some(text)
}

fn child<'a>(v: &'a mut Value, key: &str) -> &'a mut Value {
    as_map(v)
        .entry(key.to_string())
        .or_insert_with(|| json!({}));
    let slot = as_map(v).get_mut(key).expect("inserted above");
    if !slot.is_object() {
        *slot = json!({});
    }
    slot
}

fn as_map(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = json!({});
    }
    v.as_object_mut().expect("made an object above")
}

fn min_constraint(
    kind: &str,
    res: &str,
    enforced: Quantity,
    req: &ResourceList,
    lim: &ResourceList,
) -> Option<String> {
    let Some(r) = req.get(res) else {
        return Some(format!(
            "minimum {res} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    if r.milli() < enforced.milli() {
        return Some(format!(
            "minimum {res} usage per {kind} is {enforced}, but request is {r}"
        ));
    }
    match lim.get(res) {
        Some(l) if l.milli() < enforced.milli() => Some(format!(
            "minimum {res} usage per {kind} is {enforced}, but limit is {l}"
        )),
        _ => None,
    }
}

fn max_constraint(
    kind: &str,
    res: &str,
    enforced: Quantity,
    req: &ResourceList,
    lim: &ResourceList,
) -> Option<String> {
    let Some(l) = lim.get(res) else {
        return Some(format!(
            "maximum {res} usage per {kind} is {enforced}.  No limit is specified"
        ));
    };
    if l.milli() > enforced.milli() {
        return Some(format!(
            "maximum {res} usage per {kind} is {enforced}, but limit is {l}"
        ));
    }
    match req.get(res) {
        Some(r) if r.milli() > enforced.milli() => Some(format!(
            "maximum {res} usage per {kind} is {enforced}, but request is {r}"
        )),
        _ => None,
    }
}

fn ratio_constraint(
    kind: &str,
    res: &str,
    enforced: Quantity,
    req: &ResourceList,
    lim: &ResourceList,
) -> Option<String> {
    let r = req.get(res).filter(|q| !q.is_zero());
    let l = lim.get(res).filter(|q| !q.is_zero());
    let Some(r) = r else {
        return Some(format!("{res} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"));
    };
    let Some(l) = l else {
        return Some(format!("{res} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"));
    };
    let observed = l.milli() as f64 / r.milli() as f64;
    if observed * 1000.0 > enforced.milli() as f64 {
        return Some(format!(
            "{res} max limit to request ratio per {kind} is {enforced}, but provided ratio is {observed:.6}"
        ));
    }
    None
}

fn check_item(
    kind: &str,
    item: &Value,
    req: &ResourceList,
    lim: &ResourceList,
    errs: &mut Vec<String>,
) {
    for (res, q) in parse_list(item.get("min")) {
        errs.extend(min_constraint(kind, &res, q, req, lim));
    }
    for (res, q) in parse_list(item.get("max")) {
        errs.extend(max_constraint(kind, &res, q, req, lim));
    }
    for (res, q) in parse_list(item.get("maxLimitRequestRatio")) {
        errs.extend(ratio_constraint(kind, &res, q, req, lim));
    }
}

/// LimitRange min / max / ratio violations of a pod (Container and Pod items).
pub fn pod_limit_violations(pod: &Value, limit_ranges: &[Value]) -> Vec<String> {
    let mut errs = Vec::new();
    let spec = pod.get("spec").cloned().unwrap_or(json!({}));
    for lr in limit_ranges {
        for item in lr
            .pointer("/spec/limits")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match item.get("type").and_then(Value::as_str) {
                Some("Container") => {
                    for key in ["containers", "initContainers"] {
                        for c in containers(&spec, key) {
                            let req = parse_list(c.pointer("/resources/requests"));
                            let lim = parse_list(c.pointer("/resources/limits"));
                            check_item("Container", item, &req, &lim, &mut errs);
                        }
                    }
                }
                Some("Pod") => {
                    let req = pod_resources(pod, "requests");
                    let lim = pod_resources(pod, "limits");
                    check_item("Pod", item, &req, &lim, &mut errs);
                }
                _ => {}
            }
        }
    }
    errs
}

/// LimitRange min / max storage violations of a PersistentVolumeClaim.
pub fn pvc_limit_violations(pvc: &Value, limit_ranges: &[Value]) -> Vec<String> {
    let mut errs = Vec::new();
    let req = parse_list(pvc.pointer("/spec/resources/requests"));
    for lr in limit_ranges {
        for item in lr
            .pointer("/spec/limits")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if item.get("type").and_then(Value::as_str) != Some("PersistentVolumeClaim") {
                continue;
            }
            let kind = "PersistentVolumeClaim";
            for (res, q) in parse_list(item.get("min")) {
                errs.extend(min_constraint(kind, &res, q, &req, &ResourceList::new()));
            }
            for (res, q) in parse_list(item.get("max")) {
                match req.get(&res) {
                    None => errs.push(format!(
                        "maximum {res} usage per {kind} is {q}.  No request is specified"
                    )),
                    Some(r) if r.milli() > q.milli() => errs.push(format!(
                        "maximum {res} usage per {kind} is {q}, but request is {r}"
                    )),
                    _ => {}
                }
            }
        }
    }
    errs
}

/// kube's pod defaulting that quota depends on: a limit without a request
/// makes the request equal to the limit.
pub fn default_requests_from_limits(pod: &mut Value) {
    for key in ["containers", "initContainers"] {
        let Some(list) = pod
            .pointer_mut(&format!("/spec/{key}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for c in list {
            let Some(lims) = c
                .pointer("/resources/limits")
                .and_then(Value::as_object)
                .cloned()
            else {
                continue;
            };
            if lims.is_empty() {
                continue;
            }
            let reqs = child(child(c, "resources"), "requests");
            for (k, v) in lims {
                as_map(reqs).entry(k).or_insert(v);
            }
        }
    }
}

// ------------------------------------------------------------- the plugins

fn forbidden(info: &ResourceInfo, name: &str, errs: &[String]) -> ApiError {
    let msg = if errs.len() == 1 {
        errs[0].clone()
    } else {
        format!("[{}]", errs.join(", "))
    };
    ApiError::forbidden(format!(
        "{} \"{name}\" is forbidden: {msg}",
        qualified_resource(info)
    ))
    .with_details(json!({"name": name, "kind": info.resource}))
}

fn find_resource(group: &str, resource: &str) -> Option<&'static ResourceInfo> {
    resources::builtin_resources()
        .iter()
        .find(|r| r.group == group && r.resource == resource)
}

fn meta_str<'a>(v: &'a Value, f: &str) -> &'a str {
    v.get("metadata")
        .and_then(|m| m.get(f))
        .and_then(Value::as_str)
        .unwrap_or("")
}

impl Inner {
    fn namespace_objects(&self, info: &'static ResourceInfo, ns: &str) -> Vec<Value> {
        let (kvs, _) = self.store.list(&storage_prefix(info, Some(ns)));
        kvs.iter()
            .filter_map(|kv| crate::rest::from_kv(info, kv).ok())
            .collect()
    }

    fn limit_ranges(&self, ns: &str) -> Vec<Value> {
        find_resource("", "limitranges")
            .map(|i| self.namespace_objects(i, ns))
            .unwrap_or_default()
    }

    /// Current usage of quota resource `name` in `ns` among the objects `quota` selects.
    fn fresh_usage(&self, quota: &Value, ns: &str, name: &str) -> Quantity {
        let Some((group, resource)) = counted_resource(name) else {
            return Quantity::default();
        };
        let Some(info) = find_resource(&group, &resource).filter(|i| i.namespaced) else {
            return Quantity::default();
        };
        self.namespace_objects(info, ns)
            .iter()
            .filter(|o| quota_matches(quota, &group, &resource, o))
            .filter_map(|o| usage(&group, &resource, o).get(name).copied())
            .fold(Quantity::default(), |a, b| a + b)
    }

    /// LimitRanger and ResourceQuota on create. Mutates `obj` (LimitRange
    /// defaults); charges quotas unless `dry_run`.
    pub(crate) async fn admit_create(
        &self,
        info: &'static ResourceInfo,
        obj: &mut Value,
        dry_run: bool,
    ) -> Result<(), ApiError> {
        let ns = meta_str(obj, "namespace").to_string();
        if !info.namespaced || ns.is_empty() {
            return Ok(());
        }
        let name = meta_str(obj, "name").to_string();
        if self
            .store
            .get(&crate::rest::storage_key(info, Some(&ns), &name))
            .is_some()
        {
            // refused by the store anyway: charge nothing
            return Err(ApiError::already_exists(info, &name));
        }
        if info.group.is_empty() && info.resource == "pods" {
            let ranges = self.limit_ranges(&ns);
            default_requests_from_limits(obj);
            if apply_limit_range_defaults(obj, &ranges).is_some() {
                let causes = strategy::validate(info, obj, None);
                if !causes.is_empty() {
                    return Err(ApiError::invalid(info, &name, causes));
                }
            }
            let errs = pod_limit_violations(obj, &ranges);
            if !errs.is_empty() {
                return Err(forbidden(info, &name, &errs));
            }
        }
        if info.group.is_empty() && info.resource == "persistentvolumeclaims" {
            let errs = pvc_limit_violations(obj, &self.limit_ranges(&ns));
            if !errs.is_empty() {
                return Err(forbidden(info, &name, &errs));
            }
        }
        let requested = usage(info.group, info.resource, obj);
        self.charge_quotas(info, &ns, &name, obj, requested, dry_run)
            .await
    }

    /// ResourceQuota (and PVC LimitRange) on update: charges what the
    /// update adds (a Service becoming NodePort, a PVC growing).
    pub(crate) async fn admit_update(
        &self,
        info: &'static ResourceInfo,
        new: &Value,
        old: &Value,
        dry_run: bool,
    ) -> Result<(), ApiError> {
        let ns = meta_str(new, "namespace").to_string();
        if !info.namespaced || ns.is_empty() {
            return Ok(());
        }
        let name = meta_str(new, "name").to_string();
        if info.group.is_empty() && info.resource == "persistentvolumeclaims" {
            let errs = pvc_limit_violations(new, &self.limit_ranges(&ns));
            if !errs.is_empty() {
                return Err(forbidden(info, &name, &errs));
            }
        }
        let before = usage(info.group, info.resource, old);
        let delta: ResourceList = usage(info.group, info.resource, new)
            .into_iter()
            .map(|(k, v)| {
                let was = before.get(&k).copied().unwrap_or_default();
                (k, v - was)
            })
            .filter(|(_, d)| d.milli() > 0)
            .collect();
        if delta.is_empty() {
            return Ok(());
        }
        self.charge_quotas(info, &ns, &name, new, delta, dry_run)
            .await
    }

    /// Checks every quota of `ns` that selects `obj` and adds `requested`
    /// to its `status.used`; all or nothing (charged quotas are rolled back
    /// when a later one refuses).
    async fn charge_quotas(
        &self,
        info: &'static ResourceInfo,
        ns: &str,
        name: &str,
        obj: &Value,
        requested: ResourceList,
        dry_run: bool,
    ) -> Result<(), ApiError> {
        let Some(qinfo) = find_resource("", "resourcequotas") else {
            return Ok(());
        };
        let quotas = self.namespace_objects(qinfo, ns);
        let mut charged: Vec<(String, ResourceList)> = Vec::new();
        for q in quotas {
            let qname = meta_str(&q, "name").to_string();
            match self
                .charge_one(qinfo, ns, &qname, info, name, obj, &requested, dry_run)
                .await
            {
                Ok(Some(c)) => charged.push((qname, c)),
                Ok(None) => {}
                Err(e) => {
                    for (qn, c) in charged {
                        self.uncharge(qinfo, ns, &qn, &c).await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// One quota: check and charge; returns what was charged.
    #[allow(clippy::too_many_arguments)]
    async fn charge_one(
        &self,
        qinfo: &'static ResourceInfo,
        ns: &str,
        qname: &str,
        info: &'static ResourceInfo,
        name: &str,
        obj: &Value,
        requested: &ResourceList,
        dry_run: bool,
    ) -> Result<Option<ResourceList>, ApiError> {
        let key = crate::rest::storage_key(qinfo, Some(ns), qname);
        for _ in 0..32 {
            let Some(kv) = self.store.get(&key) else {
                return Ok(None);
            };
            let quota = crate::rest::from_kv(qinfo, &kv)?;
            if !quota_matches(&quota, info.group, info.resource, obj) {
                return Ok(None);
            }
            let hard = parse_list(quota.pointer("/spec/hard"));
            if info.group.is_empty() && info.resource == "pods" && requested.contains_key("pods") {
                if let Err(m) = pod_quota_constraints(obj, &hard) {
                    return Err(forbidden(
                        info,
                        name,
                        &[format!("failed quota: {qname}: {m}")],
                    ));
                }
            }
            let relevant: ResourceList = requested
                .iter()
                .filter(|(k, _)| hard.contains_key(*k))
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            if relevant.is_empty() {
                return Ok(None);
            }
            let mut used = parse_list(quota.pointer("/status/used"));
            for k in relevant.keys() {
                if !used.contains_key(k) {
                    used.insert(k.clone(), self.fresh_usage(&quota, ns, k));
                }
            }
            let new_used = check_quota(qname, &hard, &used, &relevant)
                .map_err(|m| forbidden(info, name, &[m]))?;
            if dry_run {
                return Ok(None);
            }
            let mut updated = quota.clone();
            let status = child(&mut updated, "status");
            let mut all_used = parse_list(status.get("used"));
            all_used.extend(new_used);
            as_map(status).insert("used".into(), render_list(&all_used));
            as_map(status).insert("hard".into(), render_list(&hard));
            if self
                .store_quota(qinfo, &key, &updated, kv.mod_revision)
                .await?
            {
                return Ok(Some(relevant));
            }
        }
        Err(ApiError::conflict(qinfo, qname))
    }

    /// Writes a quota if still at `rev`; false on a conflict.
    async fn store_quota(
        &self,
        qinfo: &'static ResourceInfo,
        key: &str,
        quota: &Value,
        rev: i64,
    ) -> Result<bool, ApiError> {
        let mut q = crate::convert::to_storage(qinfo, quota.clone());
        if let Some(m) = q.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        let bytes = serde_json::to_vec(&q)
            .map_err(|e| ApiError::internal(format!("encoding a ResourceQuota: {e}")))?;
        match self.store.update(key, bytes, Some(rev)).await {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(StoreError::NotFound { .. }) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// Best-effort undo of a charge (the controller corrects any drift).
    async fn uncharge(
        &self,
        qinfo: &'static ResourceInfo,
        ns: &str,
        qname: &str,
        c: &ResourceList,
    ) {
        let key = crate::rest::storage_key(qinfo, Some(ns), qname);
        for _ in 0..8 {
            let Some(kv) = self.store.get(&key) else {
                return;
            };
            let Ok(mut quota) = crate::rest::from_kv(qinfo, &kv) else {
                return;
            };
            let mut used = parse_list(quota.pointer("/status/used"));
            for (k, v) in c {
                if let Some(u) = used.get_mut(k) {
                    *u = *u - *v;
                }
            }
            as_map(child(&mut quota, "status")).insert("used".into(), render_list(&used));
            match self.store_quota(qinfo, &key, &quota, kv.mod_revision).await {
                Ok(false) => continue,
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    fn pod(containers: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": containers}})
    }

    #[test]
    fn quota_check_messages() {
        let hard: ResourceList = [("pods".to_string(), q("2"))].into();
        let used: ResourceList = [("pods".to_string(), q("2"))].into();
        let req: ResourceList = [
            ("pods".to_string(), q("1")),
            ("count/pods".to_string(), q("1")),
        ]
        .into();
        assert_eq!(
            check_quota("q", &hard, &used, &req).unwrap_err(),
            "exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
        );
        let used1: ResourceList = [("pods".to_string(), q("1"))].into();
        let new = check_quota("q", &hard, &used1, &req).unwrap();
        assert_eq!(new["pods"].to_string(), "2");
        let hard2: ResourceList = [
            ("requests.cpu".to_string(), q("1")),
            ("requests.memory".to_string(), q("1Gi")),
        ]
        .into();
        let used2: ResourceList = [
            ("requests.cpu".to_string(), q("800m")),
            ("requests.memory".to_string(), q("512Mi")),
        ]
        .into();
        let req2: ResourceList = [
            ("requests.cpu".to_string(), q("300m")),
            ("requests.memory".to_string(), q("100Mi")),
        ]
        .into();
        assert_eq!(
            check_quota("compute", &hard2, &used2, &req2).unwrap_err(),
            "exceeded quota: compute, requested: requests.cpu=300m, used: requests.cpu=800m, limited: requests.cpu=1"
        );
    }

    #[test]
    fn pods_must_specify_tracked_requests() {
        let hard: ResourceList = [
            ("requests.cpu".to_string(), q("1")),
            ("limits.memory".to_string(), q("1Gi")),
        ]
        .into();
        let p = pod(json!([
            {"name": "a", "resources": {"requests": {"cpu": "100m"}}},
            {"name": "b"},
        ]));
        assert_eq!(
            pod_quota_constraints(&p, &hard).unwrap_err(),
            "must specify limits.memory for: a,b; requests.cpu for: b"
        );
        let ok = pod(
            json!([{"name": "a", "resources": {"requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}}}]),
        );
        assert!(pod_quota_constraints(&ok, &hard).is_ok());
        assert!(pod_quota_constraints(&p, &[("pods".to_string(), q("1"))].into()).is_ok());
    }

    fn range(items: Value) -> Vec<Value> {
        vec![json!({"spec": {"limits": items}})]
    }

    #[test]
    fn limit_range_defaults_and_annotation() {
        let lr = range(
            json!([{"type": "Container", "default": {"cpu": "500m", "memory": "128Mi"}, "defaultRequest": {"cpu": "100m"}}]),
        );
        let mut p = pod(json!([
            {"name": "web"},
            {"name": "side", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}},
        ]));
        let note = apply_limit_range_defaults(&mut p, &lr).unwrap();
        assert_eq!(
            note,
            "LimitRanger plugin set: cpu, memory request for container web; cpu, memory limit for container web; memory request for container side; memory limit for container side"
        );
        assert_eq!(
            p["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
            json!(note)
        );
        assert_eq!(
            p["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            "500m"
        );
        assert_eq!(
            p["spec"]["containers"][0]["resources"]["requests"]["cpu"],
            "100m"
        );
        // defaultRequest falls back to default
        assert_eq!(
            p["spec"]["containers"][0]["resources"]["requests"]["memory"],
            "128Mi"
        );
        assert_eq!(
            p["spec"]["containers"][1]["resources"]["limits"]["cpu"],
            "1"
        );
        let mut untouched = pod(json!([{"name": "a"}]));
        assert!(apply_limit_range_defaults(&mut untouched, &[]).is_none());
        assert!(untouched["metadata"].get("annotations").is_none());
    }

    #[test]
    fn limit_range_violations() {
        let lr = range(json!([
            {"type": "Container", "max": {"cpu": "500m"}, "min": {"memory": "10Mi"}},
            {"type": "Pod", "max": {"memory": "1Gi"}},
        ]));
        let p = pod(
            json!([{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "100Mi"}, "requests": {"cpu": "1", "memory": "100Mi"}}}]),
        );
        assert_eq!(
            pod_limit_violations(&p, &lr),
            vec!["maximum cpu usage per Container is 500m, but limit is 1"]
        );
        let too_much = pod(json!([
            {"name": "a", "resources": {"limits": {"cpu": "100m", "memory": "800Mi"}, "requests": {"memory": "800Mi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "100m", "memory": "800Mi"}, "requests": {"memory": "1Mi"}}},
        ]));
        assert_eq!(
            pod_limit_violations(&too_much, &lr),
            vec![
                "minimum memory usage per Container is 10Mi, but request is 1Mi",
                "maximum memory usage per Pod is 1Gi, but limit is 1600Mi",
            ]
        );
        let none = pod(json!([{"name": "a"}]));
        assert_eq!(
            pod_limit_violations(&none, &lr),
            vec![
                "minimum memory usage per Container is 10Mi.  No request is specified",
                "maximum cpu usage per Container is 500m.  No limit is specified",
                "maximum memory usage per Pod is 1Gi.  No limit is specified",
            ]
        );
        let ratio = range(json!([{"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}}]));
        let p = pod(
            json!([{"name": "a", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "250m"}}}]),
        );
        assert_eq!(
            pod_limit_violations(&p, &ratio),
            vec![
                "cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000"
            ]
        );
        let pvc_lr = range(
            json!([{"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "2Gi"}}]),
        );
        let big = json!({"spec": {"resources": {"requests": {"storage": "5Gi"}}}});
        assert_eq!(
            pvc_limit_violations(&big, &pvc_lr),
            vec!["maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 5Gi"]
        );
        let small = json!({"spec": {"resources": {"requests": {"storage": "100Mi"}}}});
        assert_eq!(
            pvc_limit_violations(&small, &pvc_lr),
            vec!["minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 100Mi"]
        );
    }

    #[test]
    fn requests_default_from_limits() {
        let mut p = pod(
            json!([{"name": "a", "resources": {"limits": {"cpu": "1"}, "requests": {"memory": "1Mi"}}}]),
        );
        default_requests_from_limits(&mut p);
        assert_eq!(
            p["spec"]["containers"][0]["resources"]["requests"],
            json!({"memory": "1Mi", "cpu": "1"})
        );
    }

    #[test]
    fn forbidden_messages_aggregate() {
        let pods = resources::find("", "v1", "pods").unwrap();
        let e = forbidden(pods, "x", &["a".into()]);
        assert_eq!(
            (e.code, e.message.as_str()),
            (403, "pods \"x\" is forbidden: a")
        );
        let e = forbidden(pods, "x", &["a".into(), "b".into()]);
        assert_eq!(e.message, "pods \"x\" is forbidden: [a, b]");
    }

    #[tokio::test]
    async fn quota_is_charged_and_refuses_over_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = minik_store::Store::open(&dir.path().join("store")).unwrap();
        let server = crate::ApiServer::new(store, crate::ApiServerOptions::default())
            .await
            .unwrap();
        let inner = &server.inner;
        let quotas = resources::find("", "v1", "resourcequotas").unwrap();
        let cms = resources::find("", "v1", "configmaps").unwrap();
        inner
            .create_object(
                quotas,
                Some("default"),
                json!({"metadata": {"name": "q"}, "spec": {"hard": {"configmaps": "2"}}}),
                false,
            )
            .await
            .unwrap();
        // the default namespace may already hold configmaps (kube-root-ca.crt is published asynchronously)
        let before = inner.namespace_objects(cms, "default").len();
        let mut created = 0;
        let mut refusal = None;
        for i in 0..4 {
            match inner
                .create_object(
                    cms,
                    Some("default"),
                    json!({"metadata": {"name": format!("c{i}")}}),
                    false,
                )
                .await
            {
                Ok(_) => created += 1,
                Err(e) => {
                    refusal = Some(e);
                    break;
                }
            }
        }
        assert_eq!(before + created, 2);
        let e = refusal.expect("a third configmap is refused");
        assert_eq!(e.code, 403);
        assert!(
            e.message.ends_with("is forbidden: exceeded quota: q, requested: configmaps=1, used: configmaps=2, limited: configmaps=2"),
            "{}",
            e.message
        );
        let (q, _) = inner.read(quotas, Some("default"), "q").unwrap();
        assert_eq!(q["status"]["used"]["configmaps"], "2");
        assert_eq!(q["status"]["hard"]["configmaps"], "2");
    }
}
