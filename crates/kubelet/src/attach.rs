//! `kubectl attach` on the kubelet side: owns `GET|POST
//! /attach/{namespace}/{pod}/{container}` (WebSocket, `v5.channel.k8s.io` /
//! `v4.channel.k8s.io`, the same channel framing as [`crate::exec`]) and the
//! write ends of containers' stdin pipes.
//!
//! Output: the container's stdout (channel 1) and stderr (channel 2) from
//! the moment of attaching, followed from its current CRI log file (the
//! runtime's pipes already feed it), until the container exits; then a
//! `Success` status on channel 3. With `tty=true` both go to channel 1.
//!
//! Input: a container with `stdin: true` gets the read end of a pipe as
//! its stdin ([`open_stdin`], called by the sandbox before `runc create`);
//! the kubelet keeps the write end open for the container's life, so the
//! process blocks reading until someone attaches (`kubectl run -i`,
//! `kubectl attach -i`). Channel 0 is written to it. With `stdinOnce: true`
//! the pipe is closed (the process sees EOF) when the first attached client
//! closes its stdin (v5 close frame for channel 0) or goes away. Containers
//! without `stdin: true` read `/dev/null`; input sent to them is dropped
//! with a note on stderr.
//!
//! TTY: a container with `tty: true` runs on a pty whose master runc hands
//! the kubelet ([`crate::runtime::Runtime::create_with_console`]);
//! [`keep_console`] holds it for the container's life: a thread copies its
//! output, raw (one stream, `stdout`, as kubelets log tty containers), into
//! the CRI log file and to every attached client; attach writes channel 0
//! to the master (when the container has `stdin: true`) and applies resize
//! messages (channel 4, TIOCSWINSZ). With `stdinOnce: true`, the first
//! client's stdin EOF (or departure) sends the terminal's EOF character
//! (^D) and later input is dropped.

use crate::exec::{next_frame, parse_exec_query, ExecState};
use crate::logs::{log_files, parse_line};
use crate::sandbox::{pid_alive, read_json, ContainerFile};
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{Path as AxPath, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Said on stderr when the client sends input to a container whose stdin is not open.
pub const NO_STDIN_NOTE: &str =
    "minik: this container was not started with stdin: true (its stdin is /dev/null); input is dropped, showing output only\n";

/// The kubelet's end of one container's stdin pipe.
struct StdinPipe {
    writer: Option<tokio::net::unix::pipe::Sender>,
    once: bool,
}

type SharedPipe = Arc<tokio::sync::Mutex<StdinPipe>>;

/// Open stdin pipes by container directory (`<pods>/<uid>/containers/<name>`).
static STDIN_PIPES: LazyLock<Mutex<HashMap<PathBuf, SharedPipe>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// For a container with `stdin: true`: makes the pipe, keeps its write end
/// for attach (replacing the one of an earlier run of the same container)
/// and returns the read end for the runtime to hand to the container.
/// `None` (stdin on /dev/null) otherwise. Must run inside a tokio runtime.
pub fn open_stdin(
    container_dir: &Path,
    stdin: bool,
    once: bool,
) -> std::io::Result<Option<OwnedFd>> {
    let mut map = STDIN_PIPES.lock().unwrap_or_else(|p| p.into_inner());
    // Pipes of containers whose pod is gone.
    map.retain(|dir, _| dir.is_dir());
    map.remove(container_dir);
    if !stdin {
        return Ok(None);
    }
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
    let sender = tokio::net::unix::pipe::Sender::from_owned_fd(w)?;
    map.insert(
        container_dir.to_path_buf(),
        Arc::new(tokio::sync::Mutex::new(StdinPipe {
            writer: Some(sender),
            once,
        })),
    );
    Ok(Some(r))
}

/// The kubelet's end of a `tty: true` container's pty.
struct Console {
    master: Arc<std::fs::File>,
    /// Output to attached clients; taken (closing their receivers) when
    /// the container's side of the pty closes.
    output: Mutex<Option<tokio::sync::broadcast::Sender<Bytes>>>,
    /// The container has `stdin: true`.
    stdin: bool,
    once: bool,
    /// stdinOnce: the first client's stdin has ended.
    stdin_closed: std::sync::atomic::AtomicBool,
}

/// Consoles of running tty containers by container directory.
static CONSOLES: LazyLock<Mutex<HashMap<PathBuf, Arc<Console>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn console(container_dir: &Path) -> Option<Arc<Console>> {
    CONSOLES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(container_dir)
        .cloned()
}

/// CRI log lines for one chunk of terminal output: each `\n`-ended piece a
/// full line, a trailing rest a partial one (so a prompt is logged at once). Pure.
pub fn tty_log_lines(time: chrono::DateTime<chrono::Utc>, chunk: &[u8]) -> String {
    let mut out = String::new();
    for piece in chunk.split_inclusive(|b| *b == b'\n') {
        let full = piece.ends_with(b"\n");
        let text = String::from_utf8_lossy(if full {
            &piece[..piece.len() - 1]
        } else {
            piece
        });
        out.push_str(&crate::logs::format_line(time, "stdout", !full, &text));
    }
    out
}

/// Keeps a tty container's pty master (see the module doc): registers it
/// for attach and starts the thread that copies its output to `log_path`
/// (marked active in `registry` until the container's side closes).
pub fn keep_console(
    container_dir: &Path,
    master: OwnedFd,
    log_path: PathBuf,
    registry: crate::logs::LogRegistry,
    stdin: bool,
    once: bool,
) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let mut reader = std::fs::File::from(master.try_clone()?);
    let (output, _) = tokio::sync::broadcast::channel::<Bytes>(256);
    let console = Arc::new(Console {
        master: Arc::new(std::fs::File::from(master)),
        output: Mutex::new(Some(output.clone())),
        stdin,
        once,
        stdin_closed: std::sync::atomic::AtomicBool::new(false),
    });
    {
        let mut map = CONSOLES.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|dir, _| dir.is_dir());
        map.insert(container_dir.to_path_buf(), console.clone());
    }
    registry.set_active(&log_path, true);
    let dir = container_dir.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("tty-log".into())
        .spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match reader.read(&mut buf) {
                    // EIO once the container's side of the pty is closed.
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let _ =
                            file.write_all(tty_log_lines(chrono::Utc::now(), &buf[..n]).as_bytes());
                        let _ = output.send(Bytes::copy_from_slice(&buf[..n]));
                    }
                }
            }
            drop(output);
            console
                .output
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            registry.set_active(&log_path, false);
            let mut map = CONSOLES.lock().unwrap_or_else(|p| p.into_inner());
            if map.get(&dir).is_some_and(|c| Arc::ptr_eq(c, &console)) {
                map.remove(&dir);
            }
        });
    if let Err(e) = spawned {
        CONSOLES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(container_dir);
        return Err(e);
    }
    Ok(())
}

/// Writes client input to the pty master (off the async threads: a full
/// terminal buffer blocks until the process reads).
async fn write_console(c: &Arc<Console>, data: Vec<u8>) -> bool {
    let master = c.master.clone();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        (&*master).write_all(&data).is_ok()
    })
    .await
    .unwrap_or(false)
}

/// Client → pty: input (channel 0), resize (4), stdin close (255).
async fn pump_console_input(
    mut stream: futures::stream::SplitStream<axum::extract::ws::WebSocket>,
    c: Arc<Console>,
    want_stdin: bool,
) {
    use std::sync::atomic::Ordering;
    let accepts = |c: &Console| want_stdin && c.stdin && !c.stdin_closed.load(Ordering::SeqCst);
    let close = |c: Arc<Console>| async move {
        if accepts(&c) && c.once && !c.stdin_closed.swap(true, Ordering::SeqCst) {
            // The terminal's EOF: what closing stdin means on a pty.
            write_console(&c, vec![0x04]).await;
        }
    };
    while let Some((ch, rest)) = next_frame(&mut stream).await {
        match ch {
            0 if !rest.is_empty() && accepts(&c) => {
                write_console(&c, rest).await;
            }
            4 => {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&rest) {
                    let w = v["Width"].as_u64().unwrap_or(80).min(u16::MAX as u64) as u16;
                    let h = v["Height"].as_u64().unwrap_or(24).min(u16::MAX as u64) as u16;
                    if let Ok(fd) = c.master.try_clone() {
                        crate::exec::set_winsize(&OwnedFd::from(fd), w, h);
                    }
                }
            }
            255 if rest.first() == Some(&0) => close(c.clone()).await,
            _ => {}
        }
    }
    close(c).await;
}

/// An attach session on a tty container's console.
async fn console_session(socket: axum::extract::ws::WebSocket, c: Arc<Console>, want_stdin: bool) {
    let out = c
        .output
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|o| o.subscribe());
    let (mut sink, stream) = socket.split();
    // None: the container exited since the handler looked.
    let Some(mut out) = out else {
        let _ = sink
            .send(ws_msg(3, br#"{"metadata":{},"status":"Success"}"#))
            .await;
        let _ = sink.close().await;
        return;
    };
    let (closed_tx, mut closed_rx) = tokio::sync::oneshot::channel::<()>();
    let input = tokio::spawn(async move {
        pump_console_input(stream, c, want_stdin).await;
        let _ = closed_tx.send(());
    });
    let mut client_gone = false;
    loop {
        tokio::select! {
            _ = &mut closed_rx => { client_gone = true; break; }
            got = out.recv() => match got {
                Ok(b) => {
                    if sink.send(ws_msg(1, &b)).await.is_err() {
                        client_gone = true;
                        break;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                // The container's side of the pty closed: it has exited.
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
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
}

fn stdin_pipe(container_dir: &Path) -> Option<SharedPipe> {
    STDIN_PIPES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(container_dir)
        .cloned()
}

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
fn running_log(st: &ExecState, ns: &str, pod: &str, container: &str) -> Option<(PathBuf, PathBuf)> {
    let uid = st.registry.pod_uid(ns, pod)?;
    let dir = st.pods_dir.join(uid).join("containers").join(container);
    let f: ContainerFile = read_json(&dir.join("container.json"))?;
    if !pid_alive(f.pid) {
        return None;
    }
    let log = log_files(&dir).last().map(|(_, p)| p.clone())?;
    Some((dir, log))
}

/// Client → container stdin, until the client goes away. Closes the pipe
/// at the client's stdin EOF (or departure) when the container is `stdinOnce`.
async fn pump_stdin(
    mut stream: futures::stream::SplitStream<axum::extract::ws::WebSocket>,
    pipe: Option<SharedPipe>,
) {
    let close = |pipe: &Option<SharedPipe>| {
        let pipe = pipe.clone();
        async move {
            if let Some(p) = pipe {
                let mut g = p.lock().await;
                if g.once {
                    g.writer = None;
                }
            }
        }
    };
    while let Some((ch, rest)) = next_frame(&mut stream).await {
        match ch {
            0 if !rest.is_empty() => {
                if let Some(p) = &pipe {
                    let mut g = p.lock().await;
                    if let Some(w) = g.writer.as_mut() {
                        if w.write_all(&rest).await.is_err() {
                            // The process closed its stdin (or exited).
                            g.writer = None;
                        }
                    }
                }
            }
            255 if rest.first() == Some(&0) => close(&pipe).await,
            _ => {}
        }
    }
    close(&pipe).await;
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
    let Some((cdir, path)) = running_log(&st, &ns, &pod, &container) else {
        return (
            StatusCode::NOT_FOUND,
            format!("container {container:?} in pod {pod:?} (namespace {ns:?}) is not running\n"),
        )
            .into_response();
    };
    if let Some(c) = console(&cdir) {
        return ws
            .protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"])
            .on_upgrade(move |socket| console_session(socket, c, opts.stdin));
    }
    let registry = st.registry.clone();
    ws.protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"])
        .on_upgrade(move |socket| async move {
            // Output from this point on (before any input can produce some).
            let mut offset = tokio::fs::metadata(&path)
                .await
                .map(|m| m.len())
                .unwrap_or(0);
            let (mut sink, stream) = socket.split();
            // Input goes to the container's stdin pipe when it has one;
            // it is read either way so that close frames are seen.
            let pipe = if opts.stdin { stdin_pipe(&cdir) } else { None };
            if opts.stdin && pipe.is_none() && opts.stderr && !opts.tty {
                let _ = sink.send(ws_msg(2, NO_STDIN_NOTE.as_bytes())).await;
            }
            let (closed_tx, mut closed_rx) = tokio::sync::oneshot::channel::<()>();
            let input = tokio::spawn(async move {
                pump_stdin(stream, pipe).await;
                let _ = closed_tx.send(());
            });
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

    #[test]
    fn tty_output_is_logged_raw_with_partial_tails() {
        let t = Utc::now();
        let data = tty_log_lines(t, b"hello-42\r\n/ # ");
        let lines: Vec<_> = data.lines().map(|l| parse_line(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[0].stream, lines[0].partial), ("stdout", false));
        // The CR stays in the file; a reader splitting on CRLF drops it.
        assert_eq!(lines[0].content, "hello-42");
        assert_eq!((lines[1].content, lines[1].partial), ("/ # ", true));
        assert_eq!(
            lines_to_channels(&data, true, true, false),
            vec![(1, b"hello-42\n/ # ".to_vec())]
        );
        assert_eq!(tty_log_lines(t, b""), "");
    }
}
