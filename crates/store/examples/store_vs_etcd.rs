//! Embedded store against the etcd backend on the same write workload,
//! side by side (issue 4's benchmark): 16 concurrent clients each creating
//! keys with 1 KiB values, durable when acknowledged; writes/s, p50 and
//! p99 for each backend and the ratio.
//!
//! The etcd side is a real `etcd` (Debian's `etcd-server`) that this
//! program starts on 127.0.0.1 with free ports and its data directory next
//! to the embedded store's (same disk), and kills by PID at the end. The
//! two backends run in alternating rounds so drift in a shared disk's speed
//! hits both alike. A third row, the same transactions sent straight
//! through `etcd-client`, shows what etcd itself costs without the store's
//! mirror (a store write also waits for its own watch event).
//!
//! Usage: `cargo run --release -p minik-store --example store_vs_etcd [DIR] [ETCD_URL]`
//! (DIR defaults to `./store-vs-etcd-<pid>`, removed at the end; with
//! ETCD_URL, e.g. `etcd://127.0.0.1:2379`, that etcd is used instead of
//! starting one — it must be empty or hold no keys under `/registry/bench/`).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use minik_store::Store;

const VALUE_SIZE: usize = 1024;
const CLIENTS: usize = 16;
const WRITES_EACH: usize = 125;
const ROUNDS: usize = 4;

fn value() -> Vec<u8> {
    let mut v = format!("{{\"kind\":\"Pod\",\"pad\":\"{}", "x".repeat(VALUE_SIZE));
    v.truncate(VALUE_SIZE - 2);
    v.push_str("\"}");
    v.into_bytes()
}

#[derive(Default)]
struct Stats {
    ops: usize,
    elapsed: Duration,
    lat: Vec<Duration>,
}

impl Stats {
    fn add(&mut self, o: Stats) {
        self.ops += o.ops;
        self.elapsed += o.elapsed;
        self.lat.extend(o.lat);
    }
    fn per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&mut self, p: f64) -> Duration {
        self.lat.sort();
        let i = ((self.lat.len() as f64 * p).ceil() as usize).clamp(1, self.lat.len()) - 1;
        self.lat[i]
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn writes(store: &Store, round: usize) -> Stats {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(WRITES_EACH);
            for i in 0..WRITES_EACH {
                let key = format!("/registry/bench/r{round}-c{c:02}/pod-{i:06}");
                let t = Instant::now();
                store
                    .create(&key, value())
                    .await
                    .expect("store write failed");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("client task panicked"));
    }
    Stats {
        ops: CLIENTS * WRITES_EACH,
        elapsed: start.elapsed(),
        lat,
    }
}

/// The same creates straight through `etcd-client` (no mirror): what etcd
/// itself costs, to separate it from what the store adds on top.
async fn raw_etcd_writes(client: &etcd_client::Client, round: usize) -> Stats {
    use etcd_client::{Compare, CompareOp, Txn, TxnOp};
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let mut kv = client.kv_client();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(WRITES_EACH);
            for i in 0..WRITES_EACH {
                let key = format!("/registry/raw/r{round}-c{c:02}/pod-{i:06}");
                let t = Instant::now();
                let txn = Txn::new()
                    .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key.as_str(), value(), None)]);
                let resp = kv.txn(txn).await.expect("etcd write failed");
                assert!(resp.succeeded());
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("client task panicked"));
    }
    Stats {
        ops: CLIENTS * WRITES_EACH,
        elapsed: start.elapsed(),
        lat,
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A real etcd on loopback; killed by PID on drop.
struct Etcd {
    child: Child,
    port: u16,
}

impl Etcd {
    fn start(dir: &Path) -> Result<Etcd, Box<dyn std::error::Error>> {
        let (port, peer) = (free_port()?, free_port()?);
        let client = format!("http://127.0.0.1:{port}");
        let peer = format!("http://127.0.0.1:{peer}");
        let log = fs::File::create(dir.join("etcd.log"))?;
        let child = Command::new("etcd")
            .arg("--name=bench")
            .arg(format!("--data-dir={}", dir.join("etcd-data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=bench={peer}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start etcd ({e}); install Debian's etcd-server"))?;
        let mut etcd = Etcd { child, port };
        let started = Instant::now();
        loop {
            if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let mut body = String::new();
                c.set_read_timeout(Some(Duration::from_secs(2)))?;
                if c.write_all(b"GET /health HTTP/1.0\r\n\r\n").is_ok()
                    && c.read_to_string(&mut body).is_ok()
                    && body.contains("\"health\":\"true\"")
                {
                    return Ok(etcd);
                }
            }
            if let Some(status) = etcd.child.try_wait()? {
                return Err(format!(
                    "etcd exited with {status}; see {}",
                    dir.join("etcd.log").display()
                )
                .into());
            }
            if started.elapsed() > Duration::from_secs(20) {
                return Err("etcd did not become healthy within 20s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir: PathBuf = match args.next() {
        Some(d) => PathBuf::from(d),
        None => std::env::current_dir()?.join(format!("store-vs-etcd-{}", std::process::id())),
    };
    let external = args.next();
    fs::create_dir_all(&dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    let etcd = match &external {
        Some(_) => None,
        None => Some(Etcd::start(&dir)?),
    };
    let url = match (&external, &etcd) {
        (Some(u), _) => u.clone(),
        (None, Some(e)) => format!("etcd://127.0.0.1:{}", e.port),
        (None, None) => unreachable!(),
    };
    let etcd_version = Command::new("etcd")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_default();
    println!(
        "store_vs_etcd: {CLIENTS} clients x {WRITES_EACH} creates x {ROUNDS} rounds, {VALUE_SIZE}-byte values, in {} ({etcd_version}, {url})",
        dir.display()
    );

    let embedded = Store::open(&dir.join("embedded"))?;
    let on_etcd = rt.block_on(Store::connect_etcd(&url))?;
    let endpoint = url.replacen("etcd://", "http://", 1);
    let raw_client = rt.block_on(etcd_client::Client::connect([endpoint], None))?;
    let (mut emb, mut etc, mut raw) = (Stats::default(), Stats::default(), Stats::default());
    for round in 0..ROUNDS {
        rt.block_on(async {
            emb.add(writes(&embedded, round).await);
            etc.add(writes(&on_etcd, round).await);
            raw.add(raw_etcd_writes(&raw_client, round).await);
        });
    }
    let total = CLIENTS * WRITES_EACH * ROUNDS;
    assert_eq!(embedded.list("/registry/bench/").0.len(), total);
    assert_eq!(on_etcd.list("/registry/bench/").0.len(), total);

    let (e_rate, e_p50, e_p99) = (emb.per_sec(), emb.pct(0.50), emb.pct(0.99));
    let (t_rate, t_p50, t_p99) = (etc.per_sec(), etc.pct(0.50), etc.pct(0.99));
    println!(
        "embedded : {:>8.0} writes/s   p50 {:>7.3} ms   p99 {:>7.3} ms",
        e_rate,
        ms(e_p50),
        ms(e_p99)
    );
    println!(
        "etcd     : {:>8.0} writes/s   p50 {:>7.3} ms   p99 {:>7.3} ms",
        t_rate,
        ms(t_p50),
        ms(t_p99)
    );
    println!(
        "(etcd raw: {:>8.0} writes/s   p50 {:>7.3} ms   p99 {:>7.3} ms  -- etcd-client without the store's mirror)",
        raw.per_sec(),
        ms(raw.pct(0.50)),
        ms(raw.pct(0.99))
    );
    println!(
        "ratio embedded/etcd: throughput {:.2}x, p99 latency {:.2}x (etcd p99 / embedded p99)",
        e_rate / t_rate,
        ms(t_p99) / ms(e_p99)
    );

    drop(on_etcd);
    drop(embedded);
    drop(etcd);
    fs::remove_dir_all(&dir)?;
    Ok(())
}
