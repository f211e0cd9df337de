//! The `none` driver: the agent (`minik node`) runs as a daemon on this host.
//! Owns the agent's pid file and process; the host's network and container
//! state is owned by the kubelet and proxy crates (their `teardown`).

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::node;
use crate::profile::{Profile, ProfileConfig};

/// What the none driver needs on the host, and how to get it.
pub fn preflight() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the none driver runs containers on this host and needs root: run `sudo minik start --driver=none`");
    }
    let needed = [
        ("runc", "runc"),
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("busybox", "busybox-static"),
    ];
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(bin, _)| which(bin).is_none())
        .map(|(_, pkg)| *pkg)
        .collect();
    if !missing.is_empty() {
        bail!(
            "the none driver needs {}: install with `apt-get install -y {}`",
            missing.join(", "),
            missing.join(" ")
        );
    }
    Ok(())
}

pub fn which(bin: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into(), "/bin".into()])
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

/// The address other machines would reach this host on (the source address of
/// the default route), or 127.0.0.1 when there is no network at all.
pub fn default_node_ip() -> String {
    let probe = || -> std::io::Result<std::net::IpAddr> {
        let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
        // connect() on UDP only picks a route; nothing is sent.
        s.connect("10.255.255.254:9")?;
        Ok(s.local_addr()?.ip())
    };
    match probe() {
        Ok(ip) if !ip.is_unspecified() => ip.to_string(),
        _ => "127.0.0.1".to_string(),
    }
}

/// The agent's pid when it is alive.
pub fn agent_pid(profile: &Profile) -> Option<Pid> {
    let text = fs::read_to_string(profile.agent_pid_file()).ok()?;
    let pid = Pid::from_raw(text.trim().parse().ok()?);
    // Signal 0: exists and is ours. Check it is really our agent, not a reused pid.
    kill(pid, None).ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline);
    (cmdline.contains("node") && cmdline.contains(&*profile.node_root().to_string_lossy()))
        .then_some(pid)
}

/// Starts `minik node` detached from this terminal, logging to the profile.
pub fn spawn_agent(profile: &Profile, cfg: &ProfileConfig) -> Result<Pid> {
    let exe = std::env::current_exe().context("finding the minik binary")?;
    fs::create_dir_all(profile.logs_dir())?;
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(profile.agent_log())
        .with_context(|| format!("opening {}", profile.agent_log().display()))?;
    let mut cmd = Command::new(exe);
    cmd.arg("node")
        .arg("--root")
        .arg(profile.node_root())
        .arg("--listen")
        .arg(format!("0.0.0.0:{}", cfg.api_port))
        .arg("--certs")
        .arg(profile.certs_dir())
        .arg("--node-name")
        .arg(&cfg.name)
        .arg("--node-ip")
        .arg(&cfg.node_ip)
        .arg("--runtime")
        .arg(which("runc").unwrap_or_else(|| "runc".into()))
        .args(
            cfg.datastore
                .iter()
                .flat_map(|d| ["--datastore", d.as_str()]),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid() is async-signal-safe and touches no memory of ours; it
    // detaches the agent from our session so it outlives this command.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd.spawn().context("starting the minik agent")?;
    let pid = Pid::from_raw(child.id() as i32);
    fs::write(profile.agent_pid_file(), pid.to_string())?;
    Ok(pid)
}

/// SIGTERM, wait for the agent to stop its containers and flush, SIGKILL
/// after `timeout`.
pub async fn stop_agent(profile: &Profile, timeout: Duration) -> Result<bool> {
    let Some(pid) = agent_pid(profile) else {
        let _ = fs::remove_file(profile.agent_pid_file());
        return Ok(false);
    };
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if kill(pid, None).is_err() || is_zombie(pid) {
            let _ = fs::remove_file(profile.agent_pid_file());
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = kill(pid, Signal::SIGKILL);
    let _ = fs::remove_file(profile.agent_pid_file());
    Ok(true)
}

fn is_zombie(pid: Pid) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

/// The node roots of every `minik node` agent running on this host, whoever
/// started it (other profiles, other MINIK_HOMEs): the none driver's bridge,
/// nft table and ports are host-wide.
pub fn running_agent_roots() -> Vec<String> {
    let mut roots = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return roots;
    };
    for e in entries.flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(raw) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_agent = args.first().is_some_and(|a| a.ends_with("minik"))
            && args.get(1).is_some_and(|a| a == "node");
        if is_agent
            && !is_zombie(Pid::from_raw(
                e.file_name().to_string_lossy().parse().unwrap_or(0),
            ))
        {
            if let Some(i) = args.iter().position(|a| a == "--root") {
                if let Some(root) = args.get(i + 1) {
                    roots.push(root.clone());
                }
            }
        }
    }
    roots
}

/// Removes what the agent made on this host: containers, pod network
/// namespaces, the bridge, the nft table. Safe to run twice. Leaves the
/// host-wide pieces alone while another cluster's agent is running on it.
pub fn teardown(profile: &Profile, cfg: &ProfileConfig) -> Result<()> {
    let ours = profile.node_root().display().to_string();
    if let Some(other) = running_agent_roots().into_iter().find(|r| *r != ours) {
        crate::ui::info(format!(
            "another minik cluster runs on this host ({other}); its bridge and service rules stay"
        ));
        return Ok(());
    }
    let args = node::NodeArgs {
        root: profile.node_root(),
        listen: format!("0.0.0.0:{}", cfg.api_port).parse()?,
        certs: profile.certs_dir(),
        node_name: cfg.name.clone(),
        node_ip: cfg.node_ip.clone(),
        runtime: which("runc").unwrap_or_else(|| "runc".into()),
        kubelet_port: 10250,
        datastore: None,
    };
    minik_kubelet::teardown(&node::kubelet_config(&args))
        .context("removing containers and pod networks")?;
    minik_proxy::teardown(&node::proxy_config(&cfg.node_ip)).context("removing service rules")?;
    Ok(())
}

/// The last lines of the agent's log, for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
