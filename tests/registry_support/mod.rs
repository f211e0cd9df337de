//! A real registry for tests: Debian's `docker-registry` (Docker
//! distribution 2.8) on 127.0.0.1 with a free port, optionally behind
//! htpasswd basic auth; images built with `umoci` (busybox + a marker file)
//! and pushed with `skopeo`. Shared by `crates/kubelet/tests/registry_pull.rs`
//! (included by path) and the root `tests/images.rs`.
//! Needs: `apt-get install docker-registry skopeo umoci apache2-utils busybox-static`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn need(tool: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{tool} is missing: apt-get install docker-registry skopeo umoci apache2-utils busybox-static"
    );
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// sha256 of `data` in hex, by `sha256sum` (no hashing crate needed).
pub fn sha256_hex(data: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `docker-registry serve`, killed (by its PID) on drop.
pub struct Registry {
    pub port: u16,
    pub dir: PathBuf,
    pub creds: Option<(String, String)>,
    child: Child,
}

impl Registry {
    /// Starts a registry storing under `dir`; with `creds`, htpasswd (bcrypt) basic auth.
    pub fn start(dir: &Path, creds: Option<(&str, &str)>) -> Registry {
        need("docker-registry");
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let mut auth = String::new();
        if let Some((u, p)) = creds {
            need("htpasswd");
            let line = run(Command::new("htpasswd").args(["-Bbn", u, p]));
            let hp = dir.join("htpasswd");
            std::fs::write(&hp, line).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: minik-test\n    path: {}\n",
                hp.display()
            );
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: minik-test-secret\n{auth}",
            dir.join("data").display()
        );
        let cfg = dir.join("config.yml");
        std::fs::write(&cfg, config).unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting docker-registry");
        let reg = Registry {
            port,
            dir: dir.to_path_buf(),
            creds: creds.map(|(u, p)| (u.to_string(), p.to_string())),
            child,
        };
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "docker-registry did not listen on 127.0.0.1:{port}; see {}",
                dir.join("registry.log").display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    /// The registry's log (warnings and the access log, one line a request).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    /// How many `GET` requests the access log shows for paths containing `needle`.
    pub fn gets(&self, needle: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("\"GET ") && l.contains(needle))
            .count()
    }

    /// `127.0.0.1:<port>`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Copies `oci:<layout>:<tag>` to `docker://<host>/<dest>`; `extra`
    /// are more skopeo flags (`--multi-arch all`, `--format v2s2`).
    pub fn push(&self, layout: &Path, tag: &str, dest: &str, extra: &[&str]) {
        need("skopeo");
        let mut c = Command::new("skopeo");
        c.args(["copy", "--dest-tls-verify=false", "--quiet"]);
        c.args(extra);
        if let Some((u, p)) = &self.creds {
            c.arg("--dest-creds").arg(format!("{u}:{p}"));
        }
        c.arg(format!("oci:{}:{tag}", layout.display()));
        c.arg(format!("docker://{}/{dest}", self.host()));
        run(&mut c);
    }

    /// The sha256 digest of the manifest (or list) `<host>/<reference>` serves.
    pub fn manifest_digest(&self, reference: &str) -> String {
        let mut c = Command::new("skopeo");
        c.args(["inspect", "--raw", "--tls-verify=false"]);
        if let Some((u, p)) = &self.creds {
            c.arg("--creds").arg(format!("{u}:{p}"));
        }
        c.arg(format!("docker://{}/{reference}", self.host()));
        let raw = c.output().unwrap().stdout;
        format!("sha256:{}", sha256_hex(&raw))
    }

    /// The on-disk file of a blob (to corrupt it in a test).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Adds image `tag` to the OCI layout `layout` (created if missing): a
/// busybox rootfs plus `/marker` holding `marker`, whose command prints the
/// marker and then sleeps (so the container stays running).
pub fn build_image(layout: &Path, tag: &str, marker: &str) {
    need("umoci");
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("busybox-static is needed (apt-get install busybox-static)");
    if !layout.join("index.json").exists() {
        run(Command::new("umoci")
            .arg("init")
            .arg("--layout")
            .arg(layout));
    }
    let img = format!("{}:{tag}", layout.display());
    run(Command::new("umoci").args(["new", "--image", &img]));
    let bundle = layout.with_extension(format!("bundle-{tag}"));
    let _ = std::fs::remove_dir_all(&bundle);
    run(Command::new("umoci")
        .args(["unpack", "--image", &img])
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("tmp")).unwrap();
    std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "sleep", "echo", "ls"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    std::fs::write(rootfs.join("marker"), marker).unwrap();
    run(Command::new("umoci")
        .args(["repack", "--image", &img])
        .arg(&bundle));
    run(Command::new("umoci").args([
        "config",
        "--image",
        &img,
        "--config.env",
        "PATH=/bin",
        "--config.cmd",
        "/bin/sh",
        "--config.cmd",
        "-c",
        "--config.cmd",
        "echo marker: $(cat /marker); exec sleep 3600",
    ]));
    let _ = std::fs::remove_dir_all(&bundle);
}

/// Adds tag `index_tag` to `layout`: an OCI image index whose entries are
/// the manifests of the given (tag, architecture) pairs, in that order.
pub fn build_index(layout: &Path, index_tag: &str, entries: &[(&str, &str)]) {
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let find = |tag: &str| {
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap_or_else(|| panic!("no tag {tag} in {}", index_path.display()))
            .clone()
    };
    let list: Vec<serde_json::Value> = entries
        .iter()
        .map(|(tag, arch)| {
            let m = find(tag);
            serde_json::json!({
                "mediaType": m["mediaType"],
                "digest": m["digest"],
                "size": m["size"],
                "platform": {"architecture": arch, "os": "linux"},
            })
        })
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": list,
    }))
    .unwrap();
    let hex = sha256_hex(&body);
    std::fs::write(layout.join("blobs/sha256").join(&hex), &body).unwrap();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{hex}"),
            "size": body.len(),
            "annotations": {"org.opencontainers.image.ref.name": index_tag},
        }));
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}
