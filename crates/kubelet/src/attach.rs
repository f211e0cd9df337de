//! `kubectl attach` on the kubelet side: owns `GET|POST
//! /attach/{namespace}/{pod}/{container}` (WebSocket, `v5.channel.k8s.io` /
//! `v4.channel.k8s.io`, the same channel framing as [`crate::exec`]).
//!
//! What attaches: the container's stdout (channel 1) and stderr (channel 2)
//! from the moment of attaching, followed from its current CRI log file (the
//! runtime's pipes already feed it), until the container exits; then a
//! `Success` status on channel 3. With `tty=true` both go to channel 1.
//! Not yet: stdin. Containers are started with stdin on /dev/null, so input
//! sent by `kubectl attach -i` is dropped and a note says so on stderr.

use crate::exec::{parse_exec_query, ExecState};
use crate::logs::{log_files, parse_line};
use crate::sandbox::{pid_alive, read_json, ContainerFile};
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{Path as AxPath, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Said on stderr when the client asks for stdin.
pub const NO_STDIN_NOTE: &str =
    "minik: attaching stdin is not supported yet (containers run with stdin on /dev/null); showing output only\n";

fn ws_msg(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(Bytes::from(v))
}

/// Turns complete CRI log lines into (channel, bytes) messages. Pure.
/// `want_out`/`want_err` say which streams the client asked for.
pub fn lines_to_channels(
    data: &str,
    tty: bool,
    want_out: bool,
    want_err: bool,
) -> Vec<(u8, Vec<u8>)> {
    let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
    for line in data.lines() {
        let Some(l) = parse_line(line) else { continue };
        let ch = match (l.stream, tty) {
            (_, true) | ("stdout", false) => 1,
            _ => 2,
        };
        if (ch == 1 && !want_out && !(tty && want_err)) || (ch == 2 && !want_err) {
            continue;
        }
        let mut bytes = l.content.as_bytes().to_vec();
        if !l.partial {
            bytes.push(b'\n');
        }
        match out.last_mut() {
            Some((c, b)) if *c == ch => b.extend_from_slice(&bytes),
            _ => out.push((ch, bytes)),
        }
    }
    out
}

/// The container's directory and current log file, when it is running.
fn running_log(st: &ExecState, ns: &str, pod: &str, container: &str) -> Option<PathBuf> {
    let uid = st.registry.pod_uid(ns, pod)?;
    let dir = st.pods_dir.join(uid).join("containers").join(container);
    let f: ContainerFile = read_json(&dir.join("container.json"))?;
    if !pid_alive(f.pid) {
        return None;
    }
    log_files(&dir).last().map(|(_, p)| p.clone())
}

pub async fn attach_handler(
    State(st): State<ExecState>,
    AxPath((ns, pod, container)): AxPath<(String, String, String)>,
    RawQuery(q): RawQuery,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let opts = parse_exec_query(q.as_deref().unwrap_or(""));
    let Ok(ws) = ws else {
        return (
            StatusCode::BAD_REQUEST,
            "attach needs a WebSocket upgrade (v5.channel.k8s.io or v4.channel.k8s.io)\n",
        )
            .into_response();
    };
    let Some(path) = running_log(&st, &ns, &pod, &container) else {
        return (
            StatusCode::NOT_FOUND,
            format!("container {container:?} in pod {pod:?} (namespace {ns:?}) is not running\n"),
        )
            .into_response();
    };
    let registry = st.registry.clone();
    ws.protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"])
        .on_upgrade(move |socket| async move {
            let (mut sink, mut stream) = socket.split();
            // Input is read (and dropped) so that close frames are seen.
            let (closed_tx, mut closed_rx) = tokio::sync::oneshot::channel::<()>();
            let input = tokio::spawn(async move {
                while let Some(Ok(m)) = stream.next().await {
                    if matches!(m, Message::Close(_)) {
                        break;
                    }
                }
                let _ = closed_tx.send(());
            });
            if opts.stdin && opts.stderr && !opts.tty {
                let _ = sink.send(ws_msg(2, NO_STDIN_NOTE.as_bytes())).await;
            }
            let mut offset = tokio::fs::metadata(&path)
                .await
                .map(|m| m.len())
                .unwrap_or(0);
            let mut carry: Vec<u8> = Vec::new();
            let mut client_gone = false;
            loop {
                let active = registry.is_active(&path);
                let mut chunk = Vec::new();
                if let Ok(mut f) = tokio::fs::File::open(&path).await {
                    if f.seek(std::io::SeekFrom::Start(offset)).await.is_ok() {
                        let _ = f.read_to_end(&mut chunk).await;
                    }
                }
                offset += chunk.len() as u64;
                carry.extend_from_slice(&chunk);
                if let Some(i) = carry.iter().rposition(|b| *b == b'\n') {
                    let rest = carry.split_off(i + 1);
                    let text = String::from_utf8_lossy(&carry).into_owned();
                    carry = rest;
                    for (ch, b) in lines_to_channels(&text, opts.tty, opts.stdout, opts.stderr) {
                        if sink.send(ws_msg(ch, &b)).await.is_err() {
                            client_gone = true;
                            break;
                        }
                    }
                }
                if client_gone || (!active && chunk.is_empty()) {
                    break;
                }
                tokio::select! {
                    _ = &mut closed_rx => { client_gone = true; break; }
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
            if !client_gone {
                let _ = sink
                    .send(ws_msg(3, br#"{"metadata":{},"status":"Success"}"#))
                    .await;
                let _ = sink
                    .send(Message::Close(Some(axum::extract::ws::CloseFrame {
                        code: 1000,
                        reason: "".into(),
                    })))
                    .await;
            }
            input.abort();
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::format_line;
    use chrono::Utc;

    #[test]
    fn log_lines_become_channel_messages() {
        let t = Utc::now();
        let data = [
            format_line(t, "stdout", false, "one"),
            format_line(t, "stdout", true, "tw"),
            format_line(t, "stdout", false, "o"),
            format_line(t, "stderr", false, "oops"),
            format_line(t, "stdout", false, "three"),
        ]
        .concat();
        assert_eq!(
            lines_to_channels(&data, false, true, true),
            vec![
                (1, b"one\ntwo\n".to_vec()),
                (2, b"oops\n".to_vec()),
                (1, b"three\n".to_vec()),
            ]
        );
        assert_eq!(
            lines_to_channels(&data, false, true, false),
            vec![(1, b"one\ntwo\nthree\n".to_vec())]
        );
        assert_eq!(
            lines_to_channels(&data, true, true, false),
            vec![(1, b"one\ntwo\noops\nthree\n".to_vec())]
        );
        assert!(lines_to_channels("garbage\n", false, true, true).is_empty());
    }
}
