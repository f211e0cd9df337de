//! Where the node agent runs. `none`: directly on this Linux host, as root
//! (minikube's none driver; fast, used by most tests). `qemu` and `libvirt`
//! (the VM) live in the `minik-vm` crate and are wired in here.

pub mod none;

use anyhow::{bail, Result};

/// The drivers `--driver` accepts.
pub const DRIVERS: &[&str] = &["none"];

pub fn validate(driver: &str) -> Result<()> {
    if !DRIVERS.contains(&driver) {
        bail!(
            "unknown driver {driver:?}: choose one of {} (e.g. `minik start --driver=none`)",
            DRIVERS.join(", ")
        );
    }
    Ok(())
}
