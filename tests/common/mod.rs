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
