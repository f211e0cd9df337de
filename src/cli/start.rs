//! `minik start`: create or resume the cluster (in a VM, or on this host with
//! `--driver=none`), wait until its node is Ready, and point kubectl at it.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;

use crate::api::ApiClient;
use crate::driver::{self, none, qemu, HostState};
use crate::profile::{Profile, ProfileConfig};
use crate::{certs, kubeconfig, ui};

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Where the cluster runs: qemu (a VM) or none (this host, as root).
    #[arg(long)]
    pub driver: Option<String>,
    /// CPUs for the VM.
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    /// Memory for the VM in MB.
    #[arg(long, default_value_t = 2048)]
    pub memory: u64,
    /// Disk size for the VM in MB.
    #[arg(long = "disk-size", default_value_t = 20000)]
    pub disk_size: u64,
    /// Where to get the ISO: https://, http:// or file:// (a .sha256 must sit beside it).
    #[arg(long = "iso-url")]
    pub iso_url: Option<String>,
    /// VM accelerator: auto (KVM if it works, else software), kvm or tcg.
    #[arg(long, value_parser = ["auto", "kvm", "tcg"])]
    pub accel: Option<String>,
    /// Port of the API server on 127.0.0.1 (none: default 8443; qemu: a free one).
    #[arg(long = "apiserver-port")]
    pub apiserver_port: Option<u16>,
    /// Keep the cluster state in a real etcd (`etcd://127.0.0.1:2379`)
    /// instead of the embedded store.
    #[arg(long)]
    pub datastore: Option<String>,
    /// Addons to enable once the node is Ready, comma separated
    /// (`--addons=dashboard`); remembered in the profile.
    #[arg(long, value_delimiter = ',')]
    pub addons: Vec<String>,
}

/// The profile's config: loaded and checked against the flags, or new.
fn resolve_config(profile: &Profile, args: &StartArgs) -> Result<ProfileConfig> {
    if profile.exists() {
        let mut cfg = profile.load()?;
        if let Some(d) = &args.driver {
            if *d != cfg.driver {
                bail!(
                    "profile \"{}\" was created with --driver={}; start it with that driver, or `minik delete -p {}` first",
                    profile.name, cfg.driver, profile.name
                );
            }
        }
        if args.datastore.is_some() && args.datastore != cfg.datastore {
            bail!(
                "profile \"{}\" keeps its state in {}; the datastore cannot change after creation (`minik delete -p {}` first)",
                profile.name,
                cfg.datastore.as_deref().unwrap_or("the embedded store"),
                profile.name
            );
        }
        if args.iso_url.is_some() {
            cfg.iso_url = args.iso_url.clone();
        }
        if args.accel.is_some() {
            cfg.accel = args.accel.clone();
        }
        return Ok(cfg);
    }
    let driver = args
        .driver
        .clone()
        .unwrap_or_else(|| driver::DEFAULT_DRIVER.into());
    driver::validate(&driver)?;
    let none = driver == "none";
    Ok(ProfileConfig {
        name: profile.name.clone(),
        api_port: args.apiserver_port.unwrap_or(if none { 8443 } else { 0 }),
        // qemu's user-mode network always gives the guest 10.0.2.15; libvirt's
        // address is reserved in `run`.
        node_ip: if none {
            none::default_node_ip()
        } else {
            "10.0.2.15".into()
        },
        driver,
        cpus: args.cpus,
        memory_mb: args.memory,
        disk_mb: args.disk_size,
        iso_url: args.iso_url.clone(),
        accel: args.accel.clone(),
        addons: vec![],
        datastore: args.datastore.clone(),
    })
}

pub async fn run(profile: &Profile, args: StartArgs) -> Result<()> {
    let started = Instant::now();
    if let Some(d) = &args.driver {
        driver::validate(d)?;
    }
    ui::step(
        "😄",
        format!("minik v{} on {}", env!("CARGO_PKG_VERSION"), os_name()),
    );
    crate::cli::addons::validate(&args.addons)?;
    let new_profile = !profile.exists();
    let mut cfg = resolve_config(profile, &args)?;
    #[cfg(feature = "libvirt")]
    if cfg.driver == "libvirt" {
        // The VM's address is reserved before boot so the API server's
        // certificate can name it.
        cfg.node_ip = driver::libvirt::reserve_address(profile).await?;
    }
    let paths = certs::ensure(&profile.certs_dir(), &[cfg.node_ip.as_str()])?;

    match cfg.driver.as_str() {
        "none" => {
            none::preflight()?;
            for other in Profile::all()? {
                if other.name != profile.name && none::agent_pid(&other).is_some() {
                    bail!(
                        "the none driver runs one cluster per host and profile \"{}\" is running: `minik stop -p {}` first",
                        other.name, other.name
                    );
                }
            }
            let ours = profile.node_root().display().to_string();
            if let Some(other) = none::running_agent_roots().into_iter().find(|r| *r != ours) {
                bail!(
                    "the none driver runs one cluster per host and another minik cluster is running on it (node state in {other}): stop that one first (`minik stop` with its MINIK_HOME)"
                );
            }
            profile.save(&cfg)?;
            if none::agent_pid(profile).is_some() {
                ui::info(format!(
                    "the \"{}\" cluster is already running",
                    profile.name
                ));
            } else {
                ui::step(
                    "🤹",
                    format!(
                        "Running on this host (driver none), node IP {}",
                        cfg.node_ip
                    ),
                );
                none::spawn_agent(profile, &cfg)?;
            }
        }
        #[cfg(feature = "libvirt")]
        "libvirt" => {
            profile.save(&cfg)?;
            driver::libvirt::start(profile, &cfg).await?;
        }
        _ => {
            profile.save(&cfg)?;
            let port = qemu::start(profile, &cfg).await?;
            if port != cfg.api_port {
                cfg.api_port = port;
                profile.save(&cfg)?;
            }
        }
    }

    let server = driver::api_server_url(&cfg);
    let client = ApiClient::new(&paths, &server)?;
    let spin = ui::spinner("⌛", "Waiting for the API server and node Ready ...");
    let timeout = if cfg.driver == "none" { 90 } else { 240 };
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut api_up = false;
    let mut checks = 0u32;
    loop {
        checks += 1;
        // The host check costs a process lookup (none) or a QMP round trip
        // (qemu): do it every 20th poll.
        if checks % 20 == 1 {
            match driver::host_state(profile, &cfg).await? {
                HostState::Running => {}
                HostState::Stopped | HostState::Died(_) => {
                    spin.finish();
                    let (log, tail) = log_tail(profile, &cfg);
                    bail!("the minik agent stopped during start-up. Its log ({log}) ends with:\n{tail}");
                }
            }
        }
        if !api_up && client.ready().await {
            api_up = true;
            spin.set_message("API server up; waiting for node Ready ...");
        }
        if api_up && client.node_ready(&cfg.name).await {
            break;
        }
        if Instant::now() > deadline {
            spin.finish();
            let (log, _) = log_tail(profile, &cfg);
            bail!(
                "the cluster did not become Ready in {timeout} s; see {log} (`minik status` tells which part is down)"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    spin.finish();

    kubeconfig::merge(
        &kubeconfig::path()?,
        &kubeconfig::Entry {
            name: &profile.name,
            server: &server,
            ca: &paths.ca_cert,
            client_cert: &paths.admin_cert,
            client_key: &paths.admin_key,
        },
    )?;
    crate::cli::addons::enable_at_start(profile, &mut cfg, &client, &args.addons, new_profile)
        .await?;
    ui::success(format!(
        "Done in {:.1}s! kubectl is now configured to use \"{}\" cluster and \"default\" namespace by default",
        started.elapsed().as_secs_f64(),
        profile.name
    ));
    Ok(())
}

/// The agent's log file and its last lines.
pub fn log_tail(profile: &Profile, cfg: &ProfileConfig) -> (String, String) {
    let path = driver::agent_log(profile, cfg);
    (path.display().to_string(), none::log_tail(&path, 15))
}

fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|s| s.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into())
}
