//! Streaming subresources proxied to the kubelet with an HTTP upgrade, as
//! kube-apiserver's upgrade-aware proxy does: `pods/exec`, `pods/attach`
//! and `pods/portforward`. The client's upgrade request (WebSocket with
//! `v5.channel.k8s.io`, or the SPDY fallback) is replayed to the kubelet's
//! `/exec|/attach/<ns>/<pod>/<container>` or `/portForward/<ns>/<pod>`;
//! when the kubelet answers 101 the two upgraded connections are spliced
//! byte for byte, so the channel protocol is the kubelet's business.

use crate::error::ApiError;
use crate::logs::{kubelet_address, pick_container};
use crate::request::{Query, ResourcePath};
use crate::Inner;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, Method, StatusCode};
use axum::response::Response;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Request headers that carry the upgrade negotiation.
fn is_upgrade_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    n == "connection"
        || n == "upgrade"
        || n.starts_with("sec-websocket-")
        || n == "x-stream-protocol-version"
}

/// Whether the request asks for a connection upgrade.
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
        && headers.contains_key(header::UPGRADE)
}

/// The kubelet path for a streaming subresource.
pub fn kubelet_path(sub: &str, ns: &str, pod: &str, container: &str) -> Option<String> {
    match sub {
        "exec" => Some(format!("/exec/{ns}/{pod}/{container}")),
        "attach" => Some(format!("/attach/{ns}/{pod}/{container}")),
        "portforward" => Some(format!("/portForward/{ns}/{pod}")),
        _ => None,
    }
}

impl Inner {
    pub async fn stream_proxy(
        &self,
        p: &ResourcePath,
        q: &Query,
        raw_query: Option<&str>,
        method: &Method,
        headers: &HeaderMap,
        on_upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Result<Response, ApiError> {
        let sub = p.subresource.clone().unwrap_or_default();
        let sub = sub.as_str();
        let ns = p.namespace.clone().unwrap_or_default();
        let name = p.name.clone().unwrap_or_default();
        if !wants_upgrade(headers) {
            return Err(ApiError::bad_request(format!(
                "{sub} needs an upgraded connection (WebSocket or SPDY): use kubectl {sub}"
            )));
        }
        let on_upgrade = on_upgrade.ok_or_else(|| {
            ApiError::bad_request(format!(
                "{sub} is only served over the apiserver's network port, not in-process"
            ))
        })?;
        let (pod, _) = self.read(p.info, Some(&ns), &name)?;
        let phase = pod
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("");
        if phase == "Succeeded" || phase == "Failed" {
            return Err(ApiError::bad_request(format!(
                "cannot {sub} into a container in a completed pod; current phase is {phase}"
            )));
        }
        let container = if sub == "portforward" {
            String::new()
        } else {
            pick_container(&pod, q.get("container"))?
        };
        let node_name = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if node_name.is_empty() {
            return Err(ApiError::bad_request(format!(
                "pod {name} is not scheduled to a node yet; wait until it is Running"
            )));
        }
        let nodes = minik_apimachinery::resources::find("", "v1", "nodes")
            .ok_or_else(|| ApiError::internal("nodes resource missing"))?;
        let (node, _) = self.read(nodes, None, node_name)?;
        let (ip, port) = kubelet_address(&node).ok_or_else(|| {
            ApiError::service_unavailable(format!(
                "node {node_name:?} reports no kubelet address yet; try again shortly"
            ))
        })?;
        let path =
            kubelet_path(sub, &ns, &name, &container).ok_or_else(ApiError::path_not_found)?;
        let uri = match raw_query.filter(|q| !q.is_empty()) {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };

        let tcp = tokio::net::TcpStream::connect((ip.as_str(), port))
            .await
            .map_err(|e| {
                ApiError::service_unavailable(format!(
                    "cannot reach the kubelet at {ip}:{port} for node {node_name:?}: {e}"
                ))
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| ApiError::service_unavailable(format!("kubelet handshake: {e}")))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("kubelet streaming connection ended: {e}");
            }
        });
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(&uri)
            .header(header::HOST, format!("{ip}:{port}"));
        for (k, v) in headers.iter().filter(|(k, _)| is_upgrade_header(k)) {
            req = req.header(k, v);
        }
        let req = req
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| ApiError::internal(format!("building the kubelet request: {e}")))?;
        let mut resp = sender.send_request(req).await.map_err(|e| {
            ApiError::service_unavailable(format!("kubelet {sub} request failed: {e}"))
        })?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&body).trim().to_string();
            let text = if text.is_empty() {
                format!("the kubelet refused the {sub} upgrade with {status}")
            } else {
                text
            };
            let (code, reason) = match status.as_u16() {
                400 => (400, "BadRequest"),
                404 => (404, "NotFound"),
                _ => (500, "InternalError"),
            };
            return Err(ApiError::new(code, reason, text));
        }
        let mut out = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
        for (k, v) in resp.headers().iter().filter(|(k, _)| is_upgrade_header(k)) {
            out = out.header(k, v);
        }
        let kubelet_upgrade = hyper::upgrade::on(&mut resp);
        let what = sub.to_string();
        tokio::spawn(async move {
            let (client, kubelet) = match tokio::try_join!(on_upgrade, kubelet_upgrade) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!("upgrade for {what} failed: {e}");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut kubelet = TokioIo::new(kubelet);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut kubelet).await;
        });
        out.body(Body::empty())
            .map_err(|e| ApiError::internal(format!("building the upgrade response: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn paths_and_headers() {
        assert_eq!(
            kubelet_path("exec", "default", "hw", "c").as_deref(),
            Some("/exec/default/hw/c")
        );
        assert_eq!(
            kubelet_path("portforward", "default", "hw", "").as_deref(),
            Some("/portForward/default/hw")
        );
        assert!(kubelet_path("log", "a", "b", "c").is_none());
        let mut h = HeaderMap::new();
        assert!(!wants_upgrade(&h));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(wants_upgrade(&h));
        assert!(is_upgrade_header(&HeaderName::from_static(
            "sec-websocket-protocol"
        )));
        assert!(!is_upgrade_header(&header::AUTHORIZATION));
    }
}
