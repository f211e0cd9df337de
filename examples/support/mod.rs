//! What the benchmark programs share: finding the `minik` binary beside
//! them, running it with an isolated home, an admin-certificate HTTPS client
//! for the none-driver cluster, percentiles and a process's resident memory.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub type R<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// `$MINIK_BIN`, else the `minik` beside `target/<profile>/examples/`.
pub fn minik_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MINIK_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("exe");
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("minik"))
        .expect("minik beside examples/")
}

/// Runs `minik` with MINIK_HOME, KUBECONFIG and HOME under `home`.
pub fn minik(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(minik_bin())
        .args(args)
        .env("MINIK_HOME", home.join("minik"))
        .env("KUBECONFIG", home.join("kubeconfig"))
        .env("HOME", home)
        .output()
        .expect("run minik")
}

/// The `p` quantile (0..=1) of `v` (sorted in place); NaN when empty.
pub fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

/// VmRSS of a process in MB; NaN when unreadable.
pub fn rss_mb(pid: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map(|k| k / 1024.0)
        .unwrap_or(f64::NAN)
}

/// The pid of the default profile's agent.
pub fn agent_pid(home: &Path) -> R<String> {
    Ok(
        std::fs::read_to_string(home.join("minik/profiles/minik/agent.pid"))?
            .trim()
            .to_string(),
    )
}

/// An HTTPS client holding the profile's admin certificate.
pub struct Api {
    pub home: PathBuf,
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    pub fn new(home: PathBuf) -> R<Api> {
        let certs = home.join("minik/profiles/minik/certs");
        let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.join("ca.crt"))?)?;
        let mut pem = std::fs::read(certs.join("admin.crt"))?;
        pem.extend(std::fs::read(certs.join("admin.key"))?);
        let http = reqwest::Client::builder()
            .tls_certs_only([ca])
            .identity(reqwest::Identity::from_pem(&pem)?)
            .pool_max_idle_per_host(256)
            .build()?;
        Ok(Api {
            home,
            http,
            base: "https://127.0.0.1:8443".into(),
        })
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, String)>,
    ) -> R<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some((ct, b)) = body {
            req = req.header("content-type", ct).body(b);
        }
        let r = req.send().await?;
        let s = r.status();
        let v: Value = r.json().await?;
        if !s.is_success() {
            return Err(format!("{method} {path}: {s} {v}").into());
        }
        Ok(v)
    }

    pub async fn post(&self, path: &str, body: &Value) -> R<Value> {
        self.send(
            reqwest::Method::POST,
            path,
            Some(("application/json", body.to_string())),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> R<Value> {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn merge_patch(&self, path: &str, body: &Value) -> R<Value> {
        self.send(
            reqwest::Method::PATCH,
            path,
            Some(("application/merge-patch+json", body.to_string())),
        )
        .await
    }
}
