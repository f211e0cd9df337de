//! `tty: true` containers with the real machinery (runc, a pod sandbox) and
//! the kubelet's HTTP server: the process runs on a pty whose master the
//! kubelet keeps; `attach` (WebSocket v5) types into it, resizes it, sees
//! its output; the output reaches the CRI log (`kubectl logs`); stdinOnce
//! ends the shell at the client's stdin EOF. Needs root, runc, iproute2
//! and /bin/busybox.

use futures::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::Container;
use minik_kubelet::sandbox::{ContainerInputs, ExitInfo, Machinery};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{meta, uid, Env};

fn tty_shell(once: bool) -> Container {
    Container {
        name: "sh".into(),
        image: Some("minik/busybox".into()),
        command: Some(vec!["sh".into()]),
        tty: Some(true),
        stdin: Some(true),
        stdin_once: Some(once),
        ..Default::default()
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn attach(port: u16, pod: &str) -> Ws {
    let mut req = format!("ws://127.0.0.1:{port}/attach/default/{pod}/sh?stdin=1&stdout=1&tty=1")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(
        resp.headers().get("sec-websocket-protocol").unwrap(),
        "v5.channel.k8s.io"
    );
    ws
}

async fn send(ws: &mut Ws, channel: u8, data: &[u8]) {
    let mut m = vec![channel];
    m.extend_from_slice(data);
    ws.send(Message::Binary(m.into())).await.unwrap();
}

/// Reads until the server ends the session: (channel-1 output, status JSON).
async fn drain(ws: &mut Ws) -> (String, serde_json::Value) {
    let (mut out, mut status) = (String::new(), serde_json::Value::Null);
    let read = async {
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Binary(b) = msg else { continue };
            let Some((&ch, rest)) = b.split_first() else {
                continue;
            };
            match ch {
                1 => out.push_str(&String::from_utf8_lossy(rest)),
                3 => status = serde_json::from_slice(rest).unwrap(),
                _ => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(20), read).await;
    (out, status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_to_a_tty_container() {
    let env = Env::new("t", 18);
    let cfg = env.cfg.clone();
    minik_kubelet::ensure_builtin_images(&cfg).unwrap();
    let m = Machinery::new(&cfg).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = minik_kubelet::http_router(&m);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let bb = m.images.resolve("minik/busybox").unwrap();

    // 1. An interactive shell: typed input, a resize, output, exit.
    let uid1 = uid();
    let pm = meta(&uid1, "ttypod");
    let (m2, pm2) = (m.clone(), pm.clone());
    let sb = tokio::task::spawn_blocking(move || m2.create_sandbox(&pm2))
        .await
        .unwrap()
        .unwrap();
    m.logs.set_pod("default", "ttypod", Some(&uid1));
    let (tx, mut rx) = mpsc::unbounded_channel::<ExitInfo>();
    let run = m
        .start_container(
            &pm,
            &sb,
            &bb,
            &tty_shell(false),
            ContainerInputs::default(),
            tx,
        )
        .await
        .unwrap();
    let mut ws = attach(port, "ttypod").await;
    send(&mut ws, 4, br#"{"Width":101,"Height":33}"#).await;
    send(
        &mut ws,
        0,
        b"tty; stty size; echo \"term=$TERM\"; echo hello-$((6*7)); exit 7\n",
    )
    .await;
    let (out, status) = drain(&mut ws).await;
    assert!(out.contains("/dev/pts/"), "tty names a pty: {out:?}");
    assert!(out.contains("33 101"), "resize reached the pty: {out:?}");
    assert!(out.contains("term=xterm"), "{out:?}");
    assert!(
        out.contains("\r\nhello-42\r\n"),
        "pty line discipline: {out:?}"
    );
    assert_eq!(status["status"], "Success", "{out:?}");
    let exit = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.exit_code, Some(7));
    // The log has the terminal's output as one stream (what `kubectl logs` shows).
    let log = std::fs::read_to_string(&run.log_path).unwrap();
    assert!(log.contains(" stdout F hello-42\r\n"), "{log}");
    assert!(!log.contains(" stderr "), "{log}");
    // A finished container cannot be attached to.
    let mut req = format!("ws://127.0.0.1:{port}/attach/default/ttypod/sh?stdin=1&stdout=1&tty=1")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
    m.remove_container(&uid1, "sh", &run.id);

    // 2. stdinOnce: the client's stdin EOF is the terminal's EOF; the shell ends.
    let uid2 = uid();
    let pm = meta(&uid2, "oncepod");
    let (m2, pm2) = (m.clone(), pm.clone());
    let sb = tokio::task::spawn_blocking(move || m2.create_sandbox(&pm2))
        .await
        .unwrap()
        .unwrap();
    m.logs.set_pod("default", "oncepod", Some(&uid2));
    let (tx, mut rx) = mpsc::unbounded_channel::<ExitInfo>();
    let run = m
        .start_container(
            &pm,
            &sb,
            &bb,
            &tty_shell(true),
            ContainerInputs::default(),
            tx,
        )
        .await
        .unwrap();
    let mut ws = attach(port, "oncepod").await;
    send(&mut ws, 0, b"echo once-$((2+3))\n").await;
    send(&mut ws, 255, &[0]).await;
    let (out, status) = drain(&mut ws).await;
    assert!(out.contains("once-5"), "{out:?}");
    assert_eq!(status["status"], "Success", "{out:?}");
    let exit = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.exit_code, Some(0));
    m.remove_container(&uid2, "sh", &run.id);

    server.abort();
    minik_kubelet::teardown(&cfg).unwrap();
    drop(env);
}
