//! Where the node agent runs, behind one enum the commands use:
//! - `qemu` (default): a VM booted from the minik ISO (`minik-vm` crate);
//! - `none`: directly on this Linux host, as root (minikube's none driver;
//!   fast, used by most tests).

#[cfg(feature = "libvirt")]
pub mod libvirt;
pub mod none;
pub mod qemu;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::profile::{Profile, ProfileConfig};

/// The drivers `--driver` accepts.
#[cfg(not(feature = "libvirt"))]
pub const DRIVERS: &[&str] = &["qemu", "none"];
#[cfg(feature = "libvirt")]
pub const DRIVERS: &[&str] = &["qemu", "libvirt", "none"];
pub const DEFAULT_DRIVER: &str = "qemu";

pub fn validate(driver: &str) -> Result<()> {
    if driver == "libvirt" && !DRIVERS.contains(&driver) {
        bail!("this minik was built without the libvirt driver: build it with `cargo build --release --features libvirt` (needs `apt-get install libvirt-dev`), or use --driver=qemu");
    }
    if !DRIVERS.contains(&driver) {
        bail!(
            "unknown driver {driver:?}: choose one of {} (e.g. `minik start --driver=qemu`)",
            DRIVERS.join(", ")
        );
    }
    Ok(())
}

/// The binary that runs as the agent inside a VM: this one, unless it was
/// built with the libvirt feature (then it links libvirt, which the ISO does
/// not carry): then `minik-agent` beside it, a build without that feature.
pub fn agent_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the minik binary (it is the agent)")?;
    if !cfg!(feature = "libvirt") {
        return Ok(exe);
    }
    let sibling = exe.with_file_name("minik-agent");
    if let Some(p) = std::env::var_os("MINIK_AGENT") {
        return Ok(PathBuf::from(p));
    }
    if sibling.exists() {
        return Ok(sibling);
    }
    bail!(
        "this minik links libvirt and cannot be the VM's agent: build one without the feature and put it beside this binary as {} (`cargo build --release && cp target/release/minik target/release/minik-agent`), or set MINIK_AGENT",
        sibling.display()
    )
}

/// What both VM drivers boot: the ISO (downloaded and cached if needed),
/// the agent payload (agent binary + the profile's certificates) and the
/// profile's CPUs, memory, disk and accelerator.
pub async fn vm_spec(profile: &Profile, cfg: &ProfileConfig) -> Result<minik_vm::VmSpec> {
    let url = cfg.iso_url.clone().unwrap_or_else(qemu::default_iso_url);
    crate::ui::step("💿", format!("Getting the minik ISO ({url}) ..."));
    let iso = minik_vm::ensure_iso(&url, &crate::profile::minik_home()?.join("cache/iso"))
        .await
        .with_context(|| {
            format!("getting the minik ISO from {url} (check --iso-url; a .sha256 file must sit beside the ISO)")
        })?;
    let agent = agent_binary()?;
    let payload = minik_vm::AgentPayload::minik_agent(&agent, &profile.certs_dir(), &cfg.name)?;
    let mut spec = minik_vm::VmSpec::new(iso, payload);
    spec.cpus = cfg.cpus;
    spec.memory_mb = u32::try_from(cfg.memory_mb).unwrap_or(u32::MAX);
    spec.disk_mb = cfg.disk_mb;
    spec.accel = cfg
        .accel
        .as_deref()
        .unwrap_or("auto")
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    Ok(spec)
}

/// A VM driver's state as `minik status` reports it.
pub fn vm_host_state(state: minik_vm::VmState) -> HostState {
    match state {
        minik_vm::VmState::Running => HostState::Running,
        minik_vm::VmState::Died { console_tail } => HostState::Died(console_tail),
        _ => HostState::Stopped,
    }
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
        #[cfg(feature = "libvirt")]
        "libvirt" => libvirt::host_state(profile).await,
        _ => qemu::host_state(profile).await,
    }
}

/// Stops the cluster; true when it was running.
pub async fn stop(profile: &Profile, cfg: &ProfileConfig) -> Result<bool> {
    match cfg.driver.as_str() {
        "none" => none::stop_agent(profile, std::time::Duration::from_secs(90)).await,
        #[cfg(feature = "libvirt")]
        "libvirt" => libvirt::stop(profile).await,
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
        #[cfg(feature = "libvirt")]
        "libvirt" => libvirt::delete(profile).await,
        _ => qemu::delete(profile).await,
    }
}

/// `http://host:port` URLs a NodePort is reachable at from this host.
pub async fn node_port_url(
    profile: &Profile,
    cfg: &ProfileConfig,
    node_port: u16,
) -> Result<String> {
    match cfg.driver.as_str() {
        "none" => Ok(format!("http://127.0.0.1:{node_port}")),
        "libvirt" => Ok(format!("http://{}:{node_port}", cfg.node_ip)),
        _ => {
            let host_port = qemu::forward(profile, node_port).await?;
            Ok(format!("http://127.0.0.1:{host_port}"))
        }
    }
}

/// Where port `guest_port` of the node is reachable from this host, as
/// (address, port): `none` → the port itself on 127.0.0.1 (the node is this
/// host); `libvirt` → the VM's address; `qemu` → a QMP forward from
/// 127.0.0.1:`preferred` when that port is free here, else from a free port.
pub async fn host_port_for(
    profile: &Profile,
    cfg: &ProfileConfig,
    guest_port: u16,
    preferred: u16,
) -> Result<(String, u16)> {
    match cfg.driver.as_str() {
        "none" => Ok(("127.0.0.1".into(), guest_port)),
        "libvirt" => Ok((cfg.node_ip.clone(), guest_port)),
        _ => {
            let port = qemu::forward_preferring(profile, guest_port, preferred).await?;
            Ok(("127.0.0.1".into(), port))
        }
    }
}

/// Drops what [`host_port_for`] set up for `guest_port` (a qemu forward;
/// nothing for the other drivers).
pub async fn release_host_port(
    profile: &Profile,
    cfg: &ProfileConfig,
    guest_port: u16,
) -> Result<()> {
    match cfg.driver.as_str() {
        "none" | "libvirt" => Ok(()),
        _ => qemu::unforward(profile, guest_port).await,
    }
}

/// `scheme://host[:port]`, the port left out when it is the scheme's default.
pub fn url(scheme: &str, host: &str, port: u16) -> String {
    let default = match scheme {
        "http" => 80,
        "https" => 443,
        _ => 0,
    };
    if port == default {
        format!("{scheme}://{host}")
    } else {
        format!("{scheme}://{host}:{port}")
    }
}

/// Why a 127.0.0.1 port could not be had, for messages: "taken" or "needs root".
pub fn why_port_unavailable(port: u16) -> &'static str {
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => "needs root",
        _ => "is taken",
    }
}

/// The API server's URL from this host.
pub fn api_server_url(cfg: &ProfileConfig) -> String {
    if cfg.driver == "libvirt" {
        format!("https://{}:8443", cfg.node_ip)
    } else {
        format!("https://127.0.0.1:{}", cfg.api_port)
    }
}

/// `minik ssh`.
pub fn ssh(profile: &Profile, cfg: &ProfileConfig, args: &[String]) -> Result<i32> {
    match cfg.driver.as_str() {
        "none" => bail!(
            "the none driver runs on this host: there is no VM to ssh into (run the command here)"
        ),
        #[cfg(feature = "libvirt")]
        "libvirt" => libvirt::ssh(profile, args),
        _ => qemu::ssh(profile, args),
    }
}

/// The agent's log: its own file (none) or the VM's serial console.
pub fn agent_log(profile: &Profile, cfg: &ProfileConfig) -> PathBuf {
    match cfg.driver.as_str() {
        "none" => profile.agent_log(),
        #[cfg(feature = "libvirt")]
        "libvirt" => libvirt::console_log(profile),
        _ => qemu::console_log(profile),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_leaves_out_default_ports() {
        assert_eq!(url("http", "127.0.0.1", 80), "http://127.0.0.1");
        assert_eq!(url("http", "127.0.0.1", 8080), "http://127.0.0.1:8080");
        assert_eq!(url("https", "192.168.39.2", 443), "https://192.168.39.2");
        assert_eq!(url("https", "127.0.0.1", 80), "https://127.0.0.1:80");
    }
}
