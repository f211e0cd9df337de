//! The OpenAPI v2 (Swagger 2.0) document of the built-in resources, served at
//! `/openapi/v2` for kubectl 1.27/1.28 (`apply`, `create -f` validation and
//! the `fieldValidation` support check read it) in two forms:
//!
//! - JSON, converted from the same schemas and paths as the `/openapi/v3`
//!   documents (`$ref`s to `#/definitions/…`, `allOf: [$ref]` flattened,
//!   request bodies as `in: body` parameters, `consumes`/`produces`);
//! - protobuf `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`:
//!   the gnostic `openapi.v2.Document` message (google/gnostic
//!   `openapiv2/OpenAPIv2.proto`), encoded here by hand. Vendor extensions
//!   and `default`/`enum`/`example` values are `Any { yaml }` as gnostic writes
//!   them.
//!
//! Both are built once, lazily, with their gzip forms and a content hash for
//! `ETag`. [`decode_document`] turns the protobuf back into the JSON form (the
//! subset of messages we write); tests use it to prove the encoding.

use std::io::Write as _;
use std::sync::OnceLock;

use serde_json::{json, Map, Value};
use sha2::Digest as _;

use crate::openapi;
use crate::schema;

/// The protobuf media type kubectl asks for.
pub const PROTO_MEDIA_TYPE: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// The `Content-Type` Kubernetes answers the protobuf form with.
pub const PROTO_CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// One served form of the document.
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub gzip: Vec<u8>,
}

/// The cached document in both forms and its entity tag.
pub struct V2 {
    pub json: Value,
    pub json_bytes: Encoded,
    pub proto: Encoded,
    /// Upper-case hex SHA-512 of the JSON form (as kube-openapi's ETag).
    pub etag: String,
}

/// The v2 document of the built-in resources, built on first use.
pub fn v2() -> &'static V2 {
    static V2_DOC: OnceLock<V2> = OnceLock::new();
    V2_DOC.get_or_init(|| encode(build(&[])))
}

/// The v2 document of the built-in resources plus more OpenAPI v3
/// group-version documents (the CustomResourceDefinitions' ones): their paths
/// and `components.schemas` join the built-in paths and definitions.
pub fn v2_with(extra_v3: &[&Value]) -> V2 {
    encode(build(extra_v3))
}

fn encode(json: Value) -> V2 {
    let jb = serde_json::to_vec(&json).unwrap_or_default();
    let etag = hex::encode_upper(sha2::Sha512::digest(&jb));
    let pb = encode_document(&json);
    V2 {
        json_bytes: Encoded {
            gzip: gzip(&jb),
            bytes: jb,
        },
        proto: Encoded {
            gzip: gzip(&pb),
            bytes: pb,
        },
        json,
        etag,
    }
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // writing into a Vec cannot fail
    let _ = e.write_all(b);
    e.finish().unwrap_or_default()
}

// ---------------------------------------------------------------- JSON form

const V3_PREFIX: &str = "#/components/schemas/";

/// A v3 schema in v2 form: refs to `#/definitions/`, `allOf: [$ref]` → `$ref`,
/// Kubernetes' v2 spelling of int-or-string and quantity.
fn v2_schema(s: &Value) -> Value {
    match s {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                match k.as_str() {
                    "$ref" => {
                        let r = v.as_str().unwrap_or("");
                        let name = r.strip_prefix(V3_PREFIX).unwrap_or(r);
                        out.insert(k.clone(), json!(format!("#/definitions/{name}")));
                    }
                    "allOf" if v.as_array().is_some_and(|a| a.len() == 1) => {
                        if let Value::Object(inner) = v2_schema(&v[0]) {
                            for (ik, iv) in inner {
                                out.entry(ik).or_insert(iv);
                            }
                        }
                    }
                    "x-kubernetes-int-or-string" => {
                        out.insert("type".into(), json!("string"));
                        out.insert("format".into(), json!("int-or-string"));
                    }
                    // not in Swagger 2.0 (kube's v2 leaves such types arbitrary)
                    "nullable" | "oneOf" | "anyOf" | "not" => {}
                    "properties" | "patternProperties" | "definitions" => {
                        let props: Map<String, Value> = v
                            .as_object()
                            .map(|p| p.iter().map(|(n, s)| (n.clone(), v2_schema(s))).collect())
                            .unwrap_or_default();
                        out.insert(k.clone(), Value::Object(props));
                    }
                    _ if k.starts_with("x-") => {
                        out.insert(k.clone(), v.clone());
                    }
                    _ if v.is_object() => {
                        out.insert(k.clone(), v2_schema(v));
                    }
                    "allOf" | "items" => {
                        let a = v.as_array().into_iter().flatten().map(v2_schema);
                        out.insert(k.clone(), Value::Array(a.collect()));
                    }
                    _ => {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fn v2_definitions() -> Map<String, Value> {
    let mut defs = Map::new();
    for (name, s) in schema::definitions() {
        let mut d = v2_schema(s);
        if name == "io.k8s.apimachinery.pkg.api.resource.Quantity" {
            d["type"] = json!("string");
        }
        defs.insert(name.clone(), d);
    }
    defs
}

/// A v3 `parameters` entry in v2 form (`schema.type` inlined).
fn v2_parameter(p: &Value) -> Value {
    let mut out = Map::new();
    for (k, v) in p.as_object().into_iter().flatten() {
        if k == "schema" {
            for (sk, sv) in v.as_object().into_iter().flatten() {
                out.insert(sk.clone(), sv.clone());
            }
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

fn first_schema(content: &Value) -> Option<Value> {
    content
        .as_object()?
        .values()
        .find_map(|c| c.get("schema"))
        .map(v2_schema)
}

fn v2_operation(op: &Value) -> Value {
    let mut out = Map::new();
    let mut params: Vec<Value> = Vec::new();
    let mut consumes: Vec<Value> = Vec::new();
    if let Some(body) = op.get("requestBody") {
        consumes = body["content"]
            .as_object()
            .map(|c| c.keys().map(|k| json!(k)).collect())
            .unwrap_or_default();
        if let Some(s) = first_schema(&body["content"]) {
            params.push(json!({"name": "body", "in": "body", "required": true, "schema": s}));
        }
    }
    for p in op["parameters"].as_array().into_iter().flatten() {
        params.push(v2_parameter(p));
    }
    let mut produces: Vec<Value> = Vec::new();
    let mut responses = Map::new();
    for (code, r) in op["responses"].as_object().into_iter().flatten() {
        let mut resp = Map::new();
        resp.insert(
            "description".into(),
            r.get("description").cloned().unwrap_or(json!("")),
        );
        if let Some(content) = r.get("content") {
            for t in content.as_object().into_iter().flatten().map(|(k, _)| k) {
                if !produces.iter().any(|p| p == t) {
                    produces.push(json!(t));
                }
            }
            if let Some(s) = first_schema(content) {
                resp.insert("schema".into(), s);
            }
        }
        responses.insert(code.clone(), Value::Object(resp));
    }
    for k in ["description", "operationId", "tags"] {
        if let Some(v) = op.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    if !consumes.is_empty() {
        out.insert("consumes".into(), Value::Array(consumes));
    }
    if !produces.is_empty() {
        out.insert("produces".into(), Value::Array(produces));
    }
    out.insert("schemes".into(), json!(["https"]));
    if !params.is_empty() {
        out.insert("parameters".into(), Value::Array(params));
    }
    out.insert("responses".into(), Value::Object(responses));
    for (k, v) in op.as_object().into_iter().flatten() {
        if k.starts_with("x-") {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// Adds a v3 group-version document's paths (in v2 form) to `paths`.
fn add_paths(doc: &Value, paths: &mut Map<String, Value>) {
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        let mut out = Map::new();
        for (k, v) in item.as_object().into_iter().flatten() {
            if k == "parameters" {
                let ps = v.as_array().into_iter().flatten().map(v2_parameter);
                out.insert(k.clone(), Value::Array(ps.collect()));
            } else {
                out.insert(k.clone(), v2_operation(v));
            }
        }
        paths.insert(path.clone(), Value::Object(out));
    }
}

fn build(extra_v3: &[&Value]) -> Value {
    let mut paths = Map::new();
    let index = openapi::v3_index();
    for gv in index["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
    {
        if let Some(doc) = openapi::v3_group_version(gv) {
            add_paths(&doc, &mut paths);
        }
    }
    let mut definitions = v2_definitions();
    for doc in extra_v3 {
        add_paths(doc, &mut paths);
        for (name, s) in doc["components"]["schemas"]
            .as_object()
            .into_iter()
            .flatten()
        {
            definitions
                .entry(name.clone())
                .or_insert_with(|| v2_schema(s));
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.33.2"},
        "paths": paths,
        "definitions": definitions,
    })
}

// ------------------------------------------------------------ protobuf form

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

fn put_varint(b: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        b.push((v as u8) | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

fn put_tag(b: &mut Vec<u8>, field: u32, wt: u8) {
    put_varint(b, (u64::from(field) << 3) | u64::from(wt));
}

fn put_bytes(b: &mut Vec<u8>, field: u32, data: &[u8]) {
    put_tag(b, field, LEN);
    put_varint(b, data.len() as u64);
    b.extend_from_slice(data);
}

/// A proto3 string: empty strings are not written.
fn put_str(b: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        put_bytes(b, field, s.as_bytes());
    }
}

fn put_bool(b: &mut Vec<u8>, field: u32, v: bool) {
    if v {
        put_tag(b, field, VARINT);
        put_varint(b, 1);
    }
}

fn put_i64(b: &mut Vec<u8>, field: u32, v: i64) {
    if v != 0 {
        put_tag(b, field, VARINT);
        put_varint(b, v as u64);
    }
}

fn put_f64(b: &mut Vec<u8>, field: u32, v: f64) {
    if v != 0.0 {
        put_tag(b, field, FIXED64);
        b.extend_from_slice(&v.to_le_bytes());
    }
}

/// An embedded message (always written, even when empty: presence matters).
fn put_msg(b: &mut Vec<u8>, field: u32, f: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    f(&mut inner);
    put_bytes(b, field, &inner);
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn yaml_of(v: &Value) -> String {
    serde_yaml::to_string(v).unwrap_or_else(|_| v.to_string())
}

/// `Any { yaml = 2 }`.
fn put_any(b: &mut Vec<u8>, field: u32, v: &Value) {
    put_msg(b, field, |m| put_str(m, 2, &yaml_of(v)));
}

/// The `x-…` keys of `v` as repeated `NamedAny { name = 1, value = 2 }`.
fn put_extensions(b: &mut Vec<u8>, field: u32, v: &Value) {
    for (k, x) in v.as_object().into_iter().flatten() {
        if k.starts_with("x-") {
            put_msg(b, field, |m| {
                put_str(m, 1, k);
                put_any(m, 2, x);
            });
        }
    }
}

fn encode_schema(b: &mut Vec<u8>, s: &Value) {
    put_str(b, 1, str_of(s, "$ref"));
    put_str(b, 2, str_of(s, "format"));
    put_str(b, 3, str_of(s, "title"));
    put_str(b, 4, str_of(s, "description"));
    if let Some(d) = s.get("default") {
        put_any(b, 5, d);
    }
    let num = |k: &str| s.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let int = |k: &str| s.get(k).and_then(Value::as_i64).unwrap_or(0);
    let flag = |k: &str| s.get(k).and_then(Value::as_bool).unwrap_or(false);
    put_f64(b, 6, num("multipleOf"));
    put_f64(b, 7, num("maximum"));
    put_bool(b, 8, flag("exclusiveMaximum"));
    put_f64(b, 9, num("minimum"));
    put_bool(b, 10, flag("exclusiveMinimum"));
    put_i64(b, 11, int("maxLength"));
    put_i64(b, 12, int("minLength"));
    put_str(b, 13, str_of(s, "pattern"));
    put_i64(b, 14, int("maxItems"));
    put_i64(b, 15, int("minItems"));
    put_bool(b, 16, flag("uniqueItems"));
    put_i64(b, 17, int("maxProperties"));
    put_i64(b, 18, int("minProperties"));
    for r in strings(s.get("required")) {
        put_str(b, 19, r);
    }
    for e in s
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        put_any(b, 20, e);
    }
    match s.get("additionalProperties") {
        Some(Value::Bool(v)) => put_msg(b, 21, |m| {
            // oneof: written even when false
            put_tag(m, 2, VARINT);
            put_varint(m, u64::from(*v));
        }),
        Some(ap @ Value::Object(_)) => put_msg(b, 21, |m| put_msg(m, 1, |x| encode_schema(x, ap))),
        _ => {}
    }
    let types = strings(s.get("type"));
    if !types.is_empty() {
        put_msg(b, 22, |m| types.iter().for_each(|t| put_str(m, 1, t)));
    }
    match s.get("items") {
        Some(Value::Array(a)) => put_msg(b, 23, |m| {
            a.iter()
                .for_each(|i| put_msg(m, 1, |x| encode_schema(x, i)))
        }),
        Some(i @ Value::Object(_)) => put_msg(b, 23, |m| put_msg(m, 1, |x| encode_schema(x, i))),
        _ => {}
    }
    for a in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        put_msg(b, 24, |m| encode_schema(m, a));
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        put_msg(b, 25, |m| put_named_schemas(m, props));
    }
    put_bool(b, 27, flag("readOnly"));
    if let Some(e) = s.get("example") {
        put_any(b, 30, e);
    }
    put_extensions(b, 31, s);
}

/// `repeated NamedSchema additional_properties = 1` of `Properties`/`Definitions`.
fn put_named_schemas(b: &mut Vec<u8>, m: &Map<String, Value>) {
    for (name, s) in m {
        put_msg(b, 1, |n| {
            put_str(n, 1, name);
            put_msg(n, 2, |x| encode_schema(x, s));
        });
    }
}

/// `ParametersItem { parameter = 1 { body_parameter = 1 | non_body_parameter = 2 } }`.
fn encode_parameter(b: &mut Vec<u8>, p: &Value) {
    if let Some(r) = p.get("$ref").and_then(Value::as_str) {
        put_msg(b, 2, |j| put_str(j, 1, r));
        return;
    }
    put_msg(b, 1, |param| {
        let loc = str_of(p, "in");
        let required = p.get("required").and_then(Value::as_bool).unwrap_or(false);
        if loc == "body" {
            put_msg(param, 1, |x| {
                put_str(x, 1, str_of(p, "description"));
                put_str(x, 2, str_of(p, "name"));
                put_str(x, 3, loc);
                put_bool(x, 4, required);
                if let Some(s) = p.get("schema") {
                    put_msg(x, 5, |y| encode_schema(y, s));
                }
                put_extensions(x, 6, p);
            });
            return;
        }
        // NonBodyParameter: header = 1, formData = 2, query = 3, path = 4.
        // Query and form data have `allow_empty_value = 5` before `type`, so
        // their later fields are one number higher than header's and path's.
        let (which, shift) = match loc {
            "header" => (1, 0),
            "formData" => (2, 1),
            "path" => (4, 0),
            _ => (3, 1),
        };
        put_msg(param, 2, |nb| {
            put_msg(nb, which, |x| {
                put_bool(x, 1, required);
                put_str(x, 2, loc);
                put_str(x, 3, str_of(p, "description"));
                put_str(x, 4, str_of(p, "name"));
                if shift == 1 {
                    put_bool(
                        x,
                        5,
                        p.get("allowEmptyValue")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                    );
                }
                put_str(x, 5 + shift, str_of(p, "type"));
                put_str(x, 6 + shift, str_of(p, "format"));
                put_bool(
                    x,
                    19 + shift,
                    p.get("uniqueItems")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                );
                put_extensions(x, 22 + shift, p);
            })
        });
    });
}

fn encode_operation(b: &mut Vec<u8>, op: &Value) {
    for t in strings(op.get("tags")) {
        put_str(b, 1, t);
    }
    put_str(b, 2, str_of(op, "summary"));
    put_str(b, 3, str_of(op, "description"));
    put_str(b, 5, str_of(op, "operationId"));
    for t in strings(op.get("produces")) {
        put_str(b, 6, t);
    }
    for t in strings(op.get("consumes")) {
        put_str(b, 7, t);
    }
    for p in op
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        put_msg(b, 8, |x| encode_parameter(x, p));
    }
    if let Some(rs) = op.get("responses").and_then(Value::as_object) {
        put_msg(b, 9, |x| {
            for (code, r) in rs {
                put_msg(x, 1, |n| {
                    put_str(n, 1, code);
                    // ResponseValue { response = 1 { description = 1, schema = 2 { schema = 1 } } }
                    put_msg(n, 2, |rv| {
                        put_msg(rv, 1, |resp| {
                            put_str(resp, 1, str_of(r, "description"));
                            if let Some(s) = r.get("schema") {
                                put_msg(resp, 2, |si| put_msg(si, 1, |y| encode_schema(y, s)));
                            }
                            put_extensions(resp, 5, r);
                        })
                    });
                });
            }
            put_extensions(x, 2, &Value::Object(rs.clone()));
        });
    }
    for t in strings(op.get("schemes")) {
        put_str(b, 10, t);
    }
    put_bool(
        b,
        11,
        op.get("deprecated")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    );
    put_extensions(b, 13, op);
}

const METHODS: [(&str, u32); 7] = [
    ("get", 2),
    ("put", 3),
    ("post", 4),
    ("delete", 5),
    ("options", 6),
    ("head", 7),
    ("patch", 8),
];

fn encode_path_item(b: &mut Vec<u8>, item: &Value) {
    put_str(b, 1, str_of(item, "$ref"));
    for (m, field) in METHODS {
        if let Some(op) = item.get(m) {
            put_msg(b, field, |x| encode_operation(x, op));
        }
    }
    for p in item
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        put_msg(b, 9, |x| encode_parameter(x, p));
    }
    put_extensions(b, 10, item);
}

/// The gnostic `openapi.v2.Document` encoding of a Swagger 2.0 JSON document.
pub fn encode_document(doc: &Value) -> Vec<u8> {
    let mut b = Vec::new();
    put_str(&mut b, 1, str_of(doc, "swagger"));
    if let Some(info) = doc.get("info") {
        put_msg(&mut b, 2, |x| {
            put_str(x, 1, str_of(info, "title"));
            put_str(x, 2, str_of(info, "version"));
            put_str(x, 3, str_of(info, "description"));
            put_extensions(x, 7, info);
        });
    }
    put_str(&mut b, 3, str_of(doc, "host"));
    put_str(&mut b, 4, str_of(doc, "basePath"));
    for (k, field) in [("schemes", 5), ("consumes", 6), ("produces", 7)] {
        for s in strings(doc.get(k)) {
            put_str(&mut b, field, s);
        }
    }
    if let Some(paths) = doc.get("paths") {
        put_msg(&mut b, 8, |x| {
            put_extensions(x, 1, paths);
            for (name, item) in paths.as_object().into_iter().flatten() {
                if name.starts_with("x-") {
                    continue;
                }
                put_msg(x, 2, |n| {
                    put_str(n, 1, name);
                    put_msg(n, 2, |y| encode_path_item(y, item));
                });
            }
        });
    }
    if let Some(defs) = doc.get("definitions").and_then(Value::as_object) {
        put_msg(&mut b, 9, |x| put_named_schemas(x, defs));
    }
    put_extensions(&mut b, 16, doc);
    b
}

// ------------------------------------------------------------ the decoder

/// Why protobuf bytes are not a valid `openapi.v2.Document`.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated protobuf at byte {0}")]
    Truncated(usize),
    #[error("unsupported wire type {0} at byte {1}")]
    WireType(u8, usize),
    #[error("field {0} is not UTF-8")]
    Utf8(u32),
    #[error("vendor extension {0} holds YAML that does not parse: {1}")]
    Yaml(String, String),
}

enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
}

/// Splits a message into its (field, value) pairs, in order.
fn fields(mut b: &[u8]) -> Result<Vec<(u32, Wire<'_>)>, DecodeError> {
    let total = b.len();
    let mut out = Vec::new();
    fn varint(b: &mut &[u8], total: usize) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&first, rest) = b
                .split_first()
                .ok_or(DecodeError::Truncated(total - b.len()))?;
            *b = rest;
            v |= u64::from(first & 0x7f) << shift;
            if first & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Truncated(total - b.len()))
    }
    while !b.is_empty() {
        let key = varint(&mut b, total)?;
        let (field, wt) = ((key >> 3) as u32, (key & 7) as u8);
        let at = total - b.len();
        let w = match wt {
            VARINT => Wire::Varint(varint(&mut b, total)?),
            FIXED64 => {
                if b.len() < 8 {
                    return Err(DecodeError::Truncated(at));
                }
                let (v, rest) = b.split_at(8);
                b = rest;
                let mut a = [0u8; 8];
                a.copy_from_slice(v);
                Wire::Fixed64(u64::from_le_bytes(a))
            }
            LEN => {
                let n = varint(&mut b, total)? as usize;
                if b.len() < n {
                    return Err(DecodeError::Truncated(at));
                }
                let (v, rest) = b.split_at(n);
                b = rest;
                Wire::Bytes(v)
            }
            other => return Err(DecodeError::WireType(other, at)),
        };
        out.push((field, w));
    }
    Ok(out)
}

fn as_str(field: u32, w: &Wire<'_>) -> Result<String, DecodeError> {
    match w {
        Wire::Bytes(b) => std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|_| DecodeError::Utf8(field)),
        _ => Err(DecodeError::Utf8(field)),
    }
}

fn as_msg<'a>(w: &Wire<'a>) -> &'a [u8] {
    match w {
        Wire::Bytes(b) => b,
        _ => &[],
    }
}

fn as_u64(w: &Wire<'_>) -> u64 {
    match w {
        Wire::Varint(v) | Wire::Fixed64(v) => *v,
        Wire::Bytes(_) => 0,
    }
}

fn push(m: &mut Map<String, Value>, k: &str, v: Value) {
    match m.get_mut(k) {
        Some(Value::Array(a)) => a.push(v),
        _ => {
            m.insert(k.into(), json!([v]));
        }
    }
}

fn decode_any(b: &[u8]) -> Result<Value, DecodeError> {
    let mut yaml = String::new();
    for (f, w) in fields(b)? {
        if f == 2 {
            yaml = as_str(f, &w)?;
        }
    }
    serde_yaml::from_str::<Value>(&yaml).map_err(|e| DecodeError::Yaml(yaml.clone(), e.to_string()))
}

fn decode_named_any(b: &[u8], into: &mut Map<String, Value>) -> Result<(), DecodeError> {
    let mut name = String::new();
    let mut value = Value::Null;
    for (f, w) in fields(b)? {
        match f {
            1 => name = as_str(f, &w)?,
            2 => value = decode_any(as_msg(&w))?,
            _ => {}
        }
    }
    into.insert(name, value);
    Ok(())
}

fn decode_named_schemas(b: &[u8]) -> Result<Map<String, Value>, DecodeError> {
    let mut out = Map::new();
    for (_, w) in fields(b)? {
        let mut name = String::new();
        let mut s = json!({});
        for (f, x) in fields(as_msg(&w))? {
            match f {
                1 => name = as_str(f, &x)?,
                2 => s = decode_schema(as_msg(&x))?,
                _ => {}
            }
        }
        out.insert(name, s);
    }
    Ok(out)
}

fn decode_schema(b: &[u8]) -> Result<Value, DecodeError> {
    let mut m = Map::new();
    for (f, w) in fields(b)? {
        let key = match f {
            1 => "$ref",
            2 => "format",
            3 => "title",
            4 => "description",
            13 => "pattern",
            _ => "",
        };
        if !key.is_empty() {
            m.insert(key.into(), json!(as_str(f, &w)?));
            continue;
        }
        match f {
            5 => {
                m.insert("default".into(), decode_any(as_msg(&w))?);
            }
            6 | 7 | 9 => {
                let k = match f {
                    6 => "multipleOf",
                    7 => "maximum",
                    _ => "minimum",
                };
                m.insert(k.into(), json!(f64::from_bits(as_u64(&w))));
            }
            8 | 10 | 16 | 27 => {
                let k = match f {
                    8 => "exclusiveMaximum",
                    10 => "exclusiveMinimum",
                    16 => "uniqueItems",
                    _ => "readOnly",
                };
                m.insert(k.into(), json!(as_u64(&w) != 0));
            }
            11 | 12 | 14 | 15 | 17 | 18 => {
                let k = match f {
                    11 => "maxLength",
                    12 => "minLength",
                    14 => "maxItems",
                    15 => "minItems",
                    17 => "maxProperties",
                    _ => "minProperties",
                };
                m.insert(k.into(), json!(as_u64(&w) as i64));
            }
            19 => push(&mut m, "required", json!(as_str(f, &w)?)),
            20 => push(&mut m, "enum", decode_any(as_msg(&w))?),
            21 => {
                for (g, x) in fields(as_msg(&w))? {
                    match g {
                        1 => m.insert("additionalProperties".into(), decode_schema(as_msg(&x))?),
                        _ => m.insert("additionalProperties".into(), json!(as_u64(&x) != 0)),
                    };
                }
            }
            22 => {
                let mut ts = Vec::new();
                for (g, x) in fields(as_msg(&w))? {
                    ts.push(as_str(g, &x)?);
                }
                // one type is written as a string, as JSON documents do
                let v = if ts.len() == 1 {
                    json!(ts[0])
                } else {
                    json!(ts)
                };
                m.insert("type".into(), v);
            }
            23 => {
                let mut items = Vec::new();
                for (_, x) in fields(as_msg(&w))? {
                    items.push(decode_schema(as_msg(&x))?);
                }
                let v = if items.len() == 1 {
                    items.remove(0)
                } else {
                    Value::Array(items)
                };
                m.insert("items".into(), v);
            }
            24 => push(&mut m, "allOf", decode_schema(as_msg(&w))?),
            25 => {
                let props = decode_named_schemas(as_msg(&w))?;
                m.insert("properties".into(), Value::Object(props));
            }
            30 => {
                m.insert("example".into(), decode_any(as_msg(&w))?);
            }
            31 => decode_named_any(as_msg(&w), &mut m)?,
            _ => {}
        }
    }
    Ok(Value::Object(m))
}

fn decode_parameter(b: &[u8]) -> Result<Value, DecodeError> {
    let mut m = Map::new();
    for (f, w) in fields(b)? {
        if f == 2 {
            for (g, x) in fields(as_msg(&w))? {
                if g == 1 {
                    m.insert("$ref".into(), json!(as_str(g, &x)?));
                }
            }
            continue;
        }
        for (kind, x) in fields(as_msg(&w))? {
            if kind == 1 {
                for (g, y) in fields(as_msg(&x))? {
                    match g {
                        1 => m.insert("description".into(), json!(as_str(g, &y)?)),
                        2 => m.insert("name".into(), json!(as_str(g, &y)?)),
                        3 => m.insert("in".into(), json!(as_str(g, &y)?)),
                        4 => m.insert("required".into(), json!(as_u64(&y) != 0)),
                        5 => m.insert("schema".into(), decode_schema(as_msg(&y))?),
                        _ => None,
                    };
                }
                continue;
            }
            for (which, y) in fields(as_msg(&x))? {
                let shift = u32::from(which == 2 || which == 3);
                for (g, z) in fields(as_msg(&y))? {
                    match g {
                        1 => {
                            m.insert("required".into(), json!(as_u64(&z) != 0));
                        }
                        2 => {
                            m.insert("in".into(), json!(as_str(g, &z)?));
                        }
                        3 => {
                            m.insert("description".into(), json!(as_str(g, &z)?));
                        }
                        4 => {
                            m.insert("name".into(), json!(as_str(g, &z)?));
                        }
                        5 if shift == 1 => {
                            m.insert("allowEmptyValue".into(), json!(as_u64(&z) != 0));
                        }
                        g if g == 5 + shift => {
                            m.insert("type".into(), json!(as_str(g, &z)?));
                        }
                        g if g == 6 + shift => {
                            m.insert("format".into(), json!(as_str(g, &z)?));
                        }
                        g if g == 19 + shift => {
                            m.insert("uniqueItems".into(), json!(as_u64(&z) != 0));
                        }
                        g if g == 22 + shift => decode_named_any(as_msg(&z), &mut m)?,
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(Value::Object(m))
}

fn decode_operation(b: &[u8]) -> Result<Value, DecodeError> {
    let mut m = Map::new();
    for (f, w) in fields(b)? {
        match f {
            1 => push(&mut m, "tags", json!(as_str(f, &w)?)),
            2 => {
                m.insert("summary".into(), json!(as_str(f, &w)?));
            }
            3 => {
                m.insert("description".into(), json!(as_str(f, &w)?));
            }
            5 => {
                m.insert("operationId".into(), json!(as_str(f, &w)?));
            }
            6 => push(&mut m, "produces", json!(as_str(f, &w)?)),
            7 => push(&mut m, "consumes", json!(as_str(f, &w)?)),
            8 => push(&mut m, "parameters", decode_parameter(as_msg(&w))?),
            9 => {
                let mut rs = Map::new();
                for (g, x) in fields(as_msg(&w))? {
                    if g != 1 {
                        continue;
                    }
                    let mut code = String::new();
                    let mut resp = Map::new();
                    for (h, y) in fields(as_msg(&x))? {
                        if h == 1 {
                            code = as_str(h, &y)?;
                            continue;
                        }
                        for (_, r) in fields(as_msg(&y))? {
                            for (i, z) in fields(as_msg(&r))? {
                                match i {
                                    1 => {
                                        resp.insert("description".into(), json!(as_str(i, &z)?));
                                    }
                                    2 => {
                                        for (_, s) in fields(as_msg(&z))? {
                                            resp.insert(
                                                "schema".into(),
                                                decode_schema(as_msg(&s))?,
                                            );
                                        }
                                    }
                                    _ => {}
                                }
                            }
                        }
                    }
                    rs.insert(code, Value::Object(resp));
                }
                m.insert("responses".into(), Value::Object(rs));
            }
            10 => push(&mut m, "schemes", json!(as_str(f, &w)?)),
            11 => {
                m.insert("deprecated".into(), json!(as_u64(&w) != 0));
            }
            13 => decode_named_any(as_msg(&w), &mut m)?,
            _ => {}
        }
    }
    Ok(Value::Object(m))
}

/// Decodes a gnostic `openapi.v2.Document` into its Swagger JSON form (the
/// messages [`encode_document`] writes; others are skipped).
pub fn decode_document(b: &[u8]) -> Result<Value, DecodeError> {
    let mut doc = Map::new();
    for (f, w) in fields(b)? {
        match f {
            1 => {
                doc.insert("swagger".into(), json!(as_str(f, &w)?));
            }
            2 => {
                let mut info = Map::new();
                for (g, x) in fields(as_msg(&w))? {
                    match g {
                        1 => info.insert("title".into(), json!(as_str(g, &x)?)),
                        2 => info.insert("version".into(), json!(as_str(g, &x)?)),
                        3 => info.insert("description".into(), json!(as_str(g, &x)?)),
                        _ => None,
                    };
                }
                doc.insert("info".into(), Value::Object(info));
            }
            8 => {
                let mut paths = Map::new();
                for (g, x) in fields(as_msg(&w))? {
                    if g == 1 {
                        decode_named_any(as_msg(&x), &mut paths)?;
                        continue;
                    }
                    let mut name = String::new();
                    let mut item = Map::new();
                    for (h, y) in fields(as_msg(&x))? {
                        if h == 1 {
                            name = as_str(h, &y)?;
                            continue;
                        }
                        for (i, z) in fields(as_msg(&y))? {
                            match i {
                                1 => {
                                    item.insert("$ref".into(), json!(as_str(i, &z)?));
                                }
                                2..=8 => {
                                    let method = METHODS[(i - 2) as usize].0;
                                    item.insert(method.into(), decode_operation(as_msg(&z))?);
                                }
                                9 => push(&mut item, "parameters", decode_parameter(as_msg(&z))?),
                                10 => decode_named_any(as_msg(&z), &mut item)?,
                                _ => {}
                            }
                        }
                    }
                    paths.insert(name, Value::Object(item));
                }
                doc.insert("paths".into(), Value::Object(paths));
            }
            9 => {
                doc.insert(
                    "definitions".into(),
                    Value::Object(decode_named_schemas(as_msg(&w))?),
                );
            }
            16 => decode_named_any(as_msg(&w), &mut doc)?,
            _ => {}
        }
    }
    Ok(Value::Object(doc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_form_is_swagger_2_with_definition_refs_only() {
        let doc = &v2().json;
        assert_eq!(doc["swagger"], "2.0");
        let defs = doc["definitions"].as_object().unwrap();
        let text = serde_json::to_string(doc).unwrap();
        assert!(!text.contains("#/components/schemas/"));
        for part in text.split("\"$ref\":\"#/definitions/").skip(1) {
            let name = &part[..part.find('"').unwrap()];
            assert!(defs.contains_key(name), "dangling $ref {name}");
        }
        // what kube-openapi's proto parser refuses: $ref with a type, several types, allOf
        fn check(v: &Value, path: &str) {
            if let Some(m) = v.as_object() {
                if m.contains_key("$ref") {
                    assert!(
                        !m.contains_key("type") && !m.contains_key("properties"),
                        "{path}"
                    );
                }
                assert!(!m.contains_key("allOf"), "{path}");
                if let Some(t) = m.get("type") {
                    assert!(t.is_string(), "{path}");
                    if t == "array" {
                        assert!(m["items"].is_object(), "{path}");
                    }
                }
                for (k, c) in m {
                    match k.as_str() {
                        "properties" => c
                            .as_object()
                            .unwrap()
                            .iter()
                            .for_each(|(n, p)| check(p, &format!("{path}.{n}"))),
                        "items" | "additionalProperties" => check(c, &format!("{path}.{k}")),
                        _ => {}
                    }
                }
            }
        }
        for (n, d) in defs {
            check(d, n);
        }
        let ios = &defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
        assert_eq!(
            (ios["type"].as_str(), ios["format"].as_str()),
            (Some("string"), Some("int-or-string"))
        );
        let strategy = &defs["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
        assert_eq!(
            strategy["$ref"],
            "#/definitions/io.k8s.api.apps.v1.DeploymentStrategy"
        );
        assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
    }

    #[test]
    fn patch_operations_carry_gvk_and_query_parameters() {
        let doc = &v2().json;
        let op = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            op["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );
        let params = op["parameters"].as_array().unwrap();
        assert!(params.iter().any(|p| p["name"] == "fieldValidation"
            && p["in"] == "query"
            && p["type"] == "string"));
        assert!(params.iter().any(|p| p["in"] == "body"
            && p["schema"]["$ref"] == "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"));
        assert!(op["consumes"]
            .as_array()
            .unwrap()
            .contains(&json!("application/strategic-merge-patch+json")));
        assert_eq!(
            op["responses"]["200"]["schema"]["$ref"],
            "#/definitions/io.k8s.api.apps.v1.Deployment"
        );
    }

    #[test]
    fn protobuf_round_trips_to_the_json_form() {
        let v = v2();
        let decoded = decode_document(&v.proto.bytes).unwrap();
        assert_eq!(decoded["swagger"], "2.0");
        assert_eq!(decoded["info"], v.json["info"]);
        // definitions and paths come back field for field (extensions through YAML)
        for key in ["definitions", "paths"] {
            let want = v.json[key].as_object().unwrap();
            let got = decoded[key].as_object().unwrap();
            assert_eq!(got.len(), want.len(), "{key}");
            for (name, w) in want {
                assert_eq!(got.get(name), Some(w), "{key} {name}");
            }
        }
    }

    #[test]
    fn hand_checked_bytes() {
        let doc = json!({"swagger": "2.0", "definitions": {"a": {"type": "string", "x-k": "v"}}});
        let b = encode_document(&doc);
        // Document.swagger = 1: "2.0"
        assert_eq!(&b[..5], &[0x0a, 3, b'2', b'.', b'0']);
        // Document.definitions = 9 (tag 0x4a), NamedSchema "a" with Schema{type=22 {value="string"}, ext=31}
        assert_eq!(b[5], 0x4a);
        let schema = [
            0xb2, 0x01, 8, 0x0a, 6, b's', b't', b'r', b'i', b'n',
            b'g', // type (22<<3|2 = 178)
            0xfa, 0x01, 11, 0x0a, 3, b'x', b'-', b'k', 0x12, 4, 0x12, 2, b'v',
            b'\n', // vendor_extension: Any{yaml}
        ];
        assert!(b.windows(schema.len()).any(|w| w == schema), "{b:x?}");
        assert_eq!(
            decode_document(&b).unwrap(),
            json!({"swagger": "2.0", "definitions": {"a": {"type": "string", "x-k": "v"}}})
        );
    }

    #[test]
    fn extra_v3_documents_join_paths_and_definitions() {
        let crd = json!({"openapi": "3.0.0", "paths": {"/apis/x.io/v1/namespaces/{namespace}/widgets/{name}": {
                "patch": {"operationId": "patchWidget", "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
                    "requestBody": {"content": {"application/merge-patch+json": {"schema": {"$ref": "#/components/schemas/io.x.v1.Widget"}}}},
                    "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/io.x.v1.Widget"}}}}},
                    "x-kubernetes-group-version-kind": {"group": "x.io", "version": "v1", "kind": "Widget"}}}},
            "components": {"schemas": {"io.x.v1.Widget": {"type": "object", "properties": {
                "metadata": {"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]},
                "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}},
                "x-kubernetes-group-version-kind": [{"group": "x.io", "version": "v1", "kind": "Widget"}]}}}});
        let v = v2_with(&[&crd]);
        let w = &v.json["definitions"]["io.x.v1.Widget"];
        assert_eq!(
            w["properties"]["metadata"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        let op = &v.json["paths"]["/apis/x.io/v1/namespaces/{namespace}/widgets/{name}"]["patch"];
        assert_eq!(
            op["parameters"][0]["schema"]["$ref"],
            "#/definitions/io.x.v1.Widget"
        );
        assert_eq!(op["parameters"][1]["name"], "fieldValidation");
        assert!(v.json["paths"]
            .get("/api/v1/namespaces/{namespace}/pods")
            .is_some());
        assert_ne!(v.etag, v2().etag);
        assert_eq!(
            decode_document(&v.proto.bytes).unwrap()["definitions"]["io.x.v1.Widget"],
            *w
        );
    }

    #[test]
    fn gzip_forms_decompress_to_the_bytes() {
        use std::io::Read as _;
        let v = v2();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&v.proto.gzip[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, v.proto.bytes);
        assert!(v.proto.gzip.len() < v.proto.bytes.len() / 3);
        assert_eq!(v.etag.len(), 128);
    }
}
