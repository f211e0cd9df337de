//! Registry pulls against a REAL registry (Debian's `docker-registry`, on
//! 127.0.0.1 with a free port), images built with umoci and pushed with
//! skopeo: by tag (OCI and Docker v2 schema 2), by digest, through an OCI
//! index (the linux/amd64 entry is chosen), with htpasswd basic auth (right,
//! missing and wrong credentials), a corrupted blob refused by digest, and
//! the pulled image run as a real runc container.
//! Needs root, runc, busybox-static, docker-registry, skopeo, umoci, apache2-utils.

#[path = "../../../tests/registry_support/mod.rs"]
mod registry_support;

use k8s_openapi::api::core::v1::Container;
use minik_kubelet::images::ImageStore;
use minik_kubelet::registry::{self, Credentials, PullError};
use minik_kubelet::sandbox::{ContainerInputs, ExitInfo, Machinery, PodMeta};
use minik_kubelet::KubeletConfig;
use registry_support::{build_image, build_index, Registry};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("minik-regpull-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Two images (markers "amd" and "arm") and an index `multi` listing the
/// arm one first, so picking by position would pick wrong.
fn layout(dir: &Path) -> PathBuf {
    let l = dir.join("oci");
    build_image(&l, "v1", "amd");
    build_image(&l, "arm", "arm");
    build_index(&l, "multi", &[("arm", "arm64"), ("v1", "amd64")]);
    l
}

fn marker_of(store: &ImageStore, rec: &minik_kubelet::images::ImageRecord) -> String {
    for l in store.lowerdirs(rec) {
        if let Ok(s) = std::fs::read_to_string(l.join("marker")) {
            return s;
        }
    }
    panic!("no /marker in the layers of {}", rec.name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_by_tag_digest_and_index_with_verification() {
    let dir = tmp("open");
    let l = layout(&dir);
    let reg = Registry::start(&dir.join("registry"), None);
    reg.push(&l, "v1", "team/app:v1", &[]);
    reg.push(&l, "v1", "team/app:v1d", &["--format", "v2s2"]);
    reg.push(&l, "multi", "team/app:multi", &["--multi-arch", "all"]);
    let host = reg.host();
    let store = ImageStore::new(&dir.join("node"));
    let none = Vec::new();

    // By tag (OCI manifest); two concurrent pulls share one download.
    let img = format!("{host}/team/app:v1");
    let (a, b) = tokio::join!(
        registry::pull(&store, &img, &none),
        registry::pull(&store, &img, &none)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.record, b.record);
    let layer = format!("blobs/sha256:{}", a.record.layers[0]);
    assert_eq!(
        reg.gets(&layer),
        1,
        "one download for two pulls:\n{}",
        reg.log()
    );
    assert!(
        a.downloaded > 1_000_000,
        "busybox layer downloaded: {}",
        a.downloaded
    );
    assert_eq!(a.record.name, img);
    assert_eq!(marker_of(&store, &a.record), "amd");
    let digest = reg.manifest_digest("team/app:v1");
    assert_eq!(a.record.image_id(), format!("{host}/team/app@{digest}"));
    assert_eq!(a.record.config.cmd[0], "/bin/sh");
    // The tag and the digest name both resolve locally now.
    assert_eq!(store.resolve(&img).unwrap().layers, a.record.layers);
    assert!(store.resolve(&format!("{host}/team/app@{digest}")).is_ok());

    // Again: nothing to download (layers are shared, unpacked once).
    let again = registry::pull(&store, &img, &none).await.unwrap();
    assert_eq!(again.downloaded, 0);

    // Docker v2 schema 2 manifest of the same content: same layers reused.
    let v1d = registry::pull(&store, &format!("{host}/team/app:v1d"), &none)
        .await
        .unwrap();
    assert_eq!(marker_of(&store, &v1d.record), "amd");

    // By digest.
    let by_digest = format!("{host}/team/app@{digest}");
    let p = registry::pull(&store, &by_digest, &none).await.unwrap();
    assert_eq!(p.record.name, by_digest);
    assert_eq!(p.record.image_id(), by_digest);

    // Through the index: the amd64 entry, imageID names the index digest.
    let multi = registry::pull(&store, &format!("{host}/team/app:multi"), &none)
        .await
        .unwrap();
    assert_eq!(marker_of(&store, &multi.record), "amd");
    let list_digest = reg.manifest_digest("team/app:multi");
    assert_eq!(
        multi.record.image_id(),
        format!("{host}/team/app@{list_digest}")
    );

    // Not found: says so.
    let e = registry::pull(&store, &format!("{host}/team/nope:v1"), &none)
        .await
        .unwrap_err();
    assert!(matches!(*e, PullError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("not found"), "{e}");

    // A wrong digest in the reference is refused (registry 404s it or we
    // catch the mismatch).
    let bogus = format!("{host}/team/app@sha256:{}", "0".repeat(64));
    assert!(registry::pull(&store, &bogus, &none).await.is_err());

    // A corrupted blob in the registry's storage is refused by digest and
    // leaves no layer behind. Push a fresh image so its layer is not local.
    build_image(&l, "v2", "second");
    reg.push(&l, "v2", "team/other:v2", &[]);
    let raw = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{host}/team/other:v2"))
        .output()
        .unwrap()
        .stdout;
    let m: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let f = reg.blob_file(&layer);
    let mut data = std::fs::read(&f).unwrap();
    let n = data.len();
    data[n / 2] ^= 0xff;
    std::fs::write(&f, &data).unwrap();
    let e = registry::pull(&store, &format!("{host}/team/other:v2"), &none)
        .await
        .unwrap_err();
    assert!(matches!(*e, PullError::DigestMismatch { .. }), "{e}");
    assert!(!store
        .layer_dir(layer.trim_start_matches("sha256:"))
        .exists());
    drop(reg);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_uses_pull_secret_credentials() {
    let dir = tmp("auth");
    let l = dir.join("oci");
    build_image(&l, "v1", "secret-image");
    let reg = Registry::start(&dir.join("registry"), Some(("alice", "s3cret")));
    reg.push(&l, "v1", "private/app:v1", &[]);
    let host = reg.host();
    let store = ImageStore::new(&dir.join("node"));
    let img = format!("{host}/private/app:v1");

    let e = registry::pull(&store, &img, &Vec::new()).await.unwrap_err();
    assert!(matches!(*e, PullError::Unauthorized { .. }), "{e}");
    assert!(e.to_string().contains("add an imagePullSecret"), "{e}");

    let wrong = vec![(
        host.clone(),
        Credentials {
            username: "alice".into(),
            password: "wrong".into(),
        },
    )];
    let e = registry::pull(&store, &img, &wrong).await.unwrap_err();
    assert!(e.to_string().contains("were rejected"), "{e}");

    // Credentials as a dockerconfigjson Secret carries them.
    let mut data = std::collections::BTreeMap::new();
    data.insert(
        ".dockerconfigjson".to_string(),
        serde_json::to_vec(&serde_json::json!({"auths": {host.clone(): {"username": "alice", "password": "s3cret"}}}))
            .unwrap(),
    );
    let keyring = registry::parse_pull_secret("kubernetes.io/dockerconfigjson", &data).unwrap();
    let p = registry::pull(&store, &img, &keyring).await.unwrap();
    assert_eq!(marker_of(&store, &p.record), "secret-image");
    drop(reg);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulled_image_runs_in_a_container() {
    let dir = tmp("run");
    let l = dir.join("oci");
    build_image(&l, "v1", "from-the-registry");
    let reg = Registry::start(&dir.join("registry"), None);
    reg.push(&l, "v1", "run/app:v1", &[]);
    let pid = std::process::id();
    let mut cfg = KubeletConfig::with_defaults("minik-test", "127.0.0.1", &dir.join("node"));
    cfg.bridge = format!("mkr{}", pid % 100000);
    cfg.pod_cidr = "10.251.40.0/24".into();
    let m = Machinery::new(&cfg).unwrap();
    let img = format!("{}/run/app:v1", reg.host());
    let rec = registry::pull(&m.images, &img, &Vec::new())
        .await
        .unwrap()
        .record;
    let pm = PodMeta {
        uid: format!("regpull-{pid}"),
        namespace: "default".into(),
        name: "pulled".into(),
        host_network: false,
        dns_policy: "ClusterFirst".into(),
        host_aliases: vec![],
        grace_seconds: 1,
        hostname: None,
        subdomain: None,
    };
    let m2 = m.clone();
    let pm2 = pm.clone();
    let sb = tokio::task::spawn_blocking(move || m2.create_sandbox(&pm2))
        .await
        .unwrap()
        .unwrap();
    let (tx, _rx) = mpsc::unbounded_channel::<ExitInfo>();
    let c = Container {
        name: "app".into(),
        image: Some(img.clone()),
        ..Default::default()
    };
    let run = m
        .start_container(&pm, &sb, &rec, &c, ContainerInputs::default(), tx)
        .await
        .unwrap();
    let mut log = String::new();
    for _ in 0..100 {
        log = std::fs::read_to_string(&run.log_path).unwrap_or_default();
        if log.contains("marker: from-the-registry") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(log.contains("marker: from-the-registry"), "{log}");
    minik_kubelet::teardown(&cfg).unwrap();
    drop(reg);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Token auth as Docker Hub does it: a front that answers 401 with
/// `WWW-Authenticate: Bearer realm=…,service=…,scope=…`, a token endpoint
/// that wants basic credentials, and the real registry behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_auth_like_docker_hub() {
    use axum::extract::{Request, State};
    use axum::response::IntoResponse;
    use std::sync::{Arc, Mutex};

    let dir = tmp("bearer");
    let l = dir.join("oci");
    build_image(&l, "v1", "behind-a-token");
    let reg = Registry::start(&dir.join("registry"), None);
    reg.push(&l, "v1", "tok/app:v1", &[]);

    #[derive(Clone)]
    struct Front {
        backend: String,
        realm: Arc<Mutex<String>>,
        scopes: Arc<Mutex<Vec<String>>>,
    }
    async fn token(State(f): State<Front>, req: Request) -> axum::response::Response {
        let q = req.uri().query().unwrap_or("").to_string();
        f.scopes.lock().unwrap().push(q);
        // alice:s3cret
        let ok = req
            .headers()
            .get("authorization")
            .is_some_and(|h| h == "Basic YWxpY2U6czNjcmV0");
        if ok {
            axum::Json(serde_json::json!({"token": "tok-123", "expires_in": 300})).into_response()
        } else {
            (axum::http::StatusCode::UNAUTHORIZED, "bad credentials").into_response()
        }
    }
    async fn v2(State(f): State<Front>, req: Request) -> axum::response::Response {
        let path = req.uri().path().to_string();
        let authorized = req
            .headers()
            .get("authorization")
            .is_some_and(|h| h == "Bearer tok-123");
        if !authorized {
            let realm = f.realm.lock().unwrap().clone();
            let challenge = format!(
                "Bearer realm=\"{realm}\",service=\"minik-test\",scope=\"repository:tok/app:pull\""
            );
            return (
                axum::http::StatusCode::UNAUTHORIZED,
                [("www-authenticate", challenge)],
                "{}",
            )
                .into_response();
        }
        let mut up = reqwest::Client::new().get(format!("{}{path}", f.backend));
        if let Some(a) = req.headers().get("accept") {
            up = up.header("accept", a.to_str().unwrap());
        }
        let resp = up.send().await.unwrap();
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = resp.bytes().await.unwrap();
        (
            axum::http::StatusCode::from_u16(status).unwrap(),
            [("content-type", ct)],
            body,
        )
            .into_response()
    }
    let front = Front {
        backend: format!("http://{}", reg.host()),
        realm: Arc::new(Mutex::new(String::new())),
        scopes: Arc::new(Mutex::new(Vec::new())),
    };
    let app = axum::Router::new()
        .route("/token", axum::routing::get(token))
        .route("/v2/{*rest}", axum::routing::get(v2))
        .with_state(front.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    *front.realm.lock().unwrap() = format!("http://{addr}/token");
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let store = ImageStore::new(&dir.join("node"));
    let img = format!("{addr}/tok/app:v1");
    let e = registry::pull(&store, &img, &Vec::new()).await.unwrap_err();
    assert!(matches!(*e, PullError::Unauthorized { .. }), "{e}");
    let keyring = vec![(
        addr.to_string(),
        Credentials {
            username: "alice".into(),
            password: "s3cret".into(),
        },
    )];
    let p = registry::pull(&store, &img, &keyring).await.unwrap();
    assert_eq!(marker_of(&store, &p.record), "behind-a-token");
    let scopes = front.scopes.lock().unwrap().clone();
    assert!(
        scopes
            .iter()
            .any(|q| q.contains("scope=repository%3Atok%2Fapp%3Apull")
                && q.contains("service=minik-test")),
        "{scopes:?}"
    );
    drop(reg);
    std::fs::remove_dir_all(&dir).unwrap();
}
