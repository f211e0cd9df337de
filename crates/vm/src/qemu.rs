//! The `qemu` driver: one VM per profile directory.
//!
//! Owns these files in the profile directory (and nothing else there):
//! `disk.qcow2` (the persistent data disk, `/var/lib/minik` in the guest),
//! `agent.img` (the payload, rewritten at every start), `console.log` (serial
//! console of the current boot; the previous boot's is `console.prev.log`),
//! `qemu.pid`, `qmp.sock`, `vm.json` (see `state.rs`), `id_ed25519{,.pub}`,
//! `vmlinuz` + `initrd` (extracted from the ISO for direct kernel boot), and
//! `kvm-failed` (KVM showed no life once: later `auto` starts use TCG).
//!
//! QEMU runs daemonized (`-daemonize`), so the VM outlives the `minik`
//! process that started it; every later call finds it again through
//! `vm.json` and talks to it over QMP. Networking is user-mode: the API
//! server (guest 8443) and SSH (guest 22) are forwarded from random
//! 127.0.0.1 ports, more ports on demand with [`QemuDriver::forward`].
//!
//! Acceleration: `Accel::Auto` uses KVM when `/dev/kvm` can be opened, and
//! falls back to TCG when the guest shows no sign of life (the `/init`
//! marker on the console) within [`KVM_PROBE`]: on some hosts KVM guests
//! hang in the firmware. That is remembered in the profile (`kvm-failed`),
//! so only the first start pays for the probe.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::markers;
use crate::payload::{AgentPayload, PayloadError};
use crate::qmp::{Qmp, QmpError};
use crate::ssh::{self, SshError};
use crate::state::{self, VmRecord};
use crate::{GUEST_API_PORT, GUEST_SSH_PORT, GUEST_USERNET_IP};

/// How long a KVM guest gets to reach `/init` before `Accel::Auto` gives up
/// on KVM (a healthy KVM guest gets there in about a second).
pub const KVM_PROBE: Duration = Duration::from_secs(8);
/// The user-mode network's netdev id (used by `hostfwd_add`).
const NETDEV: &str = "n0";

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("{binary} is not installed; install it with: apt-get install {package}")]
    QemuMissing { binary: String, package: String },
    #[error(
        "the VM of {profile} is already running (qemu pid {pid}); stop it first or use it as it is"
    )]
    AlreadyRunning { profile: PathBuf, pid: u32 },
    #[error("the VM of {0} is not running; start it with `minik start`")]
    NotRunning(PathBuf),
    #[error("port {port} on 127.0.0.1 is already in use; free it or choose another port")]
    PortInUse { port: u16 },
    #[error("/dev/kvm is not usable ({reason}); use --accel tcg or --accel auto")]
    KvmUnavailable { reason: String },
    #[error("the VM died: {reason}\n--- last lines of {} ---\n{tail}", console.display())]
    Died {
        reason: String,
        console: PathBuf,
        tail: String,
    },
    #[error("the VM did not finish booting within {secs} s\n--- last lines of {} ---\n{tail}", console.display())]
    BootTimeout {
        secs: u64,
        console: PathBuf,
        tail: String,
    },
    #[error("qemu failed to start: {0}")]
    Launch(String),
    #[error("qemu-img failed: {0}")]
    Disk(String),
    #[error("{0}")]
    State(String),
    /// The libvirt driver could not reach libvirtd.
    #[error("libvirtd is not running: start it with `virtlogd -d; libvirtd -d` (as root) or `systemctl start libvirtd` ({detail})")]
    LibvirtNotRunning { detail: String },
    /// The libvirt driver is used on a host without libvirtd.
    #[error("libvirt is not installed: apt-get install -y libvirt-daemon-system libvirt-clients dnsmasq-base, then start it with `virtlogd -d; libvirtd -d` (as root)")]
    LibvirtMissing,
    /// A libvirt call failed.
    #[error("libvirt: {0}")]
    Libvirt(String),
    /// The VM runs but got no address from the network's DHCP server.
    #[error("the VM got no IP address from the {network} network's DHCP server within {secs} s\n--- last lines of {} ---\n{tail}", console.display())]
    NoAddress {
        network: String,
        secs: u64,
        console: PathBuf,
        tail: String,
    },
    #[error(transparent)]
    Qmp(#[from] QmpError),
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> VmError {
    let context = context.into();
    move |source| VmError::Io { context, source }
}

/// `--accel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accel {
    /// KVM when usable and alive, else TCG.
    #[default]
    Auto,
    Kvm,
    Tcg,
}

impl std::str::FromStr for Accel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Accel::Auto),
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            _ => Err(format!("unknown accelerator {s:?}: use auto, kvm or tcg")),
        }
    }
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Accel::Auto => "auto",
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// How QEMU boots the ISO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BootMode {
    /// QEMU loads the ISO's `boot/vmlinuz` + `boot/initrd` with the command
    /// line of its `isolinux.cfg` (~1.8 s faster to `/init` under TCG).
    #[default]
    Direct,
    /// SeaBIOS boots the CD through isolinux, like real hardware.
    Cdrom,
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// A verified ISO (see [`crate::ensure_iso`]).
    pub iso: PathBuf,
    pub cpus: u32,
    pub memory_mb: u32,
    /// Size of the data disk when it is created (an existing disk is kept).
    pub disk_mb: u64,
    pub accel: Accel,
    /// What the guest runs (the agent).
    pub payload: AgentPayload,
    /// Host ports for the API server and SSH; `None` picks free ones.
    pub api_port: Option<u16>,
    pub ssh_port: Option<u16>,
    /// Until `/init` reports ready (disk mounted, agent and sshd started).
    pub boot_timeout: Duration,
    pub boot: BootMode,
}

impl VmSpec {
    /// Defaults: 2 CPUs, 2048 MB, 20000 MB disk, `Accel::Auto`, random
    /// ports, 120 s boot timeout.
    pub fn new(iso: impl Into<PathBuf>, payload: AgentPayload) -> Self {
        VmSpec {
            iso: iso.into(),
            cpus: 2,
            memory_mb: 2048,
            disk_mb: 20000,
            accel: Accel::Auto,
            payload,
            api_port: None,
            ssh_port: None,
            boot_timeout: Duration::from_secs(120),
            boot: BootMode::Direct,
        }
    }
}

/// How to reach a running VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmInfo {
    /// 127.0.0.1 port forwarded to the agent's API server (guest 8443).
    pub api_port: u16,
    /// 127.0.0.1 port forwarded to dropbear (guest 22).
    pub ssh_port: u16,
    /// Where the host reaches forwarded ports: always 127.0.0.1.
    pub host_ip: String,
    /// The VM's own address on the user-mode network (10.0.2.15).
    pub guest_ip: String,
    pub pid: u32,
    /// The accelerator in use: `Kvm` or `Tcg`.
    pub accel: Accel,
    /// Set when `Accel::Auto` tried KVM and fell back to TCG: why.
    pub kvm_fallback: Option<String>,
    /// guest port -> host port for ports added with `forward`.
    pub forwards: BTreeMap<u16, u16>,
}

/// `status()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmState {
    /// No disk and no VM in this profile.
    NotCreated,
    Running,
    Paused,
    /// Powered off (or never started since the disk was made).
    Stopped,
    /// The QEMU process went away without the guest powering off.
    Died {
        console_tail: String,
    },
}

/// `stop()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// The guest powered itself off after the ACPI power button.
    Graceful,
    /// It did not within the timeout; QEMU was ended.
    Forced,
    WasNotRunning,
}

/// The qemu driver of one profile directory.
#[derive(Debug, Clone)]
pub struct QemuDriver {
    dir: PathBuf,
    qemu: String,
    qemu_img: String,
}

impl QemuDriver {
    /// A driver for the VM whose files live in `profile_dir`.
    pub fn new(profile_dir: impl Into<PathBuf>) -> Self {
        QemuDriver {
            dir: profile_dir.into(),
            qemu: "qemu-system-x86_64".into(),
            qemu_img: "qemu-img".into(),
        }
    }

    /// Uses other binaries than `qemu-system-x86_64` / `qemu-img` on PATH.
    pub fn with_binaries(mut self, qemu: &str, qemu_img: &str) -> Self {
        self.qemu = qemu.into();
        self.qemu_img = qemu_img.into();
        self
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
    fn pid_path(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }
    /// Present when `Accel::Auto` found KVM dead with this profile.
    fn kvm_failed_path(&self) -> PathBuf {
        self.dir.join("kvm-failed")
    }
    fn kernel_path(&self) -> PathBuf {
        self.dir.join("vmlinuz")
    }
    fn initrd_path(&self) -> PathBuf {
        self.dir.join("initrd")
    }

    /// Extracts the kernel, initramfs and command line from the ISO for
    /// direct boot; `None` (boot the CD instead) when the ISO lacks them.
    fn direct_boot_files(&self, iso: &Path) -> Option<String> {
        extract_direct_boot(iso, &self.kernel_path(), &self.initrd_path())
    }

    /// The QMP socket path: in the profile when short enough for a unix
    /// socket address, else under the temp dir, named after the profile.
    fn qmp_path(&self) -> PathBuf {
        let p = self.dir.join("qmp.sock");
        if p.as_os_str().len() < 100 {
            return p;
        }
        let mut h: u64 = 0xcbf29ce484222325;
        for b in self.dir.as_os_str().as_encoded_bytes() {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
        }
        std::env::temp_dir().join(format!("minik-qmp-{h:016x}.sock"))
    }

    /// The last `lines` lines of the serial console.
    pub fn console_tail(&self, lines: usize) -> String {
        tail(&self.console_log(), lines)
    }

    /// Boots the VM. Errors if it is already running.
    pub async fn start(&self, spec: &VmSpec) -> Result<VmInfo, VmError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(io_err(format!("cannot create {}", self.dir.display())))?;
        if let Some(rec) = self.live_record()? {
            return Err(VmError::AlreadyRunning {
                profile: self.dir.clone(),
                pid: rec.pid,
            });
        }
        state::remove(&self.dir);
        self.check_binaries()?;
        if !spec.iso.is_file() {
            return Err(VmError::Launch(format!(
                "ISO {} does not exist",
                spec.iso.display()
            )));
        }
        let pubkey = ssh::ensure_key(&self.dir)?;
        self.ensure_disk(spec.disk_mb)?;
        spec.payload.write_image(&self.payload_path(), &pubkey)?;

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

        let mut rec = self.launch(spec, accel).await?;
        if spec.accel == Accel::Auto && accel == Accel::Tcg && self.kvm_failed_path().exists() {
            rec.kvm_fallback = Some(
                "KVM did not start a guest earlier with this profile; using software emulation (TCG, slower)".into(),
            );
            state::save(&self.dir, &rec).map_err(VmError::State)?;
        }
        if let Some(probe) = probe {
            match self.wait_marker(&rec, markers::INIT_STARTED, probe).await {
                Ok(()) => {}
                Err(VmError::BootTimeout { .. }) => {
                    let reason = format!(
                        "KVM did not start a guest (no output from the guest's /init within {} s); using software emulation (TCG, slower)",
                        probe.as_secs()
                    );
                    tracing::warn!("{reason}");
                    self.kill().await?;
                    // remembered, so later starts skip the probe
                    let _ = std::fs::write(self.kvm_failed_path(), format!("{reason}\n"));
                    rec = self.launch(spec, Accel::Tcg).await?;
                    rec.kvm_fallback = Some(reason);
                    state::save(&self.dir, &rec).map_err(VmError::State)?;
                }
                Err(e) => {
                    self.cleanup_runtime();
                    return Err(e);
                }
            }
        }
        if let Err(e) = self
            .wait_marker(&rec, markers::INIT_READY, spec.boot_timeout)
            .await
        {
            if let VmError::BootTimeout { .. } = e {
                let _ = self.kill().await;
            } else {
                self.cleanup_runtime();
            }
            return Err(e);
        }
        Ok(info_of(&rec))
    }

    fn check_binaries(&self) -> Result<(), VmError> {
        if !on_path(&self.qemu) {
            return Err(VmError::QemuMissing {
                binary: self.qemu.clone(),
                package: "qemu-system-x86".into(),
            });
        }
        if !on_path(&self.qemu_img) {
            return Err(VmError::QemuMissing {
                binary: self.qemu_img.clone(),
                package: "qemu-utils".into(),
            });
        }
        Ok(())
    }

    fn ensure_disk(&self, disk_mb: u64) -> Result<(), VmError> {
        create_disk(&self.qemu_img, &self.disk_path(), disk_mb)
    }

    /// Starts QEMU daemonized; retries with other ports when a randomly
    /// chosen one was taken meanwhile.
    async fn launch(&self, spec: &VmSpec, accel: Accel) -> Result<VmRecord, VmError> {
        let console = self.console_log();
        if console.exists() {
            let _ = std::fs::rename(&console, self.dir.join("console.prev.log"));
        }
        let qmp = self.qmp_path();
        let _ = std::fs::remove_file(&qmp);
        let _ = std::fs::remove_file(self.pid_path());
        let direct = match spec.boot {
            BootMode::Direct => self.direct_boot_files(&spec.iso),
            BootMode::Cdrom => None,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let api_port = match spec.api_port {
                Some(p) => p,
                None => free_port()?,
            };
            let ssh_port = match spec.ssh_port {
                Some(p) => p,
                None => free_port_except(&[api_port])?,
            };
            let mut args = self.qemu_args(spec, accel, api_port, ssh_port, &qmp);
            if let Some(append) = direct.as_ref() {
                args.extend([
                    "-kernel".to_string(),
                    self.kernel_path().display().to_string(),
                    "-initrd".to_string(),
                    self.initrd_path().display().to_string(),
                    "-append".to_string(),
                    append.clone(),
                ]);
            }
            let out = Command::new(&self.qemu)
                .args(&args)
                .stdin(std::process::Stdio::null())
                .output()
                .map_err(io_err(format!("cannot run {}", self.qemu)))?;
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
                if err.contains("host forwarding rule") {
                    let fixed = [(spec.api_port, api_port), (spec.ssh_port, ssh_port)];
                    if let Some((_, p)) = fixed
                        .iter()
                        .find(|(s, p)| s.is_some() && err.contains(&format!(":{p}-")))
                    {
                        let _ = std::fs::remove_file(&qmp);
                        return Err(VmError::PortInUse { port: *p });
                    }
                    if attempt < 4 {
                        continue;
                    }
                }
                let _ = std::fs::remove_file(&qmp);
                let _ = std::fs::remove_file(self.pid_path());
                return Err(VmError::Launch(err));
            }
            let pid = read_pid(&self.pid_path()).ok_or_else(|| {
                VmError::Launch(format!(
                    "qemu started but wrote no pid to {}",
                    self.pid_path().display()
                ))
            })?;
            let rec = VmRecord {
                pid,
                qmp_socket: qmp.clone(),
                api_port,
                ssh_port,
                forwards: BTreeMap::new(),
                accel: accel.to_string(),
                kvm_fallback: None,
                iso: spec.iso.clone(),
                cpus: spec.cpus,
                memory_mb: spec.memory_mb,
                started_at_unix: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            };
            state::save(&self.dir, &rec).map_err(VmError::State)?;
            return Ok(rec);
        }
    }

    fn qemu_args(
        &self,
        spec: &VmSpec,
        accel: Accel,
        api_port: u16,
        ssh_port: u16,
        qmp: &Path,
    ) -> Vec<String> {
        let name = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "minik".into());
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let p = |p: &Path| p.display().to_string().replace(',', ",,");
        vec![
            "-name".into(),
            format!("minik-{name}"),
            "-M".into(),
            "pc".into(),
            "-accel".into(),
            accel.to_string(),
            "-m".into(),
            spec.memory_mb.to_string(),
            "-smp".into(),
            spec.cpus.to_string(),
            "-display".into(),
            "none".into(),
            "-vga".into(),
            "none".into(),
            "-monitor".into(),
            "none".into(),
            "-no-reboot".into(),
            "-boot".into(),
            "order=d".into(),
            "-drive".into(),
            format!("file={},media=cdrom,readonly=on", p(&spec.iso)),
            "-drive".into(),
            format!("if=none,id=data,file={},format=qcow2,discard=unmap", p(&self.disk_path())),
            "-device".into(),
            "virtio-blk-pci,drive=data,serial=minik-data".into(),
            "-drive".into(),
            format!("if=none,id=agent,file={},format=raw,readonly=on", p(&self.payload_path())),
            "-device".into(),
            "virtio-blk-pci,drive=agent,serial=minik-agent".into(),
            "-netdev".into(),
            format!(
                "user,id={NETDEV},hostfwd=tcp:127.0.0.1:{api_port}-:{GUEST_API_PORT},hostfwd=tcp:127.0.0.1:{ssh_port}-:{GUEST_SSH_PORT}"
            ),
            "-device".into(),
            format!("virtio-net-pci,netdev={NETDEV}"),
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", p(qmp)),
            "-serial".into(),
            format!("file:{}", p(&self.console_log())),
            "-pidfile".into(),
            self.pid_path().display().to_string(),
            "-daemonize".into(),
        ]
    }

    /// Waits until `marker` shows on the console, failing early when QEMU dies.
    async fn wait_marker(
        &self,
        rec: &VmRecord,
        marker: &str,
        timeout: Duration,
    ) -> Result<(), VmError> {
        let start = Instant::now();
        let console = self.console_log();
        loop {
            if std::fs::read(&console)
                .map(|b| String::from_utf8_lossy(&b).contains(marker))
                .unwrap_or(false)
            {
                return Ok(());
            }
            if !pid_alive(rec.pid) {
                state::remove(&self.dir);
                return Err(VmError::Died {
                    reason: format!("qemu (pid {}) exited while the VM was booting", rec.pid),
                    console: console.clone(),
                    tail: self.console_tail(25),
                });
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

    /// The record of a VM whose QEMU process is alive; a stale record
    /// (process gone) is left in place for `status` to report.
    fn live_record(&self) -> Result<Option<VmRecord>, VmError> {
        Ok(state::load(&self.dir)
            .map_err(VmError::State)?
            .filter(|r| pid_alive(r.pid)))
    }

    fn running_record(&self) -> Result<VmRecord, VmError> {
        self.live_record()?
            .ok_or_else(|| VmError::NotRunning(self.dir.clone()))
    }

    /// Ports and pid of the running VM, `None` when it is not running.
    pub fn info(&self) -> Result<Option<VmInfo>, VmError> {
        Ok(self.live_record()?.as_ref().map(info_of))
    }

    /// Running, paused, stopped, died or not created.
    pub async fn status(&self) -> Result<VmState, VmError> {
        let rec = state::load(&self.dir).map_err(VmError::State)?;
        match rec {
            Some(r) if pid_alive(r.pid) => {
                let paused = match Qmp::connect(&r.qmp_socket).await {
                    Ok(q) => q
                        .status()
                        .await
                        .map(|s| s.status == "paused")
                        .unwrap_or(false),
                    Err(_) => false,
                };
                Ok(if paused {
                    VmState::Paused
                } else {
                    VmState::Running
                })
            }
            Some(_) => {
                let t = self.console_tail(15);
                if t.contains("reboot: Power down") {
                    Ok(VmState::Stopped)
                } else {
                    Ok(VmState::Died { console_tail: t })
                }
            }
            None if self.disk_path().exists() => Ok(VmState::Stopped),
            None => Ok(VmState::NotCreated),
        }
    }

    /// ACPI power button (the guest stops the agent, syncs, powers off);
    /// after `timeout` QEMU is ended.
    pub async fn stop(&self, timeout: Duration) -> Result<StopOutcome, VmError> {
        let Some(rec) = self.live_record()? else {
            self.cleanup_runtime();
            return Ok(StopOutcome::WasNotRunning);
        };
        // The button is pressed again every few seconds: a press is lost
        // while the guest is still in the firmware or before acpid runs.
        let start = Instant::now();
        let mut pressed = false;
        while start.elapsed() < timeout {
            match Qmp::connect(&rec.qmp_socket).await {
                Ok(q) => pressed |= q.system_powerdown().await.is_ok(),
                Err(e) if !pressed => {
                    tracing::warn!("{e}; ending qemu");
                    break;
                }
                Err(_) => {}
            }
            let left = timeout.saturating_sub(start.elapsed());
            if wait_exit(rec.pid, left.min(Duration::from_secs(5))).await {
                self.cleanup_runtime();
                return Ok(StopOutcome::Graceful);
            }
        }
        self.kill().await?;
        Ok(StopOutcome::Forced)
    }

    /// Ends QEMU at once (QMP `quit`, then SIGTERM, then SIGKILL).
    pub async fn kill(&self) -> Result<(), VmError> {
        let rec = match state::load(&self.dir).map_err(VmError::State)? {
            Some(r) => r,
            None => match read_pid(&self.pid_path()) {
                Some(pid) => VmRecord {
                    pid,
                    qmp_socket: self.qmp_path(),
                    api_port: 0,
                    ssh_port: 0,
                    forwards: BTreeMap::new(),
                    accel: String::new(),
                    kvm_fallback: None,
                    iso: PathBuf::new(),
                    cpus: 0,
                    memory_mb: 0,
                    started_at_unix: 0,
                },
                None => return Ok(()),
            },
        };
        if pid_alive(rec.pid) {
            if let Ok(q) = Qmp::connect(&rec.qmp_socket).await {
                let _ = q.quit().await;
            }
            if !wait_exit(rec.pid, Duration::from_secs(3)).await {
                signal(rec.pid, libc::SIGTERM);
                if !wait_exit(rec.pid, Duration::from_secs(3)).await {
                    signal(rec.pid, libc::SIGKILL);
                    wait_exit(rec.pid, Duration::from_secs(3)).await;
                }
            }
        }
        self.cleanup_runtime();
        Ok(())
    }

    /// Ends the VM and removes the driver's files (disk, payload, logs,
    /// state, key). The profile directory goes too when it is then empty.
    pub async fn delete(&self) -> Result<(), VmError> {
        self.kill().await?;
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

    fn cleanup_runtime(&self) {
        state::remove(&self.dir);
        let _ = std::fs::remove_file(self.pid_path());
        let _ = std::fs::remove_file(self.qmp_path());
        let _ = std::fs::remove_file(self.dir.join("vm.json.tmp"));
    }

    /// Forwards a free 127.0.0.1 port to `guest_port` (TCP) and returns it;
    /// the same port again if that guest port is already forwarded.
    pub async fn forward(&self, guest_port: u16) -> Result<u16, VmError> {
        self.add_forward(guest_port, None).await
    }

    /// Forwards 127.0.0.1:`host_port` to `guest_port` (e.g. a NodePort on
    /// the same number); `PortInUse` when that host port is taken.
    pub async fn forward_on(&self, guest_port: u16, host_port: u16) -> Result<u16, VmError> {
        self.add_forward(guest_port, Some(host_port)).await
    }

    async fn add_forward(&self, guest_port: u16, want: Option<u16>) -> Result<u16, VmError> {
        let rec = self.running_record()?;
        let existing = match guest_port {
            GUEST_API_PORT => Some(rec.api_port),
            GUEST_SSH_PORT => Some(rec.ssh_port),
            _ => rec.forwards.get(&guest_port).copied(),
        };
        if let Some(p) = existing {
            if want.is_none_or(|w| w == p) {
                return Ok(p);
            }
        }
        let q = Qmp::connect(&rec.qmp_socket).await?;
        let mut last = None;
        for _ in 0..4 {
            let mut taken: Vec<u16> = rec.forwards.values().copied().collect();
            taken.extend([rec.api_port, rec.ssh_port]);
            let host = match want {
                Some(p) => p,
                None => free_port_except(&taken)?,
            };
            match q.hostfwd_add(NETDEV, host, guest_port).await {
                Ok(()) => {
                    // re-read: another process may have added a forward meanwhile
                    let mut fresh = self.running_record()?;
                    if let Some(old) = fresh
                        .forwards
                        .insert(guest_port, host)
                        .filter(|o| *o != host)
                    {
                        let _ = q.hostfwd_remove(NETDEV, old).await;
                    }
                    state::save(&self.dir, &fresh).map_err(VmError::State)?;
                    return Ok(host);
                }
                Err(e) if want.is_some() => {
                    tracing::debug!("hostfwd_add on {host}: {e}");
                    return Err(VmError::PortInUse { port: host });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .map(VmError::Qmp)
            .unwrap_or(VmError::PortInUse { port: 0 }))
    }

    /// Removes the forward of `guest_port` added by [`Self::forward`].
    pub async fn unforward(&self, guest_port: u16) -> Result<(), VmError> {
        let mut rec = self.running_record()?;
        let Some(host) = rec.forwards.remove(&guest_port) else {
            return Ok(());
        };
        let q = Qmp::connect(&rec.qmp_socket).await?;
        q.hostfwd_remove(NETDEV, host).await?;
        state::save(&self.dir, &rec).map_err(VmError::State)?;
        Ok(())
    }

    /// The forwards QEMU actually has, as (host port, guest port).
    pub async fn active_forwards(&self) -> Result<Vec<(u16, u16)>, VmError> {
        let rec = self.running_record()?;
        let q = Qmp::connect(&rec.qmp_socket).await?;
        Ok(q.hostfwds().await?)
    }

    /// An `ssh` command into the running VM as root (a shell when `args`
    /// is empty). Run it with `.status()`, `.output()` or exec it.
    pub fn ssh_command(&self, args: &[&str]) -> Result<Command, VmError> {
        let rec = self.running_record()?;
        if !ssh::client_available() {
            return Err(SshError::Missing { tool: "ssh" }.into());
        }
        Ok(ssh::command(&self.dir, rec.ssh_port, args))
    }
}

/// Extracts `boot/vmlinuz` and `boot/initrd` from the ISO to `kernel` and
/// `initrd` and returns the kernel command line of its `isolinux.cfg`;
/// `None` (boot the CD instead) when the ISO lacks them.
pub(crate) fn extract_direct_boot(iso: &Path, kernel: &Path, initrd: &Path) -> Option<String> {
    let attempt = || -> Result<String, crate::isofs::IsoFsError> {
        let mut img = crate::isofs::IsoImage::open(iso)?;
        let cfg = String::from_utf8_lossy(&img.read("isolinux/isolinux.cfg")?).to_string();
        img.extract("boot/vmlinuz", kernel)?;
        img.extract("boot/initrd", initrd)?;
        Ok(crate::isofs::isolinux_append(&cfg)
            .unwrap_or_else(|| "console=ttyS0,115200 quiet".into()))
    };
    match attempt() {
        Ok(append) => Some(append),
        Err(e) => {
            tracing::warn!("direct kernel boot not possible ({e}); booting the CD");
            None
        }
    }
}

/// Creates the qcow2 data disk `disk` of `disk_mb` MB with `qemu_img` unless
/// it exists (an existing disk keeps the cluster). Mode 0600.
pub(crate) fn create_disk(qemu_img: &str, disk: &Path, disk_mb: u64) -> Result<(), VmError> {
    if disk.exists() {
        return Ok(());
    }
    if !on_path(qemu_img) {
        return Err(VmError::QemuMissing {
            binary: qemu_img.to_string(),
            package: "qemu-utils".into(),
        });
    }
    let out = Command::new(qemu_img)
        .args(["create", "-q", "-f", "qcow2"])
        .arg(disk)
        .arg(format!("{disk_mb}M"))
        .output()
        .map_err(io_err(format!("cannot run {qemu_img}")))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(disk);
        return Err(VmError::Disk(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    // the cluster's state (secrets included) lives on it
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(disk, std::fs::Permissions::from_mode(0o600))
        .map_err(io_err(format!("cannot restrict {}", disk.display())))?;
    Ok(())
}

fn info_of(rec: &VmRecord) -> VmInfo {
    VmInfo {
        api_port: rec.api_port,
        ssh_port: rec.ssh_port,
        host_ip: "127.0.0.1".into(),
        guest_ip: GUEST_USERNET_IP.into(),
        pid: rec.pid,
        accel: if rec.accel == "kvm" {
            Accel::Kvm
        } else {
            Accel::Tcg
        },
        kvm_fallback: rec.kvm_fallback.clone(),
        forwards: rec.forwards.clone(),
    }
}

/// Can /dev/kvm be opened for reading and writing?
pub fn kvm_usable() -> Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(|_| ())
        .map_err(|e| format!("/dev/kvm: {e}"))
}

pub(crate) fn on_path(bin: &str) -> bool {
    if bin.contains('/') {
        return Path::new(bin).is_file();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Is `pid` a live (not zombie) QEMU process?
pub(crate) fn pid_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // state is the first field after the ")" that closes the command name
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z") | Some("X") | None) {
        return false;
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("qemu"))
        .unwrap_or(false)
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(p) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(p, sig);
        }
    }
}

async fn wait_exit(pid: u32, timeout: Duration) -> bool {
    let start = Instant::now();
    while pid_alive(pid) {
        if start.elapsed() >= timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

fn free_port() -> Result<u16, VmError> {
    free_port_except(&[])
}

fn free_port_except(avoid: &[u16]) -> Result<u16, VmError> {
    for _ in 0..16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(io_err("cannot find a free port on 127.0.0.1"))?;
        let port = l
            .local_addr()
            .map_err(io_err("cannot find a free port on 127.0.0.1"))?
            .port();
        if !avoid.contains(&port) {
            return Ok(port);
        }
    }
    Err(VmError::PortInUse { port: 0 })
}

pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&bytes).replace('\r', "");
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accel_parses() {
        assert_eq!("auto".parse::<Accel>().unwrap(), Accel::Auto);
        assert_eq!("tcg".parse::<Accel>().unwrap(), Accel::Tcg);
        assert!("hvf".parse::<Accel>().is_err());
    }

    #[test]
    fn qmp_path_stays_short() {
        let long = "/tmp/".to_string() + &"x".repeat(120);
        let d = QemuDriver::new(&long);
        assert!(d.qmp_path().as_os_str().len() < 100);
        let d = QemuDriver::new("/root/.minik/profiles/minik");
        assert_eq!(
            d.qmp_path(),
            PathBuf::from("/root/.minik/profiles/minik/qmp.sock")
        );
    }

    #[test]
    fn qemu_args_forward_api_and_ssh_and_escape_commas() {
        let d = QemuDriver::new("/p/a,b");
        let spec = VmSpec::new("/iso/minik.iso", AgentPayload::new(["x"]));
        let a = d
            .qemu_args(&spec, Accel::Tcg, 40000, 40001, Path::new("/p/q.sock"))
            .join(" ");
        assert!(
            a.contains("hostfwd=tcp:127.0.0.1:40000-:8443,hostfwd=tcp:127.0.0.1:40001-:22"),
            "{a}"
        );
        assert!(a.contains("file=/p/a,,b/disk.qcow2"), "{a}");
        assert!(a.contains("-accel tcg"));
        assert!(a.contains("serial=minik-data") && a.contains("serial=minik-agent"));
    }

    #[test]
    fn own_process_is_not_a_qemu() {
        assert!(!pid_alive(std::process::id()));
        assert!(!pid_alive(u32::MAX - 1));
    }

    #[test]
    fn tail_skips_blank_lines() {
        let p = std::env::temp_dir().join(format!("minik-vm-tail-{}", std::process::id()));
        std::fs::write(&p, "a\r\n\r\nb\nc\n\n").unwrap();
        assert_eq!(tail(&p, 2), "b\nc");
        std::fs::remove_file(&p).unwrap();
    }
}
