//! The in-process path the node components use: `kube::Client::new(router)`
//! with typed k8s-openapi objects, no socket. Also the pods/log proxy to a
//! (fake) kubelet on loopback.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::Client;
use minik_apiserver::{ApiServer, ApiServerOptions};
use serde_json::json;

async fn server() -> (tempfile::TempDir, ApiServer, Client) {
    let dir = tempfile::tempdir().unwrap();
    let store = minik_store::Store::open(&dir.path().join("store")).unwrap();
    let server = ApiServer::new(store, ApiServerOptions::default())
        .await
        .unwrap();
    let client = Client::new(server.router(), "default");
    (dir, server, client)
}

fn pod(name: &str, node: Option<&str>) -> Pod {
    let mut spec = json!({"containers": [{"name": "app", "image": "minik/hello:1"}]});
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "x"}}, "spec": spec})).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_client_crud_status_binding_and_watch() {
    let (_dir, _server, client) = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let lp = ListParams::default();
    let list = pods.list(&lp).await.unwrap();
    assert!(list.items.is_empty());
    let rv = list.metadata.resource_version.clone().unwrap();

    let mut stream = pods
        .watch(&WatchParams::default().labels("app=x"), &rv)
        .await
        .unwrap()
        .boxed();
    let created = pods
        .create(&PostParams::default(), &pod("a", None))
        .await
        .unwrap();
    assert_eq!(
        created.status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );
    assert_eq!(
        created.spec.as_ref().unwrap().scheduler_name.as_deref(),
        Some("default-scheduler")
    );
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Added(p) => assert_eq!(p.metadata.name.as_deref(), Some("a")),
        other => panic!("expected ADDED, got {other:?}"),
    }

    // the scheduler's binding
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "a"}, "target": {"kind": "Node", "name": "minik"}});
    let _: serde_json::Value = pods
        .create_subresource("binding", "a", &PostParams::default(), &binding)
        .await
        .unwrap();
    let bound = pods.get("a").await.unwrap();
    assert_eq!(
        bound.spec.as_ref().unwrap().node_name.as_deref(),
        Some("minik")
    );
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Modified(p) => assert_eq!(p.spec.unwrap().node_name.as_deref(), Some("minik")),
        other => panic!("expected MODIFIED, got {other:?}"),
    }

    // the kubelet's status patch changes only status
    let st = json!({"status": {"phase": "Running", "podIP": "10.244.0.5"}, "spec": {"nodeName": "elsewhere"}});
    let p = pods
        .patch_status("a", &PatchParams::default(), &Patch::Merge(&st))
        .await
        .unwrap();
    assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Running"));
    assert_eq!(p.spec.as_ref().unwrap().node_name.as_deref(), Some("minik"));
    // and a main-resource update cannot change status
    let mut again = p.clone();
    again.status.as_mut().unwrap().phase = Some("Failed".into());
    again
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("app".into(), "y".into());
    let replaced = pods
        .replace("a", &PostParams::default(), &again)
        .await
        .unwrap();
    assert_eq!(replaced.status.unwrap().phase.as_deref(), Some("Running"));
    // it left the selector: the watcher sees DELETED
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Modified(_) => match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Deleted(p) => assert_eq!(p.metadata.labels.unwrap()["app"], "x"),
            other => panic!("expected DELETED, got {other:?}"),
        },
        other => panic!("expected MODIFIED (status), got {other:?}"),
    }

    // graceful delete of a bound pod, then the kubelet's final delete
    let dp = DeleteParams::default();
    pods.delete("a", &dp).await.unwrap();
    let terminating = pods.get("a").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    pods.delete(
        "a",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(pods.get_opt("a").await.unwrap().is_none());

    // a stale resourceVersion is a 409
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let l: Lease = serde_json::from_value(json!({"metadata": {"name": "minik"}, "spec": {"holderIdentity": "minik", "leaseDurationSeconds": 40}})).unwrap();
    let l = leases.create(&PostParams::default(), &l).await.unwrap();
    let mut l2 = l.clone();
    l2.spec.as_mut().unwrap().lease_duration_seconds = Some(41);
    leases
        .replace("minik", &PostParams::default(), &l2)
        .await
        .unwrap();
    match leases.replace("minik", &PostParams::default(), &l2).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 409);
            assert!(
                s.message.contains("the object has been modified"),
                "{}",
                s.message
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }

    // events written through events.k8s.io/v1 are core v1 events too
    let new_events: Api<k8s_openapi::api::events::v1::Event> =
        Api::default_namespaced(client.clone());
    let ev: k8s_openapi::api::events::v1::Event = serde_json::from_value(json!({
        "metadata": {"name": "a.1"}, "eventTime": "2026-01-01T00:00:00.000000Z", "reason": "Pulled", "type": "Normal",
        "action": "Pull", "note": "image pulled", "reportingController": "kubelet", "reportingInstance": "minik",
        "regarding": {"kind": "Pod", "name": "a", "namespace": "default"}})).unwrap();
    new_events
        .create(&PostParams::default(), &ev)
        .await
        .unwrap();
    let core_events: Api<k8s_openapi::api::core::v1::Event> =
        Api::default_namespaced(client.clone());
    let core = core_events.get("a.1").await.unwrap();
    assert_eq!(core.message.as_deref(), Some("image pulled"));
    assert_eq!(core.involved_object.name.as_deref(), Some("a"));
    let listed = core_events
        .list(&ListParams::default().fields("involvedObject.name=a"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(
        new_events.get("a.1").await.unwrap().note.as_deref(),
        Some("image pulled")
    );

    // services: kube-dns may take .10, nobody else
    let svcs: Api<Service> = Api::namespaced(client.clone(), "kube-system");
    let dns: Service = serde_json::from_value(json!({"metadata": {"name": "kube-dns"}, "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}})).unwrap();
    let dns = svcs.create(&PostParams::default(), &dns).await.unwrap();
    assert_eq!(dns.spec.unwrap().cluster_ip.as_deref(), Some("10.96.0.10"));
}

/// A kubelet stand-in: answers `/containerLogs/...` with a fixed text that
/// echoes the path and query it got.
async fn fake_kubelet() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new()
        .fallback(|uri: axum::http::Uri| async move { format!("log line 1\nasked {uri}\n") });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_logs_are_proxied_to_the_kubelet() {
    let (_dir, _server, client) = server().await;
    let port = fake_kubelet().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "minik"}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let status = json!({"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                        "conditions": [{"type": "Ready", "status": "True"}]}});
    nodes
        .patch_status("minik", &PatchParams::default(), &Patch::Strategic(&status))
        .await
        .unwrap();

    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    pods.create(&PostParams::default(), &pod("web", Some("minik")))
        .await
        .unwrap();
    let text = pods
        .logs(
            "web",
            &LogParams {
                tail_lines: Some(5),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(text.starts_with("log line 1\n"), "{text}");
    assert!(
        text.contains("/containerLogs/default/web/app?tailLines=5"),
        "{text}"
    );
    match pods
        .logs(
            "web",
            &LogParams {
                container: Some("nope".into()),
                ..Default::default()
            },
        )
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 400),
        other => panic!("expected 400, got {other:?}"),
    }
    // followed logs stream
    let mut lines = pods
        .log_stream(
            "web",
            &LogParams {
                follow: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut buf = Vec::new();
    use futures::AsyncReadExt;
    lines.read_to_end(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf).contains("follow=true"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_watch_gets_410_and_timeouts_end_watches() {
    let dir = tempfile::tempdir().unwrap();
    let store = minik_store::Store::open(&dir.path().join("store")).unwrap();
    let server = ApiServer::new(store.clone(), ApiServerOptions::default())
        .await
        .unwrap();
    let client = Client::new(server.router(), "default");
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    for n in ["a", "b", "c"] {
        pods.create(&PostParams::default(), &pod(n, None))
            .await
            .unwrap();
    }
    store.compact(store.revision()).await.unwrap();
    let mut stream = pods
        .watch(&WatchParams::default(), "2")
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => {
            assert_eq!(e.code, 410);
            assert!(
                e.message.contains("too old resource version"),
                "{}",
                e.message
            );
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }

    // timeoutSeconds ends the stream
    let rv = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let started = std::time::Instant::now();
    let mut stream = pods
        .watch(&WatchParams::default().timeout(1), &rv)
        .await
        .unwrap()
        .boxed();
    assert!(stream.try_next().await.unwrap().is_none());
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    // deletecollection with a selector; unbound pods go at once
    let mut tagged = pod("d", None);
    tagged
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("app".into(), "other".into());
    pods.create(&PostParams::default(), &tagged).await.unwrap();
    pods.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("app=x"),
    )
    .await
    .unwrap();
    let left: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(left, vec!["d".to_string()]);

    // paging with limit/continue
    for n in ["p1", "p2", "p3"] {
        pods.create(&PostParams::default(), &pod(n, None))
            .await
            .unwrap();
    }
    let page1 = pods.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(page1.items.len(), 2);
    let token = page1.metadata.continue_.clone().expect("a continue token");
    let page2 = pods
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(page2.items.len(), 2);
    assert!(page2.metadata.continue_.as_deref().unwrap_or("").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let first_ip;
    {
        let store = minik_store::Store::open(&path).unwrap();
        let server = ApiServer::new(store.clone(), ApiServerOptions::default())
            .await
            .unwrap();
        let svcs: Api<Service> = Api::default_namespaced(Client::new(server.router(), "default"));
        let s: Service = serde_json::from_value(json!({"metadata": {"name": "one"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}})).unwrap();
        let s = svcs.create(&PostParams::default(), &s).await.unwrap();
        first_ip = s.spec.unwrap().cluster_ip.unwrap();
        store.close().await.unwrap();
    }
    let store = minik_store::Store::open(&path).unwrap();
    let server = ApiServer::new(store, ApiServerOptions::default())
        .await
        .unwrap();
    let svcs: Api<Service> = Api::default_namespaced(Client::new(server.router(), "default"));
    let s: Service = serde_json::from_value(
        json!({"metadata": {"name": "two"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}),
    )
    .unwrap();
    let s = svcs.create(&PostParams::default(), &s).await.unwrap();
    let spec = s.spec.unwrap();
    assert_ne!(spec.cluster_ip.unwrap(), first_ip);
    let one = svcs.get("one").await.unwrap().spec.unwrap();
    assert_ne!(
        spec.ports.unwrap()[0].node_port,
        one.ports.unwrap()[0].node_port
    );
    // bootstrap is idempotent: still exactly one kubernetes Service
    let all: Api<Service> = Api::all(Client::new(server.router(), "default"));
    let names: Vec<String> = all
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    assert_eq!(names.iter().filter(|n| *n == "kubernetes").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_discovery_sees_every_builtin_resource() {
    let (_dir, _server, client) = server().await;
    let discovery = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .unwrap();
    for info in minik_apimachinery::builtin_resources() {
        let group = discovery
            .get(info.group)
            .unwrap_or_else(|| panic!("group {:?} missing", info.group));
        let found = group
            .recommended_resources()
            .iter()
            .any(|(ar, _)| ar.plural == info.resource && ar.kind == info.kind);
        assert!(
            found,
            "{}/{} {} missing from discovery",
            info.group, info.version, info.resource
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizers_hold_deletion_and_generate_name_works() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let (_dir, _server, client) = server().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}, "data": {"a": "b"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    let held = cms.get("held").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    // adding finalizers while deleting is refused
    let add = json!({"metadata": {"finalizers": ["example.com/hold", "example.com/more"]}});
    match cms
        .patch("held", &PatchParams::default(), &Patch::Merge(&add))
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 422),
        other => panic!("expected 422, got {other:?}"),
    }
    let clear = json!({"metadata": {"finalizers": null}});
    cms.patch("held", &PatchParams::default(), &Patch::Merge(&clear))
        .await
        .unwrap();
    assert!(
        cms.get_opt("held").await.unwrap().is_none(),
        "removing the last finalizer deletes the object"
    );

    let gen: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "web-"}})).unwrap();
    let made = cms.create(&PostParams::default(), &gen).await.unwrap();
    let name = made.metadata.name.unwrap();
    assert!(name.starts_with("web-") && name.len() == 9, "{name}");

    // kube's 3 MiB request limit
    let big: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "big"}, "data": {"a": "x".repeat(4 << 20)}}),
    )
    .unwrap();
    match cms.create(&PostParams::default(), &big).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (413, "RequestEntityTooLarge"))
        }
        other => panic!("expected 413, got {other:?}"),
    }

    // dry run stores nothing
    let dry: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "dry"}})).unwrap();
    cms.create(
        &PostParams {
            dry_run: true,
            ..Default::default()
        },
        &dry,
    )
    .await
    .unwrap();
    assert!(cms.get_opt("dry").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_closes_when_the_server_is_dropped() {
    // background tasks must not keep the store (and its directory lock) alive
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    for _ in 0..2 {
        let store = minik_store::Store::open(&path).unwrap();
        let server = ApiServer::new(store, ApiServerOptions::default())
            .await
            .unwrap();
        let pods: Api<Pod> = Api::default_namespaced(Client::new(server.router(), "default"));
        pods.list(&ListParams::default()).await.unwrap();
        drop(pods);
        drop(server);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_service_creates_get_unique_allocations() {
    let (_dir, _server, client) = server().await;
    let svcs: Api<Service> = Api::default_namespaced(client.clone());
    let mut tasks = Vec::new();
    for i in 0..20 {
        let svcs = svcs.clone();
        tasks.push(tokio::spawn(async move {
            let s: Service = serde_json::from_value(json!({"metadata": {"name": format!("s{i}")}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}})).unwrap();
            svcs.create(&PostParams::default(), &s).await.unwrap()
        }));
    }
    let mut ips = std::collections::HashSet::new();
    let mut ports = std::collections::HashSet::new();
    for t in tasks {
        let s = t.await.unwrap().spec.unwrap();
        assert!(ips.insert(s.cluster_ip.unwrap()));
        assert!(ports.insert(s.ports.unwrap()[0].node_port.unwrap()));
    }
    assert_eq!((ips.len(), ports.len()), (20, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_get_service_account_credentials_unless_opted_out() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    let (_dir, _server, client) = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let p = pods
        .create(&PostParams::default(), &pod("with", None))
        .await
        .unwrap();
    let spec = p.spec.unwrap();
    let vol = spec
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name.starts_with("kube-api-access-"))
        .expect("kube-api-access volume");
    let sources = vol.projected.unwrap().sources.unwrap();
    assert_eq!(
        sources[0].service_account_token.as_ref().unwrap().path,
        "token"
    );
    let mount = spec.containers[0]
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == vol.name)
        .unwrap()
        .clone();
    assert_eq!(
        mount.mount_path,
        "/var/run/secrets/kubernetes.io/serviceaccount"
    );
    assert_eq!(mount.read_only, Some(true));

    let mut off = pod("without", None);
    off.spec.as_mut().unwrap().automount_service_account_token = Some(false);
    let p = pods.create(&PostParams::default(), &off).await.unwrap();
    assert!(p.spec.unwrap().volumes.unwrap_or_default().is_empty());

    let sas: Api<ServiceAccount> = Api::default_namespaced(client.clone());
    let sa: ServiceAccount = serde_json::from_value(
        json!({"metadata": {"name": "quiet"}, "automountServiceAccountToken": false}),
    )
    .unwrap();
    sas.create(&PostParams::default(), &sa).await.unwrap();
    let mut quiet = pod("quiet", None);
    quiet.spec.as_mut().unwrap().service_account_name = Some("quiet".into());
    let p = pods.create(&PostParams::default(), &quiet).await.unwrap();
    assert!(p.spec.unwrap().volumes.unwrap_or_default().is_empty());

    // label changes through apply-style patches keep the injected volume (spec is immutable)
    let patch = json!({"metadata": {"labels": {"tier": "web"}}});
    pods.patch("with", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
}

/// Patches without a resourceVersion never fail with 409 because of a
/// concurrent write: the server retries them on the newer object (as kube
/// does); an update that names a stale resourceVersion still gets 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_do_not_conflict_but_stale_updates_do() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let (_dir, _server, client) = server().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let cm: ConfigMap = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": {}}),
    )
    .unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let cms = cms.clone();
        tasks.push(tokio::spawn(async move {
            let patch = json!({"data": {format!("k{i}"): format!("v{i}")}});
            cms.patch("shared", &PatchParams::default(), &Patch::Merge(&patch))
                .await
        }));
    }
    for t in tasks {
        t.await
            .unwrap()
            .expect("a patch without resourceVersion must not conflict");
    }
    let got = cms.get("shared").await.unwrap();
    assert_eq!(got.data.unwrap().len(), 16);

    let mut stale = created.clone();
    stale.data = Some([("x".to_string(), "y".to_string())].into());
    let err = cms
        .replace("shared", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => assert_eq!(s.code, 409),
        other => panic!("expected 409, got {other:?}"),
    }
}
