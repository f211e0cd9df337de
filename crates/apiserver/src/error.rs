//! API errors as Kubernetes `Status` objects. Every failure the apiserver
//! answers goes through [`ApiError`], so kubectl always gets a `Status` body
//! with `reason` and `code` and prints e.g.
//! `Error from server (NotFound): pods "x" not found`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use minik_apimachinery::ResourceInfo;
use serde_json::{json, Value};

/// One field-level cause of an `Invalid` error (`details.causes[]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueDuplicate`, ...
    pub reason: &'static str,
    /// The field path, e.g. `spec.containers[0].image`.
    pub field: String,
    /// The message as kube formats it, e.g. `Required value`.
    pub message: String,
}

impl Cause {
    pub fn required(field: impl Into<String>, detail: &str) -> Cause {
        let message = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        Cause {
            reason: "FieldValueRequired",
            field: field.into(),
            message,
        }
    }

    /// `Invalid value: <value rendered like Go's %#v>: detail`.
    pub fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> Cause {
        let mut message = format!("Invalid value: {}", go_value(value));
        if !detail.is_empty() {
            message.push_str(": ");
            message.push_str(detail);
        }
        Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message,
        }
    }

    pub fn duplicate(field: impl Into<String>, value: &Value) -> Cause {
        Cause {
            reason: "FieldValueDuplicate",
            field: field.into(),
            message: format!("Duplicate value: {}", go_value(value)),
        }
    }

    pub fn not_supported(field: impl Into<String>, value: &Value, supported: &[&str]) -> Cause {
        let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
        Cause {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!(
                "Unsupported value: {}: supported values: {}",
                go_value(value),
                list.join(", ")
            ),
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: &str) -> Cause {
        Cause {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {detail}"),
        }
    }

    /// `field: message`, the form used inside the Status message.
    pub fn render(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }
}

/// Renders a JSON value roughly as Go's `%#v`/`%q` does in kube messages.
fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        Value::Object(m) => {
            let inner: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k:?}:{}", go_value(v)))
                .collect();
            format!("map[string]string{{{}}}", inner.join(", "))
        }
        other => other.to_string(),
    }
}

/// An error answered to the client as a `Status` object.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

/// `pods` or `deployments.apps`: how kube names a resource in messages.
pub fn qualified_resource(info: &ResourceInfo) -> String {
    if info.group.is_empty() {
        info.resource.to_string()
    } else {
        format!("{}.{}", info.resource, info.group)
    }
}

/// `Pod` or `Deployment.apps`: how kube names a kind in Invalid messages.
pub fn qualified_kind(info: &ResourceInfo) -> String {
    if info.group.is_empty() {
        info.kind.to_string()
    } else {
        format!("{}.{}", info.kind, info.group)
    }
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = Some(details);
        self
    }

    pub fn not_found(info: &ResourceInfo, name: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", qualified_resource(info), name),
        )
        .with_details(json!({"name": name, "group": info.group, "kind": info.resource}))
    }

    /// 404 for a URL that names no resource at all.
    pub fn path_not_found() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    pub fn already_exists(info: &ResourceInfo, name: &str) -> ApiError {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{}\" already exists", qualified_resource(info), name),
        )
        .with_details(json!({"name": name, "group": info.group, "kind": info.resource}))
    }

    /// The optimistic-concurrency conflict, in kube's exact words.
    pub fn conflict(info: &ResourceInfo, name: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                qualified_resource(info),
                name
            ),
        )
        .with_details(json!({"name": name, "group": info.group, "kind": info.resource}))
    }

    /// A conflict with a custom reason text (e.g. a failed UID precondition).
    pub fn conflict_msg(info: &ResourceInfo, name: &str, why: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": {}",
                qualified_resource(info),
                name,
                why
            ),
        )
        .with_details(json!({"name": name, "group": info.group, "kind": info.resource}))
    }

    /// 422 Invalid with field causes, message `Deployment.apps "x" is invalid: ...`.
    pub fn invalid(info: &ResourceInfo, name: &str, causes: Vec<Cause>) -> ApiError {
        let rendered: Vec<String> = causes.iter().map(Cause::render).collect();
        let body = if rendered.len() == 1 {
            rendered[0].clone()
        } else {
            format!("[{}]", rendered.join(", "))
        };
        let causes_json: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
        ApiError::new(
            422,
            "Invalid",
            format!("{} \"{}\" is invalid: {}", qualified_kind(info), name, body),
        )
        .with_details(
            json!({"name": name, "group": info.group, "kind": info.kind, "causes": causes_json}),
        )
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    pub fn gone(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type:?})"))
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    pub fn service_unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "ServiceUnavailable", message)
    }

    /// The `Status` object for this error.
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

impl From<minik_store::StoreError> for ApiError {
    fn from(e: minik_store::StoreError) -> ApiError {
        ApiError::internal(format!("storage: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.status()).unwrap_or_default();
        let mut resp = (code, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_message_matches_kube() {
        let info = minik_apimachinery::resources::find("", "v1", "pods").unwrap();
        assert_eq!(
            ApiError::not_found(info, "x").message,
            "pods \"x\" not found"
        );
        let d = minik_apimachinery::resources::find("apps", "v1", "deployments").unwrap();
        let c = ApiError::conflict(d, "x");
        assert_eq!(c.code, 409);
        assert_eq!(
            c.message,
            "Operation cannot be fulfilled on deployments.apps \"x\": the object has been modified; please apply your changes to the latest version and try again"
        );
    }

    #[test]
    fn invalid_lists_causes() {
        let d = minik_apimachinery::resources::find("apps", "v1", "deployments").unwrap();
        let e = ApiError::invalid(
            d,
            "x",
            vec![Cause::required("spec.template.spec.containers", "")],
        );
        assert_eq!(
            e.message,
            "Deployment.apps \"x\" is invalid: spec.template.spec.containers: Required value"
        );
        let e = ApiError::invalid(
            d,
            "x",
            vec![
                Cause::required("a", ""),
                Cause::invalid("b", &json!("B"), "bad"),
            ],
        );
        assert_eq!(
            e.message,
            "Deployment.apps \"x\" is invalid: [a: Required value, b: Invalid value: \"B\": bad]"
        );
        assert_eq!(e.status()["details"]["causes"][1]["field"], "b");
    }
}
