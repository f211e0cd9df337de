//! The ingress addon end to end, as a minikube user would use it: `minik
//! start --driver=none`, `minik addons enable ingress`, real pods
//! (`minik/hello`) behind two Services, an Ingress with host and path
//! rules, then the real `curl --resolve` on ports 80 and 443 of the node.
//! One none-driver cluster for the whole file, steps in order.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{curl_resolve, host_snapshot, minik_process_rss_kib, port_open, text, wait_for, Env};

const NS: &str = "ingress-nginx";

/// Two backends: `a` is the stock hello page; `b` also answers /v2/x, and
/// says "B" so a wrong route cannot pass for a right one.
const APPS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: a, labels: {app: a}}
spec:
  replicas: 1
  selector: {matchLabels: {app: a}}
  template:
    metadata: {labels: {app: a}}
    spec:
      containers:
      - name: hello
        image: minik/hello
        ports: [{containerPort: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: b, labels: {app: b}}
spec:
  replicas: 1
  selector: {matchLabels: {app: b}}
  template:
    metadata: {labels: {app: b}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: hello
        image: minik/hello
        command: [sh, -c, 'mkdir -p /www/v2 && echo "B: served by pod $(hostname)" | tee /www/index.html > /www/v2/x && exec httpd -f -p 80 -h /www']
        ports: [{containerPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: svc-a}
spec:
  selector: {app: a}
  ports: [{port: 80, targetPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: svc-b}
spec:
  selector: {app: b}
  ports: [{name: http, port: 8080, targetPort: 80}]
"#;

const INGRESS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  ingressClassName: nginx
  tls:
  - hosts: [secure.local]
    secretName: secure-tls
  rules:
  - host: hello.local
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: svc-a, port: {number: 80}}}}
      - {path: /v2, pathType: Prefix, backend: {service: {name: svc-b, port: {name: http}}}}
  - host: other.local
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: svc-b, port: {number: 8080}}}}
  - host: secure.local
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: svc-a, port: {number: 80}}}}
---
# No class: served because IngressClass nginx is the default.
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: noclass}
spec:
  rules:
  - host: noclass.local
    http:
      paths:
      - {path: /, pathType: Exact, backend: {service: {name: svc-b, port: {number: 8080}}}}
---
# ingress-nginx's rewrite-target: /app/v2/x reaches svc-b as /v2/x.
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: rewrite
  annotations:
    nginx.ingress.kubernetes.io/rewrite-target: /$2
spec:
  ingressClassName: nginx
  rules:
  - host: rw.local
    http:
      paths:
      - {path: /app(/|$)(.*), pathType: ImplementationSpecific, backend: {service: {name: svc-b, port: {number: 8080}}}}
"#;

/// Waits until `host` + `path` answers `code` with a body containing `needle`.
fn wait_answer(
    host: &str,
    port: u16,
    path: &str,
    extra: &[&str],
    code: u16,
    needle: &str,
) -> String {
    wait_for(
        &format!("{host}:{port}{path} to answer {code} with {needle:?}"),
        Duration::from_secs(60),
        || match curl_resolve(host, port, path, extra)? {
            (c, body) if c == code && body.contains(needle) => Ok(body),
            (c, body) => Err(format!("{c}: {body}")),
        },
    )
}

/// The ingress controller pod's name once it is Running 1/1.
fn controller_ready(env: &Env) -> String {
    env.wait_pods_ready(
        &["-n", NS, "-l", "app.kubernetes.io/component=controller"],
        1,
        Duration::from_secs(120),
    )
    .remove(0)
}

#[test]
fn ingress_addon_routes_hosts_paths_and_tls() {
    let env = Env::new("ingress");
    assert!(
        !port_open(80) && !port_open(443),
        "something on this host already listens on port 80 or 443; the ingress addon needs both: stop it and run this test again"
    );
    let before = host_snapshot();
    env.start_none();

    // --- enable -------------------------------------------------------------
    let t0 = Instant::now();
    let out = env.minik(&["addons", "enable", "ingress"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("The 'ingress' addon is enabled"),
        "{}",
        text(&out.stderr)
    );
    controller_ready(&env);
    eprintln!(
        "addons enable ingress → controller Ready: {:?}",
        t0.elapsed()
    );
    let class = env.k(&[
        "get",
        "ingressclass",
        "nginx",
        "-o",
        "jsonpath={.spec.controller} {.metadata.annotations}",
    ]);
    assert!(class.starts_with("k8s.io/minik-ingress "), "{class}");
    assert!(class.contains("is-default-class"), "{class}");
    // Nothing routed yet: the default backend answers 404.
    let (code, body) = curl_resolve("hello.local", 80, "/", &[]).expect("port 80 answers");
    assert_eq!(code, 404, "{body}");

    // --- backends, TLS secret, Ingresses -------------------------------------
    env.apply(APPS);
    let tls_dir = env.dir.join("tls");
    std::fs::create_dir_all(&tls_dir).unwrap();
    let (crt, key) = (tls_dir.join("tls.crt"), tls_dir.join("tls.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=secure.local",
        ])
        .args(["-addext", "subjectAltName=DNS:secure.local"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl: {}", text(&out.stderr));
    env.k(&[
        "create",
        "secret",
        "tls",
        "secure-tls",
        &format!("--cert={}", crt.display()),
        &format!("--key={}", key.display()),
    ]);
    let t0 = Instant::now();
    env.apply(INGRESS);

    // --- host and path routing ------------------------------------------------
    wait_answer("hello.local", 80, "/", &[], 200, "served by pod a-");
    eprintln!("Ingress applied → first routed answer: {:?}", t0.elapsed());
    wait_answer("hello.local", 80, "/v2/x", &[], 200, "B: served by pod b-");
    let (code, body) = curl_resolve("hello.local", 80, "/v20", &[]).unwrap();
    assert!(
        code == 404 && !body.contains("B: served"),
        "/v20 is not under /v2: {code} {body}"
    );
    wait_answer("other.local", 80, "/", &[], 200, "B: served by pod b-");
    wait_answer("noclass.local", 80, "/", &[], 200, "B: served by pod b-");
    let (code, body) = curl_resolve("noclass.local", 80, "/index.html", &[]).unwrap();
    assert_eq!(code, 404, "Exact / must not match /index.html: {body}");
    wait_answer("rw.local", 80, "/app/v2/x", &[], 200, "B: served by pod b-");
    let (code, body) = curl_resolve("unknown.local", 80, "/", &[]).unwrap();
    assert_eq!(code, 404, "{body}");

    // --- the same controller through its NodePort Service (what the qemu
    // driver, whose node ports 80/443 the host cannot reach, would use)
    let urls = env.m(&["service", "ingress-nginx-controller", "-n", NS, "--url"]);
    let http_url = urls.lines().next().unwrap_or_default().trim().to_string();
    assert!(http_url.starts_with("http://127.0.0.1:3"), "{urls}");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-H", "Host: hello.local"])
        .arg(format!("{http_url}/v2/x"))
        .output()
        .expect("curl");
    assert!(
        text(&out.stdout).contains("B: served by pod b-"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // --- HTTPS: the Secret's certificate by SNI, the default one otherwise ---
    let crt_path = crt.display().to_string();
    let cacert: &[&str] = &["--cacert", &crt_path];
    wait_answer("secure.local", 443, "/", cacert, 200, "served by pod a-");
    let (code, body) = curl_resolve(
        "secure.local",
        80,
        "/p?q=1",
        &["-o", "/dev/null", "-w", "%{redirect_url}\n%{http_code}"],
    )
    .unwrap();
    assert_eq!(code, 308, "{body}");
    assert!(body.contains("https://secure.local/p?q=1"), "{body}");
    let (code, body) = curl_resolve("hello.local", 443, "/", &["-k"]).unwrap();
    assert!(
        code == 200 && body.contains("served by pod a-"),
        "{code} {body}"
    );
    assert!(
        curl_resolve("hello.local", 443, "/", cacert).is_err(),
        "hello.local has no TLS secret: the default (self-signed) certificate must be served"
    );

    // --- ADDRESS: the node's InternalIP ----------------------------------------
    let node_ip = env.k(&[
        "get",
        "node",
        "minik",
        "-o",
        "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}",
    ]);
    assert!(!node_ip.trim().is_empty());
    wait_for("the Ingress ADDRESS", Duration::from_secs(30), || {
        let out = env.k(&["get", "ingress", "web", "--no-headers"]);
        let f: Vec<&str> = out.split_whitespace().collect();
        // NAME CLASS HOSTS ADDRESS PORTS AGE, PORTS being "80, 443"
        if f.get(1) == Some(&"nginx")
            && f.get(3) == Some(&node_ip.trim())
            && f.get(4..6) == Some(&["80,", "443"][..])
        {
            Ok(())
        } else {
            Err(format!("{out}(node InternalIP {node_ip})"))
        }
    });

    // --- another class: not ours any more (404), and our ADDRESS is taken off
    // the noclass Ingress ADDRESS
    env.wait_jsonpath(
        &["get", "ingress", "noclass"],
        "{.status.loadBalancer.ingress[0].ip}",
        node_ip.trim(),
        Duration::from_secs(30),
    );
    env.k(&[
        "patch",
        "ingress",
        "noclass",
        "--type=merge",
        "-p",
        r#"{"spec":{"ingressClassName":"other"}}"#,
    ]);
    wait_answer("noclass.local", 80, "/", &[], 404, "404 Not Found");
    wait_for(
        "the noclass Ingress ADDRESS cleared",
        Duration::from_secs(30),
        || {
            let a = env.k(&[
                "get",
                "ingress",
                "noclass",
                "-o",
                "jsonpath={.status.loadBalancer}",
            ]);
            if a.contains(node_ip.trim()) {
                Err(a)
            } else {
                Ok(())
            }
        },
    );

    // --- scale to 0: 503; back: 200 -------------------------------------------
    env.k(&["scale", "deployment", "a", "--replicas=0"]);
    wait_answer("hello.local", 80, "/", &[], 503, "503 Service Unavailable");
    env.k(&["scale", "deployment", "a", "--replicas=1"]);
    wait_answer("hello.local", 80, "/", &[], 200, "served by pod a-");

    // A few sequential requests through the ingress, for the log.
    let t0 = Instant::now();
    for _ in 0..50 {
        let (code, _) = curl_resolve("hello.local", 80, "/", &[]).unwrap();
        assert_eq!(code, 200);
    }
    eprintln!(
        "50 sequential curl requests through the ingress: {:?}",
        t0.elapsed()
    );

    if let Some(kib) = minik_process_rss_kib("ingress-controller") {
        eprintln!("ingress controller memory (RSS): {} MiB", kib / 1024);
    }

    // --- stop / start: the addon comes back and routes again ---------------
    env.m(&["stop"]);
    wait_for("port 80 closed after stop", Duration::from_secs(60), || {
        if port_open(80) {
            Err("still open".to_string())
        } else {
            Ok(())
        }
    });
    let out = env.minik(&["start", "--driver=none"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_answer("hello.local", 80, "/v2/x", &[], 200, "B: served by pod b-");
    wait_answer("secure.local", 443, "/", cacert, 200, "served by pod a-");

    // --- what the user can inspect: events and the access log ---------------------
    let described = env.k(&["describe", "ingress", "web"]);
    assert!(described.contains("Scheduled for sync"), "{described}");
    let logs = env.k(&["logs", "-n", NS, "deploy/ingress-nginx-controller"]);
    assert!(
        logs.contains("\"GET /v2/x HTTP/1.1\" 200 host=hello.local backend=default/svc-b:http"),
        "{logs}"
    );

    // --- the controller stopped (scaled to 0): it takes its ADDRESS off ----
    let controller = "deployment/ingress-nginx-controller";
    env.k(&["scale", "-n", NS, controller, "--replicas=0"]);
    wait_for(
        "the web Ingress ADDRESS cleared",
        Duration::from_secs(60),
        || {
            let a = env.k(&[
                "get",
                "ingress",
                "web",
                "-o",
                "jsonpath={.status.loadBalancer}",
            ]);
            if a.contains(node_ip.trim()) || port_open(80) {
                Err(a)
            } else {
                Ok(())
            }
        },
    );
    env.k(&["scale", "-n", NS, controller, "--replicas=1"]);
    controller_ready(&env);
    wait_answer("hello.local", 80, "/", &[], 200, "served by pod a-");
    // the web Ingress ADDRESS back
    env.wait_jsonpath(
        &["get", "ingress", "web"],
        "{.status.loadBalancer.ingress[0].ip}",
        node_ip.trim(),
        Duration::from_secs(30),
    );

    // --- disable: ports 80 and 443 are free again -------------------------------
    let out = env.minik(&["addons", "disable", "ingress"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_for("port 80 and 443 closed", Duration::from_secs(60), || {
        if port_open(80) || port_open(443) {
            Err("still open".to_string())
        } else {
            Ok(())
        }
    });
    assert!(!env
        .kubectl(&["get", "ingressclass", "nginx"])
        .status
        .success());
    assert!(!env.kubectl(&["get", "ns", NS]).status.success());

    env.delete_and_check_host(&before);
}
