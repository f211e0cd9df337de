//! `GET /openapi/v2` (and the legacy `/swagger.json`): the Swagger 2.0
//! document of `minik_apimachinery::openapi_v2`, as JSON or as the gnostic
//! protobuf kubectl 1.27/1.28 ask for, chosen by `Accept` like
//! kube-openapi does; `ETag` + `If-None-Match` → 304, and the cached gzip
//! form when the client accepts it. The built-in document is built once, on
//! first use; with CustomResourceDefinitions their group-version documents
//! join it, rebuilt only when those documents change.

use crate::error::ApiError;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use minik_apimachinery::openapi_v2::{self, PROTO_CONTENT_TYPE, V2};
use serde_json::Value;
use std::sync::{Arc, Mutex};

/// The document with these extra v3 documents (path, doc, hash), cached by
/// their hashes.
fn document(extra: &[(String, Value, String)]) -> Arc<V2> {
    static BASE: std::sync::OnceLock<Arc<V2>> = std::sync::OnceLock::new();
    static WITH: Mutex<Option<(String, Arc<V2>)>> = Mutex::new(None);
    if extra.is_empty() {
        return BASE
            .get_or_init(|| Arc::new(openapi_v2::v2_with(&[])))
            .clone();
    }
    let key: String = extra.iter().map(|(p, _, h)| format!("{p}={h};")).collect();
    let mut cached = WITH.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((k, d)) = cached.as_ref() {
        if *k == key {
            return d.clone();
        }
    }
    let docs: Vec<&Value> = extra.iter().map(|(_, d, _)| d).collect();
    let d = Arc::new(openapi_v2::v2_with(&docs));
    *cached = Some((key, d.clone()));
    d
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Json,
    Proto,
}

/// The form an `Accept` header asks for (first acceptable clause wins,
/// `q=0` clauses are refused), `None` when it accepts neither.
fn negotiate(accept: &str) -> Option<Form> {
    if accept.trim().is_empty() {
        return Some(Form::Json);
    }
    for clause in accept.split(',') {
        let mut parts = clause.split(';');
        let ty = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q == 0.0)
        });
        if refused {
            continue;
        }
        match ty.as_str() {
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
            | "application/com.github.proto-openapi.spec.v2.v1.0+protobuf" => {
                return Some(Form::Proto)
            }
            "application/json" | "application/*" | "*/*" => return Some(Form::Json),
            _ => {}
        }
    }
    None
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| {
            let mut p = e.split(';');
            let name = p.next().unwrap_or("").trim();
            let zero = p.any(|x| x.trim() == "q=0" || x.trim() == "q=0.0");
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !zero
        })
}

/// Serves the v2 document for a GET/HEAD with these request headers;
/// `extra` are the CRDs' OpenAPI v3 group-version documents (path, doc, hash).
pub fn serve(
    method: &Method,
    headers: &HeaderMap,
    extra: &[(String, Value, String)],
) -> Result<Response, ApiError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(ApiError::method_not_allowed(
            "only GET is allowed on /openapi/v2",
        ));
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let form = negotiate(accept).ok_or_else(|| {
        ApiError::new(
            406,
            "NotAcceptable",
            format!(
                "/openapi/v2 is served as application/json or {}; the request accepts only {accept:?}",
                openapi_v2::PROTO_MEDIA_TYPE
            ),
        )
    })?;
    let doc = document(extra);
    let etag = format!("\"{}\"", doc.etag);
    let matched = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == etag
        });
    let (encoded, content_type) = match form {
        Form::Json => (&doc.json_bytes, "application/json"),
        Form::Proto => (&doc.proto, PROTO_CONTENT_TYPE),
    };
    let gzip = accepts_gzip(headers);
    let mut resp = if matched {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let bytes = if gzip {
            encoded.gzip.clone()
        } else {
            encoded.bytes.clone()
        };
        Response::new(Body::from(bytes))
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    if gzip && !matched {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        assert_eq!(negotiate(""), Some(Form::Json));
        assert_eq!(
            negotiate("application/com.github.proto-openapi.spec.v2@v1.0+protobuf"),
            Some(Form::Proto)
        );
        assert_eq!(
            negotiate(
                "application/com.github.proto-openapi.spec.v2@v1.0+protobuf;q=0, application/json"
            ),
            Some(Form::Json)
        );
        assert_eq!(negotiate("application/json, */*"), Some(Form::Json));
        assert_eq!(negotiate("text/html"), None);
    }

    #[test]
    fn gzip_only_when_accepted() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip;q=0"),
        );
        assert!(!accepts_gzip(&h));
    }
}
