//! Pure scheduling logic: quantities, pod resource requests, the filters
//! (node readiness, unschedulable, taints/tolerations, nodeSelector and
//! required node affinity, host ports, resources) and the least-requested
//! score, plus kube's "0/N nodes are available: ..." message.
//!
//! No I/O: every function takes typed objects, so all of it is unit tested
//! without a cluster.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{Container, Node, Pod, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use minik_apimachinery::scheduling;

/// Resource amounts in milli-units (cpu in millicores, memory in milli-bytes),
/// keyed by resource name; `pods` counts pods (x1000 like the rest).
pub type Resources = BTreeMap<String, i128>;

/// Parses a Kubernetes quantity ("100m", "1.5", "128Mi", "1e3", "2G") into
/// milli-units. None for malformed input.
pub fn parse_quantity_milli(q: &str) -> Option<i128> {
    let q = q.trim();
    if q.is_empty() {
        return None;
    }
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    // (multiplier numerator as milli-units, divisor)
    let (mul, div): (i128, i128) = match suffix {
        "" => (1000, 1),
        "n" => (1, 1_000_000),
        "u" => (1, 1000),
        "m" => (1, 1),
        "k" => (1_000_000, 1),
        "M" => (1_000_000_000, 1),
        "G" => (1_000_000_000_000, 1),
        "T" => (1_000_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000_000, 1),
        "E" => (1_000_000_000_000_000_000_000, 1),
        "Ki" => (1024 * 1000, 1),
        "Mi" => (1024 * 1024 * 1000, 1),
        "Gi" => (1024_i128.pow(3) * 1000, 1),
        "Ti" => (1024_i128.pow(4) * 1000, 1),
        "Pi" => (1024_i128.pow(5) * 1000, 1),
        "Ei" => (1024_i128.pow(6) * 1000, 1),
        s if s.starts_with(['e', 'E']) => {
            let exp: u32 = s[1..].parse().ok()?;
            if exp > 18 {
                return None;
            }
            (1000 * 10_i128.pow(exp), 1)
        }
        _ => return None,
    };
    let negative = num.starts_with('-');
    let num = num.trim_start_matches(['+', '-']);
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let int: i128 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().ok()?
    };
    let frac_digits = frac_part.len().min(18) as u32;
    let frac: i128 = if frac_digits == 0 {
        0
    } else {
        frac_part[..frac_digits as usize].parse().ok()?
    };
    let scale = 10_i128.pow(frac_digits);
    // value = (int + frac/scale) * mul / div, rounded up like kube's ScaledValue.
    let total = (int * scale + frac) * mul;
    let denom = scale * div;
    let v = (total + denom - 1) / denom;
    Some(if negative { -v } else { v })
}

fn add_quantities(into: &mut Resources, from: Option<&BTreeMap<String, Quantity>>) {
    for (k, v) in from.into_iter().flatten() {
        if let Some(m) = parse_quantity_milli(&v.0) {
            *into.entry(k.clone()).or_insert(0) += m;
        }
    }
}

fn container_requests(c: &Container) -> Resources {
    let mut r = Resources::new();
    let res = c.resources.as_ref();
    add_quantities(&mut r, res.and_then(|r| r.requests.as_ref()));
    // A limit without a request means request = limit (apiserver defaulting).
    if let Some(limits) = res.and_then(|r| r.limits.as_ref()) {
        for (k, v) in limits {
            if !r.contains_key(k) {
                if let Some(m) = parse_quantity_milli(&v.0) {
                    r.insert(k.clone(), m);
                }
            }
        }
    }
    r
}

/// A pod's effective requests: the sum over containers, raised per resource
/// to the largest init container (they run one at a time), plus overhead and
/// one `pods` slot.
pub fn pod_requests(pod: &Pod) -> Resources {
    let mut sum = Resources::new();
    let Some(spec) = pod.spec.as_ref() else {
        return sum;
    };
    for c in &spec.containers {
        for (k, v) in container_requests(c) {
            *sum.entry(k).or_insert(0) += v;
        }
    }
    for c in spec.init_containers.iter().flatten() {
        for (k, v) in container_requests(c) {
            let e = sum.entry(k).or_insert(0);
            *e = (*e).max(v);
        }
    }
    add_quantities(&mut sum, spec.overhead.as_ref());
    sum.insert("pods".into(), 1000);
    sum
}

/// Node `status.allocatable` (falling back to capacity) in milli-units.
pub fn node_allocatable(node: &Node) -> Resources {
    let mut r = Resources::new();
    let st = node.status.as_ref();
    let alloc = st
        .and_then(|s| s.allocatable.as_ref())
        .or(st.and_then(|s| s.capacity.as_ref()));
    add_quantities(&mut r, alloc);
    r
}

/// Whether a pod counts against its node: bound and not Succeeded/Failed.
pub fn pod_occupies_node(pod: &Pod) -> bool {
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("");
    phase != "Succeeded" && phase != "Failed"
}

pub use minik_apimachinery::scheduling::tolerates;

fn tolerated(pod: &Pod, taint: &Taint) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_ref())
        .is_some_and(|ts| scheduling::tolerated_by(ts, taint))
}

/// nodeSelector labels and requiredDuringSchedulingIgnoredDuringExecution.
pub fn node_affinity_matches(pod: &Pod, node: &Node) -> bool {
    pod.spec
        .as_ref()
        .is_none_or(|spec| scheduling::node_selector_and_affinity_match(spec, node))
}

fn host_ports(pod: &Pod) -> Vec<(String, String, i32)> {
    let Some(spec) = pod.spec.as_ref() else {
        return vec![];
    };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let hp = p.host_port.filter(|h| *h > 0)?;
            let ip = p
                .host_ip
                .clone()
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| "0.0.0.0".into());
            Some((p.protocol.clone().unwrap_or_else(|| "TCP".into()), ip, hp))
        })
        .collect()
}

/// Why a node was filtered out; the Display text is kube's.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    Unschedulable,
    UntoleratedTaint(String),
    NodeAffinity,
    HostPorts,
    Insufficient(String),
    TooManyPods,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Unschedulable => write!(f, "node(s) were unschedulable"),
            Reason::UntoleratedTaint(t) => write!(f, "node(s) had untolerated taint {{{t}}}"),
            Reason::NodeAffinity => write!(f, "node(s) didn't match Pod's node affinity/selector"),
            Reason::HostPorts => write!(
                f,
                "node(s) didn't have free ports for the requested pod ports"
            ),
            Reason::Insufficient(r) => write!(f, "Insufficient {r}"),
            Reason::TooManyPods => write!(f, "Too many pods"),
        }
    }
}

/// A node and what is already on it (bound, non-terminal pods, including
/// ones this scheduler assumed but the cache has not seen bound yet).
pub struct NodeInfo<'a> {
    pub node: &'a Node,
    pub pods: Vec<&'a Pod>,
    /// Requests of assumed pods not in `pods`.
    pub assumed: Vec<Resources>,
}

impl NodeInfo<'_> {
    pub fn requested(&self) -> Resources {
        let mut r = Resources::new();
        for p in &self.pods {
            for (k, v) in pod_requests(p) {
                *r.entry(k).or_insert(0) += v;
            }
        }
        for a in &self.assumed {
            for (k, v) in a {
                *r.entry(k.clone()).or_insert(0) += v;
            }
        }
        r
    }
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// Runs the filters on one node, in kube's plugin order; the reasons it
/// does not fit (empty = fits). Resource checks report every short resource.
pub fn filter(pod: &Pod, info: &NodeInfo) -> Vec<Reason> {
    let node = info.node;
    let spec = node.spec.as_ref();
    if spec.and_then(|s| s.unschedulable).unwrap_or(false) {
        let t = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if !tolerated(pod, &t) {
            return vec![Reason::Unschedulable];
        }
    }
    // A not-Ready node carries the not-ready taint in kube; pods that tolerate it may still go there.
    if !node_ready(node) {
        let t = Taint {
            key: "node.kubernetes.io/not-ready".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if !tolerated(pod, &t) {
            return vec![Reason::UntoleratedTaint(
                "node.kubernetes.io/not-ready: ".into(),
            )];
        }
    }
    for taint in spec.and_then(|s| s.taints.as_ref()).into_iter().flatten() {
        if taint.effect != "NoSchedule" && taint.effect != "NoExecute" {
            continue;
        }
        if !tolerated(pod, taint) {
            return vec![Reason::UntoleratedTaint(format!(
                "{}: {}",
                taint.key,
                taint.value.as_deref().unwrap_or("")
            ))];
        }
    }
    if !node_affinity_matches(pod, node) {
        return vec![Reason::NodeAffinity];
    }
    let wanted: HashSet<(String, String, i32)> = host_ports(pod).into_iter().collect();
    if !wanted.is_empty() {
        let used: Vec<(String, String, i32)> =
            info.pods.iter().flat_map(|p| host_ports(p)).collect();
        let clash = wanted.iter().any(|(proto, ip, port)| {
            used.iter().any(|(up, uip, uport)| {
                up == proto && uport == port && (ip == uip || ip == "0.0.0.0" || uip == "0.0.0.0")
            })
        });
        if clash {
            return vec![Reason::HostPorts];
        }
    }
    let alloc = node_allocatable(node);
    let used = info.requested();
    let want = pod_requests(pod);
    let mut reasons = Vec::new();
    for (res, amount) in &want {
        if *amount <= 0 {
            continue;
        }
        let have = alloc.get(res).copied();
        let used = used.get(res).copied().unwrap_or(0);
        // Unknown resources on the node (an unset allocatable) are not enforced,
        // except cpu/memory/pods which every kubelet reports.
        let Some(have) = have else {
            if res == "cpu" || res == "memory" || res == "pods" {
                continue;
            }
            reasons.push(Reason::Insufficient(res.clone()));
            continue;
        };
        if used + amount > have {
            reasons.push(if res == "pods" {
                Reason::TooManyPods
            } else {
                Reason::Insufficient(res.clone())
            });
        }
    }
    reasons
}

/// Requests used for scoring: kube's non-zero defaults (100m cpu, 200Mi).
fn non_zero(r: &Resources, res: &str) -> i128 {
    match (r.get(res).copied().unwrap_or(0), res) {
        (0, "cpu") => 100,
        (0, "memory") => 200 * 1024 * 1024 * 1000,
        (v, _) => v,
    }
}

/// Least-requested score 0..=100 (kube's `LeastAllocated`, cpu and memory
/// weighted equally) for placing `pod` on the node.
pub fn score(pod: &Pod, info: &NodeInfo) -> i64 {
    let alloc = node_allocatable(info.node);
    let mut used = Resources::new();
    for p in &info.pods {
        let r = pod_requests(p);
        for res in ["cpu", "memory"] {
            *used.entry(res.into()).or_insert(0) += non_zero(&r, res);
        }
    }
    for a in &info.assumed {
        for res in ["cpu", "memory"] {
            *used.entry(res.into()).or_insert(0) += non_zero(a, res);
        }
    }
    let own = pod_requests(pod);
    let mut total = 0i128;
    for res in ["cpu", "memory"] {
        let cap = alloc.get(res).copied().unwrap_or(0);
        let req = used.get(res).copied().unwrap_or(0) + non_zero(&own, res);
        total += if cap <= 0 || req > cap {
            0
        } else {
            (cap - req) * 100 / cap
        };
    }
    (total / 2) as i64
}

/// kube's FitError message: `0/3 nodes are available: 1 Insufficient cpu,
/// 2 node(s) didn't match Pod's node affinity/selector.` Reasons are counted
/// per node and sorted by text.
pub fn fit_error_message(total_nodes: usize, per_node: &[Vec<Reason>]) -> String {
    if total_nodes == 0 {
        return "no nodes available to schedule pods".into();
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for reasons in per_node {
        for r in reasons {
            *counts.entry(r.to_string()).or_insert(0) += 1;
        }
    }
    let parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    format!("0/{total_nodes} nodes are available: {}.", parts.join(", "))
}

/// Filters and scores every node; Ok(node name) for the best fit, or the
/// FitError message.
pub fn select_node(pod: &Pod, infos: &[NodeInfo]) -> Result<String, String> {
    let mut best: Option<(i64, String)> = None;
    let mut failures = Vec::new();
    for info in infos {
        let reasons = filter(pod, info);
        let name = info.node.metadata.name.clone().unwrap_or_default();
        if reasons.is_empty() {
            let s = score(pod, info);
            let better = match &best {
                None => true,
                Some((bs, bn)) => s > *bs || (s == *bs && name < *bn),
            };
            if better {
                best = Some((s, name));
            }
        } else {
            failures.push(reasons);
        }
    }
    best.map(|(_, n)| n)
        .ok_or_else(|| fit_error_message(infos.len(), &failures))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Affinity, ContainerPort, NodeAffinity, NodeCondition, NodeSelector,
        NodeSelectorRequirement, NodeSelectorTerm, NodeSpec, NodeStatus, PodSpec, PodStatus,
        ResourceRequirements, Toleration,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn q(s: &str) -> Quantity {
        Quantity(s.into())
    }

    fn node(name: &str, cpu: &str, mem: &str, pods: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(BTreeMap::from([(
                    "kubernetes.io/hostname".to_string(),
                    name.to_string(),
                )])),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                allocatable: Some(BTreeMap::from([
                    ("cpu".to_string(), q(cpu)),
                    ("memory".to_string(), q(mem)),
                    ("pods".to_string(), q(pods)),
                ])),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn pod(name: &str, cpu: Option<&str>, mem: Option<&str>) -> Pod {
        let mut req = BTreeMap::new();
        if let Some(c) = cpu {
            req.insert("cpu".to_string(), q(c));
        }
        if let Some(m) = mem {
            req.insert("memory".to_string(), q(m));
        }
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        requests: Some(req),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                ..Default::default()
            }),
        }
    }

    fn info<'a>(n: &'a Node, pods: Vec<&'a Pod>) -> NodeInfo<'a> {
        NodeInfo {
            node: n,
            pods,
            assumed: vec![],
        }
    }

    #[test]
    fn quantities_parse_to_milli_units() {
        assert_eq!(parse_quantity_milli("100m"), Some(100));
        assert_eq!(parse_quantity_milli("2"), Some(2000));
        assert_eq!(parse_quantity_milli("1.5"), Some(1500));
        assert_eq!(parse_quantity_milli("0.1"), Some(100));
        assert_eq!(parse_quantity_milli("1Ki"), Some(1024 * 1000));
        assert_eq!(
            parse_quantity_milli("128Mi"),
            Some(128 * 1024 * 1024 * 1000)
        );
        assert_eq!(parse_quantity_milli("1G"), Some(1_000_000_000_000));
        assert_eq!(parse_quantity_milli("1e3"), Some(1_000_000));
        assert_eq!(parse_quantity_milli("110"), Some(110_000));
        assert_eq!(parse_quantity_milli("abc"), None);
        assert_eq!(parse_quantity_milli("1Qi"), None);
    }

    #[test]
    fn init_containers_count_as_max_not_sum() {
        let mut p = pod("p", Some("100m"), Some("10Mi"));
        if let Some(s) = p.spec.as_mut() {
            s.init_containers = Some(vec![Container {
                name: "init".into(),
                resources: Some(ResourceRequirements {
                    requests: Some(BTreeMap::from([("cpu".to_string(), q("500m"))])),
                    ..Default::default()
                }),
                ..Default::default()
            }]);
        }
        let r = pod_requests(&p);
        assert_eq!(r.get("cpu"), Some(&500));
        assert_eq!(r.get("memory"), Some(&(10 * 1024 * 1024 * 1000)));
        assert_eq!(r.get("pods"), Some(&1000));
    }

    #[test]
    fn insufficient_cpu_message_matches_kube() {
        let n = node("minik", "2", "4Gi", "110");
        let big = pod("big", Some("3"), None);
        assert_eq!(
            select_node(&big, &[info(&n, vec![])]),
            Err("0/1 nodes are available: 1 Insufficient cpu.".into())
        );
        let both = pod("both", Some("3"), Some("8Gi"));
        assert_eq!(
            select_node(&both, &[info(&n, vec![])]),
            Err("0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory.".into())
        );
        assert_eq!(
            select_node(&big, &[]),
            Err("no nodes available to schedule pods".into())
        );
    }

    #[test]
    fn bound_pods_consume_resources_but_finished_ones_do_not() {
        let n = node("minik", "1", "4Gi", "110");
        let running = pod("r", Some("700m"), None);
        let p = pod("p", Some("500m"), None);
        assert!(select_node(&p, &[info(&n, vec![&running])]).is_err());
        assert_eq!(select_node(&p, &[info(&n, vec![])]), Ok("minik".into()));
        let assumed = NodeInfo {
            node: &n,
            pods: vec![],
            assumed: vec![pod_requests(&running)],
        };
        assert!(select_node(&p, &[assumed]).is_err());
        let mut done = pod("d", Some("700m"), None);
        done.status = Some(PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        assert!(!pod_occupies_node(&done));
    }

    #[test]
    fn too_many_pods() {
        let n = node("minik", "2", "4Gi", "1");
        let a = pod("a", None, None);
        let b = pod("b", None, None);
        assert_eq!(
            select_node(&b, &[info(&n, vec![&a])]),
            Err("0/1 nodes are available: 1 Too many pods.".into())
        );
    }

    #[test]
    fn taints_need_tolerations() {
        let mut n = node("minik", "2", "4Gi", "110");
        n.spec = Some(NodeSpec {
            taints: Some(vec![Taint {
                key: "dedicated".into(),
                value: Some("gpu".into()),
                effect: "NoSchedule".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let mut p = pod("p", None, None);
        assert_eq!(
            select_node(&p, &[info(&n, vec![])]),
            Err(
                "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}.".into()
            )
        );
        let tol =
            |key: Option<&str>, op: &str, value: Option<&str>, effect: Option<&str>| Toleration {
                key: key.map(Into::into),
                operator: Some(op.into()),
                value: value.map(Into::into),
                effect: effect.map(Into::into),
                ..Default::default()
            };
        let taint = &n
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default()[0];
        assert!(tolerates(
            &tol(Some("dedicated"), "Equal", Some("gpu"), Some("NoSchedule")),
            taint
        ));
        assert!(!tolerates(
            &tol(Some("dedicated"), "Equal", Some("cpu"), None),
            taint
        ));
        assert!(tolerates(
            &tol(Some("dedicated"), "Exists", None, None),
            taint
        ));
        assert!(!tolerates(
            &tol(Some("dedicated"), "Exists", None, Some("NoExecute")),
            taint
        ));
        assert!(tolerates(&tol(None, "Exists", None, None), taint));
        if let Some(s) = p.spec.as_mut() {
            s.tolerations = Some(vec![tol(Some("dedicated"), "Exists", None, None)]);
        }
        assert_eq!(select_node(&p, &[info(&n, vec![])]), Ok("minik".into()));
    }

    #[test]
    fn not_ready_and_unschedulable_nodes_are_skipped() {
        let mut n = node("minik", "2", "4Gi", "110");
        if let Some(st) = n.status.as_mut() {
            st.conditions = Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "False".into(),
                ..Default::default()
            }]);
        }
        let p = pod("p", None, None);
        assert_eq!(
            select_node(&p, &[info(&n, vec![])]),
            Err("0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }.".into())
        );
        let mut cordoned = node("minik", "2", "4Gi", "110");
        cordoned.spec = Some(NodeSpec {
            unschedulable: Some(true),
            ..Default::default()
        });
        assert_eq!(
            select_node(&p, &[info(&cordoned, vec![])]),
            Err("0/1 nodes are available: 1 node(s) were unschedulable.".into())
        );
    }

    #[test]
    fn node_selector_and_required_affinity() {
        let n = node("minik", "2", "4Gi", "110");
        let mut p = pod("p", None, None);
        if let Some(s) = p.spec.as_mut() {
            s.node_selector = Some(BTreeMap::from([(
                "disktype".to_string(),
                "ssd".to_string(),
            )]));
        }
        assert_eq!(
            select_node(&p, &[info(&n, vec![])]),
            Err(
                "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
                    .into()
            )
        );
        let aff = |op: &str, values: &[&str]| Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "kubernetes.io/hostname".into(),
                            operator: op.into(),
                            values: Some(values.iter().map(|s| s.to_string()).collect()),
                        }]),
                        match_fields: None,
                    }],
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut q = pod("q", None, None);
        if let Some(s) = q.spec.as_mut() {
            s.affinity = Some(aff("In", &["minik"]));
        }
        assert!(node_affinity_matches(&q, &n));
        if let Some(s) = q.spec.as_mut() {
            s.affinity = Some(aff("NotIn", &["minik"]));
        }
        assert!(!node_affinity_matches(&q, &n));
        if let Some(s) = q.spec.as_mut() {
            s.affinity = Some(aff("Exists", &[]));
        }
        assert!(node_affinity_matches(&q, &n));
        if let Some(s) = q.spec.as_mut() {
            s.affinity = Some(aff("DoesNotExist", &[]));
        }
        assert!(!node_affinity_matches(&q, &n));
    }

    #[test]
    fn host_port_conflicts() {
        let n = node("minik", "2", "4Gi", "110");
        let with_port = |name: &str| {
            let mut p = pod(name, None, None);
            if let Some(s) = p.spec.as_mut() {
                s.containers[0].ports = Some(vec![ContainerPort {
                    container_port: 80,
                    host_port: Some(8080),
                    ..Default::default()
                }]);
            }
            p
        };
        let a = with_port("a");
        let b = with_port("b");
        assert_eq!(
            select_node(&b, &[info(&n, vec![&a])]),
            Err("0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.".into())
        );
    }

    #[test]
    fn least_requested_prefers_emptier_node() {
        let busy = node("busy", "2", "4Gi", "110");
        let idle = node("idle", "2", "4Gi", "110");
        let hog = pod("hog", Some("1500m"), Some("3Gi"));
        let p = pod("p", Some("100m"), Some("100Mi"));
        assert!(score(&p, &info(&idle, vec![])) > score(&p, &info(&busy, vec![&hog])));
        assert_eq!(
            select_node(&p, &[info(&busy, vec![&hog]), info(&idle, vec![])]),
            Ok("idle".into())
        );
    }
}
