//! Walking-skeleton benchmark (issue 2). Prints numbers, never asserts:
//!   cargo build --release && sudo target/release/examples/bench_skeleton
//!
//! 1. `minik start --driver=none` until node Ready (target ≤ 2 s), beside the
//!    floor of spawning the binary at all (`minik version`).
//! 2. Pod start latency: 30 `minik/hello` pods, creation → Running seen via a
//!    watch, p50/p99 (target p99 ≤ 1 s), beside 30 bare `runc run -d` of the
//!    same rootfs in the same run (the floor); the ratio.
//! 3. API: GET, LIST and CREATE requests/s and p99 at 16 concurrent clients.
//! 4. Agent resident memory idle and with 30 pods (target idle ≤ 60 MB).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

mod support;
use support::{agent_pid, minik, minik_bin, pct, rss_mb, Api, R};

type Bench = Api;

impl Bench {
    /// Creates `n` pods and returns creation→Running latencies seen via watch.
    async fn pod_latency(&self, n: usize) -> R<Vec<f64>> {
        let list = self.get("/api/v1/namespaces/default/pods").await?;
        let rv = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("0")
            .to_string();
        let url = format!(
            "{}/api/v1/namespaces/default/pods?watch=true&labelSelector=bench%3Dstart&resourceVersion={rv}",
            self.base
        );
        let resp = self.http.get(url).send().await?;
        let mut stream = resp.bytes_stream();
        let mut created: HashMap<String, Instant> = HashMap::new();
        for i in 0..n {
            let name = format!("bench-{i}");
            let pod = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":name,"labels":{"bench":"start"}},
                "spec":{"containers":[{"name":"hello","image":"minik/hello","ports":[{"containerPort":80}]}]}});
            created.insert(name, Instant::now());
            self.post("/api/v1/namespaces/default/pods", &pod).await?;
        }
        let mut lat = Vec::new();
        let mut done = std::collections::HashSet::new();
        let mut buf = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(180);
        while done.len() < n && Instant::now() < deadline {
            let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_secs(5), stream.next()).await
            else {
                continue;
            };
            buf.extend_from_slice(&chunk?);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let Ok(ev) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                let o = &ev["object"];
                let name = o["metadata"]["name"].as_str().unwrap_or("").to_string();
                if o["status"]["phase"] == "Running" && !done.contains(&name) {
                    if let Some(t) = created.get(&name) {
                        lat.push(t.elapsed().as_secs_f64());
                        done.insert(name);
                    }
                }
            }
        }
        Ok(lat)
    }

    /// `clients` tasks doing `op` for `dur`; (requests/s, p99 ms).
    async fn load<F, Fut>(self: &Arc<Self>, clients: usize, dur: Duration, op: F) -> (f64, f64)
    where
        F: Fn(Arc<Bench>, usize, usize) -> Fut + Send + Sync + 'static + Clone,
        Fut: std::future::Future<Output = R<()>> + Send,
    {
        let start = Instant::now();
        let mut handles = Vec::new();
        for c in 0..clients {
            let me = self.clone();
            let op = op.clone();
            handles.push(tokio::spawn(async move {
                let mut lats = Vec::new();
                let mut i = 0;
                while start.elapsed() < dur {
                    let t = Instant::now();
                    if op(me.clone(), c, i).await.is_ok() {
                        lats.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    i += 1;
                }
                lats
            }));
        }
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.unwrap_or_default());
        }
        let rps = all.len() as f64 / start.elapsed().as_secs_f64();
        (rps, pct(&mut all, 0.99))
    }
}

/// The floor: `runc run -d` of the same rootfs, `n` times; seconds each.
fn bare_runc(n: usize, rootfs: &Path, scratch: &Path) -> Vec<f64> {
    let mut lat = Vec::new();
    for i in 0..n {
        let bundle = scratch.join(format!("b{i}"));
        std::fs::create_dir_all(&bundle).unwrap();
        let spec = json!({
            "ociVersion":"1.0.2",
            "process":{"terminal":false,"user":{"uid":0,"gid":0},"args":["/bin/sh","-c","sleep 60"],"env":["PATH=/bin"],"cwd":"/",
                "capabilities":{"bounding":["CAP_KILL"],"effective":["CAP_KILL"],"permitted":["CAP_KILL"]}},
            "root":{"path":rootfs.display().to_string(),"readonly":true},
            "hostname":"bare",
            "mounts":[{"destination":"/proc","type":"proc","source":"proc"}],
            "linux":{"namespaces":[{"type":"pid"},{"type":"ipc"},{"type":"uts"},{"type":"mount"},{"type":"network"}]}
        });
        std::fs::write(bundle.join("config.json"), spec.to_string()).unwrap();
        let id = format!("minik-bench-bare-{i}");
        let t = Instant::now();
        let ok = Command::new("runc")
            .args(["run", "-d", "-b"])
            .arg(&bundle)
            .arg(&id)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            lat.push(t.elapsed().as_secs_f64());
        }
    }
    for i in 0..n {
        let _ = Command::new("runc")
            .args(["delete", "-f", &format!("minik-bench-bare-{i}")])
            .output();
    }
    lat
}

/// The built-in minik/hello image flattened into one directory (its layers,
/// bottom first, copied into `scratch/rootfs`), for the bare-runc floor.
fn find_rootfs(home: &Path, scratch: &Path) -> Option<PathBuf> {
    let images = home.join("minik/profiles/minik/node/images");
    let rec = std::fs::read_dir(images.join("refs"))
        .ok()?
        .flatten()
        .find(|e| e.file_name().to_string_lossy().contains("hello"))?;
    let rec: Value = serde_json::from_slice(&std::fs::read(rec.path()).ok()?).ok()?;
    let rootfs = scratch.join("rootfs");
    std::fs::create_dir_all(&rootfs).ok()?;
    for layer in rec["layers"].as_array()? {
        let dir = images.join("layers").join(layer.as_str()?);
        let ok = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", dir.display()))
            .arg(&rootfs)
            .status()
            .ok()?
            .success();
        if !ok {
            return None;
        }
    }
    Some(rootfs)
}

#[tokio::main]
async fn main() -> R<()> {
    let home = std::env::temp_dir().join(format!("minik-bench-{}", std::process::id()));
    std::fs::create_dir_all(&home)?;
    println!(
        "minik walking-skeleton benchmark ({})",
        minik_bin().display()
    );

    // 1. start
    let t = Instant::now();
    let _ = minik(&home, &["version"]);
    let floor = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let out = minik(&home, &["start", "--driver=none"]);
    let start = t.elapsed().as_secs_f64();
    if !out.status.success() {
        eprintln!(
            "minik start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::process::exit(1);
    }
    println!("start --driver=none → node Ready: {start:.2} s (target ≤ 2 s; process-spawn floor {floor:.3} s; ratio {:.1}x)", start / floor);
    // Second start after stop (state exists): the common case.
    let _ = minik(&home, &["stop"]);
    let t = Instant::now();
    let _ = minik(&home, &["start", "--driver=none"]);
    println!(
        "restart (stop, start) → node Ready: {:.2} s",
        t.elapsed().as_secs_f64()
    );

    let b = Arc::new(Bench::new(home.clone())?);
    let pid = agent_pid(&home)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = rss_mb(&pid);

    // 2. pod start latency
    let mut lat = b.pod_latency(30).await?;
    let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
    let with_pods = rss_mb(&pid);
    let scratch = home.join("bare");
    let mut floor = match find_rootfs(&home, &scratch) {
        Some(rootfs) => bare_runc(30, &rootfs, &scratch),
        None => vec![],
    };
    let (f50, f99) = (pct(&mut floor, 0.5), pct(&mut floor, 0.99));
    println!("pod start latency, 30 minik/hello pods ({} Running): p50 {:.0} ms, p99 {:.0} ms (target p99 ≤ 1000 ms)", lat.len(), p50 * 1e3, p99 * 1e3);
    println!("bare runc run -d, same rootfs, 30 containers: p50 {:.0} ms, p99 {:.0} ms; ratio p99 {:.1}x", f50 * 1e3, f99 * 1e3, p99 / f99);

    // 3. API throughput at 16 clients
    for i in 0..100 {
        let cm = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":format!("list-{i}"),"labels":{"bench":"list"}},"data":{"k":"v"}});
        b.post("/api/v1/namespaces/default/configmaps", &cm).await?;
    }
    let dur = Duration::from_secs(5);
    let (g_rps, g_p99) = b
        .load(16, dur, |b, _, _| async move {
            b.get("/api/v1/namespaces/default/configmaps/list-7")
                .await
                .map(|_| ())
        })
        .await;
    let (l_rps, l_p99) = b
        .load(16, dur, |b, _, _| async move {
            b.get("/api/v1/namespaces/default/configmaps?labelSelector=bench%3Dlist")
                .await
                .map(|_| ())
        })
        .await;
    let (c_rps, c_p99) = b
        .load(16, dur, |b, c, i| async move {
            let cm = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":format!("c-{c}-{i}")},"data":{"k":"v"}});
            b.post("/api/v1/namespaces/default/configmaps", &cm).await.map(|_| ())
        })
        .await;
    println!("API at 16 clients: GET {g_rps:.0}/s p99 {g_p99:.1} ms; LIST(100) {l_rps:.0}/s p99 {l_p99:.1} ms; CREATE {c_rps:.0}/s p99 {c_p99:.1} ms");

    // 4. memory
    println!("agent RSS: idle {idle:.1} MB (target ≤ 60 MB); with 30 pods {with_pods:.1} MB");

    let _ = minik(&b.home, &["delete"]);
    let _ = std::fs::remove_dir_all(&home);
    Ok(())
}
