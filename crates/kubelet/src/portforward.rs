//! `kubectl port-forward` on the kubelet side: owns `GET|POST
//! /portForward/{namespace}/{pod}`. kubectl ≥ 1.30 speaks SPDY/3.1 tunnelled
//! in WebSocket binary messages (subprotocol `SPDY/3.1+portforward.k8s.io`);
//! older ones (and kubectl's fallback) upgrade straight to `SPDY/3.1` with
//! `X-Stream-Protocol-Version: portforward.k8s.io`. Both end in the same
//! [`serve_session`] over a byte stream; the apiserver only splices bytes.
//!
//! Per forwarded connection kubectl opens two streams with the same
//! `requestID`: `streamType: error` and `streamType: data` (header `port`).
//! Each gets a SYN_REPLY; once both exist the kubelet connects to
//! 127.0.0.1:PORT inside the pod's network namespace (a short-lived thread
//! `setns`'s into it and connects; the socket keeps that namespace) and
//! copies bytes both ways. Failures are written to the error stream, which
//! kubectl prints. Flow control: we send WINDOW_UPDATE for what we wrote to
//! the pod; kubectl's SPDY library (spdystream) neither sends nor honours
//! WINDOW_UPDATE, so our sending side does not wait for windows.

use crate::logs::LogRegistry;
use crate::sandbox::{read_json, Sandbox};
use crate::spdy::{self, Frame, HeaderDecoder, HeaderEncoder};
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path as AxPath, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::path::PathBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// The WebSocket subprotocol kubectl offers for port-forward.
pub const WS_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// The SPDY stream protocol (`X-Stream-Protocol-Version`).
pub const STREAM_PROTOCOL: &str = "portforward.k8s.io";
/// Data frames queued per connection towards the pod (frames are ≤ 32 KiB
/// from kubectl, so at most a few MiB per connection).
const TO_POD_CHUNKS: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot open the pod's network namespace {path}: {source}")]
    Netns {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot enter the pod's network namespace {path}: {source}")]
    Setns { path: PathBuf, source: nix::Error },
    #[error("cannot connect to 127.0.0.1:{port} in the pod: {source}; is the container listening on that port?")]
    Connect { port: u16, source: std::io::Error },
    #[error("the connector thread failed: {0}")]
    Thread(String),
}

/// Where the pod's loopback is.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// `/var/run/netns/<name>`; `None` for hostNetwork pods.
    pub netns: Option<PathBuf>,
    /// For error messages: `pod <name>, uid <uid>`.
    pub pod: String,
    pub uid: String,
}

/// Connects to 127.0.0.1:`port` in the target's network namespace.
pub async fn connect(target: &Target, port: u16) -> Result<tokio::net::TcpStream, ForwardError> {
    let netns = target.netns.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A dedicated thread: setns changes the calling thread's namespace, and
    // this thread ends right after, so no runtime thread is ever moved.
    std::thread::Builder::new()
        .name("portforward-connect".into())
        .spawn(move || {
            let r = (|| {
                if let Some(path) = netns {
                    let f = std::fs::File::open(&path).map_err(|source| ForwardError::Netns {
                        path: path.clone(),
                        source,
                    })?;
                    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(|source| ForwardError::Setns { path, source })?;
                }
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                let s =
                    std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(10))
                        .map_err(|source| ForwardError::Connect { port, source })?;
                s.set_nonblocking(true)
                    .map_err(|source| ForwardError::Connect { port, source })?;
                Ok(s)
            })();
            let _ = tx.send(r);
        })
        .map_err(|e| ForwardError::Thread(e.to_string()))?;
    let s = rx
        .await
        .map_err(|_| ForwardError::Thread("no answer".into()))??;
    tokio::net::TcpStream::from_std(s).map_err(|source| ForwardError::Connect { port, source })
}

#[derive(Clone)]
pub struct PortForwardState {
    pub pods_dir: PathBuf,
    pub registry: LogRegistry,
}

/// Finds the pod's uid (registry first, then `meta.json` on disk).
fn find_uid(st: &PortForwardState, ns: &str, pod: &str) -> Option<String> {
    if let Some(uid) = st.registry.pod_uid(ns, pod) {
        if st.pods_dir.join(&uid).is_dir() {
            return Some(uid);
        }
    }
    for e in std::fs::read_dir(&st.pods_dir).ok()?.flatten() {
        let v: Option<serde_json::Value> = read_json(&e.path().join("meta.json"));
        if let Some(v) = v {
            if v["namespace"] == ns && v["name"] == pod {
                return Some(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    None
}

fn resolve(st: &PortForwardState, ns: &str, pod: &str) -> Option<Target> {
    let uid = find_uid(st, ns, pod)?;
    let sb: Sandbox = read_json(&st.pods_dir.join(&uid).join("sandbox.json"))?;
    Some(Target {
        netns: sb.netns.as_deref().map(crate::network::netns_path),
        pod: pod.to_string(),
        uid,
    })
}

fn header_has(req: &Request, name: header::HeaderName, want: &str) -> bool {
    req.headers().get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(want)))
    })
}

pub async fn portforward_handler(
    State(st): State<PortForwardState>,
    AxPath((ns, pod)): AxPath<(String, String)>,
    req: Request,
) -> Response {
    let Some(target) = resolve(&st, &ns, &pod) else {
        return (
            StatusCode::NOT_FOUND,
            format!("pod {pod:?} (namespace {ns:?}) has no sandbox on this node; is it running?\n"),
        )
            .into_response();
    };
    if header_has(&req, header::UPGRADE, "websocket") {
        let (mut parts, _) = req.into_parts();
        let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(ws) => ws,
            Err(e) => return e.into_response(),
        };
        return ws
            .protocols([WS_PROTOCOL])
            .on_upgrade(move |socket| async move {
                let (mut sink, mut stream) = socket.split();
                let (in_tx, in_rx) = mpsc::channel::<Bytes>(64);
                let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(256);
                let writer = tokio::spawn(async move {
                    while let Some(b) = out_rx.recv().await {
                        if sink.send(Message::Binary(b)).await.is_err() {
                            return;
                        }
                    }
                    let _ = sink
                        .send(Message::Close(Some(axum::extract::ws::CloseFrame {
                            code: 1000,
                            reason: "".into(),
                        })))
                        .await;
                });
                let reader = tokio::spawn(async move {
                    while let Some(Ok(m)) = stream.next().await {
                        let b = match m {
                            Message::Binary(b) => b,
                            Message::Close(_) => break,
                            _ => continue,
                        };
                        if in_tx.send(b).await.is_err() {
                            break;
                        }
                    }
                });
                serve_session(in_rx, out_tx, target).await;
                reader.abort();
                let _ = writer.await;
            });
    }
    if header_has(&req, header::UPGRADE, "SPDY/3.1") {
        let mut req = req;
        let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
            return (
                StatusCode::BAD_REQUEST,
                "SPDY upgrade is only possible over HTTP/1.1\n",
            )
                .into_response();
        };
        tokio::spawn(async move {
            let Ok(up) = on_upgrade.await else { return };
            let io = hyper_util::rt::TokioIo::new(up);
            let (mut r, mut w) = tokio::io::split(io);
            let (in_tx, in_rx) = mpsc::channel::<Bytes>(64);
            let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(256);
            let writer = tokio::spawn(async move {
                while let Some(b) = out_rx.recv().await {
                    if w.write_all(&b).await.is_err() {
                        return;
                    }
                }
                let _ = w.shutdown().await;
            });
            let reader = tokio::spawn(async move {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match r.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if in_tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
            serve_session(in_rx, out_tx, target).await;
            reader.abort();
            let _ = writer.await;
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "SPDY/3.1")
            .header("X-Stream-Protocol-Version", STREAM_PROTOCOL)
            .body(axum::body::Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    (
        StatusCode::BAD_REQUEST,
        format!("port-forward needs an upgrade: WebSocket ({WS_PROTOCOL}) or SPDY/3.1\n"),
    )
        .into_response()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Error,
    Data,
}

/// The streams of one forwarded connection.
#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<u32>,
    port: Option<String>,
    started: bool,
}

fn frame(f: &Frame) -> Bytes {
    // Frames built here are always within the size limit.
    Bytes::from(spdy::encode(f).unwrap_or_default())
}

fn data(stream_id: u32, flags: u8, d: &[u8]) -> Bytes {
    frame(&Frame::Data {
        stream_id,
        flags,
        data: d.to_vec(),
    })
}

/// The request a stream belongs to: its `requestID`, or (older clients)
/// the error stream's id, the data stream being the one after it.
fn request_key(headers: &[(String, String)], kind: Kind, stream_id: u32) -> String {
    match headers.iter().find(|(k, _)| k == "requestid") {
        Some((_, v)) => v.clone(),
        None if kind == Kind::Data => stream_id.saturating_sub(2).to_string(),
        None => stream_id.to_string(),
    }
}

/// Runs one SPDY session: `input` carries the client's bytes, `out` takes
/// encoded frames. Returns when the client goes away or sends GOAWAY.
pub async fn serve_session(
    mut input: mpsc::Receiver<Bytes>,
    out: mpsc::Sender<Bytes>,
    target: Target,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut dec = HeaderDecoder::new();
    let mut enc = HeaderEncoder::new();
    let mut streams: HashMap<u32, (String, Kind)> = HashMap::new();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut to_pod: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
    let mut early: HashMap<u32, (Vec<Bytes>, bool)> = HashMap::new();
    let mut tasks: HashMap<String, tokio::task::AbortHandle> = HashMap::new();
    'session: while let Some(chunk) = input.recv().await {
        buf.extend_from_slice(&chunk);
        loop {
            let (f, used) = match spdy::decode(&buf) {
                Ok(Some(x)) => x,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!("port-forward: bad SPDY frame: {e}");
                    let _ = out
                        .send(frame(&Frame::GoAway {
                            last_good: 0,
                            status: 1,
                        }))
                        .await;
                    break 'session;
                }
            };
            buf.drain(..used);
            match f {
                Frame::SynStream {
                    stream_id, headers, ..
                } => {
                    let h = match dec.decode(&headers) {
                        Ok(h) => h,
                        Err(e) => {
                            tracing::debug!("port-forward: bad header block: {e}");
                            let _ = out
                                .send(frame(&Frame::GoAway {
                                    last_good: 0,
                                    status: 1,
                                }))
                                .await;
                            break 'session;
                        }
                    };
                    let get = |k: &str| h.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                    let kind = match get("streamtype").as_deref() {
                        Some("error") => Kind::Error,
                        Some("data") => Kind::Data,
                        _ => {
                            let _ = out
                                .send(frame(&Frame::RstStream {
                                    stream_id,
                                    status: spdy::RST_PROTOCOL_ERROR,
                                }))
                                .await;
                            continue;
                        }
                    };
                    let key = request_key(&h, kind, stream_id);
                    let reply = match enc.encode(&[]) {
                        Ok(r) => r,
                        Err(_) => break 'session,
                    };
                    if out
                        .send(frame(&Frame::SynReply {
                            stream_id,
                            flags: 0,
                            headers: reply,
                        }))
                        .await
                        .is_err()
                    {
                        break 'session;
                    }
                    streams.insert(stream_id, (key.clone(), kind));
                    let p = pairs.entry(key.clone()).or_default();
                    match kind {
                        Kind::Error => p.error = Some(stream_id),
                        Kind::Data => p.data = Some(stream_id),
                    }
                    if p.port.is_none() {
                        p.port = get("port");
                    }
                    if let (Some(err_id), Some(data_id), false) = (p.error, p.data, p.started) {
                        p.started = true;
                        // Bounded: a pod that reads slowly holds the session
                        // back (kubectl's side ignores SPDY windows).
                        let (tx, rx) = mpsc::channel(TO_POD_CHUNKS);
                        let (pending, fin) = early.remove(&data_id).unwrap_or_default();
                        for b in pending {
                            let _ = tx.try_send(b);
                        }
                        if !fin {
                            to_pod.insert(data_id, tx);
                        }
                        let port = p.port.clone().unwrap_or_default();
                        let h = tokio::spawn(forward(
                            target.clone(),
                            port,
                            data_id,
                            err_id,
                            rx,
                            out.clone(),
                        ));
                        tasks.insert(key, h.abort_handle());
                    }
                }
                Frame::Data {
                    stream_id,
                    flags,
                    data,
                } => {
                    let fin = flags & spdy::FLAG_FIN != 0;
                    let Some((key, kind)) = streams.get(&stream_id) else {
                        continue;
                    };
                    if *kind != Kind::Data {
                        continue;
                    }
                    let started = pairs.get(key).is_some_and(|p| p.started);
                    if !started {
                        // Before the error stream exists (kubectl waits for
                        // replies, so normally never); bounded like `to_pod`.
                        let e = early.entry(stream_id).or_default();
                        if !data.is_empty() && e.0.len() < TO_POD_CHUNKS {
                            e.0.push(Bytes::from(data));
                        }
                        e.1 |= fin;
                        continue;
                    }
                    if let Some(tx) = to_pod.get(&stream_id) {
                        if !data.is_empty() {
                            let _ = tx.send(Bytes::from(data)).await;
                        }
                    }
                    if fin {
                        // Dropping the sender half-closes the pod connection.
                        to_pod.remove(&stream_id);
                    }
                }
                Frame::RstStream { stream_id, .. } => {
                    if let Some((key, _)) = streams.remove(&stream_id) {
                        to_pod.remove(&stream_id);
                        early.remove(&stream_id);
                        if let Some(t) = tasks.remove(&key) {
                            t.abort();
                        }
                        if let Some(p) = pairs.get_mut(&key) {
                            if p.error == Some(stream_id) {
                                p.error = None;
                            }
                            if p.data == Some(stream_id) {
                                p.data = None;
                            }
                            if p.error.is_none() && p.data.is_none() {
                                pairs.remove(&key);
                            }
                        }
                    }
                }
                Frame::Ping { id } => {
                    if out.send(frame(&Frame::Ping { id })).await.is_err() {
                        break 'session;
                    }
                }
                Frame::GoAway { .. } => break 'session,
                Frame::Headers { headers, .. } | Frame::SynReply { headers, .. } => {
                    // Keep the decompression context in step.
                    if dec.decode(&headers).is_err() {
                        break 'session;
                    }
                }
                Frame::Settings { .. } | Frame::WindowUpdate { .. } | Frame::Unknown { .. } => {}
            }
        }
    }
    for (_, t) in tasks {
        t.abort();
    }
}

/// One forwarded connection: pod ↔ data stream; errors to the error stream.
async fn forward(
    target: Target,
    port: String,
    data_id: u32,
    error_id: u32,
    mut from_client: mpsc::Receiver<Bytes>,
    out: mpsc::Sender<Bytes>,
) {
    let conn = match port.parse::<u16>() {
        Ok(p) if p > 0 => connect(&target, p).await.map_err(|e| e.to_string()),
        _ => Err(format!("invalid port {port:?} in the port-forward request")),
    };
    let conn = match conn {
        Ok(c) => c,
        Err(e) => {
            let msg = format!(
                "error forwarding port {port} to pod {}, uid {}: {e}",
                target.pod, target.uid
            );
            tracing::debug!("port-forward: {msg}");
            let _ = out.send(data(error_id, 0, msg.as_bytes())).await;
            let _ = out.send(data(error_id, spdy::FLAG_FIN, &[])).await;
            let _ = out.send(data(data_id, spdy::FLAG_FIN, &[])).await;
            return;
        }
    };
    let (mut r, mut w) = conn.into_split();
    let up_out = out.clone();
    // Client → pod, acknowledging what was written with WINDOW_UPDATE.
    tokio::spawn(async move {
        while let Some(chunk) = from_client.recv().await {
            if w.write_all(&chunk).await.is_err() {
                break;
            }
            let delta = chunk.len() as u32;
            for stream_id in [data_id, 0] {
                let _ = up_out
                    .send(frame(&Frame::WindowUpdate { stream_id, delta }))
                    .await;
            }
        }
        let _ = w.shutdown().await;
    });
    // Pod → client.
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if out.send(data(data_id, 0, &buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = out.send(data(data_id, spdy::FLAG_FIN, &[])).await;
    let _ = out.send(data(error_id, spdy::FLAG_FIN, &[])).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syn(enc: &mut HeaderEncoder, id: u32, kind: &str, port: &str, req: &str) -> Bytes {
        let headers = enc
            .encode(&[("streamType", kind), ("port", port), ("requestID", req)])
            .unwrap();
        frame(&Frame::SynStream {
            stream_id: id,
            associated: 0,
            priority: 0,
            flags: 0,
            headers,
        })
    }

    /// Reads frames from `rx` until `pred` matches one; returns all seen.
    async fn until(
        rx: &mut mpsc::Receiver<Bytes>,
        buf: &mut Vec<u8>,
        mut pred: impl FnMut(&Frame) -> bool,
    ) -> Vec<Frame> {
        let mut seen = Vec::new();
        loop {
            while let Some((f, n)) = spdy::decode(buf).unwrap() {
                buf.drain(..n);
                let done = pred(&f);
                seen.push(f);
                if done {
                    return seen;
                }
            }
            let b = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
                .await
                .expect("timed out waiting for a frame")
                .expect("session ended");
            buf.extend_from_slice(&b);
        }
    }

    /// A whole session against a TCP echo-and-close server on host loopback
    /// (hostNetwork target): replies, data both ways, FINs, PING, and the
    /// error-stream message for a closed port.
    #[tokio::test]
    async fn session_forwards_to_loopback() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            s.write_all(b"echo:").await.unwrap();
            s.write_all(&got).await.unwrap();
        });
        let (in_tx, in_rx) = mpsc::channel(16);
        let (out_tx, mut out_rx) = mpsc::channel(256);
        let target = Target {
            netns: None,
            pod: "p".into(),
            uid: "u".into(),
        };
        let session = tokio::spawn(serve_session(in_rx, out_tx, target));
        let mut enc = HeaderEncoder::new();
        let mut dec = HeaderDecoder::new();
        let mut buf = Vec::new();
        let p = port.to_string();
        in_tx
            .send(syn(&mut enc, 1, "error", &p, "0"))
            .await
            .unwrap();
        in_tx.send(data(1, spdy::FLAG_FIN, &[])).await.unwrap();
        in_tx.send(syn(&mut enc, 3, "data", &p, "0")).await.unwrap();
        // Split a frame across two chunks to exercise buffering.
        let d = data(3, 0, b"hello");
        in_tx.send(d.slice(..3)).await.unwrap();
        in_tx.send(d.slice(3..)).await.unwrap();
        in_tx.send(data(3, spdy::FLAG_FIN, &[])).await.unwrap();
        in_tx.send(frame(&Frame::Ping { id: 7 })).await.unwrap();
        let mut replies = 0;
        let mut payload = Vec::new();
        let mut error_fin = false;
        let mut data_fin = false;
        let mut ping = false;
        let mut window = 0;
        until(&mut out_rx, &mut buf, |f| {
            match f {
                Frame::SynReply { headers, .. } => {
                    assert!(dec.decode(headers).unwrap().is_empty());
                    replies += 1;
                }
                Frame::Data {
                    stream_id: 3,
                    flags,
                    data,
                } => {
                    payload.extend_from_slice(data);
                    data_fin |= flags & spdy::FLAG_FIN != 0;
                }
                Frame::Data {
                    stream_id: 1,
                    flags,
                    data,
                } => {
                    assert!(data.is_empty(), "unexpected error: {data:?}");
                    error_fin |= flags & spdy::FLAG_FIN != 0;
                }
                Frame::Ping { id: 7 } => ping = true,
                Frame::WindowUpdate {
                    stream_id: 3,
                    delta,
                } => window += delta,
                _ => {}
            }
            replies == 2 && data_fin && error_fin && ping && window == 5
        })
        .await;
        assert_eq!(payload, b"echo:hello");

        // A second connection to a port nobody listens on: the error stream says so.
        drop(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let c = closed.to_string();
        in_tx
            .send(syn(&mut enc, 5, "error", &c, "1"))
            .await
            .unwrap();
        in_tx.send(syn(&mut enc, 7, "data", &c, "1")).await.unwrap();
        let mut msg = Vec::new();
        until(&mut out_rx, &mut buf, |f| {
            if let Frame::Data {
                stream_id: 5,
                flags,
                data,
            } = f
            {
                msg.extend_from_slice(data);
                return flags & spdy::FLAG_FIN != 0;
            }
            false
        })
        .await;
        let msg = String::from_utf8(msg).unwrap();
        assert!(
            msg.starts_with(&format!(
                "error forwarding port {closed} to pod p, uid u: cannot connect"
            )),
            "{msg}"
        );
        in_tx
            .send(frame(&Frame::GoAway {
                last_good: 0,
                status: 0,
            }))
            .await
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), session)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn request_keys() {
        let h = vec![("requestid".to_string(), "4".to_string())];
        assert_eq!(request_key(&h, Kind::Data, 9), "4");
        assert_eq!(request_key(&[], Kind::Error, 5), "5");
        assert_eq!(request_key(&[], Kind::Data, 7), "5");
    }
}
