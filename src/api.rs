//! The CLI's small HTTPS client for its own cluster (readiness, node status,
//! services), authenticated with the profile's admin certificate.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::certs::CertPaths;

pub struct ApiClient {
    http: reqwest::Client,
    base: String,
}

impl ApiClient {
    pub fn new(certs: &CertPaths, base: &str) -> Result<ApiClient> {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&certs.ca_cert)?)?;
        let mut pem = std::fs::read(&certs.admin_cert)?;
        pem.extend(std::fs::read(&certs.admin_key)?);
        let id = reqwest::Identity::from_pem(&pem).context("loading the admin certificate")?;
        let http = reqwest::Client::builder()
            .tls_certs_only([ca])
            .identity(id)
            // A VM under software emulation on a busy host can be slow to
            // accept; readiness polls still return quickly once it answers.
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(ApiClient {
            http,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    /// GET a path; Ok(None) on 404.
    pub async fn get(&self, path: &str) -> Result<Option<Value>> {
        let resp = self
            .http
            .get(format!("{}{}", self.base, path))
            .send()
            .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let status = resp.status();
        let body: Value = resp.json().await?;
        if !status.is_success() {
            let msg = body["message"].as_str().unwrap_or("unknown error");
            anyhow::bail!("the API server answered {status}: {msg}");
        }
        Ok(Some(body))
    }

    /// Server-side apply of one object (`PATCH` with
    /// `application/apply-patch+yaml`, JSON being YAML); creates it when
    /// missing. Returns the object as stored.
    pub async fn apply(&self, path: &str, obj: &Value, field_manager: &str) -> Result<Value> {
        let url = format!(
            "{}{}?fieldManager={field_manager}&force=true",
            self.base, path
        );
        let resp = self
            .http
            .patch(url)
            .header("Content-Type", "application/apply-patch+yaml")
            .header("Accept", "application/json")
            .body(serde_json::to_vec(obj)?)
            .send()
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = body["message"].as_str().unwrap_or("unknown error");
            anyhow::bail!("applying {path}: the API server answered {status}: {msg}");
        }
        Ok(body)
    }

    /// DELETE a path with background propagation (dependents are removed
    /// by the garbage collector); Ok(false) when it was already gone.
    pub async fn delete(&self, path: &str) -> Result<bool> {
        self.delete_with(path, "Background").await
    }

    /// DELETE with a propagation policy (`Background`, `Foreground`,
    /// `Orphan`); false when the object was not there.
    pub async fn delete_with(&self, path: &str, propagation: &str) -> Result<bool> {
        let body = serde_json::json!({
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "propagationPolicy": propagation,
        });
        let resp = self
            .http
            .delete(format!("{}{}", self.base, path))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(false);
        }
        if !status.is_success() {
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let msg = body["message"].as_str().unwrap_or("unknown error");
            anyhow::bail!("deleting {path}: the API server answered {status}: {msg}");
        }
        Ok(true)
    }

    /// The items of a list path (a missing collection is an empty list).
    pub async fn list(&self, path: &str) -> Result<Vec<Value>> {
        Ok(match self.get(path).await? {
            Some(Value::Object(mut m)) => match m.remove("items") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        })
    }

    /// A raw request on `path` with the admin identity, for bodies and
    /// answers that are not JSON objects (`minik image` streams archives
    /// through `nodes/<node>/proxy`). Set a longer `.timeout()` for big bodies.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{}", self.base, path))
    }

    /// Whether `/readyz` answers ok.
    pub async fn ready(&self) -> bool {
        match self.http.get(format!("{}/readyz", self.base)).send().await {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        }
    }

    /// Whether the node `name` reports Ready=True.
    pub async fn node_ready(&self, name: &str) -> bool {
        match self.get(&format!("/api/v1/nodes/{name}")).await {
            Ok(Some(node)) => node_is_ready(&node),
            _ => false,
        }
    }
}

pub fn node_is_ready(node: &Value) -> bool {
    node["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_condition() {
        let n = serde_json::json!({"status":{"conditions":[{"type":"MemoryPressure","status":"False"},{"type":"Ready","status":"True"}]}});
        assert!(node_is_ready(&n));
        let n = serde_json::json!({"status":{"conditions":[{"type":"Ready","status":"False"}]}});
        assert!(!node_is_ready(&n));
        assert!(!node_is_ready(&serde_json::json!({})));
    }
}
