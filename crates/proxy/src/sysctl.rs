//! The kernel settings the proxy needs, and remembering what they were.
//!
//! Owns `net.ipv4.ip_forward=1` (pods and DNATed traffic are routed) and
//! `net.ipv4.conf.all.route_localnet=1` (NodePorts on 127.0.0.1 are DNATed
//! to pod IPs). The values found before the first change are kept in the
//! proxy table's comment, so `teardown` — possibly run by another process,
//! after a crash or reboot of the agent — can put them back.

use std::collections::BTreeMap;
use std::path::PathBuf;

use thiserror::Error;

/// Settings the proxy needs, with the value it needs.
pub const WANTED: &[(&str, &str)] = &[
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv4.conf.all.route_localnet", "1"),
];

/// Marker at the start of the table comment.
pub const COMMENT_PREFIX: &str = "minik-proxy saved-sysctls:";

#[derive(Debug, Error)]
pub enum SysctlError {
    #[error("cannot read sysctl {key} ({source}): is /proc/sys mounted?")]
    Read {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set sysctl {key}={value} ({source}): the proxy must run as root with a writable /proc/sys")]
    Write {
        key: String,
        value: String,
        #[source]
        source: std::io::Error,
    },
}

/// Values of the settings as they were before minik changed them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Saved(pub BTreeMap<String, String>);

impl Saved {
    /// Table comment text that records these values.
    pub fn to_comment(&self) -> String {
        let mut s = COMMENT_PREFIX.to_string();
        for (k, v) in &self.0 {
            s.push(' ');
            s.push_str(k);
            s.push('=');
            s.push_str(v);
        }
        s
    }

    /// Reads a comment written by [`Saved::to_comment`]; `None` for other comments.
    pub fn from_comment(comment: &str) -> Option<Self> {
        let rest = comment.strip_prefix(COMMENT_PREFIX)?;
        let mut map = BTreeMap::new();
        for kv in rest.split_whitespace() {
            let (k, v) = kv.split_once('=')?;
            // only names we manage, only plain values: the comment is input
            if WANTED.iter().any(|(w, _)| *w == k) && v.chars().all(|c| c.is_ascii_digit()) {
                map.insert(k.to_string(), v.to_string());
            }
        }
        Some(Saved(map))
    }
}

fn path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

pub fn read(key: &str) -> Result<String, SysctlError> {
    std::fs::read_to_string(path(key))
        .map(|s| s.trim().to_string())
        .map_err(|source| SysctlError::Read {
            key: key.into(),
            source,
        })
}

pub fn write(key: &str, value: &str) -> Result<(), SysctlError> {
    std::fs::write(path(key), format!("{value}\n")).map_err(|source| SysctlError::Write {
        key: key.into(),
        value: value.into(),
        source,
    })
}

/// The current values of all [`WANTED`] settings.
pub fn current() -> Result<Saved, SysctlError> {
    let mut map = BTreeMap::new();
    for (k, _) in WANTED {
        map.insert(k.to_string(), read(k)?);
    }
    Ok(Saved(map))
}

/// Sets every [`WANTED`] setting that differs.
pub fn ensure() -> Result<(), SysctlError> {
    for (k, v) in WANTED {
        if read(k)? != *v {
            write(k, v)?;
            tracing::info!(sysctl = k, value = v, "proxy set kernel setting");
        }
    }
    Ok(())
}

/// What restoring `saved` should write: only settings that minik turned on
/// and that still have minik's value.
pub fn restore_plan(saved: &Saved, now: &Saved) -> Vec<(String, String)> {
    let mut plan = Vec::new();
    for (k, want) in WANTED {
        let (Some(orig), Some(cur)) = (saved.0.get(*k), now.0.get(*k)) else {
            continue;
        };
        if orig != want && cur == want {
            plan.push((k.to_string(), orig.clone()));
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(fwd: &str, local: &str) -> Saved {
        Saved(
            [
                ("net.ipv4.ip_forward".to_string(), fwd.to_string()),
                (
                    "net.ipv4.conf.all.route_localnet".to_string(),
                    local.to_string(),
                ),
            ]
            .into(),
        )
    }

    #[test]
    fn comment_round_trips() {
        let s = saved("0", "1");
        let c = s.to_comment();
        assert!(c.len() < 128, "nft comments are limited to 128 bytes");
        assert_eq!(Saved::from_comment(&c), Some(s));
        assert_eq!(Saved::from_comment("something else"), None);
    }

    #[test]
    fn comment_cannot_name_other_settings() {
        let s = Saved::from_comment(
            "minik-proxy saved-sysctls: kernel.panic=1 net.ipv4.ip_forward=0;x",
        )
        .unwrap();
        assert!(s.0.is_empty());
    }

    #[test]
    fn restore_puts_back_only_what_minik_changed() {
        // ip_forward was 0 and is now 1: restore; route_localnet was already 1: keep.
        let plan = restore_plan(&saved("0", "1"), &saved("1", "1"));
        assert_eq!(
            plan,
            vec![("net.ipv4.ip_forward".to_string(), "0".to_string())]
        );
        // someone else set it back meanwhile: leave it
        assert!(restore_plan(&saved("0", "0"), &saved("0", "0")).is_empty());
    }
}
