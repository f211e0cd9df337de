//! SSH into the guest.
//!
//! Owns the profile's key pair (`<profile>/id_ed25519{,.pub}`, made with the
//! host's `ssh-keygen`, which comes with the `ssh` client we need anyway) and
//! the `ssh` command line used to reach dropbear in the VM through the
//! forwarded port (qemu) or on the VM's own address (libvirt). Host keys are
//! not pinned: the guest's key lives on the VM's data disk and the address is
//! a random loopback port or a DHCP lease.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("{tool} is not installed; install it with: apt-get install openssh-client")]
    Missing { tool: &'static str },
    #[error("ssh-keygen failed for {path}: {reason}")]
    Keygen { path: PathBuf, reason: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Private key path of a profile.
pub fn key_path(profile_dir: &Path) -> PathBuf {
    profile_dir.join("id_ed25519")
}

/// Makes the profile's ed25519 key pair if missing; returns the public key line.
pub fn ensure_key(profile_dir: &Path) -> Result<String, SshError> {
    let key = key_path(profile_dir);
    let public = key.with_extension("pub");
    if !key.exists() || !public.exists() {
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(&public);
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "minik", "-f"])
            .arg(&key)
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => SshError::Missing { tool: "ssh-keygen" },
                _ => SshError::Keygen {
                    path: key.clone(),
                    reason: e.to_string(),
                },
            })?;
        if !out.status.success() {
            return Err(SshError::Keygen {
                path: key,
                reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
    }
    std::fs::read_to_string(&public).map_err(|source| SshError::Read {
        path: public,
        source,
    })
}

/// `ssh` to root@127.0.0.1:`port` with the profile key, running `args`
/// (an interactive shell when empty). The caller runs it (`status()`,
/// `output()`, or `exec` for `minik ssh`).
pub fn command(profile_dir: &Path, port: u16, args: &[&str]) -> Command {
    command_to(profile_dir, "127.0.0.1", port, args)
}

/// `ssh` to root@`host`:`port` with the profile key (see [`command`]).
pub fn command_to(profile_dir: &Path, host: &str, port: u16, args: &[&str]) -> Command {
    let mut c = Command::new("ssh");
    c.arg("-i")
        .arg(key_path(profile_dir))
        .args(["-p", &port.to_string()])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
        ]);
    if args.is_empty() {
        c.arg("-t");
    }
    c.arg(format!("root@{host}"));
    if !args.is_empty() {
        c.arg("--").args(args);
    }
    c
}

/// Is the `ssh` client installed?
pub fn client_available() -> bool {
    Command::new("ssh")
        .arg("-V")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
