//! The client-library suite with the official Python `kubernetes` client
//! (PyPI): runs `tests/python/test_client.py` against the API server over
//! TLS, with the kubeconfig file of `support::start`.
//!
//! The client lives in a venv under `target/python-client/venv`, made with
//! `python3 -m venv` and `pip install kubernetes==PINNED` on first use and
//! reused afterwards. Needs python3 (with venv) and, the first time, PyPI;
//! set `MINIK_SKIP_PYTHON_CLIENT=1` to skip explicitly on a host without them.
//!
//! Compaction is not an API call: the script prints `COMPACT` and the
//! harness compacts the store to its current revision and answers
//! `COMPACTED` on the script's stdin.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The client version this suite was written against.
const KUBERNETES_PY: &str = "kubernetes==37.0.2";
/// The whole script must finish within this.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(300);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root")
}

/// `target/` of this build: the test binary is `target/<profile>/deps/<name>`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| repo_root().join("target"))
}

fn run(cmd: &mut std::process::Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: could not start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}\nset MINIK_SKIP_PYTHON_CLIENT=1 to skip this suite on a host without python3-venv or PyPI",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The venv's python with the `kubernetes` client importable (made once).
fn python_with_client() -> PathBuf {
    let venv = target_dir().join("python-client").join("venv");
    let python = venv.join("bin").join("python");
    let has_client = |p: &Path| {
        std::process::Command::new(p)
            .args(["-c", "import kubernetes, sys; sys.exit(0 if kubernetes.__version__ == sys.argv[1] else 1)"])
            .arg(KUBERNETES_PY.trim_start_matches("kubernetes=="))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if has_client(&python) {
        return python;
    }
    std::fs::create_dir_all(venv.parent().unwrap()).unwrap();
    run(
        std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv),
        "python3 -m venv",
    );
    run(
        std::process::Command::new(venv.join("bin").join("pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            KUBERNETES_PY,
        ]),
        "pip install kubernetes",
    );
    assert!(
        has_client(&python),
        "{KUBERNETES_PY} is not importable in {}",
        venv.display()
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_client_suite() {
    if std::env::var_os("MINIK_SKIP_PYTHON_CLIENT").is_some() {
        eprintln!("skipped: MINIK_SKIP_PYTHON_CLIENT is set");
        return;
    }
    let python = tokio::task::spawn_blocking(python_with_client)
        .await
        .unwrap();
    let c = support::start().await;
    let script = repo_root().join("tests/python/test_client.py");
    let mut child = tokio::process::Command::new(&python)
        .arg("-u")
        .arg(&script)
        .arg(&c.kubeconfig)
        .env_remove("KUBECONFIG")
        .env("HOME", c.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the python suite");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let stderr_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });

    let mut lines = Vec::new();
    let mut compactions = 0;
    let talk = async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            if line == "COMPACT" {
                c.store.compact(c.store.revision()).await.unwrap();
                compactions += 1;
                stdin.write_all(b"COMPACTED\n").await.unwrap();
                stdin.flush().await.unwrap();
            } else {
                lines.push(line);
            }
        }
        child.wait().await.unwrap()
    };
    let status = tokio::time::timeout(SCRIPT_DEADLINE, talk).await;
    let stderr = stderr_task.await.unwrap_or_default();
    let status = status.unwrap_or_else(|_| {
        panic!(
            "the python suite did not finish in {SCRIPT_DEADLINE:?}\nstdout:\n{}\nstderr:\n{stderr}",
            lines.join("\n")
        )
    });
    let out = lines.join("\n");
    assert!(
        status.success(),
        "the python suite failed ({status}):\nstdout:\n{out}\nstderr:\n{stderr}"
    );
    for check in [
        "ok watch_from_resource_version",
        "ok gone_after_compaction",
        "ok conflict",
        "ok pagination",
        "ok bookmarks",
        "ALL OK",
    ] {
        assert!(
            lines.iter().any(|l| l == check),
            "missing {check:?} in:\n{out}"
        );
    }
    assert_eq!(compactions, 2, "the script asks for two compactions");
}
