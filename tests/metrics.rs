//! The metrics-server addon end to end with the real binary and the real
//! kubectl (none driver): the kubelet's `/stats/summary` on 127.0.0.1:10250,
//! `minik addons enable metrics-server`, the metrics-server's own HTTPS API,
//! then `kubectl top pods|nodes` and `kubectl get --raw
//! /apis/metrics.k8s.io/v1beta1/...` through the API server's aggregation:
//! a pod burning CPU shows hundreds of millicores, an idle one near zero.
//! One cluster for the whole file, steps in order.

mod common;

use std::time::{Duration, Instant};

use common::{minik_process_rss_kib, text, wait_for, Env};
use serde_json::Value;

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: burner
  labels: {app: burner, tier: load}
spec:
  terminationGracePeriodSeconds: 0
  containers:
    - name: burn
      image: minik/busybox
      command: [sh, -c, "while :; do :; done"]
---
apiVersion: v1
kind: Pod
metadata:
  name: idle
  labels: {app: idle, tier: load}
spec:
  terminationGracePeriodSeconds: 0
  containers:
    - name: sleep
      image: minik/busybox
      command: [sleep, "3600"]
"#;

/// `curl` with TLS verification off (the server's certificate is self-signed).
fn curl_k(url: &str) -> Result<String, String> {
    let out = std::process::Command::new("curl")
        .args(["-sSk", "--max-time", "10", "-w", "\n%{http_code}", url])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(text(&out.stderr));
    }
    let body = text(&out.stdout);
    let (body, code) = body.rsplit_once('\n').unwrap_or((&body, ""));
    if code == "200" {
        Ok(body.to_string())
    } else {
        Err(format!("HTTP {code}: {body}"))
    }
}

/// Millicores from kubectl top's CPU column (`812m`, `1` core).
fn millicores(cell: &str) -> u64 {
    match cell.strip_suffix('m') {
        Some(m) => m.parse().unwrap_or(u64::MAX),
        None => cell.parse::<u64>().map(|c| c * 1000).unwrap_or(u64::MAX),
    }
}

/// `kubectl top pods` rows as (name, millicores, memory cell).
fn top_pods(env: &Env, extra: &[&str]) -> Result<Vec<(String, u64, String)>, String> {
    let mut args = vec!["top", "pods", "--no-headers"];
    args.extend_from_slice(extra);
    let out = env.kubectl(&args);
    if !out.status.success() {
        return Err(format!("{}{}", text(&out.stdout), text(&out.stderr)));
    }
    Ok(text(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.first()?.to_string(),
                millicores(f.get(1)?),
                f.get(2)?.to_string(),
            ))
        })
        .collect())
}

/// The kubelet's summary entry of a pod.
fn pod_in_summary<'a>(s: &'a Value, name: &str) -> Option<&'a Value> {
    s["pods"]
        .as_array()?
        .iter()
        .find(|p| p["podRef"]["name"] == name && p["podRef"]["namespace"] == "default")
}

#[test]
fn metrics_server_addon_and_kubectl_top() {
    let env = Env::new("metrics");
    env.start_none();
    env.k(&["version"]);

    // Before the addon: no metrics API, and kubectl says so.
    let before = env.kubectl(&["top", "nodes"]);
    assert!(
        !before.status.success(),
        "kubectl top worked without metrics-server"
    );

    env.apply(PODS);
    wait_for("burner and idle Running", Duration::from_secs(120), || {
        let out = env.k(&["get", "pods", "--no-headers"]);
        let running = out.lines().filter(|l| l.contains("Running")).count();
        if running == 2 {
            Ok(())
        } else {
            Err(out)
        }
    });

    // 1. The kubelet's /stats/summary, read directly (loopback only).
    let summary: Value = wait_for(
        "the kubelet's summary with both pods",
        Duration::from_secs(30),
        || {
            let body = common::curl("http://127.0.0.1:10250/stats/summary")?;
            let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
            if pod_in_summary(&v, "burner").is_some() && pod_in_summary(&v, "idle").is_some() {
                Ok(v)
            } else {
                Err(body)
            }
        },
    );
    assert_eq!(summary["node"]["nodeName"], "minik");
    // A warm summary (rates from the previous request's samples) is fast.
    let warm = Instant::now();
    common::curl("http://127.0.0.1:10250/stats/summary").unwrap();
    eprintln!("warm /stats/summary took {:?}", warm.elapsed());
    let node_cpu = summary["node"]["cpu"]["usageNanoCores"].as_u64().unwrap();
    assert!(node_cpu > 0, "{}", summary["node"]);
    assert!(
        summary["node"]["memory"]["workingSetBytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    let burn = &pod_in_summary(&summary, "burner").unwrap()["containers"][0];
    assert_eq!(burn["name"], "burn");
    let burn_nc = burn["cpu"]["usageNanoCores"].as_u64().unwrap();
    let idle = &pod_in_summary(&summary, "idle").unwrap()["containers"][0];
    let idle_nc = idle["cpu"]["usageNanoCores"].as_u64().unwrap();
    eprintln!(
        "kubelet summary: burner {} mcores, idle {} mcores, node {} mcores, idle working set {} B",
        burn_nc / 1_000_000,
        idle_nc / 1_000_000,
        node_cpu / 1_000_000,
        idle["memory"]["workingSetBytes"]
    );
    assert!(burn_nc > 200_000_000, "burner at {burn_nc} nanocores");
    assert!(idle_nc < 50_000_000, "idle at {idle_nc} nanocores");
    assert!(idle["memory"]["workingSetBytes"].as_u64().unwrap() > 0);
    assert!(burn["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap() > 0);

    // 2. The addon; the metrics-server pod answers on the node's address.
    let enabled_at = Instant::now();
    env.m(&["addons", "enable", "metrics-server"]);
    let host_ip =
        wait_for(
            "the metrics-server pod Running 1/1",
            Duration::from_secs(120),
            || {
                let out = env.k(&[
                "get", "pods", "-n", "kube-system", "-l", "k8s-app=metrics-server", "-o",
                "jsonpath={.items[0].status.containerStatuses[0].ready} {.items[0].status.hostIP}",
            ]);
                match out.split_once(' ') {
                    Some(("true", ip)) if !ip.is_empty() => Ok(ip.to_string()),
                    _ => Err(out),
                }
            },
        );
    eprintln!(
        "metrics-server Ready {:?} after enable",
        enabled_at.elapsed()
    );
    let base = format!("https://{host_ip}:4443/apis/metrics.k8s.io/v1beta1");
    let direct: Value = serde_json::from_str(&curl_k(&base).unwrap()).unwrap();
    assert_eq!(direct["kind"], "APIResourceList");
    let direct: Value = wait_for(
        "the burner in the metrics-server's own pod list",
        Duration::from_secs(60),
        || {
            let body = curl_k(&format!("{base}/namespaces/default/pods"))?;
            let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
            if v["items"].as_array().is_some_and(|i| i.len() == 2) {
                Ok(v)
            } else {
                Err(body)
            }
        },
    );
    assert_eq!(direct["kind"], "PodMetricsList");
    let nodes: Value =
        serde_json::from_str(&curl_k(&format!("{base}/nodes/minik")).unwrap()).unwrap();
    assert_eq!(nodes["kind"], "NodeMetrics");
    assert!(curl_k(&format!("{base}/namespaces/default/pods/nope"))
        .unwrap_err()
        .contains("404"));

    // 3. Through the API server's aggregation: kubectl top.
    let rows = wait_for(
        "kubectl top pods with the burner and the idle pod",
        Duration::from_secs(90),
        || {
            let rows = top_pods(&env, &[])?;
            let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
            if names == ["burner", "idle"] {
                Ok(rows)
            } else {
                Err(format!("{rows:?}"))
            }
        },
    );
    eprintln!(
        "kubectl top pods {:?} after enable: {rows:?}",
        enabled_at.elapsed()
    );
    let (burner_m, idle_m) = (rows[0].1, rows[1].1);
    assert!(burner_m >= 200, "the burner at {burner_m}m: {rows:?}");
    assert!(burner_m <= 2100, "the burner at {burner_m}m: {rows:?}");
    assert!(idle_m <= 20, "the idle pod at {idle_m}m: {rows:?}");
    assert!(
        rows[1].2.ends_with("Mi") || rows[1].2.ends_with("Ki"),
        "{rows:?}"
    );

    // Label selectors and a single pod.
    let selected = top_pods(&env, &["-l", "app=burner"]).unwrap();
    assert_eq!(selected.len(), 1, "{selected:?}");
    assert_eq!(selected[0].0, "burner");
    let selected = top_pods(&env, &["-l", "tier=load,app!=burner"]).unwrap();
    assert_eq!(
        selected.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["idle"]
    );
    let one = env.k(&["top", "pod", "idle", "--containers", "--no-headers"]);
    let cols: Vec<&str> = one.split_whitespace().collect();
    assert_eq!(cols.get(..2), Some(&["idle", "sleep"][..]), "{one}");
    let all = env.k(&["top", "pods", "-A", "--no-headers"]);
    assert!(all.contains("metrics-server"), "{all}");

    let nodes = env.k(&["top", "nodes"]);
    eprintln!("kubectl top nodes:\n{nodes}");
    let header = nodes.lines().next().unwrap_or_default();
    assert!(
        header.contains("CPU(cores)") && header.contains("MEMORY(bytes)"),
        "{nodes}"
    );
    let row: Vec<&str> = nodes
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row.first(), Some(&"minik"), "{nodes}");
    // The node is at least as busy as the burner on it (minus jitter).
    let node_m = millicores(row[1]);
    assert!(node_m >= burner_m / 2 && node_m != u64::MAX, "{nodes}");
    assert!(row[3].ends_with("Mi") || row[3].ends_with("Gi"), "{nodes}");

    // The raw API parses, with windows and timestamps.
    let raw: Value =
        serde_json::from_str(&env.k(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/pods"]))
            .unwrap();
    assert_eq!(raw["kind"], "PodMetricsList");
    let burner = raw["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["metadata"]["name"] == "burner")
        .expect("the burner in the raw list");
    assert_eq!(burner["metadata"]["labels"]["app"], "burner");
    assert!(
        burner["window"].as_str().unwrap().ends_with('s'),
        "{burner}"
    );
    assert_eq!(burner["containers"][0]["name"], "burn");
    let raw_node: Value =
        serde_json::from_str(&env.k(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/minik"]))
            .unwrap();
    assert_eq!(raw_node["kind"], "NodeMetrics");
    // Server-side printing of the metrics objects (kubectl get asks for a Table).
    let table = env.k(&["get", "pods.metrics.k8s.io"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "CPU", "MEMORY", "WINDOW"], "{table}");
    assert!(table.lines().any(|l| l.starts_with("burner ")), "{table}");
    // The kubelet's summary through the API server (nodes/proxy), as
    // `kubectl get --raw` users read it.
    let proxied: Value =
        serde_json::from_str(&env.k(&["get", "--raw", "/api/v1/nodes/minik/proxy/stats/summary"]))
            .unwrap();
    assert_eq!(proxied["node"]["nodeName"], "minik");
    assert!(pod_in_summary(&proxied, "burner").is_some(), "{proxied}");
    // What metrics-server costs: its own figures and its resident memory.
    let own = env.k(&[
        "top",
        "pods",
        "-n",
        "kube-system",
        "-l",
        "k8s-app=metrics-server",
        "--no-headers",
    ]);
    eprintln!("metrics-server itself (kubectl top): {own}");
    eprintln!(
        "metrics-server VmRSS: {:?} KiB",
        minik_process_rss_kib("metrics-server")
    );
    let resources = env.k(&["api-resources", "--api-group=metrics.k8s.io"]);
    assert!(
        resources.contains("PodMetrics") && resources.contains("NodeMetrics"),
        "{resources}"
    );

    // The figures move: once the burner is gone, it leaves the list.
    env.k(&["delete", "pod", "burner", "--wait=true"]);
    wait_for(
        "the burner gone from kubectl top",
        Duration::from_secs(60),
        || {
            let rows = top_pods(&env, &[])?;
            if rows.iter().any(|r| r.0 == "burner") {
                Err(format!("{rows:?}"))
            } else {
                Ok(())
            }
        },
    );

    // 4. The addon survives stop/start (re-applied, the pod restarted).
    env.m(&["stop"]);
    env.m(&["start", "--driver=none"]);
    let restarted = Instant::now();
    wait_for(
        "kubectl top pods after a restart",
        Duration::from_secs(120),
        || {
            let rows = top_pods(&env, &[])?;
            if rows.iter().any(|r| r.0 == "idle") {
                Ok(())
            } else {
                Err(format!("{rows:?}"))
            }
        },
    );
    eprintln!("kubectl top pods {:?} after start", restarted.elapsed());

    // 5. Disable: the API group goes away and kubectl top says so.
    env.m(&["addons", "disable", "metrics-server"]);
    wait_for(
        "kubectl top failing after disable",
        Duration::from_secs(60),
        || {
            let out = env.kubectl(&["top", "pods"]);
            if out.status.success() {
                Err(text(&out.stdout))
            } else {
                Ok(())
            }
        },
    );
    env.m(&["delete"]);
}
