//! Profiles: one cluster each, under `~/.minik/profiles/<name>/` (or
//! `$MINIK_HOME/profiles/<name>/`). A profile's `config.json` is the single
//! record of how its cluster was created; every command reads it.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The root of minik's state: `$MINIK_HOME` or `~/.minik`.
pub fn minik_home() -> Result<PathBuf> {
    if let Some(h) = std::env::var_os("MINIK_HOME") {
        return Ok(PathBuf::from(h));
    }
    let home = dirs::home_dir().context("cannot find the home directory; set MINIK_HOME")?;
    Ok(home.join(".minik"))
}

/// What `minik start` decided for this cluster; kept across stop/start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProfileConfig {
    pub name: String,
    pub driver: String,
    /// Host port the API server answers on (127.0.0.1).
    pub api_port: u16,
    /// The node's InternalIP.
    pub node_ip: String,
    pub cpus: u32,
    pub memory_mb: u64,
    pub disk_mb: u64,
    #[serde(default)]
    pub iso_url: Option<String>,
    #[serde(default)]
    pub accel: Option<String>,
    #[serde(default)]
    pub addons: Vec<String>,
    /// `etcd://host:port` when the cluster state lives in a real etcd.
    #[serde(default)]
    pub datastore: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub dir: PathBuf,
}

impl Profile {
    pub fn new(name: &str) -> Result<Profile> {
        validate_name(name)?;
        Ok(Profile {
            name: name.to_string(),
            dir: minik_home()?.join("profiles").join(name),
        })
    }

    pub fn exists(&self) -> bool {
        self.config_path().exists()
    }
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    pub fn certs_dir(&self) -> PathBuf {
        self.dir.join("certs")
    }
    /// The agent's `--root` with the none driver.
    pub fn node_root(&self) -> PathBuf {
        self.dir.join("node")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }
    pub fn agent_log(&self) -> PathBuf {
        self.logs_dir().join("agent.log")
    }
    pub fn agent_pid_file(&self) -> PathBuf {
        self.dir.join("agent.pid")
    }

    pub fn load(&self) -> Result<ProfileConfig> {
        if !self.exists() {
            bail!(
                "profile \"{}\" does not exist; create it with `minik start -p {}`",
                self.name,
                self.name
            );
        }
        let text = fs::read_to_string(self.config_path())
            .with_context(|| format!("reading {}", self.config_path().display()))?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is damaged; delete the profile with `minik delete -p {}`",
                self.config_path().display(),
                self.name
            )
        })
    }

    pub fn save(&self, cfg: &ProfileConfig) -> Result<()> {
        fs::create_dir_all(&self.dir)?;
        write_atomic(
            &self.config_path(),
            serde_json::to_string_pretty(cfg)?.as_bytes(),
        )
    }

    /// Every profile that has a config.
    pub fn all() -> Result<Vec<Profile>> {
        let dir = minik_home()?.join("profiles");
        let mut out = Vec::new();
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries.flatten() {
                if let Some(name) = e.file_name().to_str() {
                    if let Ok(p) = Profile::new(name) {
                        if p.exists() {
                            out.push(p);
                        }
                    }
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// Profile names become node names and kubeconfig entries: DNS-1123 labels.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        bail!("invalid profile name {name:?}: use lower-case letters, digits and '-', at most 63 characters, starting and ending with a letter or digit");
    }
    Ok(())
}

/// Writes a file so that a crash leaves either the old or the new content.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names() {
        assert!(validate_name("minik").is_ok());
        assert!(validate_name("second-1").is_ok());
        assert!(validate_name("Bad").is_err());
        assert!(validate_name("-x").is_err());
        assert!(validate_name("").is_err());
        assert!(validate_name("a/b").is_err());
    }
}
