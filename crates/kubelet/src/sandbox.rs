//! The node's container machinery without the API: owns `<root>/pods/<uid>/`
//! (pod sandbox = network namespace + IP + /etc files; containers = overlay
//! rootfs + OCI bundle + logs) and drives the OCI runtime. Pod workers call
//! it with already-resolved inputs; integration tests call it directly.
//!
//! ```text
//! <root>/pods/<uid>/meta.json                 namespace, name, grace period
//! <root>/pods/<uid>/sandbox.json              netns, veth, ip
//! <root>/pods/<uid>/etc/{hosts,resolv.conf,hostname}
//! <root>/pods/<uid>/volumes/<name>/           emptyDir, configMap, secret contents
//! <root>/pods/<uid>/containers/<name>/        bundle: config.json, rootfs/, upper/, work/,
//!                                             <restartCount>.log, init.pid, container.json
//! <root>/pods/.ipam/, <root>/pods/.runc/      IP allocations, runtime state
//! ```

use crate::images::{ImageError, ImageRecord, ImageStore};
use crate::logs::LogRegistry;
use crate::network::{self, Cidr, Ipam, NetError};
use crate::runtime::{self, Runtime, RuntimeError};
use crate::spec::{self, BindMount, SpecInput};
use crate::KubeletConfig;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Container;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("pod state I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid container spec: {0}")]
    Spec(String),
    #[error("the node is stopping; containers are not started")]
    Stopping,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Identity of a pod on this node (what is persisted in meta.json).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodMeta {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub host_network: bool,
    /// `ClusterFirst` (cluster DNS) or `Default` (host resolv.conf).
    #[serde(default)]
    pub dns_policy: String,
    #[serde(default)]
    pub host_aliases: Vec<(String, Vec<String>)>,
    #[serde(default = "default_grace")]
    pub grace_seconds: i64,
    /// `spec.hostname` (defaults to the pod name) and `spec.subdomain`.
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub subdomain: Option<String>,
}

impl PodMeta {
    /// The containers' hostname: `spec.hostname`, else the pod name.
    pub fn host_name(&self) -> String {
        self.hostname
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| self.name.clone())
    }
}

fn default_grace() -> i64 {
    30
}

/// A ready pod sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sandbox {
    pub uid: String,
    pub netns: Option<String>,
    pub veth: Option<String>,
    pub ip: String,
    pub dir: PathBuf,
}

/// Resolved inputs for one container start (beyond the k8s `Container`).
#[derive(Debug, Clone, Default)]
pub struct ContainerInputs {
    pub env: Vec<(String, String)>,
    pub binds: Vec<BindMount>,
    pub restart_count: i32,
    /// The pod-level security context (container-level fields win).
    pub pod_security: PodSecurity,
}

/// Pod-level `securityContext` fields that reach each container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodSecurity {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub fs_group: Option<i64>,
    pub supplemental_groups: Vec<i64>,
    pub sysctls: Vec<(String, String)>,
}

impl PodSecurity {
    pub fn from_pod(spec: &k8s_openapi::api::core::v1::PodSpec) -> Self {
        let Some(sc) = spec.security_context.as_ref() else {
            return PodSecurity::default();
        };
        PodSecurity {
            run_as_user: sc.run_as_user,
            run_as_group: sc.run_as_group,
            fs_group: sc.fs_group,
            supplemental_groups: sc.supplemental_groups.clone().unwrap_or_default(),
            sysctls: sc
                .sysctls
                .iter()
                .flatten()
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect(),
        }
    }
}

/// A started container.
#[derive(Debug, Clone)]
pub struct RunningContainer {
    pub name: String,
    pub id: String,
    pub pid: i32,
    pub started_at: DateTime<Utc>,
    pub log_path: PathBuf,
    pub image: ImageRecord,
}

/// Sent when a container's init process exits.
#[derive(Debug, Clone)]
pub struct ExitInfo {
    pub name: String,
    pub id: String,
    /// `None` when the process was not our child (code unknown).
    pub exit_code: Option<i32>,
    pub finished_at: DateTime<Utc>,
}

/// What is written next to a bundle so `shutdown`/`teardown` can find the
/// container without the API or the in-memory state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerFile {
    pub id: String,
    pub pid: i32,
}

/// The node's pod machinery.
#[derive(Clone)]
pub struct Machinery {
    pub cfg: KubeletConfig,
    pub images: ImageStore,
    pub runtime: Runtime,
    pub ipam: Ipam,
    pub cidr: Cidr,
    pub logs: LogRegistry,
    pub pods_dir: PathBuf,
    alloc_lock: Arc<std::sync::Mutex<()>>,
}

/// Kubernetes ids for runtime containers must be unique per restart.
pub fn container_id(uid: &str, name: &str, restart_count: i32) -> String {
    format!("{uid}-{name}-{restart_count}")
}

pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            // state is the field after the parenthesised comm
            let state = s
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}

impl Machinery {
    pub fn new(cfg: &KubeletConfig) -> Result<Self, SandboxError> {
        let pods_dir = cfg.root_dir.join("pods");
        let cidr = Cidr::parse(&cfg.pod_cidr)?;
        Ok(Machinery {
            cfg: cfg.clone(),
            images: ImageStore::new(&cfg.root_dir),
            runtime: Runtime::new(&cfg.runtime, &pods_dir),
            ipam: Ipam::new(&pods_dir, cidr),
            cidr,
            logs: LogRegistry::default(),
            pods_dir: pods_dir.clone(),
            alloc_lock: Arc::new(std::sync::Mutex::new(())),
        })
    }

    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.pods_dir.join(uid)
    }

    pub fn container_dir(&self, uid: &str, name: &str) -> PathBuf {
        self.pod_dir(uid).join("containers").join(name)
    }

    /// Creates (or re-creates after a restart) the pod's network and files.
    /// Blocking: call from `spawn_blocking`.
    pub fn create_sandbox(&self, meta: &PodMeta) -> Result<Sandbox, SandboxError> {
        let dir = self.pod_dir(&meta.uid);
        let etc = dir.join("etc");
        std::fs::create_dir_all(&etc).map_err(io_err(&etc))?;
        let meta_path = dir.join("meta.json");
        std::fs::write(
            &meta_path,
            serde_json::to_vec_pretty(meta).unwrap_or_default(),
        )
        .map_err(io_err(&meta_path))?;
        let sb = if meta.host_network {
            Sandbox {
                uid: meta.uid.clone(),
                netns: None,
                veth: None,
                ip: self.cfg.node_ip.clone(),
                dir: dir.clone(),
            }
        } else {
            let ip: Ipv4Addr = {
                let _g = self.alloc_lock.lock().unwrap_or_else(|p| p.into_inner());
                self.ipam.allocate(&meta.uid)?
            };
            network::ensure_bridge(&self.cfg.bridge, &self.cidr)?;
            let (netns, veth) = network::names_for(&self.cfg.bridge, &meta.uid);
            // Record before plumbing so a failure half-way is still cleaned up.
            let sb = Sandbox {
                uid: meta.uid.clone(),
                netns: Some(netns.clone()),
                veth: Some(veth.clone()),
                ip: ip.to_string(),
                dir: dir.clone(),
            };
            write_json(&dir.join("sandbox.json"), &sb)?;
            network::setup_pod_network(&netns, &veth, ip, &self.cfg.bridge, &self.cidr)?;
            sb
        };
        write_json(&dir.join("sandbox.json"), &sb)?;
        let hostname = meta.host_name();
        let hosts = if meta.host_network {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            let names = match meta.subdomain.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => format!(
                    "{hostname}.{sub}.{}.svc.{}\t{hostname}",
                    meta.namespace, self.cfg.cluster_domain
                ),
                None => hostname.clone(),
            };
            spec::hosts_file(&sb.ip, &names, &meta.host_aliases)
        };
        let resolv = if meta.dns_policy == "Default"
            || (meta.host_network && meta.dns_policy != "ClusterFirstWithHostNet")
        {
            std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
        } else {
            spec::resolv_conf(
                &self.cfg.cluster_dns,
                &meta.namespace,
                &self.cfg.cluster_domain,
            )
        };
        for (f, c) in [
            ("hosts", hosts),
            ("resolv.conf", resolv),
            ("hostname", format!("{hostname}\n")),
        ] {
            let p = etc.join(f);
            std::fs::write(&p, c).map_err(io_err(&p))?;
        }
        Ok(sb)
    }

    /// Removes the pod's network (netns, veth). Keeps the IP reservation and files.
    pub fn stop_sandbox_network(&self, uid: &str) {
        if let Some(sb) = read_json::<Sandbox>(&self.pod_dir(uid).join("sandbox.json")) {
            if let (Some(ns), Some(veth)) = (&sb.netns, &sb.veth) {
                network::teardown_pod_network(ns, veth);
            }
        }
    }

    /// Removes everything of a pod: containers, mounts, network, IP, files.
    /// Blocking.
    pub fn remove_pod(&self, uid: &str) {
        let dir = self.pod_dir(uid);
        for (id, _) in self.containers_of(uid) {
            let _ = self.runtime.delete(&id);
        }
        for m in runtime::mounts_under(&dir) {
            runtime::unmount(&m);
        }
        self.stop_sandbox_network(uid);
        self.ipam.release(uid);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Runtime containers recorded for a pod: (id, pid).
    pub fn containers_of(&self, uid: &str) -> Vec<(String, i32)> {
        let base = self.pod_dir(uid).join("containers");
        let Ok(rd) = std::fs::read_dir(&base) else {
            return vec![];
        };
        rd.flatten()
            .filter_map(|e| read_json::<ContainerFile>(&e.path().join("container.json")))
            .map(|c| (c.id, c.pid))
            .collect()
    }

    /// Pod UIDs with state on disk.
    pub fn pods_on_disk(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(&self.pods_dir) else {
            return vec![];
        };
        rd.flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect()
    }

    pub fn pod_meta(&self, uid: &str) -> Option<PodMeta> {
        read_json(&self.pod_dir(uid).join("meta.json"))
    }

    /// Builds the bundle and starts one container. Exits are reported on
    /// `exits`. Must be called inside a tokio runtime.
    pub async fn start_container(
        &self,
        meta: &PodMeta,
        sandbox: &Sandbox,
        image: &ImageRecord,
        c: &Container,
        inputs: ContainerInputs,
        exits: mpsc::UnboundedSender<ExitInfo>,
    ) -> Result<RunningContainer, SandboxError> {
        let cdir = self.container_dir(&meta.uid, &c.name);
        let id = container_id(&meta.uid, &c.name, inputs.restart_count);
        let this = self.clone();
        let spec_input = self.spec_input(meta, sandbox, image, c, &inputs)?;
        let cdir2 = cdir.clone();
        let lowers = self.images.lowerdirs(image);
        let id2 = id.clone();
        // Filesystem work: fresh upper/work, overlay, config.json.
        tokio::task::spawn_blocking(move || -> Result<(), SandboxError> {
            let _ = this.runtime.delete(&id2);
            let rootfs = cdir2.join("rootfs");
            runtime::unmount(&rootfs);
            for d in ["upper", "work"] {
                let p = cdir2.join(d);
                let _ = std::fs::remove_dir_all(&p);
            }
            runtime::mount_overlay(&lowers, &cdir2.join("upper"), &cdir2.join("work"), &rootfs)?;
            let cfg = spec::oci_spec(&spec_input);
            let p = cdir2.join("config.json");
            std::fs::write(&p, serde_json::to_vec_pretty(&cfg).unwrap_or_default())
                .map_err(io_err(&p))?;
            Ok(())
        })
        .await
        .map_err(|e| SandboxError::Spec(format!("bundle task failed: {e}")))??;

        let term_log = cdir.join("termination-log");
        std::fs::write(&term_log, b"").map_err(io_err(&term_log))?;
        // Any user the container runs as may write its termination message.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&term_log, std::fs::Permissions::from_mode(0o666))
                .map_err(io_err(&term_log))?;
        }
        // Keep the current and the previous log only.
        for (n, p) in crate::logs::log_files(&cdir) {
            if n + 1 < inputs.restart_count as u32 {
                let _ = std::fs::remove_file(p);
            }
        }
        if crate::is_stopping(&self.cfg.root_dir) {
            let rootfs = cdir.join("rootfs");
            let _ = tokio::task::spawn_blocking(move || runtime::unmount(&rootfs)).await;
            return Err(SandboxError::Stopping);
        }
        let log_path = cdir.join(format!("{}.log", inputs.restart_count));
        let _ = std::fs::remove_file(&log_path);
        // `tty: true`: runc hands us the pty master; attach.rs keeps it and
        // copies its output to the log (no pipes, no stdout/stderr split).
        let tty = c.tty.unwrap_or(false);
        let pipes = if tty {
            None
        } else {
            let (out_w, err_w, _pumps) =
                runtime::spawn_log_pumps(log_path.clone(), self.logs.clone())?;
            Some((out_w, err_w))
        };
        // `stdin: true`: a pipe held open for `kubectl attach -i` (attach.rs).
        let stdin_r = crate::attach::open_stdin(
            &cdir,
            c.stdin.unwrap_or(false) && !tty,
            c.stdin_once.unwrap_or(false),
        )
        .map_err(io_err(&cdir))?;
        let rt = self.runtime.clone();
        let id2 = id.clone();
        let cdir2 = cdir.clone();
        let created = tokio::task::spawn_blocking(
            move || -> Result<(i32, Option<std::os::fd::OwnedFd>), SandboxError> {
                let (pid, master) = match pipes {
                    Some((out_w, err_w)) => (
                        rt.create_with_stdin(&id2, &cdir2, stdin_r, out_w, err_w)?,
                        None,
                    ),
                    None => {
                        let (pid, m) = rt.create_with_console(&id2, &cdir2)?;
                        (pid, Some(m))
                    }
                };
                let f = ContainerFile {
                    id: id2.clone(),
                    pid,
                };
                write_json(&cdir2.join("container.json"), &f)?;
                Ok((pid, master))
            },
        )
        .await
        .map_err(|e| SandboxError::Spec(format!("create task failed: {e}")));
        let created = match created {
            Ok(Ok((pid, Some(master)))) => crate::attach::keep_console(
                &cdir,
                master,
                log_path.clone(),
                self.logs.clone(),
                c.stdin.unwrap_or(false),
                c.stdin_once.unwrap_or(false),
            )
            .map(|()| pid)
            .map_err(io_err(&log_path)),
            Ok(Ok((pid, None))) => Ok(pid),
            Ok(Err(e)) | Err(e) => Err(e),
        };
        let pid = match created {
            Ok(pid) => pid,
            Err(e) => {
                self.logs.set_active(&log_path, false);
                let rt = self.runtime.clone();
                let rootfs = cdir.join("rootfs");
                let id2 = id.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    let _ = rt.delete(&id2);
                    runtime::unmount(&rootfs);
                })
                .await;
                return Err(e);
            }
        };
        // Watch the exit before `start`, so even an instant exit is seen.
        // A plain thread, not `spawn_blocking`: a runtime waits for its
        // blocking tasks at shutdown, and this one lives as long as the container.
        let name = c.name.clone();
        let id2 = id.clone();
        let waiter = std::thread::Builder::new()
            .name(format!("wait-{pid}"))
            .spawn(move || {
                let code = runtime::wait_exit(pid);
                let _ = exits.send(ExitInfo {
                    name,
                    id: id2,
                    exit_code: code,
                    finished_at: Utc::now(),
                });
            });
        if let Err(e) = waiter {
            let _ = self.runtime.delete(&id);
            return Err(SandboxError::Spec(format!(
                "cannot start the exit watcher thread: {e}"
            )));
        }
        let rt = self.runtime.clone();
        let id2 = id.clone();
        let started = tokio::task::spawn_blocking(move || rt.start(&id2))
            .await
            .map_err(|e| SandboxError::Spec(format!("start task failed: {e}")))?;
        if let Err(e) = started {
            let rt = self.runtime.clone();
            let id2 = id.clone();
            let _ = tokio::task::spawn_blocking(move || rt.delete(&id2)).await;
            return Err(e.into());
        }
        if crate::is_stopping(&self.cfg.root_dir) {
            // `shutdown` may have listed the containers before this one existed.
            let rt = self.runtime.clone();
            let id2 = id.clone();
            let _ = tokio::task::spawn_blocking(move || {
                let _ = rt.kill(&id2, "KILL");
            })
            .await;
        }
        Ok(RunningContainer {
            name: c.name.clone(),
            id,
            pid,
            started_at: Utc::now(),
            log_path,
            image: image.clone(),
        })
    }

    fn spec_input(
        &self,
        meta: &PodMeta,
        sandbox: &Sandbox,
        image: &ImageRecord,
        c: &Container,
        inputs: &ContainerInputs,
    ) -> Result<SpecInput, SandboxError> {
        let vars: BTreeMap<String, String> = inputs.env.iter().cloned().collect();
        let exp = |v: &Option<Vec<String>>| -> Vec<String> {
            v.as_deref()
                .unwrap_or_default()
                .iter()
                .map(|s| spec::expand(s, &vars))
                .collect()
        };
        let args = spec::resolve_argv(
            &image.config.entrypoint,
            &image.config.cmd,
            &exp(&c.command),
            &exp(&c.args),
        );
        if args.is_empty() {
            return Err(SandboxError::Spec(format!(
                "container {:?} has no command: the image defines none; set `command` in the pod spec",
                c.name
            )));
        }
        let mut env = spec::merge_env(&image.config.env, &inputs.env);
        if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
            env.push(format!("HOSTNAME={}", meta.name));
        }
        let cwd = c
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| image.config.working_dir.clone());
        let sc = c.security_context.clone().unwrap_or_default();
        let ps = &inputs.pod_security;
        let (img_uid, img_gid) = parse_user(&image.config.user);
        let user_override = sc.run_as_user.or(ps.run_as_user);
        let uid = user_override.map(|u| u as u32).unwrap_or(img_uid);
        let gid = sc
            .run_as_group
            .or(ps.run_as_group)
            .map(|g| g as u32)
            .unwrap_or(if user_override.is_some() { 0 } else { img_gid });
        let mut additional_gids: Vec<u32> =
            ps.supplemental_groups.iter().map(|g| *g as u32).collect();
        if let Some(g) = ps.fs_group {
            additional_gids.push(g as u32);
        }
        additional_gids.sort_unstable();
        additional_gids.dedup();
        let limits = c
            .resources
            .as_ref()
            .and_then(|r| r.limits.clone())
            .unwrap_or_default();
        let requests = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.clone())
            .unwrap_or_default();
        let mem = limits
            .get("memory")
            .and_then(|q| spec::parse_quantity(&q.0).ok())
            .map(|v| v as i64);
        let cpu =
            |m: &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>| {
                m.get("cpu")
                    .and_then(|q| spec::parse_quantity(&q.0).ok())
                    .map(|v| (v * 1000.0).round() as i64)
            };
        let etc = sandbox.dir.join("etc");
        // A container that mounts its own /etc/hosts (etc.) keeps it.
        let mut binds: Vec<BindMount> = ["hosts", "resolv.conf", "hostname"]
            .into_iter()
            .map(|f| BindMount {
                source: etc.join(f),
                destination: format!("/etc/{f}"),
                readonly: false,
            })
            .filter(|b| !inputs.binds.iter().any(|o| o.destination == b.destination))
            .collect();
        // terminationMessagePath: a file the container may write on its way out.
        let term_path = c
            .termination_message_path
            .clone()
            .filter(|p| p.starts_with('/'))
            .unwrap_or_else(|| "/dev/termination-log".into());
        binds.push(BindMount {
            source: self
                .container_dir(&meta.uid, &c.name)
                .join("termination-log"),
            destination: term_path,
            readonly: false,
        });
        binds.extend(inputs.binds.iter().cloned());
        let caps = sc.capabilities.clone().unwrap_or_default();
        Ok(SpecInput {
            args,
            env,
            cwd,
            hostname: meta.host_name(),
            netns_path: sandbox.netns.as_deref().map(network::netns_path),
            cgroups_path: format!(
                "/minik/{}",
                container_id(&meta.uid, &c.name, inputs.restart_count)
            ),
            binds,
            uid,
            gid,
            additional_gids,
            no_new_privileges: sc.allow_privilege_escalation == Some(false),
            sysctls: ps.sysctls.clone(),
            memory_limit: mem,
            cpu_limit_millis: cpu(&limits),
            cpu_request_millis: cpu(&requests),
            readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
            privileged: sc.privileged.unwrap_or(false),
            add_caps: caps.add.unwrap_or_default(),
            drop_caps: caps.drop.unwrap_or_default(),
            tty: c.tty.unwrap_or(false),
        })
    }

    /// Graceful stop: SIGTERM, wait up to `grace`, SIGKILL, wait for the
    /// process to go. Does not delete the runtime container.
    pub async fn stop_container(&self, id: &str, pid: i32, grace: Duration) {
        let rt = self.runtime.clone();
        let id2 = id.to_string();
        let _ = tokio::task::spawn_blocking(move || rt.kill(&id2, "TERM")).await;
        let deadline = tokio::time::Instant::now() + grace;
        while pid_alive(pid) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if pid_alive(pid) {
            let rt = self.runtime.clone();
            let id2 = id.to_string();
            let _ = tokio::task::spawn_blocking(move || rt.kill(&id2, "KILL")).await;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while pid_alive(pid) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// `terminated.message`: what the container wrote to its termination
    /// message file (≤ 4 KiB), or with `FallbackToLogsOnError` and a failure,
    /// the last 80 log lines (≤ 2 KiB), as the kubelet does.
    pub fn termination_message(
        &self,
        uid: &str,
        c: &Container,
        exit_code: i32,
        log_path: &Path,
    ) -> Option<String> {
        let cdir = self.container_dir(uid, &c.name);
        let mut msg = std::fs::read(cdir.join("termination-log")).unwrap_or_default();
        msg.truncate(4096);
        let msg = String::from_utf8_lossy(&msg).into_owned();
        if !msg.is_empty() {
            return Some(msg);
        }
        if exit_code != 0
            && c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
        {
            let data = std::fs::read_to_string(log_path).unwrap_or_default();
            let opts = crate::logs::LogOptions {
                tail_lines: Some(80),
                limit_bytes: None,
                ..Default::default()
            };
            let text = crate::logs::render(&data, &opts, Utc::now());
            let start = text.len().saturating_sub(2048);
            let mut cut = start;
            while !text.is_char_boundary(cut) {
                cut += 1;
            }
            let tail = text[cut..].to_string();
            return (!tail.is_empty()).then_some(tail);
        }
        None
    }

    /// Whether the kernel OOM-killed a process of this container (read
    /// before `remove_container`, which deletes the cgroup). Looks at cgroup
    /// v1 `memory.oom_control` and v2 `memory.events`.
    pub fn oom_killed(&self, uid: &str, name: &str, restart_count: i32) -> bool {
        let id = container_id(uid, name, restart_count);
        let candidates = [
            format!("/sys/fs/cgroup/memory/minik/{id}/memory.oom_control"),
            format!("/sys/fs/cgroup/minik/{id}/memory.events"),
            format!("/sys/fs/cgroup/unified/minik/{id}/memory.events"),
        ];
        candidates.iter().any(|p| {
            std::fs::read_to_string(p).is_ok_and(|s| {
                s.lines().any(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .is_some_and(|n| n > 0)
                })
            })
        })
    }

    /// Deletes the runtime container and unmounts its rootfs (logs stay).
    pub fn remove_container(&self, uid: &str, name: &str, id: &str) {
        let _ = self.runtime.delete(id);
        let cdir = self.container_dir(uid, name);
        runtime::unmount(&cdir.join("rootfs"));
        let _ = std::fs::remove_dir_all(cdir.join("upper"));
        let _ = std::fs::remove_dir_all(cdir.join("work"));
        let _ = std::fs::remove_file(cdir.join("container.json"));
    }

    /// Kills and deletes every runtime container and unmounts everything
    /// under `<root>/pods` (leftovers of an earlier kubelet process). Pod
    /// directories, logs and IP reservations are kept.
    pub fn cleanup_leftovers(&self) {
        for id in self.runtime.list() {
            let _ = self.runtime.kill(&id, "KILL");
            let _ = self.runtime.delete(&id);
        }
        for uid in self.pods_on_disk() {
            let base = self.pod_dir(&uid).join("containers");
            if let Ok(rd) = std::fs::read_dir(&base) {
                for e in rd.flatten() {
                    let _ = std::fs::remove_file(e.path().join("container.json"));
                }
            }
            self.stop_sandbox_network(&uid);
        }
        for m in runtime::mounts_under(&self.pods_dir) {
            runtime::unmount(&m);
        }
    }
}

/// `uid[:gid]` numeric users from an image config; names resolve to root.
pub fn parse_user(user: &str) -> (u32, u32) {
    let (u, g) = user.split_once(':').unwrap_or((user, ""));
    let uid = u.parse().unwrap_or(0);
    let gid = g
        .parse()
        .unwrap_or(if u.parse::<u32>().is_ok() { uid } else { 0 });
    (uid, gid)
}

pub fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<(), SandboxError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(v).unwrap_or_default()).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let data = std::fs::read(path).ok()?;
    serde_json::from_slice(&data).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users() {
        assert_eq!(parse_user(""), (0, 0));
        assert_eq!(parse_user("1000"), (1000, 1000));
        assert_eq!(parse_user("1000:50"), (1000, 50));
        assert_eq!(parse_user("nobody"), (0, 0));
    }

    #[test]
    fn ids_unique_per_restart() {
        assert_ne!(container_id("u", "c", 0), container_id("u", "c", 1));
    }

    #[test]
    fn pid_liveness() {
        assert!(pid_alive(std::process::id() as i32));
        assert!(!pid_alive(i32::MAX));
    }
}
