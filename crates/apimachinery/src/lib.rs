//! Pure Kubernetes API machinery: the table of built-in resources,
//! protobuf→JSON decoding, OpenAPI v3 documents, strict field validation and
//! the three patch types. No I/O lives here; everything is unit-tested.

pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod resources;
pub mod schema;
pub mod validation;

pub use resources::{builtin_resources, ResourceInfo};
