//! API-depth benchmark (issue 4). Prints numbers, never asserts:
//!   cargo build --release --examples && sudo target/release/examples/bench_api
//!
//! 1. Watch fan-out: 200 watchers on pods, 1,000 pod updates at 100/s (merge
//!    patches of an annotation carrying the send time); delivery latency from the
//!    PATCH being sent to each watcher decoding the event: p50/p99, beside
//!    the same updates seen by a single watcher (the baseline) and the ratio.
//!    The pods are bound to a node that does not exist, so no kubelet or
//!    scheduler acts on them: only the API server's watch path is measured.
//! 2. 10,000 ConfigMaps: LIST of all of them (p50/p99 of 10 runs) beside a
//!    LIST of 100 (ratio per item), paged LIST (limit=500), store size on
//!    disk beside the JSON bytes written, agent memory before and after.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

mod support;
use support::{agent_pid, minik, minik_bin, pct, rss_mb, Api, R};

const PODS: usize = 10;
const UPDATES: usize = 1000;
const WATCHERS: usize = 200;
/// The pace of the pod updates (all writers together).
const UPDATES_PER_SEC: f64 = 100.0;
const CONFIGMAPS: usize = 10_000;

/// Micro-seconds since `t0`, the clock every task shares.
fn micros(t0: Instant) -> u64 {
    t0.elapsed().as_micros() as u64
}

/// Opens `n` watches on the bench pods from `rv`, then sends the updates;
/// returns every delivery latency in ms (send → decoded by a watcher).
async fn fan_out(api: &Arc<Api>, t0: Instant, n: usize, rv: &str, round: usize) -> R<Vec<f64>> {
    let ready = Arc::new(AtomicUsize::new(0));
    let mut watchers = Vec::new();
    for _ in 0..n {
        let api = api.clone();
        let ready = ready.clone();
        let url = format!(
            "{}/api/v1/namespaces/default/pods?watch=true&labelSelector=bench%3Dfanout&resourceVersion={rv}&allowWatchBookmarks=false",
            api.base
        );
        watchers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(UPDATES);
            let resp = match api.http.get(url).send().await {
                Ok(r) => r,
                Err(_) => return lat,
            };
            ready.fetch_add(1, Ordering::SeqCst);
            let mut stream = resp.bytes_stream();
            let mut buf = Vec::new();
            let mut seen = 0;
            while seen < UPDATES {
                let Ok(Some(Ok(chunk))) =
                    tokio::time::timeout(Duration::from_secs(30), stream.next()).await
                else {
                    break;
                };
                buf.extend_from_slice(&chunk);
                while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let Ok(ev) = serde_json::from_slice::<Value>(&line) else {
                        continue;
                    };
                    let ann = &ev["object"]["metadata"]["annotations"];
                    if ann["bench/round"].as_str() != Some(&round.to_string()) {
                        continue;
                    }
                    if let Some(sent) = ann["bench/sent"]
                        .as_str()
                        .and_then(|s| s.parse::<u64>().ok())
                    {
                        lat.push((micros(t0).saturating_sub(sent)) as f64 / 1000.0);
                        seen += 1;
                    }
                }
            }
            lat
        }));
    }
    while ready.load(Ordering::SeqCst) < n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Four writers, each owning some pods, so updates overlap as in a
    // cluster, paced at UPDATES_PER_SEC in all (so the figure is delivery
    // latency, not the depth of a queue the benchmark itself piles up).
    let mut writers = Vec::new();
    let start = Instant::now();
    for w in 0..4 {
        let api = api.clone();
        writers.push(tokio::spawn(async move {
            for i in (w..UPDATES).step_by(4) {
                let due = start + Duration::from_secs_f64(i as f64 / UPDATES_PER_SEC);
                tokio::time::sleep_until(due.into()).await;
                let pod = i % PODS;
                let body = json!({"metadata":{"annotations":{
                    "bench/sent": micros(t0).to_string(),
                    "bench/round": round.to_string(),
                    "bench/i": i.to_string()}}});
                if let Err(e) = api
                    .merge_patch(&format!("/api/v1/namespaces/default/pods/fan-{pod}"), &body)
                    .await
                {
                    eprintln!("patch: {e}");
                }
            }
        }));
    }
    for w in writers {
        w.await?;
    }
    let mut all = Vec::new();
    for w in watchers {
        all.extend(w.await?);
    }
    Ok(all)
}

fn dir_size(p: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

async fn timed_get(api: &Api, path: &str) -> R<(f64, Value)> {
    let t = Instant::now();
    let v = api.get(path).await?;
    Ok((t.elapsed().as_secs_f64() * 1000.0, v))
}

#[tokio::main]
async fn main() -> R<()> {
    let home = std::env::temp_dir().join(format!("minik-bench-api-{}", std::process::id()));
    std::fs::create_dir_all(&home)?;
    println!("minik API benchmark ({})", minik_bin().display());
    let out = minik(&home, &["start", "--driver=none"]);
    if !out.status.success() {
        eprintln!(
            "minik start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::process::exit(1);
    }
    let api = Arc::new(Api::new(home.clone())?);
    let pid = agent_pid(&home)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t0 = Instant::now();

    // 1. watch fan-out
    for i in 0..PODS {
        let pod = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":format!("fan-{i}"),"labels":{"bench":"fanout"}},
            "spec":{"nodeName":"bench-no-such-node","containers":[{"name":"c","image":"minik/hello"}]}});
        api.post("/api/v1/namespaces/default/pods", &pod).await?;
    }
    let list = api
        .get("/api/v1/namespaces/default/pods?labelSelector=bench%3Dfanout")
        .await?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    let t = Instant::now();
    let mut one = fan_out(&api, t0, 1, &rv, 1).await?;
    let one_secs = t.elapsed().as_secs_f64();
    let list = api
        .get("/api/v1/namespaces/default/pods?labelSelector=bench%3Dfanout")
        .await?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    let rss_before_fan = rss_mb(&pid);
    let t = Instant::now();
    let mut many = fan_out(&api, t0, WATCHERS, &rv, 2).await?;
    let many_secs = t.elapsed().as_secs_f64();
    let (b50, b99) = (pct(&mut one, 0.5), pct(&mut one, 0.99));
    let (m50, m99) = (pct(&mut many, 0.5), pct(&mut many, 0.99));
    println!(
        "watch fan-out: {WATCHERS} watchers x {UPDATES} pod updates ({UPDATES_PER_SEC}/s) = {} deliveries of {} expected in {many_secs:.1} s; delivery p50 {m50:.1} ms, p99 {m99:.1} ms",
        many.len(),
        WATCHERS * UPDATES
    );
    println!(
        "  baseline 1 watcher: {} deliveries in {one_secs:.1} s; p50 {b50:.1} ms, p99 {b99:.1} ms; ratio p99 {:.1}x for {WATCHERS}x the watchers",
        one.len(),
        m99 / b99
    );
    println!(
        "  agent RSS before fan-out {rss_before_fan:.1} MB, after {:.1} MB",
        rss_mb(&pid)
    );

    // 2. 10,000 ConfigMaps
    let store_dir = home.join("minik/profiles/minik/node/store");
    let size0 = dir_size(&store_dir);
    let rss0 = rss_mb(&pid);
    let payload = "x".repeat(100);
    let written = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..16 {
        let api = api.clone();
        let payload = payload.clone();
        let written = written.clone();
        tasks.push(tokio::spawn(async move {
            for i in (c..CONFIGMAPS).step_by(16) {
                let cm = json!({"apiVersion":"v1","kind":"ConfigMap",
                    "metadata":{"name":format!("cm-{i:05}"),"labels":{"bench":"tenk","shard":(i % 10).to_string()}},
                    "data":{"key":payload,"index":i.to_string()}});
                written.fetch_add(cm.to_string().len(), Ordering::Relaxed);
                if let Err(e) = api.post("/api/v1/namespaces/default/configmaps", &cm).await {
                    eprintln!("create: {e}");
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    println!(
        "10,000 ConfigMaps created by 16 clients in {:.1} s ({:.0}/s)",
        t.elapsed().as_secs_f64(),
        CONFIGMAPS as f64 / t.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_created = rss_mb(&pid);
    let mut full = Vec::new();
    let mut items = 0;
    for _ in 0..10 {
        let (ms, v) = timed_get(
            &api,
            "/api/v1/namespaces/default/configmaps?labelSelector=bench%3Dtenk",
        )
        .await?;
        items = v["items"].as_array().map(|a| a.len()).unwrap_or(0);
        full.push(ms);
    }
    let mut small = Vec::new();
    for _ in 0..10 {
        let (ms, _) = timed_get(
            &api,
            "/api/v1/namespaces/default/configmaps?labelSelector=bench%3Dtenk&limit=100",
        )
        .await?;
        small.push(ms);
    }
    let (f50, f99) = (pct(&mut full, 0.5), pct(&mut full, 0.99));
    let (s50, _) = (pct(&mut small, 0.5), pct(&mut small, 0.99));
    println!(
        "LIST all {items} ConfigMaps: p50 {f50:.0} ms, p99 {f99:.0} ms; LIST limit=100: p50 {s50:.1} ms; per item {:.1} us vs {:.1} us (ratio {:.2}x)",
        f50 * 1000.0 / items.max(1) as f64,
        s50 * 10.0,
        (f50 / items.max(1) as f64) / (s50 / 100.0)
    );
    let t = Instant::now();
    let mut cont = String::new();
    let mut pages = 0;
    let mut paged = 0;
    loop {
        let mut path = "/api/v1/namespaces/default/configmaps?labelSelector=bench%3Dtenk&limit=500"
            .to_string();
        if !cont.is_empty() {
            path.push_str(&format!("&continue={cont}"));
        }
        let v = api.get(&path).await?;
        pages += 1;
        paged += v["items"].as_array().map(|a| a.len()).unwrap_or(0);
        match v["metadata"]["continue"].as_str() {
            Some(c) if !c.is_empty() => cont = c.to_string(),
            _ => break,
        }
    }
    println!(
        "paged LIST (limit=500): {paged} items in {pages} pages, {:.0} ms total",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let shard = timed_get(
        &api,
        "/api/v1/namespaces/default/configmaps?labelSelector=shard%3D3",
    )
    .await?;
    println!("LIST by label (1,000 of 10,000 match): {:.0} ms", shard.0);
    let size1 = dir_size(&store_dir);
    let json_bytes = written.load(Ordering::Relaxed) as f64;
    println!(
        "store on disk: {:.1} MB before, {:.1} MB after ({:.1} MB of ConfigMap JSON sent; ratio {:.2}x)",
        size0 as f64 / 1e6,
        size1 as f64 / 1e6,
        json_bytes / 1e6,
        (size1 - size0.min(size1)) as f64 / json_bytes
    );
    println!(
        "agent RSS: {rss0:.1} MB before the ConfigMaps, {rss_created:.1} MB once 10,000 are stored (+{:.1} MB), {:.1} MB after the LISTs",
        rss_created - rss0,
        rss_mb(&pid),
    );

    if let Some(secs) = std::env::var("BENCH_PAUSE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        println!("pausing {secs} s before delete (agent pid {pid})");
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
    let _ = minik(&home, &["delete"]);
    let _ = std::fs::remove_dir_all(&home);
    Ok(())
}
