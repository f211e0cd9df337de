//! core/v1 Event recorder shared by the API-client components (the
//! scheduler and the controller manager).
//!
//! Writes `Event` objects (involvedObject, reason, message, source component,
//! firstTimestamp/lastTimestamp/count) the way `kubectl describe` expects.
//! Repeats of the same (object, type, reason, message) are aggregated into
//! one Event whose `count` grows, like kube's event correlator. Publishing is
//! best effort: a failure is logged, never returned, so an Event can not make
//! a reconcile fail.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource};

/// Event type `Normal` or `Warning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// (namespace, involved uid, type, reason, message)
type EventKey = (String, String, String, String, String);

/// Records Events from one component (`default-scheduler`,
/// `deployment-controller`, ...).
pub struct Recorder {
    client: Client,
    component: String,
    /// (namespace, involved uid, type, reason, message) -> (event name, count)
    seen: Mutex<HashMap<EventKey, (String, i32)>>,
}

/// An ObjectReference to `obj` for `involvedObject`.
pub fn object_reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    let m = obj.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        uid: m.uid.clone(),
        resource_version: m.resource_version.clone(),
        field_path: None,
    }
}

impl Recorder {
    pub fn new(client: Client, component: &str) -> Self {
        Recorder {
            client,
            component: component.to_string(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Publishes an Event about `obj`. Never fails; errors are logged.
    pub async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        message: &str,
    ) {
        let involved = object_reference(obj);
        self.publish_ref(involved, type_, reason, message).await
    }

    /// Publishes an Event about an already-built ObjectReference.
    pub async fn publish_ref(
        &self,
        involved: ObjectReference,
        type_: EventType,
        reason: &str,
        message: &str,
    ) {
        let ns = involved
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let key = (
            ns.clone(),
            involved.uid.clone().unwrap_or_default(),
            type_.as_str().to_string(),
            reason.to_string(),
            message.to_string(),
        );
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let previous = self.seen.lock().ok().and_then(|m| m.get(&key).cloned());
        if let Some((name, count)) = previous {
            let patch = serde_json::json!({
                "count": count + 1,
                "lastTimestamp": now,
            });
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    if let Ok(mut m) = self.seen.lock() {
                        m.insert(key, (name, count + 1));
                    }
                    return;
                }
                Err(e) => {
                    tracing::debug!(event = %name, error = %e, "could not update event; creating a new one");
                }
            }
        }
        let obj_name = involved.name.clone().unwrap_or_else(|| "unknown".into());
        let nanos = now.0.as_nanosecond();
        let name = format!("{obj_name}.{nanos:x}");
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: involved,
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(type_.as_str().to_string()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now.clone()),
            event_time: None::<MicroTime>,
            count: Some(1),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(format!("{}-minik", self.component)),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &ev).await {
            Ok(_) => {
                if let Ok(mut m) = self.seen.lock() {
                    // Bound the cache: a long-running node must not grow forever.
                    if m.len() > 4096 {
                        m.clear();
                    }
                    m.insert(key, (name, 1));
                }
            }
            Err(kube::Error::Api(s)) if s.code == 403 => {
                // The namespace is going away: nobody will read this event.
                tracing::debug!(reason, error = %s.message, "event not recorded");
            }
            Err(e) => tracing::warn!(reason, error = %e, "could not record event"),
        }
    }
}
