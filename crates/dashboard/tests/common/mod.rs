//! Test harness shared by the browser tests and the benchmark example: a
//! real minik API server over TLS on 127.0.0.1 (fresh CA, server and admin
//! certificates), the dashboard pointed at it with the admin certificate,
//! and headless Chromium driven over the Chrome DevTools Protocol.
#![allow(dead_code)]

use minik_apiserver::{ApiServer, ApiServerOptions, TlsFiles};
use minik_dashboard::{ApiAuth, DashboardConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub struct Pki {
    pub ca_pem: String,
    pub server_cert: String,
    pub server_key: String,
    pub admin_cert: String,
    pub admin_key: String,
}

pub fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "minikCA");
    ca_params.distinguished_name = dn;
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().unwrap();
    let mut sp = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    sp.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "minik");
    sp.distinguished_name = dn;
    let server_cert = sp.signed_by(&server_key, &issuer).unwrap();

    let admin_key = KeyPair::generate().unwrap();
    let mut ap = CertificateParams::new(Vec::<String>::new()).unwrap();
    ap.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "minik-admin");
    dn.push(DnType::OrganizationName, "system:masters");
    ap.distinguished_name = dn;
    let admin_cert = ap.signed_by(&admin_key, &issuer).unwrap();

    Pki {
        ca_pem: ca_cert.pem(),
        server_cert: server_cert.pem(),
        server_key: server_key.serialize_pem(),
        admin_cert: admin_cert.pem(),
        admin_key: admin_key.serialize_pem(),
    }
}

/// The dashboard's configuration for this API server with the admin certificate.
pub fn dashboard_config(api: &str, pki: &Pki) -> DashboardConfig {
    DashboardConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        api_server: api.to_string(),
        auth: ApiAuth::ClientCert {
            ca_pem: pki.ca_pem.clone(),
            cert_pem: pki.admin_cert.clone(),
            key_pem: pki.admin_key.clone(),
        },
    }
}

/// A running API server plus a dashboard in front of it.
pub struct Cluster {
    _dir: tempfile::TempDir,
    pub pki: Pki,
    /// The API server's store (tests compact it to force 410 Gone).
    pub store: minik_store::Store,
    /// `https://127.0.0.1:port`
    pub api: String,
    /// `http://127.0.0.1:port`
    pub dashboard: String,
    pub client: reqwest::Client,
}

impl Cluster {
    /// Starts both servers as tasks on the current tokio runtime.
    pub async fn start() -> Cluster {
        Cluster::start_with(true).await
    }

    /// The API server, and the dashboard too when `dashboard` (otherwise
    /// `self.dashboard` is empty: run it yourself with `dashboard_config`).
    pub async fn start_with(want_dashboard: bool) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let pki = pki();
        let store = minik_store::Store::open(&dir.path().join("store")).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let opts = ApiServerOptions {
            secure_port: port,
            ..ApiServerOptions::default()
        };
        let server = ApiServer::new(store.clone(), opts).await.unwrap();
        let tls = TlsFiles {
            ca_cert_pem: pki.ca_pem.clone(),
            cert_pem: pki.server_cert.clone(),
            key_pem: pki.server_key.clone(),
        };
        tokio::spawn(async move { server.serve_tls(listener, tls).await });
        let api = format!("https://127.0.0.1:{port}");

        let mut dashboard = String::new();
        if want_dashboard {
            let cfg = dashboard_config(&api, &pki);
            let dl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            dashboard = format!("http://{}", dl.local_addr().unwrap());
            tokio::spawn(async move { minik_dashboard::serve_on(dl, cfg).await });
        }

        let id =
            reqwest::Identity::from_pem(format!("{}{}", pki.admin_cert, pki.admin_key).as_bytes())
                .unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap()])
            .identity(id)
            .no_proxy()
            .build()
            .unwrap();
        let c = Cluster {
            _dir: dir,
            pki,
            store,
            api,
            dashboard,
            client,
        };
        // both up?
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok_api = c
                .client
                .get(format!("{}/version", c.api))
                .send()
                .await
                .is_ok();
            let ok_dash = !want_dashboard
                || reqwest::get(format!("{}/healthz", c.dashboard))
                    .await
                    .is_ok();
            if ok_api && ok_dash {
                break;
            }
            assert!(Instant::now() < deadline, "servers did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        c
    }

    pub async fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        ctype: &str,
    ) -> (u16, Value) {
        let mut rb = self
            .client
            .request(method.clone(), format!("{}{}", self.api, path))
            .header("accept", "application/json");
        if let Some(b) = body {
            rb = rb.header("content-type", ctype).body(b.to_string());
        }
        let r = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let code = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.req(reqwest::Method::GET, path, None, "").await
    }
    /// POST that must succeed.
    pub async fn create(&self, path: &str, obj: Value) -> Value {
        let (code, v) = self
            .req(reqwest::Method::POST, path, Some(obj), "application/json")
            .await;
        assert!(code == 201 || code == 200, "POST {path}: {code} {v}");
        v
    }
    /// Merge-PATCH that must succeed.
    pub async fn patch(&self, path: &str, patch: Value) -> Value {
        let (code, v) = self
            .req(
                reqwest::Method::PATCH,
                path,
                Some(patch),
                "application/merge-patch+json",
            )
            .await;
        assert!(code == 200, "PATCH {path}: {code} {v}");
        v
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

pub fn rfc3339(offset_secs: i64) -> String {
    // seconds precision UTC, no chrono dependency
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + offset_secs;
    let (days, secs) = (t.div_euclid(86400), t.rem_euclid(86400));
    // civil from days (Howard Hinnant)
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// The kubelet's real log endpoint (`minik_kubelet::logs::router`) on
/// 127.0.0.1 over a pods directory in the kubelet's layout; the test plays
/// the container runtime by writing the CRI-format log files.
pub struct KubeletLogs {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub registry: minik_kubelet::logs::LogRegistry,
}

impl KubeletLogs {
    pub async fn start() -> KubeletLogs {
        let dir = tempfile::tempdir().unwrap();
        let registry = minik_kubelet::logs::LogRegistry::default();
        let app = minik_kubelet::logs::router(dir.path().to_path_buf(), registry.clone());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(l, app).await });
        KubeletLogs {
            dir,
            port,
            registry,
        }
    }

    /// A pod this kubelet runs whose container has not started (no log yet).
    pub fn waiting_pod(&self, ns: &str, pod: &str, uid: &str, container: &str) {
        let cdir = self.dir.path().join(uid).join("containers").join(container);
        std::fs::create_dir_all(cdir).unwrap();
        self.registry.set_pod(ns, pod, Some(uid));
    }

    /// The current log file of a container (created, marked as being written).
    pub fn log_file(&self, ns: &str, pod: &str, uid: &str, container: &str) -> PathBuf {
        let cdir = self.dir.path().join(uid).join("containers").join(container);
        std::fs::create_dir_all(&cdir).unwrap();
        self.registry.set_pod(ns, pod, Some(uid));
        let path = cdir.join("0.log");
        std::fs::write(&path, "").unwrap();
        self.registry.set_active(&path, true);
        path
    }

    /// Appends one stdout line as the runtime's log pump would.
    pub fn append(path: &Path, line: &str) {
        use std::io::Write;
        let l = minik_kubelet::logs::format_line(chrono::Utc::now(), "stdout", false, line);
        let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        f.write_all(l.as_bytes()).unwrap();
    }
}

/// A pod spec with one container.
pub fn pod(ns: &str, name: &str, labels: Value, owner: Option<Value>, node: Option<&str>) -> Value {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"containers": [{"name": "web", "image": "docker.io/library/nginx:1.27",
            "ports": [{"containerPort": 80, "protocol": "TCP"}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}
    });
    if let Some(o) = owner {
        p["metadata"]["ownerReferences"] = json!([o]);
    }
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    p
}

/// A pod status as a kubelet would write it.
pub fn running_status(ip: &str) -> Value {
    json!({"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "10.0.2.15", "startTime": rfc3339(-600),
        "qosClass": "Burstable",
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": rfc3339(-600)},
            {"type": "Initialized", "status": "True", "lastTransitionTime": rfc3339(-600)},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": rfc3339(-590)},
            {"type": "Ready", "status": "True", "lastTransitionTime": rfc3339(-590)}],
        "containerStatuses": [{"name": "web", "ready": true, "started": true, "restartCount": 0,
            "image": "docker.io/library/nginx:1.27", "imageID": "", "containerID": "runc://abc",
            "state": {"running": {"startedAt": rfc3339(-595)}}}]
    }})
}

pub fn waiting_status(reason: &str, message: &str, restarts: u32) -> Value {
    json!({"status": {
        "phase": "Pending", "hostIP": "10.0.2.15", "startTime": rfc3339(-300), "podIP": "10.244.0.9",
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "False", "reason": "ContainersNotReady", "message": "containers with unready status: [web]"}],
        "containerStatuses": [{"name": "web", "ready": false, "restartCount": restarts,
            "image": "docker.io/library/nginx:1.27", "imageID": "",
            "state": {"waiting": {"reason": reason, "message": message}}}]
    }})
}

// ---------------------------------------------------------------- Chromium

#[path = "chrome.rs"]
mod chrome;
#[allow(unused_imports)]
pub use chrome::{screenshot_dir, Chrome};
