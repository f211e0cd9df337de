//! The walking skeleton, end to end, as a user would do it: `minik start
//! --driver=none`, the seeds' hello world with the real kubectl, real
//! containers serving the page, stop/start, delete. One cluster for the whole
//! file (the none driver owns host-wide resources), steps in order.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{curl, host_snapshot, text, wait_for, Env};

const HELLO_V1: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: hello
        image: minik/hello
        ports:
        - containerPort: 80
        env:
        - name: GREETING
          value: one
"#;

/// Waits for exactly `n` pods of `selector`, all Running 1/1; their names.
fn wait_running(env: &Env, selector: &str, n: usize) -> Vec<String> {
    env.wait_pods_ready(&["-l", selector], n, Duration::from_secs(90))
}

fn service_url(env: &Env, name: &str) -> String {
    let url = env.m(&["service", name, "--url"]).trim().to_string();
    assert!(
        url.starts_with("http://127.0.0.1:3"),
        "unexpected URL {url}"
    );
    url
}

#[test]
fn hello_world_on_the_none_driver() {
    let env = Env::new("hello");
    let before = host_snapshot();

    // --- start -------------------------------------------------------------
    let out = env.start_none();
    assert!(text(&out.stderr).contains("kubectl is now configured to use \"minik\""));

    let nodes = env.k(&["get", "nodes"]);
    let line = nodes.lines().nth(1).expect("a node row");
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f[0], "minik", "{nodes}");
    assert_eq!(f[1], "Ready", "{nodes}");
    assert_eq!(f[2], "control-plane", "{nodes}");
    assert!(f[4].starts_with("v1.33."), "{nodes}");
    assert!(env.k(&["version"]).contains("Server Version: v1.33."));

    let status = env.minik(&["status"]);
    assert!(status.status.success(), "{}", text(&status.stdout));
    assert!(text(&status.stdout).contains("apiserver: Running"));

    // --- kubectl run: a bare pod --------------------------------------------
    env.k(&["run", "hw", "--image=minik/hello", "--port=80"]);
    wait_running(&env, "run=hw", 1);

    // --- exec and port-forward into the pod ---------------------------------
    let hostname = env.k(&["exec", "hw", "--", "hostname"]);
    assert_eq!(hostname.trim(), "hw");
    {
        use std::io::BufRead;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = std::process::Command::new("kubectl");
        cmd.args(["port-forward", "pod/hw", &format!("{port}:80")])
            .env("HOME", env.dir.join("home"))
            .env("KUBECONFIG", env.kubeconfig())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().expect("kubectl port-forward");
        // Keep reading kubectl's stdout open while it forwards: a closed pipe
        // would end it at its next message.
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let url = format!("http://127.0.0.1:{port}/");
        let page = wait_for(
            "the page through port-forward",
            Duration::from_secs(20),
            || curl(&url),
        );
        let _ = child.kill();
        let _ = child.wait();
        assert!(line.contains("Forwarding from"), "{line}");
        assert!(
            page.contains("served by pod hw"),
            "port-forward page: {page}"
        );
    }

    // --- create deployment (protobuf body) ----------------------------------
    env.k(&[
        "create",
        "deployment",
        "hello",
        "--image=minik/hello",
        "--port=80",
    ]);
    wait_running(&env, "app=hello", 1);
    let all = env.k(&["get", "deployments,rs,pods"]);
    assert!(
        all.contains("UP-TO-DATE"),
        "server-side table columns missing:\n{all}"
    );
    let deploy_line = all
        .lines()
        .find(|l| l.starts_with("deployment.apps/hello"))
        .expect(&all);
    assert_eq!(deploy_line.split_whitespace().nth(1), Some("1/1"), "{all}");

    // --- expose + service URL ----------------------------------------------
    env.k(&[
        "expose",
        "deployment",
        "hello",
        "--type=NodePort",
        "--port=80",
    ]);
    let svcs = env.k(&["get", "services"]);
    let row = svcs.lines().find(|l| l.starts_with("hello ")).expect(&svcs);
    let f: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(f[1], "NodePort", "{svcs}");
    assert!(f[2].starts_with("10."), "{svcs}");
    assert_eq!(f[3], "<none>", "{svcs}");
    assert!(f[4].starts_with("80:3") && f[4].ends_with("/TCP"), "{svcs}");
    assert!(svcs.contains("kubernetes"), "{svcs}");

    let url = service_url(&env, "hello");
    let page = wait_for("the hello page", Duration::from_secs(30), || curl(&url));
    let pod = &env.pod_rows(&["-l", "app=hello"])[0].0;
    assert!(
        page.contains("Hello") && page.contains(pod.as_str()),
        "page {page:?} should name pod {pod}"
    );

    // --- scale: requests reach all three pods -------------------------------
    env.k(&["scale", "deployment", "hello", "--replicas=3"]);
    let pods: BTreeSet<String> = wait_running(&env, "app=hello", 3).into_iter().collect();
    let seen = wait_for("all three pods answering", Duration::from_secs(60), || {
        let mut seen = BTreeSet::new();
        for _ in 0..60 {
            let page = curl(&url)?;
            if let Some(p) = pods.iter().find(|p| page.contains(p.as_str())) {
                seen.insert(p.clone());
            }
        }
        if seen == pods {
            Ok(seen)
        } else {
            Err(format!("seen {seen:?} of {pods:?}"))
        }
    });
    assert_eq!(seen.len(), 3);

    // --- the dashboard, served locally with the admin credentials -----------
    {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_minik"));
        cmd.args(["dashboard", "--url"])
            .env("HOME", env.dir.join("home"))
            .env("MINIK_HOME", env.dir.join("minik"))
            .env("KUBECONFIG", env.kubeconfig())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().expect("minik dashboard");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let dash = line.trim().to_string();
        assert!(dash.starts_with("http://127.0.0.1:"), "{dash}");
        let html = curl(&dash);
        let pods = curl(&format!("{dash}k8s/api/v1/namespaces/default/pods"));
        let _ = child.kill();
        let _ = child.wait();
        assert!(html.unwrap_or_default().contains("minik"), "dashboard page");
        let pods = pods.unwrap_or_default();
        assert!(
            seen.iter().all(|p| pods.contains(p.as_str())),
            "dashboard proxy lists the pods: {pods}"
        );
    }

    // --- cluster DNS and ClusterIP from inside a pod ------------------------
    let cluster_ip = env.k(&["get", "svc", "hello", "-o", "jsonpath={.spec.clusterIP}"]);
    env.k(&[
        "run", "probe", "--image=minik/busybox", "--restart=Never", "--",
        "sh", "-c",
        "nslookup hello.default.svc.cluster.local && wget -qO- http://hello.default.svc.cluster.local/ && wget -qO- http://hello/",
    ]);
    let probe = wait_for("the probe pod to finish", Duration::from_secs(60), || {
        let phase = env.k(&["get", "pod", "probe", "-o", "jsonpath={.status.phase}"]);
        if phase == "Succeeded" {
            Ok(env.k(&["logs", "probe"]))
        } else {
            Err(phase)
        }
    });
    assert!(
        probe.contains("Name:\thello.default.svc.cluster.local")
            || probe.contains("hello.default.svc.cluster.local"),
        "{probe}"
    );
    assert!(
        probe.contains(&format!("Address: {cluster_ip}")),
        "nslookup should answer the ClusterIP {cluster_ip}:\n{probe}"
    );
    assert_eq!(
        probe.matches("This page is served by pod hello-").count(),
        2,
        "{probe}"
    );
    // `kubectl exec` + wget by Service name, with a timeout as scripts pass it:
    // Debian's busybox 1.35 crashed on `wget -T` (exit code 139) until the
    // images carried the patched copy (crates/kubelet/src/images.rs).
    for cmd in [
        vec!["wget", "-T", "5", "-qO-", "http://hello/"],
        vec![
            "sh",
            "-c",
            "wget -q -T 5 -O - http://hello.default.svc.cluster.local/",
        ],
    ] {
        let args: Vec<&str> = ["exec", "deploy/hello", "--"]
            .into_iter()
            .chain(cmd)
            .collect();
        let out = env.kubectl(&args);
        assert!(
            out.status.success() && text(&out.stdout).contains("This page is served by pod hello-"),
            "kubectl {args:?}: {:?}\n{}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
    }

    // --- apply twice: rolling update ----------------------------------------
    env.kubectl_stdin(&["apply", "-f", "-"], HELLO_V1);
    let first = wait_running(&env, "app=web", 2);
    let out = env.kubectl_stdin(
        &["apply", "-f", "-"],
        &HELLO_V1.replace("value: one", "value: two"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("deployment.apps/web configured"));
    let rollout = env.kubectl(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    assert!(
        rollout.status.success(),
        "{}{}",
        text(&rollout.stdout),
        text(&rollout.stderr)
    );
    let second = wait_running(&env, "app=web", 2);
    assert!(
        second.iter().all(|p| !first.contains(p)),
        "pods were not replaced: {first:?} -> {second:?}"
    );
    let rs = env.k(&["get", "rs", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.metadata.annotations.deployment\\.kubernetes\\.io/revision} {end}"]);
    assert!(rs.contains('2'), "revision 2 missing: {rs}");

    // --- logs ----------------------------------------------------------------
    let logs = wait_for("request lines in the log", Duration::from_secs(20), || {
        let l = text(&env.kubectl(&["logs", "deploy/hello"]).stdout);
        if l.contains("url:/") && l.contains("response:200") {
            Ok(l)
        } else {
            Err(l)
        }
    });
    assert!(!logs.is_empty());

    // --- bad input: 4xx with a message, nothing stored ----------------------
    let bad = env.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: broken\n",
    );
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).to_lowercase().contains("yaml"),
        "{}",
        text(&bad.stderr)
    );
    let unknown = env.kubectl_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: strict}\ndata: {a: b}\nbogus: 1\n",
    );
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr).contains("unknown field"),
        "{}",
        text(&unknown.stderr)
    );
    assert!(
        !env.kubectl(&["get", "configmap", "strict"])
            .status
            .success(),
        "strict cm must not be stored"
    );
    let invalid = env.kubectl(&["create", "configmap", "Bad_Name"]);
    assert!(!invalid.status.success());
    assert!(
        text(&invalid.stderr).contains("Invalid value"),
        "{}",
        text(&invalid.stderr)
    );
    env.k(&["create", "configmap", "cas", "--from-literal=k=v1"]);
    let stale = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cas","resourceVersion":"1"},"data":{"k":"v2"}}"#;
    let conflict = env.kubectl_stdin(&["replace", "-f", "-"], stale);
    assert!(!conflict.status.success());
    assert!(
        text(&conflict.stderr).contains("the object has been modified"),
        "{}",
        text(&conflict.stderr)
    );
    assert_eq!(
        env.k(&["get", "cm", "cas", "-o", "jsonpath={.data.k}"]),
        "v1"
    );

    // --- delete deployment: its ReplicaSet and pods go too ------------------
    env.k(&["delete", "deployment", "hello"]);
    wait_for(
        "hello's ReplicaSets and pods gone",
        Duration::from_secs(60),
        || {
            let rs = env.k(&["get", "rs", "-l", "app=hello", "--no-headers"]);
            let pods = env.k(&["get", "pods", "-l", "app=hello", "--no-headers"]);
            if rs.trim().is_empty() && pods.trim().is_empty() {
                Ok(())
            } else {
                Err(format!("{rs}{pods}"))
            }
        },
    );

    // --- stop / start: everything is back and serving -----------------------
    env.k(&[
        "expose",
        "deployment",
        "web",
        "--type=NodePort",
        "--port=80",
    ]);
    env.m(&["stop"]);
    let st = env.minik(&["status"]);
    assert_eq!(st.status.code(), Some(7), "{}", text(&st.stdout));
    let out = env.minik(&["start", "--driver=none"]);
    assert!(
        out.status.success(),
        "restart failed: {}",
        text(&out.stderr)
    );
    wait_running(&env, "app=web", 2);
    wait_running(&env, "run=hw", 1);
    assert_eq!(
        env.k(&["get", "cm", "cas", "-o", "jsonpath={.data.k}"]),
        "v1"
    );
    let url = service_url(&env, "web");
    let page = wait_for("web serving after restart", Duration::from_secs(30), || {
        curl(&url)
    });
    assert!(page.contains("Hello"), "{page}");

    // --- delete: the host is left as it was found ---------------------------
    env.m(&["delete"]);
    let kc = std::fs::read_to_string(env.kubeconfig()).unwrap_or_default();
    assert!(
        !kc.contains("name: minik"),
        "kubeconfig still has minik:\n{kc}"
    );
    assert_eq!(host_snapshot(), before, "host state differs after delete");
    assert!(!env.dir.join("minik/profiles/minik").exists());
    let _ = std::fs::remove_dir_all(&env.dir);
}
