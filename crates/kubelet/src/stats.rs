//! The kubelet's `GET /stats/summary`: the Summary API (`stats/v1alpha1`)
//! subset metrics-server and `kubectl get --raw .../proxy/stats/summary`
//! read — node and per-pod, per-container CPU (`usageNanoCores`,
//! `usageCoreNanoSeconds`) and memory (`workingSetBytes`, `usageBytes`,
//! `rssBytes`, page faults).
//!
//! Owns: finding the cgroup files of the pods' containers (runc places each
//! container in cgroup `/minik/<container id>`, see `sandbox.rs`; cgroup v1
//! controllers such as this hybrid host's `cpuacct` and `memory`, or the v2
//! unified hierarchy in the VM), parsing them, the node figures from
//! `/proc/stat` and `/proc/meminfo`, and the CPU rates. A rate is the
//! difference of two cumulative samples at least [`MIN_WINDOW`] apart, as
//! cAdvisor computes it between housekeeping samples: the previous request's
//! sample when it is old enough, else (first request, a new container) a
//! second sample taken [`MIN_WINDOW`] after the first.
//!
//! Memory follows cAdvisor: working set = usage − inactive file pages;
//! rss = anonymous memory (v1 `total_rss`, v2 `anon`). The node's usage is
//! MemTotal − MemFree, its working set that minus Inactive(file), its rss
//! AnonPages, its available bytes MemAvailable.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::sandbox::{pid_alive, read_json, ContainerFile, Machinery, PodMeta};

/// The shortest interval a CPU rate is computed over.
pub const MIN_WINDOW: Duration = Duration::from_secs(1);

/// The cgroup parent runc puts every container under (`cgroupsPath`
/// `/minik/<id>` in `sandbox.rs`).
const CGROUP_PARENT: &str = "minik";

// ---------------------------------------------------------------- parsing

/// Where the cgroup hierarchies this module reads are mounted: a v1
/// `cpuacct` and `memory` controller and/or the v2 unified hierarchy. Each
/// entry is (mount point, root of the hierarchy seen at that mount point).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupMounts {
    pub cpuacct_v1: Option<(PathBuf, String)>,
    pub memory_v1: Option<(PathBuf, String)>,
    pub unified: Option<(PathBuf, String)>,
}

impl CgroupMounts {
    /// Parses `/proc/self/mountinfo`.
    pub fn parse(mountinfo: &str) -> CgroupMounts {
        let mut out = CgroupMounts::default();
        for line in mountinfo.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let pre: Vec<&str> = pre.split_whitespace().collect();
            let post: Vec<&str> = post.split_whitespace().collect();
            let (Some(root), Some(mount_point), Some(fstype)) =
                (pre.get(3), pre.get(4), post.first())
            else {
                continue;
            };
            let entry = Some((PathBuf::from(unescape(mount_point)), unescape(root)));
            match *fstype {
                "cgroup2" => out.unified = out.unified.or(entry),
                "cgroup" => {
                    let opts = post.get(2).copied().unwrap_or("");
                    let has = |c: &str| opts.split(',').any(|o| o == c);
                    if has("cpuacct") && out.cpuacct_v1.is_none() {
                        out.cpuacct_v1 = entry.clone();
                    }
                    if has("memory") && out.memory_v1.is_none() {
                        out.memory_v1 = entry;
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// This host's mounts.
    pub fn detect() -> CgroupMounts {
        CgroupMounts::parse(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
    }

    /// The directory of cgroup `path` (absolute in the hierarchy) under a
    /// mount, if that mount shows it.
    fn dir(mount: &(PathBuf, String), path: &str) -> Option<PathBuf> {
        let (mount_point, root) = mount;
        let rel = if root == "/" {
            path.trim_start_matches('/')
        } else {
            path.strip_prefix(root.as_str())?.trim_start_matches('/')
        };
        Some(mount_point.join(rel))
    }

    /// Reads the CPU and memory of the cgroup at `path`, v1 controllers
    /// first (where a hybrid host's runc accounts), else the v2 files.
    pub fn read(&self, path: &str) -> (Option<u64>, Option<MemorySample>) {
        let cpu = match &self.cpuacct_v1 {
            Some(m) => Self::dir(m, path)
                .and_then(|d| std::fs::read_to_string(d.join("cpuacct.usage")).ok())
                .and_then(|s| parse_cpuacct_usage(&s)),
            None => self
                .unified
                .as_ref()
                .and_then(|m| Self::dir(m, path))
                .and_then(|d| std::fs::read_to_string(d.join("cpu.stat")).ok())
                .and_then(|s| parse_cpu_stat_v2(&s)),
        };
        let memory = match &self.memory_v1 {
            Some(m) => Self::dir(m, path).and_then(|d| {
                let usage = std::fs::read_to_string(d.join("memory.usage_in_bytes")).ok()?;
                let stat = std::fs::read_to_string(d.join("memory.stat")).ok()?;
                memory_v1(&usage, &stat)
            }),
            None => self
                .unified
                .as_ref()
                .and_then(|m| Self::dir(m, path))
                .and_then(|d| {
                    let current = std::fs::read_to_string(d.join("memory.current")).ok()?;
                    let stat = std::fs::read_to_string(d.join("memory.stat")).ok()?;
                    memory_v2(&current, &stat)
                }),
        };
        (cpu, memory)
    }
}

/// mountinfo escapes spaces and a few other bytes as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && s.is_char_boundary(i + 4) {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// v1 `cpuacct.usage`: cumulative CPU time in nanoseconds.
pub fn parse_cpuacct_usage(s: &str) -> Option<u64> {
    s.trim().parse().ok()
}

/// v2 `cpu.stat`: `usage_usec` in nanoseconds.
pub fn parse_cpu_stat_v2(s: &str) -> Option<u64> {
    flat_keyed(s).get("usage_usec").map(|us| us * 1000)
}

/// A flat-keyed cgroup file (`memory.stat`, `cpu.stat`): `key value` lines.
pub fn flat_keyed(s: &str) -> HashMap<&str, u64> {
    s.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k, v.trim().parse().ok()?))
        })
        .collect()
}

/// One memory reading.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MemorySample {
    pub usage_bytes: u64,
    pub working_set_bytes: u64,
    pub rss_bytes: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    /// Only for the node (MemAvailable).
    pub available_bytes: Option<u64>,
}

/// v1 `memory.usage_in_bytes` + `memory.stat` (hierarchical `total_*`).
pub fn memory_v1(usage: &str, stat: &str) -> Option<MemorySample> {
    let usage: u64 = usage.trim().parse().ok()?;
    let st = flat_keyed(stat);
    let get = |k: &str| st.get(k).copied().unwrap_or(0);
    Some(MemorySample {
        usage_bytes: usage,
        working_set_bytes: usage.saturating_sub(get("total_inactive_file")),
        rss_bytes: get("total_rss"),
        page_faults: get("total_pgfault"),
        major_page_faults: get("total_pgmajfault"),
        available_bytes: None,
    })
}

/// v2 `memory.current` + `memory.stat`.
pub fn memory_v2(current: &str, stat: &str) -> Option<MemorySample> {
    let usage: u64 = current.trim().parse().ok()?;
    let st = flat_keyed(stat);
    let get = |k: &str| st.get(k).copied().unwrap_or(0);
    Some(MemorySample {
        usage_bytes: usage,
        working_set_bytes: usage.saturating_sub(get("inactive_file")),
        rss_bytes: get("anon"),
        page_faults: get("pgfault"),
        major_page_faults: get("pgmajfault"),
        available_bytes: None,
    })
}

/// `/proc/stat`'s `cpu` line: busy time of all CPUs (user, nice, system,
/// irq, softirq, steal; guest time is already inside user) in nanoseconds.
pub fn node_cpu_ns(proc_stat: &str, clock_ticks_per_sec: u64) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    let ticks = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    if clock_ticks_per_sec == 0 {
        return None;
    }
    Some(ticks.saturating_mul(1_000_000_000 / clock_ticks_per_sec))
}

/// `/proc/stat`'s `btime`: when the node booted (whole seconds, stable).
pub fn boot_time(proc_stat: &str) -> Option<DateTime<Utc>> {
    let secs = proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse::<i64>()
        .ok()?;
    DateTime::from_timestamp(secs, 0)
}

/// `/proc/meminfo` → the node's memory figures.
pub fn node_memory(meminfo: &str, vmstat: &str) -> Option<MemorySample> {
    let kib = |k: &str| -> Option<u64> {
        meminfo.lines().find_map(|l| {
            let rest = l.strip_prefix(k)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    let total = kib("MemTotal")? * 1024;
    let free = kib("MemFree")? * 1024;
    let usage = total.saturating_sub(free);
    let inactive_file = kib("Inactive(file)").unwrap_or(0) * 1024;
    let vm = flat_keyed(vmstat);
    Some(MemorySample {
        usage_bytes: usage,
        working_set_bytes: usage.saturating_sub(inactive_file),
        rss_bytes: kib("AnonPages").unwrap_or(0) * 1024,
        page_faults: vm.get("pgfault").copied().unwrap_or(0),
        major_page_faults: vm.get("pgmajfault").copied().unwrap_or(0),
        available_bytes: kib("MemAvailable").map(|v| v * 1024),
    })
}

// ------------------------------------------------------------------ rates

/// CPU rates from cumulative samples, per key (`node`, a container id).
/// A key's rate is the usage difference over the time difference of two
/// samples at least `min_window` apart; samples closer than that keep the
/// older one (and report the last rate). A counter that went backwards (a
/// recreated cgroup) starts over.
#[derive(Debug)]
pub struct RateTracker {
    min_window: Duration,
    entries: HashMap<String, RateEntry>,
}

#[derive(Debug, Clone, Copy)]
struct RateEntry {
    at: Instant,
    cumulative_ns: u64,
    rate: Option<u64>,
}

impl RateTracker {
    pub fn new(min_window: Duration) -> Self {
        RateTracker {
            min_window,
            entries: HashMap::new(),
        }
    }

    /// Records a sample; returns the key's rate in nanocores if one is known.
    pub fn observe(&mut self, key: &str, at: Instant, cumulative_ns: u64) -> Option<u64> {
        let fresh = RateEntry {
            at,
            cumulative_ns,
            rate: None,
        };
        let Some(prev) = self.entries.get(key).copied() else {
            self.entries.insert(key.to_string(), fresh);
            return None;
        };
        if cumulative_ns < prev.cumulative_ns || at < prev.at {
            self.entries.insert(key.to_string(), fresh);
            return None;
        }
        let dt = at - prev.at;
        if dt < self.min_window {
            return prev.rate;
        }
        let rate = rate_nanocores(cumulative_ns - prev.cumulative_ns, dt);
        self.entries.insert(
            key.to_string(),
            RateEntry {
                at,
                cumulative_ns,
                rate: Some(rate),
            },
        );
        Some(rate)
    }

    /// Forgets keys not in `live` (containers that are gone).
    pub fn retain(&mut self, live: &std::collections::HashSet<String>) {
        self.entries.retain(|k, _| live.contains(k));
    }
}

/// CPU time used over a wall-clock interval, in nanocores (1e9 = one core).
pub fn rate_nanocores(used_ns: u64, over: Duration) -> u64 {
    let dt = over.as_nanos();
    if dt == 0 {
        return 0;
    }
    ((used_ns as u128 * 1_000_000_000u128) / dt) as u64
}

// --------------------------------------------------------- the JSON shape

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub node: NodeStats,
    pub pods: Vec<PodStats>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    pub node_name: String,
    pub start_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    pub pod_ref: PodReference,
    pub start_time: String,
    pub containers: Vec<ContainerStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PodReference {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    pub name: String,
    pub start_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_nano_cores: Option<u64>,
    pub usage_core_nano_seconds: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    pub usage_bytes: u64,
    pub working_set_bytes: u64,
    pub rss_bytes: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
}

/// RFC 3339 with milliseconds: rates computed from two summaries (as
/// metrics-server does) need better than whole seconds.
fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn memory_stats(m: &MemorySample, time: &str) -> MemoryStats {
    MemoryStats {
        time: time.to_string(),
        available_bytes: m.available_bytes,
        usage_bytes: m.usage_bytes,
        working_set_bytes: m.working_set_bytes,
        rss_bytes: m.rss_bytes,
        page_faults: m.page_faults,
        major_page_faults: m.major_page_faults,
    }
}

// ------------------------------------------------------------- sampling

/// One reading of a running container.
#[derive(Debug, Clone)]
pub struct ContainerSample {
    pub name: String,
    /// The runtime container id (`<uid>-<name>-<restartCount>`).
    pub id: String,
    pub start_time: DateTime<Utc>,
    pub cpu_ns: Option<u64>,
    pub memory: Option<MemorySample>,
}

#[derive(Debug, Clone)]
pub struct PodSample {
    pub meta: PodMeta,
    pub start_time: DateTime<Utc>,
    pub containers: Vec<ContainerSample>,
}

/// Everything read at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub at: Instant,
    pub time: DateTime<Utc>,
    pub boot_time: DateTime<Utc>,
    pub node_cpu_ns: Option<u64>,
    pub node_memory: Option<MemorySample>,
    pub pods: Vec<PodSample>,
}

/// CPU rates for a snapshot, by key.
pub type Rates = HashMap<String, u64>;

const NODE_KEY: &str = "node";

impl Snapshot {
    /// Records the snapshot's cumulative CPU figures; the rates known.
    /// Returns also whether some figure has no rate yet.
    pub fn observe(&self, tracker: &mut RateTracker) -> (Rates, bool) {
        let mut rates = Rates::new();
        let mut missing = false;
        let mut live = std::collections::HashSet::new();
        let mut one = |key: &str, cum: Option<u64>| {
            if let Some(cum) = cum {
                live.insert(key.to_string());
                match tracker.observe(key, self.at, cum) {
                    Some(r) => {
                        rates.insert(key.to_string(), r);
                    }
                    None => missing = true,
                }
            }
        };
        one(NODE_KEY, self.node_cpu_ns);
        for p in &self.pods {
            for c in &p.containers {
                one(&c.id, c.cpu_ns);
            }
        }
        tracker.retain(&live);
        (rates, missing)
    }

    /// The Summary document for this snapshot.
    pub fn summary(&self, node_name: &str, rates: &Rates) -> Summary {
        let time = stamp(self.time);
        let cpu = |key: &str, cum: u64| CpuStats {
            time: time.clone(),
            usage_nano_cores: rates.get(key).copied(),
            usage_core_nano_seconds: cum,
        };
        let node = NodeStats {
            node_name: node_name.to_string(),
            start_time: stamp(self.boot_time),
            cpu: self.node_cpu_ns.map(|c| cpu(NODE_KEY, c)),
            memory: self.node_memory.as_ref().map(|m| memory_stats(m, &time)),
        };
        let pods = self
            .pods
            .iter()
            .map(|p| {
                let containers: Vec<ContainerStats> = p
                    .containers
                    .iter()
                    .map(|c| ContainerStats {
                        name: c.name.clone(),
                        start_time: stamp(c.start_time),
                        cpu: c.cpu_ns.map(|n| cpu(&c.id, n)),
                        memory: c.memory.as_ref().map(|m| memory_stats(m, &time)),
                    })
                    .collect();
                PodStats {
                    pod_ref: PodReference {
                        name: p.meta.name.clone(),
                        namespace: p.meta.namespace.clone(),
                        uid: p.meta.uid.clone(),
                    },
                    start_time: stamp(p.start_time),
                    cpu: pod_cpu(&containers, &time),
                    memory: pod_memory(&containers, &time),
                    containers,
                }
            })
            .collect();
        Summary { node, pods }
    }
}

/// A pod's CPU: the sum over its containers (each container has its own
/// cgroup here; there is no pod-level cgroup). The rate only when every
/// container has one.
fn pod_cpu(containers: &[ContainerStats], time: &str) -> Option<CpuStats> {
    let cpus: Vec<&CpuStats> = containers.iter().filter_map(|c| c.cpu.as_ref()).collect();
    if cpus.is_empty() {
        return None;
    }
    Some(CpuStats {
        time: time.to_string(),
        usage_nano_cores: cpus.iter().map(|c| c.usage_nano_cores).sum(),
        usage_core_nano_seconds: cpus.iter().map(|c| c.usage_core_nano_seconds).sum(),
    })
}

fn pod_memory(containers: &[ContainerStats], time: &str) -> Option<MemoryStats> {
    let mems: Vec<&MemoryStats> = containers
        .iter()
        .filter_map(|c| c.memory.as_ref())
        .collect();
    if mems.is_empty() {
        return None;
    }
    let sum = |f: fn(&MemoryStats) -> u64| mems.iter().map(|m| f(m)).sum();
    Some(MemoryStats {
        time: time.to_string(),
        available_bytes: None,
        usage_bytes: sum(|m| m.usage_bytes),
        working_set_bytes: sum(|m| m.working_set_bytes),
        rss_bytes: sum(|m| m.rss_bytes),
        page_faults: sum(|m| m.page_faults),
        major_page_faults: sum(|m| m.major_page_faults),
    })
}

/// Reads the node and every running container of `<root>/pods`.
pub struct Collector {
    node_name: String,
    pods_dir: PathBuf,
    mounts: CgroupMounts,
    clock_ticks: u64,
    tracker: Mutex<RateTracker>,
}

impl Collector {
    pub fn new(node_name: &str, pods_dir: &Path) -> Self {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Collector {
            node_name: node_name.to_string(),
            pods_dir: pods_dir.to_path_buf(),
            mounts: CgroupMounts::detect(),
            clock_ticks: if ticks > 0 { ticks as u64 } else { 100 },
            tracker: Mutex::new(RateTracker::new(MIN_WINDOW)),
        }
    }

    /// Reads everything once. Blocking.
    pub fn snapshot(&self) -> Snapshot {
        let at = Instant::now();
        let time = Utc::now();
        let proc_stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        // A stable start time (metrics-server takes a change for a reboot).
        let boot_time = boot_time(&proc_stat).unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let node_cpu_ns = node_cpu_ns(&proc_stat, self.clock_ticks);
        let node_memory = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            node_memory(
                &m,
                &std::fs::read_to_string("/proc/vmstat").unwrap_or_default(),
            )
        });
        Snapshot {
            at,
            time,
            boot_time,
            node_cpu_ns,
            node_memory,
            pods: self.pods(),
        }
    }

    fn pods(&self) -> Vec<PodSample> {
        let Ok(rd) = std::fs::read_dir(&self.pods_dir) else {
            return vec![];
        };
        let mut pods = Vec::new();
        for e in rd.flatten() {
            let dir = e.path();
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let Some(meta) = read_json::<PodMeta>(&dir.join("meta.json")) else {
                continue;
            };
            let start_time = modified(&dir.join("meta.json")).unwrap_or_else(Utc::now);
            let mut containers = Vec::new();
            if let Ok(cs) = std::fs::read_dir(dir.join("containers")) {
                for c in cs.flatten() {
                    let file = c.path().join("container.json");
                    let Some(cf) = read_json::<ContainerFile>(&file) else {
                        continue;
                    };
                    if !pid_alive(cf.pid) {
                        continue;
                    }
                    let (cpu_ns, memory) = self.mounts.read(&format!("/{CGROUP_PARENT}/{}", cf.id));
                    if cpu_ns.is_none() && memory.is_none() {
                        continue;
                    }
                    containers.push(ContainerSample {
                        name: c.file_name().to_string_lossy().into_owned(),
                        id: cf.id,
                        start_time: modified(&file).unwrap_or(start_time),
                        cpu_ns,
                        memory,
                    });
                }
            }
            if containers.is_empty() {
                continue;
            }
            containers.sort_by(|a, b| a.name.cmp(&b.name));
            pods.push(PodSample {
                meta,
                start_time,
                containers,
            });
        }
        pods.sort_by(|a, b| {
            (&a.meta.namespace, &a.meta.name).cmp(&(&b.meta.namespace, &b.meta.name))
        });
        pods
    }

    /// A summary with CPU rates: from the previous call's samples when they
    /// are at least [`MIN_WINDOW`] old, else from a second reading taken
    /// [`MIN_WINDOW`] after this one. Blocking (up to about a second).
    pub fn summary(&self) -> Summary {
        let first = self.snapshot();
        let (rates, missing) = {
            let mut t = self.tracker.lock().unwrap_or_else(|p| p.into_inner());
            first.observe(&mut t)
        };
        if !missing {
            return first.summary(&self.node_name, &rates);
        }
        std::thread::sleep(MIN_WINDOW);
        let second = self.snapshot();
        let mut t = self.tracker.lock().unwrap_or_else(|p| p.into_inner());
        let (rates, _) = second.observe(&mut t);
        second.summary(&self.node_name, &rates)
    }
}

fn modified(p: &Path) -> Option<DateTime<Utc>> {
    std::fs::metadata(p)
        .ok()?
        .modified()
        .ok()
        .map(DateTime::<Utc>::from)
}

// ------------------------------------------------------------------ HTTP

/// `GET /stats/summary` (the query `only_cpu_and_memory=true` metrics-server
/// sends changes nothing: CPU and memory are all this summary has).
pub fn router(m: &Machinery) -> Router {
    let collector = Arc::new(Collector::new(&m.cfg.node_name, &m.pods_dir));
    Router::new()
        .route("/stats/summary", get(summary_handler))
        .with_state(collector)
}

async fn summary_handler(State(c): State<Arc<Collector>>) -> Response {
    match tokio::task::spawn_blocking(move || c.summary()).await {
        Ok(s) => axum::Json(s).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("collecting the node's stats failed ({e}); see the agent log (`minik logs`)"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO_HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn mountinfo_hybrid_and_v2() {
        let m = CgroupMounts::parse(MOUNTINFO_HYBRID);
        assert_eq!(
            m.cpuacct_v1,
            Some((PathBuf::from("/sys/fs/cgroup/cpuacct"), "/".into()))
        );
        assert_eq!(
            m.memory_v1,
            Some((PathBuf::from("/sys/fs/cgroup/memory"), "/".into()))
        );
        assert_eq!(
            m.unified,
            Some((PathBuf::from("/sys/fs/cgroup/unified"), "/".into()))
        );
        let combined = CgroupMounts::parse(
            "25 20 0:22 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
        );
        assert_eq!(
            combined.cpuacct_v1.unwrap().0,
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
        );
        let v2 = CgroupMounts::parse(
            "26 1 0:23 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        assert_eq!(v2.cpuacct_v1, None);
        assert_eq!(
            CgroupMounts::dir(v2.unified.as_ref().unwrap(), "/minik/u-c-0"),
            Some(PathBuf::from("/sys/fs/cgroup/minik/u-c-0"))
        );
        // A mount of a sub-tree shows only paths under its root.
        let sub = (PathBuf::from("/sys/fs/cgroup"), "/kubepods".to_string());
        assert_eq!(
            CgroupMounts::dir(&sub, "/kubepods/minik/x"),
            Some(PathBuf::from("/sys/fs/cgroup/minik/x"))
        );
        assert_eq!(CgroupMounts::dir(&sub, "/minik/x"), None);
        assert_eq!(unescape("/a\\040b"), "/a b");
    }

    #[test]
    fn cpu_files() {
        assert_eq!(
            parse_cpuacct_usage("12979363245195\n"),
            Some(12979363245195)
        );
        assert_eq!(parse_cpuacct_usage("x"), None);
        let v2 = "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\n";
        assert_eq!(parse_cpu_stat_v2(v2), Some(1_500_000));
        assert_eq!(parse_cpu_stat_v2("user_usec 3\n"), None);
    }

    #[test]
    fn memory_files() {
        let stat = "cache 100\nrss 7\ntotal_cache 4096\ntotal_rss 8192\ntotal_inactive_file 1000\n\
                    total_pgfault 12\ntotal_pgmajfault 1\ninactive_file 5\n";
        let m = memory_v1("20000\n", stat).unwrap();
        assert_eq!(m.usage_bytes, 20000);
        assert_eq!(m.working_set_bytes, 19000);
        assert_eq!(m.rss_bytes, 8192);
        assert_eq!((m.page_faults, m.major_page_faults), (12, 1));
        // inactive_file larger than usage: the working set floors at 0.
        let m = memory_v1("10\n", "total_inactive_file 4096\n").unwrap();
        assert_eq!(m.working_set_bytes, 0);
        assert_eq!(memory_v1("max\n", ""), None);

        let stat = "anon 3000\nfile 6000\ninactive_file 2000\npgfault 40\npgmajfault 2\n";
        let m = memory_v2("9000\n", stat).unwrap();
        assert_eq!(m.usage_bytes, 9000);
        assert_eq!(m.working_set_bytes, 7000);
        assert_eq!(m.rss_bytes, 3000);
        assert_eq!((m.page_faults, m.major_page_faults), (40, 2));
    }

    #[test]
    fn node_figures() {
        let stat = "cpu  100 20 30 1000 50 5 6 7 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        // (100+20+30+5+6+7) ticks at 100 Hz = 1.68 s.
        assert_eq!(node_cpu_ns(stat, 100), Some(1_680_000_000));
        assert_eq!(node_cpu_ns("intr 1\n", 100), None);
        assert_eq!(
            boot_time("cpu  1 2\nbtime 1763860312\nprocesses 9\n").map(|t| t.to_rfc3339()),
            Some("2025-11-23T01:11:52+00:00".to_string())
        );
        assert_eq!(boot_time("cpu 1\n"), None);
        let meminfo = "MemTotal:       1000 kB\nMemFree:         200 kB\nMemAvailable:    600 kB\n\
                       Inactive(file):  300 kB\nAnonPages:       100 kB\n";
        let m = node_memory(meminfo, "pgfault 9\npgmajfault 3\n").unwrap();
        assert_eq!(m.usage_bytes, 800 * 1024);
        assert_eq!(m.working_set_bytes, 500 * 1024);
        assert_eq!(m.rss_bytes, 100 * 1024);
        assert_eq!(m.available_bytes, Some(600 * 1024));
        assert_eq!((m.page_faults, m.major_page_faults), (9, 3));
        assert_eq!(node_memory("MemFree: 1 kB\n", ""), None);
    }

    #[test]
    fn rates_need_a_window() {
        let t0 = Instant::now();
        let mut t = RateTracker::new(Duration::from_secs(1));
        assert_eq!(t.observe("c", t0, 1_000), None);
        // Too close: no rate yet, the first sample is kept.
        assert_eq!(
            t.observe("c", t0 + Duration::from_millis(200), 50_000_000),
            None
        );
        // 2 s later, 1 s of CPU used: half a core.
        let r = t.observe("c", t0 + Duration::from_secs(2), 1_000_001_000);
        assert_eq!(r, Some(500_000_000));
        // A close sample repeats the last rate.
        assert_eq!(
            t.observe("c", t0 + Duration::from_millis(2100), 1_100_000_000),
            Some(500_000_000)
        );
        // 4 more seconds at 2 cores.
        assert_eq!(
            t.observe("c", t0 + Duration::from_secs(6), 9_000_001_000),
            Some(2_000_000_000)
        );
        // The counter went back (new cgroup): start over.
        assert_eq!(t.observe("c", t0 + Duration::from_secs(8), 10), None);
        let live = std::collections::HashSet::new();
        t.retain(&live);
        assert_eq!(t.observe("c", t0 + Duration::from_secs(10), 20), None);
        assert_eq!(rate_nanocores(5, Duration::ZERO), 0);
    }

    fn sample(id: &str, cpu: u64, mem: u64) -> ContainerSample {
        ContainerSample {
            name: id.split('-').nth(1).unwrap_or(id).to_string(),
            id: id.to_string(),
            start_time: DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            cpu_ns: Some(cpu),
            memory: Some(MemorySample {
                usage_bytes: mem,
                working_set_bytes: mem / 2,
                rss_bytes: mem / 4,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn summary_json() {
        let t0 = Instant::now();
        let time = DateTime::parse_from_rfc3339("2026-01-01T00:00:10.250Z")
            .unwrap()
            .with_timezone(&Utc);
        let meta: PodMeta = serde_json::from_value(serde_json::json!({
            "uid": "u1", "namespace": "default", "name": "burner"
        }))
        .unwrap();
        let mut snap = Snapshot {
            at: t0,
            time,
            boot_time: time - chrono::Duration::seconds(10),
            node_cpu_ns: Some(10_000_000_000),
            node_memory: Some(MemorySample {
                usage_bytes: 4096,
                working_set_bytes: 2048,
                available_bytes: Some(8192),
                ..Default::default()
            }),
            pods: vec![PodSample {
                meta,
                start_time: time,
                containers: vec![sample("u1-a-0", 1_000, 1024), sample("u1-b-0", 2_000, 2048)],
            }],
        };
        let mut tracker = RateTracker::new(Duration::from_secs(1));
        let (rates, missing) = snap.observe(&mut tracker);
        assert!(missing && rates.is_empty());
        let s = serde_json::to_value(snap.summary("minik", &rates)).unwrap();
        assert!(s["node"]["cpu"].get("usageNanoCores").is_none());
        assert_eq!(s["pods"][0]["cpu"]["usageCoreNanoSeconds"], 3_000);

        // One second later: a used 0.9 s (900 mcores), b 0.1 s.
        snap.at = t0 + Duration::from_secs(1);
        snap.node_cpu_ns = Some(11_500_000_000);
        snap.pods[0].containers = vec![
            sample("u1-a-0", 900_001_000, 1024),
            sample("u1-b-0", 100_002_000, 2048),
        ];
        let (rates, missing) = snap.observe(&mut tracker);
        assert!(!missing);
        let s = serde_json::to_value(snap.summary("minik", &rates)).unwrap();
        assert_eq!(s["node"]["nodeName"], "minik");
        assert_eq!(s["node"]["startTime"], "2026-01-01T00:00:00.250Z");
        assert_eq!(s["node"]["cpu"]["usageNanoCores"], 1_500_000_000u64);
        assert_eq!(s["node"]["memory"]["availableBytes"], 8192);
        assert_eq!(s["node"]["memory"]["workingSetBytes"], 2048);
        let pod = &s["pods"][0];
        assert_eq!(
            pod["podRef"],
            serde_json::json!({"name": "burner", "namespace": "default", "uid": "u1"})
        );
        assert_eq!(pod["containers"][0]["name"], "a");
        assert_eq!(pod["containers"][0]["cpu"]["usageNanoCores"], 900_000_000);
        assert_eq!(
            pod["containers"][0]["cpu"]["time"],
            "2026-01-01T00:00:10.250Z"
        );
        assert_eq!(pod["containers"][1]["memory"]["workingSetBytes"], 1024);
        assert_eq!(pod["containers"][1]["memory"]["rssBytes"], 512);
        assert!(pod["containers"][1]["memory"]
            .get("availableBytes")
            .is_none());
        assert_eq!(pod["cpu"]["usageNanoCores"], 1_000_000_000);
        assert_eq!(pod["memory"]["workingSetBytes"], 512 + 1024);
        assert_eq!(pod["memory"]["usageBytes"], 3072);
    }

    /// A burning process moved into a cgroup we make (`/<parent>/c`) in
    /// the hierarchies `mounts` names; returns what `read` sees after ~1 s
    /// of burning. None when this host lacks those hierarchies or root.
    fn burn_in_cgroup(
        mounts: &CgroupMounts,
        dirs: &[&(PathBuf, String)],
    ) -> Option<(Option<u64>, Option<MemorySample>)> {
        let parent = format!("minik-stats-test-{}", std::process::id());
        let path = format!("/{parent}/c");
        let made: Vec<PathBuf> = dirs
            .iter()
            .map(|m| CgroupMounts::dir(m, &path).unwrap())
            .collect();
        for d in &made {
            if std::fs::create_dir_all(d).is_err() {
                eprintln!("cannot create {} (not root?): skipped", d.display());
                return None;
            }
        }
        // The shell joins the cgroups, then execs: the new image's pages
        // are charged to them (v1 does not move earlier charges).
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                r#"for f in "$@"; do echo $$ > "$f"; done; exec sh -c 'while :; do :; done'"#,
                "sh",
            ])
            .args(made.iter().map(|d| d.join("cgroup.procs")))
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1200));
        let read = mounts.read(&path);
        let _ = child.kill();
        let _ = child.wait();
        for d in &made {
            let _ = std::fs::remove_dir(d);
            let _ = std::fs::remove_dir(d.parent().unwrap());
        }
        Some(read)
    }

    /// cgroup v1 (this hybrid host's cpuacct and memory controllers): a
    /// real process's CPU time and memory are read from the kernel's files.
    #[test]
    fn reads_a_real_v1_cgroup() {
        let host = CgroupMounts::detect();
        let (Some(cpu), Some(mem)) = (host.cpuacct_v1.clone(), host.memory_v1.clone()) else {
            eprintln!("no cgroup v1 cpuacct+memory here: skipped");
            return;
        };
        let mounts = CgroupMounts {
            cpuacct_v1: Some(cpu.clone()),
            memory_v1: Some(mem.clone()),
            unified: None,
        };
        let Some((cpu_ns, memory)) = burn_in_cgroup(&mounts, &[&cpu, &mem]) else {
            return;
        };
        let cpu_ns = cpu_ns.expect("cpuacct.usage read");
        // A new cgroup starts at 0; ~1.2 s of burning on a shared (busy)
        // 2-core machine is still well over 10 ms.
        assert!(cpu_ns > 10_000_000, "cpu {cpu_ns} ns");
        assert!(cpu_ns < 5_000_000_000, "cpu {cpu_ns} ns");
        let m = memory.expect("memory files read");
        assert!(
            m.usage_bytes > 0 && m.working_set_bytes <= m.usage_bytes,
            "{m:?}"
        );
    }

    /// cgroup v2 (the VM's layout): the unified hierarchy's `cpu.stat` of a
    /// real cgroup. On a hybrid host the memory controller stays with v1,
    /// so only the CPU is checked there.
    #[test]
    fn reads_a_real_v2_cgroup() {
        let host = CgroupMounts::detect();
        let Some(unified) = host.unified.clone() else {
            eprintln!("no cgroup v2 hierarchy here: skipped");
            return;
        };
        let mounts = CgroupMounts {
            cpuacct_v1: None,
            memory_v1: None,
            unified: Some(unified.clone()),
        };
        let Some((cpu_ns, memory)) = burn_in_cgroup(&mounts, &[&unified]) else {
            return;
        };
        let cpu_ns = cpu_ns.expect("cpu.stat read");
        assert!(cpu_ns > 10_000_000, "cpu {cpu_ns} ns");
        assert!(cpu_ns < 5_000_000_000, "cpu {cpu_ns} ns");
        let controllers =
            std::fs::read_to_string(unified.0.join("cgroup.controllers")).unwrap_or_default();
        if controllers.split_whitespace().any(|c| c == "memory") {
            assert!(memory.is_some_and(|m| m.usage_bytes > 0));
        }
    }

    /// The real files of this host: a process of ours burning CPU shows in
    /// the node's rate.
    #[test]
    fn this_host_node_reading() {
        let c = Collector::new("minik", Path::new("/nonexistent-minik-pods"));
        let s = c.snapshot();
        assert!(s.node_cpu_ns.unwrap() > 0);
        let m = s.node_memory.unwrap();
        assert!(m.usage_bytes > 0 && m.working_set_bytes <= m.usage_bytes);
        assert!(s.pods.is_empty());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let burner = std::thread::spawn(move || {
            let mut x = 0u64;
            while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                x = x.wrapping_mul(31).wrapping_add(7);
            }
            x
        });
        let summary = c.summary();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = burner.join();
        let rate = summary.node.cpu.unwrap().usage_nano_cores.unwrap();
        // At least most of one core was busy (the burner), at most all cores.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        assert!(rate > 500_000_000, "node rate {rate}");
        assert!(rate <= cores * 1_050_000_000, "node rate {rate}");
    }
}
