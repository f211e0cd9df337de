//! Subresources that are not plain object reads/writes: `scale`
//! (autoscaling/v1 Scale over deployments/replicasets/statefulsets/
//! replicationcontrollers and custom resources),
//! `pods/binding` (the scheduler's bind) and `pods/eviction`. They reuse
//! the generic read-modify-write of `rest`.

use crate::error::ApiError;
use crate::request::{decode_json_or_yaml, BodyType, Query, ResourcePath};
use crate::rest::{json_response, now_rfc3339, patch_error, DeleteOptions, UpdateMode};
use crate::selector::LabelSelector;
use crate::Inner;
use axum::http::StatusCode;
use axum::response::Response;
use minik_apimachinery::ResourceInfo;
use serde_json::{json, Value};

fn meta_str<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Sets the value at a JSON pointer, making the objects on the way.
fn set_pointer(obj: &mut Value, ptr: &str, value: Value) {
    let mut cur = obj;
    let parts: Vec<&str> = ptr.trim_start_matches('/').split('/').collect();
    for (i, p) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let Some(m) = cur.as_object_mut() else { return };
        if i + 1 == parts.len() {
            m.insert(p.to_string(), value);
            return;
        }
        cur = m.entry(p.to_string()).or_insert_with(|| json!({}));
    }
}

impl Inner {
    fn scale_of(&self, info: &ResourceInfo, obj: &Value) -> Value {
        if let Some(paths) = self.crds.get(info).and_then(|c| c.scale.clone()) {
            let at = |p: &str| obj.pointer(&crate::crd::json_pointer(p)).cloned();
            let sel = paths
                .label_selector
                .as_deref()
                .and_then(at)
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            return json!({
                "kind": "Scale",
                "apiVersion": "autoscaling/v1",
                "metadata": {
                    "name": meta_str(obj, "name"),
                    "namespace": meta_str(obj, "namespace"),
                    "uid": meta_str(obj, "uid"),
                    "resourceVersion": meta_str(obj, "resourceVersion"),
                    "creationTimestamp": meta_str(obj, "creationTimestamp"),
                },
                "spec": {"replicas": at(&paths.spec_replicas).and_then(|v| v.as_i64()).unwrap_or(0)},
                "status": {"replicas": at(&paths.status_replicas).and_then(|v| v.as_i64()).unwrap_or(0), "selector": sel},
            });
        }
        let sel = obj
            .pointer("/spec/selector")
            .map(|s| {
                // A ReplicationController's selector is a plain label map.
                if info.group.is_empty() && info.resource == "replicationcontrollers" {
                    LabelSelector::from_json(&json!({ "matchLabels": s })).to_string()
                } else {
                    LabelSelector::from_json(s).to_string()
                }
            })
            .unwrap_or_default();
        json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta_str(obj, "name"),
                "namespace": meta_str(obj, "namespace"),
                "uid": meta_str(obj, "uid"),
                "resourceVersion": meta_str(obj, "resourceVersion"),
                "creationTimestamp": meta_str(obj, "creationTimestamp"),
            },
            "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(if info.resource == "deployments" { 1 } else { 0 })},
            "status": {"replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0), "selector": sel},
        })
    }

    pub async fn scale_get(&self, p: &ResourcePath) -> Result<Response, ApiError> {
        let (obj, _) = self.read(
            p.info,
            p.namespace.as_deref(),
            p.name.as_deref().unwrap_or_default(),
        )?;
        Ok(json_response(StatusCode::OK, &self.scale_of(p.info, &obj)))
    }

    /// PUT (a whole Scale) or PATCH (a patch of the Scale) of `/scale`.
    pub(crate) async fn scale_write(
        &self,
        p: &ResourcePath,
        q: &Query,
        put: Option<Value>,
        patch: Option<(BodyType, Value)>,
    ) -> Result<Response, ApiError> {
        let name = p.name.clone().unwrap_or_default();
        let info = p.info;
        let updated = self
            .update_with(info, p.namespace.as_deref(), &name, UpdateMode::Main, q.dry_run()?, |old| {
                let scale = self.scale_of(info, old);
                let new_scale = match (&put, &patch) {
                    (Some(s), _) => s.clone(),
                    (None, Some((ty, patch))) => match ty {
                        BodyType::JsonPatch => minik_apimachinery::patch::json_patch(&scale, patch).map_err(patch_error)?,
                        _ => minik_apimachinery::patch::merge(&scale, patch),
                    },
                    _ => scale.clone(),
                };
                let rv = meta_str(&new_scale, "resourceVersion");
                if !rv.is_empty() && rv != meta_str(old, "resourceVersion") {
                    return Err(ApiError::conflict(info, &name));
                }
                let replicas = new_scale.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
                if replicas < 0 {
                    return Err(ApiError::new(422, "Invalid", format!(
                        "Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"
                    )));
                }
                let mut new = old.clone();
                let spec_path = self
                    .crds
                    .get(info)
                    .and_then(|c| c.scale.clone())
                    .map(|s| crate::crd::json_pointer(&s.spec_replicas))
                    .unwrap_or_else(|| "/spec/replicas".into());
                set_pointer(&mut new, &spec_path, json!(replicas));
                Ok(new)
            })
            .await?;
        Ok(json_response(
            StatusCode::OK,
            &self.scale_of(info, &updated),
        ))
    }

    /// `POST pods/<name>/binding`: what the scheduler calls.
    pub async fn bind(
        &self,
        p: &ResourcePath,
        q: &Query,
        body: &[u8],
    ) -> Result<Response, ApiError> {
        let name = p.name.clone().unwrap_or_default();
        let binding = decode_json_or_yaml(body, false)?;
        let target = binding
            .pointer("/target/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if target.is_empty() {
            return Err(ApiError::new(
                422,
                "Invalid",
                format!("Binding \"{name}\" is invalid: target.name: Required value"),
            ));
        }
        let info = p.info;
        self.update_with(info, p.namespace.as_deref(), &name, UpdateMode::Raw, q.dry_run()?, |old| {
            let current = old.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("");
            if !current.is_empty() {
                return Err(ApiError::conflict_msg(info, &name, &format!("pod {name} is already assigned to node {current:?}")));
            }
            if old.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
                return Err(ApiError::conflict_msg(info, &name, &format!("pod {name} is being deleted, cannot be assigned to a host")));
            }
            let mut new = old.clone();
            new["spec"]["nodeName"] = json!(target);
            let status = new.as_object_mut().map(|m| m.entry("status").or_insert_with(|| json!({})));
            if let Some(status) = status {
                let conds = status.as_object_mut().map(|s| s.entry("conditions").or_insert_with(|| json!([])));
                if let Some(Value::Array(conds)) = conds {
                    conds.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
                    conds.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now_rfc3339()}));
                }
            }
            Ok(new)
        })
        .await?;
        Ok(json_response(
            StatusCode::CREATED,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        ))
    }

    /// `POST pods/<name>/eviction`: a graceful delete (no PodDisruptionBudgets here).
    pub async fn evict(&self, p: &ResourcePath, body: &[u8]) -> Result<Response, ApiError> {
        let ev = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            decode_json_or_yaml(body, false)?
        };
        let mut o = DeleteOptions {
            grace_period: ev
                .pointer("/deleteOptions/gracePeriodSeconds")
                .and_then(Value::as_i64),
            ..Default::default()
        };
        o.dry_run = ev
            .pointer("/deleteOptions/dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        let name = p.name.clone().unwrap_or_default();
        self.delete_object(p.info, p.namespace.as_deref(), &name, &o)
            .await?;
        Ok(json_response(
            StatusCode::CREATED,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        ))
    }
}
