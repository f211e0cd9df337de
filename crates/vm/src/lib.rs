//! minik-vm: the VM that holds a minik cluster.
//!
//! Owns: fetching and caching the minik ISO ([`iso`]), the agent payload
//! handed to the guest ([`payload`]), the QMP client ([`qmp`]), SSH keys and
//! commands into the guest ([`ssh`]), the `qemu` driver ([`qemu`]) that
//! starts, stops, forwards ports to and deletes a VM whose state lives in a
//! profile directory, and (cargo feature `libvirt`, links libvirt) the
//! `libvirt` driver (`libvirt::LibvirtDriver`, same methods, the VM on a NAT
//! network of its own). Knows nothing about Kubernetes.
//!
//! The guest side (kernel, initramfs, `/init`) is built by `iso/build.sh`;
//! `iso/README.md` describes the contract between the two (disk serials,
//! payload format, console markers).
//!
//! How `minik start --driver=qemu` uses it:
//!
//! ```no_run
//! # async fn start() -> Result<(), Box<dyn std::error::Error>> {
//! use minik_vm::{ensure_iso, AgentPayload, QemuDriver, VmSpec};
//! let home = std::path::PathBuf::from("/root/.minik");
//! let iso = ensure_iso("https://example.org/minik-0.1.0.iso", &home.join("cache/iso")).await?;
//! // the running `minik` binary is the agent; certs: ca.crt, apiserver.crt/.key
//! // (the API server certificate needs the SAN 127.0.0.1)
//! let certs = home.join("profiles/minik/certs");
//! let payload = AgentPayload::minik_agent(&std::env::current_exe()?, &certs, "minik")?;
//! let mut spec = VmSpec::new(iso, payload);
//! spec.cpus = 2;
//! spec.memory_mb = 2048;
//! let vm = QemuDriver::new(home.join("profiles/minik/vm"));
//! let info = vm.start(&spec).await?;
//! if let Some(why) = &info.kvm_fallback {
//!     eprintln!("{why}");
//! }
//! println!("server: https://127.0.0.1:{}", info.api_port);
//! let node_port = vm.forward(30080).await?; // `minik service`
//! vm.ssh_command(&["uptime"])?.status()?; // `minik ssh -- uptime`
//! vm.stop(std::time::Duration::from_secs(30)).await?; // `minik stop`
//! vm.delete().await?; // `minik delete`
//! # let _ = node_port; Ok(()) }
//! ```
//!
//! `minik start --driver=libvirt` (cargo feature `libvirt`) uses
//! `LibvirtDriver::new(home.join("profiles/minik/vm"), "minik")` the same
//! way, with two differences: the VM has its own address on the `minik-net`
//! network, known before boot from `reserve_address().await?` (put it in
//! the API server certificate's SANs before building the payload), and
//! there are no forwards: the API server is `https://{info.host_ip}:8443`,
//! SSH `{info.guest_ip}:22`, a NodePort `http://{info.guest_ip}:{port}`.

pub mod iso;
pub mod isofs;
#[cfg(feature = "libvirt")]
pub mod libvirt;
pub mod payload;
pub mod qemu;
pub mod qmp;
pub mod ssh;
mod state;

pub use iso::{ensure_iso, ensure_iso_with, FetchOptions, IsoError};
#[cfg(feature = "libvirt")]
pub use libvirt::LibvirtDriver;
pub use payload::{AgentPayload, PayloadError};
pub use qemu::{Accel, BootMode, QemuDriver, StopOutcome, VmError, VmInfo, VmSpec, VmState};
pub use qmp::{Qmp, QmpError};
pub use ssh::SshError;

/// Lines `/init` prints on the serial console (see `iso/rootfs/init`).
pub mod markers {
    /// `/init` started (first line of our userland).
    pub const INIT_STARTED: &str = "minik-init: started";
    /// `/init` finished: data disk mounted, dropbear and the agent started.
    pub const INIT_READY: &str = "minik-init: ready";
}

/// Port the agent's API server listens on inside the VM.
pub const GUEST_API_PORT: u16 = 8443;
/// Port dropbear listens on inside the VM.
pub const GUEST_SSH_PORT: u16 = 22;
/// The VM's address on qemu's user-mode network (SLIRP's fixed DHCP lease).
pub const GUEST_USERNET_IP: &str = "10.0.2.15";
