//! OCI runtime driver: owns the runtime's state directory
//! (`<root>/pods/.runc`), container rootfs overlay mounts, and the container
//! processes' lifetimes. It talks to `runc` (host) or `crun` (VM) through
//! their common CLI: `create`, `start`, `kill`, `delete`.
//!
//! How exits are observed (no shim): the kubelet process makes itself a
//! *child subreaper* (`prctl(PR_SET_CHILD_SUBREAPER)`). `runc create` forks
//! the container's init and exits; the orphaned init is then reparented to
//! the kubelet instead of PID 1, so the kubelet can `waitpid()` that exact
//! PID (read from `--pid-file`) on a blocking thread and get the real exit
//! code or signal. Only that PID is waited for, never `-1`, so tokio's and
//! std's own child reaping are undisturbed. Grandchildren inside the
//! container are reaped by the container's PID 1 (own PID namespace).
//!
//! Stdout/stderr: the container inherits the write ends of two pipes
//! (runc's detached pass-through mode, `terminal: false`); a `tty: true`
//! container instead gets a pty from runc (`terminal: true`,
//! [`Runtime::create_with_console`]) whose master the kubelet keeps
//! ([`crate::attach::keep_console`]). The kubelet reads
//! them and writes CRI-format lines (`<RFC3339Nano> <stream> <F|P> <text>`)
//! to `<root>/pods/<uid>/<container>/<restartCount>.log`. A consequence is
//! that containers do not outlive the kubelet process meaningfully: on
//! start the kubelet removes leftovers and starts pods afresh (what a
//! Kubernetes node does after a reboot), and `minik stop` stops them first.

use crate::logs::{self, LogRegistry};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot run the OCI runtime {bin}: {source}; is it installed?")]
    Spawn {
        bin: PathBuf,
        source: std::io::Error,
    },
    #[error("{bin} {op} {id}: {msg}")]
    Failed {
        bin: PathBuf,
        op: &'static str,
        id: String,
        msg: String,
    },
    #[error("container I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mount {what} on {target}: {source}")]
    Mount {
        what: &'static str,
        target: PathBuf,
        source: nix::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The OCI runtime CLI with its state root.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub bin: PathBuf,
    pub state_root: PathBuf,
}

/// Makes this process the subreaper for containers it creates. Idempotent.
pub fn become_subreaper() {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument and
    // only changes this process's reaping attribute.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

impl Runtime {
    pub fn new(bin: &Path, pods_dir: &Path) -> Self {
        Runtime {
            bin: bin.to_path_buf(),
            state_root: pods_dir.join(".runc"),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(&self.state_root);
        c
    }

    fn run(&self, op: &'static str, id: &str, args: &[&str]) -> Result<(), RuntimeError> {
        let out = self
            .cmd()
            .arg(op)
            .args(args)
            .arg(id)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| RuntimeError::Spawn {
                bin: self.bin.clone(),
                source,
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(RuntimeError::Failed {
                bin: self.bin.clone(),
                op,
                id: id.to_string(),
                msg: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    /// `runc://1.1.5` from `runc --version`.
    pub fn version_string(&self) -> String {
        let name = self
            .bin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "runc".into());
        let out = Command::new(&self.bin).arg("--version").output();
        let ver = out
            .ok()
            .and_then(|o| {
                let s = String::from_utf8_lossy(&o.stdout).into_owned();
                let first = s.lines().next()?.to_string();
                first
                    .split_whitespace()
                    .nth(2)
                    .map(|v| v.split(['+', '-', '~']).next().unwrap_or(v).to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        format!("{name}://{ver}")
    }

    /// `create` with the container's stdout/stderr wired to the given pipe
    /// write ends. Returns the init PID (a child of this process afterwards,
    /// see the module doc).
    pub fn create(
        &self,
        id: &str,
        bundle: &Path,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Result<i32, RuntimeError> {
        self.create_with_stdin(id, bundle, None, stdout, stderr)
    }

    /// [`Runtime::create`] with the container's stdin on `stdin` (the read
    /// end of a pipe the kubelet holds open for `attach`, see
    /// [`crate::attach::open_stdin`]) instead of `/dev/null`.
    pub fn create_with_stdin(
        &self,
        id: &str,
        bundle: &Path,
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Result<i32, RuntimeError> {
        self.create_inner(
            id,
            bundle,
            &[],
            stdin.map_or_else(Stdio::null, Stdio::from),
            Stdio::from(stdout),
            Stdio::from(stderr),
        )
    }

    /// `create` for a container whose OCI process has `terminal: true`:
    /// runc allocates the pty inside the container and hands its master to
    /// us over `--console-socket`. Returns the init PID and the master
    /// (reading it gives the container's output, writing it its input).
    pub fn create_with_console(
        &self,
        id: &str,
        bundle: &Path,
    ) -> Result<(i32, OwnedFd), RuntimeError> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEQ: AtomicU64 = AtomicU64::new(0);
        // In the temp dir: a bundle path may exceed sun_path's 108 bytes.
        let sock = std::env::temp_dir().join(format!(
            "minik-console-{}-{}.sock",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&sock);
        let listener = std::os::unix::net::UnixListener::bind(&sock).map_err(io_err(&sock))?;
        let sock_arg = sock.display().to_string();
        let created = self.create_inner(
            id,
            bundle,
            &["--console-socket", &sock_arg],
            Stdio::null(),
            Stdio::null(),
            Stdio::null(),
        );
        // runc connected and sent the master before `create` returned: the
        // connection waits in the backlog, so a non-blocking accept suffices.
        let accepted = listener
            .set_nonblocking(true)
            .and_then(|()| listener.accept());
        let _ = std::fs::remove_file(&sock);
        let pid = created?;
        let failed = |msg: String| RuntimeError::Failed {
            bin: self.bin.clone(),
            op: "create",
            id: id.to_string(),
            msg,
        };
        let stream = accepted
            .map_err(|e| {
                failed(format!(
                    "runc did not hand over the container's terminal: {e}"
                ))
            })?
            .0;
        match recv_console_fd(stream) {
            Ok(fd) => Ok((pid, fd)),
            Err(msg) => {
                let _ = self.delete(id);
                Err(failed(msg))
            }
        }
    }

    fn create_inner(
        &self,
        id: &str,
        bundle: &Path,
        extra: &[&str],
        stdin: Stdio,
        stdout: Stdio,
        stderr: Stdio,
    ) -> Result<i32, RuntimeError> {
        become_subreaper();
        std::fs::create_dir_all(&self.state_root).map_err(io_err(&self.state_root))?;
        let pid_file = bundle.join("init.pid");
        let log_file = bundle.join("runtime.log");
        let _ = std::fs::remove_file(&pid_file);
        let _ = std::fs::remove_file(&log_file);
        let status = self
            .cmd()
            .arg("--log")
            .arg(&log_file)
            .arg("--log-format")
            .arg("json")
            .arg("create")
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(&pid_file)
            .args(extra)
            .arg(id)
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr)
            .status()
            .map_err(|source| RuntimeError::Spawn {
                bin: self.bin.clone(),
                source,
            })?;
        if !status.success() {
            return Err(RuntimeError::Failed {
                bin: self.bin.clone(),
                op: "create",
                id: id.to_string(),
                msg: last_runtime_error(&log_file)
                    .unwrap_or_else(|| format!("exited with {status}")),
            });
        }
        let pid = std::fs::read_to_string(&pid_file)
            .map_err(io_err(&pid_file))?
            .trim()
            .parse::<i32>()
            .map_err(|e| RuntimeError::Failed {
                bin: self.bin.clone(),
                op: "create",
                id: id.to_string(),
                msg: format!("bad pid file: {e}"),
            })?;
        Ok(pid)
    }

    pub fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.run("start", id, &[])
    }

    /// `kill <id> <SIG>`; `all` signals every process in the container.
    pub fn kill(&self, id: &str, signal: &str) -> Result<(), RuntimeError> {
        let out = self
            .cmd()
            .args(["kill", id, signal])
            .stdin(Stdio::null())
            .output()
            .map_err(|source| RuntimeError::Spawn {
                bin: self.bin.clone(),
                source,
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(RuntimeError::Failed {
                bin: self.bin.clone(),
                op: "kill",
                id: id.to_string(),
                msg: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    /// `delete --force`: kills if needed, removes the state and cgroup.
    pub fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        match self.run("delete", id, &["--force"]) {
            Ok(()) => Ok(()),
            Err(_) if !self.state_root.join(id).exists() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Containers the runtime knows (one state dir each, for runc and crun).
    pub fn list(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(&self.state_root) else {
            return vec![];
        };
        rd.flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }
}

/// Receives the pty master runc sends (SCM_RIGHTS) on a connection to a
/// `--console-socket` (`runc create` and `runc exec --tty`). Blocking, with
/// a 10 s read timeout; the descriptor is close-on-exec.
pub(crate) fn recv_console_fd(stream: std::os::unix::net::UnixStream) -> Result<OwnedFd, String> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
    use std::os::fd::{AsRawFd, FromRawFd};
    stream
        .set_nonblocking(false)
        .map_err(|e| format!("runc's terminal socket: {e}"))?;
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<UnixAddr>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| format!("receiving runc's terminal: {e}"))?;
    for c in msg
        .cmsgs()
        .map_err(|e| format!("receiving runc's terminal: {e}"))?
    {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: SCM_RIGHTS just installed this descriptor in
                // our process; nothing else owns it.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err("runc connected to the terminal socket but sent no terminal".to_string())
}

fn last_runtime_error(log: &Path) -> Option<String> {
    let data = std::fs::read_to_string(log).ok()?;
    data.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["level"] == "error" || v["level"] == "fatal")
        .and_then(|v| v["msg"].as_str().map(str::to_string))
}

/// Waits for `pid` (blocking). Returns the exit code (128+signal when
/// killed), or `None` if the process is not our child (then it polls until
/// the PID is gone, since the code cannot be known).
pub fn wait_exit(pid: i32) -> Option<i32> {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::Pid;
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Some(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Some(128 + sig as i32),
            Ok(_) => continue,
            Err(nix::Error::EINTR) => continue,
            Err(_) => {
                while Path::new(&format!("/proc/{pid}")).exists() {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                return None;
            }
        }
    }
}

/// Mounts an overlay rootfs: `lowers` topmost first.
pub fn mount_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), RuntimeError> {
    for d in [upper, work, target] {
        std::fs::create_dir_all(d).map_err(io_err(d))?;
    }
    let lower = lowers
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let data = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|source| RuntimeError::Mount {
        what: "overlay",
        target: target.to_path_buf(),
        source,
    })
}

/// Unmounts `target` if it is a mount point (lazy, so a busy mount goes away).
pub fn unmount(target: &Path) {
    if is_mountpoint(target) {
        let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Every mount point under `prefix`, deepest first (from /proc/self/mountinfo).
pub fn mounts_under(prefix: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return vec![];
    };
    let mut v: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(prefix))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v.dedup();
    v
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

pub fn is_mountpoint(p: &Path) -> bool {
    mounts_under(p).iter().any(|m| m == p)
}

/// Wires fresh pipes for a container's stdout/stderr and starts copying them
/// into `log_path` (CRI format). Returns the write ends for the runtime.
/// Must be called inside a tokio runtime.
pub fn spawn_log_pumps(
    log_path: PathBuf,
    registry: LogRegistry,
) -> Result<(OwnedFd, OwnedFd, tokio::task::JoinHandle<()>), RuntimeError> {
    use nix::fcntl::OFlag;
    let mk = || {
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| RuntimeError::Io {
            path: log_path.clone(),
            source: std::io::Error::from(e),
        })
    };
    let (out_r, out_w) = mk()?;
    let (err_r, err_w) = mk()?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io_err(&log_path))?;
    let out_rx =
        tokio::net::unix::pipe::Receiver::from_owned_fd(out_r).map_err(io_err(&log_path))?;
    let err_rx =
        tokio::net::unix::pipe::Receiver::from_owned_fd(err_r).map_err(io_err(&log_path))?;
    registry.set_active(&log_path, true);
    let file = std::sync::Arc::new(std::sync::Mutex::new(file));
    let f2 = file.clone();
    let handle = tokio::spawn(async move {
        let a = tokio::spawn(logs::pump(out_rx, "stdout", file));
        let b = tokio::spawn(logs::pump(err_rx, "stderr", f2));
        let _ = a.await;
        let _ = b.await;
        registry.set_active(&log_path, false);
    });
    Ok((out_w, err_w, handle))
}
