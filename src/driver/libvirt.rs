//! The `libvirt` driver seen from the CLI (cargo feature `libvirt`): the VM
//! is a libvirt domain on minik's own NAT network `minik-net`; it has its own
//! address (reserved before boot, so it goes into the API server
//! certificate), and the API server and NodePorts are reached there directly.

use std::time::Duration;

use anyhow::Result;

use super::HostState;
use crate::profile::{Profile, ProfileConfig};
use crate::ui;

pub fn driver(profile: &Profile) -> minik_vm::LibvirtDriver {
    minik_vm::LibvirtDriver::new(profile.dir.join("vm"), &profile.name)
}

/// The VM's address, fixed for the profile (a DHCP reservation).
pub async fn reserve_address(profile: &Profile) -> Result<String> {
    Ok(driver(profile).reserve_address().await?)
}

/// Boots (or finds running) the domain; returns the address of its API server.
pub async fn start(profile: &Profile, cfg: &ProfileConfig) -> Result<String> {
    let vm = driver(profile);
    if let minik_vm::VmState::Running = vm.status().await? {
        if let Some(info) = vm.info()? {
            ui::info(format!("the \"{}\" VM is already running", profile.name));
            return Ok(info.host_ip);
        }
    }
    let spec = super::vm_spec(profile, cfg).await?;
    let spin = ui::spinner(
        "🔥",
        format!(
            "Creating libvirt VM (CPUs={}, Memory={}MB, Disk={}MB) ...",
            cfg.cpus, cfg.memory_mb, cfg.disk_mb
        ),
    );
    let started = vm.start(&spec).await;
    spin.finish();
    let info = started?;
    if info.kvm_fallback.is_some() {
        ui::warn("KVM did not start a guest; using software emulation (slower)");
    }
    ui::step(
        "🐳",
        "Installed the minik agent in the VM; starting Kubernetes ...",
    );
    Ok(info.host_ip)
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

pub fn ssh(profile: &Profile, args: &[String]) -> Result<i32> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let status = driver(profile).ssh_command(&args)?.status()?;
    Ok(status.code().unwrap_or(1))
}

pub fn console_log(profile: &Profile) -> std::path::PathBuf {
    driver(profile).console_log()
}
