//! ResourceQuota controller: keeps every quota's `status.hard` (a copy of
//! `spec.hard`) and `status.used` (recomputed from the objects in its
//! namespace) current, so `kubectl describe quota` shows Used / Hard right.
//! The apiserver's quota admission charges `status.used` at each create;
//! this controller is the source of truth that also releases usage when
//! objects go away or pods finish. It runs on quota changes, on changes to
//! the objects quotas usually count (pods, services, PVCs, configmaps,
//! secrets), and every `RESYNC` for everything else (`count/<r>.<g>`).
//!
//! The usage rules (which object uses what, in quota resource names) are
//! the same as the apiserver's `admission` module, on JSON objects.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ResourceQuota, ResourceQuotaStatus, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::discovery::{builtin_types, ResourceType};
use crate::util::{is_conflict, is_not_found};

/// How often every quota is recomputed even without a triggering change.
pub const RESYNC: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("talking to the API server failed: {0}")]
    Kube(#[from] kube::Error),
}

// ------------------------------------------------------------ quantities

/// A resource quantity held exactly in milli-units (finer values round up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quantity {
    milli: i128,
    binary: bool,
}

const BINARY: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
const DECIMAL: [&str; 6] = ["k", "M", "G", "T", "P", "E"];

impl Quantity {
    fn units(n: i64) -> Quantity {
        Quantity {
            milli: n as i128 * 1000,
            binary: false,
        }
    }

    /// `None` for text that is not a quantity (the apiserver validates them).
    pub fn parse(s: &str) -> Option<Quantity> {
        let t = s.trim();
        let (neg, body) = match t.strip_prefix('-') {
            Some(b) => (true, b),
            None => (false, t.strip_prefix('+').unwrap_or(t)),
        };
        let end = body
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(body.len());
        let (num, mut rest) = body.split_at(end);
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if int.is_empty() && frac.is_empty() || frac.contains('.') {
            return None;
        }
        let digits = format!("{int}{frac}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > 30 {
            return None;
        }
        let mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        let mut exp10 = -(frac.len() as i32);
        let mut pow2 = 0u32;
        let mut binary = false;
        if let Some(e) = rest.strip_prefix(['e', 'E']) {
            let d = e.strip_prefix(['+', '-']).unwrap_or(e);
            if d.starts_with(|c: char| c.is_ascii_digit()) {
                let n: i32 = e.parse().ok()?;
                if n.abs() > 40 {
                    return None;
                }
                exp10 += n;
                rest = "";
            }
        }
        match rest {
            "" => {}
            "n" => exp10 -= 9,
            "u" => exp10 -= 6,
            "m" => exp10 -= 3,
            other => {
                if let Some(i) = DECIMAL.iter().position(|x| *x == other) {
                    exp10 += 3 * (i as i32 + 1);
                } else {
                    let i = BINARY.iter().position(|x| *x == other)?;
                    pow2 = 10 * (i as u32 + 1);
                    binary = true;
                }
            }
        }
        let mut v = mantissa.checked_mul(1i128 << pow2)?;
        let scale = exp10 + 3;
        if scale >= 0 {
            v = v.checked_mul(10i128.checked_pow(scale as u32)?)?;
        } else {
            let d = 10i128.checked_pow((-scale) as u32).unwrap_or(i128::MAX);
            v = (v + d - 1) / d;
        }
        Some(Quantity {
            milli: if neg { -v } else { v },
            binary,
        })
    }

    fn add(self, o: Quantity) -> Quantity {
        Quantity {
            milli: self.milli.saturating_add(o.milli),
            binary: if self.milli == 0 {
                o.binary
            } else {
                self.binary
            },
        }
    }

    fn max(self, o: Quantity) -> Quantity {
        if o.milli > self.milli {
            o
        } else {
            self
        }
    }
}

impl fmt::Display for Quantity {
    /// kube's canonical form: `500m`, `2`, `2k`, `1Gi`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.milli < 0 { "-" } else { "" };
        let m = self.milli.abs();
        if m % 1000 != 0 {
            return write!(f, "{sign}{m}m");
        }
        let v = m / 1000;
        if v == 0 {
            return write!(f, "0");
        }
        if self.binary {
            let best = BINARY
                .iter()
                .enumerate()
                .rfind(|(i, _)| v % (1i128 << (10 * (i + 1))) == 0);
            if let Some((i, suf)) = best {
                return write!(f, "{sign}{}{suf}", v >> (10 * (i + 1)));
            }
            if v < 1024 {
                return write!(f, "{sign}{v}");
            }
        }
        let best = DECIMAL
            .iter()
            .enumerate()
            .rfind(|(i, _)| v % 10i128.pow(3 * (*i as u32 + 1)) == 0);
        match best {
            Some((i, suf)) => write!(f, "{sign}{}{suf}", v / 10i128.pow(3 * (i as u32 + 1))),
            None => write!(f, "{sign}{v}"),
        }
    }
}

pub type ResourceList = BTreeMap<String, Quantity>;

fn parse_list(v: Option<&Value>) -> ResourceList {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    let q = match v {
                        Value::String(s) => Quantity::parse(s),
                        Value::Number(n) => Quantity::parse(&n.to_string()),
                        _ => None,
                    };
                    q.map(|q| (k.clone(), q))
                })
                .collect()
        })
        .unwrap_or_default()
}

// ----------------------------------------------------------------- usage

fn pod_resources(pod: &Value, field: &str) -> ResourceList {
    let mut sum = ResourceList::new();
    let list = |k: &str| {
        pod.pointer(&format!("/spec/{k}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for c in list("containers") {
        for (k, q) in parse_list(c.pointer(&format!("/resources/{field}"))) {
            let e = sum.entry(k).or_default();
            *e = e.add(q);
        }
    }
    for c in list("initContainers") {
        for (k, q) in parse_list(c.pointer(&format!("/resources/{field}"))) {
            let e = sum.entry(k).or_default();
            *e = e.max(q);
        }
    }
    sum
}

/// Whether a pod still uses compute quota (not Succeeded/Failed, not past
/// its deletion grace period).
pub fn pod_counts(pod: &Value) -> bool {
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    if phase == "Succeeded" || phase == "Failed" {
        return false;
    }
    match pod
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
    {
        Some(t) => k8s_openapi::jiff::Timestamp::now() <= t,
        None => true,
    }
}

fn count_name(group: &str, resource: &str) -> String {
    if group.is_empty() {
        format!("count/{resource}")
    } else {
        format!("count/{resource}.{group}")
    }
}

const STANDARD_COMPUTE: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];

/// What one object uses, in quota resource names.
pub fn usage(group: &str, resource: &str, obj: &Value) -> ResourceList {
    let one = Quantity::units(1);
    let mut u = ResourceList::new();
    u.insert(count_name(group, resource), one);
    if !group.is_empty() {
        return u;
    }
    match resource {
        "pods" => {
            if !pod_counts(obj) {
                return u;
            }
            u.insert("pods".into(), one);
            for (k, q) in pod_resources(obj, "requests") {
                if STANDARD_COMPUTE.contains(&k.as_str()) {
                    u.insert(k.clone(), q);
                }
                u.insert(format!("requests.{k}"), q);
            }
            for (k, q) in pod_resources(obj, "limits") {
                u.insert(format!("limits.{k}"), q);
            }
        }
        "services" => {
            u.insert("services".into(), one);
            let ty = obj
                .pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP");
            let ports = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(Vec::len)
                .unwrap_or(0) as i64;
            let lb_ports = obj
                .pointer("/spec/allocateLoadBalancerNodePorts")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            let node_ports = match ty {
                "NodePort" => ports,
                "LoadBalancer" if lb_ports => ports,
                _ => 0,
            };
            u.insert("services.nodeports".into(), Quantity::units(node_ports));
            u.insert(
                "services.loadbalancers".into(),
                Quantity::units((ty == "LoadBalancer") as i64),
            );
        }
        "persistentvolumeclaims" => {
            u.insert("persistentvolumeclaims".into(), one);
            let storage = parse_list(obj.pointer("/spec/resources/requests"))
                .get("storage")
                .copied()
                .unwrap_or_default();
            u.insert("requests.storage".into(), storage);
            if let Some(sc) = obj
                .pointer("/spec/storageClassName")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                let p = format!("{sc}.storageclass.storage.k8s.io/");
                u.insert(format!("{p}requests.storage"), storage);
                u.insert(format!("{p}persistentvolumeclaims"), one);
            }
        }
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => {
            u.insert(resource.to_string(), one);
        }
        _ => {}
    }
    u
}

/// The (group, resource) whose objects a quota resource name counts.
pub fn counted_resource(name: &str) -> Option<(String, String)> {
    let core = |r: &str| Some((String::new(), r.to_string()));
    if let Some(rest) = name.strip_prefix("count/") {
        return match rest.split_once('.') {
            Some((r, g)) => Some((g.to_string(), r.to_string())),
            None => core(rest),
        };
    }
    if name == "pods"
        || STANDARD_COMPUTE.contains(&name)
        || (name.starts_with("requests.") && name != "requests.storage")
        || name.starts_with("limits.")
    {
        return core("pods");
    }
    if name.starts_with("services") {
        return core("services");
    }
    if name == "persistentvolumeclaims"
        || name == "requests.storage"
        || name.contains(".storageclass.storage.k8s.io/")
    {
        return core("persistentvolumeclaims");
    }
    match name {
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => core(name),
        _ => None,
    }
}

fn qos_best_effort(pod: &Value) -> bool {
    ["containers", "initContainers"].iter().all(|k| {
        pod.pointer(&format!("/spec/{k}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .all(|c| {
                ["requests", "limits"].iter().all(|f| {
                    c.pointer(&format!("/resources/{f}"))
                        .and_then(Value::as_object)
                        .is_none_or(|m| m.is_empty())
                })
            })
    })
}

/// Whether a quota's scopes select this object (scoped quotas select pods only).
pub fn quota_matches(quota: &Value, group: &str, resource: &str, obj: &Value) -> bool {
    let mut scopes: Vec<(String, String, Vec<String>)> = quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| (s.to_string(), "Exists".to_string(), Vec::new()))
        .collect();
    for e in quota
        .pointer("/spec/scopeSelector/matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let values = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect();
        scopes.push((s("scopeName"), s("operator"), values));
    }
    if scopes.is_empty() {
        return true;
    }
    if !(group.is_empty() && resource == "pods") {
        return false;
    }
    let terminating = obj
        .pointer("/spec/activeDeadlineSeconds")
        .is_some_and(|v| !v.is_null());
    let best_effort = qos_best_effort(obj);
    let pc = obj
        .pointer("/spec/priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or("");
    scopes
        .iter()
        .all(|(scope, op, values)| match scope.as_str() {
            "Terminating" => terminating,
            "NotTerminating" => !terminating,
            "BestEffort" => best_effort,
            "NotBestEffort" => !best_effort,
            "PriorityClass" => match op.as_str() {
                "In" => values.iter().any(|v| v == pc),
                "NotIn" => !values.iter().any(|v| v == pc),
                "Exists" => !pc.is_empty(),
                "DoesNotExist" => pc.is_empty(),
                _ => false,
            },
            _ => false,
        })
}

/// `status.used` of a quota over the given objects (by (group, resource)).
pub fn compute_used(
    quota: &Value,
    objects: &BTreeMap<(String, String), Vec<Value>>,
) -> ResourceList {
    let hard = parse_list(quota.pointer("/spec/hard"));
    let mut used = ResourceList::new();
    for name in hard.keys() {
        let mut total = Quantity {
            milli: 0,
            binary: hard[name].binary,
        };
        if let Some((g, r)) = counted_resource(name) {
            for o in objects.get(&(g.clone(), r.clone())).into_iter().flatten() {
                if quota_matches(quota, &g, &r, o) {
                    if let Some(q) = usage(&g, &r, o).get(name) {
                        total = total.add(*q);
                    }
                }
            }
        }
        used.insert(name.clone(), total);
    }
    used
}

// ------------------------------------------------------------ controller

fn to_k8s(l: &ResourceList) -> BTreeMap<String, K8sQuantity> {
    l.iter()
        .map(|(k, v)| (k.clone(), K8sQuantity(v.to_string())))
        .collect()
}

/// Finds the API type for a (group, resource), from the built-in list, else discovery.
async fn resource_type(
    client: &Client,
    cache: &mut Vec<ResourceType>,
    group: &str,
    resource: &str,
) -> Option<ResourceType> {
    let find = |types: &[ResourceType]| {
        types
            .iter()
            .find(|t| t.ar.group == group && t.ar.plural == resource && t.namespaced)
            .cloned()
    };
    if let Some(t) = find(cache) {
        return Some(t);
    }
    let discovered = crate::discovery::discover(client).await;
    let found = find(&discovered);
    if found.is_some() {
        *cache = discovered;
    }
    found
}

/// Recomputes one namespace's quotas; writes status only when it changed.
async fn sync_namespace(
    client: &Client,
    types: &mut Vec<ResourceType>,
    ns: &str,
    quotas: Vec<ResourceQuota>,
) -> Result<(), Error> {
    let qapi: Api<ResourceQuota> = Api::namespaced(client.clone(), ns);
    for quota in quotas {
        // up to a few tries: a conflict means admission charged meanwhile
        for _ in 0..5 {
            let Some(fresh) = qapi.get_opt(&quota.name_any()).await? else {
                break;
            };
            let qv = serde_json::to_value(&fresh).unwrap_or(json!({}));
            let hard = parse_list(qv.pointer("/spec/hard"));
            let wanted: BTreeSet<(String, String)> =
                hard.keys().filter_map(|k| counted_resource(k)).collect();
            let mut objects = BTreeMap::new();
            for (g, r) in wanted {
                let Some(t) = resource_type(client, types, &g, &r).await else {
                    continue;
                };
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &t.ar);
                let list = match api.list(&ListParams::default()).await {
                    Ok(l) => l,
                    Err(e) if is_not_found(&e) => continue,
                    Err(e) => return Err(e.into()),
                };
                let items: Vec<Value> = list
                    .items
                    .iter()
                    .filter_map(|o| serde_json::to_value(o).ok())
                    .collect();
                objects.insert((g, r), items);
            }
            let used = compute_used(&qv, &objects);
            let want = ResourceQuotaStatus {
                hard: Some(to_k8s(&hard)),
                used: Some(to_k8s(&used)),
            };
            let same = fresh.status.as_ref().is_some_and(|s| {
                let norm = |m: &Option<BTreeMap<String, K8sQuantity>>| -> ResourceList {
                    parse_list(serde_json::to_value(m).ok().as_ref())
                };
                norm(&s.hard) == hard && norm(&s.used) == used
            });
            if same {
                break;
            }
            let mut updated = fresh.clone();
            updated.status = Some(want);
            match qapi
                .replace_status(&fresh.name_any(), &PostParams::default(), &updated)
                .await
            {
                Ok(_) => break,
                Err(e) if is_conflict(&e) => continue,
                Err(e) if is_not_found(&e) => break,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

async fn sync_all(client: &Client, types: &mut Vec<ResourceType>) -> Result<(), Error> {
    let all: Api<ResourceQuota> = Api::all(client.clone());
    let mut by_ns: BTreeMap<String, Vec<ResourceQuota>> = BTreeMap::new();
    for q in all.list(&ListParams::default()).await?.items {
        by_ns
            .entry(q.namespace().unwrap_or_default())
            .or_default()
            .push(q);
    }
    for (ns, quotas) in by_ns {
        sync_namespace(client, types, &ns, quotas).await?;
    }
    Ok(())
}

/// Wakes `notify` on every event of a watched type.
async fn trigger<K>(api: Api<K>, notify: Arc<Notify>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + fmt::Debug + Send + 'static,
{
    let mut s = watcher(api, watcher::Config::default()).boxed();
    while let Some(ev) = s.next().await {
        match ev {
            Ok(watcher::Event::Apply(_))
            | Ok(watcher::Event::Delete(_))
            | Ok(watcher::Event::InitDone) => notify.notify_one(),
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "resourcequota trigger watch");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Runs the ResourceQuota controller until the task is dropped.
pub async fn run(client: Client) -> anyhow::Result<()> {
    let notify = Arc::new(Notify::new());
    let c = &client;
    let triggers = futures::future::join_all(vec![
        trigger(Api::<ResourceQuota>::all(c.clone()), notify.clone()).boxed(),
        trigger(Api::<Pod>::all(c.clone()), notify.clone()).boxed(),
        trigger(Api::<Service>::all(c.clone()), notify.clone()).boxed(),
        trigger(Api::<PersistentVolumeClaim>::all(c.clone()), notify.clone()).boxed(),
        trigger(Api::<ConfigMap>::all(c.clone()), notify.clone()).boxed(),
        trigger(Api::<Secret>::all(c.clone()), notify.clone()).boxed(),
    ]);
    let worker = async {
        let mut types = builtin_types();
        loop {
            if let Err(e) = sync_all(&client, &mut types).await {
                tracing::warn!(error = %e, "resourcequota sync failed; retrying");
            }
            let _ = tokio::time::timeout(RESYNC, notify.notified()).await;
            // let a burst of changes settle into one pass
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        _ = triggers => {}
        _ = worker => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn quantities() {
        assert_eq!(q("500m").add(q("1")).to_string(), "1500m");
        assert_eq!(q("1Gi").add(q("512Mi")).to_string(), "1536Mi");
        assert_eq!(q("2000").to_string(), "2k");
        assert_eq!(q("1e3").to_string(), "1k");
        assert_eq!(q("1E").to_string(), "1E");
        assert_eq!(q("0.5").to_string(), "500m");
        assert!(Quantity::parse("1.2.3").is_none());
        assert!(Quantity::parse("x").is_none());
        assert!(Quantity::parse("1Qi").is_none());
    }

    fn pod(name: &str, cpu: &str, phase: &str) -> Value {
        json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c",
            "resources": {"requests": {"cpu": cpu}, "limits": {"memory": "64Mi"}}}]},
            "status": {"phase": phase}})
    }

    #[test]
    fn used_counts_live_objects_only() {
        let quota = json!({"spec": {"hard": {"pods": "5", "requests.cpu": "2", "limits.memory": "1Gi",
            "count/pods": "10", "configmaps": "3", "count/deployments.apps": "1", "services.nodeports": "2"}}});
        let mut objects = BTreeMap::new();
        objects.insert(
            (String::new(), "pods".into()),
            vec![
                pod("a", "500m", "Running"),
                pod("b", "250m", "Pending"),
                pod("done", "1", "Succeeded"),
            ],
        );
        objects.insert(
            (String::new(), "configmaps".into()),
            vec![json!({"metadata": {"name": "x"}})],
        );
        objects.insert(
            (String::new(), "services".into()),
            vec![
                json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}}),
                json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80}]}}),
            ],
        );
        let used = compute_used(&quota, &objects);
        let s: BTreeMap<&str, String> = used
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_string()))
            .collect();
        assert_eq!(s["pods"], "2");
        assert_eq!(s["count/pods"], "3", "count/pods includes terminal pods");
        assert_eq!(s["requests.cpu"], "750m");
        assert_eq!(s["limits.memory"], "128Mi");
        assert_eq!(s["configmaps"], "1");
        assert_eq!(s["count/deployments.apps"], "0");
        assert_eq!(s["services.nodeports"], "1");
    }

    #[test]
    fn scoped_quota_counts_only_selected_pods() {
        let quota = json!({"spec": {"hard": {"pods": "5"}, "scopes": ["BestEffort"]}});
        let mut objects = BTreeMap::new();
        objects.insert(
            (String::new(), "pods".into()),
            vec![
                pod("burstable", "1", "Running"),
                json!({"metadata": {"name": "be"}, "spec": {"containers": [{"name": "c"}]}}),
            ],
        );
        assert_eq!(compute_used(&quota, &objects)["pods"].to_string(), "1");
        assert!(!quota_matches(&quota, "", "configmaps", &json!({})));
    }

    #[test]
    fn resource_names_map_to_types() {
        assert_eq!(
            counted_resource("count/deployments.apps"),
            Some(("apps".into(), "deployments".into()))
        );
        assert_eq!(counted_resource("memory"), Some(("".into(), "pods".into())));
        assert_eq!(
            counted_resource("requests.storage"),
            Some(("".into(), "persistentvolumeclaims".into()))
        );
        assert_eq!(counted_resource("nonsense"), None);
    }
}
