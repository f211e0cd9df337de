//! Container probes (startup, liveness, readiness): owns probe timing and
//! thresholds (pure `ProbeTracker`) and probe execution: HTTP GET and TCP
//! from the node to the pod IP (the node routes to pods over the bridge),
//! exec through the OCI runtime (`runc exec`). Results feed the pod worker,
//! which restarts containers and sets `ready`.

use crate::runtime::Runtime;
use k8s_openapi::api::core::v1::Probe;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    pub fn title(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// What a tracker concluded after a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Threshold reached: success.
    Succeeded,
    /// Threshold reached: failure.
    Failed,
    /// Not yet decided / unchanged.
    Pending,
}

/// Timing and thresholds of one probe on one container run. Pure.
#[derive(Debug, Clone)]
pub struct ProbeTracker {
    pub kind: Kind,
    pub probe: Probe,
    pub next: Instant,
    successes: i32,
    failures: i32,
    /// Last decided outcome (None = undecided).
    pub state: Option<bool>,
}

fn secs(v: Option<i32>, default: i32, min: i32) -> Duration {
    Duration::from_secs(v.unwrap_or(default).max(min) as u64)
}

impl ProbeTracker {
    pub fn new(kind: Kind, probe: Probe, started: Instant) -> Self {
        let delay = secs(probe.initial_delay_seconds, 0, 0);
        ProbeTracker {
            kind,
            next: started + delay,
            probe,
            successes: 0,
            failures: 0,
            state: None,
        }
    }
    pub fn period(&self) -> Duration {
        secs(self.probe.period_seconds, 10, 1)
    }
    pub fn timeout(&self) -> Duration {
        secs(self.probe.timeout_seconds, 1, 1)
    }
    fn success_threshold(&self) -> i32 {
        self.probe.success_threshold.unwrap_or(1).max(1)
    }
    fn failure_threshold(&self) -> i32 {
        self.probe.failure_threshold.unwrap_or(3).max(1)
    }

    /// Records one result taken at `now` and schedules the next probe.
    pub fn record(&mut self, ok: bool, now: Instant) -> Verdict {
        self.next = now + self.period();
        if ok {
            self.failures = 0;
            self.successes += 1;
            if self.successes >= self.success_threshold() && self.state != Some(true) {
                self.state = Some(true);
                return Verdict::Succeeded;
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if self.failures >= self.failure_threshold() {
                self.failures = 0;
                self.state = Some(false);
                return Verdict::Failed;
            }
        }
        Verdict::Pending
    }
}

/// Runs one probe; `Err(message)` is a failure in kube's wording.
pub async fn run_probe(
    probe: &Probe,
    pod_ip: &str,
    runtime: &Runtime,
    container_id: &str,
    named_ports: &[(String, i32)],
    timeout: Duration,
) -> Result<(), String> {
    let port_of = |p: &IntOrString| -> Result<i32, String> {
        match p {
            IntOrString::Int(i) => Ok(*i),
            IntOrString::String(s) => s
                .parse::<i32>()
                .ok()
                .or_else(|| named_ports.iter().find(|(n, _)| n == s).map(|(_, p)| *p))
                .ok_or_else(|| format!("unknown port name {s:?}")),
        }
    };
    if let Some(h) = &probe.http_get {
        let port = port_of(&h.port)?;
        let host = h
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| pod_ip.to_string());
        let path = h
            .path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into());
        let scheme = h.scheme.clone().unwrap_or_else(|| "HTTP".into());
        let url = format!("{}://{host}:{port}{path}", scheme.to_lowercase());
        let headers: Vec<(String, String)> = h
            .http_headers
            .iter()
            .flatten()
            .map(|hh| (hh.name.clone(), hh.value.clone()))
            .collect();
        return tokio::time::timeout(timeout, http_get(&host, port, &path, &headers))
            .await
            .map_err(|_| format!("Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"))?
            .map_err(|e| format!("Get \"{url}\": {e}"));
    }
    if let Some(t) = &probe.tcp_socket {
        let port = port_of(&t.port)?;
        let host = t
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| pod_ip.to_string());
        return match tokio::time::timeout(
            timeout,
            tokio::net::TcpStream::connect((host.as_str(), port as u16)),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: connect: {}", io_msg(&e))),
            Err(_) => Err(format!("dial tcp {host}:{port}: i/o timeout")),
        };
    }
    if let Some(e) = &probe.exec {
        let cmd = e.command.clone().unwrap_or_default();
        if cmd.is_empty() {
            return Err("exec probe has no command".into());
        }
        let mut c = tokio::process::Command::new(&runtime.bin);
        c.arg("--root")
            .arg(&runtime.state_root)
            .arg("exec")
            .arg(container_id)
            .args(&cmd);
        c.stdin(std::process::Stdio::null()).kill_on_drop(true);
        return match tokio::time::timeout(timeout, c.output()).await {
            Ok(Ok(out)) if out.status.success() => Ok(()),
            Ok(Ok(out)) => {
                let mut msg = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if msg.is_empty() {
                    msg = format!(
                        "command {cmd:?} exited with {}",
                        out.status.code().unwrap_or(-1)
                    );
                }
                Err(msg)
            }
            Ok(Err(e)) => Err(format!("exec: {e}")),
            Err(_) => Err(format!("command {cmd:?} timed out")),
        };
    }
    if probe.grpc.is_some() {
        return Err("gRPC probes are not supported by minik yet".into());
    }
    Err("probe has no handler".into())
}

/// Runs a lifecycle hook (postStart / preStop) within `timeout`.
pub async fn run_hook(
    h: &k8s_openapi::api::core::v1::LifecycleHandler,
    pod_ip: &str,
    runtime: &Runtime,
    container_id: &str,
    named_ports: &[(String, i32)],
    timeout: Duration,
) -> Result<(), String> {
    if let Some(s) = &h.sleep {
        let d = Duration::from_secs(s.seconds.max(0) as u64).min(timeout);
        tokio::time::sleep(d).await;
        return Ok(());
    }
    let probe = Probe {
        exec: h.exec.clone(),
        http_get: h.http_get.clone(),
        tcp_socket: h.tcp_socket.clone(),
        ..Default::default()
    };
    run_probe(&probe, pod_ip, runtime, container_id, named_ports, timeout).await
}

/// Go's wording for socket errors (what `kubectl describe` users know).
pub fn io_msg(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::TimedOut => "i/o timeout".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset by peer".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_lowercase(),
                None => s.to_lowercase(),
            }
        }
    }
}

/// Minimal HTTP/1.0 GET: success for status 200..399 (kube's rule).
async fn http_get(
    host: &str,
    port: i32,
    path: &str,
    headers: &[(String, String)],
) -> Result<(), String> {
    let mut s = tokio::net::TcpStream::connect((host, port as u16))
        .await
        .map_err(|e| format!("dial tcp {host}:{port}: connect: {}", io_msg(&e)))?;
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 1024];
    let mut got = 0;
    while got < buf.len() {
        let n = s.read(&mut buf[got..]).await.map_err(|e| io_msg(&e))?;
        if n == 0 {
            break;
        }
        got += n;
        if buf[..got].contains(&b'\n') {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..got]);
    let code = parse_status_line(&head).ok_or_else(|| "malformed HTTP response".to_string())?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

pub fn parse_status_line(head: &str) -> Option<u16> {
    let line = head.lines().next()?;
    let mut it = line.split_whitespace();
    let proto = it.next()?;
    if !proto.starts_with("HTTP/") {
        return None;
    }
    it.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(v: serde_json::Value) -> Probe {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn thresholds_and_timing() {
        let t0 = Instant::now();
        let p = probe(
            serde_json::json!({"tcpSocket": {"port": 80}, "initialDelaySeconds": 5,
                                         "periodSeconds": 2, "failureThreshold": 2, "successThreshold": 2}),
        );
        let mut t = ProbeTracker::new(Kind::Readiness, p, t0);
        assert_eq!(t.next, t0 + Duration::from_secs(5));
        assert_eq!(t.record(true, t0), Verdict::Pending);
        assert_eq!(t.next, t0 + Duration::from_secs(2));
        assert_eq!(t.record(true, t0), Verdict::Succeeded);
        assert_eq!(t.state, Some(true));
        assert_eq!(
            t.record(true, t0),
            Verdict::Pending,
            "no repeat when unchanged"
        );
        assert_eq!(t.record(false, t0), Verdict::Pending);
        assert_eq!(t.record(false, t0), Verdict::Failed);
        assert_eq!(t.state, Some(false));
    }

    #[test]
    fn defaults() {
        let t = ProbeTracker::new(
            Kind::Liveness,
            probe(serde_json::json!({"httpGet": {"port": 80}})),
            Instant::now(),
        );
        assert_eq!(t.period(), Duration::from_secs(10));
        assert_eq!(t.timeout(), Duration::from_secs(1));
        let mut t = t;
        let now = Instant::now();
        assert_eq!(t.record(false, now), Verdict::Pending);
        assert_eq!(t.record(false, now), Verdict::Pending);
        assert_eq!(t.record(false, now), Verdict::Failed);
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line("HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status_line("HTTP/1.0 404 Not Found\r\n"), Some(404));
        assert_eq!(parse_status_line("garbage"), None);
    }

    #[tokio::test]
    async fn http_and_tcp_probes_against_a_local_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port() as i32;
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut b = [0u8; 512];
                    let n = s.read(&mut b).await.unwrap_or(0);
                    let req = String::from_utf8_lossy(&b[..n]).into_owned();
                    let resp = if req.starts_with("GET /ok ") {
                        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
                    } else {
                        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
                    };
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        let rt = Runtime::new(
            std::path::Path::new("runc"),
            std::path::Path::new("/nonexistent"),
        );
        let ok = probe(serde_json::json!({"httpGet": {"path": "/ok", "port": "web"}}));
        let named = vec![("web".to_string(), port)];
        assert_eq!(
            run_probe(&ok, "127.0.0.1", &rt, "x", &named, Duration::from_secs(2)).await,
            Ok(())
        );
        let bad = probe(serde_json::json!({"httpGet": {"path": "/bad", "port": port}}));
        let e = run_probe(&bad, "127.0.0.1", &rt, "x", &named, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(e.contains("statuscode: 503"), "{e}");
        let tcp = probe(serde_json::json!({"tcpSocket": {"port": port}}));
        assert_eq!(
            run_probe(&tcp, "127.0.0.1", &rt, "x", &named, Duration::from_secs(2)).await,
            Ok(())
        );
        // A closed port on loopback is refused.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cport = closed.local_addr().unwrap().port();
        drop(closed);
        let tcp = probe(serde_json::json!({"tcpSocket": {"port": cport}}));
        let e = run_probe(&tcp, "127.0.0.1", &rt, "x", &named, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(e.ends_with(": connect: connection refused"), "{e}");
    }
}
