//! `minik start`: create or resume the cluster, wait until its node is Ready,
//! and point kubectl at it.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;

use crate::api::ApiClient;
use crate::driver::{self, none};
use crate::profile::{Profile, ProfileConfig};
use crate::{certs, kubeconfig, ui};

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Where the cluster runs: none (this host, as root).
    #[arg(long, default_value = "none")]
    pub driver: String,
    /// CPUs for the VM.
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    /// Memory for the VM in MB.
    #[arg(long, default_value_t = 2048)]
    pub memory: u64,
    /// Disk size for the VM in MB.
    #[arg(long = "disk-size", default_value_t = 20000)]
    pub disk_size: u64,
    /// Port of the API server on 127.0.0.1 (default 8443 for the first cluster).
    #[arg(long = "apiserver-port")]
    pub apiserver_port: Option<u16>,
    /// Keep the cluster state in a real etcd (`etcd://127.0.0.1:2379`)
    /// instead of the embedded store.
    #[arg(long)]
    pub datastore: Option<String>,
}

pub async fn run(profile: &Profile, args: StartArgs) -> Result<()> {
    let started = Instant::now();
    driver::validate(&args.driver)?;
    ui::step(
        "😄",
        format!("minik v{} on {}", env!("CARGO_PKG_VERSION"), os_name()),
    );
    let cfg = if profile.exists() {
        let cfg = profile.load()?;
        if cfg.driver != args.driver {
            bail!(
                "profile \"{}\" was created with --driver={}; start it with that driver, or `minik delete -p {}` first",
                profile.name, cfg.driver, profile.name
            );
        }
        if args.datastore.is_some() && args.datastore != cfg.datastore {
            bail!(
                "profile \"{}\" keeps its state in {}; the datastore cannot change after creation (`minik delete -p {}` first)",
                profile.name,
                cfg.datastore.as_deref().unwrap_or("the embedded store"),
                profile.name
            );
        }
        cfg
    } else {
        ProfileConfig {
            name: profile.name.clone(),
            driver: args.driver.clone(),
            api_port: args.apiserver_port.unwrap_or(8443),
            node_ip: none::default_node_ip(),
            cpus: args.cpus,
            memory_mb: args.memory,
            disk_mb: args.disk_size,
            iso_url: None,
            accel: None,
            addons: vec![],
            datastore: args.datastore.clone(),
        }
    };

    none::preflight()?;
    for other in Profile::all()? {
        if other.name != profile.name && none::agent_pid(&other).is_some() {
            bail!(
                "the none driver runs one cluster per host and profile \"{}\" is running: `minik stop -p {}` first",
                other.name, other.name
            );
        }
    }
    profile.save(&cfg)?;
    let paths = certs::ensure(&profile.certs_dir(), &[cfg.node_ip.as_str()])?;

    if none::agent_pid(profile).is_some() {
        ui::info(format!("the \"{}\" cluster is already running", profile.name));
    } else {
        ui::step("🤹", format!("Running on this host (driver none), node IP {}", cfg.node_ip));
        none::spawn_agent(profile, &cfg)?;
    }

    let server = format!("https://127.0.0.1:{}", cfg.api_port);
    let client = ApiClient::new(&paths, &server)?;
    let spin = ui::spinner("⌛", "Waiting for the API server and node Ready ...");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut api_up = false;
    loop {
        if none::agent_pid(profile).is_none() {
            spin.finish();
            bail!(
                "the minik agent stopped during start-up. Its log ({}) ends with:\n{}",
                profile.agent_log().display(),
                none::log_tail(&profile.agent_log(), 15)
            );
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
            bail!(
                "the cluster did not become Ready in 90 s; see {} (`minik status` tells which part is down)",
                profile.agent_log().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    spin.finish();

    let kc = kubeconfig::path()?;
    kubeconfig::merge(
        &kc,
        &kubeconfig::Entry {
            name: &profile.name,
            server: &server,
            ca: &paths.ca_cert,
            client_cert: &paths.admin_cert,
            client_key: &paths.admin_key,
        },
    )?;
    ui::success(format!(
        "Done in {:.1}s! kubectl is now configured to use \"{}\" cluster and \"default\" namespace by default",
        started.elapsed().as_secs_f64(),
        profile.name
    ));
    Ok(())
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
