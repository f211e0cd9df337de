//! Container logs: owns the CRI log-file format
//! (`<RFC3339Nano> <stdout|stderr> <F|P> <text>` per line, what containerd
//! writes) and the kubelet's HTTP endpoint on `bind_address:port`:
//! `GET /containerLogs/{namespace}/{pod}/{container}` (follow, tailLines,
//! previous, sinceSeconds, timestamps, limitBytes) and `GET /healthz`.
//! The apiserver proxies `pods/log` here. Files live in
//! `<root>/pods/<uid>/<container>/<restartCount>.log`; the highest number is
//! the current container, the next lower one is `--previous`.

use axum::body::Body;
use axum::extract::{Path as AxPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncSeekExt};

/// Longest line stored as one entry; longer output is split into `P` parts.
const MAX_LINE: u64 = 16 * 1024;

/// One parsed log line.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine<'a> {
    pub time: DateTime<Utc>,
    pub stream: &'a str,
    pub partial: bool,
    pub content: &'a str,
}

pub fn format_line(time: DateTime<Utc>, stream: &str, partial: bool, content: &str) -> String {
    format!(
        "{} {stream} {} {content}\n",
        time.to_rfc3339_opts(SecondsFormat::Nanos, true),
        if partial { "P" } else { "F" }
    )
}

pub fn parse_line(line: &str) -> Option<LogLine<'_>> {
    let mut it = line.splitn(4, ' ');
    let ts = it.next()?;
    let stream = it.next()?;
    let tag = it.next()?;
    let content = it.next().unwrap_or("");
    let time = DateTime::parse_from_rfc3339(ts).ok()?.with_timezone(&Utc);
    Some(LogLine {
        time,
        stream,
        partial: tag == "P",
        content: content.strip_suffix('\n').unwrap_or(content),
    })
}

/// Options of `GET /containerLogs`, as kubectl sends them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogOptions {
    #[serde(default, deserialize_with = "de_bool")]
    pub follow: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub previous: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub timestamps: bool,
    pub tail_lines: Option<i64>,
    pub since_seconds: Option<i64>,
    pub since_time: Option<String>,
    pub limit_bytes: Option<i64>,
}

fn de_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let s = String::deserialize(d)?;
    Ok(matches!(s.as_str(), "true" | "1" | "True" | "TRUE" | ""))
}

/// Renders CRI-format file content for the client. Pure. Returns the text
/// and whether the last line was a dangling partial.
pub fn render(data: &str, opts: &LogOptions, now: DateTime<Utc>) -> String {
    let since = since_cutoff(opts, now);
    // Assemble full lines first (P parts joined), keeping the first part's time.
    let mut lines: Vec<(DateTime<Utc>, String)> = Vec::new();
    let mut pending: Option<(DateTime<Utc>, String)> = None;
    for raw in data.lines() {
        let Some(l) = parse_line(raw) else { continue };
        let entry = pending.get_or_insert_with(|| (l.time, String::new()));
        entry.1.push_str(l.content);
        if !l.partial {
            if let Some(e) = pending.take() {
                lines.push(e);
            }
        }
    }
    if let Some(e) = pending.take() {
        lines.push(e);
    }
    if let Some(cut) = since {
        lines.retain(|(t, _)| *t >= cut);
    }
    if let Some(n) = opts.tail_lines {
        let n = n.max(0) as usize;
        if lines.len() > n {
            lines.drain(..lines.len() - n);
        }
    }
    let mut out = String::new();
    for (t, s) in lines {
        if opts.timestamps {
            out.push_str(&t.to_rfc3339_opts(SecondsFormat::Nanos, true));
            out.push(' ');
        }
        out.push_str(&s);
        out.push('\n');
    }
    if let Some(limit) = opts.limit_bytes {
        let limit = limit.max(0) as usize;
        if out.len() > limit {
            let mut cut = limit;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
        }
    }
    out
}

fn since_cutoff(opts: &LogOptions, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if let Some(s) = opts.since_seconds {
        return Some(now - chrono::Duration::seconds(s));
    }
    opts.since_time
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Copies one container stream into the shared log file, line by line.
pub async fn pump<R: AsyncRead + Unpin>(
    reader: R,
    stream: &'static str,
    file: Arc<Mutex<std::fs::File>>,
) {
    let mut reader = tokio::io::BufReader::new(reader);
    let mut buf = Vec::with_capacity(1024);
    loop {
        buf.clear();
        let n = match (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(n) => n,
            Err(_) => break,
        };
        if n == 0 {
            break;
        }
        let full = buf.ends_with(b"\n");
        let text = String::from_utf8_lossy(if full {
            &buf[..buf.len() - 1]
        } else {
            &buf[..]
        });
        let partial = !full && n as u64 >= MAX_LINE;
        let line = format_line(Utc::now(), stream, partial, &text);
        if let Ok(mut f) = file.lock() {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// Shared between the pod workers and the HTTP server: which log files are
/// still being written (follow stops when not) and where each pod lives.
#[derive(Debug, Clone, Default)]
pub struct LogRegistry {
    inner: Arc<Mutex<RegistryInner>>,
}

#[derive(Debug, Default)]
struct RegistryInner {
    active: HashSet<PathBuf>,
    pods: HashMap<(String, String), String>,
}

impl LogRegistry {
    pub fn set_active(&self, path: &Path, active: bool) {
        if let Ok(mut g) = self.inner.lock() {
            if active {
                g.active.insert(path.to_path_buf());
            } else {
                g.active.remove(path);
            }
        }
    }
    pub fn is_active(&self, path: &Path) -> bool {
        self.inner
            .lock()
            .map(|g| g.active.contains(path))
            .unwrap_or(false)
    }
    pub fn set_pod(&self, namespace: &str, name: &str, uid: Option<&str>) {
        if let Ok(mut g) = self.inner.lock() {
            let k = (namespace.to_string(), name.to_string());
            match uid {
                Some(u) => {
                    g.pods.insert(k, u.to_string());
                }
                None => {
                    g.pods.remove(&k);
                }
            }
        }
    }
    /// Forgets `namespace/name` only if it still points at `uid` (a pod
    /// recreated under the same name keeps its entry).
    pub fn forget_pod(&self, namespace: &str, name: &str, uid: &str) {
        if let Ok(mut g) = self.inner.lock() {
            let k = (namespace.to_string(), name.to_string());
            if g.pods.get(&k).map(String::as_str) == Some(uid) {
                g.pods.remove(&k);
            }
        }
    }
    pub fn pod_uid(&self, namespace: &str, name: &str) -> Option<String> {
        self.inner
            .lock()
            .ok()?
            .pods
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }
}

/// Log files of one container, sorted by restart count.
pub fn log_files(container_dir: &Path) -> Vec<(u32, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(container_dir) else {
        return vec![];
    };
    let mut v: Vec<(u32, PathBuf)> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_suffix(".log")?.parse::<u32>().ok()?;
            Some((n, e.path()))
        })
        .collect();
    v.sort();
    v
}

#[derive(Clone)]
struct AppState {
    pods_dir: PathBuf,
    registry: LogRegistry,
}

/// The kubelet's HTTP API router.
pub fn router(pods_dir: PathBuf, registry: LogRegistry) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .with_state(AppState { pods_dir, registry })
}

fn find_pod_dir(st: &AppState, ns: &str, pod: &str) -> Option<PathBuf> {
    if let Some(uid) = st.registry.pod_uid(ns, pod) {
        let d = st.pods_dir.join(uid);
        if d.is_dir() {
            return Some(d);
        }
    }
    // Fall back to the on-disk metadata (pods that are gone from the API).
    let rd = std::fs::read_dir(&st.pods_dir).ok()?;
    for e in rd.flatten() {
        let meta = e.path().join("meta.json");
        if let Ok(data) = std::fs::read(&meta) {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&data) {
                if v["namespace"] == ns && v["name"] == pod {
                    return Some(e.path());
                }
            }
        }
    }
    None
}

fn text(status: StatusCode, msg: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg,
    )
        .into_response()
}

async fn container_logs(
    State(st): State<AppState>,
    AxPath((ns, pod, container)): AxPath<(String, String, String)>,
    Query(opts): Query<LogOptions>,
) -> Response {
    let Some(pod_dir) = find_pod_dir(&st, &ns, &pod) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("pod \"{pod}\" in namespace \"{ns}\" is not on this node\n"),
        );
    };
    let files = log_files(&pod_dir.join("containers").join(&container));
    let pick = if opts.previous {
        files.len().checked_sub(2).map(|i| files[i].1.clone())
    } else {
        files.last().map(|f| f.1.clone())
    };
    let Some(path) = pick else {
        let msg = if opts.previous {
            format!("previous terminated container \"{container}\" in pod \"{pod}\" not found\n")
        } else {
            format!("container \"{container}\" in pod \"{pod}\" is waiting to start\n")
        };
        return text(StatusCode::BAD_REQUEST, msg);
    };
    let data = tokio::fs::read(&path).await.unwrap_or_default();
    let now = Utc::now();
    // Render only complete lines; follow continues from the end of them.
    let complete = match data.iter().rposition(|b| *b == b'\n') {
        Some(i) => i + 1,
        None => 0,
    };
    let initial = render(&String::from_utf8_lossy(&data[..complete]), &opts, now);
    let follow = opts.follow && !opts.previous;
    if !follow {
        return text(StatusCode::OK, initial);
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let registry = st.registry.clone();
    let stream_opts = LogOptions {
        tail_lines: None,
        since_seconds: None,
        since_time: None,
        limit_bytes: None,
        ..opts.clone()
    };
    tokio::spawn(async move {
        if !initial.is_empty() && tx.send(Bytes::from(initial)).await.is_err() {
            return;
        }
        let mut offset = complete as u64;
        let mut carry: Vec<u8> = Vec::new();
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
                let out = render(&String::from_utf8_lossy(&carry), &stream_opts, Utc::now());
                carry = rest;
                if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
                    return;
                }
            }
            if !active && chunk.is_empty() {
                return;
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::convert::Infallible>(b), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| {
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "response build failed".into(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn format_and_parse_roundtrip() {
        let time = t("2026-11-23T01:02:03.000000004Z");
        let l = format_line(time, "stdout", false, "hello world");
        assert_eq!(l, "2026-11-23T01:02:03.000000004Z stdout F hello world\n");
        let p = parse_line(l.trim_end()).unwrap();
        assert_eq!(p.time, time);
        assert_eq!(p.stream, "stdout");
        assert!(!p.partial);
        assert_eq!(p.content, "hello world");
        let e = parse_line("2026-11-23T01:02:03Z stderr F ").unwrap();
        assert_eq!(e.content, "");
        assert!(parse_line("garbage").is_none());
    }

    fn sample() -> String {
        [
            format_line(t("2026-11-23T01:00:00Z"), "stdout", false, "one"),
            format_line(t("2026-11-23T01:00:10Z"), "stderr", true, "tw"),
            format_line(t("2026-11-23T01:00:10Z"), "stderr", false, "o"),
            format_line(t("2026-11-23T01:00:20Z"), "stdout", false, "three"),
        ]
        .concat()
    }

    #[test]
    fn render_options() {
        let now = t("2026-11-23T01:00:25Z");
        let all = render(&sample(), &LogOptions::default(), now);
        assert_eq!(all, "one\ntwo\nthree\n");
        let tail = render(
            &sample(),
            &LogOptions {
                tail_lines: Some(2),
                ..Default::default()
            },
            now,
        );
        assert_eq!(tail, "two\nthree\n");
        let since = render(
            &sample(),
            &LogOptions {
                since_seconds: Some(10),
                ..Default::default()
            },
            now,
        );
        assert_eq!(since, "three\n");
        let ts = render(
            &sample(),
            &LogOptions {
                timestamps: true,
                tail_lines: Some(1),
                ..Default::default()
            },
            now,
        );
        assert_eq!(ts, "2026-11-23T01:00:20.000000000Z three\n");
        let lim = render(
            &sample(),
            &LogOptions {
                limit_bytes: Some(5),
                ..Default::default()
            },
            now,
        );
        assert_eq!(lim, "one\nt");
        let zero = render(
            &sample(),
            &LogOptions {
                tail_lines: Some(0),
                ..Default::default()
            },
            now,
        );
        assert_eq!(zero, "");
    }

    #[test]
    fn log_file_ordering() {
        let dir = std::env::temp_dir().join(format!("minik-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for n in [0, 10, 2] {
            std::fs::write(dir.join(format!("{n}.log")), "").unwrap();
        }
        std::fs::write(dir.join("config.json"), "").unwrap();
        let v: Vec<u32> = log_files(&dir).into_iter().map(|(n, _)| n).collect();
        assert_eq!(v, vec![0, 2, 10]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn pump_splits_lines_and_marks_long_ones_partial() {
        let dir = std::env::temp_dir().join(format!("minik-pump-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("0.log");
        let f = Arc::new(Mutex::new(std::fs::File::create(&path).unwrap()));
        let long = "x".repeat(MAX_LINE as usize + 10);
        let input = format!("a\nb\n{long}\ntail");
        pump(input.as_bytes(), "stdout", f).await;
        let data = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<LogLine> = data.lines().map(|l| parse_line(l).unwrap()).collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0].content, "a");
        assert!(lines[2].partial);
        assert!(!lines[3].partial);
        assert_eq!(lines[4].content, "tail");
        let r = render(&data, &LogOptions::default(), Utc::now());
        assert_eq!(r, format!("a\nb\n{long}\ntail\n"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
