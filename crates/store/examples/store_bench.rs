//! Store benchmark: durable write throughput and p99 latency at 1 and 16
//! concurrent writers, list latency over 10,000 keys, and — as the baseline
//! measured in the same run on the same disk — the raw cost of
//! `write + fdatasync` of records of the same size.
//!
//! Usage: `cargo run --release -p minik-store --example store_bench [DIR]`
//! (DIR defaults to `./store-bench-<pid>` in the current directory, which
//! should be on the disk you care about — not a tmpfs — and is removed at
//! the end).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use minik_store::Store;

const VALUE_SIZE: usize = 1024;
/// Baseline and store phases are interleaved over several rounds so that
/// drift in a shared disk's speed hits both alike.
const ROUNDS: usize = 4;
const SINGLE_WRITES: usize = 500;
const CONCURRENT_WRITERS: usize = 16;
const CONCURRENT_WRITES_EACH: usize = 125;
const LIST_KEYS: usize = ROUNDS * (SINGLE_WRITES + CONCURRENT_WRITERS * CONCURRENT_WRITES_EACH);
const LIST_RUNS: usize = 100;

fn key(prefix: &str, i: usize) -> String {
    format!("/registry/pods/{prefix}/bench-pod-{i:06}")
}

fn value() -> Vec<u8> {
    let mut v = format!("{{\"kind\":\"Pod\",\"pad\":\"{}", "x".repeat(VALUE_SIZE));
    v.truncate(VALUE_SIZE - 2);
    v.push_str("\"}");
    v.into_bytes()
}

/// WAL record size for one of our creates: frame header 8 + op 1 + rev 8 +
/// create_rev 8 + key (4 + len) + value (4 + len).
fn record_size() -> usize {
    8 + 1 + 8 + 8 + 4 + key("default", 0).len() + 4 + VALUE_SIZE
}

struct Stats {
    ops: usize,
    elapsed: Duration,
    lat: Vec<Duration>,
}

impl Stats {
    fn empty() -> Stats {
        Stats {
            ops: 0,
            elapsed: Duration::ZERO,
            lat: Vec::new(),
        }
    }
    fn add(&mut self, other: Stats) {
        self.ops += other.ops;
        self.elapsed += other.elapsed;
        self.lat.extend(other.lat);
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

/// The baseline: append `record_size()` bytes and fdatasync, `n` times.
fn raw_write_fdatasync(dir: &Path, n: usize) -> std::io::Result<Stats> {
    let path = dir.join("raw-baseline");
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let rec = vec![0xA5u8; record_size()];
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&rec)?;
        f.sync_data()?;
        lat.push(t.elapsed());
    }
    let elapsed = start.elapsed();
    drop(f);
    fs::remove_file(&path)?;
    Ok(Stats {
        ops: n,
        elapsed,
        lat,
    })
}

async fn store_writes(store: &Store, writers: usize, each: usize, prefix: &str) -> Stats {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        let prefix = format!("{prefix}-{w}");
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(each);
            for i in 0..each {
                let t = Instant::now();
                store
                    .create(&key(&prefix, i), value())
                    .await
                    .expect("store write failed");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("writer task panicked"));
    }
    Stats {
        ops: writers * each,
        elapsed: start.elapsed(),
        lat,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir: PathBuf = match std::env::args().nth(1) {
        Some(d) => PathBuf::from(d),
        None => std::env::current_dir()?.join(format!("store-bench-{}", std::process::id())),
    };
    fs::create_dir_all(&dir)?;
    println!(
        "store_bench in {} (record {} bytes, value {} bytes)",
        dir.display(),
        record_size(),
        VALUE_SIZE
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    let store_dir = dir.join("store");
    let store = Store::open(&store_dir)?;
    let (mut raw, mut one, mut many) = (Stats::empty(), Stats::empty(), Stats::empty());
    for round in 0..ROUNDS {
        raw.add(raw_write_fdatasync(&dir, SINGLE_WRITES)?);
        rt.block_on(async {
            one.add(store_writes(&store, 1, SINGLE_WRITES, &format!("single{round}")).await);
            many.add(
                store_writes(
                    &store,
                    CONCURRENT_WRITERS,
                    CONCURRENT_WRITES_EACH,
                    &format!("multi{round}"),
                )
                .await,
            );
        });
    }
    let raw_rate = raw.per_sec();
    println!(
        "baseline write+fdatasync : {:>9.0} ops/s    p50 {:>6.3} ms   p99 {:>6.3} ms",
        raw_rate,
        ms(raw.pct(0.50)),
        ms(raw.pct(0.99))
    );
    println!(
        "store  1 writer          : {:>9.0} writes/s p50 {:>6.3} ms   p99 {:>6.3} ms   ratio to baseline {:.2}x",
        one.per_sec(),
        ms(one.pct(0.50)),
        ms(one.pct(0.99)),
        one.per_sec() / raw_rate
    );
    println!(
        "store 16 writers         : {:>9.0} writes/s p50 {:>6.3} ms   p99 {:>6.3} ms   ratio to baseline {:.2}x",
        many.per_sec(),
        ms(many.pct(0.50)),
        ms(many.pct(0.99)),
        many.per_sec() / raw_rate
    );

    let (items, _) = store.list("/registry/pods/");
    assert_eq!(items.len(), LIST_KEYS, "every benchmark write is listed");
    drop(items);
    let mut lat = Vec::with_capacity(LIST_RUNS);
    let start = Instant::now();
    for _ in 0..LIST_RUNS {
        let t = Instant::now();
        let (items, _) = store.list("/registry/pods/");
        std::hint::black_box(&items);
        lat.push(t.elapsed());
    }
    let mut list = Stats {
        ops: LIST_RUNS,
        elapsed: start.elapsed(),
        lat,
    };
    println!(
        "list of {LIST_KEYS} keys        : p50 {:>6.3} ms   p99 {:>6.3} ms   ({:.0} lists/s)",
        ms(list.pct(0.50)),
        ms(list.pct(0.99)),
        list.per_sec()
    );
    let mut lat = Vec::with_capacity(LIST_RUNS);
    for i in 0..LIST_RUNS {
        let t = Instant::now();
        let (items, _, _) = store.list_page("/registry/pods/", None, 500 + i % 2);
        std::hint::black_box(&items);
        lat.push(t.elapsed());
    }
    let mut page = Stats {
        ops: LIST_RUNS,
        elapsed: Duration::ZERO,
        lat,
    };
    println!(
        "list_page limit=500      : p50 {:>6.3} ms   p99 {:>6.3} ms",
        ms(page.pct(0.50)),
        ms(page.pct(0.99))
    );

    let t = Instant::now();
    drop(store);
    let reopened = Store::open(&store_dir)?;
    println!(
        "reopen ({} keys, replay WAL) : {:.1} ms (close + open)",
        reopened.list("/").0.len(),
        ms(t.elapsed())
    );
    drop(reopened);
    fs::remove_dir_all(&dir)?;
    Ok(())
}
