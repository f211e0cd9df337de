//! Versions that share one storage: `events.k8s.io/v1` Events are stored
//! as core `v1` Events (one key space, as kube does), so `kubectl get
//! events` and `kubectl describe` see events whichever API wrote them. This
//! module owns the mapping between a resource's API form and its stored form.

use minik_apimachinery::{resources, ResourceInfo};
use serde_json::{json, Value};

/// events.k8s.io/v1 field → core/v1 field.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("reportingController", "reportingComponent"),
];

fn is_new_event(info: &ResourceInfo) -> bool {
    info.group == "events.k8s.io" && info.resource == "events"
}

/// The resource whose key space stores `info`.
pub fn storage_info(info: &'static ResourceInfo) -> &'static ResourceInfo {
    if is_new_event(info) {
        resources::find("", "v1", "events").unwrap_or(info)
    } else {
        info
    }
}

fn rename(obj: &mut Value, pairs: impl Iterator<Item = (&'static str, &'static str)>) {
    if let Some(m) = obj.as_object_mut() {
        for (from, to) in pairs {
            if let Some(v) = m.remove(from) {
                m.insert(to.to_string(), v);
            }
        }
    }
}

/// API form → stored form.
pub fn to_storage(info: &ResourceInfo, mut obj: Value) -> Value {
    if is_new_event(info) {
        rename(&mut obj, EVENT_FIELDS.iter().copied());
        obj["apiVersion"] = json!("v1");
        obj["kind"] = json!("Event");
    }
    obj
}

/// Stored form → API form.
pub fn from_storage(info: &ResourceInfo, mut obj: Value) -> Value {
    if is_new_event(info) {
        rename(&mut obj, EVENT_FIELDS.iter().map(|(a, b)| (*b, *a)));
        obj["apiVersion"] = json!("events.k8s.io/v1");
        obj["kind"] = json!("Event");
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_core_storage() {
        let new = resources::find("events.k8s.io", "v1", "events").unwrap();
        assert_eq!(storage_info(new).group, "");
        let ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Pod", "name": "hw"}, "note": "pulled", "reason": "Pulled",
            "reportingController": "kubelet", "deprecatedCount": 2});
        let stored = to_storage(new, ev.clone());
        assert_eq!(stored["apiVersion"], "v1");
        assert_eq!(stored["involvedObject"]["name"], "hw");
        assert_eq!(stored["message"], "pulled");
        assert_eq!(stored["reportingComponent"], "kubelet");
        assert_eq!(stored["count"], 2);
        assert_eq!(from_storage(new, stored), ev);
        let pods = resources::find("", "v1", "pods").unwrap();
        assert_eq!(to_storage(pods, json!({"a": 1})), json!({"a": 1}));
    }
}
