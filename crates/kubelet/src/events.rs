//! Event recorder: owns the core/v1 Events the kubelet emits about pods
//! (Pulled, Created, Started, Killing, BackOff, Failed, ...), written
//! fire-and-forget so a slow API never stalls a pod worker. Repeats of the
//! same (object, reason, message) within a worker bump `count` on one Event,
//! as the real recorder does.

use chrono::Utc;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// (namespace, uid, reason, message)
type EventKey = (String, String, String, String);

#[derive(Clone)]
pub struct Recorder {
    client: Client,
    node: String,
    /// (namespace, uid, reason, message) → (event name, count).
    seen: Arc<Mutex<HashMap<EventKey, (String, i32)>>>,
}

pub fn pod_ref(pod: &Pod, field_path: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path,
    }
}

impl Recorder {
    pub fn new(client: Client, node: String) -> Self {
        Recorder {
            client,
            node,
            seen: Default::default(),
        }
    }

    pub fn normal(&self, obj: ObjectReference, reason: &str, message: String) {
        self.emit(obj, "Normal", reason, message)
    }

    pub fn warning(&self, obj: ObjectReference, reason: &str, message: String) {
        self.emit(obj, "Warning", reason, message)
    }

    fn emit(&self, obj: ObjectReference, kind: &str, reason: &str, message: String) {
        let ns = obj.namespace.clone().unwrap_or_else(|| "default".into());
        let key = (
            ns.clone(),
            obj.uid.clone().unwrap_or_default(),
            reason.to_string(),
            message.clone(),
        );
        let now = Utc::now();
        let (name, count) = {
            let mut seen = match self.seen.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if seen.len() > 4096 {
                seen.clear();
            }
            let entry = seen.entry(key).or_insert_with(|| {
                let name = format!(
                    "{}.{:x}",
                    obj.name.clone().unwrap_or_default(),
                    now.timestamp_nanos_opt().unwrap_or(0)
                );
                (name, 0)
            });
            entry.1 += 1;
            entry.clone()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let t = crate::status::ktime(now);
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns),
                ..Default::default()
            },
            involved_object: obj,
            reason: Some(reason.to_string()),
            message: Some(message),
            type_: Some(kind.to_string()),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some(self.node.clone()),
            }),
            first_timestamp: Some(t.clone()),
            last_timestamp: Some(t.clone()),
            event_time: None::<MicroTime>,
            count: Some(count),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(self.node.clone()),
            ..Default::default()
        };
        tokio::spawn(async move {
            if count > 1 {
                let patch = serde_json::json!({"count": count, "lastTimestamp": t});
                if api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .is_ok()
                {
                    return;
                }
            }
            if let Err(e) = api.create(&PostParams::default(), &ev).await {
                tracing::debug!("event {name}: {e}");
            }
        });
    }
}
