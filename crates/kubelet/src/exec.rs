//! `kubectl exec` on the kubelet side: owns `GET /exec/{namespace}/{pod}/{container}`
//! (WebSocket, subprotocols `v5.channel.k8s.io` / `v4.channel.k8s.io`, what
//! kubectl ≥ 1.30 speaks and the apiserver proxies). The command runs in the
//! container through the OCI runtime (`runc exec`). With `tty=true` the
//! kubelet allocates a pseudo-terminal and hands its slave side to the
//! process (resize messages set its window size); without, stdio are pipes.
//!
//! Framing: every binary message starts with a channel byte — 0 stdin,
//! 1 stdout, 2 stderr, 3 status (a `Status` JSON at the end), 4 resize;
//! v5 adds 255 = "close channel N" (stdin EOF).

use crate::runtime::Runtime;
use crate::sandbox::{read_json, ContainerFile};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path as AxPath, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Parsed `PodExecOptions` from the query string.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecOptions {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

fn truthy(v: &str) -> bool {
    matches!(v, "1" | "true" | "True" | "TRUE" | "")
}

/// `command=sh&command=-c&command=ls%20/&stdin=true&tty=1` → options. Pure.
pub fn parse_exec_query(q: &str) -> ExecOptions {
    let mut o = ExecOptions::default();
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        match k.as_ref() {
            "command" => o.command.push(v.into_owned()),
            "stdin" | "input" => o.stdin = truthy(&v),
            "stdout" | "output" => o.stdout = truthy(&v),
            "stderr" | "error" => o.stderr = truthy(&v),
            "tty" => o.tty = truthy(&v),
            _ => {}
        }
    }
    o
}

/// The final status message (channel 3), as the kubelet sends it.
pub fn status_json(command: &[String], exit_code: Option<i32>, error: Option<&str>) -> String {
    let v = match (exit_code, error) {
        (_, Some(e)) => serde_json::json!({
            "metadata": {}, "status": "Failure", "message": e, "reason": "InternalError",
        }),
        (Some(0), None) => serde_json::json!({"metadata": {}, "status": "Success"}),
        (code, None) => {
            let code = code.unwrap_or(137);
            serde_json::json!({
                "metadata": {}, "status": "Failure",
                "message": format!(
                    "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                    command.join(" ")
                ),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            })
        }
    };
    v.to_string()
}

#[derive(Clone)]
pub struct ExecState {
    pub pods_dir: PathBuf,
    pub registry: crate::logs::LogRegistry,
    pub runtime: Runtime,
}

/// Finds the running runtime container of `namespace/pod/container`.
fn find_container(st: &ExecState, ns: &str, pod: &str, container: &str) -> Option<String> {
    let uid = st.registry.pod_uid(ns, pod)?;
    let f: ContainerFile = read_json(
        &st.pods_dir
            .join(uid)
            .join("containers")
            .join(container)
            .join("container.json"),
    )?;
    crate::sandbox::pid_alive(f.pid).then_some(f.id)
}

pub async fn exec_handler(
    State(st): State<ExecState>,
    AxPath((ns, pod, container)): AxPath<(String, String, String)>,
    RawQuery(q): RawQuery,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let opts = parse_exec_query(q.as_deref().unwrap_or(""));
    let Ok(ws) = ws else {
        return (
            StatusCode::BAD_REQUEST,
            "exec needs a WebSocket upgrade (v5.channel.k8s.io or v4.channel.k8s.io)\n",
        )
            .into_response();
    };
    if opts.command.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 command\n",
        )
            .into_response();
    }
    let Some(id) = find_container(&st, &ns, &pod, &container) else {
        return (
            StatusCode::NOT_FOUND,
            format!("container {container:?} in pod {pod:?} (namespace {ns:?}) is not running\n"),
        )
            .into_response();
    };
    let rt = st.runtime.clone();
    ws.protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"])
        .on_upgrade(move |socket| async move {
            let v5 = socket
                .protocol()
                .is_some_and(|p| p.as_bytes() == b"v5.channel.k8s.io");
            session(socket, rt, id, opts, v5).await;
        })
}

static EXEC_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn ws_msg(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(Bytes::from(v))
}

/// Waits for runc to connect to the console socket and receives the pty
/// master it sends (SCM_RIGHTS); an error says why runc did not.
async fn receive_console(
    listener: &tokio::net::UnixListener,
    child: &mut tokio::process::Child,
) -> Result<OwnedFd, String> {
    let stream = tokio::select! {
        r = listener.accept() => r.map_err(|e| format!("accepting runc's terminal: {e}"))?.0,
        st = child.wait() => {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err).await;
            }
            return Err(format!("runc exec failed ({}) before handing over the terminal: {}",
                st.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()), err.trim()));
        }
    };
    let stream = stream
        .into_std()
        .map_err(|e| format!("runc's terminal socket: {e}"))?;
    tokio::task::spawn_blocking(move || crate::runtime::recv_console_fd(stream))
        .await
        .map_err(|e| format!("receiving runc's terminal: {e}"))?
}

/// Sets the window size of the pty whose master is `fd` (TIOCSWINSZ).
pub(crate) fn set_winsize(fd: &OwnedFd, width: u16, height: u16) {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer; `fd` is an
    // open pty master owned by this session.
    unsafe {
        libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws);
    }
}

/// The next channel frame the client sent (`v4`/`v5.channel.k8s.io`: the
/// first byte names the channel): (channel, payload). None once the socket
/// closes or fails; empty and non-data messages are skipped.
pub(crate) async fn next_frame(
    stream: &mut futures::stream::SplitStream<WebSocket>,
) -> Option<(u8, Vec<u8>)> {
    while let Some(Ok(msg)) = stream.next().await {
        let data = match msg {
            Message::Binary(b) => b.to_vec(),
            Message::Text(t) => t.as_bytes().to_vec(),
            Message::Close(_) => return None,
            _ => continue,
        };
        if let Some((&ch, rest)) = data.split_first() {
            return Some((ch, rest.to_vec()));
        }
    }
    None
}

async fn pump_out<R: AsyncRead + Unpin>(mut r: R, channel: u8, tx: mpsc::Sender<Message>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.send(ws_msg(channel, &buf[..n])).await.is_err() {
                    break;
                }
            }
        }
    }
}

async fn session(socket: WebSocket, rt: Runtime, id: String, opts: ExecOptions, v5: bool) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
        // kubectl treats a close frame without a status code (1005) as an
        // error even after the output: close normally (1000).
        let _ = sink
            .send(Message::Close(Some(axum::extract::ws::CloseFrame {
                code: 1000,
                reason: "".into(),
            })))
            .await;
        let _ = sink.close().await;
    });
    let mut cmd = tokio::process::Command::new(&rt.bin);
    cmd.arg("--root").arg(&rt.state_root).arg("exec");
    // With a tty, runc allocates the terminal inside the container (its own
    // devpts, so `tty` names /dev/pts/0 there, as with kube's runtimes) and
    // hands us the master over `--console-socket`; the process is started
    // detached and, like containers, waited for as our reparented child
    // (see `runtime`). Without, `runc exec` runs in the foreground on pipes.
    let seq = EXEC_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = std::env::temp_dir();
    let pid_file = tmp.join(format!("minik-exec-{}-{seq}.pid", std::process::id()));
    let sock_path = tmp.join(format!("minik-exec-{}-{seq}.sock", std::process::id()));
    let mut console: Option<tokio::net::UnixListener> = None;
    if opts.tty {
        crate::runtime::become_subreaper();
        let _ = std::fs::remove_file(&sock_path);
        match tokio::net::UnixListener::bind(&sock_path) {
            Ok(l) => console = Some(l),
            Err(e) => {
                let msg = format!(
                    "cannot set up the terminal socket {}: {e}",
                    sock_path.display()
                );
                let _ = tx
                    .send(ws_msg(
                        3,
                        status_json(&opts.command, None, Some(&msg)).as_bytes(),
                    ))
                    .await;
                drop(tx);
                let _ = writer.await;
                return;
            }
        }
        cmd.args(["--tty", "--console-socket"])
            .arg(&sock_path)
            .args(["--env", "TERM=xterm", "--detach", "--pid-file"])
            .arg(&pid_file);
    }
    cmd.arg(&id).args(&opts.command).kill_on_drop(true);

    if opts.tty {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
    } else {
        cmd.stdin(if opts.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(if opts.stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stderr(if opts.stderr {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("cannot run {}: {e}", rt.bin.display());
            let _ = tx
                .send(ws_msg(
                    3,
                    status_json(&opts.command, None, Some(&msg)).as_bytes(),
                ))
                .await;
            drop(tx);
            let _ = writer.await;
            return;
        }
    };
    drop(cmd);
    let mut master: Option<OwnedFd> = None;
    if let Some(listener) = console.take() {
        let got = receive_console(&listener, &mut child).await;
        let _ = std::fs::remove_file(&sock_path);
        match got {
            Ok(fd) => master = Some(fd),
            Err(msg) => {
                let _ = tx
                    .send(ws_msg(
                        3,
                        status_json(&opts.command, None, Some(&msg)).as_bytes(),
                    ))
                    .await;
                drop(tx);
                let _ = writer.await;
                return;
            }
        }
    }

    let mut outs = Vec::new();
    let mut stdin_w: Option<Box<dyn tokio::io::AsyncWrite + Unpin + Send>> = None;
    let mut resize_fd: Option<OwnedFd> = None;
    if let Some(m) = master {
        let reader = m
            .try_clone()
            .ok()
            .map(|fd| tokio::fs::File::from_std(std::fs::File::from(fd)));
        let writer_fd = m
            .try_clone()
            .ok()
            .map(|fd| tokio::fs::File::from_std(std::fs::File::from(fd)));
        if let Some(r) = reader {
            outs.push(tokio::spawn(pump_out(r, 1, tx.clone())));
        }
        if let Some(w) = writer_fd {
            stdin_w = Some(Box::new(w));
        }
        resize_fd = Some(m);
    } else {
        if let Some(o) = child.stdout.take() {
            outs.push(tokio::spawn(pump_out(o, 1, tx.clone())));
        }
        if let Some(e) = child.stderr.take() {
            outs.push(tokio::spawn(pump_out(e, 2, tx.clone())));
        }
        if let Some(i) = child.stdin.take() {
            stdin_w = Some(Box::new(i));
        }
    }
    // Client → process.
    let input = tokio::spawn(async move {
        while let Some((ch, rest)) = next_frame(&mut stream).await {
            match ch {
                0 => {
                    if let Some(w) = stdin_w.as_mut() {
                        if w.write_all(&rest).await.is_err() {
                            stdin_w = None;
                        } else {
                            let _ = w.flush().await;
                        }
                    }
                }
                4 => {
                    if let (Some(fd), Ok(v)) = (
                        &resize_fd,
                        serde_json::from_slice::<serde_json::Value>(&rest),
                    ) {
                        let w = v["Width"].as_u64().unwrap_or(80) as u16;
                        let h = v["Height"].as_u64().unwrap_or(24) as u16;
                        set_winsize(fd, w, h);
                    }
                }
                255 if v5 && rest.first() == Some(&0) => {
                    // stdin closed by the client.
                    if let Some(mut w) = stdin_w.take() {
                        let _ = w.shutdown().await;
                    }
                }
                _ => {}
            }
        }
    });
    let status = child.wait().await;
    let mut code = status.ok().and_then(|s| s.code());
    if opts.tty && code == Some(0) {
        // `runc exec --detach` returned: now wait for the process itself.
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        let _ = std::fs::remove_file(&pid_file);
        code = match pid {
            Some(pid) => {
                // A thread, not the blocking pool: a session may last hours.
                let (tx_code, rx_code) = tokio::sync::oneshot::channel();
                let spawned = std::thread::Builder::new()
                    .name(format!("exec-{pid}"))
                    .spawn(move || {
                        let _ = tx_code.send(crate::runtime::wait_exit(pid));
                    });
                match spawned {
                    Ok(_) => rx_code.await.ok().flatten(),
                    Err(_) => None,
                }
            }
            None => None,
        };
    }
    // The tty master never hits EOF while we hold it: give output a moment, then stop.
    for o in outs {
        let _ = tokio::time::timeout(std::time::Duration::from_millis(500), o).await;
    }
    input.abort();
    let _ = tx
        .send(ws_msg(3, status_json(&opts.command, code, None).as_bytes()))
        .await;
    drop(tx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let o = parse_exec_query("command=sh&command=-c&command=echo%20hi%3B%20exit%203&stdin=true&stdout=1&stderr=true&tty=false");
        assert_eq!(o.command, vec!["sh", "-c", "echo hi; exit 3"]);
        assert!(o.stdin && o.stdout && o.stderr && !o.tty);
        let o = parse_exec_query("command=ls&output=1&tty=1");
        assert!(o.stdout && o.tty && !o.stdin);
    }

    #[test]
    fn statuses() {
        let cmd = vec!["sh".to_string(), "-c".to_string(), "exit 3".to_string()];
        let ok: serde_json::Value =
            serde_json::from_str(&status_json(&cmd, Some(0), None)).unwrap();
        assert_eq!(ok["status"], "Success");
        let bad: serde_json::Value =
            serde_json::from_str(&status_json(&cmd, Some(3), None)).unwrap();
        assert_eq!(bad["reason"], "NonZeroExitCode");
        assert_eq!(bad["details"]["causes"][0]["message"], "3");
        assert_eq!(
            bad["message"],
            "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"
        );
    }
}
