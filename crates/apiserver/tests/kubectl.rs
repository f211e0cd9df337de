//! End-to-end: the API server on a temp store, served over TLS on
//! 127.0.0.1 with a freshly made CA, driven by the real `kubectl` (the
//! dispatcher on PATH picks kubectl 1.33 from our /version). No
//! controllers run here, so these tests check what the API server alone does.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

mod support;
use support::{serve_on_loopback, start_kubectl_cluster as start};

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn version_health_and_bootstrap_objects() {
    let c = start();
    let out = c.ok(&["version"]);
    assert!(out.contains("Server Version: v1.33.2"), "{out}");
    assert!(
        out.contains("Client Version: v1.33"),
        "the dispatcher should pick kubectl 1.33: {out}"
    );
    assert_eq!(c.ok(&["get", "--raw", "/healthz"]), "ok");
    let ns = c.ok(&["get", "ns"]);
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            ns.lines().any(|l| l.starts_with(n) && l.contains("Active")),
            "{n} missing:\n{ns}"
        );
    }
    assert!(ns.starts_with("NAME"), "{ns}");
    let svc = c.ok(&["get", "svc", "kubernetes"]);
    assert!(
        svc.contains("10.96.0.1") && svc.contains("443/TCP") && svc.contains("ClusterIP"),
        "{svc}"
    );
    let ep = c.json(&["get", "endpoints", "kubernetes"]);
    assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "127.0.0.1");
    let _ = path_str(&c.kubeconfig);
}

#[test]
fn api_resources_from_aggregated_discovery() {
    let c = start();
    let out = c.ok(&["api-resources"]);
    let line = out
        .lines()
        .find(|l| l.starts_with("deployments"))
        .unwrap_or_else(|| panic!("{out}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cols,
        vec!["deployments", "deploy", "apps/v1", "true", "Deployment"]
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("pods") && l.contains(" po ")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("namespaces") && l.contains("false")),
        "{out}"
    );
}

#[test]
fn create_deployment_protobuf_then_table_scale_yaml_delete() {
    let c = start();
    let out = c.ok(&["create", "deployment", "hello", "--image=minik/hello"]);
    assert_eq!(out.trim(), "deployment.apps/hello created");
    let table = c.ok(&["get", "deploy"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], &["hello", "0/1", "0", "0"]);
    assert!(row[4].ends_with('s'), "age like 1s: {table}");
    let wide = c.ok(&["get", "deploy", "-o", "wide"]);
    assert!(
        wide.contains("CONTAINERS") && wide.contains("minik/hello") && wide.contains("app=hello"),
        "{wide}"
    );

    let out = c.ok(&["scale", "deployment", "hello", "--replicas=3"]);
    assert_eq!(out.trim(), "deployment.apps/hello scaled");
    let d = c.json(&["get", "deployment", "hello"]);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["metadata"]["generation"], 2);
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "Always"
    );
    assert!(d["metadata"]["uid"].as_str().unwrap().len() == 36);
    let yaml = c.ok(&["get", "deployment", "hello", "-o", "yaml"]);
    assert!(
        yaml.contains("replicas: 3") && yaml.contains("kind: Deployment"),
        "{yaml}"
    );

    assert_eq!(
        c.ok(&["delete", "deployment", "hello"]).trim(),
        "deployment.apps \"hello\" deleted"
    );
    let err = c.fails(&["get", "deployment", "hello"]);
    assert!(
        err.contains("Error from server (NotFound): deployments.apps \"hello\" not found"),
        "{err}"
    );
}

const DEPLOY_V1: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: minik/hello:1
"#;

#[test]
fn apply_twice_patches_with_strategic_merge() {
    let c = start();
    let f = c.file("web.yaml", DEPLOY_V1);
    assert_eq!(
        c.ok(&["apply", "-f", &f]).trim(),
        "deployment.apps/web created"
    );
    let v2 = DEPLOY_V1
        .replace("replicas: 1", "replicas: 2")
        .replace("minik/hello:1", "minik/hello:2");
    let f2 = c.file("web2.yaml", &v2);
    assert_eq!(
        c.ok(&["apply", "-f", &f2]).trim(),
        "deployment.apps/web configured"
    );
    let d = c.json(&["get", "deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "minik/hello:2"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(d["metadata"]["generation"], 2);
    assert!(
        d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );
    assert_eq!(
        c.ok(&["apply", "-f", &f2]).trim(),
        "deployment.apps/web unchanged"
    );
    // diff: a dry-run patch; exit code 1 and a diff when something would change
    let v4 = v2.replace("replicas: 2", "replicas: 5");
    let f4 = c.file("web4.yaml", &v4);
    let (ok, out, err) = c.run(&["diff", "-f", &f4]);
    assert!(
        !ok && out.contains("-  replicas: 2") && out.contains("+  replicas: 5"),
        "{out}{err}"
    );
    assert_eq!(
        c.json(&["get", "deployment", "web"])["spec"]["replicas"],
        2,
        "diff must not change anything"
    );
    // expose copies the selector into a new Service
    assert_eq!(
        c.ok(&[
            "expose",
            "deployment",
            "web",
            "--port=80",
            "--type=NodePort"
        ])
        .trim(),
        "service/web exposed"
    );
    assert_eq!(
        c.json(&["get", "svc", "web"])["spec"]["selector"]["app"],
        "web"
    );
    // server-side apply on an existing object and on a new one
    let v3 = v2.replace("name: web\n", "name: web-ssa\n");
    let f3 = c.file("web3.yaml", &v3);
    assert_eq!(
        c.ok(&["apply", "--server-side", "-f", &f3]).trim(),
        "deployment.apps/web-ssa serverside-applied"
    );
    assert_eq!(
        c.json(&["get", "deployment", "web-ssa"])["spec"]["replicas"],
        2
    );
    let v5 = v3.replace("replicas: 2", "replicas: 4");
    let f5 = c.file("web5.yaml", &v5);
    assert_eq!(
        c.ok(&["apply", "--server-side", "-f", &f5]).trim(),
        "deployment.apps/web-ssa serverside-applied"
    );
    let d = c.json(&["get", "deployment", "web-ssa"]);
    assert_eq!(d["spec"]["replicas"], 4);
    assert_eq!(d["metadata"]["generation"], 2);
    // applying again without a field removes it (the manager owned it)
    let v7 = v5.replace("  labels: {app: web}\n", "  labels: {app: web, tier: fe}\n");
    let f7 = c.file("web7.yaml", &v7);
    c.ok(&["apply", "--server-side", "-f", &f7]);
    assert_eq!(
        c.json(&["get", "deployment", "web-ssa"])["metadata"]["labels"]["tier"],
        "fe"
    );
    let rv = c.json(&["get", "deployment", "web-ssa"])["metadata"]["resourceVersion"].clone();
    c.ok(&["apply", "--server-side", "-f", &f7]);
    assert_eq!(
        c.json(&["get", "deployment", "web-ssa"])["metadata"]["resourceVersion"],
        rv,
        "a no-op apply writes nothing"
    );
    c.ok(&["apply", "--server-side", "-f", &f5]);
    let d = c.json(&["get", "deployment", "web-ssa"]);
    assert!(d["metadata"]["labels"].get("tier").is_none(), "{d}");
    assert_eq!(d["metadata"]["labels"]["app"], "web");
    let managed = c.json(&["get", "deployment", "web-ssa", "--show-managed-fields"]);
    assert_eq!(
        managed["metadata"]["managedFields"][0]["manager"],
        "kubectl"
    );
    assert_eq!(
        managed["metadata"]["managedFields"][0]["operation"],
        "Apply"
    );
    // server-side apply over an object made by client-side apply: another
    // replicas value conflicts with kubectl-client-side-apply (as in kube;
    // tests/ssa_openapi.rs checks the conflict), --force-conflicts takes it
    let f6 = c.file("web6.yaml", &v2.replace("replicas: 2", "replicas: 3"));
    c.ok(&["apply", "--server-side", "--force-conflicts", "-f", &f6]);
    assert_eq!(c.json(&["get", "deployment", "web"])["spec"]["replicas"], 3);
}

#[test]
fn strict_field_validation_rejects_unknown_fields() {
    let c = start();
    let bad = DEPLOY_V1.replace("  replicas: 1\n", "  replicas: 1\n  foo: bar\n");
    let f = c.file("bad.yaml", &bad);
    let err = c.fails(&["create", "-f", &f]);
    assert!(err.contains("unknown field \"spec.foo\""), "{err}");
    let err = c.fails(&["get", "deployment", "web"]);
    assert!(err.contains("NotFound"), "nothing may be stored: {err}");
    // Warn: stored, with a warning that names the field
    let (ok, out, err) = c.run(&["create", "--validate=warn", "-f", &f]);
    assert!(ok, "{out}{err}");
    assert!(err.contains("Warning: unknown field \"spec.foo\""), "{err}");
    assert!(c.json(&["get", "deployment", "web"])["spec"]
        .get("foo")
        .is_none());
}

#[test]
fn invalid_names_and_bodies_are_rejected_with_clear_messages() {
    let c = start();
    let bad = c.file(
        "bad.json",
        "{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", ",
    );
    let err = c.fails(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps",
        "-f",
        &bad,
    ]);
    assert!(err.contains("the request body is not valid JSON"), "{err}");
    let out = c.ok(&[
        "create",
        "configmap",
        "dry",
        "--from-literal=a=b",
        "--dry-run=server",
    ]);
    assert_eq!(out.trim(), "configmap/dry created (server dry run)");
    assert!(c.fails(&["get", "configmap", "dry"]).contains("NotFound"));
    let f = c.file(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\ndata: {a: b}\n",
    );
    let err = c.fails(&["create", "--validate=false", "-f", &f]);
    assert!(err.contains("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"), "{err}");
    let f = c.file(
        "cm2.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n  namespace: nosuch\n",
    );
    let err = c.fails(&["create", "--validate=false", "-f", &f]);
    assert!(err.contains("namespaces \"nosuch\" not found"), "{err}");
    let sel = DEPLOY_V1.replace(
        "template:\n    metadata: {labels: {app: web}}",
        "template:\n    metadata: {labels: {app: other}}",
    );
    let f = c.file("sel.yaml", &sel);
    let err = c.fails(&["create", "--validate=false", "-f", &f]);
    assert!(
        err.contains(
            "The Deployment \"web\" is invalid: spec.template.metadata.labels: Invalid value"
        ),
        "{err}"
    );
    assert!(
        err.contains("`selector` does not match template `labels`"),
        "{err}"
    );
}

#[test]
fn stale_resource_version_update_conflicts() {
    let c = start();
    c.ok(&["create", "configmap", "cfg", "--from-literal=a=1"]);
    let mut cm = c.json(&["get", "configmap", "cfg"]);
    cm["data"]["a"] = serde_json::json!("2");
    let f = c.file("cm.json", &cm.to_string());
    assert_eq!(
        c.ok(&["replace", "--validate=false", "-f", &f]).trim(),
        "configmap/cfg replaced"
    );
    cm["data"]["a"] = serde_json::json!("3");
    let f = c.file("cm.json", &cm.to_string());
    let err = c.fails(&["replace", "--validate=false", "-f", &f]);
    assert!(
        err.contains("Operation cannot be fulfilled on configmaps \"cfg\": the object has been modified; please apply your changes to the latest version and try again"),
        "{err}"
    );
    assert_eq!(c.json(&["get", "configmap", "cfg"])["data"]["a"], "2");
}

#[test]
fn services_get_cluster_ips_and_node_ports() {
    let c = start();
    assert_eq!(
        c.ok(&["create", "service", "nodeport", "web", "--tcp=80:8080"])
            .trim(),
        "service/web created"
    );
    let s = c.json(&["get", "svc", "web"]);
    let ip = s["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(
        ip.starts_with("10.9") && ip != "10.96.0.1" && ip != "10.96.0.10",
        "{ip}"
    );
    let np = s["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&np));
    assert_eq!(s["spec"]["ports"][0]["targetPort"], 8080);
    let table = c.ok(&["get", "svc", "web"]);
    assert!(
        table.contains(&format!("80:{np}/TCP")) && table.contains("NodePort"),
        "{table}"
    );
    let f = c.file("clash.yaml", &format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: clash\nspec:\n  type: NodePort\n  selector: {{app: x}}\n  ports:\n  - port: 80\n    nodePort: {np}\n"
    ));
    let err = c.fails(&["create", "--validate=false", "-f", &f]);
    assert!(err.contains("provided port is already allocated"), "{err}");
    let f = c.file("ip.yaml", &format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: ipclash\nspec:\n  clusterIP: {ip}\n  ports:\n  - port: 80\n"
    ));
    let err = c.fails(&["create", "--validate=false", "-f", &f]);
    assert!(err.contains("provided IP is already allocated"), "{err}");
}

const POD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"hw","labels":{"run":"hw"}},"spec":{"containers":[{"name":"hw","image":"minik/hello"}]}}"#;

#[test]
fn pods_bind_and_delete_gracefully() {
    let c = start();
    let f = c.file("pod.json", POD);
    c.ok(&["create", "--validate=false", "-f", &f]);
    let table = c.ok(&["get", "pods"]);
    assert!(table.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()[..4] == ["hw", "0/1", "Pending", "0"]), "{table}");
    let p = c.json(&["get", "pod", "hw"]);
    assert_eq!(p["spec"]["restartPolicy"], "Always");
    assert_eq!(p["status"]["qosClass"], "BestEffort");
    let b = c.file("binding.json", r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"hw"},"target":{"kind":"Node","name":"minik"}}"#);
    c.ok(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/pods/hw/binding",
        "-f",
        &b,
    ]);
    assert_eq!(c.json(&["get", "pod", "hw"])["spec"]["nodeName"], "minik");
    let err = c.fails(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/pods/hw/binding",
        "-f",
        &b,
    ]);
    assert!(err.contains("already assigned"), "{err}");
    // bound: graceful deletion keeps the pod (the kubelet would finish it)
    c.ok(&["delete", "pod", "hw", "--wait=false"]);
    let wide = c.ok(&["get", "pods", "-o", "wide"]);
    assert!(
        wide.contains("Terminating") && wide.contains("minik"),
        "{wide}"
    );
    let p = c.json(&["get", "pod", "hw"]);
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 30);
    c.ok(&["delete", "pod", "hw", "--grace-period=0", "--force"]);
    assert!(c.fails(&["get", "pod", "hw"]).contains("NotFound"));
}

#[test]
fn get_pods_watch_streams_table_rows() {
    watch_flow(false);
}

#[test]
fn get_pods_watch_over_http1_notices_disconnects() {
    watch_flow(true);
}

fn watch_flow(http1_only: bool) {
    let c = start();
    let mut cmd = c.cmd(&["get", "pods", "-w"]);
    if http1_only {
        // client-go's switch to keep kubectl on HTTP/1.1
        cmd.env("DISABLE_HTTP2", "true");
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    let f = c.file("pod.json", POD);
    c.ok(&["create", "--validate=false", "-f", &f]);
    c.ok(&["label", "pod", "hw", "tier=web"]);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline
        && seen
            .iter()
            .filter(|l: &&String| l.starts_with("hw "))
            .count()
            < 2
    {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(l);
        }
    }
    assert_eq!(
        c.server.active_watches(),
        1,
        "kubectl get -w holds one watch"
    );
    let _ = child.kill();
    let _ = child.wait();
    // the server notices the client is gone and ends the watch
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.server.active_watches() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        c.server.active_watches(),
        0,
        "the watch outlived its client"
    );
    let rows: Vec<&String> = seen.iter().filter(|l| l.starts_with("hw ")).collect();
    assert!(
        rows.len() >= 2,
        "expected ADDED and MODIFIED rows, got {seen:?}"
    );
    assert!(rows[0].contains("Pending"), "{seen:?}");
}

#[test]
fn namespaces_terminate_and_finalize() {
    let c = start();
    c.ok(&["create", "namespace", "team"]);
    c.ok(&["delete", "namespace", "team", "--wait=false"]);
    let ns = c.json(&["get", "namespace", "team"]);
    assert_eq!(ns["status"]["phase"], "Terminating");
    assert!(ns["metadata"]["deletionTimestamp"].is_string());
    let f = c.file(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: late\n  namespace: team\n",
    );
    let err = c.fails(&["create", "--validate=false", "-f", &f]);
    assert!(err.contains("because it is being terminated"), "{err}");
    // what the namespace controller does once the namespace is empty
    let mut fin = ns.clone();
    fin["spec"]["finalizers"] = serde_json::json!([]);
    let f = c.file("fin.json", &fin.to_string());
    c.ok(&[
        "replace",
        "--raw",
        "/api/v1/namespaces/team/finalize",
        "-f",
        &f,
    ]);
    assert!(c.fails(&["get", "namespace", "team"]).contains("NotFound"));
    let err = c.fails(&["delete", "namespace", "kube-system"]);
    assert!(err.contains("this namespace may not be deleted"), "{err}");
}

#[test]
fn requests_without_a_client_certificate_are_unauthorized() {
    let c = start();
    let cfg = std::fs::read_to_string(&c.kubeconfig).unwrap();
    let anon: String = cfg
        .lines()
        .filter(|l| !l.contains("client-certificate-data") && !l.contains("client-key-data"))
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .replace("  user:\n", "  user: {token: not-a-valid-token}\n");
    let f = c.file("anon-kubeconfig", &anon);
    let (ok, out, err) = c.run(&["--kubeconfig", &f, "get", "pods"]);
    assert!(!ok, "{out}");
    assert!(err.contains("You must be logged in to the server"), "{err}");
}

/// A kubelet stand-in on loopback: `/containerLogs/...` answers two lines
/// that echo the path it was asked for; `/exec/...` is a WebSocket
/// (`v5.channel.k8s.io`) that writes `ran: <command>` on stdout (channel 1)
/// and a Success status (channel 3), as the real kubelet does.
fn fake_kubelet() -> u16 {
    use axum::extract::ws::{Message, WebSocketUpgrade};
    serve_on_loopback(move |listener| async move {
        let exec = |ws: WebSocketUpgrade, uri: axum::http::Uri| async move {
            let query = uri.query().unwrap_or("").to_string();
            let path = uri.path().to_string();
            ws.protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"])
                .on_upgrade(move |mut socket| async move {
                    let cmd: Vec<String> = query
                        .split('&')
                        .filter_map(|kv| kv.strip_prefix("command="))
                        .map(String::from)
                        .collect();
                    let mut out = vec![1u8];
                    out.extend(format!("ran: {} at {path}\n", cmd.join(" ")).into_bytes());
                    let _ = socket.send(Message::Binary(out.into())).await;
                    let mut status = vec![3u8];
                    status.extend(br#"{"metadata":{},"status":"Success"}"#);
                    let _ = socket.send(Message::Binary(status.into())).await;
                    let _ = socket
                        .send(Message::Close(Some(axum::extract::ws::CloseFrame {
                            code: 1000,
                            reason: "".into(),
                        })))
                        .await;
                })
        };
        let app = axum::Router::new()
            .route("/exec/{ns}/{pod}/{container}", axum::routing::get(exec))
            .fallback(|uri: axum::http::Uri| async move {
                format!("hello from the kubelet\npath {uri}\n")
            });
        axum::serve(listener, app).await.unwrap();
    })
}

#[test]
fn logs_status_wait_describe_events_and_rollout() {
    let c = start();
    let port = fake_kubelet();
    let f = c.file("node.yaml", "apiVersion: v1\nkind: Node\nmetadata:\n  name: minik\n  labels: {node-role.kubernetes.io/control-plane: \"\"}\n");
    c.ok(&["create", "--validate=false", "-f", &f]);
    let status = format!(
        r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"127.0.0.1"}}],"daemonEndpoints":{{"kubeletEndpoint":{{"Port":{port}}}}},"conditions":[{{"type":"Ready","status":"True","reason":"KubeletReady"}}],"nodeInfo":{{"kubeletVersion":"v1.33.2"}}}}}}"#
    );
    c.ok(&[
        "patch",
        "node",
        "minik",
        "--subresource=status",
        "--type=merge",
        "-p",
        &status,
    ]);
    let nodes = c.ok(&["get", "nodes"]);
    let row: Vec<&str> = nodes.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        (row[0], row[1], row[2], row[4]),
        ("minik", "Ready", "control-plane", "v1.33.2"),
        "{nodes}"
    );

    assert_eq!(
        c.ok(&["run", "hw", "--image=minik/hello"]).trim(),
        "pod/hw created"
    );
    let b = c.file("binding.json", r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"hw"},"target":{"kind":"Node","name":"minik"}}"#);
    c.ok(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/pods/hw/binding",
        "-f",
        &b,
    ]);
    let logs = c.ok(&["logs", "hw", "--tail=3"]);
    assert_eq!(
        logs,
        "hello from the kubelet\npath /containerLogs/default/hw/hw?tailLines=3\n"
    );
    let follow = c.ok(&["logs", "-f", "hw"]);
    assert!(
        follow.contains("path /containerLogs/default/hw/hw?follow=true"),
        "{follow}"
    );
    let out = c.ok(&["exec", "hw", "--", "echo", "hi"]);
    assert_eq!(out, "ran: echo hi at /exec/default/hw/hw\n");

    c.ok(&["patch", "pod", "hw", "--subresource=status", "--type=merge", "-p",
        r#"{"status":{"phase":"Running","hostIP":"127.0.0.1","podIP":"10.244.0.7","podIPs":[{"ip":"10.244.0.7"}],"conditions":[{"type":"Ready","status":"True"}],"containerStatuses":[{"name":"hw","image":"minik/hello","imageID":"","ready":true,"restartCount":0,"started":true,"state":{"running":{"startedAt":"2026-01-01T00:00:00Z"}}}]}}"#]);
    assert_eq!(
        c.ok(&["wait", "--for=condition=Ready", "pod/hw", "--timeout=20s"])
            .trim(),
        "pod/hw condition met"
    );
    let wide = c.ok(&["get", "pods", "-o", "wide"]);
    let row: Vec<&str> = wide.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        (row[1], row[2], row[5], row[6]),
        ("1/1", "Running", "10.244.0.7", "minik"),
        "{wide}"
    );

    let uid = c.json(&["get", "pod", "hw"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let ev = c.file("ev.yaml", &format!(
        "apiVersion: v1\nkind: Event\nmetadata:\n  name: hw.1\ninvolvedObject:\n  kind: Pod\n  name: hw\n  namespace: default\n  uid: {uid}\nreason: Scheduled\nmessage: Successfully assigned default/hw to minik\ntype: Normal\nsource:\n  component: default-scheduler\ncount: 1\nfirstTimestamp: \"2026-01-01T00:00:00Z\"\nlastTimestamp: \"2026-01-01T00:00:00Z\"\n"
    ));
    c.ok(&["create", "--validate=false", "-f", &ev]);
    let events = c.ok(&["get", "events"]);
    assert!(
        events.starts_with("LAST SEEN")
            && events.contains("pod/hw")
            && events.contains("Scheduled"),
        "{events}"
    );
    let describe = c.ok(&["describe", "pod", "hw"]);
    assert!(
        describe.contains("Node:") && describe.contains("minik/127.0.0.1"),
        "{describe}"
    );
    assert!(
        describe.contains("kube-api-access-")
            && describe.contains("Successfully assigned default/hw to minik"),
        "{describe}"
    );

    c.ok(&["create", "deployment", "hello", "--image=minik/hello"]);
    c.ok(&["patch", "deployment", "hello", "--subresource=status", "--type=merge", "-p",
        r#"{"status":{"observedGeneration":1,"replicas":1,"updatedReplicas":1,"readyReplicas":1,"availableReplicas":1}}"#]);
    let out = c.ok(&["rollout", "status", "deployment/hello", "--timeout=20s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let node = c.ok(&["describe", "node", "minik"]);
    assert!(
        node.contains("Name:               minik")
            && node.contains("default                     hw"),
        "{node}"
    );
    let ns = c.ok(&["describe", "namespace", "default"]);
    assert!(
        ns.lines()
            .any(|l| l.starts_with("Status:") && l.ends_with("Active")),
        "{ns}"
    );
    let d = c.ok(&["describe", "deployment", "hello"]);
    assert!(d.contains("Replicas:") && d.contains("minik/hello"), "{d}");
    let all = c.ok(&["get", "all"]);
    assert!(
        all.contains("pod/hw")
            && all.contains("deployment.apps/hello")
            && all.contains("service/kubernetes"),
        "{all}"
    );
}

#[test]
fn auth_jobs_generators_and_sorting() {
    let c = start();
    assert_eq!(c.ok(&["auth", "can-i", "create", "pods"]).trim(), "yes");
    let who = c.ok(&["auth", "whoami"]);
    assert!(
        who.contains("minik-admin") && who.contains("system:masters"),
        "{who}"
    );
    assert_eq!(
        c.ok(&["create", "job", "pi", "--image=minik/hello"]).trim(),
        "job.batch/pi created"
    );
    let j = c.json(&["get", "job", "pi"]);
    let uid = j["metadata"]["uid"].as_str().unwrap();
    assert_eq!(
        j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        uid
    );
    let jobs = c.ok(&["get", "jobs"]);
    let header: Vec<&str> = jobs.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        vec!["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    );
    assert!(jobs.contains("Running") && jobs.contains("0/1"), "{jobs}");
    assert_eq!(
        c.ok(&[
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=user=admin"
        ])
        .trim(),
        "secret/creds created"
    );
    assert_eq!(
        c.json(&["get", "secret", "creds"])["data"]["user"],
        "YWRtaW4="
    );
    let secrets = c.ok(&["get", "secrets"]);
    let row: Vec<&str> = secrets.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], &["creds", "Opaque", "1"], "{secrets}");
    assert_eq!(
        c.ok(&["create", "serviceaccount", "robot"]).trim(),
        "serviceaccount/robot created"
    );
    // sorting asks for whole objects in the Table rows (includeObject=Object)
    for n in ["zeta", "alpha", "mid"] {
        c.ok(&["create", "configmap", n, "--from-literal=k=v"]);
    }
    let sorted = c.ok(&[
        "get",
        "configmaps",
        "--sort-by=.metadata.name",
        "-o",
        "name",
    ]);
    assert_eq!(
        sorted
            .lines()
            .filter(|l| !l.contains("kube-root-ca"))
            .collect::<Vec<_>>(),
        vec!["configmap/alpha", "configmap/mid", "configmap/zeta"]
    );
    // chunked lists follow `continue` tokens, also in Tables
    let chunked = c.ok(&["get", "configmaps", "--chunk-size=1", "-o", "name"]);
    assert_eq!(
        chunked
            .lines()
            .filter(|l| !l.contains("kube-root-ca"))
            .count(),
        3,
        "{chunked}"
    );
    let chunked = c.ok(&["get", "configmaps", "--chunk-size=2"]);
    assert_eq!(
        chunked
            .lines()
            .filter(|l| l.starts_with("alpha") || l.starts_with("mid") || l.starts_with("zeta"))
            .count(),
        3,
        "{chunked}"
    );
    let table = c.ok(&["get", "configmaps", "--sort-by=.metadata.name"]);
    let names: Vec<&str> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .filter(|n| *n != "kube-root-ca.crt")
        .collect();
    assert_eq!(names, vec!["alpha", "mid", "zeta"], "{table}");
    // more generators (protobuf bodies) and their tables
    for (args, want) in [
        (
            vec![
                "create",
                "cronjob",
                "tick",
                "--image=minik/hello",
                "--schedule=*/5 * * * *",
            ],
            "cronjob.batch/tick created",
        ),
        (
            vec!["create", "ingress", "web", "--rule=example.com/=web:80"],
            "ingress.networking.k8s.io/web created",
        ),
        (
            vec![
                "create",
                "poddisruptionbudget",
                "web",
                "--selector=app=web",
                "--min-available=1",
            ],
            "poddisruptionbudget.policy/web created",
        ),
        (
            vec!["create", "role", "reader", "--verb=get", "--resource=pods"],
            "role.rbac.authorization.k8s.io/reader created",
        ),
        (
            vec!["create", "priorityclass", "high", "--value=1000"],
            "priorityclass.scheduling.k8s.io/high created",
        ),
        (
            vec!["create", "quota", "q", "--hard=pods=10"],
            "resourcequota/q created",
        ),
    ] {
        assert_eq!(c.ok(&args).trim(), want);
    }
    let cj = c.ok(&["get", "cronjobs"]);
    assert!(
        cj.starts_with("NAME") && cj.contains("*/5 * * * *") && cj.contains("False"),
        "{cj}"
    );
    let ing = c.ok(&["get", "ingress"]);
    assert!(ing.contains("example.com") && ing.contains("80"), "{ing}");
    let pdb = c.ok(&["get", "pdb"]);
    assert!(
        pdb.contains("MIN AVAILABLE") && pdb.lines().nth(1).unwrap().contains(" 1 "),
        "{pdb}"
    );
    let pc = c.ok(&["get", "priorityclass", "high"]);
    assert!(pc.contains("1000"), "{pc}");
}

#[test]
fn service_account_tokens_authenticate_and_root_ca_is_published() {
    let c = start();
    c.ok(&["create", "serviceaccount", "robot"]);
    let token = c
        .ok(&["create", "token", "robot", "--duration=1h"])
        .trim()
        .to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let f = c.token_kubeconfig("sa-kubeconfig", &token);
    let who = c.ok(&["--kubeconfig", &f, "auth", "whoami"]);
    assert!(who.contains("system:serviceaccount:default:robot"), "{who}");
    // RBAC: nothing is granted until a binding says so
    let err = c.fails(&["--kubeconfig", &f, "get", "pods"]);
    assert!(
        err.contains("pods is forbidden: User \"system:serviceaccount:default:robot\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""),
        "{err}"
    );
    assert_eq!(
        c.run(&["--kubeconfig", &f, "auth", "can-i", "list", "pods"])
            .1
            .trim(),
        "no"
    );
    c.ok(&[
        "create",
        "rolebinding",
        "robot-view",
        "--clusterrole=view",
        "--serviceaccount=default:robot",
    ]);
    assert!(c.ok(&["--kubeconfig", &f, "get", "pods"]).is_empty());
    assert_eq!(
        c.ok(&["--kubeconfig", &f, "auth", "can-i", "list", "pods"])
            .trim(),
        "yes"
    );
    assert_eq!(
        c.run(&["--kubeconfig", &f, "auth", "can-i", "delete", "pods"])
            .1
            .trim(),
        "no"
    );
    let err = c.fails(&["--kubeconfig", &f, "get", "secrets"]);
    assert!(
        err.contains("Forbidden") || err.contains("forbidden"),
        "{err}"
    );
    let err = c.fails(&["--kubeconfig", &f, "get", "pods", "-n", "kube-system"]);
    assert!(err.contains("in the namespace \"kube-system\""), "{err}");
    let roles = c.ok(&["get", "clusterroles"]);
    for r in ["cluster-admin", "admin", "edit", "view", "system:discovery"] {
        assert!(
            roles.lines().any(|l| l.starts_with(&format!("{r} "))),
            "{r} missing:\n{roles}"
        );
    }
    // a token for another audience is not an API credential
    let other = c
        .ok(&["create", "token", "robot", "--audience=vault"])
        .trim()
        .to_string();
    let f2 = c.token_kubeconfig("vault-kubeconfig", &other);
    let (ok, _, err) = c.run(&["--kubeconfig", &f2, "get", "pods"]);
    assert!(!ok && err.contains("You must be logged in"), "{err}");
    // deleting the service account revokes its tokens
    c.ok(&["delete", "serviceaccount", "robot"]);
    let (ok, _, err) = c.run(&["--kubeconfig", &f, "get", "pods"]);
    assert!(!ok && err.contains("You must be logged in"), "{err}");
    let err = c.fails(&["create", "token", "ghost"]);
    assert!(err.contains("serviceaccounts \"ghost\" not found"), "{err}");

    // the CA is published in every namespace
    c.ok(&["create", "namespace", "team"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out, _) = c.run(&[
            "get",
            "configmap",
            "kube-root-ca.crt",
            "-n",
            "team",
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ]);
        if ok && out.contains("BEGIN CERTIFICATE") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "kube-root-ca.crt was not published in team"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The real kubelet port-forward handler (`minik_kubelet::portforward`) on
/// loopback, for a hostNetwork pod `default/pf` (no netns: the pod's
/// loopback is the host's). Returns the kubelet port.
fn portforward_kubelet(pods_dir: PathBuf) -> u16 {
    use minik_kubelet::portforward::{portforward_handler, PortForwardState};
    let registry = minik_kubelet::logs::LogRegistry::default();
    registry.set_pod("default", "pf", Some("pf-uid"));
    let sb = minik_kubelet::sandbox::Sandbox {
        uid: "pf-uid".into(),
        netns: None,
        veth: None,
        ip: "127.0.0.1".into(),
        dir: pods_dir.join("pf-uid"),
    };
    std::fs::create_dir_all(&sb.dir).unwrap();
    minik_kubelet::sandbox::write_json(&sb.dir.join("sandbox.json"), &sb).unwrap();
    serve_on_loopback(move |listener| async move {
        let app = axum::Router::new()
            .route(
                "/portForward/{namespace}/{pod}",
                axum::routing::get(portforward_handler).post(portforward_handler),
            )
            .with_state(PortForwardState { pods_dir, registry });
        axum::serve(listener, app).await.unwrap();
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `kubectl port-forward` end to end: kubectl (SPDY/3.1 in WebSocket) →
/// the apiserver's upgrade proxy → the kubelet's SPDY session → a TCP
/// server; two connections in a row, and an error for a closed port.
#[test]
fn port_forward_through_the_kubelet() {
    use std::io::{Read, Write};
    let c = start();
    // The "container": answers each connection with what it read.
    let app = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let app_port = app.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in app.incoming() {
            let Ok(mut s) = s else { break };
            // The request may arrive in several pieces: read up to the
            // blank line that ends it.
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&req)
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            let _ = write!(s, "HTTP/1.0 200 OK\r\n\r\nhello via port-forward: {line}\n");
        }
    });
    let kport = portforward_kubelet(c.dir.path().join("pods"));
    let f = c.file(
        "pfnode.yaml",
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: minik\n",
    );
    c.ok(&["create", "--validate=false", "-f", &f]);
    let status = format!(
        r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"127.0.0.1"}}],"daemonEndpoints":{{"kubeletEndpoint":{{"Port":{kport}}}}},"conditions":[{{"type":"Ready","status":"True"}}]}}}}"#
    );
    c.ok(&[
        "patch",
        "node",
        "minik",
        "--subresource=status",
        "--type=merge",
        "-p",
        &status,
    ]);
    c.ok(&["run", "pf", "--image=minik/hello"]);
    let b = c.file("pfbinding.json", r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"pf"},"target":{"kind":"Node","name":"minik"}}"#);
    c.ok(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/pods/pf/binding",
        "-f",
        &b,
    ]);
    c.ok(&[
        "patch",
        "pod",
        "pf",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running","hostIP":"127.0.0.1","podIP":"127.0.0.1"}}"#,
    ]);

    let local = free_port();
    let closed = free_port();
    let local_closed = free_port();
    let mut child = c
        .cmd(&[
            "port-forward",
            "pod/pf",
            &format!("{local}:{app_port}"),
            &format!("{local_closed}:{closed}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl on PATH");
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.contains(&format!("-> {app_port}")) {
        let mut b = [0u8; 256];
        let n = stdout.read(&mut b).unwrap_or(0);
        if n == 0 || Instant::now() > deadline {
            let _ = child.kill();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("kubectl port-forward did not start: {seen}\n{err}");
        }
        seen.push_str(&String::from_utf8_lossy(&b[..n]));
    }
    let fetch = |path: &str| -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", local)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
            .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    let one = fetch("/one");
    let two = fetch("/two");
    // Nothing listens on `closed`: the kubelet's message reaches kubectl.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", local_closed)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    assert!(
        err.contains(&format!(
            "error forwarding port {closed} to pod pf, uid pf-uid"
        )) && err.contains("is the container listening on that port?"),
        "{err}"
    );
    assert!(
        one.ends_with("hello via port-forward: GET /one HTTP/1.0\n"),
        "{one:?}"
    );
    assert!(
        two.ends_with("hello via port-forward: GET /two HTTP/1.0\n"),
        "{two:?}"
    );
}

/// `kubectl attach` end to end through the real kubelet attach handler
/// (`minik_kubelet::attach`): a "container" whose init process is this test
/// process (so it counts as running) writes CRI log lines; kubectl shows
/// what is written after it attached, stdout and stderr apart, and exits 0
/// when the log stops being written (the container exited).
#[test]
fn attach_follows_container_output() {
    use std::io::{Read, Write};
    let c = start();
    let pods_dir = c.dir.path().join("attach-pods");
    let cdir = pods_dir.join("at-uid").join("containers").join("at");
    std::fs::create_dir_all(&cdir).unwrap();
    minik_kubelet::sandbox::write_json(
        &cdir.join("container.json"),
        &minik_kubelet::sandbox::ContainerFile {
            id: "at-0".into(),
            pid: std::process::id() as i32,
        },
    )
    .unwrap();
    let log = cdir.join("0.log");
    let line = |stream: &str, s: &str| {
        minik_kubelet::logs::format_line(chrono::Utc::now(), stream, false, s)
    };
    std::fs::write(&log, line("stdout", "before attach")).unwrap();
    let registry = minik_kubelet::logs::LogRegistry::default();
    registry.set_pod("default", "at", Some("at-uid"));
    registry.set_active(&log, true);
    let state = minik_kubelet::exec::ExecState {
        pods_dir: pods_dir.clone(),
        registry: registry.clone(),
        runtime: minik_kubelet::runtime::Runtime::new(Path::new("runc"), &pods_dir),
    };
    let kport = serve_on_loopback(move |listener| async move {
        let app = axum::Router::new()
            .route(
                "/attach/{namespace}/{pod}/{container}",
                axum::routing::get(minik_kubelet::attach::attach_handler),
            )
            .with_state(state);
        axum::serve(listener, app).await.unwrap();
    });
    let f = c.file(
        "atnode.yaml",
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: minik\n",
    );
    c.ok(&["create", "--validate=false", "-f", &f]);
    let status = format!(
        r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"127.0.0.1"}}],"daemonEndpoints":{{"kubeletEndpoint":{{"Port":{kport}}}}},"conditions":[{{"type":"Ready","status":"True"}}]}}}}"#
    );
    c.ok(&[
        "patch",
        "node",
        "minik",
        "--subresource=status",
        "--type=merge",
        "-p",
        &status,
    ]);
    c.ok(&["run", "at", "--image=minik/busybox"]);
    let b = c.file("atbinding.json", r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"at"},"target":{"kind":"Node","name":"minik"}}"#);
    c.ok(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/pods/at/binding",
        "-f",
        &b,
    ]);
    c.ok(&["patch", "pod", "at", "--subresource=status", "--type=merge", "-p",
        r#"{"status":{"phase":"Running","containerStatuses":[{"name":"at","image":"minik/busybox","imageID":"","ready":true,"restartCount":0,"started":true,"state":{"running":{"startedAt":"2026-01-01T00:00:00Z"}}}]}}"#]);

    let mut child = c
        .cmd(&["attach", "at"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl on PATH");
    // Give kubectl time to attach, then "the container" writes and exits.
    std::thread::sleep(Duration::from_secs(3));
    {
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(line("stdout", "hello from attach").as_bytes())
            .unwrap();
        f.write_all(line("stderr", "warning on stderr").as_bytes())
            .unwrap();
    }
    std::thread::sleep(Duration::from_secs(1));
    registry.set_active(&log, false);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kubectl attach did not end after the container exited");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{out}\n{err}");
    assert_eq!(out, "hello from attach\n", "{err}");
    assert!(err.contains("warning on stderr\n"), "{err}");
}
