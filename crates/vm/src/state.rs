//! The record of a running VM, persisted as `<profile>/vm.json` so that a
//! later `minik` process can find and manage it: QEMU's pid, QMP socket, the
//! forwarded ports and how it was started. Written atomically (temp file +
//! rename); absent when the VM is not running.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct VmRecord {
    pub pid: u32,
    pub qmp_socket: PathBuf,
    pub api_port: u16,
    pub ssh_port: u16,
    /// guest port -> host port (127.0.0.1), added by `forward`.
    #[serde(default)]
    pub forwards: BTreeMap<u16, u16>,
    /// "kvm" or "tcg".
    pub accel: String,
    #[serde(default)]
    pub kvm_fallback: Option<String>,
    pub iso: PathBuf,
    pub cpus: u32,
    pub memory_mb: u32,
    pub started_at_unix: u64,
}

pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join("vm.json")
}

pub(crate) fn load(dir: &Path) -> Result<Option<VmRecord>, String> {
    let p = path(dir);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            format!(
                "{} is not a valid VM record ({e}); delete it or run `minik delete`",
                p.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", p.display())),
    }
}

pub(crate) fn save(dir: &Path, rec: &VmRecord) -> Result<(), String> {
    let p = path(dir);
    let tmp = dir.join("vm.json.tmp");
    let body = serde_json::to_vec_pretty(rec).map_err(|e| e.to_string())?;
    std::fs::write(&tmp, body).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &p).map_err(|e| format!("cannot write {}: {e}", p.display()))
}

pub(crate) fn remove(dir: &Path) {
    let _ = std::fs::remove_file(path(dir));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let d = std::env::temp_dir().join(format!("minik-vm-state-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        assert_eq!(load(&d).unwrap(), None);
        let mut r = VmRecord {
            pid: 42,
            qmp_socket: d.join("qmp.sock"),
            api_port: 40001,
            ssh_port: 40002,
            forwards: BTreeMap::new(),
            accel: "tcg".into(),
            kvm_fallback: Some("no output".into()),
            iso: "/x.iso".into(),
            cpus: 2,
            memory_mb: 2048,
            started_at_unix: 1,
        };
        r.forwards.insert(30080, 40003);
        save(&d, &r).unwrap();
        assert_eq!(load(&d).unwrap(), Some(r));
        std::fs::write(path(&d), "{").unwrap();
        assert!(load(&d).unwrap_err().contains("not a valid VM record"));
        remove(&d);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
