//! Resource quota arithmetic, shared by the apiserver's quota admission and
//! the controllers' `resourcequota` controller: the resource `Quantity`
//! (exact, in milli-units: parse, canonical print, add, subtract, compare),
//! the usage of one object in quota resource names (`pods`, `requests.cpu`,
//! `services.nodeports`, `<class>.storageclass.storage.k8s.io/requests.storage`,
//! `count/deployments.apps`, ...), which objects a quota resource name counts,
//! quota scopes (`spec.scopes`, `spec.scopeSelector`) and a quota's
//! `status.used` over a set of objects. Pure functions on JSON objects.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt;

// ---------------------------------------------------------------- quantities

/// Why a quantity string is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantity {0:?} is not valid: use a number with an optional suffix such as 500m, 2, 1.5Gi or 100M")]
    Invalid(String),
    #[error("quantity {0:?} is too large")]
    TooLarge(String),
}

/// A resource quantity (`500m`, `1Gi`, `2`), held exactly in milli-units.
/// Values finer than a milli-unit are rounded up, as kube's `MilliValue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quantity {
    milli: i128,
    /// Written with a binary suffix (Ki, Mi, ...): printed the same way.
    binary: bool,
}

const BINARY_SUFFIXES: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
const DECIMAL_SUFFIXES: [&str; 6] = ["k", "M", "G", "T", "P", "E"];

impl Quantity {
    pub fn from_units(units: i64) -> Quantity {
        Quantity {
            milli: units as i128 * 1000,
            binary: false,
        }
    }

    pub fn milli(&self) -> i128 {
        self.milli
    }

    pub fn is_zero(&self) -> bool {
        self.milli == 0
    }

    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        let bad = || QuantityError::Invalid(s.to_string());
        let t = s.trim();
        let (neg, body) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        let num_end = body
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(body.len());
        let (num, mut rest) = body.split_at(num_end);
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(bad());
        }
        let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
        let digits = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > 30 {
            return Err(QuantityError::TooLarge(s.to_string()));
        }
        let mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| bad())?
        };
        let mut exp10: i32 = -(frac_part.len() as i32);
        let mut binary_pow = 0u32;
        let mut binary = false;
        // an exponent (1e3) unless the `E` is the exa suffix (1E)
        if let Some(e) = rest.strip_prefix(['e', 'E']) {
            let digits_start = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits_start.starts_with(|c: char| c.is_ascii_digit()) {
                let n: i32 = e.parse().map_err(|_| bad())?;
                if n.abs() > 40 {
                    return Err(QuantityError::TooLarge(s.to_string()));
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
                if let Some(i) = DECIMAL_SUFFIXES.iter().position(|x| *x == other) {
                    exp10 += 3 * (i as i32 + 1);
                } else if let Some(i) = BINARY_SUFFIXES.iter().position(|x| *x == other) {
                    binary_pow = 10 * (i as u32 + 1);
                    binary = true;
                } else {
                    return Err(bad());
                }
            }
        }
        let too_large = || QuantityError::TooLarge(s.to_string());
        let mut v = mantissa
            .checked_mul(1i128 << binary_pow)
            .ok_or_else(too_large)?;
        let scale = exp10 + 3; // to milli-units
        if scale >= 0 {
            v = v
                .checked_mul(10i128.checked_pow(scale as u32).ok_or_else(too_large)?)
                .ok_or_else(too_large)?;
        } else {
            let d = 10i128.checked_pow((-scale) as u32).unwrap_or(i128::MAX);
            v = (v + d - 1) / d; // round up, as kube does
        }
        Ok(Quantity {
            milli: if neg { -v } else { v },
            binary,
        })
    }

    /// Parses a JSON quantity (a string, or a number as some clients send).
    pub fn from_json(v: &Value) -> Result<Quantity, QuantityError> {
        match v {
            Value::String(s) => Quantity::parse(s),
            Value::Number(n) => Quantity::parse(&n.to_string()),
            other => Err(QuantityError::Invalid(other.to_string())),
        }
    }

    pub fn max(self, o: Quantity) -> Quantity {
        if o.milli > self.milli {
            o
        } else {
            self
        }
    }
}

impl std::ops::Add for Quantity {
    type Output = Quantity;

    /// Exact sum; keeps the first operand's format unless it is zero.
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
}

impl std::ops::Sub for Quantity {
    type Output = Quantity;

    fn sub(self, o: Quantity) -> Quantity {
        Quantity {
            milli: self.milli.saturating_sub(o.milli),
            binary: if self.milli == 0 {
                o.binary
            } else {
                self.binary
            },
        }
    }
}

impl fmt::Display for Quantity {
    /// kube's canonical form: `500m`, `2`, `1500`, `2k`, `1Gi`.
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
            let mut best = None;
            for (i, suf) in BINARY_SUFFIXES.iter().enumerate() {
                let d = 1i128 << (10 * (i + 1));
                if v % d == 0 {
                    best = Some((v / d, *suf));
                }
            }
            if let Some((n, suf)) = best {
                return write!(f, "{sign}{n}{suf}");
            }
            if v < 1024 {
                return write!(f, "{sign}{v}");
            }
        }
        let mut best = (v, "");
        for (i, suf) in DECIMAL_SUFFIXES.iter().enumerate() {
            let d = 10i128.pow(3 * (i as u32 + 1));
            if v % d == 0 {
                best = (v / d, suf);
            }
        }
        write!(f, "{sign}{}{}", best.0, best.1)
    }
}

/// Resource name → quantity.
pub type ResourceList = BTreeMap<String, Quantity>;

/// A JSON resource list (`{"cpu": "500m"}`); entries that are not
/// quantities are skipped (the apiserver's validation refuses them).
pub fn parse_list(v: Option<&Value>) -> ResourceList {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Quantity::from_json(v).ok().map(|q| (k.clone(), q)))
                .collect()
        })
        .unwrap_or_default()
}

/// A resource list as JSON, every quantity in canonical form.
pub fn render_list(l: &ResourceList) -> Value {
    Value::Object(
        l.iter()
            .map(|(k, v)| (k.clone(), json!(v.to_string())))
            .collect(),
    )
}

// --------------------------------------------------------------------- usage

/// The containers (`key` = "containers" | "initContainers") of a pod spec.
pub fn containers<'a>(spec: &'a Value, key: &str) -> &'a [Value] {
    spec.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// A pod's effective requests or limits (`field` = "requests" | "limits"):
/// the sum over its containers, raised to any init container's value.
pub fn pod_resources(pod: &Value, field: &str) -> ResourceList {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let pointer = format!("/resources/{field}");
    let mut sum = ResourceList::new();
    for c in containers(spec, "containers") {
        for (k, q) in parse_list(c.pointer(&pointer)) {
            let e = sum.entry(k).or_default();
            *e = *e + q;
        }
    }
    for c in containers(spec, "initContainers") {
        for (k, q) in parse_list(c.pointer(&pointer)) {
            let e = sum.entry(k).or_default();
            *e = e.max(q);
        }
    }
    sum
}

/// Whether a pod still counts against compute quota: not terminal, and not
/// past its deletion grace period.
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
        .and_then(|ts| chrono::DateTime::parse_from_rfc3339(ts).ok())
    {
        Some(t) => chrono::Utc::now() <= t,
        None => true,
    }
}

/// Whether a pod is of QoS class BestEffort: no container (init ones
/// included) sets any request or limit.
pub fn pod_best_effort(pod: &Value) -> bool {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    ["containers", "initContainers"].iter().all(|k| {
        containers(spec, k).iter().all(|c| {
            ["requests", "limits"].iter().all(|f| {
                c.pointer(&format!("/resources/{f}"))
                    .and_then(Value::as_object)
                    .is_none_or(|m| m.is_empty())
            })
        })
    })
}

/// `count/<resource>` for core, `count/<resource>.<group>` otherwise.
pub fn count_name(group: &str, resource: &str) -> String {
    if group.is_empty() {
        format!("count/{resource}")
    } else {
        format!("count/{resource}.{group}")
    }
}

const STANDARD_COMPUTE: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];

/// Core resources a quota counts by their plain name (`configmaps: "3"`).
const COUNTED_BY_NAME: [&str; 4] = [
    "configmaps",
    "secrets",
    "replicationcontrollers",
    "resourcequotas",
];

/// What one object uses, in quota resource names.
pub fn usage(group: &str, resource: &str, obj: &Value) -> ResourceList {
    let one = Quantity::from_units(1);
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
            u.insert(
                "services.nodeports".into(),
                Quantity::from_units(node_ports),
            );
            u.insert(
                "services.loadbalancers".into(),
                Quantity::from_units((ty == "LoadBalancer") as i64),
            );
        }
        "persistentvolumeclaims" => {
            u.insert("persistentvolumeclaims".into(), one);
            let storage = obj
                .pointer("/spec/resources/requests/storage")
                .and_then(|v| Quantity::from_json(v).ok())
                .unwrap_or_default();
            u.insert("requests.storage".into(), storage);
            if let Some(sc) = obj
                .pointer("/spec/storageClassName")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                let prefix = format!("{sc}.storageclass.storage.k8s.io/");
                u.insert(format!("{prefix}requests.storage"), storage);
                u.insert(format!("{prefix}persistentvolumeclaims"), one);
            }
        }
        r if COUNTED_BY_NAME.contains(&r) => {
            u.insert(resource.to_string(), one);
        }
        _ => {}
    }
    u
}

/// The (group, resource) whose objects a quota resource name counts, if any.
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
    if COUNTED_BY_NAME.contains(&name) {
        return core(name);
    }
    None
}

// -------------------------------------------------------------------- scopes

/// Whether a quota's scopes (`spec.scopes`, `spec.scopeSelector`) select
/// this object. Scoped quotas only ever select pods.
pub fn quota_matches(quota: &Value, group: &str, resource: &str, obj: &Value) -> bool {
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect()
    };
    let mut scopes: Vec<(String, String, Vec<String>)> = strings(quota.pointer("/spec/scopes"))
        .into_iter()
        .map(|s| (s, "Exists".to_string(), Vec::new()))
        .collect();
    for e in quota
        .pointer("/spec/scopeSelector/matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        scopes.push((s("scopeName"), s("operator"), strings(e.get("values"))));
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
    let best_effort = pod_best_effort(obj);
    let priority_class = obj
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
                "In" => values.iter().any(|v| v == priority_class),
                "NotIn" => !values.iter().any(|v| v == priority_class),
                "Exists" => !priority_class.is_empty(),
                "DoesNotExist" => priority_class.is_empty(),
                _ => false,
            },
            _ => false,
        })
}

/// A quota's `status.used` over the given objects, keyed by (group,
/// resource): one entry per resource name in `spec.hard`.
pub fn compute_used(
    quota: &Value,
    objects: &BTreeMap<(String, String), Vec<Value>>,
) -> ResourceList {
    let hard = parse_list(quota.pointer("/spec/hard"));
    let mut used = ResourceList::new();
    for name in hard.keys() {
        let mut total = Quantity::default();
        if let Some((g, r)) = counted_resource(name) {
            for o in objects.get(&(g.clone(), r.clone())).into_iter().flatten() {
                if quota_matches(quota, &g, &r, o) {
                    if let Some(q) = usage(&g, &r, o).get(name) {
                        total = total + *q;
                    }
                }
            }
        }
        used.insert(name.clone(), total);
    }
    used
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn quantities_parse_exactly() {
        assert_eq!(q("500m").milli(), 500);
        assert_eq!(q("1").milli(), 1000);
        assert_eq!(q("1.5").milli(), 1500);
        assert_eq!(q("0.1").milli(), 100);
        assert_eq!(q("1Ki").milli(), 1024 * 1000);
        assert_eq!(q("1Gi").milli(), (1i128 << 30) * 1000);
        assert_eq!(q("2k").milli(), 2_000_000);
        assert_eq!(q("1M").milli(), 1_000_000_000);
        assert_eq!(q("1E").milli(), 10i128.pow(21));
        assert_eq!(q("1e3").milli(), 1_000_000);
        assert_eq!(q("1.5e-3").milli(), 2, "finer than a milli-unit rounds up");
        assert_eq!(q("100n").milli(), 1);
        assert_eq!(q("-2").milli(), -2000);
        assert_eq!(q(" 3 ").milli(), 3000);
        for bad in ["", "abc", "1.2.3", "1Qi", "m", "1 Gi", "1e", "--1", "x"] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(matches!(
            Quantity::parse("99999999999999999999999999999999E"),
            Err(QuantityError::TooLarge(_))
        ));
        assert_eq!(Quantity::from_json(&json!(2)).unwrap().milli(), 2000);
    }

    #[test]
    fn quantities_print_canonically() {
        for (input, want) in [
            ("500m", "500m"),
            ("1", "1"),
            ("1000m", "1"),
            ("1.5", "1500m"),
            ("0.5", "500m"),
            ("1500", "1500"),
            ("2000", "2k"),
            ("1e3", "1k"),
            ("1E", "1E"),
            ("1Gi", "1Gi"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("512", "512"),
            ("0", "0"),
            ("100M", "100M"),
            ("-1", "-1"),
        ] {
            assert_eq!(q(input).to_string(), want, "{input}");
        }
    }

    #[test]
    fn quantity_arithmetic() {
        assert_eq!((q("500m") + q("1")).to_string(), "1500m");
        assert_eq!((q("1Gi") + q("1Gi")).to_string(), "2Gi");
        assert_eq!((q("1Gi") + q("512Mi")).to_string(), "1536Mi");
        assert_eq!(
            (q("0") + q("1Gi")).to_string(),
            "1Gi",
            "zero takes the other's format"
        );
        assert_eq!((q("2") - q("500m")).to_string(), "1500m");
        assert_eq!(q("1").max(q("1500m")), q("1500m"));
        assert!(q("0").is_zero() && !q("1m").is_zero());
    }

    #[test]
    fn lists_round_trip_and_skip_garbage() {
        let l = parse_list(Some(&json!({"cpu": "0.5", "memory": 1024, "bad": "x"})));
        assert_eq!(l.len(), 2);
        assert_eq!(render_list(&l), json!({"cpu": "500m", "memory": "1024"}));
        assert!(parse_list(None).is_empty());
    }

    fn pod(containers: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": containers}})
    }

    #[test]
    fn pod_usage_sums_containers_and_respects_init_and_phase() {
        let mut p = pod(json!([
            {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m"}}},
            {"name": "b", "resources": {"requests": {"cpu": "300m"}}},
        ]));
        p["spec"]["initContainers"] =
            json!([{"name": "i", "resources": {"requests": {"cpu": "1"}}}]);
        let u = usage("", "pods", &p);
        assert_eq!(u["pods"].to_string(), "1");
        assert_eq!(u["count/pods"].to_string(), "1");
        assert_eq!(
            u["requests.cpu"].to_string(),
            "1",
            "init container raises the sum"
        );
        assert_eq!(u["cpu"].to_string(), "1");
        assert_eq!(u["requests.memory"].to_string(), "64Mi");
        assert_eq!(u["limits.cpu"].to_string(), "200m");
        p["status"] = json!({"phase": "Succeeded"});
        let u = usage("", "pods", &p);
        assert!(!u.contains_key("pods"), "terminal pods do not count");
        assert!(u.contains_key("count/pods"));
        let mut gone = pod(json!([{"name": "a"}]));
        gone["metadata"]["deletionTimestamp"] = json!("2001-01-01T00:00:00Z");
        assert!(!pod_counts(&gone), "past its grace period");
        gone["metadata"]["deletionTimestamp"] = json!("2999-01-01T00:00:00Z");
        assert!(pod_counts(&gone), "still terminating");
    }

    #[test]
    fn other_usages() {
        let svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}});
        let u = usage("", "services", &svc);
        assert_eq!(u["services"].to_string(), "1");
        assert_eq!(u["services.nodeports"].to_string(), "2");
        assert_eq!(
            usage("", "services", &json!({"spec": {"ports": [{"port": 1}]}}))["services.nodeports"]
                .to_string(),
            "0"
        );
        let pvc = json!({"spec": {"storageClassName": "std", "resources": {"requests": {"storage": "1Gi"}}}});
        let u = usage("", "persistentvolumeclaims", &pvc);
        assert_eq!(u["requests.storage"].to_string(), "1Gi");
        assert_eq!(
            u["std.storageclass.storage.k8s.io/requests.storage"].to_string(),
            "1Gi"
        );
        let u = usage("apps", "deployments", &json!({}));
        assert_eq!(u.keys().collect::<Vec<_>>(), vec!["count/deployments.apps"]);
        let u = usage("", "replicationcontrollers", &json!({}));
        assert_eq!(u["replicationcontrollers"].to_string(), "1");
    }

    #[test]
    fn resource_names_map_to_types() {
        let core = |r: &str| Some((String::new(), r.to_string()));
        assert_eq!(
            counted_resource("count/deployments.apps"),
            Some(("apps".into(), "deployments".into()))
        );
        assert_eq!(counted_resource("count/pods"), core("pods"));
        assert_eq!(counted_resource("requests.cpu"), core("pods"));
        assert_eq!(counted_resource("memory"), core("pods"));
        assert_eq!(
            counted_resource("requests.storage"),
            core("persistentvolumeclaims")
        );
        assert_eq!(
            counted_resource("gold.storageclass.storage.k8s.io/persistentvolumeclaims"),
            core("persistentvolumeclaims")
        );
        assert_eq!(counted_resource("services.nodeports"), core("services"));
        assert_eq!(counted_resource("configmaps"), core("configmaps"));
        assert_eq!(counted_resource("bogus"), None);
    }

    #[test]
    fn scopes_select_pods() {
        let be = pod(json!([{"name": "a"}]));
        let mut burst = pod(json!([{"name": "a", "resources": {"requests": {"cpu": "1"}}}]));
        assert!(pod_best_effort(&be) && !pod_best_effort(&burst));
        let quota = json!({"spec": {"scopes": ["BestEffort"]}});
        assert!(quota_matches(&quota, "", "pods", &be));
        assert!(!quota_matches(&quota, "", "pods", &burst));
        assert!(!quota_matches(&quota, "", "configmaps", &json!({})));
        burst["spec"]["activeDeadlineSeconds"] = json!(10);
        assert!(quota_matches(
            &json!({"spec": {"scopes": ["Terminating", "NotBestEffort"]}}),
            "",
            "pods",
            &burst
        ));
        assert!(!quota_matches(
            &json!({"spec": {"scopes": ["NotTerminating"]}}),
            "",
            "pods",
            &burst
        ));
        assert!(quota_matches(
            &json!({"spec": {}}),
            "",
            "configmaps",
            &json!({})
        ));
        let sel = json!({"spec": {"scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}});
        burst["spec"]["priorityClassName"] = json!("high");
        assert!(quota_matches(&sel, "", "pods", &burst));
        assert!(!quota_matches(&sel, "", "pods", &be));
    }

    fn running_pod(name: &str, cpu: &str, phase: &str) -> Value {
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
                running_pod("a", "500m", "Running"),
                running_pod("b", "250m", "Pending"),
                running_pod("done", "1", "Succeeded"),
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
                running_pod("burstable", "1", "Running"),
                json!({"metadata": {"name": "be"}, "spec": {"containers": [{"name": "c"}]}}),
            ],
        );
        assert_eq!(compute_used(&quota, &objects)["pods"].to_string(), "1");
    }
}
