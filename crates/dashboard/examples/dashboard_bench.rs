//! Dashboard benchmark: a real minik API server with 300 pods, the
//! dashboard server in its own process (so its memory can be read from
//! /proc), and headless Chromium. Prints: first contentful paint, time until
//! the pod list shows all 300 pods, the dashboard server's RSS, the page's
//! JS heap, and the latency from a pod status change in the API to the new
//! value on screen (watch → WebSocket → DOM).
//!
//! `cargo run -p minik-dashboard --example dashboard_bench [--release] [-- PODS]`

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use futures::StreamExt;
use serde_json::json;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "MINIK_DASHBOARD_BENCH_CHILD";

/// The child: serve the dashboard with the PEMs in the given directory.
async fn child(dir: &str) -> anyhow::Result<()> {
    let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}"));
    let cfg = minik_dashboard::DashboardConfig {
        listen: read("listen")?.trim().parse()?,
        api_server: read("api")?.trim().to_string(),
        auth: minik_dashboard::ApiAuth::ClientCert {
            ca_pem: read("ca.pem")?,
            cert_pem: read("cert.pem")?,
            key_pem: read("key.pem")?,
        },
    };
    minik_dashboard::serve(cfg).await
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn stats(mut v: Vec<u64>) -> String {
    v.sort_unstable();
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    format!(
        "min {} ms, median {} ms, p95 {} ms, max {} ms (n={})",
        v[0],
        p(0.5),
        p(0.95),
        v[v.len() - 1],
        v.len()
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> anyhow::Result<()> {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        return child(&dir).await;
    }
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300);

    let c = Cluster::start_with(false).await;
    // the dashboard in its own process
    let dir = tempfile::tempdir()?;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    for (f, v) in [
        ("listen", format!("127.0.0.1:{port}")),
        ("api", c.api.clone()),
        ("ca.pem", c.pki.ca_pem.clone()),
        ("cert.pem", c.pki.admin_cert.clone()),
        ("key.pem", c.pki.admin_key.clone()),
    ] {
        std::fs::write(dir.path().join(f), v)?;
    }
    let mut server = tokio::process::Command::new(std::env::current_exe()?)
        .env(CHILD_ENV, dir.path())
        .kill_on_drop(true)
        .spawn()?;
    let server_pid = server.id().unwrap_or(0);
    let url = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while reqwest::get(format!("{url}/healthz")).await.is_err() {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(20),
            "dashboard did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_idle = rss_kib(server_pid);

    // 300 pods, Running, on one node
    c.create("/api/v1/namespaces", json!({"metadata": {"name": "bench"}}))
        .await;
    c.create("/api/v1/nodes", json!({"metadata": {"name": "minik"}}))
        .await;
    let t = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let c = &c;
            async move {
                let name = format!("bench-{i:03}");
                c.create(
                    "/api/v1/namespaces/bench/pods",
                    pod("bench", &name, json!({"app": "bench"}), None, Some("minik")),
                )
                .await;
                c.patch(
                    &format!("/api/v1/namespaces/bench/pods/{name}/status"),
                    running_status(&format!("10.244.{}.{}", i / 250, i % 250 + 2)),
                )
                .await;
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    println!(
        "created {n} pods (+ status) through the API in {} ms",
        t.elapsed().as_millis()
    );

    let ch = Chrome::launch(1280, 800).await;
    ch.call(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({"source": format!(
            "window.__complete = 0; new MutationObserver(() => {{
               if (!window.__complete && document.querySelectorAll('[data-testid^=\"pod-row-bench-\"]').length >= {n})
                 window.__complete = performance.now();
             }}).observe(document, {{childList: true, subtree: true}});"
        )}),
    )
    .await;
    ch.call("Performance.enable", json!({})).await;
    ch.navigate(&format!("{url}/#/pods")).await;
    ch.wait_for("window.__complete > 0", Duration::from_secs(60))
        .await;
    let fcp = ch
        .eval("(performance.getEntriesByName('first-contentful-paint')[0] || {startTime: -1}).startTime")
        .await;
    let dcl = ch
        .eval("performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")
        .await;
    let complete = ch.eval("window.__complete").await;
    println!(
        "first contentful paint {:.0} ms, DOMContentLoaded {:.0} ms, pod list complete ({n} rows) {:.0} ms after navigation start",
        fcp.as_f64().unwrap_or(-1.0),
        dcl.as_f64().unwrap_or(-1.0),
        complete.as_f64().unwrap_or(-1.0)
    );
    ch.screenshot("bench-pods").await;

    // update latency: bump a pod's restart count, time until the cell shows it
    let (mut lat, mut to_event, mut render_ms) = (Vec::new(), Vec::new(), Vec::new());
    let (mut to_layout, mut to_frame) = (Vec::new(), Vec::new());
    for round in 1..=30u32 {
        let name = format!("bench-{:03}", (round as usize * 7) % n);
        let id = format!("pod-restarts-bench-{name}");
        ch.eval(&format!(
            "window.__upd = 0; window.__laid = 0; window.__frame = 0; (() => {{ const mo = new MutationObserver(() => {{
               const e = document.querySelector('[data-testid=\"{id}\"]');
               if (e && e.textContent === '{round}' && !window.__upd) {{
                 window.__upd = Date.now(); mo.disconnect();
                 void document.body.offsetHeight; window.__laid = Date.now();
                 requestAnimationFrame(() => {{ window.__frame = Date.now(); }});
               }}
             }}); mo.observe(document.body, {{childList: true, subtree: true, characterData: true}}); }})()"
        ))
        .await;
        let mut st = running_status("10.244.9.9");
        st["status"]["containerStatuses"][0]["restartCount"] = json!(round);
        let t0 = now_ms();
        c.patch(&format!("/api/v1/namespaces/bench/pods/{name}/status"), st)
            .await;
        ch.wait_for("window.__upd > 0", Duration::from_secs(10))
            .await;
        ch.wait_for("window.__frame > 0", Duration::from_secs(10))
            .await;
        let seen = ch.eval("window.__upd").await.as_u64().unwrap_or(0);
        let laid = ch.eval("window.__laid").await.as_u64().unwrap_or(0);
        let frame = ch.eval("window.__frame").await.as_u64().unwrap_or(0);
        to_layout.push(laid.saturating_sub(t0));
        to_frame.push(frame.saturating_sub(t0));
        let ev = ch
            .eval("window.__minik.lastEvent")
            .await
            .as_u64()
            .unwrap_or(0);
        let r = ch
            .eval("window.__minik.renderMs")
            .await
            .as_f64()
            .unwrap_or(0.0);
        lat.push(seen.saturating_sub(t0));
        to_event.push(ev.saturating_sub(t0));
        render_ms.push(r.round() as u64);
    }
    println!(
        "update latency, API PATCH sent → value in the DOM: {}",
        stats(lat)
    );
    println!(
        "update latency, API PATCH sent → laid out: {}",
        stats(to_layout)
    );
    println!(
        "update latency, API PATCH sent → next animation frame (on screen): {}",
        stats(to_frame)
    );
    println!(
        "  of which PATCH sent → watch event in the page: {}",
        stats(to_event)
    );
    println!(
        "  one full render of the {n}-row list: {}",
        stats(render_ms)
    );

    let m = ch.call("Performance.getMetrics", json!({})).await;
    let heap = m["metrics"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == "JSHeapUsedSize"))
        .and_then(|x| x["value"].as_f64())
        .unwrap_or(0.0);
    println!(
        "dashboard server RSS: {:.1} MiB idle, {:.1} MiB with the page open on {n} pods; page JS heap {:.1} MiB",
        rss_idle as f64 / 1024.0,
        rss_kib(server_pid) as f64 / 1024.0,
        heap / 1048576.0
    );
    ch.close().await;
    let _ = server.start_kill();
    let _ = server.wait().await;
    Ok(())
}
