//! The `libvirt` driver (cargo feature `libvirt`): one libvirt domain per
//! profile, on `qemu:///system`, on a NAT network of minik's own.
//!
//! Owns, in libvirt: the domain named after the profile (marked as minik's
//! by a `<metadata>` element; a domain of that name without it is never
//! touched) and the network [`NETWORK`] (`192.168.39.0/24`, DHCP, NAT; made
//! on the first start, removed by the `delete` that leaves no domain on it).
//! In the profile directory, the same files as the qemu driver: `disk.qcow2`,
//! `agent.img`, `console.log` (+ `console.prev.log`), `vmlinuz` + `initrd`,
//! `id_ed25519{,.pub}`, `kvm-failed`. libvirt keeps the rest (state, pid).
//!
//! The guest contract is the qemu driver's (`iso/README.md`): direct kernel
//! boot from the ISO's kernel and initramfs (or the CD), the data disk with
//! serial `minik-data`, the read-only payload disk with serial
//! `minik-agent`, the serial console written to `console.log`. The VM is
//! reached on its own address, read from the network's DHCP leases: the
//! API server at `<ip>:8443`, SSH at `<ip>:22`; no port forwarding.
//!
//! QEMU runs as the user running minik (a static DAC label, no relabelling),
//! so the profile's files need no ownership changes and stay private.
//! Acceleration as in the qemu driver: `Accel::Auto` tries `<domain
//! type='kvm'>` when `/dev/kvm` opens, and falls back to `type='qemu'` (TCG)
//! when the guest's `/init` does not speak within [`KVM_PROBE`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::ErrorNumber;
use virt::network::Network;
use virt::sys;

use crate::markers;
use crate::qemu::{
    create_disk, extract_direct_boot, io_err, kvm_usable, tail, Accel, BootMode, StopOutcome,
    VmError, VmInfo, VmSpec, VmState, KVM_PROBE,
};
use crate::ssh::{self, SshError};
use crate::{GUEST_API_PORT, GUEST_SSH_PORT};

/// libvirt's system connection (root's daemon).
pub const URI: &str = "qemu:///system";
/// minik's own NAT network (minikube's is `mk-minikube`).
pub const NETWORK: &str = "minik-net";
/// Its bridge on the host (`minik0` is the pod bridge; not that one).
pub const NETWORK_BRIDGE: &str = "virbr-minik";
/// The host's address on [`NETWORK`]; guests get `.2`-`.254` by DHCP.
pub const NETWORK_GATEWAY: &str = "192.168.39.1";
/// How long a booted guest gets to appear in the DHCP leases.
pub const LEASE_TIMEOUT: Duration = Duration::from_secs(30);
/// XML namespace of the `<metadata>` element that marks minik's domains.
const METADATA_NS: &str = "https://minik.dev/xmlns/libvirt/1";

/// The libvirt driver of one profile.
#[derive(Debug, Clone)]
pub struct LibvirtDriver {
    dir: PathBuf,
    name: String,
    uri: String,
    qemu_img: String,
}

/// A connection closed when dropped.
struct Conn(Connect);

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.0.close();
    }
}

fn lv(e: virt::error::Error) -> VmError {
    VmError::Libvirt(e.message().to_string())
}

fn not_found(e: &virt::error::Error) -> bool {
    matches!(e.code(), ErrorNumber::NoDomain | ErrorNumber::NoNetwork)
}

impl LibvirtDriver {
    /// The driver of the VM named `name` (the profile name: the libvirt
    /// domain's name) whose files live in `profile_dir`.
    pub fn new(profile_dir: impl Into<PathBuf>, name: &str) -> Self {
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        // libvirtd resolves paths itself: they must be absolute
        let dir: PathBuf = profile_dir.into();
        LibvirtDriver {
            dir: std::path::absolute(&dir).unwrap_or(dir),
            name: if name.is_empty() {
                "minik".into()
            } else {
                name
            },
            uri: URI.into(),
            qemu_img: "qemu-img".into(),
        }
    }

    /// Talks to another libvirt URI than `qemu:///system`.
    pub fn with_uri(mut self, uri: &str) -> Self {
        self.uri = uri.into();
        self
    }

    /// The libvirt domain's name.
    pub fn domain_name(&self) -> &str {
        &self.name
    }
    pub fn profile_dir(&self) -> &Path {
        &self.dir
    }
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    pub fn disk_path(&self) -> PathBuf {
        self.dir.join("disk.qcow2")
    }
    fn payload_path(&self) -> PathBuf {
        self.dir.join("agent.img")
    }
    fn kernel_path(&self) -> PathBuf {
        self.dir.join("vmlinuz")
    }
    fn initrd_path(&self) -> PathBuf {
        self.dir.join("initrd")
    }
    fn kvm_failed_path(&self) -> PathBuf {
        self.dir.join("kvm-failed")
    }

    /// The last `lines` lines of the serial console.
    pub fn console_tail(&self, lines: usize) -> String {
        tail(&self.console_log(), lines)
    }

    /// The MAC address of the VM's NIC: fixed per profile, so the DHCP
    /// server hands it the same address again after a restart.
    pub fn mac(&self) -> String {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in self.name.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
        }
        let b = h.to_be_bytes();
        format!("52:54:00:{:02x}:{:02x}:{:02x}", b[5], b[6], b[7])
    }

    fn connect(&self) -> Result<Conn, VmError> {
        static QUIET: std::sync::Once = std::sync::Once::new();
        // libvirt prints every error on stderr unless told not to; ours are returned
        QUIET.call_once(virt::error::clear_error_callback);
        Connect::open(Some(&self.uri)).map(Conn).map_err(|e| {
            let m = e.message().to_string();
            let down = [
                "Failed to connect socket",
                "No such file or directory",
                "Connection refused",
            ];
            let installed =
                crate::qemu::on_path("libvirtd") || Path::new("/usr/sbin/libvirtd").exists();
            if down.iter().any(|d| m.contains(d)) && !installed {
                VmError::LibvirtMissing
            } else if down.iter().any(|d| m.contains(d)) {
                VmError::LibvirtNotRunning { detail: m }
            } else {
                VmError::Libvirt(format!("cannot connect to {}: {m}", self.uri))
            }
        })
    }

    /// Runs `f` with a fresh connection on a blocking thread (libvirt calls
    /// such as creating a domain take seconds).
    async fn blocking<T, F>(&self, f: F) -> Result<T, VmError>
    where
        T: Send + 'static,
        F: FnOnce(&LibvirtDriver, &Connect) -> Result<T, VmError> + Send + 'static,
    {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let c = me.connect()?;
            f(&me, &c.0)
        })
        .await
        .map_err(|e| VmError::Libvirt(format!("libvirt call panicked: {e}")))?
    }

    /// Our domain, `None` when not defined; an error when a domain of that
    /// name exists that minik did not make.
    fn domain(&self, c: &Connect) -> Result<Option<Domain>, VmError> {
        match Domain::lookup_by_name(c, &self.name) {
            Ok(d) => {
                let xml = d.get_xml_desc(0).map_err(lv)?;
                if !xml.contains(METADATA_NS) {
                    return Err(VmError::State(format!(
                        "the libvirt domain {:?} was not made by minik; rename or remove it (`virsh undefine {}`) or use another profile",
                        self.name, self.name
                    )));
                }
                Ok(Some(d))
            }
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(lv(e)),
        }
    }

    fn qemu_pid(&self) -> u32 {
        std::fs::read_to_string(format!("/run/libvirt/qemu/{}.pid", self.name))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Boots the VM. Errors if it is already running. `spec.api_port` and
    /// `spec.ssh_port` are not used: the VM is reached on its own address.
    pub async fn start(&self, spec: &VmSpec) -> Result<VmInfo, VmError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(io_err(format!("cannot create {}", self.dir.display())))?;
        if let Some(dom) = self.blocking(|me, c| me.domain(c)).await? {
            if dom.is_active().map_err(lv)? {
                return Err(VmError::AlreadyRunning {
                    profile: self.dir.clone(),
                    pid: self.qemu_pid(),
                });
            }
        }
        if !spec.iso.is_file() {
            return Err(VmError::Launch(format!(
                "ISO {} does not exist",
                spec.iso.display()
            )));
        }
        let mut spec = spec.clone();
        spec.iso = std::fs::canonicalize(&spec.iso)
            .map_err(io_err(format!("cannot resolve {}", spec.iso.display())))?;
        let spec = &spec;
        let pubkey = ssh::ensure_key(&self.dir)?;
        create_disk(&self.qemu_img, &self.disk_path(), spec.disk_mb)?;
        spec.payload.write_image(&self.payload_path(), &pubkey)?;
        let direct = match spec.boot {
            BootMode::Direct => {
                extract_direct_boot(&spec.iso, &self.kernel_path(), &self.initrd_path())
            }
            BootMode::Cdrom => None,
        };
        let reserved = self.reserve_address().await?;

        let (accel, probe) = match spec.accel {
            Accel::Tcg => (Accel::Tcg, None),
            Accel::Kvm => {
                kvm_usable().map_err(|reason| VmError::KvmUnavailable { reason })?;
                (Accel::Kvm, None)
            }
            Accel::Auto => match kvm_usable() {
                Ok(()) if self.kvm_failed_path().exists() => (Accel::Tcg, None),
                Ok(()) => (Accel::Kvm, Some(KVM_PROBE)),
                Err(reason) => {
                    tracing::debug!("not trying KVM: {reason}");
                    (Accel::Tcg, None)
                }
            },
        };
        let mut kvm_fallback = (spec.accel == Accel::Auto
            && accel == Accel::Tcg
            && self.kvm_failed_path().exists())
        .then(|| {
            "KVM did not start a guest earlier with this profile; using software emulation (TCG, slower)"
                .to_string()
        });

        self.launch(spec, accel, direct.as_deref()).await?;
        let mut accel = accel;
        if let Some(probe) = probe {
            match self.wait_marker(markers::INIT_STARTED, probe).await {
                Ok(()) => {}
                Err(VmError::BootTimeout { .. }) => {
                    let reason = format!(
                        "KVM did not start a guest (no output from the guest's /init within {} s); using software emulation (TCG, slower)",
                        probe.as_secs()
                    );
                    tracing::warn!("{reason}");
                    self.kill().await?;
                    let _ = std::fs::write(self.kvm_failed_path(), format!("{reason}\n"));
                    self.launch(spec, Accel::Tcg, direct.as_deref()).await?;
                    accel = Accel::Tcg;
                    kvm_fallback = Some(reason);
                }
                Err(e) => return Err(e),
            }
        }
        if let Err(e) = self
            .wait_marker(markers::INIT_READY, spec.boot_timeout)
            .await
        {
            if let VmError::BootTimeout { .. } = e {
                let _ = self.kill().await;
            }
            return Err(e);
        }
        let ip = match self.wait_lease(LEASE_TIMEOUT).await {
            Ok(ip) if ip != reserved => {
                tracing::warn!("the VM got {ip}, not its reserved address {reserved}");
                ip
            }
            Ok(ip) => ip,
            Err(e) => {
                let _ = self.kill().await;
                return Err(e);
            }
        };
        Ok(VmInfo {
            api_port: GUEST_API_PORT,
            ssh_port: GUEST_SSH_PORT,
            host_ip: ip.clone(),
            guest_ip: ip,
            pid: self.qemu_pid(),
            accel,
            kvm_fallback,
            forwards: Default::default(),
        })
    }

    /// The VM's address on [`NETWORK`], known before it boots (e.g. for the
    /// API server certificate): a DHCP host entry for the profile's MAC,
    /// made on first use (the network too) and kept until `delete`. `start`
    /// calls it as well; the VM gets this address at every boot.
    pub async fn reserve_address(&self) -> Result<String, VmError> {
        self.blocking(|me, c| {
            let net = ensure_network(c)?;
            let xml = net.get_xml_desc(0).map_err(lv)?;
            let hosts = dhcp_hosts(&xml);
            let mac = me.mac();
            if let Some((_, ip)) = hosts.iter().find(|(m, _)| m.eq_ignore_ascii_case(&mac)) {
                return Ok(ip.clone());
            }
            let taken: Vec<&str> = hosts.iter().map(|(_, ip)| ip.as_str()).collect();
            let ip = pick_address(&mac, &taken).ok_or_else(|| {
                VmError::Libvirt(format!(
                    "no free address left on the {NETWORK} network ({} reserved); delete unused profiles",
                    taken.len()
                ))
            })?;
            let entry = format!("<host mac='{mac}' name='{}' ip='{ip}'/>", esc(&me.name));
            net.update(
                sys::VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
                sys::VIR_NETWORK_SECTION_IP_DHCP_HOST,
                -1,
                &entry,
                sys::VIR_NETWORK_UPDATE_AFFECT_LIVE | sys::VIR_NETWORK_UPDATE_AFFECT_CONFIG,
            )
            .map_err(|e| {
                VmError::Libvirt(format!(
                    "cannot reserve {ip} on the {NETWORK} network: {}",
                    e.message()
                ))
            })?;
            Ok(ip)
        })
        .await
    }

    /// Removes the profile's DHCP host entry (when the network stays).
    fn release_address(&self, c: &Connect) -> Result<(), VmError> {
        let net = match Network::lookup_by_name(c, NETWORK) {
            Ok(n) => n,
            Err(e) if not_found(&e) => return Ok(()),
            Err(e) => return Err(lv(e)),
        };
        let mac = self.mac();
        let xml = net.get_xml_desc(0).map_err(lv)?;
        for (m, ip) in dhcp_hosts(&xml) {
            if m.eq_ignore_ascii_case(&mac) {
                let mut flags = sys::VIR_NETWORK_UPDATE_AFFECT_CONFIG;
                if net.is_active().map_err(lv)? {
                    flags |= sys::VIR_NETWORK_UPDATE_AFFECT_LIVE;
                }
                net.update(
                    sys::VIR_NETWORK_UPDATE_COMMAND_DELETE,
                    sys::VIR_NETWORK_SECTION_IP_DHCP_HOST,
                    -1,
                    &format!("<host mac='{m}' ip='{ip}'/>"),
                    flags,
                )
                .map_err(lv)?;
            }
        }
        Ok(())
    }

    /// (Re)defines the domain for `spec` and starts it.
    async fn launch(
        &self,
        spec: &VmSpec,
        accel: Accel,
        direct: Option<&str>,
    ) -> Result<(), VmError> {
        let console = self.console_log();
        if console.exists() {
            let _ = std::fs::rename(&console, self.dir.join("console.prev.log"));
        }
        let boot = match direct {
            Some(append) => Boot::Direct {
                kernel: self.kernel_path(),
                initrd: self.initrd_path(),
                cmdline: append.to_string(),
            },
            None => Boot::Cdrom,
        };
        // SAFETY: geteuid/getegid have no preconditions.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let xml = domain_xml(&DomainDef {
            name: &self.name,
            profile: &self.dir,
            kvm: accel == Accel::Kvm,
            memory_mb: spec.memory_mb,
            cpus: spec.cpus,
            boot,
            iso: &spec.iso,
            disk: &self.disk_path(),
            payload: &self.payload_path(),
            console: &console,
            mac: &self.mac(),
            uid,
            gid,
        });
        self.blocking(move |me, c| {
            // refuse to overwrite a foreign domain of the same name; keep
            // the UUID of ours (a redefinition without it is refused)
            let xml = match me.domain(c)? {
                Some(d) => with_uuid(&xml, &d.get_uuid_string().map_err(lv)?),
                None => xml,
            };
            let dom = Domain::define_xml(c, &xml).map_err(lv)?;
            dom.create().map_err(|e| {
                VmError::Launch(format!(
                    "libvirt could not start the domain: {}",
                    e.message()
                ))
            })?;
            Ok(())
        })
        .await
    }

    fn is_active(&self) -> Result<bool, VmError> {
        let c = self.connect()?;
        Ok(match self.domain(&c.0)? {
            Some(d) => d.is_active().map_err(lv)?,
            None => false,
        })
    }

    /// Waits until `marker` shows on the console, failing early when the
    /// domain stops.
    async fn wait_marker(&self, marker: &str, timeout: Duration) -> Result<(), VmError> {
        let start = Instant::now();
        let console = self.console_log();
        let mut checked = Instant::now();
        loop {
            if std::fs::read(&console)
                .map(|b| String::from_utf8_lossy(&b).contains(marker))
                .unwrap_or(false)
            {
                return Ok(());
            }
            if checked.elapsed() >= Duration::from_millis(500) {
                checked = Instant::now();
                if !self.is_active()? {
                    return Err(VmError::Died {
                        reason: format!("the libvirt domain {} stopped while booting", self.name),
                        console: console.clone(),
                        tail: self.console_tail(25),
                    });
                }
            }
            if start.elapsed() >= timeout {
                return Err(VmError::BootTimeout {
                    secs: timeout.as_secs(),
                    console: console.clone(),
                    tail: self.console_tail(25),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The IPv4 address the network's DHCP server leased to our NIC.
    fn lease(&self, c: &Connect) -> Result<Option<String>, VmError> {
        let Some(dom) = self.domain(c)? else {
            return Ok(None);
        };
        if !dom.is_active().map_err(lv)? {
            return Ok(None);
        }
        let ifaces = dom
            .interface_addresses(sys::VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, 0)
            .map_err(lv)?;
        let mac = self.mac();
        Ok(ifaces
            .iter()
            .filter(|i| i.hwaddr.eq_ignore_ascii_case(&mac))
            .flat_map(|i| i.addrs.iter())
            .find(|a| a.typed == i64::from(sys::VIR_IP_ADDR_TYPE_IPV4))
            .map(|a| a.addr.clone()))
    }

    async fn wait_lease(&self, timeout: Duration) -> Result<String, VmError> {
        let start = Instant::now();
        loop {
            let c = self.connect()?;
            if let Some(ip) = self.lease(&c.0)? {
                return Ok(ip);
            }
            drop(c);
            if start.elapsed() >= timeout {
                return Err(VmError::NoAddress {
                    network: NETWORK.into(),
                    secs: timeout.as_secs(),
                    console: self.console_log(),
                    tail: self.console_tail(25),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Address and ports of the running VM, `None` when it is not running.
    pub fn info(&self) -> Result<Option<VmInfo>, VmError> {
        let c = self.connect()?;
        let Some(dom) = self.domain(&c.0)? else {
            return Ok(None);
        };
        if !dom.is_active().map_err(lv)? {
            return Ok(None);
        }
        let Some(ip) = self.lease(&c.0)? else {
            return Ok(None);
        };
        let xml = dom.get_xml_desc(0).map_err(lv)?;
        let accel = if xml.contains("<domain type='kvm'") {
            Accel::Kvm
        } else {
            Accel::Tcg
        };
        let kvm_fallback = match accel {
            Accel::Tcg => std::fs::read_to_string(self.kvm_failed_path())
                .ok()
                .map(|s| s.trim().to_string()),
            _ => None,
        };
        Ok(Some(VmInfo {
            api_port: GUEST_API_PORT,
            ssh_port: GUEST_SSH_PORT,
            host_ip: ip.clone(),
            guest_ip: ip,
            pid: self.qemu_pid(),
            accel,
            kvm_fallback,
            forwards: Default::default(),
        }))
    }

    /// Running, paused, stopped, died or not created.
    pub async fn status(&self) -> Result<VmState, VmError> {
        let state = self
            .blocking(|me, c| match me.domain(c)? {
                Some(d) => d.get_state().map(Some).map_err(lv),
                None => Ok(None),
            })
            .await?;
        Ok(match state {
            None if self.disk_path().exists() => VmState::Stopped,
            None => VmState::NotCreated,
            Some((s, reason)) => state_of(s, reason, || self.console_tail(15)),
        })
    }

    /// ACPI power button (virDomainShutdown; the guest stops the agent,
    /// syncs, powers off); after `timeout` the domain is destroyed.
    pub async fn stop(&self, timeout: Duration) -> Result<StopOutcome, VmError> {
        if !self.blocking(|me, c| me.active(c)).await? {
            return Ok(StopOutcome::WasNotRunning);
        }
        // pressed again every few seconds: a press is lost while the guest
        // is still booting or before its acpid runs
        let start = Instant::now();
        while start.elapsed() < timeout {
            let gone = self
                .blocking(|me, c| {
                    let Some(d) = me.domain(c)? else {
                        return Ok(true);
                    };
                    match d.shutdown() {
                        Ok(_) => Ok(false),
                        Err(_) => Ok(!d.is_active().map_err(lv)?),
                    }
                })
                .await?;
            if gone {
                return Ok(StopOutcome::Graceful);
            }
            let until = Instant::now()
                + timeout
                    .saturating_sub(start.elapsed())
                    .min(Duration::from_secs(5));
            while Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if !self.blocking(|me, c| me.active(c)).await? {
                    return Ok(StopOutcome::Graceful);
                }
            }
        }
        self.kill().await?;
        Ok(StopOutcome::Forced)
    }

    fn active(&self, c: &Connect) -> Result<bool, VmError> {
        Ok(match self.domain(c)? {
            Some(d) => d.is_active().map_err(lv)?,
            None => false,
        })
    }

    /// Ends the VM at once (virDomainDestroy).
    pub async fn kill(&self) -> Result<(), VmError> {
        self.blocking(|me, c| {
            if let Some(d) = me.domain(c)? {
                if d.is_active().map_err(lv)? {
                    if let Err(e) = d.destroy() {
                        // it may have stopped by itself meanwhile
                        if d.is_active().map_err(lv)? {
                            return Err(lv(e));
                        }
                    }
                }
            }
            Ok(())
        })
        .await
    }

    /// Ends the VM, undefines the domain, removes the driver's files (disk,
    /// payload, logs, key), and the network when no other domain uses it.
    /// The profile directory goes too when it is then empty.
    pub async fn delete(&self) -> Result<(), VmError> {
        self.kill().await?;
        self.blocking(|me, c| {
            if let Some(d) = me.domain(c)? {
                d.undefine().map_err(lv)?;
            }
            me.release_address(c)?;
            remove_network_if_unused(c)
        })
        .await?;
        for f in [
            self.disk_path(),
            self.payload_path(),
            self.console_log(),
            self.dir.join("console.prev.log"),
            self.kernel_path(),
            self.initrd_path(),
            self.kvm_failed_path(),
            ssh::key_path(&self.dir),
            ssh::key_path(&self.dir).with_extension("pub"),
        ] {
            match std::fs::remove_file(&f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(format!("cannot remove {}", f.display()))(e)),
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
        Ok(())
    }

    /// An `ssh` command into the running VM as root at its address (a shell
    /// when `args` is empty). Run it with `.status()`, `.output()` or exec it.
    pub fn ssh_command(&self, args: &[&str]) -> Result<Command, VmError> {
        let info = self
            .info()?
            .ok_or_else(|| VmError::NotRunning(self.dir.clone()))?;
        if !ssh::client_available() {
            return Err(SshError::Missing { tool: "ssh" }.into());
        }
        Ok(ssh::command_to(
            &self.dir,
            &info.guest_ip,
            GUEST_SSH_PORT,
            args,
        ))
    }
}

/// VmState of a libvirt domain state and reason.
fn state_of(state: sys::virDomainState, reason: i32, console: impl Fn() -> String) -> VmState {
    match state {
        sys::VIR_DOMAIN_RUNNING | sys::VIR_DOMAIN_BLOCKED | sys::VIR_DOMAIN_NOSTATE => {
            VmState::Running
        }
        sys::VIR_DOMAIN_PAUSED | sys::VIR_DOMAIN_PMSUSPENDED => VmState::Paused,
        sys::VIR_DOMAIN_SHUTDOWN => VmState::Running,
        sys::VIR_DOMAIN_SHUTOFF => {
            let r = u32::try_from(reason).unwrap_or(u32::MAX);
            if r == sys::VIR_DOMAIN_SHUTOFF_CRASHED || r == sys::VIR_DOMAIN_SHUTOFF_FAILED {
                VmState::Died {
                    console_tail: console(),
                }
            } else {
                VmState::Stopped
            }
        }
        _ => VmState::Died {
            console_tail: console(),
        },
    }
}

/// Defines and starts [`NETWORK`] unless it exists and is active.
fn ensure_network(c: &Connect) -> Result<Network, VmError> {
    let net = match Network::lookup_by_name(c, NETWORK) {
        Ok(n) => n,
        Err(e) if not_found(&e) => Network::define_xml(c, &network_xml()).map_err(|e| {
            VmError::Libvirt(format!(
                "cannot define the network {NETWORK}: {}",
                e.message()
            ))
        })?,
        Err(e) => return Err(lv(e)),
    };
    if !net.is_active().map_err(lv)? {
        net.create().map_err(|e| {
            VmError::Libvirt(format!(
                "cannot start the network {NETWORK} ({NETWORK_GATEWAY}/24 on bridge {NETWORK_BRIDGE}): {}; is that subnet or bridge already in use?",
                e.message()
            ))
        })?;
    }
    Ok(net)
}

/// The `<host mac ip>` DHCP entries of a network XML, as (mac, ip).
fn dhcp_hosts(network_xml: &str) -> Vec<(String, String)> {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let i = tag.find(&format!(" {name}="))? + name.len() + 2;
        let q = tag[i..].chars().next()?;
        let rest = &tag[i + 1..];
        Some(rest[..rest.find(q)?].to_string())
    };
    network_xml
        .split("<host ")
        .skip(1)
        .filter_map(|t| {
            let tag = format!(" {}", &t[..t.find('>')?]);
            Some((attr(&tag, "mac")?, attr(&tag, "ip")?))
        })
        .collect()
}

/// A host address in `.2`-`.254` of the network for `mac`, not in `taken`:
/// the first free one from a start derived from the MAC.
fn pick_address(mac: &str, taken: &[&str]) -> Option<String> {
    let prefix = NETWORK_GATEWAY.rsplit_once('.').map(|(p, _)| p)?;
    let seed = mac
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    (0..253u32)
        .map(|i| 2 + (seed + i) % 253)
        .map(|n| format!("{prefix}.{n}"))
        .find(|ip| !taken.contains(&ip.as_str()))
}

/// Stops and undefines [`NETWORK`] when no domain's interface is on it.
fn remove_network_if_unused(c: &Connect) -> Result<(), VmError> {
    let net = match Network::lookup_by_name(c, NETWORK) {
        Ok(n) => n,
        Err(e) if not_found(&e) => return Ok(()),
        Err(e) => return Err(lv(e)),
    };
    for d in c.list_all_domains(0).map_err(lv)? {
        if let Ok(xml) = d.get_xml_desc(0) {
            if uses_network(&xml) {
                return Ok(());
            }
        }
    }
    if net.is_active().map_err(lv)? {
        net.destroy().map_err(lv)?;
    }
    net.undefine().map_err(lv)
}

/// Does a domain XML put an interface on [`NETWORK`]?
fn uses_network(domain_xml: &str) -> bool {
    domain_xml.contains(&format!("<source network='{NETWORK}'"))
        || domain_xml.contains(&format!("<source network=\"{NETWORK}\""))
}

fn network_xml() -> String {
    let prefix = NETWORK_GATEWAY
        .rsplit_once('.')
        .map(|(p, _)| p)
        .unwrap_or("192.168.39");
    format!(
        "<network>
  <name>{NETWORK}</name>
  <forward mode='nat'/>
  <bridge name='{NETWORK_BRIDGE}' stp='on' delay='0'/>
  <ip address='{NETWORK_GATEWAY}' netmask='255.255.255.0'>
    <dhcp>
      <range start='{prefix}.2' end='{prefix}.254'/>
    </dhcp>
  </ip>
</network>
"
    )
}

enum Boot {
    Direct {
        kernel: PathBuf,
        initrd: PathBuf,
        cmdline: String,
    },
    Cdrom,
}

struct DomainDef<'a> {
    name: &'a str,
    profile: &'a Path,
    kvm: bool,
    memory_mb: u32,
    cpus: u32,
    boot: Boot,
    iso: &'a Path,
    disk: &'a Path,
    payload: &'a Path,
    console: &'a Path,
    mac: &'a str,
    uid: u32,
    gid: u32,
}

/// The domain XML with `<uuid>` set (before `<name>`).
fn with_uuid(xml: &str, uuid: &str) -> String {
    xml.replacen(
        "  <name>",
        &format!("  <uuid>{}</uuid>\n  <name>", esc(uuid)),
        1,
    )
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

fn p(path: &Path) -> String {
    esc(&path.display().to_string())
}

fn domain_xml(d: &DomainDef) -> String {
    let os_boot = match &d.boot {
        Boot::Direct {
            kernel,
            initrd,
            cmdline,
        } => format!(
            "    <kernel>{}</kernel>\n    <initrd>{}</initrd>\n    <cmdline>{}</cmdline>\n",
            p(kernel),
            p(initrd),
            esc(cmdline)
        ),
        Boot::Cdrom => "    <boot dev='cdrom'/>\n".to_string(),
    };
    format!(
        "<domain type='{kind}'>
  <name>{name}</name>
  <metadata>
    <minik:vm xmlns:minik='{METADATA_NS}'><minik:profile>{profile}</minik:profile></minik:vm>
  </metadata>
  <memory unit='MiB'>{mem}</memory>
  <vcpu>{cpus}</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
{os_boot}  </os>
  <features><acpi/><apic/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='{iso}'/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' discard='unmap'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
      <serial>minik-data</serial>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{payload}'/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
      <serial>minik-agent</serial>
    </disk>
    <interface type='network'>
      <source network='{NETWORK}'/>
      <mac address='{mac}'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path='{console}'/>
      <target port='0'/>
    </serial>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
  <seclabel type='static' model='dac' relabel='no'><label>+{uid}:+{gid}</label></seclabel>
</domain>
",
        kind = if d.kvm { "kvm" } else { "qemu" },
        name = esc(d.name),
        profile = p(d.profile),
        mem = d.memory_mb,
        cpus = d.cpus,
        iso = p(d.iso),
        disk = p(d.disk),
        payload = p(d.payload),
        console = p(d.console),
        mac = esc(d.mac),
        uid = d.uid,
        gid = d.gid,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def<'a>(dir: &'a Path, boot: Boot) -> DomainDef<'a> {
        DomainDef {
            name: "minik",
            profile: dir,
            kvm: false,
            memory_mb: 512,
            cpus: 1,
            boot,
            iso: Path::new("/c/minik.iso"),
            disk: Path::new("/p/a&b/disk.qcow2"),
            payload: Path::new("/p/agent.img"),
            console: Path::new("/p/console.log"),
            mac: "52:54:00:01:02:03",
            uid: 0,
            gid: 0,
        }
    }

    #[test]
    fn domain_xml_has_the_guest_contract() {
        let x = domain_xml(&def(
            Path::new("/p"),
            Boot::Direct {
                kernel: "/p/vmlinuz".into(),
                initrd: "/p/initrd".into(),
                cmdline: "console=ttyS0,115200 quiet".into(),
            },
        ));
        assert!(x.starts_with("<domain type='qemu'>"), "{x}");
        assert!(x.contains("<serial>minik-data</serial>"));
        assert!(x.contains("<serial>minik-agent</serial>"));
        assert!(x.contains("<source file='/p/a&amp;b/disk.qcow2'/>"), "{x}");
        assert!(x.contains("<serial type='file'>\n      <source path='/p/console.log'/>"));
        assert!(x.contains("<model type='none'/>") && x.contains("<memballoon model='none'/>"));
        assert!(!x.contains("<graphics"), "graphics must be left out");
        assert!(x.contains("<source network='minik-net'/>"));
        assert!(x.contains("<kernel>/p/vmlinuz</kernel>"));
        assert!(x.contains(METADATA_NS));
        assert!(uses_network(&x));
        let u = with_uuid(&x, "77b8ab98-0db3-4498-8f26-925616c75d36");
        assert!(
            u.contains("<uuid>77b8ab98-0db3-4498-8f26-925616c75d36</uuid>\n  <name>minik</name>")
        );
        // the agent disk is read-only: <readonly/> right before its serial
        let agent = &x[x.find("agent.img").unwrap()..];
        assert!(agent.find("<readonly/>").unwrap() < agent.find("minik-agent").unwrap());

        let mut d = def(Path::new("/p"), Boot::Cdrom);
        d.kvm = true;
        let x = domain_xml(&d);
        assert!(x.starts_with("<domain type='kvm'>"));
        assert!(x.contains("<boot dev='cdrom'/>") && !x.contains("<kernel>"));
    }

    #[test]
    fn dhcp_hosts_and_free_addresses() {
        let xml = "<network><ip address='192.168.39.1' netmask='255.255.255.0'><dhcp>\
            <range start='192.168.39.2' end='192.168.39.254'/>\
            <host mac='52:54:00:aa:bb:cc' name='minik' ip='192.168.39.7'/>\
            <host mac=\"52:54:00:00:00:01\" ip=\"192.168.39.8\"/></dhcp></ip></network>";
        assert_eq!(
            dhcp_hosts(xml),
            vec![
                ("52:54:00:aa:bb:cc".to_string(), "192.168.39.7".to_string()),
                ("52:54:00:00:00:01".to_string(), "192.168.39.8".to_string())
            ]
        );
        let a = pick_address("52:54:00:aa:bb:cc", &[]).unwrap();
        assert_eq!(pick_address("52:54:00:aa:bb:cc", &[]).unwrap(), a, "stable");
        let b = pick_address("52:54:00:aa:bb:cc", &[a.as_str()]).unwrap();
        assert_ne!(a, b);
        let all: Vec<String> = (2..=254).map(|n| format!("192.168.39.{n}")).collect();
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        assert_eq!(pick_address("x", &all), None);
        assert!(all.contains(&a.as_str()));
    }

    #[test]
    fn network_is_a_nat_with_dhcp() {
        let x = network_xml();
        assert!(x.contains("<name>minik-net</name>"));
        assert!(x.contains("<forward mode='nat'/>"));
        assert!(x.contains("<ip address='192.168.39.1' netmask='255.255.255.0'>"));
        assert!(x.contains("<range start='192.168.39.2' end='192.168.39.254'/>"));
        assert!(!uses_network(
            "<interface type='network'><source network='default'/>"
        ));
    }

    #[test]
    fn mac_is_stable_per_profile_and_local() {
        let a = LibvirtDriver::new("/p/a", "minik");
        let b = LibvirtDriver::new("/p/b", "minik");
        let c = LibvirtDriver::new("/p/a", "second");
        assert_eq!(a.mac(), b.mac());
        assert_ne!(a.mac(), c.mac());
        assert!(a.mac().starts_with("52:54:00:") && a.mac().len() == 17);
        assert_eq!(LibvirtDriver::new("/p", "a b/c").domain_name(), "a_b_c");
        assert!(LibvirtDriver::new("rel/dir", "x")
            .profile_dir()
            .is_absolute());
    }

    #[test]
    fn states_map() {
        let t = || "tail".to_string();
        assert_eq!(state_of(sys::VIR_DOMAIN_RUNNING, 1, t), VmState::Running);
        assert_eq!(state_of(sys::VIR_DOMAIN_PAUSED, 1, t), VmState::Paused);
        let shutdown = i32::try_from(sys::VIR_DOMAIN_SHUTOFF_SHUTDOWN).unwrap();
        assert_eq!(
            state_of(sys::VIR_DOMAIN_SHUTOFF, shutdown, t),
            VmState::Stopped
        );
        let crashed = i32::try_from(sys::VIR_DOMAIN_SHUTOFF_CRASHED).unwrap();
        assert!(matches!(
            state_of(sys::VIR_DOMAIN_SHUTOFF, crashed, t),
            VmState::Died { .. }
        ));
    }

    #[test]
    fn unreachable_daemon_is_a_clear_error() {
        let d = LibvirtDriver::new("/nonexistent", "x")
            .with_uri("qemu:///system?socket=/nonexistent/libvirt-sock");
        let err = d.info().unwrap_err();
        assert!(matches!(err, VmError::LibvirtNotRunning { .. }), "{err}");
        assert!(
            err.to_string().contains("virtlogd -d; libvirtd -d"),
            "{err}"
        );
    }
}
