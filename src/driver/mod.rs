//! Where the node agent runs, behind one enum the commands use:
//! - `qemu` (default): a VM booted from the minik ISO (`minik-vm` crate);
//! - `none`: directly on this Linux host, as root (minikube's none driver;
//!   fast, used by most tests).

pub mod none;
pub mod qemu;

use anyhow::{bail, Result};

use crate::profile::{Profile, ProfileConfig};

/// The drivers `--driver` accepts.
pub const DRIVERS: &[&str] = &["qemu", "none"];
pub const DEFAULT_DRIVER: &str = "qemu";

pub fn validate(driver: &str) -> Result<()> {
    if !DRIVERS.contains(&driver) {
        bail!(
            "unknown driver {driver:?}: choose one of {} (e.g. `minik start --driver=qemu`)",
            DRIVERS.join(", ")
        );
    }
    Ok(())
}

/// The host part of `minik status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostState {
    Running,
    Stopped,
    /// The VM went away without being stopped; the text says what it printed last.
    Died(String),
}

pub async fn host_state(profile: &Profile, cfg: &ProfileConfig) -> Result<HostState> {
    match cfg.driver.as_str() {
        "none" => Ok(if none::agent_pid(profile).is_some() {
            HostState::Running
        } else {
            HostState::Stopped
        }),
        _ => qemu::host_state(profile).await,
    }
}

/// Stops the cluster; true when it was running.
pub async fn stop(profile: &Profile, cfg: &ProfileConfig) -> Result<bool> {
    match cfg.driver.as_str() {
        "none" => none::stop_agent(profile, std::time::Duration::from_secs(90)).await,
        _ => qemu::stop(profile).await,
    }
}

/// Removes everything the cluster made outside its profile directory.
pub async fn delete(profile: &Profile, cfg: &ProfileConfig) -> Result<()> {
    match cfg.driver.as_str() {
        "none" => {
            none::stop_agent(profile, std::time::Duration::from_secs(30)).await?;
            none::teardown(profile, cfg)
        }
        _ => qemu::delete(profile).await,
    }
}

/// `http://host:port` URLs a NodePort is reachable at from this host.
pub async fn node_port_url(profile: &Profile, cfg: &ProfileConfig, node_port: u16) -> Result<String> {
    match cfg.driver.as_str() {
        "none" => Ok(format!("http://127.0.0.1:{node_port}")),
        _ => {
            let host_port = qemu::forward(profile, node_port).await?;
            Ok(format!("http://127.0.0.1:{host_port}"))
        }
    }
}
