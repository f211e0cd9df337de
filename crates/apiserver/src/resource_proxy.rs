//! The `proxy` subresources: `nodes/<name>/proxy/<path>` to the node's
//! kubelet endpoint (what `kubectl get --raw .../proxy/stats/summary` and
//! `minik image` use), `services/[https:]<name>[:<port>]/proxy/<path>` to a
//! ready endpoint of the Service and `pods/[https:]<name>[:<port>]/proxy/<path>`
//! to the pod's IP (what `kubectl proxy` users and dashboards use). Every
//! method, bodies streamed both ways, the query string kept.

use crate::error::ApiError;
use crate::logs::kubelet_address;
use crate::request::ResourcePath;
use crate::upstream::{self, Scheme, Target};
use crate::Inner;
use axum::body::Body;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use serde_json::Value;

/// `[scheme:]name[:port]` of a service or pod proxy URL.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyName {
    pub https: bool,
    pub name: String,
    pub port: Option<String>,
}

pub fn parse_proxy_name(s: &str) -> ProxyName {
    let parts: Vec<&str> = s.split(':').collect();
    let (https, name, port) = match parts.as_slice() {
        [n] => (false, *n, None),
        [scheme @ ("http" | "https"), n] => (*scheme == "https", *n, None),
        [n, p] => (false, *n, Some(p.to_string())),
        [scheme, n, p, ..] => (
            *scheme == "https",
            *n,
            Some(p.to_string()).filter(|p| !p.is_empty()),
        ),
        [] => (false, "", None),
    };
    ProxyName {
        https,
        name: name.to_string(),
        port,
    }
}

/// The part of the URL after `/<resource>/<name>/proxy`, with the query.
pub fn proxied_path(path: &str, query: Option<&str>, resource: &str, name: &str) -> String {
    let marker = format!("/{resource}/{name}/proxy");
    let tail = path
        .find(&marker)
        .map(|i| &path[i + marker.len()..])
        .unwrap_or("");
    let tail = if tail.is_empty() { "/" } else { tail };
    match query.filter(|q| !q.is_empty()) {
        Some(q) => format!("{tail}?{q}"),
        None => tail.to_string(),
    }
}

impl Inner {
    /// Serves a `proxy` subresource request.
    pub(crate) async fn resource_proxy(
        &self,
        p: &ResourcePath,
        method: Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Response, ApiError> {
        let raw_name = p.name.clone().unwrap_or_default();
        let tail = proxied_path(path, query, p.info.resource, &raw_name);
        let ns = p.namespace.clone().unwrap_or_default();
        let target = match p.info.resource {
            "nodes" => {
                // `nodes/<name>:<port>/proxy` picks another port on the node
                let pn = parse_proxy_name(&raw_name);
                let (node, _) = self.read(p.info, None, &pn.name)?;
                let (ip, port) = kubelet_address(&node).ok_or_else(|| {
                    ApiError::service_unavailable(format!(
                        "node {:?} reports no kubelet address yet; try again shortly",
                        pn.name
                    ))
                })?;
                let port = match pn.port.as_deref().map(str::parse::<u16>) {
                    Some(Ok(p)) => p,
                    Some(Err(_)) => {
                        return Err(ApiError::bad_request(format!(
                            "the port in {raw_name:?} is not a number"
                        )))
                    }
                    None => port,
                };
                Target {
                    host: ip,
                    port,
                    scheme: Scheme::Http,
                }
            }
            "services" => {
                let pn = parse_proxy_name(&raw_name);
                let svc_info = p.info;
                self.read(svc_info, Some(&ns), &pn.name)?;
                let (num, named) = match pn.port.as_deref() {
                    Some(s) => match s.parse::<u16>() {
                        Ok(n) => (Some(n), None),
                        Err(_) => (None, Some(s)),
                    },
                    None => (None, None),
                };
                let (ip, port) =
                    self.resolve_service(&ns, &pn.name, num, named)
                        .map_err(|(reason, msg)| {
                            ApiError::service_unavailable(format!(
                                "no endpoints available for service {:?} ({reason}): {msg}",
                                pn.name
                            ))
                        })?;
                target_for(pn.https, ip, port, &format!("{}.{ns}.svc", pn.name))
            }
            "pods" => {
                let pn = parse_proxy_name(&raw_name);
                let (pod, _) = self.read(p.info, Some(&ns), &pn.name)?;
                let ip = pod
                    .pointer("/status/podIP")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        ApiError::service_unavailable(format!(
                            "pod {:?} has no IP address yet; wait until it is Running",
                            pn.name
                        ))
                    })?
                    .to_string();
                let port = match pn.port.as_deref() {
                    None => {
                        if pn.https {
                            443
                        } else {
                            80
                        }
                    }
                    Some(s) => match s.parse::<u16>() {
                        Ok(n) => n,
                        Err(_) => named_container_port(&pod, s).ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "pod {:?} has no container port named {s:?}",
                                pn.name
                            ))
                        })?,
                    },
                };
                target_for(pn.https, ip, port, &pn.name)
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "{other} have no proxy subresource"
                )))
            }
        };
        let h = upstream::forwarded_headers(headers);
        Ok(upstream::forward(&target, method, &tail, &h, body).await?)
    }
}

fn target_for(https: bool, host: String, port: u16, server_name: &str) -> Target {
    Target {
        host,
        port,
        scheme: if https {
            // kube's service/pod proxy does not verify the backend's certificate
            Scheme::Https {
                ca: None,
                server_name: server_name.to_string(),
            }
        } else {
            Scheme::Http
        },
    }
}

fn named_container_port(pod: &Value, name: &str) -> Option<u16> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)?
        .iter()
        .flat_map(|c| {
            c.get("ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
        .and_then(|p| p.get("containerPort").and_then(Value::as_u64))
        .map(|p| p as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn proxy_names() {
        assert_eq!(
            parse_proxy_name("web"),
            ProxyName {
                https: false,
                name: "web".into(),
                port: None
            }
        );
        assert_eq!(parse_proxy_name("web:8080").port.as_deref(), Some("8080"));
        assert_eq!(
            parse_proxy_name("https:web:"),
            ProxyName {
                https: true,
                name: "web".into(),
                port: None
            }
        );
        assert_eq!(
            parse_proxy_name("https:web:metrics"),
            ProxyName {
                https: true,
                name: "web".into(),
                port: Some("metrics".into())
            }
        );
        assert_eq!(parse_proxy_name("http:web").name, "web");
    }

    #[test]
    fn proxied_paths_keep_the_tail_and_query() {
        assert_eq!(
            proxied_path(
                "/api/v1/nodes/minik/proxy/stats/summary",
                Some("only_cpu_and_memory=true"),
                "nodes",
                "minik"
            ),
            "/stats/summary?only_cpu_and_memory=true"
        );
        assert_eq!(
            proxied_path("/api/v1/nodes/minik/proxy", None, "nodes", "minik"),
            "/"
        );
        assert_eq!(
            proxied_path(
                "/api/v1/namespaces/default/services/web:80/proxy/a/b/",
                None,
                "services",
                "web:80"
            ),
            "/a/b/"
        );
    }

    #[test]
    fn named_ports() {
        let pod =
            json!({"spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8080}]}]}});
        assert_eq!(named_container_port(&pod, "http"), Some(8080));
        assert_eq!(named_container_port(&pod, "nope"), None);
    }
}
