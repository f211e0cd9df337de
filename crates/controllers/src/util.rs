//! Pure helpers shared by the controllers: label selectors, pod readiness and
//! availability, owner references, int-or-percent resolution, timestamps,
//! ControllerRevision hashing and data (StatefulSet, DaemonSet).
//!
//! Owns no I/O: everything here is a function of typed objects and is unit
//! tested below.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;

/// Errors from the pure helpers.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UtilError {
    #[error("invalid int-or-percent value {0:?}: use an integer or a percentage like \"25%\"")]
    IntOrPercent(String),
}

/// Whether `labels` satisfies a `LabelSelector` (matchLabels AND every
/// matchExpression). An empty selector matches everything, as in kube's
/// `metav1.LabelSelectorAsSelector` for Deployments/ReplicaSets.
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    if let Some(ml) = &sel.match_labels {
        if !map_selector_matches(ml, labels) {
            return false;
        }
    }
    for expr in sel.match_expressions.iter().flatten() {
        let value = labels.get(&expr.key);
        let values = expr.values.as_deref().unwrap_or(&[]);
        let ok = match expr.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            // An unknown operator never matches: safer than selecting everything.
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether every key=value of a map selector (Service `spec.selector`,
/// matchLabels) is present in `labels`.
pub fn map_selector_matches(
    sel: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Renders a selector as a label-selector query string (`a=b,c in (d)`), for
/// list calls. Only used to narrow lists; callers still filter with
/// [`selector_matches`].
pub fn selector_to_query(sel: &LabelSelector) -> String {
    let mut parts: Vec<String> = Vec::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        parts.push(format!("{k}={v}"));
    }
    for e in sel.match_expressions.iter().flatten() {
        let vals = e.values.as_deref().unwrap_or(&[]).join(",");
        match e.operator.as_str() {
            "In" => parts.push(format!("{} in ({vals})", e.key)),
            "NotIn" => parts.push(format!("{} notin ({vals})", e.key)),
            "Exists" => parts.push(e.key.clone()),
            "DoesNotExist" => parts.push(format!("!{}", e.key)),
            _ => {}
        }
    }
    parts.join(",")
}

/// Pod `Ready` condition is True.
pub fn is_pod_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// When the pod became Ready (the Ready condition's lastTransitionTime), if it is Ready.
pub fn pod_ready_since(pod: &Pod) -> Option<Timestamp> {
    ready_condition(pod)
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// Ready for at least `min_ready_seconds` at `now` (kube's `IsPodAvailable`).
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if !is_pod_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    match pod_ready_since(pod) {
        Some(since) => since.as_second() + i64::from(min_ready_seconds) <= now.as_second(),
        None => false,
    }
}

/// Pod phase, "" when unset.
pub fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Not terminated (Succeeded/Failed) and not being deleted: counts toward replicas.
pub fn is_pod_active(pod: &Pod) -> bool {
    let phase = pod_phase(pod);
    phase != "Succeeded" && phase != "Failed" && pod.metadata.deletion_timestamp.is_none()
}

/// The owner reference with `controller: true`, if any.
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

/// Whether `meta` is controlled by the object with `uid`.
pub fn is_controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_ref(meta).is_some_and(|o| o.uid == uid)
}

/// A controller owner reference to `owner` (controller and blockOwnerDeletion
/// set, as kube's `metav1.NewControllerRef`). None when the owner has no uid yet.
pub fn controller_owner_ref<K: Resource<DynamicType = ()>>(owner: &K) -> Option<OwnerReference> {
    let meta = owner.meta();
    Some(OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: meta.name.clone()?,
        uid: meta.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// Resolves an int-or-percent against `total`; percentages round up or down
/// as kube's `intstr.GetScaledValueFromIntOrPercent`.
pub fn resolve_int_or_percent(
    v: &IntOrString,
    total: i32,
    round_up: bool,
) -> Result<i32, UtilError> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let Some(num) = s.strip_suffix('%') else {
                return s
                    .parse::<i32>()
                    .map_err(|_| UtilError::IntOrPercent(s.clone()));
            };
            let pct: i64 = num
                .parse()
                .map_err(|_| UtilError::IntOrPercent(s.clone()))?;
            let prod = pct * i64::from(total);
            let v = if round_up {
                (prod + 99).div_euclid(100)
            } else {
                prod.div_euclid(100)
            };
            Ok(v as i32)
        }
    }
}

/// Now as a `meta/v1.Time`.
pub fn now_time() -> Time {
    Time(Timestamp::now())
}

/// Seconds since the epoch of an optional time; None sorts first.
pub fn time_secs(t: Option<&Time>) -> i64 {
    t.map(|t| t.0.as_second()).unwrap_or(i64::MIN)
}

/// Whether a kube error is an HTTP 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether a write failed because its namespace is being deleted (403 with
/// cause NamespaceTerminating). Controllers skip such writes quietly, as kube's do.
pub fn is_namespace_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403 && (
        s.details.as_ref().is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
            || s.message.contains("because it is being terminated")))
}

/// Whether a kube error is an HTTP 409 (conflict or already exists).
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// FNV-1a 32-bit (kube hashes templates and revisions with it).
pub fn fnv32a(data: &[u8], mut h: u32) -> u32 {
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// kube's `rand.SafeEncodeString`: each character mapped onto an alphabet
/// without vowels and look-alike characters.
pub fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// The hash of a ControllerRevision's data (and collisionCount), as kube's
/// `history.HashControllerRevision`: FNV-1a over the JSON, safe-encoded.
pub fn revision_hash(data: &serde_json::Value, collision_count: Option<i32>) -> String {
    let bytes = serde_json::to_vec(data).unwrap_or_default();
    let mut h = fnv32a(&bytes, 0x811c_9dc5);
    if let Some(c) = collision_count.filter(|c| *c != 0) {
        h = fnv32a(&(c as u32).to_le_bytes(), h);
    }
    safe_encode(&h.to_string())
}

/// The data of a StatefulSet/DaemonSet ControllerRevision: a strategic merge
/// patch that puts `template` back (`kubectl rollout undo` applies it as is).
pub fn template_revision_data(
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
) -> serde_json::Value {
    let mut t = serde_json::to_value(template).unwrap_or_default();
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), serde_json::json!("replace"));
    }
    serde_json::json!({ "spec": { "template": t } })
}

/// The pod template stored in a revision's data (inverse of [`template_revision_data`]).
pub fn template_from_revision_data(
    data: &serde_json::Value,
) -> Option<k8s_openapi::api::core::v1::PodTemplateSpec> {
    let mut t = data.pointer("/spec/template")?.clone();
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// A ControllerRevision name: `<parent>-<hash>`, the parent truncated so the
/// whole fits kube's 253 character limit (as `history.ControllerRevisionName`).
pub fn revision_name(parent: &str, hash: &str) -> String {
    let parent = if parent.len() > 223 {
        &parent[..223]
    } else {
        parent
    };
    format!("{parent}-{hash}")
}

/// Sum of container (and init container) restarts of a pod.
pub fn pod_restarts(pod: &Pod) -> i32 {
    let Some(st) = pod.status.as_ref() else {
        return 0;
    };
    st.container_statuses
        .iter()
        .chain(st.init_container_statuses.iter())
        .flatten()
        .map(|c| c.restart_count)
        .sum()
}

/// The pod's node: `spec.nodeName`, else the node named by a required node
/// affinity `matchFields metadata.name In [node]` (kube's `GetTargetNodeName`).
pub fn pod_target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| r.values.as_ref()?.first().cloned())
}

/// The objects of kind `K` a pod event should wake: its controller if that
/// is a `K`, or, for an orphan, every `K` in its namespace whose (non-empty)
/// selector matches it, so it can be adopted (kube's `getPodJobs`,
/// `getPodStatefulSets`, `getPodDaemonSets`).
pub fn pod_owner_refs<K>(
    pod: &Pod,
    owners: &[std::sync::Arc<K>],
    selector: impl Fn(&K) -> Option<&LabelSelector>,
) -> Vec<kube::runtime::reflector::ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    use kube::runtime::reflector::ObjectRef;
    let ns = pod.metadata.namespace.as_deref();
    if let Some(c) = controller_ref(&pod.metadata) {
        if c.kind != K::kind(&()) {
            return vec![];
        }
        let r = ObjectRef::new(&c.name);
        return vec![match ns {
            Some(ns) => r.within(ns),
            None => r,
        }];
    }
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    owners
        .iter()
        .filter(|o| o.meta().namespace.as_deref() == ns)
        .filter(|o| {
            selector(o).is_some_and(|s| {
                let selective = s.match_labels.as_ref().is_some_and(|m| !m.is_empty())
                    || s.match_expressions.as_ref().is_some_and(|e| !e.is_empty());
                selective && selector_matches(s, labels)
            })
        })
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};

    pub fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("valid test timestamp")
    }

    /// A pod with a phase, readiness (and since when), node, creation time.
    pub fn pod(
        name: &str,
        phase: &str,
        ready: Option<i64>,
        node: Option<&str>,
        created: i64,
    ) -> Pod {
        let mut conds = vec![];
        if let Some(since) = ready {
            conds.push(PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(ts(since))),
                ..Default::default()
            });
        } else {
            conds.push(PodCondition {
                type_: "Ready".into(),
                status: "False".into(),
                ..Default::default()
            });
        }
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                creation_timestamp: Some(Time(ts(created))),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                node_name: node.map(Into::into),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(conds),
                ..Default::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn selector_match_labels_and_expressions() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["a".into(), "b".into()]),
                },
                LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        assert!(selector_matches(
            &sel,
            &labels(&[("app", "web"), ("tier", "b")])
        ));
        assert!(!selector_matches(
            &sel,
            &labels(&[("app", "web"), ("tier", "c")])
        ));
        assert!(!selector_matches(&sel, &labels(&[("app", "web")])));
        assert!(!selector_matches(
            &sel,
            &labels(&[("app", "web"), ("tier", "a"), ("canary", "1")])
        ));
        assert!(!selector_matches(
            &sel,
            &labels(&[("app", "db"), ("tier", "a")])
        ));
        assert_eq!(selector_to_query(&sel), "app=web,tier in (a,b),!canary");
    }

    #[test]
    fn empty_selector_matches_everything() {
        assert!(selector_matches(
            &LabelSelector::default(),
            &labels(&[("x", "y")])
        ));
    }

    #[test]
    fn int_or_percent_rounding() {
        let p = IntOrString::String("25%".into());
        assert_eq!(resolve_int_or_percent(&p, 3, true), Ok(1));
        assert_eq!(resolve_int_or_percent(&p, 3, false), Ok(0));
        assert_eq!(resolve_int_or_percent(&p, 10, true), Ok(3));
        assert_eq!(resolve_int_or_percent(&p, 10, false), Ok(2));
        assert_eq!(
            resolve_int_or_percent(&IntOrString::Int(2), 10, false),
            Ok(2)
        );
        assert!(resolve_int_or_percent(&IntOrString::String("abc%".into()), 3, true).is_err());
    }

    #[test]
    fn availability_honours_min_ready_seconds() {
        let p = pod("a", "Running", Some(100), Some("n"), 0);
        assert!(is_pod_available(&p, 0, ts(100)));
        assert!(!is_pod_available(&p, 10, ts(105)));
        assert!(is_pod_available(&p, 10, ts(110)));
        let not_ready = pod("b", "Running", None, Some("n"), 0);
        assert!(!is_pod_available(&not_ready, 0, ts(100)));
    }

    #[test]
    fn revision_data_round_trips_and_hash_depends_on_collisions() {
        let t = k8s_openapi::api::core::v1::PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            }),
            spec: None,
        };
        let data = template_revision_data(&t);
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        assert_eq!(template_from_revision_data(&data), Some(t.clone()));
        let h0 = revision_hash(&data, None);
        assert_eq!(h0, revision_hash(&data, Some(0)));
        assert_ne!(h0, revision_hash(&data, Some(1)));
        assert!(h0
            .chars()
            .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        let mut t2 = t;
        t2.metadata.as_mut().unwrap().labels = Some(labels(&[("app", "db")]));
        assert_ne!(h0, revision_hash(&template_revision_data(&t2), None));
        assert_eq!(revision_name("web", &h0), format!("web-{h0}"));
        assert_eq!(revision_name(&"x".repeat(300), "h").len(), 225);
    }

    #[test]
    fn target_node_from_name_or_affinity() {
        use k8s_openapi::api::core::v1::{
            Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
        };
        let mut p = pod("a", "Pending", None, None, 0);
        assert_eq!(pod_target_node(&p), None);
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_fields: Some(vec![NodeSelectorRequirement {
                            key: "metadata.name".into(),
                            operator: "In".into(),
                            values: Some(vec!["n1".into()]),
                        }]),
                        match_expressions: None,
                    }],
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(pod_target_node(&p).as_deref(), Some("n1"));
        p.spec.as_mut().unwrap().node_name = Some("n2".into());
        assert_eq!(pod_target_node(&p).as_deref(), Some("n2"));
    }

    #[test]
    fn pod_events_wake_controller_or_matching_owners() {
        use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
        let sts = |name: &str, ns: &str, app: &str| {
            std::sync::Arc::new(StatefulSet {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some(ns.into()),
                    ..Default::default()
                },
                spec: Some(StatefulSetSpec {
                    selector: LabelSelector {
                        match_labels: (!app.is_empty()).then(|| labels(&[("app", app)])),
                        ..Default::default()
                    },
                    ..Default::default()
                }),
                status: None,
            })
        };
        let owners = vec![
            sts("a", "default", "web"),
            sts("b", "other", "web"),
            sts("c", "default", "db"),
            sts("d", "default", ""),
        ];
        fn sel(s: &StatefulSet) -> Option<&LabelSelector> {
            s.spec.as_ref().map(|s| &s.selector)
        }
        let mut p = pod("x", "Running", None, None, 0);
        p.metadata.labels = Some(labels(&[("app", "web")]));
        let names: Vec<String> = pod_owner_refs(&p, &owners, sel)
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(
            names,
            vec!["a"],
            "same namespace, matching, non-empty selector"
        );
        p.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "StatefulSet".into(),
            name: "c".into(),
            uid: "u".into(),
            controller: Some(true),
            block_owner_deletion: None,
        }]);
        let refs = pod_owner_refs(&p, &owners, sel);
        assert_eq!(
            (refs[0].name.as_str(), refs[0].namespace.as_deref()),
            ("c", Some("default"))
        );
        p.metadata.owner_references.as_mut().unwrap()[0].kind = "ReplicaSet".into();
        assert!(pod_owner_refs(&p, &owners, sel).is_empty());
    }

    #[test]
    fn active_excludes_terminal_and_terminating() {
        assert!(is_pod_active(&pod("a", "Running", None, None, 0)));
        assert!(!is_pod_active(&pod("a", "Failed", None, None, 0)));
        let mut p = pod("a", "Running", None, None, 0);
        p.metadata.deletion_timestamp = Some(Time(ts(5)));
        assert!(!is_pod_active(&p));
    }
}
