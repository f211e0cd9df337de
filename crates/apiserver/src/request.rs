//! Turning an HTTP request into what the REST layer works with: the route
//! (which resource, namespace, name, subresource), the query parameters, the
//! requested response form (JSON, Table, PartialObjectMetadata) and the
//! decoded request body. Pure functions, unit-tested.

use crate::error::ApiError;
use minik_apimachinery::{resources, ResourceInfo};
use serde_json::Value;
use std::collections::HashMap;

/// A request for a resource collection or object.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourcePath {
    pub info: &'static ResourceInfo,
    /// None: cluster-scoped, or all namespaces for a namespaced list.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// Came through the deprecated `/watch/` path prefix.
    pub watch_prefix: bool,
}

/// Every kind of URL the apiserver answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    Version,
    Health,
    ApiRoot,
    ApisRoot,
    Group(String),
    GroupVersion(String, String),
    Resource(ResourcePath),
    OpenApiV3Index,
    OpenApiV3(String),
    OpenApiV2,
    /// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews` (`kubectl auth can-i`).
    SelfSubjectAccessReview,
    /// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews` (`kubectl auth whoami`).
    SelfSubjectReview,
    NotFound,
}

/// Looks up a resource that is not built in (a CRD's), by group, version, plural.
pub type Extra<'a> = &'a dyn Fn(&str, &str, &str) -> Option<&'static ResourceInfo>;

/// Parses a URL path into a route (built-in resources only).
pub fn route(path: &str) -> Route {
    route_in(path, &|_, _, _| None)
}

/// Parses a URL path into a route; `extra` finds the resources defined at run time.
pub fn route_in(path: &str, extra: Extra) -> Route {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segs.as_slice() {
        ["version"] => Route::Version,
        ["healthz"] | ["livez"] | ["readyz"] => Route::Health,
        ["healthz", ..] | ["livez", ..] | ["readyz", ..] => Route::Health,
        ["openapi", "v3"] => Route::OpenApiV3Index,
        ["openapi", "v3", rest @ ..] => Route::OpenApiV3(rest.join("/")),
        ["openapi", "v2"] | ["swagger.json"] => Route::OpenApiV2,
        ["api"] => Route::ApiRoot,
        ["api", v] => Route::GroupVersion(String::new(), v.to_string()),
        ["api", v, rest @ ..] => resource_route("", v, rest, extra),
        ["apis"] => Route::ApisRoot,
        ["apis", g] => Route::Group(g.to_string()),
        ["apis", g, v] => Route::GroupVersion(g.to_string(), v.to_string()),
        ["apis", "authorization.k8s.io", "v1", "selfsubjectaccessreviews"] => {
            Route::SelfSubjectAccessReview
        }
        ["apis", "authentication.k8s.io", "v1", "selfsubjectreviews"] => Route::SelfSubjectReview,
        ["apis", g, v, rest @ ..] => resource_route(g, v, rest, extra),
        _ => Route::NotFound,
    }
}

fn resource_route(group: &str, version: &str, rest: &[&str], extra: Extra) -> Route {
    let (watch_prefix, rest) = match rest {
        ["watch", r @ ..] => (true, r),
        r => (false, r),
    };
    let ns_info = resources::find(group, version, "namespaces");
    // /namespaces/<ns>/<resource>... unless it is the namespace's own subresource
    let (namespace, rest) = match rest {
        ["namespaces", ns, sub] if ns_info.is_some_and(|i| i.subresources.contains(sub)) => {
            (None, rest)
        }
        ["namespaces", ns, r @ ..] if !r.is_empty() => (Some(ns.to_string()), r),
        r => (None, r),
    };
    let info = match rest
        .first()
        .and_then(|r| resources::find(group, version, r).or_else(|| extra(group, version, r)))
    {
        Some(i) => i,
        None => return Route::NotFound,
    };
    if namespace.is_some() && !info.namespaced {
        return Route::NotFound;
    }
    let name = rest.get(1).map(|s| s.to_string());
    let subresource = rest.get(2).map(|s| s.to_string());
    // `<resource>/<name>/proxy/<path...>`: the proxied path stays in the URL
    if rest.len() > 3 && subresource.as_deref() != Some("proxy") {
        return Route::NotFound;
    }
    if let Some(sub) = &subresource {
        if !info.subresources.contains(&sub.as_str()) {
            return Route::NotFound;
        }
    }
    Route::Resource(ResourcePath {
        info,
        namespace,
        name,
        subresource,
        watch_prefix,
    })
}

/// Query parameters (repeated keys keep every value).
#[derive(Debug, Clone, Default)]
pub struct Query {
    map: HashMap<String, Vec<String>>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        if let Some(raw) = raw {
            for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
                map.entry(k.into_owned()).or_default().push(v.into_owned());
            }
        }
        Query { map }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.map
            .get(key)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    pub fn all(&self, key: &str) -> &[String] {
        self.map.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true") | Some("1"))
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid value for query parameter {key}: {v:?} is not an integer"
                ))
            }),
        }
    }

    /// `dryRun=All` (the only value kube accepts besides none).
    pub fn dry_run(&self) -> Result<bool, ApiError> {
        for v in self.all("dryRun") {
            if v != "All" {
                return Err(ApiError::bad_request(format!(
                    "Invalid dryRun value {v:?}: the only supported value is \"All\""
                )));
            }
        }
        Ok(!self.all("dryRun").is_empty())
    }
}

/// The response form asked for in `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    /// A `meta.k8s.io/v1` Table whose rows carry the object as asked by `includeObject`.
    Table(Include),
    PartialMetadata,
}

/// `includeObject` of a Table request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    /// Parses the `includeObject` query parameter (default `Metadata`).
    pub fn parse(v: Option<&str>) -> Result<Include, ApiError> {
        match v {
            None | Some("") | Some("Metadata") => Ok(Include::Metadata),
            Some("None") => Ok(Include::None),
            Some("Object") => Ok(Include::Object),
            Some(o) => Err(ApiError::bad_request(format!(
                "includeObject {o:?} is not valid: use None, Metadata or Object"
            ))),
        }
    }
}

pub fn output(accept: &str) -> Output {
    for part in accept.split(',') {
        let p: String = part.chars().filter(|c| !c.is_whitespace()).collect();
        if p.contains("g=meta.k8s.io") {
            if p.contains("as=Table") {
                return Output::Table(Include::Metadata);
            }
            if p.contains("as=PartialObjectMetadata") {
                return Output::PartialMetadata;
            }
        }
        if p.starts_with("application/json")
            || p.starts_with("*/*")
            || p.starts_with("application/vnd.kubernetes.protobuf")
            || p.starts_with("application/yaml")
        {
            // a plain type listed first wins over later Table offers
            if !p.contains("as=") {
                return Output::Json;
            }
        }
    }
    Output::Json
}

/// The body media types the apiserver understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    Json,
    Yaml,
    Protobuf,
    StrategicMerge,
    MergePatch,
    JsonPatch,
    Apply,
}

pub fn body_type(content_type: &str) -> Result<BodyType, ApiError> {
    let mt = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    Ok(match mt.as_str() {
        "" | "application/json" | "text/json" => BodyType::Json,
        "application/yaml" | "application/x-yaml" | "text/yaml" => BodyType::Yaml,
        "application/vnd.kubernetes.protobuf" => BodyType::Protobuf,
        "application/strategic-merge-patch+json" => BodyType::StrategicMerge,
        "application/merge-patch+json" => BodyType::MergePatch,
        "application/json-patch+json" => BodyType::JsonPatch,
        "application/apply-patch+yaml" | "application/apply-patch+json" => BodyType::Apply,
        _ => return Err(ApiError::unsupported_media_type(content_type)),
    })
}

/// Decodes a JSON or YAML document (any JSON is valid YAML).
pub fn decode_json_or_yaml(body: &[u8], yaml: bool) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the request body is empty: send the object as JSON or YAML",
        ));
    }
    if yaml {
        serde_yaml::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}")))
    } else {
        serde_json::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
    }
}

/// Decodes an object body (create / update), any of JSON, YAML or protobuf.
pub fn decode_object(body: &[u8], ty: BodyType) -> Result<Value, ApiError> {
    let v = match ty {
        BodyType::Json => decode_json_or_yaml(body, false)?,
        BodyType::Yaml | BodyType::Apply => decode_json_or_yaml(body, true)?,
        BodyType::Protobuf => minik_apimachinery::protobuf::decode(body).map_err(|e| {
            ApiError::bad_request(format!(
                "the protobuf request body could not be decoded: {e}"
            ))
        })?,
        _ => {
            return Err(ApiError::unsupported_media_type(
                "patch types are only accepted by PATCH",
            ));
        }
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(format!(
            "the request body must be a JSON object describing a Kubernetes resource, got: {}",
            short(&v)
        )));
    }
    Ok(v)
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        format!(
            "{}...",
            &s[..s.char_indices().nth(80).map(|(i, _)| i).unwrap_or(s.len())]
        )
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourcePath {
        match route(path) {
            Route::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn routes() {
        assert_eq!(route("/version"), Route::Version);
        assert_eq!(route("/api"), Route::ApiRoot);
        assert_eq!(
            route("/apis/apps/v1"),
            Route::GroupVersion("apps".into(), "v1".into())
        );
        assert_eq!(
            route("/openapi/v3/apis/apps/v1"),
            Route::OpenApiV3("apis/apps/v1".into())
        );
        let r = res("/api/v1/namespaces/default/pods/hw/log");
        assert_eq!(
            (
                r.info.resource,
                r.namespace.as_deref(),
                r.name.as_deref(),
                r.subresource.as_deref()
            ),
            ("pods", Some("default"), Some("hw"), Some("log"))
        );
        let r = res("/api/v1/pods");
        assert_eq!((r.info.resource, r.namespace, r.name), ("pods", None, None));
        let r = res("/api/v1/namespaces/kube-system");
        assert_eq!(
            (r.info.resource, r.name.as_deref()),
            ("namespaces", Some("kube-system"))
        );
        let r = res("/api/v1/namespaces/x/finalize");
        assert_eq!(
            (r.info.resource, r.name.as_deref(), r.subresource.as_deref()),
            ("namespaces", Some("x"), Some("finalize"))
        );
        let r = res("/api/v1/namespaces/x/status");
        assert_eq!(
            (r.info.resource, r.subresource.as_deref()),
            ("namespaces", Some("status"))
        );
        let r = res("/apis/apps/v1/watch/namespaces/default/deployments");
        assert!(r.watch_prefix);
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(route("/api/v1/namespaces/default/nodes"), Route::NotFound);
        assert_eq!(route("/api/v1/nosuch"), Route::NotFound);
        assert_eq!(
            route("/api/v1/namespaces/default/pods/x/nosub"),
            Route::NotFound
        );
    }

    #[test]
    fn outputs() {
        assert_eq!(output("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"), Output::Table(Include::Metadata));
        assert_eq!(Include::parse(Some("Object")).unwrap(), Include::Object);
        assert!(Include::parse(Some("All")).is_err());
        assert_eq!(output("application/json, */*"), Output::Json);
        assert_eq!(
            output("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"),
            Output::PartialMetadata
        );
        assert_eq!(output(""), Output::Json);
    }

    #[test]
    fn bodies() {
        assert_eq!(
            body_type("application/json; charset=utf-8").unwrap(),
            BodyType::Json
        );
        assert_eq!(
            body_type("application/apply-patch+yaml").unwrap(),
            BodyType::Apply
        );
        assert_eq!(body_type("text/plain").unwrap_err().code, 415);
        let e = decode_object(b"{\"a\":", BodyType::Json).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        let v = decode_object(
            b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n",
            BodyType::Yaml,
        )
        .unwrap();
        assert_eq!(v["metadata"]["name"], "x");
        assert!(decode_object(b"key: [unclosed", BodyType::Yaml)
            .unwrap_err()
            .message
            .contains("YAML"));
        assert!(decode_object(b"[1]", BodyType::Json).is_err());
    }

    #[test]
    fn query() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb&limit=500&dryRun=All&command=ls&command=-la",
        ));
        assert_eq!(q.get("labelSelector"), Some("app=web"));
        assert_eq!(q.int("limit").unwrap(), Some(500));
        assert!(q.dry_run().unwrap());
        assert_eq!(q.all("command"), &["ls".to_string(), "-la".to_string()]);
        assert!(Query::parse(Some("limit=x")).int("limit").is_err());
    }
}
