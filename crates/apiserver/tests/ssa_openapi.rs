//! `/openapi/v2` (protobuf, for kubectl 1.27/1.28) and server-side apply
//! (managedFields, conflicts, `--force-conflicts`), end to end: the API server
//! on a temp store over TLS on 127.0.0.1, driven by real kubectl builds (the
//! ones installed beside the `kubectl` dispatcher on PATH: kubectl.1.27 …).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod support;
use support::{start_kubectl_cluster as start, KubectlCluster as Cluster};

/// A kubectl build installed beside the dispatcher (`kubectl.1.27`), or the
/// dispatcher itself for `None`.
fn kubectl(minor: Option<u32>) -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", "readlink -f \"$(command -v kubectl)\""])
        .output()
        .expect("sh");
    let dispatcher = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    match minor {
        None => dispatcher,
        Some(m) => {
            let p = dispatcher
                .parent()
                .expect("kubectl's directory")
                .join(format!("kubectl.1.{m}"));
            assert!(p.exists(), "{} is not installed", p.display());
            p
        }
    }
}

/// Runs of a given kubectl build (`bin`), with a 90 s deadline.
impl Cluster {
    fn run_k(&self, bin: &Path, args: &[&str]) -> (bool, String, String) {
        self.run_with(bin, args, Duration::from_secs(90))
    }

    fn ok_k(&self, bin: &Path, args: &[&str]) -> String {
        let (ok, out, err) = self.run_k(bin, args);
        assert!(
            ok,
            "{} {args:?} failed:\nstdout: {out}\nstderr: {err}",
            bin.display()
        );
        out
    }

    fn json_k(&self, bin: &Path, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok_k(bin, &a)).unwrap()
    }

    /// `curl` with the admin certificate: (status line + headers, body).
    fn curl(&self, path: &str, headers: &[&str]) -> (String, Vec<u8>) {
        let d = self.dir.path();
        let hdr = d.join("curl.headers");
        let mut c = Command::new("curl");
        c.args(["-sS", "--max-time", "60", "-D"])
            .arg(&hdr)
            .arg("--cacert")
            .arg(d.join("ca.crt"))
            .arg("--cert")
            .arg(d.join("admin.crt"))
            .arg("--key")
            .arg(d.join("admin.key"));
        for h in headers {
            c.args(["-H", h]);
        }
        let out = c
            .arg(format!("https://127.0.0.1:{}{path}", self.port))
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (std::fs::read_to_string(&hdr).unwrap(), out.stdout)
    }
}

const PB: &str = "Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// The protobuf form decodes (with our own decoder) into a Swagger 2.0
/// document kubectl can use: kinds found by their GVK, PATCH operations that
/// list `fieldValidation`, patch-merge keys; ETag/304 and gzip work.
#[test]
fn openapi_v2_protobuf_decodes_with_etag_and_gzip() {
    let c = start();
    let t = Instant::now();
    let (h, body) = c.curl("/openapi/v2?timeout=32s", &[PB]);
    let first = t.elapsed();
    let t = Instant::now();
    let (_, again) = c.curl("/openapi/v2?timeout=32s", &[PB]);
    eprintln!(
        "/openapi/v2 protobuf: {} bytes; first GET (builds it) {:?}, cached GET {:?}",
        body.len(),
        first,
        t.elapsed()
    );
    assert_eq!(again, body, "the cached document is served again");
    assert!(
        h.starts_with("HTTP/1.1 200") || h.starts_with("HTTP/2 200"),
        "{h}"
    );
    assert_eq!(
        header(&h, "content-type"),
        Some("application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
    );
    // protobuf, not JSON: the first field is `swagger = 1` ("2.0")
    assert_eq!(&body[..5], b"\x0a\x032.0");
    let doc = minik_apimachinery::openapi_v2::decode_document(&body).expect("our protobuf decodes");
    assert_eq!(doc["swagger"], "2.0");
    let defs = doc["definitions"].as_object().unwrap();
    let deploy = &defs["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deploy["x-kubernetes-group-version-kind"],
        serde_json::json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
    );
    assert_eq!(
        deploy["properties"]["spec"]["$ref"],
        "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
    );
    let containers = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(
        containers["items"]["$ref"],
        "#/definitions/io.k8s.api.core.v1.Container"
    );
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"]["kind"],
        "Deployment"
    );
    assert!(patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
    // the JSON form is the same document
    let (hj, json) = c.curl("/openapi/v2", &["Accept: application/json"]);
    assert_eq!(header(&hj, "content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(json["definitions"], doc["definitions"]);
    // ETag → 304 Not Modified, for either form
    let etag = header(&h, "etag").expect("an ETag").to_string();
    let (h304, empty) = c.curl("/openapi/v2", &[PB, &format!("If-None-Match: {etag}")]);
    assert!(h304.contains(" 304"), "{h304}");
    assert!(empty.is_empty());
    let (h200, _) = c.curl("/openapi/v2", &[PB, "If-None-Match: \"stale\""]);
    assert!(h200.contains(" 200"), "{h200}");
    // gzip when asked: smaller, and the same bytes once inflated
    let (hz, gz) = c.curl("/openapi/v2", &[PB, "Accept-Encoding: gzip"]);
    assert_eq!(header(&hz, "content-encoding"), Some("gzip"));
    assert_eq!(&gz[..2], b"\x1f\x8b");
    assert!(gz.len() * 3 < body.len(), "{} vs {}", gz.len(), body.len());
    eprintln!("gzip: {} bytes", gz.len());
    // unacceptable media types are refused, not answered with JSON
    let (h406, _) = c.curl("/openapi/v2", &["Accept: text/html"]);
    assert!(h406.contains(" 406"), "{h406}");
}

const DEPLOY: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: NAME
  labels: {app: web, tier: fe}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: minik/hello:1
        env:
        - {name: A, value: '1'}
        - {name: B, value: '2'}
";

/// kubectl 1.27 and 1.28 read `/openapi/v2` (protobuf) for `apply`: create,
/// then change the file and apply again (three-way merge with the
/// last-applied annotation: fields dropped from the file are removed).
#[test]
fn kubectl_1_27_and_1_28_apply_twice() {
    let c = start();
    for minor in [27, 28] {
        let k = kubectl(Some(minor));
        let name = format!("web{minor}");
        let v1 = DEPLOY.replace("NAME", &name);
        let f1 = c.file(&format!("{name}-1.yaml"), &v1);
        let (ok, out, log) = c.run_k(&k, &["apply", "-f", &f1, "-v=6"]);
        assert!(ok, "{log}");
        assert_eq!(out.trim(), format!("deployment.apps/{name} created"));
        // this build reads the protobuf v2 document (and gets it)
        assert!(
            log.lines().any(|l| l.contains("GET https://")
                && l.contains("/openapi/v2")
                && l.contains("200 OK")),
            "kubectl 1.{minor} did not fetch /openapi/v2:\n{log}"
        );
        let v2 = v1
            .replace("labels: {app: web, tier: fe}", "labels: {app: web}")
            .replace("replicas: 1", "replicas: 3")
            .replace("minik/hello:1", "minik/hello:2")
            .replace("        - {name: B, value: '2'}\n", "");
        let f2 = c.file(&format!("{name}-2.yaml"), &v2);
        assert_eq!(
            c.ok_k(&k, &["apply", "-f", &f2]).trim(),
            format!("deployment.apps/{name} configured")
        );
        let d = c.json_k(&k, &["get", "deployment", &name]);
        assert_eq!(d["spec"]["replicas"], 3);
        assert!(d["metadata"]["labels"].get("tier").is_none(), "{d}");
        let ctr = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(ctr["image"], "minik/hello:2");
        assert_eq!(ctr["env"], serde_json::json!([{"name": "A", "value": "1"}]));
        assert_eq!(
            c.ok_k(&k, &["apply", "-f", &f2]).trim(),
            format!("deployment.apps/{name} unchanged")
        );
        // strict validation from the v2 schema (or the server) refuses unknown fields
        let bad = c.file(
            &format!("{name}-bad.yaml"),
            &v2.replace("replicas: 3", "replicas: 3\n  replicaz: 4"),
        );
        let (ok, _, err) = c.run_k(&k, &["apply", "-f", &bad]);
        assert!(!ok && err.contains("replicaz"), "{err}");
        // explain and diff work with this build too
        let ex = c.ok_k(&k, &["explain", "deployment.spec.replicas"]);
        assert!(ex.contains("replicas") && ex.contains("integer"), "{ex}");
        let f3 = c.file(
            &format!("{name}-3.yaml"),
            &v2.replace("replicas: 3", "replicas: 4"),
        );
        let (ok, out, err) = c.run_k(&k, &["diff", "-f", &f3]);
        assert!(
            !ok && out.contains("-  replicas: 3") && out.contains("+  replicas: 4"),
            "{out}{err}"
        );
    }
}

fn managers(obj: &serde_json::Value) -> Vec<(String, String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
                    (s("manager"), s("operation"), s("subresource"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The managedFields entry of `manager` with `operation` (the order of the
/// entries is not part of the contract).
fn entry<'a>(obj: &'a serde_json::Value, manager: &str, operation: &str) -> &'a serde_json::Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|e| e["manager"] == manager && e["operation"] == operation)
        })
        .unwrap_or_else(|| panic!("no {operation} entry of {manager}: {:?}", managers(obj)))
}

/// `kubectl apply --server-side`, then `kubectl scale` (an Update through
/// the scale subresource takes spec.replicas), then applying other
/// replicas again conflicts (409 with Kubernetes' message) until
/// `--force-conflicts`; managedFields only show with `--show-managed-fields`.
#[test]
fn server_side_apply_conflicts_after_scale_and_force_wins() {
    let c = start();
    let k = kubectl(None);
    let v1 = DEPLOY.replace("NAME", "ssa");
    let f1 = c.file("ssa-1.yaml", &v1);
    assert_eq!(
        c.ok_k(&k, &["apply", "--server-side", "-f", &f1]).trim(),
        "deployment.apps/ssa serverside-applied"
    );
    let d = c.json_k(&k, &["get", "deployment", "ssa", "--show-managed-fields"]);
    let mf = entry(&d, "kubectl", "Apply");
    assert_eq!(
        (
            mf["manager"].as_str(),
            mf["operation"].as_str(),
            mf["apiVersion"].as_str()
        ),
        (Some("kubectl"), Some("Apply"), Some("apps/v1"))
    );
    assert_eq!(mf["fieldsType"], "FieldsV1");
    assert!(mf["time"].is_string());
    let f = &mf["fieldsV1"];
    assert_eq!(f["f:spec"]["f:replicas"], serde_json::json!({}));
    let ctr = &f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
    assert_eq!(ctr["."], serde_json::json!({}));
    assert!(
        ctr["f:env"]["k:{\"name\":\"A\"}"]["f:value"].is_object(),
        "{f}"
    );
    // hidden by kubectl unless asked for
    let plain = c.json_k(&k, &["get", "deployment", "ssa"]);
    assert!(plain["metadata"].get("managedFields").is_none());

    c.ok_k(&k, &["scale", "deployment", "ssa", "--replicas=3"]);
    let d = c.json_k(&k, &["get", "deployment", "ssa", "--show-managed-fields"]);
    let ms = managers(&d);
    let scaler = ms
        .iter()
        .find(|(_, op, sub)| op == "Update" && sub == "scale")
        .unwrap_or_else(|| panic!("no Update entry for the scale subresource: {ms:?}"))
        .0
        .clone();
    let applier = entry(&d, "kubectl", "Apply")["fieldsV1"]["f:spec"].clone();
    assert!(
        applier.get("f:replicas").is_none(),
        "the applier lost replicas: {applier}"
    );

    // applying replicas: 2 now conflicts with the scaler
    let v2 = v1.replace("replicas: 1", "replicas: 2");
    let f2 = c.file("ssa-2.yaml", &v2);
    let (ok, out, err) = c.run_k(&k, &["apply", "--server-side", "-f", &f2]);
    assert!(!ok, "apply should conflict: {out}");
    let want = format!(
        "Apply failed with 1 conflict: conflict with \"{scaler}\" with subresource \"scale\" using apps/v1: .spec.replicas"
    );
    assert!(err.contains(&want), "{err}");
    assert!(
        err.contains("--force-conflicts"),
        "kubectl explains the way out: {err}"
    );
    assert_eq!(
        c.json_k(&k, &["get", "deployment", "ssa"])["spec"]["replicas"],
        3
    );
    // the raw Status carries the causes
    let (ok, _, err) = c.run_k(&k, &["apply", "--server-side", "-f", &f2, "-v=8"]);
    assert!(!ok);
    // (kubectl logs the body with its quotes escaped)
    let body = err.replace("\\\"", "\"");
    assert!(
        body.contains("\"reason\":\"Conflict\"")
            && body.contains("\"type\":\"FieldManagerConflict\"")
            && body.contains("\"field\":\".spec.replicas\""),
        "{err}"
    );

    // an apply to the status subresource records an Apply entry for it
    let st = c.file(
        "ssa-status.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ssa}\nstatus: {observedGeneration: 7}\n",
    );
    c.ok_k(
        &k,
        &[
            "apply",
            "--server-side",
            "--subresource=status",
            "--field-manager=st",
            "-f",
            &st,
        ],
    );
    let d = c.json_k(&k, &["get", "deployment", "ssa", "--show-managed-fields"]);
    assert_eq!(d["status"]["observedGeneration"], 7, "{d}");
    assert!(
        managers(&d).contains(&("st".to_string(), "Apply".to_string(), "status".to_string())),
        "{:?}",
        managers(&d)
    );
    assert_eq!(
        d["spec"]["replicas"], 3,
        "a status apply leaves the spec alone"
    );

    // --force-conflicts takes the field over
    c.ok_k(
        &k,
        &["apply", "--server-side", "--force-conflicts", "-f", &f2],
    );
    let d = c.json_k(&k, &["get", "deployment", "ssa", "--show-managed-fields"]);
    assert_eq!(d["spec"]["replicas"], 2);
    assert!(entry(&d, "kubectl", "Apply")["fieldsV1"]["f:spec"]
        .get("f:replicas")
        .is_some());
    assert!(
        !managers(&d).iter().any(|(_, _, sub)| sub == "scale"),
        "the scaler owned nothing else, so its entry is gone: {:?}",
        managers(&d)
    );
    // and now applying the same again is a no-op
    let rv = d["metadata"]["resourceVersion"].clone();
    c.ok_k(&k, &["apply", "--server-side", "-f", &f2]);
    assert_eq!(
        c.json_k(&k, &["get", "deployment", "ssa"])["metadata"]["resourceVersion"],
        rv
    );
}

/// Client-side apply records an Update entry (`kubectl-client-side-apply`);
/// server-side apply of another value then conflicts with it, with exactly
/// the message Kubernetes gives; `kubectl create` records `kubectl-create`.
#[test]
fn client_side_apply_then_server_side_apply_conflicts() {
    let c = start();
    let k = kubectl(None);
    let v1 = DEPLOY.replace("NAME", "csa");
    let f1 = c.file("csa-1.yaml", &v1);
    c.ok_k(&k, &["apply", "-f", &f1]);
    let d = c.json_k(&k, &["get", "deployment", "csa", "--show-managed-fields"]);
    assert_eq!(
        managers(&d),
        vec![(
            "kubectl-client-side-apply".to_string(),
            "Update".to_string(),
            String::new()
        )]
    );
    let labels = &d["metadata"]["managedFields"][0]["fieldsV1"]["f:metadata"]["f:labels"];
    assert_eq!(labels["."], serde_json::json!({}), "{labels}");
    let f2 = c.file("csa-2.yaml", &v1.replace("replicas: 1", "replicas: 5"));
    let (ok, _, err) = c.run_k(&k, &["apply", "--server-side", "-f", &f2]);
    assert!(!ok);
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"),
        "{err}"
    );
    // the same values are shared, not a conflict
    c.ok_k(&k, &["apply", "--server-side", "-f", &f1]);
    c.ok_k(
        &k,
        &["apply", "--server-side", "--force-conflicts", "-f", &f2],
    );
    assert_eq!(
        c.json_k(&k, &["get", "deployment", "csa"])["spec"]["replicas"],
        5
    );

    c.ok_k(&k, &["create", "configmap", "cm", "--from-literal=a=1"]);
    let cm = c.json_k(&k, &["get", "configmap", "cm", "--show-managed-fields"]);
    assert_eq!(
        managers(&cm),
        vec![(
            "kubectl-create".to_string(),
            "Update".to_string(),
            String::new()
        )]
    );
    assert_eq!(
        cm["metadata"]["managedFields"][0]["fieldsV1"],
        serde_json::json!({"f:data": {".": {}, "f:a": {}}})
    );
    // a label added by `kubectl label` belongs to its writer
    c.ok_k(&k, &["label", "configmap", "cm", "team=x"]);
    let cm = c.json_k(&k, &["get", "configmap", "cm", "--show-managed-fields"]);
    let ms = managers(&cm);
    assert_eq!(ms.len(), 2, "{ms:?}");
    let labeler = entry(&cm, "kubectl-label", "Update");
    assert_eq!(
        labeler["fieldsV1"]["f:metadata"]["f:labels"]["f:team"],
        serde_json::json!({}),
        "{cm}"
    );
    // the documented way to clear managedFields: overwrite them with [{}]
    c.ok_k(
        &k,
        &[
            "patch",
            "configmap",
            "cm",
            "--type=merge",
            "-p",
            r#"{"metadata":{"managedFields":[{}]}}"#,
        ],
    );
    let cm = c.json_k(&k, &["get", "configmap", "cm", "--show-managed-fields"]);
    assert!(cm["metadata"].get("managedFields").is_none(), "{cm}");
}

const CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.h4.example.com
spec:
  group: h4.example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
              color: {type: string}
";

/// A CustomResourceDefinition's schema joins `/openapi/v2`, so kubectl 1.27
/// can apply its custom resources (and its validation sees their fields).
#[test]
fn crd_schemas_join_openapi_v2_for_kubectl_1_27() {
    let c = start();
    let k = kubectl(Some(27));
    let (_, before) = c.curl("/openapi/v2", &[PB]);
    let crd = c.file("crd.yaml", CRD);
    c.ok_k(&kubectl(None), &["apply", "-f", &crd]);
    // the CRD is served once it is established
    let deadline = Instant::now() + Duration::from_secs(30);
    let doc = loop {
        let (_, body) = c.curl("/openapi/v2", &[PB]);
        let doc = minik_apimachinery::openapi_v2::decode_document(&body).unwrap();
        let found = doc["definitions"].as_object().unwrap().values().any(|d| {
            d["x-kubernetes-group-version-kind"]
                .as_array()
                .is_some_and(|g| g.iter().any(|g| g["kind"] == "Widget"))
        });
        if found {
            break doc;
        }
        assert!(Instant::now() < deadline, "Widget never joined /openapi/v2");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(!before.is_empty());
    assert!(doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .any(|p| p.starts_with("/apis/h4.example.com/v1/")));
    // built-in kinds are still there
    assert!(doc["definitions"]
        .get("io.k8s.api.apps.v1.Deployment")
        .is_some());
    let w = c.file(
        "w.yaml",
        "apiVersion: h4.example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {size: 3, color: red}\n",
    );
    assert_eq!(
        c.ok_k(&k, &["apply", "-f", &w]).trim(),
        "widget.h4.example.com/w created"
    );
    let w2 = c.file(
        "w2.yaml",
        "apiVersion: h4.example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {size: 4}\n",
    );
    assert_eq!(
        c.ok_k(&k, &["apply", "-f", &w2]).trim(),
        "widget.h4.example.com/w configured"
    );
    let got = c.json_k(&k, &["get", "widget", "w"]);
    assert_eq!(got["spec"], serde_json::json!({"size": 4}), "{got}");
}
