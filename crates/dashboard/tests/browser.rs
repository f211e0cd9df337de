//! End-to-end: a real minik API server over TLS, the dashboard in front of
//! it with the admin client certificate, and real headless Chromium driven
//! over the DevTools protocol. There is no controller or kubelet here, so
//! the test writes objects and their status itself through the API, as the
//! controllers and the kubelet would. Screenshots of each main page go to
//! target/dashboard-screenshots/.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// The objects a small cluster has: a node, a healthy Deployment with its
/// ReplicaSet and pods, broken pods, Services, a ConfigMap, a Secret, events.
async fn seed(c: &Cluster, kubelet_port: u16) {
    c.create("/api/v1/namespaces", json!({"metadata": {"name": "shop"}}))
        .await;
    c.create(
        "/api/v1/nodes",
        json!({"metadata": {"name": "minik", "labels": {"kubernetes.io/hostname": "minik"}}}),
    )
    .await;
    c.patch(
        "/api/v1/nodes/minik/status",
        json!({"status": {
            "capacity": {"cpu": "2", "memory": "4026532Ki", "pods": "110"},
            "allocatable": {"cpu": "2", "memory": "3924132Ki", "pods": "110"},
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": "minik"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
            "conditions": [
                {"type": "MemoryPressure", "status": "False"}, {"type": "DiskPressure", "status": "False"},
                {"type": "PIDPressure", "status": "False"},
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}],
            "nodeInfo": {"kubeletVersion": "v1.33.2", "osImage": "Debian GNU/Linux 12 (bookworm)",
                "containerRuntimeVersion": "runc://1.1.5", "kernelVersion": "6.1.0", "operatingSystem": "linux",
                "architecture": "amd64", "machineID": "", "systemUUID": "", "bootID": "", "kubeProxyVersion": ""}
        }}),
    )
    .await;

    let labels = json!({"app": "hello"});
    let d = c
        .create(
            "/apis/apps/v1/namespaces/default/deployments",
            json!({"metadata": {"name": "hello", "labels": labels},
               "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                   "spec": {"containers": [{"name": "web", "image": "docker.io/library/nginx:1.27"}]}}}}),
        )
        .await;
    let duid = d["metadata"]["uid"].as_str().unwrap().to_string();
    c.patch(
        "/apis/apps/v1/namespaces/default/deployments/hello/status",
        json!({"status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2,
            "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."}]}}),
    )
    .await;
    let rs = c
        .create(
            "/apis/apps/v1/namespaces/default/replicasets",
            json!({"metadata": {"name": "hello-5d8f7c9b4", "labels": {"app": "hello", "pod-template-hash": "5d8f7c9b4"},
                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "hello", "uid": duid, "controller": true}]},
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "hello", "pod-template-hash": "5d8f7c9b4"}},
                 "template": {"metadata": {"labels": {"app": "hello", "pod-template-hash": "5d8f7c9b4"}},
                   "spec": {"containers": [{"name": "web", "image": "docker.io/library/nginx:1.27"}]}}}}),
        )
        .await;
    let rsuid = rs["metadata"]["uid"].as_str().unwrap().to_string();
    c.patch(
        "/apis/apps/v1/namespaces/default/replicasets/hello-5d8f7c9b4/status",
        json!({"status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2, "fullyLabeledReplicas": 2}}),
    )
    .await;
    let owner = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "hello-5d8f7c9b4", "uid": rsuid, "controller": true});
    for (name, ip) in [
        ("hello-5d8f7c9b4-x7k2p", "10.244.0.5"),
        ("hello-5d8f7c9b4-q9w4m", "10.244.0.6"),
    ] {
        c.create(
            "/api/v1/namespaces/default/pods",
            pod(
                "default",
                name,
                json!({"app": "hello", "pod-template-hash": "5d8f7c9b4"}),
                Some(owner.clone()),
                Some("minik"),
            ),
        )
        .await;
        c.patch(
            &format!("/api/v1/namespaces/default/pods/{name}/status"),
            running_status(ip),
        )
        .await;
    }
    c.create(
        "/api/v1/namespaces/shop/pods",
        pod(
            "shop",
            "api-crashy",
            json!({"app": "api"}),
            None,
            Some("minik"),
        ),
    )
    .await;
    c.patch(
        "/api/v1/namespaces/shop/pods/api-crashy/status",
        waiting_status(
            "CrashLoopBackOff",
            "back-off 5m0s restarting failed container=web pod=api-crashy_shop",
            7,
        ),
    )
    .await;
    c.create(
        "/api/v1/namespaces/shop/pods",
        pod(
            "shop",
            "web-typo",
            json!({"app": "web"}),
            None,
            Some("minik"),
        ),
    )
    .await;
    c.patch(
        "/api/v1/namespaces/shop/pods/web-typo/status",
        waiting_status(
            "ImagePullBackOff",
            "Back-off pulling image \"docker.io/library/ngnix:latest\"",
            0,
        ),
    )
    .await;
    c.create(
        "/api/v1/namespaces/shop/pods",
        pod("shop", "db-0", json!({"app": "db"}), None, None),
    )
    .await;

    c.create(
        "/api/v1/namespaces/default/services",
        json!({"metadata": {"name": "hello"}, "spec": {"type": "NodePort", "selector": labels,
            "ports": [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}]}}),
    )
    .await;
    c.create(
        "/api/v1/namespaces/shop/services",
        json!({"metadata": {"name": "db"}, "spec": {"selector": {"app": "db"}, "ports": [{"port": 5432, "protocol": "TCP"}]}}),
    )
    .await;
    c.create(
        "/api/v1/namespaces/default/configmaps",
        json!({"metadata": {"name": "hello-config"}, "data": {"greeting": "hello, world",
            "nginx.conf": "server {\n  listen 80;\n  location / { return 200 'hi'; }\n}\n"}}),
    )
    .await;
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    c.create(
        "/api/v1/namespaces/default/secrets",
        json!({"metadata": {"name": "hello-secret"}, "type": "Opaque",
            "data": {"password": b64("s3cr3t-p@ss"), "username": b64("admin")}}),
    )
    .await;
    let ev = |name: &str, ty: &str, reason: &str, msg: &str, obj: Value, ago: i64| {
        json!({"metadata": {"name": name}, "type": ty, "reason": reason, "message": msg, "involvedObject": obj,
            "firstTimestamp": rfc3339(-ago - 60), "lastTimestamp": rfc3339(-ago), "count": 1,
            "source": {"component": "kubelet", "host": "minik"}})
    };
    c.create(
        "/api/v1/namespaces/default/events",
        ev("hello.1", "Normal", "ScalingReplicaSet", "Scaled up replica set hello-5d8f7c9b4 to 2",
            json!({"kind": "Deployment", "namespace": "default", "name": "hello", "apiVersion": "apps/v1"}), 300),
    )
    .await;
    c.create(
        "/api/v1/namespaces/shop/events",
        ev(
            "api-crashy.1",
            "Warning",
            "BackOff",
            "Back-off restarting failed container web in pod api-crashy_shop",
            json!({"kind": "Pod", "namespace": "shop", "name": "api-crashy", "apiVersion": "v1"}),
            20,
        ),
    )
    .await;
    c.create(
        "/api/v1/namespaces/shop/events",
        ev(
            "web-typo.1",
            "Warning",
            "Failed",
            "Failed to pull image \"docker.io/library/ngnix:latest\": not found",
            json!({"kind": "Pod", "namespace": "shop", "name": "web-typo", "apiVersion": "v1"}),
            90,
        ),
    )
    .await;
}

async fn no_page_hscroll(ch: &Chrome, what: &str) {
    let v = ch
        .eval("[document.documentElement.scrollWidth, window.innerWidth]")
        .await;
    let (sw, iw) = (v[0].as_f64().unwrap(), v[1].as_f64().unwrap());
    assert!(
        sw <= iw,
        "{what}: the page scrolls horizontally ({sw} > {iw})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_in_real_chromium() {
    let c = Cluster::start().await;
    let kubelet = KubeletLogs::start().await;
    seed(&c, kubelet.port).await;
    // the hello pod has written two lines
    let (_, p) = c
        .get("/api/v1/namespaces/default/pods/hello-5d8f7c9b4-x7k2p")
        .await;
    let log = kubelet.log_file(
        "default",
        "hello-5d8f7c9b4-x7k2p",
        p["metadata"]["uid"].as_str().unwrap(),
        "web",
    );
    let (_, p) = c.get("/api/v1/namespaces/shop/pods/api-crashy").await;
    kubelet.waiting_pod(
        "shop",
        "api-crashy",
        p["metadata"]["uid"].as_str().unwrap(),
        "web",
    );
    KubeletLogs::append(&log, "hello from minik: listening on :80");
    KubeletLogs::append(&log, "GET / 200 612 bytes");
    let ch = Chrome::launch(1280, 800).await;
    let url = &c.dashboard;

    // --- overview: problems first, node capacity, counts
    ch.navigate(&format!("{url}/#/")).await;
    ch.wait_testid("problem-row-shop-api-crashy").await;
    ch.wait_testid("node-card-minik").await;
    let problems = ch.text("problems").await;
    assert!(problems.contains("CrashLoopBackOff"), "{problems}");
    assert!(problems.contains("ImagePullBackOff"), "{problems}");
    assert!(
        problems.contains("not scheduled to a node yet"),
        "{problems}"
    );
    assert!(
        problems.contains("back-off 5m0s restarting failed container"),
        "{problems}"
    );
    assert!(
        !problems.contains("hello-5d8f7c9b4-x7k2p"),
        "healthy pods are not problems: {problems}"
    );
    let node = ch.text("node-card-minik").await;
    assert!(node.contains("Ready") && node.contains("v1.33.2"), "{node}");
    // 4 pods with 100m each on the node (db-0 is unscheduled)
    assert!(
        node.contains("0.4 / 2"),
        "cpu requests of the node's pods: {node}"
    );
    assert!(ch.text("count-pods").await.contains('5'));
    ch.wait_for(
        "document.querySelector('.conn').classList.contains('live')",
        T,
    )
    .await;
    ch.screenshot("overview").await;

    // --- deployments: the one the test created is listed
    ch.click("nav-deployments").await;
    ch.wait_testid("deployment-row-default-hello").await;
    assert!(ch
        .text("deployment-ready-default-hello")
        .await
        .contains("2/2"));
    no_page_hscroll(&ch, "deployments at 1280x800").await;
    ch.screenshot("deployments").await;

    // --- scale to 3 through the UI → spec.replicas in the API, and the list follows
    ch.type_into("scale-input-default-hello", "3").await;
    ch.click("scale-btn-default-hello").await;
    let mut replicas = 0;
    for _ in 0..200 {
        let (_, d) = c
            .get("/apis/apps/v1/namespaces/default/deployments/hello")
            .await;
        replicas = d["spec"]["replicas"].as_i64().unwrap_or(0);
        if replicas == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(replicas, 3, "scaling through the UI did not reach the API");
    ch.wait_for(
        "document.querySelector('[data-testid=\"deployment-ready-default-hello\"]').innerText.includes('2/3')",
        T,
    )
    .await;

    // --- restart a rollout: the template annotation is set
    ch.click("restart-default-hello").await;
    let mut restarted = Value::Null;
    for _ in 0..200 {
        let (_, d) = c
            .get("/apis/apps/v1/namespaces/default/deployments/hello")
            .await;
        restarted = d["spec"]["template"]["metadata"]["annotations"]
            ["kubectl.kubernetes.io/restartedAt"]
            .clone();
        if restarted.is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(restarted.is_string(), "restart did not patch the template");

    // --- deployment detail: its pods and ReplicaSet
    ch.click("deployment-row-default-hello").await;
    ch.wait_testid("deployment-detail").await;
    ch.wait_testid("pod-row-default-hello-5d8f7c9b4-x7k2p")
        .await;
    ch.wait_testid("replicaset-row-default-hello-5d8f7c9b4")
        .await;
    ch.screenshot("deployment-detail").await;

    // --- pods: a pod created through the API appears without a reload
    ch.navigate(&format!("{url}/#/pods")).await;
    ch.wait_testid("pod-row-default-hello-5d8f7c9b4-x7k2p")
        .await;
    ch.eval("window.__reloaded = 'no'").await;
    assert_eq!(
        ch.text("pod-status-shop-api-crashy").await,
        "CrashLoopBackOff"
    );
    let cls = ch
        .eval("document.querySelector('[data-testid=\"pod-status-shop-api-crashy\"]').className")
        .await;
    assert!(cls.as_str().unwrap().contains("err"), "{cls}");
    let cls = ch
        .eval("document.querySelector('[data-testid=\"pod-status-default-hello-5d8f7c9b4-x7k2p\"]').className")
        .await;
    assert!(cls.as_str().unwrap().contains("ok"), "{cls}");
    ch.screenshot("pods").await;
    ch.eval(
        "window.__seen = 0; window.__running = 0; new MutationObserver(() => {
           const r = document.querySelector('[data-testid=\"pod-status-default-latency-pod\"]');
           if (r && !window.__seen) window.__seen = Date.now();
           if (r && r.innerText === 'Running' && !window.__running) window.__running = Date.now();
         }).observe(document.body, {childList: true, subtree: true, characterData: true})",
    )
    .await;
    let t0 = now_ms();
    c.create(
        "/api/v1/namespaces/default/pods",
        pod(
            "default",
            "latency-pod",
            json!({"app": "latency"}),
            None,
            None,
        ),
    )
    .await;
    ch.wait_for("window.__seen > 0", T).await;
    let seen = ch.eval("window.__seen").await.as_u64().unwrap();
    let t1 = now_ms();
    c.patch(
        "/api/v1/namespaces/default/pods/latency-pod/status",
        running_status("10.244.0.42"),
    )
    .await;
    ch.wait_for("window.__running > 0", T).await;
    let running = ch.eval("window.__running").await.as_u64().unwrap();
    assert_eq!(
        ch.eval("window.__reloaded").await,
        json!("no"),
        "the page reloaded"
    );
    println!(
        "watch → screen: pod created → row shown {} ms; status changed → badge updated {} ms",
        seen.saturating_sub(t0),
        running.saturating_sub(t1)
    );

    // --- a watch that ends is resumed from its resourceVersion ...
    ch.wait_for("window.__minik.inf.pods.live", T).await;
    let lists = ch.eval("window.__minik.lists").await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // a watch that ends at once is re-listed
    ch.eval("window.__minik.inf.pods.ws.close()").await;
    ch.wait_for("window.__minik.inf.pods.live", T).await;
    c.create(
        "/api/v1/namespaces/default/pods",
        pod(
            "default",
            "resumed-pod",
            json!({"app": "resume"}),
            None,
            None,
        ),
    )
    .await;
    ch.wait_testid("pod-row-default-resumed-pod").await;
    assert_eq!(
        ch.eval("window.__minik.lists").await,
        lists,
        "resumed without a re-list"
    );
    // ... and one whose resourceVersion was compacted away (410 Gone) is re-listed
    let old_rv = ch.eval("window.__minik.inf.pods.rv").await;
    for i in 0..3 {
        c.create(
            "/api/v1/namespaces/default/configmaps",
            json!({"metadata": {"name": format!("churn-{i}")}}),
        )
        .await;
    }
    c.store.compact(c.store.revision()).await.unwrap();
    ch.eval(&format!(
        "window.__minik.inf.pods.rv = {old_rv}; window.__minik.inf.pods.ws.close()"
    ))
    .await;
    ch.wait_for(&format!("window.__minik.lists > {lists}"), T)
        .await;
    ch.wait_for("window.__minik.inf.pods.live", T).await;
    c.create(
        "/api/v1/namespaces/default/pods",
        pod("default", "after-410", json!({"app": "resume"}), None, None),
    )
    .await;
    ch.wait_testid("pod-row-default-after-410").await;

    // --- delete through the UI, with confirmation (cancel first)
    ch.click("delete-pod-default-latency-pod").await;
    ch.wait_testid("confirm-dialog").await;
    ch.click("confirm-cancel").await;
    ch.wait_for(
        "!document.querySelector('[data-testid=\"confirm-dialog\"]')",
        T,
    )
    .await;
    assert_eq!(
        c.get("/api/v1/namespaces/default/pods/latency-pod").await.0,
        200
    );
    ch.click("delete-pod-default-latency-pod").await;
    ch.wait_testid("confirm-dialog").await;
    assert!(ch.text("confirm-dialog").await.contains("Delete Pod"));
    ch.click("confirm-ok").await;
    let mut code = 0;
    for _ in 0..200 {
        code = c.get("/api/v1/namespaces/default/pods/latency-pod").await.0;
        if code == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(code, 404, "the pod was not deleted");
    ch.wait_for(
        "!document.querySelector('[data-testid=\"pod-row-default-latency-pod\"]')",
        T,
    )
    .await;
    // the dialog closes when the DELETE returns (the watch may be faster)
    ch.wait_for(
        "!document.querySelector('[data-testid=\"modal-overlay\"]')",
        T,
    )
    .await;

    // --- click into a running pod: its log, live (through the apiserver's
    // proxy to the kubelet's log endpoint)
    ch.click("pod-row-default-hello-5d8f7c9b4-x7k2p").await;
    ch.wait_testid("pod-detail").await;
    ch.wait_for(
        "document.querySelector('[data-testid=\"log-view\"]').innerText.includes('hello from minik: listening on :80')",
        T,
    )
    .await;
    let t0 = std::time::Instant::now();
    KubeletLogs::append(&log, "GET /healthz 200 2 bytes");
    ch.wait_for(
        "document.querySelector('[data-testid=\"log-view\"]').innerText.includes('GET /healthz 200')",
        T,
    )
    .await;
    println!(
        "log line written → on screen: {} ms (the kubelet polls the file every 200 ms)",
        t0.elapsed().as_millis()
    );
    assert!(ch.text("log-status").await.contains("Streaming"));
    ch.screenshot("pod-logs").await;
    ch.navigate(&format!("{url}/#/pods")).await;

    // --- click into a pod: detail with containers; the log view is there
    ch.click("pod-row-shop-api-crashy").await;
    ch.wait_testid("pod-detail").await;
    ch.wait_testid("container-row-web").await;
    assert_eq!(
        ch.eval("location.hash").await,
        json!("#/pods/shop/api-crashy")
    );
    let detail = ch.text("pod-detail").await;
    assert!(
        detail.contains("CrashLoopBackOff") && detail.contains("back-off 5m0s"),
        "{detail}"
    );
    assert!(
        detail.contains("Back-off restarting failed container"),
        "pod events: {detail}"
    );
    // its container never started: the kubelet says so and the view shows it
    ch.wait_for(
        "document.querySelector('[data-testid=\"log-status\"]').innerText.includes('waiting to start')",
        T,
    )
    .await;
    ch.screenshot("pod-detail").await;

    // --- services: NodePort URL on the page's host
    ch.navigate(&format!("{url}/#/services")).await;
    ch.wait_testid("service-row-default-hello").await;
    let (_, svc) = c.get("/api/v1/namespaces/default/services/hello").await;
    let np = svc["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .expect("a nodePort was allocated");
    let href = ch
        .eval(&format!(
            "document.querySelector('[data-testid=\"nodeport-link-default-hello-{np}\"]').href"
        ))
        .await;
    assert_eq!(href, json!(format!("http://127.0.0.1:{np}/")));
    ch.screenshot("services").await;

    // --- nodes and replicasets
    ch.navigate(&format!("{url}/#/nodes")).await;
    ch.wait_testid("node-row-minik").await;
    ch.screenshot("nodes").await;
    ch.navigate(&format!("{url}/#/replicasets")).await;
    ch.wait_testid("replicaset-row-default-hello-5d8f7c9b4")
        .await;
    ch.screenshot("replicasets").await;

    // --- configmaps
    ch.navigate(&format!("{url}/#/configmaps")).await;
    ch.wait_testid("configmap-row-default-hello-config").await;
    ch.screenshot("configmaps").await;

    // --- secrets: hidden until revealed, then base64-decoded
    ch.navigate(&format!("{url}/#/secrets")).await;
    ch.click("secret-row-default-hello-secret").await;
    ch.wait_testid("secret-detail").await;
    let page = ch.eval("document.body.innerText").await;
    assert!(
        !page.as_str().unwrap().contains("s3cr3t-p@ss"),
        "secret shown before reveal"
    );
    assert!(
        !page.as_str().unwrap().contains("czNjcjN0"),
        "base64 shown before reveal"
    );
    ch.click("secret-reveal-password").await;
    ch.wait_for(
        "document.querySelector('[data-testid=\"secret-value-password\"]').innerText === 's3cr3t-p@ss'",
        T,
    )
    .await;
    assert!(!ch.text("secret-value-username").await.contains("admin"));
    ch.screenshot("secret").await;

    // --- events: newest first, warnings highlighted
    ch.navigate(&format!("{url}/#/events")).await;
    ch.wait_testid("event-row-shop-api-crashy.1").await;
    let order = ch
        .eval("[...document.querySelectorAll('[data-testid^=\"event-row-\"]')].map(r => r.dataset.testid)")
        .await;
    assert_eq!(
        order,
        json!([
            "event-row-shop-api-crashy.1",
            "event-row-shop-web-typo.1",
            "event-row-default-hello.1"
        ])
    );
    let cls = ch
        .eval("document.querySelector('[data-testid=\"event-row-shop-api-crashy.1\"]').className")
        .await;
    assert_eq!(cls, json!("warn-row"));
    ch.screenshot("events").await;

    // --- namespace selector: only shop
    ch.navigate(&format!("{url}/#/pods")).await;
    ch.wait_testid("pod-row-shop-db-0").await;
    ch.eval("(() => { const s = document.querySelector('[data-testid=\"ns-select\"]'); s.value = 'shop'; s.dispatchEvent(new Event('change', {bubbles: true})) })()")
        .await;
    ch.wait_for(
        "!document.querySelector('[data-testid=\"pod-row-default-hello-5d8f7c9b4-x7k2p\"]')",
        T,
    )
    .await;
    assert!(ch
        .eval("!!document.querySelector('[data-testid=\"pod-row-shop-db-0\"]')")
        .await
        .as_bool()
        .unwrap());
    ch.eval("(() => { const s = document.querySelector('[data-testid=\"ns-select\"]'); s.value = ''; s.dispatchEvent(new Event('change', {bubbles: true})) })()")
        .await;
    ch.wait_testid("pod-row-default-hello-5d8f7c9b4-x7k2p")
        .await;

    // --- any object as YAML: the text parses back to the object
    ch.navigate(&format!("{url}/#/deployments")).await;
    ch.click("yaml-deployment-default-hello").await;
    ch.wait_for(
        "(document.querySelector('[data-testid=\"yaml-text\"]') || {innerText: ''}).innerText.includes('kind: Deployment')",
        T,
    )
    .await;
    let text = ch.text("yaml-text").await;
    let parsed: Value = serde_yaml::from_str(&text).unwrap();
    let (_, mut api) = c
        .get("/apis/apps/v1/namespaces/default/deployments/hello")
        .await;
    api["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    assert_eq!(
        parsed, api,
        "the YAML view differs from the API object:\n{text}"
    );
    ch.screenshot("yaml").await;
    ch.click("dialog-close").await;

    // the formatter on awkward values, read back by a real YAML parser
    let tricky = json!({
        "empty": "", "spaces": " lead", "num": "0123", "float": "1e3", "bool": "yes", "null": "null",
        "colon": "a: b", "hash": "a #b", "dash": "- x", "star": "*x", "date": "2024-01-01",
        "multi": "line1\nline2\n", "multi_no_nl": "a\nb", "multi_keep": "x\n\n", "lead_nl": "\nx",
        "tab": "a\tb", "unicode": "héllo ✓", "quote": "it's \"q\"", "nested": [[1, 2], [], {}, [{"a": [true, null, 1.5]}]],
        "true": false, "123": "key is a number", "obj": {"a": {"b": {}}}, "list": ["a\nb", "", -1]
    });
    let y = ch.eval(&format!("YAML.stringify({tricky})")).await;
    let back: Value =
        serde_yaml::from_str(y.as_str().unwrap()).unwrap_or_else(|e| panic!("{e}\n{y}"));
    assert_eq!(back, tricky, "YAML round trip:\n{}", y.as_str().unwrap());

    // --- narrow window: no horizontal page scroll, tables scroll inside
    ch.viewport(390, 844).await;
    ch.navigate(&format!("{url}/#/pods")).await;
    ch.wait_testid("pod-row-shop-api-crashy").await;
    no_page_hscroll(&ch, "pods at 390px").await;
    ch.screenshot("pods-narrow").await;
    ch.navigate(&format!("{url}/#/")).await;
    ch.wait_testid("node-card-minik").await;
    no_page_hscroll(&ch, "overview at 390px").await;
    ch.screenshot("overview-narrow").await;

    ch.close().await;
}

/// The proxy's guards, over plain HTTP without a browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_forwards_api_paths_only_and_guards_writes() {
    let c = Cluster::start().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let u = &c.dashboard;

    // the app itself, with a CSP
    let r = http.get(format!("{u}/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'self'"));
    assert!(r.text().await.unwrap().contains("minik dashboard"));
    assert_eq!(
        http.get(format!("{u}/healthz"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok"
    );

    // reads pass with the dashboard's credentials
    let r = http
        .get(format!("{u}/k8s/api/v1/namespaces"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["metadata"]["name"] == "kube-system"));

    // non-API paths, other methods, foreign hosts, writes without the header
    assert_eq!(
        http.get(format!("{u}/k8s/version"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        http.get(format!("{u}/k8s/api/../version"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        http.request(Method::OPTIONS, format!("{u}/k8s/api/v1/pods"))
            .send()
            .await
            .unwrap()
            .status(),
        405
    );
    let r = http
        .get(format!("{u}/k8s/api/v1/secrets"))
        .header("host", "evil.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body = json!({"metadata": {"name": "x"}}).to_string();
    let r = http
        .post(format!("{u}/k8s/api/v1/namespaces/default/configmaps"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(format!("{u}/k8s/api/v1/namespaces/default/configmaps"))
        .header("content-type", "application/json")
        .header("x-minik-dashboard", "1")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        c.get("/api/v1/namespaces/default/configmaps/x").await.0,
        200
    );

    // a watch streams through unbuffered: the event arrives while the
    // response is still open
    let mut w = http
        .get(format!(
            "{u}/k8s/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=0"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(w.status(), 200);
    let mut seen = String::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !seen.contains("\"x\"") {
            let chunk = w.chunk().await.unwrap().expect("watch ended");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("no watch event within 10s");
    c.create(
        "/api/v1/namespaces/default/configmaps",
        json!({"metadata": {"name": "later"}}),
    )
    .await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while !seen.contains("\"later\"") {
            let chunk = w.chunk().await.unwrap().expect("watch ended");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("the new object's event was not streamed within 10s");

    // the WebSocket variant refuses other origins
    let ws_url = format!(
        "{}/k8s-ws/api/v1/namespaces?watch=1",
        u.replace("http://", "ws://")
    );
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = ws_url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("origin", "http://evil.example.com".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
    let req = ws_url.as_str().into_client_request().unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    use futures::StreamExt;
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let ev: Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(ev["type"], "ADDED");
}
