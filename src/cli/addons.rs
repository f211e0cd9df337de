//! `minik addons list|enable|disable`: turning addons (`src/addons.rs`) on
//! and off in a cluster, and `--addons` of `minik start`. Which addons are
//! on is recorded in the profile config, so a restarted cluster keeps them.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};

use crate::addons::{self, Addon};
use crate::api::ApiClient;
use crate::certs::CertPaths;
use crate::driver;
use crate::profile::{Profile, ProfileConfig};
use crate::ui;

#[derive(Debug, Args)]
pub struct AddonsArgs {
    #[command(subcommand)]
    pub command: AddonsCommand,
}

#[derive(Debug, Subcommand)]
pub enum AddonsCommand {
    /// List the addons, whether each is enabled, and what it is.
    List,
    /// Enable an addon (apply its objects to the cluster).
    Enable {
        /// The addon, e.g. dashboard.
        name: String,
    },
    /// Disable an addon (delete its objects).
    Disable {
        /// The addon, e.g. dashboard.
        name: String,
    },
}

pub fn client(profile: &Profile, cfg: &ProfileConfig) -> Result<ApiClient> {
    ApiClient::new(
        &CertPaths::in_dir(&profile.certs_dir()),
        &format!("https://127.0.0.1:{}", cfg.api_port),
    )
}

pub async fn run(profile: &Profile, args: AddonsArgs) -> Result<()> {
    match args.command {
        AddonsCommand::List => list(profile).await,
        AddonsCommand::Enable { name } => {
            let addon = addons::find(&name)?;
            let mut cfg = profile.load()?;
            let client = client(profile, &cfg)?;
            if !client.ready().await {
                record(profile, &mut cfg, addon.name, true)?;
                ui::step(
                    "🌟",
                    format!(
                        "The '{}' addon will be enabled when the \"{}\" cluster starts (`minik start -p {}`)",
                        addon.name, profile.name, profile.name
                    ),
                );
                return Ok(());
            }
            enable(profile, &mut cfg, &client, addon).await
        }
        AddonsCommand::Disable { name } => {
            let addon = addons::find(&name)?;
            let mut cfg = profile.load()?;
            let client = client(profile, &cfg)?;
            if !client.ready().await {
                bail!(
                    "the \"{}\" cluster is not running, and disabling an addon deletes its objects from it: `minik start -p {}` first",
                    profile.name,
                    profile.name
                );
            }
            let spin = ui::spinner(
                "🌑",
                format!("Deleting the '{}' addon's objects ...", addon.name),
            );
            let n = addons::delete(&client, addon).await;
            spin.finish();
            let n = n?;
            record(profile, &mut cfg, addon.name, false)?;
            for &port in node_ports(addon.name) {
                if let Err(e) = driver::release_host_port(profile, &cfg, port).await {
                    ui::warn(format!(
                        "could not remove the forward of port {port}: {e:#}"
                    ));
                }
            }
            ui::step(
                "🌑",
                format!(
                    "The '{}' addon is disabled ({n} objects deleted)",
                    addon.name
                ),
            );
            Ok(())
        }
    }
}

/// Applies an addon and records it in the profile; prints the 🌟 line.
pub async fn enable(
    profile: &Profile,
    cfg: &mut ProfileConfig,
    client: &ApiClient,
    addon: &Addon,
) -> Result<()> {
    let vars = addons::Vars::for_profile(profile, &cfg.driver);
    addons::apply(client, addon, &vars).await?;
    record(profile, cfg, addon.name, true)?;
    ui::step("🌟", format!("The '{}' addon is enabled", addon.name));
    if addon.name == "ingress" {
        // Ports 80/443 of the node, from this host (a QMP forward with qemu,
        // set up again at every start since forwards die with the VM).
        match ingress_reachable(profile, cfg).await {
            Ok(msg) => ui::step("🔌", msg),
            Err(e) => ui::warn(format!(
                "the ingress controller runs, but ports 80/443 of the node are not reachable from this host: {e:#}; `minik service ingress-nginx-controller -n ingress-nginx --url` gives other URLs to it"
            )),
        }
    }
    if addon.name == "registry" {
        match registry_reachable(profile, cfg).await {
            Ok(msg) => ui::step("🔌", msg),
            Err(e) => ui::warn(format!(
                "the registry runs, but port 5000 of the node is not reachable from this host: {e:#}; pods still pull `localhost:5000/<image>`"
            )),
        }
    }
    Ok(())
}

/// The ports an addon serves on the node's own network (hostNetwork pods),
/// which this host reaches through [`driver::host_port_for`].
fn node_ports(addon: &str) -> &'static [u16] {
    match addon {
        "ingress" => &[80, 443],
        "registry" => &[5000],
        _ => &[],
    }
}

/// Makes the registry's port 5000 reachable from this host (pushes) and says
/// where.
async fn registry_reachable(profile: &Profile, cfg: &ProfileConfig) -> Result<String> {
    let (host, port) = driver::host_port_for(profile, cfg, 5000, 5000).await?;
    let host = if host == "127.0.0.1" {
        "localhost".to_string()
    } else {
        host
    };
    let note = if port == 5000 {
        String::new()
    } else {
        format!(
            " (port 5000 {} on this host)",
            driver::why_port_unavailable(5000)
        )
    };
    Ok(format!(
        "Registry is reachable at {host}:{port}{note}\n    Push with `skopeo copy --dest-tls-verify=false oci:DIR:TAG docker://{host}:{port}/NAME:TAG`; pods pull `localhost:5000/NAME:TAG`"
    ))
}

/// Makes the node's ports 80 and 443 reachable from this host and says where
/// ("Ingress is reachable at http://127.0.0.1:8080 (port 80 is taken on this
/// host)"), with a `curl` line that tries a host rule.
async fn ingress_reachable(profile: &Profile, cfg: &ProfileConfig) -> Result<String> {
    let (host, http) = driver::host_port_for(profile, cfg, 80, 80).await?;
    let (_, https) = driver::host_port_for(profile, cfg, 443, 443).await?;
    let mut notes = Vec::new();
    for (want, got) in [(80, http), (443, https)] {
        if got != want {
            notes.push(format!(
                "port {want} {} on this host",
                driver::why_port_unavailable(want)
            ));
        }
    }
    let note = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join(", "))
    };
    let http_url = driver::url("http", &host, http);
    Ok(format!(
        "Ingress is reachable at {http_url} and {}{note}\n    Try a rule for host.example with `curl -H 'Host: host.example' {http_url}/`",
        driver::url("https", &host, https),
    ))
}

/// Adds or removes an addon in the profile config.
fn record(profile: &Profile, cfg: &mut ProfileConfig, name: &str, on: bool) -> Result<()> {
    let had = cfg.addons.iter().any(|a| a == name);
    if on && !had {
        cfg.addons.push(name.to_string());
    } else if !on && had {
        cfg.addons.retain(|a| a != name);
    } else {
        return Ok(());
    }
    // Another command may have changed the file since we read it: merge.
    let mut fresh = profile.load().unwrap_or_else(|_| cfg.clone());
    if on {
        if !fresh.addons.iter().any(|a| a == name) {
            fresh.addons.push(name.to_string());
        }
    } else {
        fresh.addons.retain(|a| a != name);
    }
    profile.save(&fresh)?;
    cfg.addons = fresh.addons;
    Ok(())
}

/// Checks `--addons` names before anything starts.
pub fn validate(names: &[String]) -> Result<()> {
    for n in names {
        addons::find(n)?;
    }
    Ok(())
}

/// `minik start`: applies the recorded addons plus `--addons` (plus the
/// default-enabled ones on a new cluster) once the node is Ready
/// (re-applying is cheap and repairs objects deleted by hand).
pub async fn enable_at_start(
    profile: &Profile,
    cfg: &mut ProfileConfig,
    client: &ApiClient,
    extra: &[String],
    new_profile: bool,
) -> Result<()> {
    let mut names = cfg.addons.clone();
    let defaults = if new_profile {
        addons::default_enabled()
    } else {
        Vec::new()
    };
    for n in defaults.iter().chain(extra) {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    // The cluster is up either way: a failing addon is a warning with the
    // command that retries it, as with minikube.
    for name in names {
        let addon = addons::find(&name)?;
        if let Err(e) = enable(profile, cfg, client, addon).await {
            ui::warn(format!(
                "enabling the '{name}' addon failed: {e:#}; retry with `minik addons enable {name} -p {}`",
                profile.name
            ));
        }
    }
    Ok(())
}

/// The rows of `addons list`: name, enabled, description.
pub fn table(rows: &[(&str, String, &str)]) -> String {
    let headers = ("NAME", "ENABLED", "DESCRIPTION");
    let w0 = rows
        .iter()
        .map(|r| r.0.len())
        .chain([headers.0.len()])
        .max()
        .unwrap_or(0);
    let w1 = rows
        .iter()
        .map(|r| r.1.chars().count())
        .chain([headers.1.len()])
        .max()
        .unwrap_or(0);
    let mut out = format!("{:w0$}   {:w1$}   {}\n", headers.0, headers.1, headers.2);
    for (n, e, d) in rows {
        let pad = w1 - e.chars().count();
        out.push_str(&format!("{n:w0$}   {e}{}   {d}\n", " ".repeat(pad)));
    }
    out
}

async fn list(profile: &Profile) -> Result<()> {
    let cfg = profile.load()?;
    let client = client(profile, &cfg)?;
    let running = client.ready().await;
    let mut rows = Vec::new();
    let mut drift = Vec::new();
    for a in addons::ADDONS {
        let recorded = cfg.addons.iter().any(|n| n == a.name);
        let enabled = if running {
            let present = addons::present(&client, a).await?;
            if recorded != present {
                drift.push((a.name, recorded));
            }
            recorded && present
        } else {
            recorded
        };
        rows.push((
            a.name,
            if enabled {
                "enabled".to_string()
            } else {
                "disabled".to_string()
            },
            a.description,
        ));
    }
    print!("{}", table(&rows));
    if !running {
        ui::warn(format!(
            "the \"{}\" cluster is not running: showing the addons it will enable when it starts",
            profile.name
        ));
    }
    for (name, recorded) in drift {
        if recorded {
            ui::warn(format!(
                "'{name}' is recorded as enabled but some of its objects are missing: `minik addons enable {name}` repairs it"
            ));
        } else {
            ui::warn(format!(
                "'{name}' is not enabled but its objects exist: `minik addons disable {name}` removes them"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ports forwarded to this host are the hostPorts the addons' pods
    /// bind on the node (health ports excepted), so the two cannot drift.
    #[test]
    fn node_ports_are_the_addons_host_ports() {
        for addon in addons::ADDONS {
            let mut ports: Vec<u64> = Vec::new();
            for o in addons::objects(addon).unwrap() {
                let containers = &o.body["spec"]["template"]["spec"]["containers"];
                for c in containers.as_array().into_iter().flatten() {
                    for p in c["ports"].as_array().into_iter().flatten() {
                        if let Some(hp) = p["hostPort"].as_u64() {
                            if p["name"] != "healthz" {
                                ports.push(hp);
                            }
                        }
                    }
                }
            }
            let want: Vec<u64> = node_ports(addon.name).iter().map(|&p| p.into()).collect();
            assert_eq!(ports, want, "addon {}", addon.name);
        }
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(&[
            ("dashboard", "enabled".into(), "web UI"),
            ("x", "disabled".into(), "y"),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "NAME        ENABLED    DESCRIPTION");
        assert_eq!(lines[1], "dashboard   enabled    web UI");
        assert_eq!(lines[2], "x           disabled   y");
    }
}
