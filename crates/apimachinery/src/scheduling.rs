//! Which nodes a pod may run on, as the scheduler and the DaemonSet
//! controller both decide it: taint toleration (kube's `ToleratesTaint`),
//! node selector terms (`matchExpressions` on labels, `matchFields` on
//! `metadata.name`) and a pod's nodeSelector plus required node affinity.
//! Pure functions of k8s-openapi types; unit tested below.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Taint, Toleration,
};

/// Whether a toleration tolerates a taint (kube's `Toleration.ToleratesTaint`):
/// an empty effect matches every effect, an empty key every key; operator
/// `Exists` matches any value, `Equal` (the default) the same value.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = t.effect.as_deref().filter(|e| !e.is_empty()) {
        if e != taint.effect {
            return false;
        }
    }
    if let Some(k) = t.key.as_deref().filter(|k| !k.is_empty()) {
        if k != taint.key {
            return false;
        }
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerated_by(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether `node` satisfies one node selector term: every `matchExpressions`
/// requirement on its labels and every `matchFields` one (`metadata.name`).
/// An empty term matches nothing (kube semantics).
pub fn node_selector_term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key)))
        && fields.iter().all(|r| {
            let v = (r.key == "metadata.name")
                .then(|| node.metadata.name.clone())
                .flatten();
            requirement_matches(r, v.as_ref())
        })
}

/// Whether `node` satisfies a pod's `nodeSelector` (every label) and its
/// required node affinity (`requiredDuringSchedulingIgnoredDuringExecution`:
/// any one term).
pub fn node_selector_and_affinity_match(spec: &PodSpec, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    if let Some(sel) = &spec.node_selector {
        if !sel.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        Some(r) => r
            .node_selector_terms
            .iter()
            .any(|t| node_selector_term_matches(t, node)),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Affinity, NodeAffinity, NodeSelector};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn tol(key: Option<&str>, op: &str, value: Option<&str>, effect: Option<&str>) -> Toleration {
        Toleration {
            key: key.map(Into::into),
            operator: Some(op.into()),
            value: value.map(Into::into),
            effect: effect.map(Into::into),
            ..Default::default()
        }
    }

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(Into::into),
            effect: effect.into(),
            ..Default::default()
        }
    }

    fn node(name: &str, labels: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn toleration_matching_follows_kube() {
        let gpu = taint("dedicated", Some("gpu"), "NoSchedule");
        let t = |k, op, v, e| tolerates(&tol(k, op, v, e), &gpu);
        assert!(t(
            Some("dedicated"),
            "Equal",
            Some("gpu"),
            Some("NoSchedule")
        ));
        assert!(!t(Some("dedicated"), "Equal", Some("cpu"), None));
        assert!(t(Some("dedicated"), "Exists", None, None));
        assert!(!t(Some("dedicated"), "Exists", None, Some("NoExecute")));
        assert!(!t(Some("other"), "Exists", None, None));
        // An empty key with Exists tolerates every taint.
        assert!(t(None, "Exists", None, None));
        // The default operator is Equal; an unknown one tolerates nothing.
        let mut no_op = tol(Some("dedicated"), "", Some("gpu"), None);
        no_op.operator = None;
        assert!(tolerates(&no_op, &gpu));
        assert!(!t(Some("dedicated"), "Gt", Some("gpu"), None));
        // An empty key with Equal compares values, as kube's ToleratesTaint
        // does (the API refuses such a toleration; the function does not care).
        let bare = taint("k", None, "NoExecute");
        assert!(tolerates(&tol(None, "Equal", None, None), &bare));
        assert!(!t(None, "Equal", None, None));
        assert!(tolerated_by(
            &[
                tol(Some("x"), "Exists", None, None),
                tol(None, "Exists", None, None)
            ],
            &gpu
        ));
        assert!(!tolerated_by(&[], &gpu));
    }

    #[test]
    fn node_selector_terms_on_labels_and_fields() {
        let n = node("n1", &[("zone", "a"), ("cores", "8")]);
        let term = |exprs: Vec<NodeSelectorRequirement>, fields: Vec<NodeSelectorRequirement>| {
            NodeSelectorTerm {
                match_expressions: Some(exprs),
                match_fields: Some(fields),
            }
        };
        let m = |t: NodeSelectorTerm| node_selector_term_matches(&t, &n);
        assert!(!m(term(vec![], vec![])), "an empty term matches nothing");
        assert!(m(term(vec![req("zone", "In", &["a", "b"])], vec![])));
        assert!(!m(term(vec![req("zone", "NotIn", &["a"])], vec![])));
        assert!(m(term(vec![req("rack", "NotIn", &["a"])], vec![])));
        assert!(m(term(vec![req("zone", "Exists", &[])], vec![])));
        assert!(m(term(vec![req("rack", "DoesNotExist", &[])], vec![])));
        assert!(m(term(vec![req("cores", "Gt", &["4"])], vec![])));
        assert!(!m(term(vec![req("cores", "Lt", &["4"])], vec![])));
        assert!(
            !m(term(vec![req("zone", "Gt", &["4"])], vec![])),
            "not a number"
        );
        assert!(m(term(vec![], vec![req("metadata.name", "In", &["n1"])])));
        assert!(!m(term(vec![], vec![req("metadata.name", "In", &["n2"])])));
        assert!(!m(term(
            vec![req("zone", "In", &["a"])],
            vec![req("metadata.name", "In", &["n2"])]
        )));
    }

    #[test]
    fn node_selector_and_required_affinity() {
        let n = node("n1", &[("zone", "a")]);
        let mut spec = PodSpec::default();
        assert!(node_selector_and_affinity_match(&spec, &n));
        spec.node_selector = Some([("zone".to_string(), "b".to_string())].into());
        assert!(!node_selector_and_affinity_match(&spec, &n));
        spec.node_selector = Some([("zone".to_string(), "a".to_string())].into());
        assert!(node_selector_and_affinity_match(&spec, &n));
        let affinity = |terms: Vec<NodeSelectorTerm>| Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: terms,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let by_name = |name: &str| NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![req("metadata.name", "In", &[name])]),
        };
        spec.affinity = Some(affinity(vec![by_name("n2")]));
        assert!(!node_selector_and_affinity_match(&spec, &n));
        // Any one term is enough.
        spec.affinity = Some(affinity(vec![by_name("n2"), by_name("n1")]));
        assert!(node_selector_and_affinity_match(&spec, &n));
    }
}
