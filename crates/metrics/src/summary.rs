//! The part of the kubelet's Summary API (`GET /stats/summary`,
//! stats/v1alpha1) metrics-server reads: per node and per container the
//! cumulative CPU time and the memory working set, with their sample times.

use chrono::{DateTime, Utc};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub node: NodeStats,
    #[serde(default)]
    pub pods: Vec<PodStats>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    pub node_name: String,
    #[serde(default)]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub cpu: Option<CpuStats>,
    #[serde(default)]
    pub memory: Option<MemoryStats>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    pub pod_ref: PodReference,
    #[serde(default)]
    pub containers: Vec<ContainerStats>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct PodReference {
    pub name: String,
    pub namespace: String,
    #[serde(default)]
    pub uid: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    pub name: String,
    #[serde(default)]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub cpu: Option<CpuStats>,
    #[serde(default)]
    pub memory: Option<MemoryStats>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    pub time: DateTime<Utc>,
    #[serde(default)]
    pub usage_nano_cores: Option<u64>,
    #[serde(default)]
    pub usage_core_nano_seconds: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    pub time: DateTime<Utc>,
    #[serde(default)]
    pub working_set_bytes: Option<u64>,
    #[serde(default)]
    pub usage_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_kubelet_summary() {
        // The shape a real kubelet (and minik's) serves, extra fields ignored.
        let doc = r#"{
          "node": {"nodeName": "minik", "startTime": "2026-01-01T00:00:00Z",
                   "systemContainers": [],
                   "cpu": {"time": "2026-01-01T00:01:00.500Z", "usageNanoCores": 5,
                           "usageCoreNanoSeconds": 123},
                   "memory": {"time": "2026-01-01T00:01:00Z", "availableBytes": 1,
                              "workingSetBytes": 2048, "usageBytes": 4096},
                   "fs": {"availableBytes": 1}},
          "pods": [{"podRef": {"name": "p", "namespace": "default", "uid": "u"},
                    "startTime": "2026-01-01T00:00:30Z",
                    "containers": [{"name": "c", "startTime": "2026-01-01T00:00:31Z",
                                    "cpu": {"time": "2026-01-01T00:01:00Z",
                                            "usageCoreNanoSeconds": 7},
                                    "memory": {"time": "2026-01-01T00:01:00Z",
                                               "workingSetBytes": 9}}],
                    "volume": []}]
        }"#;
        let s: Summary = serde_json::from_str(doc).unwrap();
        assert_eq!(s.node.node_name, "minik");
        let cpu = s.node.cpu.unwrap();
        assert_eq!(cpu.usage_core_nano_seconds, Some(123));
        assert_eq!(cpu.time.timestamp_subsec_millis(), 500);
        assert_eq!(s.pods[0].pod_ref.uid, "u");
        let c = &s.pods[0].containers[0];
        assert_eq!(c.memory.as_ref().unwrap().working_set_bytes, Some(9));
        assert_eq!(c.cpu.as_ref().unwrap().usage_nano_cores, None);
    }
}
