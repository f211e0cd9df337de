//! `pods/<name>/log`: proxied to the kubelet like kube-apiserver does. The
//! pod's `spec.nodeName` names the Node; its InternalIP and
//! `status.daemonEndpoints.kubeletEndpoint.Port` locate the kubelet; the
//! kubelet's `/containerLogs/<ns>/<pod>/<container>` stream is passed back
//! as `text/plain`.

use crate::error::ApiError;
use crate::request::{Query, ResourcePath};
use crate::Inner;
use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use http_body_util::{BodyExt, Empty};
use serde_json::Value;

/// Picks the container to read: the named one, or the only one.
pub fn pick_container(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let names = |list: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let containers = names("containers");
    let init = names("initContainers");
    let ephemeral = names("ephemeralContainers");
    match requested.filter(|c| !c.is_empty()) {
        Some(c) => {
            if containers
                .iter()
                .chain(&init)
                .chain(&ephemeral)
                .any(|n| n == c)
            {
                Ok(c.to_string())
            } else {
                let mut msg = format!("container {c} is not valid for pod {name}");
                if !containers.is_empty() {
                    msg = format!("{msg}: choose one of: [{}]", containers.join(" "));
                }
                Err(ApiError::bad_request(msg))
            }
        }
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut msg = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::bad_request(msg))
        }
    }
}

/// Where to dial a Node's kubelet: (InternalIP, port). The kubelet serves on
/// loopback only (it has no TLS or auth of its own yet), so when the node is
/// this host the answer is 127.0.0.1.
pub fn kubelet_address(node: &Value) -> Option<(String, u16)> {
    let addrs = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)?;
    let ip = addrs
        .iter()
        .find(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))
        .or_else(|| addrs.first())
        .and_then(|a| a.get("address").and_then(Value::as_str))?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| *p > 0 && *p <= 65535)
        .unwrap_or(10250) as u16;
    let ip = if is_local_address(ip) {
        "127.0.0.1"
    } else {
        ip
    };
    Some((ip.to_string(), port))
}

/// Whether `ip` is an address of this host (binding to it succeeds).
fn is_local_address(ip: &str) -> bool {
    match ip.parse::<std::net::IpAddr>() {
        Ok(addr) => std::net::UdpSocket::bind((addr, 0)).is_ok(),
        Err(_) => false,
    }
}

/// The kubelet URL for a log request.
pub fn log_url(ip: &str, port: u16, ns: &str, pod: &str, container: &str, q: &Query) -> String {
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    let mut params = form_urlencoded::Serializer::new(String::new());
    for key in ["follow", "previous", "timestamps"] {
        if q.flag(key) {
            params.append_pair(key, "true");
        }
    }
    for key in ["tailLines", "sinceSeconds", "sinceTime", "limitBytes"] {
        if let Some(v) = q.get(key).filter(|v| !v.is_empty()) {
            params.append_pair(key, v);
        }
    }
    let qs = params.finish();
    let mut url = format!("http://{host}:{port}/containerLogs/{ns}/{pod}/{container}");
    if !qs.is_empty() {
        url.push('?');
        url.push_str(&qs);
    }
    url
}

impl Inner {
    pub async fn pod_log(&self, p: &ResourcePath, q: &Query) -> Result<Response, ApiError> {
        let ns = p.namespace.clone().unwrap_or_default();
        let name = p.name.clone().unwrap_or_default();
        let (pod, _) = self.read(p.info, Some(&ns), &name)?;
        let container = pick_container(&pod, q.get("container"))?;
        for key in ["tailLines", "sinceSeconds", "limitBytes"] {
            if q.int(key)?.is_some_and(|v| v < 0) {
                return Err(ApiError::bad_request(format!(
                    "{key} must be a non-negative integer"
                )));
            }
        }
        let node_name = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if node_name.is_empty() {
            return Err(ApiError::bad_request(format!(
                "container {container:?} in pod {name:?} is waiting to start: the pod is not scheduled to a node yet"
            )));
        }
        let nodes = minik_apimachinery::resources::find("", "v1", "nodes")
            .ok_or_else(|| ApiError::internal("nodes resource missing"))?;
        let (node, _) = self.read(nodes, None, node_name)?;
        let (ip, port) = kubelet_address(&node).ok_or_else(|| {
            ApiError::service_unavailable(format!(
                "node {node_name:?} reports no address for its kubelet yet; try again shortly"
            ))
        })?;
        let url = log_url(&ip, port, &ns, &name, &container, q);
        let req = http::Request::get(&url)
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| ApiError::internal(format!("building the kubelet request {url}: {e}")))?;
        let resp = self.http.request(req).await.map_err(|e| {
            ApiError::service_unavailable(format!(
                "cannot reach the kubelet at {ip}:{port} for node {node_name:?}: {e}"
            ))
        })?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&body).trim().to_string();
            let (code, reason) = match status.as_u16() {
                400 => (400, "BadRequest"),
                404 => (404, "NotFound"),
                403 => (403, "Forbidden"),
                _ => (500, "InternalError"),
            };
            let text = if text.is_empty() {
                format!("the kubelet answered {status}")
            } else {
                text
            };
            return Err(ApiError::new(code, reason, text));
        }
        let body = Body::new(resp.into_body().map_err(axum::Error::new));
        let mut out = Response::new(body);
        *out.status_mut() = StatusCode::OK;
        out.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_choice() {
        let one = json!({"metadata": {"name": "hw"}, "spec": {"containers": [{"name": "hw"}]}});
        assert_eq!(pick_container(&one, None).unwrap(), "hw");
        assert_eq!(pick_container(&one, Some("")).unwrap(), "hw");
        assert!(pick_container(&one, Some("nope"))
            .unwrap_err()
            .message
            .contains("not valid for pod hw"));
        let two = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let e = pick_container(&two, None).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "a container name must be specified for pod p, choose one of: [a b]"
        );
        assert_eq!(pick_container(&two, Some("b")).unwrap(), "b");
    }

    #[test]
    fn kubelet_urls() {
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "minik"}, {"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}});
        assert_eq!(kubelet_address(&node), Some(("127.0.0.1".into(), 10250)));
        assert_eq!(kubelet_address(&json!({})), None);
        let q = Query::parse(Some("container=hw&follow=true&tailLines=10&previous=false"));
        assert_eq!(
            log_url("127.0.0.1", 10250, "default", "hw", "hw", &q),
            "http://127.0.0.1:10250/containerLogs/default/hw/hw?follow=true&tailLines=10"
        );
    }
}
