//! `minik dashboard [--url]`: the minik dashboard in the browser. The web app
//! (crate `minik-dashboard`) runs here, on 127.0.0.1, as an authenticated
//! local proxy to the cluster's API server with the profile's admin
//! certificate — the browser never holds credentials, and it works the same
//! on every driver (with qemu the API server is already forwarded to
//! 127.0.0.1). It serves until interrupted.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::Args;

use crate::api::ApiClient;
use crate::certs::CertPaths;
use crate::profile::Profile;
use crate::ui;

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Print the URL instead of opening a browser.
    #[arg(long)]
    pub url: bool,
    /// Local port to serve on (0 = any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}

pub async fn run(profile: &Profile, args: DashboardArgs) -> Result<()> {
    let cfg = profile.load()?;
    let certs = CertPaths::in_dir(&profile.certs_dir());
    let server = format!("https://127.0.0.1:{}", cfg.api_port);
    let spin = ui::spinner("🤔", "Verifying dashboard health ...");
    if !ApiClient::new(&certs, &server)?.ready().await {
        spin.finish();
        anyhow::bail!(
            "the \"{}\" cluster is not running: start it with `minik start -p {}`",
            profile.name,
            profile.name
        );
    }
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    let dcfg = minik_dashboard::DashboardConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], args.port)),
        api_server: server,
        auth: minik_dashboard::ApiAuth::ClientCert {
            ca_pem: read(&certs.ca_cert)?,
            cert_pem: read(&certs.admin_cert)?,
            key_pem: read(&certs.admin_key)?,
        },
    };
    let listener = tokio::net::TcpListener::bind(dcfg.listen)
        .await
        .with_context(|| format!("cannot listen on {} (try another --port)", dcfg.listen))?;
    let url = format!("http://{}/", listener.local_addr()?);
    spin.finish();
    if args.url {
        println!("{url}");
    } else {
        ui::step("🎉", format!("Opening {url} in your default browser..."));
        if open::that(&url).is_err() {
            ui::info(format!("no browser could be opened; the dashboard is at {url}"));
        }
    }
    ui::info("serving the dashboard until interrupted (Ctrl-C)");
    tokio::select! {
        r = minik_dashboard::serve_on(listener, dcfg) => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
