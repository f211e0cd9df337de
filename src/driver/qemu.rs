//! The `qemu` driver seen from the CLI: the ISO (download + cache), the agent
//! payload (this very binary plus the profile's certificates), and the VM's
//! life cycle through `minik_vm::QemuDriver`, whose files live in
//! `<profile>/vm/`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use super::HostState;
use crate::profile::{Profile, ProfileConfig};
use crate::ui;

/// Where `minik start` gets its ISO when `--iso-url` is not given: an ISO
/// built from this source tree by `iso/build.sh` if there is one (a source
/// build is its own release), else the project's release location.
pub fn default_iso_url() -> String {
    let version = env!("CARGO_PKG_VERSION");
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("iso/out")
        .join(format!("minik-{version}.iso"));
    if local.exists() {
        return format!("file://{}", local.display());
    }
    format!("https://github.com/minik-dev/minik/releases/download/v{version}/minik-{version}.iso")
}

pub fn driver(profile: &Profile) -> minik_vm::QemuDriver {
    minik_vm::QemuDriver::new(profile.dir.join("vm"))
}

/// Boots (or finds running) the VM; returns the host port of its API server.
pub async fn start(profile: &Profile, cfg: &ProfileConfig) -> Result<u16> {
    let vm = driver(profile);
    if let minik_vm::VmState::Running = vm.status().await? {
        if let Some(info) = vm.info()? {
            ui::info(format!("the \"{}\" VM is already running", profile.name));
            return Ok(info.api_port);
        }
    }
    if which_qemu().is_none() {
        anyhow::bail!("qemu is not installed: `apt-get install -y qemu-system-x86 qemu-utils` (or use --driver=none)");
    }
    let mut spec = super::vm_spec(profile, cfg).await?;
    // Keep the API port stable across restarts so the kubeconfig stays valid.
    spec.api_port = (cfg.api_port != 0).then_some(cfg.api_port);
    let spin = ui::spinner(
        "🔥",
        format!(
            "Creating qemu VM (CPUs={}, Memory={}MB, Disk={}MB) ...",
            cfg.cpus, cfg.memory_mb, cfg.disk_mb
        ),
    );
    let started = vm.start(&spec).await;
    spin.finish();
    let info = match started {
        Ok(i) => i,
        Err(minik_vm::VmError::PortInUse { .. }) if spec.api_port.is_some() => {
            ui::warn(format!(
                "port {} is taken; the API server gets a new port",
                cfg.api_port
            ));
            spec.api_port = None;
            vm.start(&spec).await?
        }
        Err(e) => return Err(e.into()),
    };
    if info.kvm_fallback.is_some() {
        ui::warn("KVM did not start a guest; using software emulation (slower)");
    }
    ui::step(
        "🐳",
        "Installed the minik agent in the VM; starting Kubernetes ...",
    );
    Ok(info.api_port)
}

pub async fn host_state(profile: &Profile) -> Result<HostState> {
    Ok(super::vm_host_state(driver(profile).status().await?))
}

pub async fn stop(profile: &Profile) -> Result<bool> {
    let out = driver(profile).stop(Duration::from_secs(60)).await?;
    Ok(!matches!(out, minik_vm::StopOutcome::WasNotRunning))
}

pub async fn delete(profile: &Profile) -> Result<()> {
    let vm = driver(profile);
    let _ = vm.kill().await;
    vm.delete().await?;
    Ok(())
}

/// Forwards a guest port (a NodePort) to a 127.0.0.1 port through QMP.
pub async fn forward(profile: &Profile, guest_port: u16) -> Result<u16> {
    Ok(driver(profile).forward(guest_port).await?)
}

/// Forwards `guest_port` to 127.0.0.1:`preferred` when that host port can
/// be bound, else to a free one (the forward already there is kept when
/// `preferred` cannot be had). Returns the host port.
pub async fn forward_preferring(profile: &Profile, guest_port: u16, preferred: u16) -> Result<u16> {
    let vm = driver(profile);
    match vm.forward_on(guest_port, preferred).await {
        Ok(p) => Ok(p),
        Err(minik_vm::VmError::PortInUse { .. }) => Ok(vm.forward(guest_port).await?),
        Err(e) => Err(e.into()),
    }
}

/// Removes the forward of `guest_port`, if any.
pub async fn unforward(profile: &Profile, guest_port: u16) -> Result<()> {
    Ok(driver(profile).unforward(guest_port).await?)
}

/// `minik ssh`.
pub fn ssh(profile: &Profile, args: &[String]) -> Result<i32> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let status = driver(profile).ssh_command(&args)?.status()?;
    Ok(status.code().unwrap_or(1))
}

/// The serial console log (the agent logs there too).
pub fn console_log(profile: &Profile) -> PathBuf {
    driver(profile).console_log()
}

fn which_qemu() -> Option<PathBuf> {
    super::none::which("qemu-system-x86_64")
}
