//! The documents of the `metrics.k8s.io/v1beta1` API as metrics-server
//! serves them: discovery (APIGroupList, APIGroup, APIResourceList),
//! NodeMetrics and PodMetrics (single and lists), `meta.k8s.io/v1` Tables
//! for `kubectl get nodes.metrics.k8s.io`, and `Status` errors. Pure.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::storage::{cpu_quantity, go_duration, memory_quantity, PodUsage, Usage};

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
pub const GROUP_VERSION: &str = "metrics.k8s.io/v1beta1";

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn api_group() -> Value {
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": GROUP,
        "versions": [{"groupVersion": GROUP_VERSION, "version": VERSION}],
        "preferredVersion": {"groupVersion": GROUP_VERSION, "version": VERSION},
    })
}

pub fn api_group_list() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group()]})
}

pub fn api_resource_list() -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {"name": "nodes", "singularName": "", "namespaced": false,
             "kind": "NodeMetrics", "verbs": ["get", "list"]},
            {"name": "pods", "singularName": "", "namespaced": true,
             "kind": "PodMetrics", "verbs": ["get", "list"]},
        ],
    })
}

/// Object metadata as metrics-server writes it: the object's name (and
/// namespace), its labels, and a creationTimestamp of now.
fn metadata(
    namespace: Option<&str>,
    name: &str,
    labels: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Value {
    let mut m = json!({"name": name, "creationTimestamp": stamp(now)});
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    if !labels.is_empty() {
        m["labels"] = json!(labels);
    }
    m
}

fn usage(u: &Usage) -> Value {
    json!({"cpu": cpu_quantity(u.cpu_nanocores), "memory": memory_quantity(u.memory_bytes)})
}

pub fn node_metrics(
    name: &str,
    labels: &BTreeMap<String, String>,
    u: &Usage,
    now: DateTime<Utc>,
) -> Value {
    json!({
        "kind": "NodeMetrics",
        "apiVersion": GROUP_VERSION,
        "metadata": metadata(None, name, labels, now),
        "timestamp": stamp(u.timestamp),
        "window": go_duration(u.window),
        "usage": usage(u),
    })
}

pub fn pod_metrics(
    namespace: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    u: &PodUsage,
    now: DateTime<Utc>,
) -> Value {
    json!({
        "kind": "PodMetrics",
        "apiVersion": GROUP_VERSION,
        "metadata": metadata(Some(namespace), name, labels, now),
        "timestamp": stamp(u.timestamp),
        "window": go_duration(u.window),
        "containers": u.containers.iter()
            .map(|(n, cu)| json!({"name": n, "usage": usage(cu)}))
            .collect::<Vec<_>>(),
    })
}

/// `NodeMetricsList` / `PodMetricsList`.
pub fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": GROUP_VERSION, "metadata": {}, "items": items})
}

/// Whether an `Accept` header asks for a `meta.k8s.io` Table.
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let p: Vec<&str> = part.split(';').map(str::trim).collect();
        p.contains(&"as=Table") && p.iter().any(|x| x.starts_with("g=meta.k8s.io"))
    })
}

/// A Table of NodeMetrics or PodMetrics objects (`kubectl get
/// pods.metrics.k8s.io`): NAME, CPU, MEMORY, WINDOW.
pub fn table(objects: &[Value]) -> Value {
    let col = |name: &str, ty: &str, format: &str, desc: &str| json!({"name": name, "type": ty, "format": format, "description": desc, "priority": 0});
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let (cpu, mem) = match o.get("usage") {
                Some(u) => (
                    cores_millis(u["cpu"].as_str().unwrap_or("0")),
                    u["memory"].as_str().unwrap_or("0").to_string(),
                ),
                None => {
                    // A pod: the sum of its containers.
                    let cs = o["containers"].as_array().cloned().unwrap_or_default();
                    let n: u64 = cs
                        .iter()
                        .map(|c| parse_cpu(c["usage"]["cpu"].as_str().unwrap_or("0")))
                        .sum();
                    let b: u64 = cs
                        .iter()
                        .map(|c| parse_memory(c["usage"]["memory"].as_str().unwrap_or("0")))
                        .sum();
                    (cores_millis(&cpu_quantity(n)), memory_quantity(b))
                }
            };
            json!({
                "cells": [o["metadata"]["name"], cpu, mem, o["window"]],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o["metadata"],
                },
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": [
            col("Name", "string", "name", "Name of the object"),
            col("CPU", "string", "", "CPU usage"),
            col("Memory", "string", "", "Memory usage (working set)"),
            col("Window", "string", "", "Interval the CPU usage was measured over"),
        ],
        "rows": rows,
    })
}

/// Nanocores from a canonical CPU quantity (`12n`, `3u`, `250m`, `2`).
pub fn parse_cpu(q: &str) -> u64 {
    let (num, mult) = match q.as_bytes().last() {
        Some(b'n') => (&q[..q.len() - 1], 1),
        Some(b'u') => (&q[..q.len() - 1], 1_000),
        Some(b'm') => (&q[..q.len() - 1], 1_000_000),
        _ => (q, 1_000_000_000),
    };
    num.parse::<u64>().unwrap_or(0) * mult
}

/// Bytes from a canonical binary memory quantity (`100`, `12Ki`, `3Mi`).
pub fn parse_memory(q: &str) -> u64 {
    let units = [
        ("Ki", 1u64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
    ];
    for (s, m) in units {
        if let Some(n) = q.strip_suffix(s) {
            return n.parse::<u64>().unwrap_or(0) * m;
        }
    }
    q.parse().unwrap_or(0)
}

/// `250m`-style millicores for a table cell.
fn cores_millis(q: &str) -> String {
    format!("{}m", parse_cpu(q) / 1_000_000)
}

/// A `Status` failure as the API server writes it.
pub fn status(code: u16, reason: &str, message: &str, details: Option<(&str, &str)>) -> Value {
    let mut s = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some((kind, name)) = details {
        s["details"] = json!({"name": name, "group": GROUP, "kind": kind});
    }
    s
}

/// 404 for one object: `nodemetrics.metrics.k8s.io "x" not found` is how
/// kubectl words it for the resource `nodes`; metrics-server names the
/// resource (`nodes`, `pods`).
pub fn not_found(resource: &str, name: &str) -> Value {
    status(
        404,
        "NotFound",
        &format!("{resource}.{GROUP} \"{name}\" not found"),
        Some((resource, name)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn discovery_documents() {
        let l = api_resource_list();
        assert_eq!(l["groupVersion"], "metrics.k8s.io/v1beta1");
        let names: Vec<&str> = l["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["nodes", "pods"]);
        assert_eq!(l["resources"][1]["namespaced"], true);
        assert_eq!(l["resources"][0]["verbs"], json!(["get", "list"]));
        assert_eq!(
            api_group_list()["groups"][0]["preferredVersion"]["version"],
            "v1beta1"
        );
    }

    #[test]
    fn metrics_objects() {
        let now = t("2026-01-01T00:01:00Z");
        let u = Usage {
            timestamp: t("2026-01-01T00:00:59.750Z"),
            window: chrono::Duration::milliseconds(15_012),
            cpu_nanocores: 812_345_678,
            memory_bytes: 5 << 20,
        };
        let mut labels = BTreeMap::new();
        labels.insert("app".to_string(), "burn".to_string());
        let n = node_metrics("minik", &BTreeMap::new(), &u, now);
        assert_eq!(n["kind"], "NodeMetrics");
        assert_eq!(
            n["metadata"],
            json!({"name": "minik", "creationTimestamp": "2026-01-01T00:01:00Z"})
        );
        assert_eq!(n["timestamp"], "2026-01-01T00:00:59Z");
        assert_eq!(n["window"], "15.012s");
        assert_eq!(n["usage"], json!({"cpu": "812345678n", "memory": "5Mi"}));

        let pu = PodUsage {
            timestamp: u.timestamp,
            window: u.window,
            containers: vec![
                ("burn".into(), u),
                (
                    "side".into(),
                    Usage {
                        cpu_nanocores: 0,
                        memory_bytes: 1000,
                        ..u
                    },
                ),
            ],
        };
        let p = pod_metrics("default", "burner", &labels, &pu, now);
        assert_eq!(p["metadata"]["namespace"], "default");
        assert_eq!(p["metadata"]["labels"]["app"], "burn");
        assert_eq!(
            p["containers"][1],
            json!({"name": "side", "usage": {"cpu": "0", "memory": "1000"}})
        );

        let l = list("PodMetricsList", vec![p.clone()]);
        assert_eq!(l["apiVersion"], "metrics.k8s.io/v1beta1");
        assert_eq!(l["items"][0]["metadata"]["name"], "burner");

        let tb = table(&[n, p]);
        assert_eq!(
            tb["rows"][0]["cells"],
            json!(["minik", "812m", "5Mi", "15.012s"])
        );
        assert_eq!(tb["rows"][1]["cells"][1], "812m");
        assert_eq!(tb["rows"][1]["cells"][2], memory_quantity((5 << 20) + 1000));
    }

    #[test]
    fn table_negotiation_and_errors() {
        assert!(wants_table("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"));
        assert!(!wants_table("application/json, */*"));
        let s = not_found("pods", "x");
        assert_eq!(s["code"], 404);
        assert_eq!(s["message"], "pods.metrics.k8s.io \"x\" not found");
        assert_eq!(parse_cpu("250m"), 250_000_000);
        assert_eq!(parse_cpu("7"), 7_000_000_000);
        assert_eq!(parse_memory("3Mi"), 3 << 20);
    }
}
