//! `minik dashboard [--url] [--local]`: the minik dashboard in the browser.
//!
//! By default the dashboard is the `dashboard` addon: a Deployment in
//! `minik-dashboard` running this same binary (`minik dashboard-server`, the
//! `minik/dashboard` image the kubelet builds from the agent) that talks to
//! the API server with its ServiceAccount token under read-mostly RBAC, and
//! a NodePort Service. This command enables the addon if needed, waits until
//! the pod is Ready, and hands out the NodePort URL; with the qemu driver the
//! NodePort is forwarded to 127.0.0.1 through QMP (as `minik service` does).
//! The dashboard keeps serving in the cluster after the command returns.
//!
//! `--local` keeps the older mode: the web app runs here on 127.0.0.1 as an
//! authenticated proxy with the profile's admin certificate. It needs no
//! image in the cluster and no pod (useful when the cluster cannot run
//! pods, or to debug the web app), and serves until interrupted.
//!
//! Also the hidden `minik dashboard-server`, the container's entrypoint.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::Value;

use crate::api::ApiClient;
use crate::certs::CertPaths;
use crate::profile::Profile;
use crate::{addons, ui};

/// Where the addon's objects live.
pub const NAMESPACE: &str = "minik-dashboard";
pub const SERVICE: &str = "minik-dashboard";
pub const POD_SELECTOR: &str = "app.kubernetes.io%2Fname%3Dminik-dashboard";

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Print the URL instead of opening a browser.
    #[arg(long)]
    pub url: bool,
    /// Serve the dashboard from this process on 127.0.0.1 with the admin
    /// certificate instead of the in-cluster addon (needs no pod).
    #[arg(long)]
    pub local: bool,
    /// With --local: the port to serve on (0 = any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}

/// Flags of the hidden `minik dashboard-server` (the addon's container).
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to serve the web app on.
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub listen: SocketAddr,
}

/// `minik dashboard-server`: the dashboard inside a pod, with the pod's
/// ServiceAccount. Exits on SIGTERM (as PID 1 it would otherwise ignore it).
pub fn serve_in_cluster(args: ServerArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let cfg = minik_dashboard::in_cluster(args.listen)?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = minik_dashboard::serve(cfg) => r,
            _ = term.recv() => {
                tracing::info!("SIGTERM: the dashboard stops");
                Ok(())
            }
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}

pub async fn run(profile: &Profile, args: DashboardArgs) -> Result<()> {
    if args.local {
        return run_local(profile, args).await;
    }
    let mut cfg = profile.load()?;
    let client = crate::cli::addons::client(profile, &cfg)?;
    if !client.ready().await {
        bail!(
            "the \"{}\" cluster is not running: start it with `minik start -p {}`",
            profile.name,
            profile.name
        );
    }
    let addon = addons::find("dashboard")?;
    let recorded = cfg.addons.iter().any(|a| a == addon.name);
    if !recorded || !addons::present(&client, addon).await? {
        crate::cli::addons::enable(profile, &mut cfg, &client, addon).await?;
    }
    let timeout = Duration::from_secs(if cfg.driver == "none" { 120 } else { 300 });
    let spin = ui::spinner(
        "🤔",
        format!("Waiting for the dashboard pod in namespace {NAMESPACE} to be Ready ..."),
    );
    let waited = wait_ready(&client, timeout, |m| spin.set_message(m)).await;
    spin.finish();
    waited?;
    let Some(svc) = client
        .get(&format!(
            "/api/v1/namespaces/{NAMESPACE}/services/{SERVICE}"
        ))
        .await?
    else {
        bail!("the dashboard Service {NAMESPACE}/{SERVICE} is missing: `minik addons enable dashboard` recreates it");
    };
    let Some(&node_port) = crate::cli::service::node_ports(&svc).first() else {
        bail!("the dashboard Service {NAMESPACE}/{SERVICE} has no NodePort: `minik addons disable dashboard && minik addons enable dashboard`");
    };
    let base = crate::driver::node_port_url(profile, &cfg, node_port).await?;
    let url = format!("{base}/");
    wait_reachable(&format!("{base}/healthz")).await?;
    if args.url {
        println!("{url}");
        return Ok(());
    }
    ui::step("🎉", format!("Opening {url} in your default browser..."));
    if open::that(&url).is_err() {
        ui::info(format!(
            "no browser could be opened; the dashboard is at {url}"
        ));
    }
    Ok(())
}

/// Whether a pod is Ready and not being deleted.
pub fn pod_ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// What a pod that is not Ready is doing, for the spinner and errors.
pub fn pod_state(pod: &Value) -> String {
    let name = pod["metadata"]["name"].as_str().unwrap_or("?");
    let waiting = pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|cs| {
            cs.iter().find_map(|c| {
                let w = &c["state"]["waiting"];
                w["reason"].as_str().map(|r| match w["message"].as_str() {
                    Some(m) if !m.is_empty() => format!("{r}: {m}"),
                    _ => r.to_string(),
                })
            })
        });
    let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
    match waiting {
        Some(w) => format!("pod {name} is {phase} ({w})"),
        None => format!("pod {name} is {phase}, not Ready yet"),
    }
}

async fn wait_ready(
    client: &ApiClient,
    timeout: Duration,
    progress: impl Fn(String),
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no dashboard pod yet");
    loop {
        let pods = client
            .list(&format!(
                "/api/v1/namespaces/{NAMESPACE}/pods?labelSelector={POD_SELECTOR}"
            ))
            .await?;
        if pods.iter().any(pod_ready) {
            return Ok(());
        }
        if let Some(p) = pods
            .iter()
            .find(|p| p["metadata"]["deletionTimestamp"].is_null())
        {
            let state = pod_state(p);
            if state != last {
                progress(format!("Waiting for the dashboard: {state} ..."));
                last = state;
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the dashboard did not become Ready in {} s ({last}); see `kubectl -n {NAMESPACE} describe pods` and `kubectl -n {NAMESPACE} logs deploy/minik-dashboard`",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the dashboard answers from this host (the NodePort rules
/// follow the pod's readiness by a moment).
async fn wait_reachable(url: &str) -> Result<()> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let err = match http.get(url).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => format!("it answered {}", r.status()),
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            bail!("the dashboard pod is Ready but {url} does not answer from this host ({err}); `minik dashboard --local` serves it without the cluster network");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `--local`: the web app on 127.0.0.1, proxying with the admin certificate.
async fn run_local(profile: &Profile, args: DashboardArgs) -> Result<()> {
    let cfg = profile.load()?;
    let certs = CertPaths::in_dir(&profile.certs_dir());
    let server = format!("https://127.0.0.1:{}", cfg.api_port);
    let spin = ui::spinner("🤔", "Verifying dashboard health ...");
    if !ApiClient::new(&certs, &server)?.ready().await {
        spin.finish();
        bail!(
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
            ui::info(format!(
                "no browser could be opened; the dashboard is at {url}"
            ));
        }
    }
    ui::info("serving the dashboard until interrupted (Ctrl-C)");
    tokio::select! {
        r = minik_dashboard::serve_on(listener, dcfg) => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_and_state_of_pods() {
        let ready = serde_json::json!({"metadata":{"name":"d"},"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}});
        assert!(pod_ready(&ready));
        let mut deleting = ready.clone();
        deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        assert!(!pod_ready(&deleting));
        let pulling = serde_json::json!({"metadata":{"name":"d"},"status":{"phase":"Pending","containerStatuses":[{"state":{"waiting":{"reason":"ErrImagePull","message":"no such image"}}}]}});
        assert!(!pod_ready(&pulling));
        assert_eq!(
            pod_state(&pulling),
            "pod d is Pending (ErrImagePull: no such image)"
        );
    }
}
