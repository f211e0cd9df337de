//! minik-registry against real clients: skopeo pushes (OCI, Docker v2
//! schema 2, a multi-arch index) and pulls back byte-identical manifests;
//! the raw API for chunked uploads, range and digest checks, tags/list and
//! _catalog. Needs skopeo, umoci and busybox-static.

#[path = "../../../tests/registry_support/mod.rs"]
mod registry_support;

use registry_support::{build_image, build_index, sha256_hex};
use std::path::PathBuf;
use std::process::Command;

async fn start(root: PathBuf) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    for d in ["blobs/sha256", "repositories", "uploads"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    tokio::spawn(async move {
        axum::serve(listener, minik_registry::router(root))
            .await
            .unwrap()
    });
    addr
}

fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = Command::new("skopeo").args(args).output().expect("skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("minik-registry-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pushes_and_pulls_back() {
    let dir = tmp("skopeo");
    let layout = dir.join("oci");
    build_image(&layout, "v1", "one");
    build_image(&layout, "arm", "two");
    build_index(&layout, "multi", &[("arm", "arm64"), ("v1", "amd64")]);
    let addr = start(dir.join("store")).await;
    let l = layout.display().to_string();
    let push = |src: &str, dest: &str, extra: &[&str]| {
        let mut a = vec!["copy", "--quiet", "--dest-tls-verify=false"];
        a.extend_from_slice(extra);
        let s = format!("oci:{l}:{src}");
        let d = format!("docker://{addr}/{dest}");
        a.push(&s);
        a.push(&d);
        tokio::task::block_in_place(|| skopeo(&a));
    };
    push("v1", "team/app:v1", &[]);
    push("v1", "team/app:v1d", &["--format", "v2s2"]);
    push("multi", "team/app:multi", &["--multi-arch", "all"]);
    // A second push of the same blobs (they exist: HEAD answers, no upload).
    push("v1", "other/app:v1", &[]);

    let raw = |r: &str| {
        tokio::task::block_in_place(|| {
            skopeo(&[
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{addr}/{r}"),
            ])
        })
    };
    // umoci's manifests carry no mediaType: the stored Content-Type says it.
    let ct = reqwest::Client::new()
        .get(format!("http://{addr}/v2/team/app/manifests/v1"))
        .send()
        .await
        .unwrap()
        .headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(ct, "application/vnd.oci.image.manifest.v1+json");
    let d: serde_json::Value = serde_json::from_slice(&raw("team/app:v1d")).unwrap();
    assert_eq!(
        d["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let idx: serde_json::Value = serde_json::from_slice(&raw("team/app:multi")).unwrap();
    assert_eq!(idx["manifests"].as_array().unwrap().len(), 2);
    // By digest, the same bytes.
    let bytes = raw("team/app:v1");
    let digest = format!("sha256:{}", sha256_hex(&bytes));
    assert_eq!(raw(&format!("team/app@{digest}")), bytes);

    // Pull back into an OCI layout: every blob arrives and verifies (skopeo checks).
    let back = dir.join("back");
    let back_ref = format!("oci:{}:x", back.display());
    tokio::task::block_in_place(|| {
        skopeo(&[
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{addr}/team/app:v1d"),
            &back_ref,
        ])
    });
    assert!(back.join("index.json").is_file());

    let http = reqwest::Client::new();
    let tags: serde_json::Value = http
        .get(format!("http://{addr}/v2/team/app/tags/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["multi", "v1", "v1d"]));
    let cat: serde_json::Value = http
        .get(format!("http://{addr}/v2/_catalog"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        cat["repositories"],
        serde_json::json!(["other/app", "team/app"])
    );
    let missing = http
        .get(format!("http://{addr}/v2/team/app/manifests/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let e: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(e["errors"][0]["code"], "MANIFEST_UNKNOWN");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_uploads_are_checked() {
    let dir = tmp("chunks");
    let addr = start(dir.join("store")).await;
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    let v2 = http.get(format!("{base}/v2/")).send().await.unwrap();
    assert_eq!(v2.status(), 200);
    assert_eq!(
        v2.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );

    let data = b"hello chunked world".to_vec();
    let digest = format!("sha256:{}", sha256_hex(&data));
    let r = http
        .post(format!("{base}/v2/c/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let r = http
        .patch(format!("{base}{loc}"))
        .header("content-range", "0-5")
        .body(data[..6].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["range"], "0-5");
    // A chunk that does not continue where the upload is: 416.
    let r = http
        .patch(format!("{base}{loc}"))
        .header("content-range", "3-8")
        .body(data[3..9].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    let r = http
        .patch(format!("{base}{loc}"))
        .header("content-range", "6-11")
        .body(data[6..12].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["range"], "0-11");
    // A wrong digest on the final PUT is refused.
    let wrong = format!("sha256:{}", "0".repeat(64));
    let r = http
        .put(format!("{base}{loc}?digest={wrong}"))
        .body(data[12..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let head = http
        .head(format!("{base}/v2/c/blobs/{wrong}"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 404);

    // Again, right: the blob is stored and served with its digest.
    let r = http
        .post(format!("{base}/v2/c/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    http.patch(format!("{base}{loc}"))
        .body(data[..10].to_vec())
        .send()
        .await
        .unwrap();
    let r = http
        .put(format!("{base}{loc}?digest={digest}"))
        .body(data[10..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    let got = http
        .get(format!("{base}/v2/c/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.headers()["docker-content-digest"], digest.as_str());
    assert_eq!(got.bytes().await.unwrap().to_vec(), data);

    // A manifest naming a blob the registry lacks is refused.
    let man = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": data.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": wrong, "size": 1}],
    });
    let r = http
        .put(format!("{base}/v2/c/manifests/v1"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(serde_json::to_vec(&man).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN");
    // Bad names are refused.
    let r = http
        .get(format!("{base}/v2/Bad/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    std::fs::remove_dir_all(&dir).unwrap();
}
