//! Scraping the kubelet: `GET <kubelet>/stats/summary?only_cpu_and_memory=true`
//! every resolution (15 s), into the [`Store`]. When a scrape brings series
//! that have only one sample (the first scrape, a new container), the next
//! scrape comes after [`QUICK_RESCRAPE`] instead, once, so figures are ready
//! within seconds instead of a full resolution later.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::storage::Store;
use crate::summary::Summary;

/// The delay before the scrape that completes new series.
pub const QUICK_RESCRAPE: Duration = Duration::from_secs(1);
/// The delay after a failed scrape while no metrics are available yet.
pub const RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error(
        "{url} is not an http:// URL: {reason}; pass --kubelet-url like http://127.0.0.1:10250"
    )]
    Url { url: String, reason: String },
    #[error("GET {url}: {reason}; is the kubelet running and listening there (--kubelet-url)?")]
    Request { url: String, reason: String },
    #[error(
        "GET {url}: no answer within {0:?}; the kubelet is overloaded or stuck (see `minik logs`)",
        TIMEOUT
    )]
    Timeout { url: String },
    #[error("GET {url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("GET {url}: the summary is not valid JSON: {source}")]
    Decode {
        url: String,
        source: serde_json::Error,
    },
}

/// How long one scrape may take (the kubelet may wait a second to compute rates).
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A plain-HTTP client: the kubelet serves HTTP on loopback.
pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

pub fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// The summary URL of a kubelet base URL (`http://127.0.0.1:10250`).
pub fn summary_url(kubelet: &str) -> String {
    format!(
        "{}/stats/summary?only_cpu_and_memory=true",
        kubelet.trim_end_matches('/')
    )
}

/// One scrape.
pub async fn scrape(http: &HttpClient, url: &str) -> Result<Summary, ScrapeError> {
    let uri: hyper::Uri =
        url.parse()
            .map_err(|e: hyper::http::uri::InvalidUri| ScrapeError::Url {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
    if uri.scheme_str() != Some("http") {
        return Err(ScrapeError::Url {
            url: url.to_string(),
            reason: "only http is supported".into(),
        });
    }
    let request = async {
        let resp = http.get(uri).await.map_err(|e| ScrapeError::Request {
            url: url.to_string(),
            reason: error_chain(&e),
        })?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ScrapeError::Request {
                url: url.to_string(),
                reason: e.to_string(),
            })?
            .to_bytes();
        Ok::<_, ScrapeError>((status, body))
    };
    let (status, body) =
        tokio::time::timeout(TIMEOUT, request)
            .await
            .map_err(|_| ScrapeError::Timeout {
                url: url.to_string(),
            })??;
    if !status.is_success() {
        return Err(ScrapeError::Status {
            url: url.to_string(),
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body).chars().take(300).collect(),
        });
    }
    serde_json::from_slice(&body).map_err(|source| ScrapeError::Decode {
        url: url.to_string(),
        source,
    })
}

/// An error with its causes (hyper's "client error (Connect)" alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// What to wait before the next scrape.
pub fn next_delay(
    ok: bool,
    pending: bool,
    ready: bool,
    quick_used: &mut bool,
    resolution: Duration,
) -> Duration {
    if !ok {
        return if ready { resolution } else { RETRY };
    }
    if pending && !*quick_used {
        *quick_used = true;
        return QUICK_RESCRAPE;
    }
    *quick_used = false;
    resolution
}

/// Scrapes forever.
pub async fn run(store: Arc<RwLock<Store>>, kubelet_url: String, resolution: Duration) {
    let url = summary_url(&kubelet_url);
    let http = http_client();
    let mut quick_used = false;
    let mut failing = false;
    loop {
        let result = scrape(&http, &url).await;
        let (ok, pending) = match &result {
            Ok(s) => {
                let mut st = store.write().unwrap_or_else(|p| p.into_inner());
                let pending = st.ingest(s, Utc::now());
                if failing {
                    tracing::info!("scraping {url} works again");
                    failing = false;
                }
                tracing::debug!("scraped {} pods from {url}", s.pods.len());
                (true, pending)
            }
            Err(e) => {
                if !failing {
                    tracing::warn!("scrape failed: {e}");
                }
                failing = true;
                (false, false)
            }
        };
        let ready = store.read().map(|s| s.ready()).unwrap_or(false);
        tokio::time::sleep(next_delay(ok, pending, ready, &mut quick_used, resolution)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            summary_url("http://127.0.0.1:10250/"),
            "http://127.0.0.1:10250/stats/summary?only_cpu_and_memory=true"
        );
    }

    #[test]
    fn one_quick_rescrape_per_round() {
        let res = Duration::from_secs(15);
        let mut q = false;
        assert_eq!(next_delay(true, true, false, &mut q, res), QUICK_RESCRAPE);
        // Still pending after the quick one (e.g. a new crash-looping
        // container): back to the resolution, not a 1 s loop.
        assert_eq!(next_delay(true, true, true, &mut q, res), res);
        assert_eq!(next_delay(true, true, true, &mut q, res), QUICK_RESCRAPE);
        assert_eq!(next_delay(true, false, true, &mut q, res), res);
        assert_eq!(next_delay(false, false, false, &mut q, res), RETRY);
        assert_eq!(next_delay(false, false, true, &mut q, res), res);
    }

    /// A real HTTP server standing in for the kubelet: the scrape parses
    /// what it serves, and an error status is reported with its body.
    #[tokio::test]
    async fn scrapes_over_http() {
        let app = axum::Router::new()
            .route(
                "/stats/summary",
                axum::routing::get(|| async {
                    r#"{"node":{"nodeName":"n1","cpu":{"time":"2026-01-01T00:00:00Z","usageCoreNanoSeconds":5}},"pods":[]}"#
                }),
            );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        let http = http_client();
        let s = scrape(&http, &summary_url(&format!("http://{addr}")))
            .await
            .unwrap();
        assert_eq!(s.node.node_name, "n1");
        let e = scrape(&http, &format!("http://{addr}/nope"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("HTTP 404"), "{e}");
        let e = scrape(&http, "http://127.0.0.1:1/stats/summary")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("--kubelet-url"), "{e}");
    }
}
