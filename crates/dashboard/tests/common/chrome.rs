//! Headless Chromium driven over the Chrome DevTools Protocol, for browser
//! tests: one page, evaluate, wait, real mouse clicks, typing, screenshots.
//! Self-contained so other test crates can include it with `#[path]`
//! (the root crate's full-cluster dashboard test does).
#![allow(dead_code)]

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// Headless Chromium with one page, driven over CDP.
pub struct Chrome {
    child: tokio::process::Child,
    _profile: tempfile::TempDir,
    tx: tokio::sync::mpsc::UnboundedSender<Message>,
    pending: Pending,
    next: AtomicU64,
    session: String,
}

fn chromium_binary() -> PathBuf {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let p = Path::new(dir).join(c);
            if p.exists() {
                return p;
            }
        }
    }
    panic!("Chromium is not installed: run scripts/setup.sh (apt-get install -y chromium)");
}

impl Chrome {
    pub async fn launch(width: u32, height: u32) -> Chrome {
        let profile = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new(chromium_binary())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                // the page under test must never be treated as a background tab
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows",
                "--font-render-hinting=none",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.path().display()),
                "--remote-debugging-port=0",
                "about:blank",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting chromium");
        let stderr = child.stderr.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let ws_url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(l)) = lines.next_line().await {
                if let Some(i) = l.find("ws://") {
                    if l.contains("DevTools listening on") {
                        return l[i..].trim().to_string();
                    }
                }
            }
            panic!("chromium exited before printing its DevTools URL");
        })
        .await
        .expect("chromium did not print its DevTools URL within 30s");
        // keep draining stderr so Chromium never blocks on a full pipe
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .unwrap();
        let (mut sink, mut stream) = ws.split();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let p2 = pending.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                if let Message::Text(t) = m {
                    let v: Value = match serde_json::from_str(t.as_str()) {
                        Ok(v) => v,
                        Err(_) => continue,
                    };
                    if let Some(id) = v.get("id").and_then(Value::as_u64) {
                        if let Some(s) = p2.lock().unwrap().remove(&id) {
                            let _ = s.send(v);
                        }
                    }
                }
            }
        });
        let mut c = Chrome {
            child,
            _profile: profile,
            tx,
            pending,
            next: AtomicU64::new(1),
            session: String::new(),
        };
        // drive the tab Chromium opened (a second tab would be a background one)
        let t = c.call_browser("Target.getTargets", json!({})).await;
        let target = t["targetInfos"]
            .as_array()
            .and_then(|a| a.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["targetId"].as_str())
            .expect("chromium opened no page")
            .to_string();
        let s = c
            .call_browser(
                "Target.attachToTarget",
                json!({"targetId": target, "flatten": true}),
            )
            .await;
        c.session = s["sessionId"].as_str().unwrap().to_string();
        c.call("Page.enable", json!({})).await;
        c.call("Page.bringToFront", json!({})).await;
        c.call(
            "Emulation.setFocusEmulationEnabled",
            json!({"enabled": true}),
        )
        .await;
        c.call("Runtime.enable", json!({})).await;
        c.viewport(width, height).await;
        c
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    async fn send(&self, method: &str, params: Value, session: Option<&str>) -> Value {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        let (stx, srx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, stx);
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.tx.send(Message::Text(msg.to_string().into())).unwrap();
        let v = tokio::time::timeout(Duration::from_secs(60), srx)
            .await
            .unwrap_or_else(|_| panic!("CDP {method} timed out"))
            .unwrap();
        if let Some(e) = v.get("error") {
            panic!("CDP {method} failed: {e}");
        }
        v["result"].clone()
    }
    async fn call_browser(&self, method: &str, params: Value) -> Value {
        self.send(method, params, None).await
    }
    /// A CDP command on the page.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        let s = self.session.clone();
        self.send(method, params, Some(&s)).await
    }

    pub async fn viewport(&self, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;
    }

    pub async fn navigate(&self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
        self.wait_for(
            "document.readyState === 'complete'",
            Duration::from_secs(20),
        )
        .await;
    }

    /// Evaluates `expr` (promises awaited) and returns its JSON value.
    pub async fn eval(&self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(e) = r.get("exceptionDetails") {
            panic!("page threw evaluating {expr}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Polls `expr` until it is truthy; returns how long it took.
    pub async fn wait_for(&self, expr: &str, timeout: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let v = self.eval(expr).await;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return start.elapsed();
            }
            if start.elapsed() > timeout {
                let body = self
                    .eval("JSON.stringify(Object.assign({}, window.__minik, {inf: undefined, now: Date.now(), hash: location.hash})) + (document.querySelector('#main') && document.querySelector('#main').innerText.slice(0, 1500))")
                    .await;
                let shot = self.screenshot("failure").await;
                panic!(
                    "timed out after {timeout:?} waiting for `{expr}`; page shows:\n{body}\n(screenshot: {})",
                    shot.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_testid(&self, id: &str) -> Duration {
        self.wait_for(
            &format!("!!document.querySelector('[data-testid=\"{id}\"]')"),
            Duration::from_secs(20),
        )
        .await
    }

    pub async fn text(&self, id: &str) -> String {
        self.eval(&format!(
            "(document.querySelector('[data-testid=\"{id}\"]') || {{}}).innerText || ''"
        ))
        .await
        .as_str()
        .unwrap_or("")
        .to_string()
    }

    /// A real mouse click in the middle of the element with this data-testid.
    pub async fn click(&self, id: &str) {
        self.wait_testid(id).await;
        let r = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector('[data-testid=\"{id}\"]'); e.scrollIntoView({{block: 'center', inline: 'center'}});
                 const r = e.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; }})()"
            ))
            .await;
        let (x, y) = (r[0].as_f64().unwrap(), r[1].as_f64().unwrap());
        for ty in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": ty, "x": x, "y": y, "button": "left", "clickCount": 1}),
            )
            .await;
        }
    }

    /// Types into a focused input: selects its content, then inserts `text`.
    pub async fn type_into(&self, id: &str, text: &str) {
        self.click(id).await;
        self.eval(&format!(
            "document.querySelector('[data-testid=\"{id}\"]').select()"
        ))
        .await;
        self.call("Input.insertText", json!({"text": text})).await;
    }

    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let r = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Asks Chromium to quit (it takes its helper processes with it); kills
    /// it by PID if it has not exited within 5 s.
    pub async fn close(mut self) {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        let msg = json!({"id": id, "method": "Browser.close", "params": {}});
        let _ = self.tx.send(Message::Text(msg.to_string().into()));
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        }
    }
}

/// `<target dir>/dashboard-screenshots`: `$CARGO_TARGET_DIR`, else the
/// `target` directory the running test binary was built into.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .ok()
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            exe.ancestors()
                .find(|d| d.file_name().is_some_and(|n| n == "target"))
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| std::env::temp_dir().join("minik-target"));
    target.join("dashboard-screenshots")
}
