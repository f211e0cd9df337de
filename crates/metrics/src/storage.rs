//! What metrics-server remembers between scrapes, and the figures it serves.
//! As the real metrics-server does, CPU usage is a rate between the last
//! two scrapes: the difference of the cumulative CPU time
//! (`usageCoreNanoSeconds`) over the difference of their sample times,
//! which is also the reported `window`; memory is the last working set.
//! A series whose counter went back (a restarted container, a rebooted
//! node) starts over and has no usage until the next scrape.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use crate::summary::{CpuStats, MemoryStats, Summary};

/// One sample of one node or container.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub time: DateTime<Utc>,
    /// Cumulative CPU time, nanoseconds.
    pub cpu_ns: u64,
    pub working_set_bytes: u64,
    pub start_time: Option<DateTime<Utc>>,
}

impl Point {
    /// A point from the summary's CPU and memory, when both are complete.
    pub fn from_stats(
        cpu: Option<&CpuStats>,
        memory: Option<&MemoryStats>,
        start_time: Option<DateTime<Utc>>,
    ) -> Option<Point> {
        let cpu = cpu?;
        Some(Point {
            time: cpu.time,
            cpu_ns: cpu.usage_core_nano_seconds?,
            working_set_bytes: memory?.working_set_bytes?,
            start_time,
        })
    }
}

/// Usage over a window, ready to serve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// The end of the window (the last sample).
    pub timestamp: DateTime<Utc>,
    pub window: chrono::Duration,
    pub cpu_nanocores: u64,
    pub memory_bytes: u64,
}

/// The last two samples of a node or container.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    prev: Option<Point>,
    last: Point,
}

impl Series {
    pub fn new(p: Point) -> Series {
        Series {
            prev: None,
            last: p,
        }
    }

    /// Adds a sample. The same sample seen twice changes nothing.
    pub fn push(&mut self, p: Point) {
        if p.time <= self.last.time {
            if p.time < self.last.time || p.cpu_ns < self.last.cpu_ns {
                *self = Series::new(p);
            }
            return;
        }
        if p.cpu_ns < self.last.cpu_ns || p.start_time != self.last.start_time {
            *self = Series::new(p);
            return;
        }
        self.prev = Some(self.last);
        self.last = p;
    }

    pub fn usage(&self) -> Option<Usage> {
        let prev = self.prev?;
        let window = self.last.time - prev.time;
        let nanos = window.num_nanoseconds()?;
        if nanos <= 0 {
            return None;
        }
        let used = (self.last.cpu_ns - prev.cpu_ns) as u128;
        Some(Usage {
            timestamp: self.last.time,
            window,
            cpu_nanocores: (used * 1_000_000_000 / nanos as u128) as u64,
            memory_bytes: self.last.working_set_bytes,
        })
    }

    /// Whether this series still waits for its second sample.
    pub fn pending(&self) -> bool {
        self.prev.is_none()
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
struct PodEntry {
    uid: String,
    containers: BTreeMap<String, Series>,
}

/// A pod's usage: per container, and the pod's timestamp and window.
#[derive(Debug, Clone, PartialEq)]
pub struct PodUsage {
    pub timestamp: DateTime<Utc>,
    pub window: chrono::Duration,
    pub containers: Vec<(String, Usage)>,
}

/// Every node's and pod's series.
#[derive(Debug, Clone, Default)]
pub struct Store {
    nodes: HashMap<String, Series>,
    /// (namespace, name) → the pod's containers.
    pods: HashMap<(String, String), PodEntry>,
    /// When the last successful scrape ended.
    pub last_scrape: Option<DateTime<Utc>>,
}

impl Store {
    /// Takes in one kubelet summary: the node's and every container's
    /// sample; pods and containers the kubelet no longer reports are
    /// forgotten. Returns whether some series waits for a second sample
    /// (the scraper then scrapes again soon).
    pub fn ingest(&mut self, s: &Summary, now: DateTime<Utc>) -> bool {
        let mut pending = false;
        let node = &s.node;
        if let Some(p) = Point::from_stats(node.cpu.as_ref(), node.memory.as_ref(), node.start_time)
        {
            let series = self
                .nodes
                .entry(node.node_name.clone())
                .and_modify(|ser| ser.push(p))
                .or_insert_with(|| Series::new(p));
            pending |= series.pending();
        }
        let mut seen = std::collections::HashSet::new();
        for pod in &s.pods {
            let key = (pod.pod_ref.namespace.clone(), pod.pod_ref.name.clone());
            let entry = self.pods.entry(key.clone()).or_default();
            if entry.uid != pod.pod_ref.uid {
                *entry = PodEntry {
                    uid: pod.pod_ref.uid.clone(),
                    containers: BTreeMap::new(),
                };
            }
            let mut names = std::collections::HashSet::new();
            for c in &pod.containers {
                let Some(p) = Point::from_stats(c.cpu.as_ref(), c.memory.as_ref(), c.start_time)
                else {
                    continue;
                };
                names.insert(c.name.clone());
                let series = entry
                    .containers
                    .entry(c.name.clone())
                    .and_modify(|ser| ser.push(p))
                    .or_insert_with(|| Series::new(p));
                pending |= series.pending();
            }
            entry.containers.retain(|n, _| names.contains(n));
            if !entry.containers.is_empty() {
                seen.insert(key);
            }
        }
        self.pods.retain(|k, _| seen.contains(k));
        self.last_scrape = Some(now);
        pending
    }

    pub fn node(&self, name: &str) -> Option<Usage> {
        self.nodes.get(name)?.usage()
    }

    /// A pod's usage, when every container it runs has one.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<PodUsage> {
        let entry = self.pods.get(&(namespace.to_string(), name.to_string()))?;
        let mut containers = Vec::new();
        for (n, s) in &entry.containers {
            containers.push((n.clone(), s.usage()?));
        }
        let newest = containers
            .iter()
            .map(|(_, u)| u)
            .max_by_key(|u| u.timestamp)?;
        Some(PodUsage {
            timestamp: newest.timestamp,
            window: newest.window,
            containers,
        })
    }

    /// (namespace, name) of every pod with usage, sorted.
    pub fn pod_keys(&self) -> Vec<(String, String)> {
        let mut keys: Vec<_> = self
            .pods
            .keys()
            .filter(|(ns, n)| self.pod(ns, n).is_some())
            .cloned()
            .collect();
        keys.sort();
        keys
    }

    /// Names of every node with usage, sorted.
    pub fn node_names(&self) -> Vec<String> {
        let mut names: Vec<_> = self
            .nodes
            .iter()
            .filter(|(_, s)| s.usage().is_some())
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }

    /// Ready once some node has a usage (what `/readyz` reports).
    pub fn ready(&self) -> bool {
        self.nodes.values().any(|s| s.usage().is_some())
    }
}

/// A CPU quantity in Kubernetes' canonical form: `250m`, `1500u`, `12n`, `2`.
pub fn cpu_quantity(nanocores: u64) -> String {
    match nanocores {
        0 => "0".into(),
        n if n % 1_000_000_000 == 0 => format!("{}", n / 1_000_000_000),
        n if n % 1_000_000 == 0 => format!("{}m", n / 1_000_000),
        n if n % 1_000 == 0 => format!("{}u", n / 1_000),
        n => format!("{n}n"),
    }
}

/// A memory quantity in Kubernetes' canonical binary form: `1Mi`, `1234Ki`, `100`.
pub fn memory_quantity(bytes: u64) -> String {
    if bytes == 0 {
        return "0".into();
    }
    let suffixes = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let mut value = bytes;
    let mut suffix = "";
    for s in suffixes {
        if !value.is_multiple_of(1024) {
            break;
        }
        value /= 1024;
        suffix = s;
    }
    format!("{value}{suffix}")
}

/// A duration as Go's `time.Duration.String()` writes it (what
/// `metav1.Duration` carries): `15s`, `1.25s`, `500ms`, `1m30s`.
pub fn go_duration(d: chrono::Duration) -> String {
    let ms = d.num_milliseconds();
    if ms <= 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let h = ms / 3_600_000;
    let m = (ms / 60_000) % 60;
    let s_ms = ms % 60_000;
    let secs = if s_ms % 1000 == 0 {
        format!("{}s", s_ms / 1000)
    } else {
        let frac = format!("{:03}", s_ms % 1000);
        format!("{}.{}s", s_ms / 1000, frac.trim_end_matches('0'))
    };
    if h > 0 {
        format!("{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{m}m{secs}")
    } else {
        secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::{ContainerStats, NodeStats, PodReference, PodStats};

    fn at(s: f64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis((1_800_000_000.0 * 1000.0 + s * 1000.0) as i64).unwrap()
    }

    fn cpu(t: f64, ns: u64) -> Option<CpuStats> {
        Some(CpuStats {
            time: at(t),
            usage_nano_cores: None,
            usage_core_nano_seconds: Some(ns),
        })
    }

    fn mem(t: f64, ws: u64) -> Option<MemoryStats> {
        Some(MemoryStats {
            time: at(t),
            working_set_bytes: Some(ws),
            usage_bytes: Some(ws * 2),
        })
    }

    /// (container, cumulative CPU ns, working set bytes)
    type Containers<'a> = &'a [(&'a str, u64, u64)];

    fn summary(t: f64, node_ns: u64, pods: &[(&str, &str, Containers)]) -> Summary {
        Summary {
            node: NodeStats {
                node_name: "minik".into(),
                start_time: Some(at(-100.0)),
                cpu: cpu(t, node_ns),
                memory: mem(t, 1 << 30),
            },
            pods: pods
                .iter()
                .map(|(name, uid, cs)| PodStats {
                    pod_ref: PodReference {
                        name: name.to_string(),
                        namespace: "default".into(),
                        uid: uid.to_string(),
                    },
                    containers: cs
                        .iter()
                        .map(|(n, ns, ws)| ContainerStats {
                            name: n.to_string(),
                            start_time: Some(at(-10.0)),
                            cpu: cpu(t, *ns),
                            memory: mem(t, *ws),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn rates_between_two_scrapes() {
        let mut st = Store::default();
        let burn: &[(&str, u64, u64)] = &[("burn", 1_000_000_000, 4096)];
        assert!(st.ingest(
            &summary(0.0, 5_000_000_000, &[("burner", "u1", burn)]),
            at(0.0)
        ));
        assert!(!st.ready());
        assert_eq!(st.node("minik"), None);
        assert_eq!(st.pod("default", "burner"), None);
        assert!(st.pod_keys().is_empty());

        // 15 s later: the burner used 12 s of CPU (800m), the node 20 s.
        let burn: &[(&str, u64, u64)] = &[("burn", 13_000_000_000, 8192)];
        assert!(!st.ingest(
            &summary(15.0, 25_000_000_000, &[("burner", "u1", burn)]),
            at(15.0)
        ));
        assert!(st.ready());
        let n = st.node("minik").unwrap();
        assert_eq!(n.cpu_nanocores, 1_333_333_333);
        assert_eq!(n.window, chrono::Duration::seconds(15));
        assert_eq!(n.memory_bytes, 1 << 30);
        let p = st.pod("default", "burner").unwrap();
        assert_eq!(p.timestamp, at(15.0));
        assert_eq!(p.containers[0].0, "burn");
        assert_eq!(p.containers[0].1.cpu_nanocores, 800_000_000);
        assert_eq!(p.containers[0].1.memory_bytes, 8192);
        assert_eq!(st.pod_keys(), vec![("default".into(), "burner".into())]);

        // The same summary again (two scrapes within one kubelet sample).
        st.ingest(
            &summary(15.0, 25_000_000_000, &[("burner", "u1", burn)]),
            at(16.0),
        );
        assert_eq!(
            st.pod("default", "burner").unwrap().containers[0]
                .1
                .cpu_nanocores,
            800_000_000
        );

        // Recreated with a new uid: starts over; the old pod is forgotten.
        let burn: &[(&str, u64, u64)] = &[("burn", 10, 8192)];
        assert!(st.ingest(
            &summary(30.0, 26_000_000_000, &[("burner", "u2", burn)]),
            at(30.0)
        ));
        assert_eq!(st.pod("default", "burner"), None);
        st.ingest(&summary(31.0, 27_000_000_000, &[]), at(31.0));
        assert!(st.pod_keys().is_empty());
    }

    #[test]
    fn counter_reset_starts_over() {
        let p = |t: f64, ns: u64| Point {
            time: at(t),
            cpu_ns: ns,
            working_set_bytes: 1,
            start_time: None,
        };
        let mut s = Series::new(p(0.0, 100));
        s.push(p(1.0, 600_000_100));
        assert_eq!(s.usage().unwrap().cpu_nanocores, 600_000_000);
        s.push(p(2.0, 50));
        assert!(s.pending() && s.usage().is_none());
        // A pod with one container lacking a rate has no usage at all.
        let mut st = Store::default();
        let cs: &[(&str, u64, u64)] = &[("a", 1, 1), ("b", 1, 1)];
        st.ingest(&summary(0.0, 1, &[("p", "u", cs)]), at(0.0));
        let cs: &[(&str, u64, u64)] = &[("a", 2, 1), ("b", 0, 1)];
        st.ingest(&summary(1.0, 2, &[("p", "u", cs)]), at(1.0));
        assert_eq!(st.pod("default", "p"), None);
    }

    #[test]
    fn quantities() {
        assert_eq!(cpu_quantity(0), "0");
        assert_eq!(cpu_quantity(2_000_000_000), "2");
        assert_eq!(cpu_quantity(250_000_000), "250m");
        assert_eq!(cpu_quantity(1_500_000), "1500u");
        assert_eq!(cpu_quantity(123_456_789), "123456789n");
        assert_eq!(memory_quantity(0), "0");
        assert_eq!(memory_quantity(100), "100");
        assert_eq!(memory_quantity(1 << 20), "1Mi");
        assert_eq!(memory_quantity(1234 * 1024), "1234Ki");
        assert_eq!(memory_quantity(3 << 30), "3Gi");
    }

    #[test]
    fn durations_as_go_writes_them() {
        let ms = chrono::Duration::milliseconds;
        assert_eq!(go_duration(ms(15_000)), "15s");
        assert_eq!(go_duration(ms(15_012)), "15.012s");
        assert_eq!(go_duration(ms(1_250)), "1.25s");
        assert_eq!(go_duration(ms(500)), "500ms");
        assert_eq!(go_duration(ms(90_500)), "1m30.5s");
        assert_eq!(go_duration(ms(3_600_000)), "1h0m0s");
        assert_eq!(go_duration(ms(0)), "0s");
    }
}
