//! Real container machinery without the API: built-in images, a pod sandbox
//! (netns + veth + bridge + IP), runc containers on overlayfs, logs, graceful
//! stop, exit codes, and a teardown that leaves the host as found.
//! Needs root, runc, iproute2 and /bin/busybox. Each test uses its own
//! bridge, pod CIDR and root directory.

use k8s_openapi::api::core::v1::Container;
use minik_kubelet::sandbox::{ContainerInputs, ExitInfo, Machinery};
use minik_kubelet::{network, runtime, KubeletConfig};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

mod common;
use common::{meta, uid, Env};

fn container(name: &str, image: &str, command: Option<&[&str]>) -> Container {
    Container {
        name: name.into(),
        image: Some(image.into()),
        command: command.map(|c| c.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    }
}

fn http_get(ip: &str, deadline: Duration) -> Result<String, String> {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < deadline {
        match std::net::TcpStream::connect_timeout(
            &format!("{ip}:80").parse().unwrap(),
            Duration::from_millis(500),
        ) {
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                s.write_all(b"GET / HTTP/1.0\r\nHost: test\r\nUser-Agent: minik-it\r\n\r\n")
                    .unwrap();
                let mut body = String::new();
                let _ = s.read_to_string(&mut body);
                if !body.is_empty() {
                    return Ok(body);
                }
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(last)
}

fn host_clean(cfg: &KubeletConfig, netns: &str, veth: &str) {
    assert!(
        !network::netns_path(netns).exists(),
        "netns {netns} left behind"
    );
    assert!(
        !Path::new("/sys/class/net").join(veth).exists(),
        "veth {veth} left behind"
    );
    assert!(
        !Path::new("/sys/class/net").join(&cfg.bridge).exists(),
        "bridge left behind"
    );
    assert!(
        runtime::mounts_under(&cfg.root_dir).is_empty(),
        "mounts left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_pod_serves_its_name_and_stops_gracefully() {
    let env = Env::new("a", 10);
    let cfg = env.cfg.clone();
    let t = Instant::now();
    minik_kubelet::ensure_builtin_images(&cfg).unwrap();
    println!("built-in images: {:?}", t.elapsed());
    let m = Machinery::new(&cfg).unwrap();
    let uid = uid();
    let pod_name = "hello-7d9c-xyz";
    let pm = meta(&uid, pod_name);

    let t0 = Instant::now();
    let m2 = m.clone();
    let pm2 = pm.clone();
    let sb = tokio::task::spawn_blocking(move || m2.create_sandbox(&pm2))
        .await
        .unwrap()
        .unwrap();
    let t_sandbox = t0.elapsed();
    assert!(sb.ip.starts_with("10.251.10."), "ip {}", sb.ip);
    let image = m.images.resolve("minik/hello").unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel::<ExitInfo>();
    let run = m
        .start_container(
            &pm,
            &sb,
            &image,
            &container("hello", "minik/hello", None),
            ContainerInputs::default(),
            tx,
        )
        .await
        .unwrap();
    let t_started = t0.elapsed();
    let ip = sb.ip.clone();
    let page = tokio::task::spawn_blocking(move || http_get(&ip, Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("pod answers on :80");
    let t_serving = t0.elapsed();
    println!("sandbox {t_sandbox:?}, container started {t_started:?}, serving HTTP {t_serving:?}");
    assert!(
        page.starts_with("HTTP/1.") && page.contains(" 200 "),
        "{page}"
    );
    assert!(
        page.contains(&format!("This page is served by pod {pod_name}.")),
        "{page}"
    );

    // /etc files of the pod.
    let etc = sb.dir.join("etc");
    let resolv = std::fs::read_to_string(etc.join("resolv.conf")).unwrap();
    assert!(resolv.contains("nameserver 10.96.0.10"));
    assert!(resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"));

    // httpd -vv logs each request (client, url, status) to stderr → CRI log file.
    let mut logged = String::new();
    for _ in 0..50 {
        logged = std::fs::read_to_string(&run.log_path).unwrap_or_default();
        if logged.contains("url:/") && logged.contains("response:200") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        logged.contains("stderr F [::ffff:10.251.10.1]") && logged.contains("url:/"),
        "log: {logged}"
    );
    assert!(
        logged.contains(" stdout F minik/hello: serving /www on port 80 as pod hello-7d9c-xyz"),
        "log: {logged}"
    );
    assert!(m.logs.is_active(&run.log_path));

    // Graceful stop: the entrypoint traps TERM and exits 0 well within grace.
    let t1 = Instant::now();
    m.stop_container(&run.id, run.pid, Duration::from_secs(10))
        .await;
    let stop_time = t1.elapsed();
    let exit = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("exit reported")
        .unwrap();
    println!("graceful stop {stop_time:?}, exit {:?}", exit.exit_code);
    assert!(stop_time < Duration::from_secs(5), "SIGTERM honoured");
    assert_eq!(exit.exit_code, Some(0));
    assert_eq!(exit.id, run.id);
    for _ in 0..50 {
        if !m.logs.is_active(&run.log_path) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!m.logs.is_active(&run.log_path), "log pumps finish at exit");

    let (netns, veth) = network::names_for(&cfg.bridge, &uid);
    m.remove_container(&uid, "hello", &run.id);
    m.remove_pod(&uid);
    assert!(!sb.dir.exists());
    minik_kubelet::teardown(&cfg).unwrap();
    host_clean(&cfg, &netns, &veth);
    drop(env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_logs_and_shared_netns() {
    let env = Env::new("b", 11);
    let cfg = env.cfg.clone();
    minik_kubelet::ensure_builtin_images(&cfg).unwrap();
    let m = Machinery::new(&cfg).unwrap();
    let uid = uid();
    let pm = meta(&uid, "two-containers");
    let m2 = m.clone();
    let pm2 = pm.clone();
    let sb = tokio::task::spawn_blocking(move || m2.create_sandbox(&pm2))
        .await
        .unwrap()
        .unwrap();
    let bb = m.images.resolve("docker.io/minik/busybox:latest").unwrap();
    let hello = m.images.resolve("minik/hello:latest").unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel::<ExitInfo>();
    // Server container and a client container in the same pod: localhost works.
    let server = m
        .start_container(
            &pm,
            &sb,
            &hello,
            &container("web", "minik/hello", None),
            ContainerInputs::default(),
            tx.clone(),
        )
        .await
        .unwrap();
    let script = "for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - http://127.0.0.1/ && break; sleep 0.2; done; echo \"host=$(hostname) var=$GREETING\"; cat /etc/hostname; echo to-stderr >&2; id; echo shm_rmid_forced=$(cat /proc/sys/kernel/shm_rmid_forced); echo last-words > /dev/termination-log; exit 3";
    let client = m
        .start_container(
            &pm,
            &sb,
            &bb,
            &container("client", "minik/busybox", Some(&["sh", "-c", script])),
            ContainerInputs {
                env: vec![("GREETING".into(), "hi".into())],
                binds: vec![],
                restart_count: 2,
                pod_security: minik_kubelet::sandbox::PodSecurity {
                    run_as_user: Some(1000),
                    run_as_group: Some(2000),
                    fs_group: Some(3000),
                    supplemental_groups: vec![],
                    sysctls: vec![("kernel.shm_rmid_forced".into(), "1".into())],
                },
            },
            tx,
        )
        .await
        .unwrap();
    assert!(client.log_path.ends_with("containers/client/2.log"));
    let exit = tokio::time::timeout(Duration::from_secs(15), rx.recv())
        .await
        .expect("client exits")
        .unwrap();
    assert_eq!(exit.name, "client");
    assert_eq!(exit.exit_code, Some(3));
    // Wait for the pumps to drain.
    for _ in 0..100 {
        if !m.logs.is_active(&client.log_path) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = std::fs::read_to_string(&client.log_path).unwrap();
    let text = minik_kubelet::logs::render(&log, &Default::default(), chrono::Utc::now());
    assert!(
        text.contains("This page is served by pod two-containers."),
        "{text}"
    );
    assert!(text.contains("host=two-containers var=hi"), "{text}");
    assert!(log.contains(" stderr F to-stderr"), "{log}");
    assert!(
        text.contains("uid=1000 gid=2000") && text.contains("3000"),
        "{text}"
    );
    assert!(text.contains("shm_rmid_forced=1"), "{text}");
    let spec_c = container("client", "minik/busybox", None);
    assert_eq!(
        m.termination_message(&uid, &spec_c, 3, &client.log_path)
            .as_deref(),
        Some("last-words\n")
    );
    let hosts = std::fs::read_to_string(sb.dir.join("etc/hosts")).unwrap();
    assert!(
        hosts.contains(&format!("{}\ttwo-containers\n", sb.ip)),
        "{hosts}"
    );

    // SIGKILL path: a container that ignores TERM.
    m.stop_container(&server.id, server.pid, Duration::from_millis(0))
        .await;
    let exit = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("server exits")
        .unwrap();
    assert_eq!(exit.name, "web");
    assert!(exit.exit_code.is_some());

    let (netns, veth) = network::names_for(&cfg.bridge, &uid);
    minik_kubelet::teardown(&cfg).unwrap();
    host_clean(&cfg, &netns, &veth);
    drop(env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_containers_and_keeps_state() {
    let env = Env::new("c", 12);
    let cfg = env.cfg.clone();
    minik_kubelet::ensure_builtin_images(&cfg).unwrap();
    let m = Machinery::new(&cfg).unwrap();
    let uid = uid();
    let pm = meta(&uid, "sleeper");
    let m2 = m.clone();
    let pm2 = pm.clone();
    let sb = tokio::task::spawn_blocking(move || m2.create_sandbox(&pm2))
        .await
        .unwrap()
        .unwrap();
    let bb = m.images.resolve("minik/busybox").unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel::<ExitInfo>();
    let run = m
        .start_container(
            &pm,
            &sb,
            &bb,
            &container(
                "sleep",
                "minik/busybox",
                Some(&[
                    "sh",
                    "-c",
                    "trap 'exit 0' TERM; echo trap-set; while true; do sleep 0.1; done",
                ]),
            ),
            ContainerInputs::default(),
            tx,
        )
        .await
        .unwrap();
    assert!(minik_kubelet::sandbox::pid_alive(run.pid));
    // SIGTERM before the trap is set would be ignored (PID 1): wait for it.
    for _ in 0..100 {
        if std::fs::read_to_string(&run.log_path)
            .unwrap_or_default()
            .contains("trap-set")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = Instant::now();
    minik_kubelet::shutdown(&cfg).await.unwrap();
    println!("shutdown {:?}", t.elapsed());
    let exit = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.exit_code, Some(0));
    assert!(m.runtime.list().is_empty(), "runtime containers deleted");
    assert!(
        runtime::mounts_under(&cfg.root_dir).is_empty(),
        "rootfs unmounted"
    );
    // State kept: pod dir, log, IP reservation.
    assert!(run.log_path.exists());
    assert_eq!(
        m.ipam.lookup(&uid).map(|i| i.to_string()),
        Some(sb.ip.clone())
    );
    let (netns, veth) = network::names_for(&cfg.bridge, &uid);
    assert!(!network::netns_path(&netns).exists());
    minik_kubelet::teardown(&cfg).unwrap();
    host_clean(&cfg, &netns, &veth);
    assert!(!cfg.root_dir.join("pods").exists());
    drop(env);
}

async fn get_body(app: axum::Router, uri: &str) -> (u16, String) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let req = axum::http::Request::builder()
        .uri(uri)
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_endpoint_follow_tail_previous() {
    let env = Env::new("d", 13);
    let cfg = env.cfg.clone();
    minik_kubelet::ensure_builtin_images(&cfg).unwrap();
    let m = Machinery::new(&cfg).unwrap();
    let uid = uid();
    let pm = meta(&uid, "talker");
    let m2 = m.clone();
    let pm2 = pm.clone();
    let sb = tokio::task::spawn_blocking(move || m2.create_sandbox(&pm2))
        .await
        .unwrap()
        .unwrap();
    m.logs.set_pod("default", "talker", Some(&uid));
    let app = minik_kubelet::logs::router(m.pods_dir.clone(), m.logs.clone());
    let bb = m.images.resolve("minik/busybox").unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel::<ExitInfo>();
    let c = container(
        "talk",
        "minik/busybox",
        Some(&[
            "sh",
            "-c",
            "for i in 1 2 3 4 5; do echo line-$i; sleep 0.2; done",
        ]),
    );
    // First run (restart 0) and wait for it to end.
    let first = m
        .start_container(&pm, &sb, &bb, &c, ContainerInputs::default(), tx.clone())
        .await
        .unwrap();
    // follow=true streams while the container runs and ends when it exits.
    let t = Instant::now();
    let (code, body) = get_body(
        app.clone(),
        "/containerLogs/default/talker/talk?follow=true",
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(body, "line-1\nline-2\nline-3\nline-4\nline-5\n");
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "streamed, not a snapshot"
    );
    let exit = rx.recv().await.unwrap();
    assert_eq!(exit.exit_code, Some(0));
    m.remove_container(&uid, "talk", &first.id);
    // Second run (restart 1) prints something else.
    let c2 = container(
        "talk",
        "minik/busybox",
        Some(&["sh", "-c", "echo second-run"]),
    );
    let _second = m
        .start_container(
            &pm,
            &sb,
            &bb,
            &c2,
            ContainerInputs {
                restart_count: 1,
                ..Default::default()
            },
            tx,
        )
        .await
        .unwrap();
    rx.recv().await.unwrap();
    for _ in 0..100 {
        let (_, b) = get_body(app.clone(), "/containerLogs/default/talker/talk").await;
        if b == "second-run\n" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, cur) = get_body(app.clone(), "/containerLogs/default/talker/talk").await;
    assert_eq!(cur, "second-run\n");
    let (_, prev) = get_body(
        app.clone(),
        "/containerLogs/default/talker/talk?previous=true&tailLines=2",
    )
    .await;
    assert_eq!(prev, "line-4\nline-5\n");
    let (_, ts) = get_body(
        app.clone(),
        "/containerLogs/default/talker/talk?timestamps=true",
    )
    .await;
    assert!(
        ts.ends_with("Z second-run\n") && ts.starts_with("20"),
        "{ts}"
    );
    let (code, _) = get_body(app.clone(), "/containerLogs/default/nope/talk").await;
    assert_eq!(code, 404);
    let (code, health) = get_body(app, "/healthz").await;
    assert_eq!((code, health.as_str()), (200, "ok"));
    minik_kubelet::teardown(&cfg).unwrap();
    drop(env);
}

/// Runs one exec session over a real WebSocket; returns (stdout, stderr, status JSON).
async fn exec_ws(
    port: u16,
    query: &str,
    stdin: Option<&[u8]>,
) -> (String, String, serde_json::Value) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let mut req = format!("ws://127.0.0.1:{port}/exec/default/execpod/box?{query}")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(
        resp.headers().get("sec-websocket-protocol").unwrap(),
        "v5.channel.k8s.io"
    );
    if let Some(data) = stdin {
        let mut m = vec![0u8];
        m.extend_from_slice(data);
        ws.send(Message::Binary(m.into())).await.unwrap();
        ws.send(Message::Binary(vec![255u8, 0].into()))
            .await
            .unwrap();
    }
    let (mut out, mut err, mut status) = (String::new(), String::new(), serde_json::Value::Null);
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Binary(b) = msg else { continue };
        let Some((&ch, rest)) = b.split_first() else {
            continue;
        };
        match ch {
            1 => out.push_str(&String::from_utf8_lossy(rest)),
            2 => err.push_str(&String::from_utf8_lossy(rest)),
            3 => status = serde_json::from_slice(rest).unwrap(),
            _ => {}
        }
    }
    (out, err, status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_over_websocket() {
    let env = Env::new("e", 14);
    let cfg = env.cfg.clone();
    minik_kubelet::ensure_builtin_images(&cfg).unwrap();
    let m = Machinery::new(&cfg).unwrap();
    let uid = uid();
    let pm = meta(&uid, "execpod");
    let m2 = m.clone();
    let pm2 = pm.clone();
    let sb = tokio::task::spawn_blocking(move || m2.create_sandbox(&pm2))
        .await
        .unwrap()
        .unwrap();
    m.logs.set_pod("default", "execpod", Some(&uid));
    let bb = m.images.resolve("minik/busybox").unwrap();
    let (tx, _rx) = mpsc::unbounded_channel::<ExitInfo>();
    let c = container("box", "minik/busybox", Some(&["sleep", "3600"]));
    let run = m
        .start_container(&pm, &sb, &bb, &c, ContainerInputs::default(), tx)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = minik_kubelet::http_router(&m);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let (out, err, st) = exec_ws(
        port,
        "command=sh&command=-c&command=echo%20out%20%24(hostname)%3B%20echo%20err%20%3E%262%3B%20exit%203&stdout=1&stderr=1",
        None,
    )
    .await;
    assert_eq!(out, "out execpod\n");
    assert_eq!(err, "err\n");
    assert_eq!(st["reason"], "NonZeroExitCode");
    assert_eq!(st["details"]["causes"][0]["message"], "3");

    let (out, _, st) = exec_ws(
        port,
        "command=cat&stdin=1&stdout=1&stderr=1",
        Some(b"from stdin\n"),
    )
    .await;
    assert_eq!(out, "from stdin\n");
    assert_eq!(st["status"], "Success");

    let (out, _, st) = exec_ws(
        port,
        "command=sh&command=-c&command=test%20-t%200%20%26%26%20echo%20is-a-tty&stdin=1&stdout=1&tty=1",
        None,
    )
    .await;
    assert!(out.contains("is-a-tty"), "{out:?} {st}");
    assert_eq!(st["status"], "Success");

    m.stop_container(&run.id, run.pid, Duration::from_secs(0))
        .await;
    server.abort();
    minik_kubelet::teardown(&cfg).unwrap();
    drop(env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_limits_reach_the_cgroup_and_oom_is_detected() {
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    let env = Env::new("f", 15);
    let cfg = env.cfg.clone();
    minik_kubelet::ensure_builtin_images(&cfg).unwrap();
    let m = Machinery::new(&cfg).unwrap();
    let uid = uid();
    let pm = meta(&uid, "limited");
    let m2 = m.clone();
    let pm2 = pm.clone();
    let sb = tokio::task::spawn_blocking(move || m2.create_sandbox(&pm2))
        .await
        .unwrap()
        .unwrap();
    let bb = m.images.resolve("minik/busybox").unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel::<ExitInfo>();
    let mut c = container(
        "hog",
        "minik/busybox",
        // Sleep first so the limits can be read, then allocate ~64 MiB.
        Some(&[
            "sh",
            "-c",
            "sleep 0.5; exec dd if=/dev/zero of=/dev/null bs=64M count=1",
        ]),
    );
    c.resources = Some(ResourceRequirements {
        limits: Some(
            [
                ("memory".to_string(), Quantity("32Mi".into())),
                ("cpu".to_string(), Quantity("500m".into())),
            ]
            .into(),
        ),
        ..Default::default()
    });
    let run = m
        .start_container(&pm, &sb, &bb, &c, ContainerInputs::default(), tx)
        .await
        .unwrap();
    let mem = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory/minik/{}/memory.limit_in_bytes",
        run.id
    ))
    .unwrap_or_default();
    let quota = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/cpu/minik/{}/cpu.cfs_quota_us",
        run.id
    ))
    .unwrap_or_default();
    assert_eq!(mem.trim(), "33554432");
    assert_eq!(quota.trim(), "50000");
    let exit = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("hog exits")
        .unwrap();
    assert_eq!(exit.exit_code, Some(137), "killed by the OOM killer");
    assert!(m.oom_killed(&uid, "hog", 0));
    m.remove_container(&uid, "hog", &run.id);
    minik_kubelet::teardown(&cfg).unwrap();
    drop(env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loaded_docker_archive_runs() {
    let env = Env::new("g", 16);
    let cfg = env.cfg.clone();
    minik_kubelet::ensure_builtin_images(&cfg).unwrap();
    let m = Machinery::new(&cfg).unwrap();
    // A `docker save`-style archive whose only layer is a busybox rootfs.
    let bb = m.images.resolve("minik/busybox").unwrap();
    let rootfs = m.images.lowerdirs(&bb)[0].clone();
    let mut layer = tar::Builder::new(Vec::new());
    layer.follow_symlinks(false);
    layer.append_dir_all(".", &rootfs).unwrap();
    let layer = layer.into_inner().unwrap();
    let config = br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh","-c","echo loaded image says $GREETING from $(pwd)"],"Env":["PATH=/bin:/usr/bin","GREETING=hi"],"WorkingDir":"/tmp"}}"#;
    let manifest = br#"[{"Config":"config.json","RepoTags":["registry.example/demo:2"],"Layers":["abc/layer.tar"]}]"#;
    let mut outer = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("manifest.json", &manifest[..]),
        ("config.json", &config[..]),
        ("abc/layer.tar", &layer[..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        outer.append_data(&mut h, name, data).unwrap();
    }
    let archive = cfg.root_dir.join("demo.tar");
    std::fs::write(&archive, outer.into_inner().unwrap()).unwrap();
    let names = minik_kubelet::load_image(&cfg, &archive, "demo:latest").unwrap();
    assert_eq!(names, vec!["registry.example/demo:2".to_string()]);

    let uid = uid();
    let pm = meta(&uid, "demo");
    let m2 = m.clone();
    let pm2 = pm.clone();
    let sb = tokio::task::spawn_blocking(move || m2.create_sandbox(&pm2))
        .await
        .unwrap()
        .unwrap();
    let img = m.images.resolve("registry.example/demo:2").unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel::<ExitInfo>();
    let run = m
        .start_container(
            &pm,
            &sb,
            &img,
            &container("demo", "registry.example/demo:2", None),
            ContainerInputs::default(),
            tx,
        )
        .await
        .unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.exit_code, Some(0));
    for _ in 0..100 {
        if !m.logs.is_active(&run.log_path) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = std::fs::read_to_string(&run.log_path).unwrap();
    assert!(log.contains("loaded image says hi from /tmp"), "{log}");
    minik_kubelet::teardown(&cfg).unwrap();
    drop(env);
}

/// Port-forward on the kubelet's HTTP API, as kubectl ≥ 1.30 speaks it:
/// SPDY/3.1 in WebSocket binary messages (`SPDY/3.1+portforward.k8s.io`),
/// an error and a data stream per connection, to port 80 inside the pod's
/// network namespace (nothing listens on the host's 127.0.0.1:80 for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_reaches_the_pod_loopback() {
    use futures::{SinkExt, StreamExt};
    use minik_kubelet::spdy::{self, Frame, HeaderDecoder, HeaderEncoder};
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
    let env = Env::new("h", 17);
    let cfg = env.cfg.clone();
    minik_kubelet::ensure_builtin_images(&cfg).unwrap();
    let m = Machinery::new(&cfg).unwrap();
    let uid = uid();
    let pm = meta(&uid, "pf");
    let (m2, pm2) = (m.clone(), pm.clone());
    let sb = tokio::task::spawn_blocking(move || m2.create_sandbox(&pm2))
        .await
        .unwrap()
        .unwrap();
    let image = m.images.resolve("minik/hello").unwrap();
    let (tx, _rx) = mpsc::unbounded_channel::<ExitInfo>();
    let run = m
        .start_container(
            &pm,
            &sb,
            &image,
            &container("hello", "minik/hello", None),
            ContainerInputs::default(),
            tx,
        )
        .await
        .unwrap();
    let ip = sb.ip.clone();
    tokio::task::spawn_blocking(move || http_get(&ip, Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("pod answers on :80");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = minik_kubelet::http_router(&m);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut req = format!("ws://127.0.0.1:{port}/portForward/default/pf")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "SPDY/3.1+portforward.k8s.io".parse().unwrap(),
    );
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(
        resp.headers()["sec-websocket-protocol"],
        "SPDY/3.1+portforward.k8s.io"
    );
    let mut enc = HeaderEncoder::new();
    let mut dec = HeaderDecoder::new();
    let mut send = Vec::new();
    for (id, kind) in [(1, "error"), (3, "data")] {
        let headers = enc
            .encode(&[("streamType", kind), ("port", "80"), ("requestID", "0")])
            .unwrap();
        send.extend(
            spdy::encode(&Frame::SynStream {
                stream_id: id,
                associated: 0,
                priority: 0,
                flags: 0,
                headers,
            })
            .unwrap(),
        );
    }
    let get = b"GET / HTTP/1.0\r\nHost: pf\r\n\r\n".to_vec();
    send.extend(
        spdy::encode(&Frame::Data {
            stream_id: 3,
            flags: spdy::FLAG_FIN,
            data: get,
        })
        .unwrap(),
    );
    ws.send(Message::Binary(send.into())).await.unwrap();
    let mut buf = Vec::new();
    let mut page = Vec::new();
    let mut errors = Vec::new();
    let (mut replies, mut data_fin, mut error_fin) = (0, false, false);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(replies == 2 && data_fin && error_fin) {
        assert!(
            Instant::now() < deadline,
            "no answer; page so far: {page:?}"
        );
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .unwrap()
            .expect("session open")
            .unwrap();
        buf.extend_from_slice(&msg.into_data());
        while let Some((f, n)) = spdy::decode(&buf).unwrap() {
            buf.drain(..n);
            match f {
                Frame::SynReply { headers, .. } => {
                    dec.decode(&headers).unwrap();
                    replies += 1;
                }
                Frame::Data {
                    stream_id,
                    flags,
                    data,
                } => {
                    let fin = flags & spdy::FLAG_FIN != 0;
                    if stream_id == 3 {
                        page.extend(data);
                        data_fin |= fin;
                    } else {
                        errors.extend(data);
                        error_fin |= fin;
                    }
                }
                _ => {}
            }
        }
    }
    let page = String::from_utf8_lossy(&page);
    assert!(errors.is_empty(), "{}", String::from_utf8_lossy(&errors));
    assert!(
        page.contains(" 200 ") && page.contains("This page is served by pod pf."),
        "{page}"
    );
    let _ = ws.close(None).await;
    server.abort();

    m.stop_container(&run.id, run.pid, Duration::from_secs(5))
        .await;
    let (netns, veth) = network::names_for(&cfg.bridge, &uid);
    m.remove_container(&uid, "hello", &run.id);
    m.remove_pod(&uid);
    minik_kubelet::teardown(&cfg).unwrap();
    host_clean(&cfg, &netns, &veth);
    drop(env);
}
