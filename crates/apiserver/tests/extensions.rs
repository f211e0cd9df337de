//! End-to-end tests of the API server's extension points, driven by the real
//! `kubectl` against the API server over TLS on 127.0.0.1: CustomResource-
//! Definitions (discovery, CRUD, printer columns, schema validation, pruning,
//! status and scale subresources, explain, cleanup), API aggregation
//! (APIService → a real TLS backend reached through a Service and its
//! Endpoints) and the nodes/services proxy subresources.

use std::process::Stdio;
use std::time::{Duration, Instant};

mod support;
use support::{b64, serve_on_loopback, start_kubectl_cluster as start, KubectlCluster as Cluster};

/// A kubeconfig that authenticates as a new service account (no RBAC yet).
fn service_account_kubeconfig(c: &Cluster, sa: &str) -> String {
    c.ok(&["create", "serviceaccount", sa]);
    let token = c
        .ok(&["create", "token", sa, "--duration=1h"])
        .trim()
        .to_string();
    c.token_kubeconfig(&format!("{sa}-kubeconfig"), &token)
}

const CRONTAB_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames: [ct]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
    additionalPrinterColumns:
    - name: Spec
      type: string
      description: The cron spec defining the interval a CronJob is run
      jsonPath: .spec.cronSpec
    - name: Replicas
      type: integer
      description: The number of jobs launched by the CronJob
      jsonPath: .spec.replicas
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: What the cron tab runs and when.
            required: [cronSpec]
            properties:
              cronSpec:
                type: string
                description: A cron expression, five fields.
                pattern: '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'
              image:
                type: string
              replicas:
                type: integer
                minimum: 1
                maximum: 10
                default: 1
              policy:
                type: string
                enum: [Allow, Forbid]
          status:
            type: object
            properties:
              replicas:
                type: integer
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

const CRONTAB: &str = r#"
apiVersion: stable.example.com/v1
kind: CronTab
metadata:
  name: my-cron
  labels: {team: a}
spec:
  cronSpec: "* * * * */5"
  image: my-awesome-cron-image
"#;

#[test]
fn crd_lifecycle_with_kubectl() {
    let c = start();
    let crd = c.file("crd.yaml", CRONTAB_CRD);
    let out = c.ok(&["apply", "-f", &crd]);
    assert!(
        out.contains(
            "customresourcedefinition.apiextensions.k8s.io/crontabs.stable.example.com created"
        ),
        "{out}"
    );
    c.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/crontabs.stable.example.com",
        "--timeout=20s",
    ]);
    let crd_json = c.json(&["get", "crd", "crontabs.stable.example.com"]);
    assert_eq!(
        crd_json["metadata"]["finalizers"],
        serde_json::json!(["customresourcecleanup.apiextensions.k8s.io"])
    );
    assert_eq!(crd_json["status"]["acceptedNames"]["kind"], "CronTab");
    assert_eq!(
        crd_json["status"]["storedVersions"],
        serde_json::json!(["v1"])
    );
    let crds = c.ok(&["get", "crd"]);
    assert!(
        crds.starts_with("NAME") && crds.contains("CREATED AT"),
        "{crds}"
    );
    assert!(crds.contains("crontabs.stable.example.com"), "{crds}");

    // discovery: api-resources and every name kubectl resolves
    let res = c.ok(&["api-resources", "--api-group=stable.example.com"]);
    let line = res
        .lines()
        .find(|l| l.starts_with("crontabs"))
        .unwrap_or_else(|| panic!("{res}"));
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>(),
        vec!["crontabs", "ct", "stable.example.com/v1", "true", "CronTab"]
    );
    let raw = c.ok(&["get", "--raw", "/apis/stable.example.com"]);
    let group: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(group["preferredVersion"]["version"], "v1");
    assert_eq!(group["versions"].as_array().unwrap().len(), 2);

    let obj = c.file("ct.yaml", CRONTAB);
    assert_eq!(
        c.ok(&["apply", "-f", &obj]).trim(),
        "crontab.stable.example.com/my-cron created"
    );
    // client-side apply again: a merge patch for a custom resource
    let changed = c.file(
        "ct2.yaml",
        &CRONTAB.replace("my-awesome-cron-image", "other-image"),
    );
    assert_eq!(
        c.ok(&["apply", "-f", &changed]).trim(),
        "crontab.stable.example.com/my-cron configured"
    );
    assert_eq!(
        c.json(&["get", "ct", "my-cron"])["spec"]["image"],
        "other-image"
    );
    assert_eq!(
        c.ok(&["apply", "-f", &obj]).trim(),
        "crontab.stable.example.com/my-cron configured"
    );
    assert_eq!(
        c.ok(&["apply", "-f", &obj]).trim(),
        "crontab.stable.example.com/my-cron unchanged"
    );
    let table = c.ok(&["get", "crontabs"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, vec!["NAME", "SPEC", "REPLICAS", "AGE"], "{table}");
    let row = lines.next().unwrap();
    assert!(
        row.starts_with("my-cron") && row.contains("* * * * */5"),
        "{table}"
    );
    // the schema default filled replicas
    assert_eq!(row.split_whitespace().nth(6), Some("1"), "{table}");
    for name in [
        "ct",
        "crontab",
        "CronTab",
        "crontabs.stable.example.com",
        "crontabs.v1.stable.example.com",
    ] {
        let out = c.ok(&["get", name, "my-cron", "-o", "name"]);
        assert_eq!(out.trim(), "crontab.stable.example.com/my-cron", "{name}");
    }
    // the category `all` includes it
    assert!(c
        .ok(&["get", "all"])
        .contains("crontab.stable.example.com/my-cron"));
    // selectors
    assert!(c
        .ok(&["get", "ct", "-l", "team=a", "-o", "name"])
        .contains("my-cron"));
    assert!(c
        .ok(&["get", "ct", "-l", "team=b", "-o", "name"])
        .trim()
        .is_empty());
    assert!(c
        .ok(&[
            "get",
            "ct",
            "--field-selector",
            "metadata.name=my-cron",
            "-o",
            "name"
        ])
        .contains("my-cron"));
    // the other served version shows the same object with its apiVersion
    let beta = c.json(&["get", "crontabs.v1beta1.stable.example.com", "my-cron"]);
    assert_eq!(beta["apiVersion"], "stable.example.com/v1beta1");
    assert_eq!(beta["spec"]["image"], "my-awesome-cron-image");

    // a default added to the CRD later shows on objects stored before it
    c.ok(&[
        "patch", "crd", "crontabs.stable.example.com", "--type=json", "-p",
        r#"[{"op":"add","path":"/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/policy/default","value":"Allow"}]"#,
    ]);
    assert_eq!(c.json(&["get", "ct", "my-cron"])["spec"]["policy"], "Allow");

    // RBAC applies to custom resources like any other
    let sa = service_account_kubeconfig(&c, "robot");
    let err = c.fails(&["--kubeconfig", &sa, "get", "crontabs"]);
    assert!(
        err.contains("crontabs.stable.example.com is forbidden: User \"system:serviceaccount:default:robot\" cannot list resource \"crontabs\" in API group \"stable.example.com\""),
        "{err}"
    );
    c.ok(&[
        "create",
        "role",
        "ct-reader",
        "--verb=get,list",
        "--resource=crontabs.stable.example.com",
    ]);
    c.ok(&[
        "create",
        "rolebinding",
        "ct-reader",
        "--role=ct-reader",
        "--serviceaccount=default:robot",
    ]);
    assert!(c
        .ok(&["--kubeconfig", &sa, "get", "crontabs", "-o", "name"])
        .contains("my-cron"));
    assert!(c
        .fails(&["--kubeconfig", &sa, "delete", "ct", "my-cron"])
        .contains("forbidden"));

    // watch: a change to a custom object is streamed with its printer columns
    let mut watch = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .args(["get", "ct", "my-cron", "-w", "--output-watch-events"])
        .env("HOME", c.dir.path().join("home"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    c.ok(&["label", "ct", "my-cron", "watched=yes"]);
    std::thread::sleep(Duration::from_millis(1500));
    let _ = watch.kill();
    let out = watch.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ADDED") && text.contains("MODIFIED"),
        "{text}"
    );
    assert!(text.contains("* * * * */5"), "{text}");

    // unknown metadata fields are unknown fields too
    let meta = c.file(
        "meta.yaml",
        "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: meta\n  colour: red\nspec:\n  cronSpec: \"* * * * *\"\n",
    );
    let err = c.fails(&["create", "-f", &meta]);
    assert!(err.contains("unknown field \"metadata.colour\""), "{err}");

    // validation: 422 with kube's wording
    let bad = c.file(
        "bad.yaml",
        "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: bad\nspec:\n  cronSpec: nope\n  replicas: 20\n  policy: Maybe\n",
    );
    let err = c.fails(&["apply", "-f", &bad]);
    assert!(err.contains("The CronTab \"bad\" is invalid"), "{err}");
    assert!(
        err.contains("spec.replicas: Invalid value: 20: spec.replicas in body should be less than or equal to 10"),
        "{err}"
    );
    assert!(
        err.contains("spec.cronSpec: Invalid value: \"nope\": spec.cronSpec in body should match"),
        "{err}"
    );
    assert!(
        err.contains(
            "spec.policy: Unsupported value: \"Maybe\": supported values: \"Allow\", \"Forbid\""
        ),
        "{err}"
    );
    let missing = c.file(
        "missing.yaml",
        "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: missing\nspec:\n  image: x\n",
    );
    let err = c.fails(&["create", "-f", &missing]);
    assert!(err.contains("spec.cronSpec: Required value"), "{err}");

    // unknown fields: refused with strict validation, pruned otherwise
    let unknown = c.file(
        "unknown.yaml",
        "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: unknown\nspec:\n  cronSpec: \"* * * * *\"\n  bogus: 1\n",
    );
    let err = c.fails(&["create", "-f", &unknown]);
    assert!(err.contains("unknown field \"spec.bogus\""), "{err}");
    let (ok, _, warn) = c.run(&["create", "-f", &unknown, "--validate=warn"]);
    assert!(
        ok && warn.contains("unknown field \"spec.bogus\""),
        "{warn}"
    );
    let stored = c.json(&["get", "ct", "unknown"]);
    assert!(stored["spec"].get("bogus").is_none(), "{stored}");
    assert_eq!(stored["spec"]["replicas"], 1);

    // patches: merge and json work, strategic merge is refused like kube
    c.ok(&[
        "patch",
        "ct",
        "my-cron",
        "--type=merge",
        "-p",
        r#"{"spec":{"image":"v2"}}"#,
    ]);
    c.ok(&[
        "patch",
        "ct",
        "my-cron",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":3}]"#,
    ]);
    let err = c.fails(&["patch", "ct", "my-cron", "-p", r#"{"spec":{"image":"v3"}}"#]);
    assert!(
        err.contains("UnsupportedMediaType") || err.contains("unknown format"),
        "{err}"
    );
    let got = c.json(&["get", "ct", "my-cron"]);
    assert_eq!(
        (
            got["spec"]["image"].as_str(),
            got["spec"]["replicas"].as_i64()
        ),
        (Some("v2"), Some(3))
    );
    assert_eq!(got["metadata"]["generation"], 5);

    // status subresource: the main resource ignores status, /status only takes status
    c.ok(&[
        "patch",
        "ct",
        "my-cron",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":7}}"#,
    ]);
    assert!(c.json(&["get", "ct", "my-cron"]).get("status").is_none());
    c.ok(&[
        "patch",
        "ct",
        "my-cron",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":2},"spec":{"image":"ignored"}}"#,
    ]);
    let got = c.json(&["get", "ct", "my-cron"]);
    assert_eq!(got["status"]["replicas"], 2);
    assert_eq!(got["spec"]["image"], "v2");
    assert_eq!(
        got["metadata"]["generation"], 5,
        "status writes do not bump generation"
    );

    // scale subresource
    assert_eq!(
        c.ok(&["scale", "ct", "my-cron", "--replicas=5"]).trim(),
        "crontab.stable.example.com/my-cron scaled"
    );
    assert_eq!(c.json(&["get", "ct", "my-cron"])["spec"]["replicas"], 5);
    let scale: serde_json::Value = serde_json::from_str(&c.ok(&[
        "get",
        "--raw",
        "/apis/stable.example.com/v1/namespaces/default/crontabs/my-cron/scale",
    ]))
    .unwrap();
    assert_eq!(
        (
            scale["spec"]["replicas"].as_i64(),
            scale["status"]["replicas"].as_i64()
        ),
        (Some(5), Some(2))
    );

    // server-side apply
    let ssa = c.file(
        "ssa.yaml",
        "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: applied\nspec:\n  cronSpec: \"1 * * * *\"\n",
    );
    c.ok(&["apply", "--server-side", "-f", &ssa]);
    let got = c.json(&["get", "ct", "applied", "--show-managed-fields"]);
    assert_eq!(got["spec"]["cronSpec"], "1 * * * *");
    assert_eq!(got["metadata"]["managedFields"][0]["manager"], "kubectl");

    // kubectl explain reads the CRD's OpenAPI v3 document
    let explain = c.ok(&["explain", "crontab.spec"]);
    assert!(
        explain.contains("KIND:") && explain.contains("CronTab"),
        "{explain}"
    );
    assert!(
        explain.contains("cronSpec") && explain.contains("A cron expression"),
        "{explain}"
    );

    // the CRD's group-versions are Local APIServices, as kube registers them
    let apis = c.ok(&["get", "apiservices"]);
    for gv in ["v1.stable.example.com", "v1beta1.stable.example.com"] {
        let line = apis
            .lines()
            .find(|l| l.starts_with(&format!("{gv} ")))
            .unwrap_or_else(|| panic!("{gv} missing:\n{apis}"));
        assert_eq!(
            line.split_whitespace().collect::<Vec<_>>()[1..3],
            ["Local", "True"],
            "{apis}"
        );
    }

    // deleting the CRD deletes its objects and the resource leaves discovery
    c.ok(&[
        "delete",
        "crd",
        "crontabs.stable.example.com",
        "--timeout=30s",
    ]);
    // (kubectl's discovery cache may still map the name: then the list is a 404)
    let err = c.fails(&["get", "crontabs"]);
    assert!(
        err.contains("the server doesn't have a resource type \"crontabs\"")
            || err.contains("the server could not find the requested resource"),
        "{err}"
    );
    let res = c.ok(&["api-resources"]);
    assert!(!res.contains("crontabs"), "{res}");
    assert!(!c.ok(&["get", "apiservices"]).contains("stable.example.com"));
    let raw = c.run(&["get", "--raw", "/apis/stable.example.com/v1"]);
    assert!(!raw.0 && raw.2.contains("NotFound"), "{raw:?}");
    // recreate: the old objects are gone
    c.ok(&["apply", "-f", &crd]);
    c.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/crontabs.stable.example.com",
        "--timeout=20s",
    ]);
    let (ok, out, err) = c.run(&["get", "crontabs", "-A", "-o", "name"]);
    assert!(
        ok && out.trim().is_empty(),
        "objects survived the CRD: {out} {err}"
    );
}

#[test]
fn crd_names_conflict_and_cluster_scope() {
    let c = start();
    let crd = |name: &str, plural: &str, kind: &str, short: &str, scope: &str| {
        format!(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: {name}\nspec:\n  group: example.com\n  scope: {scope}\n  names:\n    plural: {plural}\n    kind: {kind}\n    shortNames: [{short}]\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        x-kubernetes-preserve-unknown-fields: true\n"
        )
    };
    let a = c.file(
        "a.yaml",
        &crd("widgets.example.com", "widgets", "Widget", "wd", "Cluster"),
    );
    c.ok(&["apply", "-f", &a]);
    let b = c.file(
        "b.yaml",
        &crd(
            "gadgets.example.com",
            "gadgets",
            "Gadget",
            "wd",
            "Namespaced",
        ),
    );
    c.ok(&["apply", "-f", &b]);
    let got = c.json(&["get", "crd", "gadgets.example.com"]);
    let names_accepted = got["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "NamesAccepted")
        .unwrap()
        .clone();
    assert_eq!(names_accepted["status"], "False", "{got}");
    assert_eq!(names_accepted["reason"], "MultipleNamesConflict");
    assert!(c
        .fails(&["get", "gadgets"])
        .contains("doesn't have a resource type"));
    // a name that is not plural.group is refused
    let wrong = c.file(
        "w.yaml",
        &crd("nope.example.com", "things", "Thing", "th", "Cluster"),
    );
    let err = c.fails(&["apply", "-f", &wrong]);
    assert!(
        err.contains("metadata.name: Invalid value: \"nope.example.com\": must be spec.names.plural+\".\"+spec.group"),
        "{err}"
    );
    // CEL rules are kept but not enforced: kubectl shows the server's warning
    let cel = c.file(
        "cel.yaml",
        &crd("rules.example.com", "rules", "Rule", "rl", "Cluster").replace(
            "x-kubernetes-preserve-unknown-fields: true\n",
            "x-kubernetes-preserve-unknown-fields: true\n        x-kubernetes-validations:\n        - rule: \"self.size() > 0\"\n",
        ),
    );
    let (ok, _, warn) = c.run(&["apply", "-f", &cel]);
    assert!(ok, "{warn}");
    assert!(
        warn.contains("Warning: x-kubernetes-validations (CEL) rules are stored but not enforced"),
        "{warn}"
    );

    // kubectl apply of a changed CRD: a strategic merge patch of the CRD
    let a2 = c.file(
        "a2.yaml",
        &crd("widgets.example.com", "widgets", "Widget", "wdg", "Cluster"),
    );
    assert_eq!(
        c.ok(&["apply", "-f", &a2]).trim(),
        "customresourcedefinition.apiextensions.k8s.io/widgets.example.com configured"
    );
    assert_eq!(
        c.ok(&["apply", "-f", &a2]).trim(),
        "customresourcedefinition.apiextensions.k8s.io/widgets.example.com unchanged"
    );
    // the freed short name lets the other CRD's names be accepted
    let got = c.json(&["get", "crd", "gadgets.example.com"]);
    assert_eq!(got["status"]["conditions"][0]["status"], "True", "{got}");
    assert_eq!(
        got["status"]["acceptedNames"]["shortNames"],
        serde_json::json!(["wd"])
    );
    assert!(c
        .ok(&["get", "gadgets", "-A", "-o", "name"])
        .trim()
        .is_empty());

    // cluster-scoped custom objects, with unknown fields preserved by the schema
    let w = c.file(
        "w1.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  anything: [1, 2]\n",
    );
    c.ok(&["apply", "-f", &w]);
    let got = c.json(&["get", "wdg", "w1"]);
    assert_eq!(got["spec"]["anything"], serde_json::json!([1, 2]));
    assert!(got["metadata"].get("namespace").is_none());
    let table = c.ok(&["get", "widgets"]);
    assert_eq!(
        table
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        vec!["NAME", "AGE"]
    );
    c.ok(&["delete", "widget", "w1"]);
    assert!(c.ok(&["get", "widgets", "-o", "name"]).trim().is_empty());
}

/// A TLS server standing in for metrics-server: a CA, a serving certificate
/// for `metrics-server.kube-system.svc`, and an axum app that serves the
/// metrics.k8s.io discovery document and lists, reporting who the API
/// server said the user was. Returns (port, CA PEM).
fn metrics_backend() -> (u16, String) {
    use axum::http::HeaderMap;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["metrics-server.kube-system.svc".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let cert_der = cert.der().clone();
    let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert_der], key_der)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let port = serve_on_loopback(move |listener| async move {
        let who = |h: &HeaderMap| {
            let user = h
                .get("x-remote-user")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let groups: Vec<String> = h
                .get_all("x-remote-group")
                .iter()
                .filter_map(|v| v.to_str().ok().map(String::from))
                .collect();
            let auth = h.contains_key("authorization");
            (user, groups, auth)
        };
        let app = axum::Router::new()
                .route(
                    "/apis/metrics.k8s.io/v1beta1",
                    axum::routing::get(|| async {
                        axum::Json(serde_json::json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "metrics.k8s.io/v1beta1",
                            "resources": [
                                {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
                                {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]}]}))
                    }),
                )
                .route(
                    "/apis/metrics.k8s.io/v1beta1/nodes",
                    axum::routing::get(move |h: HeaderMap, uri: axum::http::Uri| async move {
                        let (user, groups, auth) = who(&h);
                        axum::Json(serde_json::json!({"kind": "NodeMetricsList", "apiVersion": "metrics.k8s.io/v1beta1",
                            "metadata": {"annotations": {"user": user, "groups": groups.join(","), "authorization-forwarded": auth.to_string(), "query": uri.query().unwrap_or("")}},
                            "items": [{"metadata": {"name": "n1", "creationTimestamp": "2026-01-01T00:00:00Z"},
                                       "timestamp": "2026-01-01T00:00:00Z", "window": "10s",
                                       "usage": {"cpu": "250m", "memory": "512Mi"}}]}))
                    }),
                )
                .route(
                    "/apis/metrics.k8s.io/v1beta1/nodes/{name}",
                    axum::routing::get(|axum::extract::Path(name): axum::extract::Path<String>| async move {
                        axum::Json(serde_json::json!({"kind": "NodeMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
                            "metadata": {"name": name, "creationTimestamp": "2026-01-01T00:00:00Z"},
                            "timestamp": "2026-01-01T00:00:00Z", "window": "10s",
                            "usage": {"cpu": "250m", "memory": "512Mi"}}))
                    }),
                );
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let app = app.clone();
                        async move {
                            tower::ServiceExt::oneshot(app, req.map(axum::body::Body::new)).await
                        }
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .await;
            });
        }
    });
    (port, ca_cert.pem())
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn aggregated_api_through_service_and_endpoints() {
    let c = start();
    let (port, ca) = metrics_backend();
    let node = c.file(
        "node.yaml",
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\nstatus:\n  allocatable:\n    cpu: \"2\"\n    memory: 4Gi\n  capacity:\n    cpu: \"2\"\n    memory: 4Gi\n",
    );
    c.ok(&["create", "-f", &node]);
    let api = c.file(
        "apiservice.yaml",
        &format!(
            "apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata:\n  name: v1beta1.metrics.k8s.io\nspec:\n  group: metrics.k8s.io\n  version: v1beta1\n  groupPriorityMinimum: 100\n  versionPriority: 100\n  caBundle: {}\n  service:\n    namespace: kube-system\n    name: metrics-server\n    port: 443\n",
            b64(&ca)
        ),
    );
    c.ok(&["apply", "-f", &api]);
    // no Service yet: not available, with the reason
    let reason = || {
        let a = c.json(&["get", "apiservice", "v1beta1.metrics.k8s.io"]);
        a.pointer("/status/conditions/0/reason")
            .and_then(|r| r.as_str())
            .unwrap_or("")
            .to_string()
    };
    wait_until("ServiceNotFound", || reason() == "ServiceNotFound");
    let svc = c.file(
        "svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: metrics-server\n  namespace: kube-system\nspec:\n  ports:\n  - name: https\n    port: 443\n    targetPort: https\n",
    );
    c.ok(&["apply", "-f", &svc]);
    wait_until("MissingEndpoints", || reason() == "MissingEndpoints");
    let table = c.ok(&["get", "apiservice", "v1beta1.metrics.k8s.io"]);
    assert!(
        table.contains("kube-system/metrics-server") && table.contains("False (MissingEndpoints)"),
        "{table}"
    );
    // the hostNetwork-style endpoint: an address of this host
    let ep = c.file(
        "ep.yaml",
        &format!("apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: metrics-server\n  namespace: kube-system\nsubsets:\n- addresses:\n  - ip: 127.0.0.1\n  ports:\n  - name: https\n    port: {port}\n"),
    );
    c.ok(&["apply", "-f", &ep]);
    c.ok(&[
        "wait",
        "--for=condition=Available",
        "apiservice/v1beta1.metrics.k8s.io",
        "--timeout=30s",
    ]);
    let table = c.ok(&["get", "apiservices"]);
    let line = table
        .lines()
        .find(|l| l.starts_with("v1beta1.metrics.k8s.io"))
        .unwrap();
    assert_eq!(line.split_whitespace().nth(2), Some("True"), "{table}");
    // the built-in group-versions are Local APIServices
    let apps = table
        .lines()
        .find(|l| l.starts_with("v1.apps "))
        .unwrap_or_else(|| panic!("{table}"));
    assert_eq!(
        apps.split_whitespace().collect::<Vec<_>>()[1..3],
        ["Local", "True"],
        "{table}"
    );

    // requests are proxied with the user's identity, not its credentials
    let raw = c.ok(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes?limit=5"]);
    let list: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(list["items"][0]["usage"]["cpu"], "250m");
    let ann = &list["metadata"]["annotations"];
    assert_eq!(ann["user"], "minik-admin");
    assert!(
        ann["groups"].as_str().unwrap().contains("system:masters"),
        "{ann}"
    );
    assert_eq!(ann["authorization-forwarded"], "false");
    assert_eq!(ann["query"], "limit=5");

    // how much the aggregation hop costs, end to end through kubectl (printed)
    let time = |path: &str| {
        let t = Instant::now();
        for _ in 0..10 {
            c.ok(&["get", "--raw", path]);
        }
        t.elapsed() / 10
    };
    let direct = time("/api/v1/nodes/n1");
    let aggregated = time("/apis/metrics.k8s.io/v1beta1/nodes/n1");
    eprintln!("kubectl get --raw: direct {direct:?}, aggregated {aggregated:?} (mean of 10)");

    // RBAC in front of the backend: the aggregated resource must be granted
    let sa = service_account_kubeconfig(&c, "viewer");
    let err = c.fails(&[
        "--kubeconfig",
        &sa,
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/nodes",
    ]);
    assert!(
        err.contains("Forbidden") || err.contains("forbidden"),
        "{err}"
    );
    c.ok(&[
        "create",
        "clusterrole",
        "metrics-reader",
        "--verb=get,list",
        "--resource=nodes.metrics.k8s.io",
    ]);
    c.ok(&[
        "create",
        "clusterrolebinding",
        "metrics-reader",
        "--clusterrole=metrics-reader",
        "--serviceaccount=default:viewer",
    ]);
    let raw = c.ok(&[
        "--kubeconfig",
        &sa,
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/nodes",
    ]);
    let list: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        list["metadata"]["annotations"]["user"],
        "system:serviceaccount:default:viewer"
    );
    assert!(list["metadata"]["annotations"]["groups"]
        .as_str()
        .unwrap()
        .contains("system:serviceaccounts:default"));

    // discovery shows the aggregated group
    let res = c.ok(&["api-resources", "--api-group=metrics.k8s.io"]);
    let line = res
        .lines()
        .find(|l| l.starts_with("nodes"))
        .unwrap_or_else(|| panic!("{res}"));
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>(),
        vec!["nodes", "metrics.k8s.io/v1beta1", "false", "NodeMetrics"]
    );
    let group: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "--raw", "/apis/metrics.k8s.io"])).unwrap();
    assert_eq!(
        group["preferredVersion"]["groupVersion"],
        "metrics.k8s.io/v1beta1"
    );

    // kubectl top reads the metrics API through the aggregator
    let top = c.ok(&["top", "node", "n1"]);
    let mut lines = top.lines();
    assert!(lines.next().unwrap().starts_with("NAME"), "{top}");
    let cols: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(cols[0..3], ["n1", "250m", "12%"], "{top}");

    // the backend going away makes the APIService unavailable again
    c.ok(&["delete", "endpoints", "metrics-server", "-n", "kube-system"]);
    wait_until("MissingEndpoints again", || reason() == "MissingEndpoints");
    let err = c.fails(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes"]);
    assert!(
        err.contains("ServiceUnavailable") || err.contains("not available"),
        "{err}"
    );
    c.ok(&["delete", "apiservice", "v1beta1.metrics.k8s.io"]);
    let res = c.ok(&["api-resources"]);
    assert!(!res.contains("metrics.k8s.io"), "{res}");
}

/// An HTTP server that echoes what it got: method, path, query, body.
fn echo_server() -> u16 {
    serve_on_loopback(move |listener| async move {
        let app = axum::Router::new().fallback(
            |method: axum::http::Method, uri: axum::http::Uri, body: String| async move {
                axum::Json(
                    serde_json::json!({"method": method.as_str(), "path": uri.path(),
                        "query": uri.query().unwrap_or(""), "body": body}),
                )
            },
        );
        axum::serve(listener, app).await.unwrap();
    })
}

#[test]
fn node_and_service_proxy() {
    let c = start();
    let kubelet = echo_server();
    let node = c.file(
        "node.yaml",
        &format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\nstatus:\n  addresses:\n  - type: InternalIP\n    address: 127.0.0.1\n  daemonEndpoints:\n    kubeletEndpoint:\n      Port: {kubelet}\n"),
    );
    c.ok(&["create", "-f", &node]);
    let got: serde_json::Value = serde_json::from_str(&c.ok(&[
        "get",
        "--raw",
        "/api/v1/nodes/n1/proxy/stats/summary?only_cpu_and_memory=true",
    ]))
    .unwrap();
    assert_eq!(got["method"], "GET");
    assert_eq!(got["path"], "/stats/summary");
    assert_eq!(got["query"], "only_cpu_and_memory=true");
    let payload = c.file("payload.json", "{\"hello\": \"kubelet\"}");
    let got: serde_json::Value = serde_json::from_str(&c.ok(&[
        "create",
        "--raw",
        "/api/v1/nodes/n1/proxy/images/load",
        "-f",
        &payload,
    ]))
    .unwrap();
    assert_eq!(got["method"], "POST");
    assert_eq!(got["path"], "/images/load");
    assert!(got["body"].as_str().unwrap().contains("kubelet"), "{got}");
    let err = c.fails(&["get", "--raw", "/api/v1/nodes/nope/proxy/x"]);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );

    // services/proxy through the Service's endpoints
    let web = echo_server();
    let svc = c.file(
        "svc.yaml",
        &format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n---\napiVersion: v1\nkind: Endpoints\nmetadata:\n  name: web\nsubsets:\n- addresses:\n  - ip: 127.0.0.1\n  ports:\n  - name: http\n    port: {web}\n"),
    );
    c.ok(&["apply", "-f", &svc]);
    for name in ["web", "web:80", "web:http", "http:web:80"] {
        let got: serde_json::Value = serde_json::from_str(&c.ok(&[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/default/services/{name}/proxy/hello/there?x=1"),
        ]))
        .unwrap();
        assert_eq!(
            (got["path"].as_str(), got["query"].as_str()),
            (Some("/hello/there"), Some("x=1")),
            "{name}"
        );
    }
    // every method reaches the backend (PUT and DELETE here)
    let got: serde_json::Value = serde_json::from_str(&c.ok(&[
        "replace",
        "--raw",
        "/api/v1/namespaces/default/services/web/proxy/put",
        "-f",
        &payload,
    ]))
    .unwrap();
    assert_eq!(
        (got["method"].as_str(), got["path"].as_str()),
        (Some("PUT"), Some("/put"))
    );
    let got: serde_json::Value = serde_json::from_str(&c.ok(&[
        "delete",
        "--raw",
        "/api/v1/namespaces/default/services/web/proxy/del",
    ]))
    .unwrap();
    assert_eq!(got["method"], "DELETE");

    // pods/proxy to the pod's IP and a numbered or named container port
    let pod = c.file(
        "pod.yaml",
        &format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: echo\nspec:\n  containers:\n  - name: echo\n    image: echo\n    ports:\n    - name: http\n      containerPort: {web}\n"),
    );
    c.ok(&["create", "-f", &pod]);
    let err = c.fails(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/default/pods/echo:{web}/proxy/"),
    ]);
    assert!(err.contains("has no IP address yet"), "{err}");
    c.ok(&[
        "patch",
        "pod",
        "echo",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"podIP":"127.0.0.1"}}"#,
    ]);
    for name in [format!("echo:{web}"), "echo:http".to_string()] {
        let got: serde_json::Value = serde_json::from_str(&c.ok(&[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/default/pods/{name}/proxy/metrics?a=b"),
        ]))
        .unwrap();
        assert_eq!(
            (got["path"].as_str(), got["query"].as_str()),
            (Some("/metrics"), Some("a=b")),
            "{name}"
        );
    }

    let err = c.fails(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/services/web:9999/proxy/",
    ]);
    assert!(
        err.contains("ServiceUnavailable") || err.contains("no endpoints"),
        "{err}"
    );
}

#[test]
fn tables_of_autoscalers_policies_and_classes() {
    let c = start();
    let objs = c.file(
        "objs.yaml",
        r#"apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 5
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
---
apiVersion: v1
kind: LimitRange
metadata:
  name: limits
spec:
  limits:
  - type: Container
    default: {cpu: 500m}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: nginx
spec:
  controller: k8s.io/ingress-nginx
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-web
spec:
  podSelector:
    matchLabels: {app: web}
  policyTypes: [Ingress]
"#,
    );
    c.ok(&["apply", "-f", &objs]);
    let header = |kind: &str| -> (Vec<String>, Vec<String>) {
        let out = c.ok(&["get", kind]);
        let mut lines = out.lines();
        let h = lines
            .next()
            .unwrap()
            .split("  ")
            .filter(|s| !s.is_empty())
            .map(|s| s.trim().to_string())
            .collect();
        let r = lines
            .next()
            .unwrap()
            .split("  ")
            .filter(|s| !s.is_empty())
            .map(|s| s.trim().to_string())
            .collect();
        (h, r)
    };
    let (h, r) = header("hpa");
    assert_eq!(
        h,
        [
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE"
        ]
    );
    assert_eq!(
        r[..6],
        ["web", "Deployment/web", "cpu: <unknown>/50%", "2", "5", "0"]
    );
    let (h, r) = header("limitrange");
    assert_eq!(h, ["NAME", "CREATED AT"]);
    assert_eq!(r[0], "limits");
    assert!(r[1].ends_with('Z'), "{r:?}");
    let (h, r) = header("ingressclass");
    assert_eq!(h, ["NAME", "CONTROLLER", "PARAMETERS", "AGE"]);
    assert_eq!(r[..3], ["nginx", "k8s.io/ingress-nginx", "<none>"]);
    let (h, r) = header("netpol");
    assert_eq!(h, ["NAME", "POD-SELECTOR", "AGE"]);
    assert_eq!(r[..2], ["deny-web", "app=web"]);

    // nodes/proxy is its own RBAC resource
    c.ok(&[
        "create",
        "-f",
        &c.file(
            "node.yaml",
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n",
        ),
    ]);
    let sa = service_account_kubeconfig(&c, "prober");
    let err = c.fails(&[
        "--kubeconfig",
        &sa,
        "get",
        "--raw",
        "/api/v1/nodes/n1/proxy/healthz",
    ]);
    assert!(
        err.contains("cannot get resource \"nodes/proxy\" in API group \"\" at the cluster scope"),
        "{err}"
    );
}
