//! `minik service NAME`: the URL of a NodePort Service, printed (`--url`) or
//! opened in the browser.

use anyhow::{bail, Result};
use clap::Args;

use crate::api::ApiClient;
use crate::certs::CertPaths;
use crate::profile::Profile;
use crate::ui;

#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// The Service's name.
    pub name: String,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Print the URL instead of opening a browser.
    #[arg(long)]
    pub url: bool,
}

pub async fn run(profile: &Profile, args: ServiceArgs) -> Result<()> {
    let cfg = profile.load()?;
    let client = ApiClient::new(
        &CertPaths::in_dir(&profile.certs_dir()),
        &crate::driver::api_server_url(&cfg),
    )?;
    let Some(svc) = client
        .get(&format!(
            "/api/v1/namespaces/{}/services/{}",
            args.namespace, args.name
        ))
        .await?
    else {
        bail!(
            "service \"{}\" not found in namespace \"{}\": list them with `kubectl get services -n {}`",
            args.name, args.namespace, args.namespace
        );
    };
    let ports = node_ports(&svc);
    if ports.is_empty() {
        bail!(
            "service \"{}\" has no NodePort: expose it with `kubectl expose deployment {} --type=NodePort --port=80`",
            args.name, args.name
        );
    }
    let mut urls = Vec::new();
    for p in ports {
        urls.push(crate::driver::node_port_url(profile, &cfg, p).await?);
    }
    if args.url {
        for u in &urls {
            println!("{u}");
        }
        return Ok(());
    }
    for u in &urls {
        ui::step(
            "🎉",
            format!(
                "Opening service {}/{} in the default browser: {u}",
                args.namespace, args.name
            ),
        );
        if open::that(u).is_err() {
            ui::info(format!("no browser could be opened; the service is at {u}"));
        }
    }
    Ok(())
}

/// The NodePorts of a Service, in port order.
pub fn node_ports(svc: &serde_json::Value) -> Vec<u16> {
    svc["spec"]["ports"]
        .as_array()
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| p["nodePort"].as_u64())
                .filter_map(|np| u16::try_from(np).ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_from_node_ports() {
        let svc = serde_json::json!({"spec":{"ports":[{"port":80,"nodePort":31000},{"port":81}]}});
        assert_eq!(node_ports(&svc), vec![31000]);
        assert!(node_ports(&serde_json::json!({})).is_empty());
    }
}
