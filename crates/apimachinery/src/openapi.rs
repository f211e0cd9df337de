//! OpenAPI v3 documents for the built-in resources, as kubectl needs them
//! for `apply`, `create -f` (strict validation) and `explain`.

use serde_json::Value;

/// `GET /openapi/v3`: `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=H"}, ...}}`.
pub fn v3_index() -> Value {
    serde_json::json!({ "paths": {} })
}

/// `GET /openapi/v3/<gv_path>` where `gv_path` is `api/v1` or `apis/<group>/<version>`.
/// `None` when the group-version is not served.
pub fn v3_group_version(gv_path: &str) -> Option<std::sync::Arc<Value>> {
    let _ = gv_path;
    None
}
