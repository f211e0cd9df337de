//! Helpers shared by the VM tests and the boot benchmark: the ISO (built by
//! iso/build.sh when missing or older than its sources), temp profiles, and
//! a plain HTTP GET.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn newest_mtime(p: &Path) -> SystemTime {
    let mut t = std::fs::symlink_metadata(p)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            t = t.max(newest_mtime(&e.path()));
        }
    }
    t
}

/// The ISO under test: $MINIK_ISO, or iso/out/minik-<version>.iso, built
/// with iso/build.sh when missing or older than iso/build.sh / iso/rootfs.
pub fn iso() -> PathBuf {
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if let Ok(p) = std::env::var("MINIK_ISO") {
        return PathBuf::from(p);
    }
    let root = repo_root();
    let iso = root.join(format!("iso/out/minik-{}.iso", env!("CARGO_PKG_VERSION")));
    let src = newest_mtime(&root.join("iso/build.sh")).max(newest_mtime(&root.join("iso/rootfs")));
    let built = std::fs::metadata(&iso).and_then(|m| m.modified()).ok();
    if built.is_none_or(|b| b < src) {
        eprintln!("building {} with iso/build.sh", iso.display());
        let st = std::process::Command::new("bash")
            .arg(root.join("iso/build.sh"))
            .arg("--no-boot-test")
            .status()
            .expect("run iso/build.sh");
        assert!(st.success(), "iso/build.sh failed");
    }
    iso
}

/// A fresh directory under the temp dir (short path: QMP socket lives there).
pub fn profile(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mkvm-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// GET http://127.0.0.1:port/path once; the body when the status is 200.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then_some(())?;
    head.split_whitespace().nth(1).filter(|c| *c == "200")?;
    Some(body.to_string())
}

/// Retries http_get until it answers or `timeout` passes.
pub fn http_get_retry(port: u16, path: &str, timeout: Duration) -> Option<String> {
    let start = Instant::now();
    loop {
        if let Some(b) = http_get(port, path) {
            return Some(b);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Kills the profile's QEMU (by the pid it wrote) and removes the profile
/// directory when dropped, so a failing test leaves no VM behind.
pub struct VmGuard(pub PathBuf);

impl Drop for VmGuard {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(self.0.join("qemu.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains("qemu") {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
