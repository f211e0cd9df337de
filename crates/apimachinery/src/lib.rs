//! Pure Kubernetes API machinery: the table of built-in resources,
//! protobuf→JSON decoding, OpenAPI v3 documents and the OpenAPI v2 document
//! (JSON and gnostic protobuf), strict field validation, the three patch
//! types and server-side apply's field ownership (`fieldmanager`:
//! managedFields, conflicts) and resource-quota arithmetic (`quota`:
//! quantities, per-object usage, scopes), and the node-placement rules the
//! scheduler and the DaemonSet controller share (`scheduling`: taints and
//! tolerations, node selectors and affinity). No I/O lives here; everything is
//! unit-tested.
//!
//! `schema` is the shared base: the kinds' JSON schemas (from k8s-openapi's
//! `schemars` output) and the strategic-merge metadata of their fields, read by
//! `validation`, `openapi`, `openapi_v2`, `patch` and `fieldmanager`.

pub mod fieldmanager;
pub mod openapi;
pub mod openapi_v2;
pub mod patch;
pub mod protobuf;
pub mod quota;
pub mod resources;
pub mod scheduling;
pub mod schema;
pub mod validation;

pub use resources::{builtin_resources, ResourceInfo};

/// Builds the cached schemas, OpenAPI documents and protobuf schema now
/// (about a second in a debug build) instead of on the first request that
/// needs them. Optional; call it once at startup, e.g. from a blocking task.
pub fn warm_up() {
    let _ = schema::definitions();
    let _ = openapi::v3_index();
    let _ = protobuf::message_name("v1", "Pod");
}

#[cfg(test)]
mod tests {
    #[test]
    fn warm_up_builds_everything() {
        super::warm_up();
        assert!(super::openapi::v3_group_version("api/v1").is_some());
    }
}
