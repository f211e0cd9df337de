//! Shared helpers for the integration tests: run the real `minik` binary and
//! the real `kubectl` in an isolated HOME / MINIK_HOME / KUBECONFIG.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub struct Env {
    pub dir: PathBuf,
    /// Held for the Env's life: one cluster test at a time on this host
    /// (the none driver owns bridge minik0 and ports 8443/10250), also
    /// across test binaries and engineers running tests side by side.
    _host_lock: std::fs::File,
}

/// The host-wide lock file every integration-test cluster takes.
pub const HOST_LOCK: &str = "/tmp/minik-integration-tests.lock";

impl Env {
    /// A fresh directory holding the test's HOME, MINIK_HOME and kubeconfig.
    /// Waits for any other integration-test cluster on this host to finish.
    pub fn new(name: &str) -> Env {
        use std::os::fd::AsRawFd;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(HOST_LOCK)
            .expect("open the host lock file");
        // SAFETY: flock on a descriptor we own; released when the File drops.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {HOST_LOCK}");
        let dir = std::env::temp_dir().join(format!("minik-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("home")).unwrap();
        Env {
            dir,
            _host_lock: lock,
        }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    fn apply_env(&self, cmd: &mut Command) {
        cmd.env("HOME", self.dir.join("home"))
            .env("MINIK_HOME", self.dir.join("minik"))
            .env("KUBECONFIG", self.kubeconfig())
            .env_remove("MINIK_PROFILE");
    }

    pub fn minik(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_minik"));
        cmd.args(args);
        self.apply_env(&mut cmd);
        cmd.output().expect("running minik")
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("kubectl");
        cmd.args(args);
        self.apply_env(&mut cmd);
        cmd.output().expect("running kubectl")
    }

    /// kubectl with a manifest on stdin (`-f -`).
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut cmd = Command::new("kubectl");
        cmd.args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        self.apply_env(&mut cmd);
        let mut child = cmd.spawn().expect("running kubectl");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// kubectl that must succeed; returns stdout.
    pub fn k(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// minik that must succeed; returns stdout.
    pub fn m(&self, args: &[&str]) -> String {
        let out = self.minik(args);
        assert!(
            out.status.success(),
            "minik {args:?} failed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// `minik start --driver=none`, which must succeed; its whole output
    /// (callers check the stderr messages).
    pub fn start_none(&self) -> Output {
        let out = self.minik(&["start", "--driver=none"]);
        assert!(
            out.status.success(),
            "minik start failed:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }

    /// `minik delete`, then the host must be as `before` (a [`host_snapshot`]
    /// taken before start) and the test's directory is removed.
    pub fn delete_and_check_host(&self, before: &str) {
        self.m(&["delete"]);
        assert_eq!(host_snapshot(), before, "host state differs after delete");
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// kubectl as a Result: stdout, or stdout + stderr when it failed.
    pub fn try_k(&self, args: &[&str]) -> Result<String, String> {
        let out = self.kubectl(args);
        if out.status.success() {
            Ok(text(&out.stdout))
        } else {
            Err(format!("{}{}", text(&out.stdout), text(&out.stderr)))
        }
    }

    /// `kubectl apply -f -` of `manifest`, which must succeed.
    pub fn apply(&self, manifest: &str) {
        let out = self.kubectl_stdin(&["apply", "-f", "-"], manifest);
        assert!(
            out.status.success(),
            "kubectl apply failed: {}{}\n{manifest}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }

    /// `kubectl <args> -o jsonpath=<path>`: stdout, "" when kubectl fails
    /// (e.g. the object does not exist).
    pub fn jsonpath(&self, args: &[&str], path: &str) -> String {
        let p = format!("jsonpath={path}");
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["-o", &p]);
        let out = self.kubectl(&a);
        if out.status.success() {
            text(&out.stdout)
        } else {
            String::new()
        }
    }

    /// Waits until `kubectl <args> -o jsonpath=<path>` prints `want`; the
    /// error shows the last value.
    pub fn wait_jsonpath(&self, args: &[&str], path: &str, want: &str, timeout: Duration) {
        wait_for(&format!("{args:?} {path} = {want:?}"), timeout, || {
            let got = self.jsonpath(args, path);
            if got == want {
                Ok(())
            } else {
                Err(got)
            }
        })
    }

    /// `kubectl get events --field-selector involvedObject.name=<name>` (the table).
    pub fn events_of(&self, name: &str) -> String {
        self.k(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name}"),
        ])
    }

    /// The events of `name` as `Reason: message` lines.
    pub fn event_lines(&self, name: &str) -> String {
        self.k(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name}"),
            "-o",
            "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
        ])
    }

    /// Waits until the events of `name` contain every one of `needles`; the table.
    pub fn wait_events(&self, name: &str, needles: &[&str], timeout: Duration) -> String {
        wait_for(&format!("events {needles:?} on {name}"), timeout, || {
            let ev = self.events_of(name);
            if needles.iter().all(|n| ev.contains(n)) {
                Ok(ev)
            } else {
                Err(ev)
            }
        })
    }

    /// `kubectl get pods --no-headers <args>` as (name, READY, STATUS), as a
    /// user reads them.
    pub fn pod_rows(&self, args: &[&str]) -> Vec<(String, String, String)> {
        let mut a = vec!["get", "pods", "--no-headers"];
        a.extend_from_slice(args);
        self.k(&a)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (
                    f[0].to_string(),
                    f.get(1).unwrap_or(&"").to_string(),
                    f.get(2).unwrap_or(&"").to_string(),
                )
            })
            .collect()
    }

    /// Waits until `kubectl get pods <args>` lists exactly `n` pods, all
    /// Running and 1/1 ready; their names.
    pub fn wait_pods_ready(&self, args: &[&str], n: usize, timeout: Duration) -> Vec<String> {
        wait_for(
            &format!("{n} Running 1/1 pods for {args:?}"),
            timeout,
            || {
                let pods = self.pod_rows(args);
                let running: Vec<String> = pods
                    .iter()
                    .filter(|(_, ready, status)| status == "Running" && ready == "1/1")
                    .map(|(n, _, _)| n.clone())
                    .collect();
                if running.len() == n && pods.len() == n {
                    Ok(running)
                } else {
                    Err(format!("{pods:?}"))
                }
            },
        )
    }
}

impl Drop for Env {
    /// A failed test must not leave a cluster running on the host.
    fn drop(&mut self) {
        if self.dir.join("minik/profiles").exists() {
            let _ = self.minik(&["delete", "--all"]);
        }
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Polls `f` until it returns Some, or panics with `what` and the last value seen.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    let mut last;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) => last = e,
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen:\n{last}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// GET a URL with the real curl; the body.
pub fn curl(url: &str) -> Result<String, String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", url])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

/// curl `<scheme>://<host><path>` through this host's `port` (80 → http,
/// 443 → https) with `--resolve host:port:127.0.0.1`: (HTTP status, body).
pub fn curl_resolve(
    host: &str,
    port: u16,
    path: &str,
    extra: &[&str],
) -> Result<(u16, String), String> {
    let scheme = if port == 443 { "https" } else { "http" };
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-w", "\n%{http_code}"])
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .args(extra)
        .arg(format!("{scheme}://{host}{path}"))
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(text(&out.stderr));
    }
    let body = text(&out.stdout);
    let (body, code) = body.rsplit_once('\n').unwrap_or(("", ""));
    let code = code
        .trim()
        .parse()
        .map_err(|_| format!("no status in {body}"))?;
    Ok((code, body.to_string()))
}

/// The none driver owns host-wide resources: with another cluster up,
/// starting (and then deleting) ours would break it. Panics when 127.0.0.1:8443
/// answers.
pub fn assert_no_cluster_running() {
    assert!(
        !port_open(8443),
        "another none-driver cluster is running on this host (127.0.0.1:8443 answers): run this test alone"
    );
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    )
    .is_ok()
}

/// Resident memory, in KiB, of the host processes running `/minik <subcommand>`
/// (an addon's server inside its container), summed; None when there is none.
pub fn minik_process_rss_kib(subcommand: &str) -> Option<u64> {
    let mut total = None;
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        if args.len() > 1 && args[0] == b"/minik" && args[1] == subcommand.as_bytes() {
            let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
            let kib = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
            if let Some(k) = kib {
                total = Some(total.unwrap_or(0) + k);
            }
        }
    }
    total
}

pub fn path_exists(p: &Path) -> bool {
    p.exists()
}

/// Host state minik must leave as it found it: the links, network
/// namespaces, nft tables, mounts and runc containers it could have made
/// (other software on the host may add its own meanwhile; those are ignored).
pub fn host_snapshot() -> String {
    let run = |args: &[&str]| {
        Command::new(args[0])
            .args(&args[1..])
            .output()
            .map(|o| text(&o.stdout))
            .unwrap_or_default()
    };
    let links: Vec<String> = run(&["ip", "-o", "link", "show"])
        .lines()
        .map(|l| {
            l.split(':')
                .nth(1)
                .unwrap_or("")
                .trim()
                .split('@')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .filter(|l| l == "minik0" || (l.starts_with("veth") && l.len() == 12))
        .collect();
    let netns: Vec<String> = run(&["ip", "netns", "list"])
        .lines()
        .filter(|l| l.starts_with("minik-"))
        .map(String::from)
        .collect();
    let tables: Vec<String> = run(&["nft", "list", "tables"])
        .lines()
        .filter(|l| l.contains("minik"))
        .map(String::from)
        .collect();
    let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("minik"))
        .map(String::from)
        .collect();
    let containers = run(&["runc", "list", "-q"]);
    format!("links: {links:?}\nnetns: {netns:?}\ntables: {tables:?}\nmounts: {mounts:?}\nrunc: {containers}")
}
