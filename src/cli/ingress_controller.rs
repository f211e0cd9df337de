//! `minik ingress-controller` (hidden): the ingress addon's container.
//! Runs crate `minik-ingress` in a hostNetwork pod with the pod's
//! ServiceAccount (kube's in-cluster config: KUBERNETES_SERVICE_HOST and
//! the projected token), on its own tokio runtime. Owns only argument
//! parsing and the process's lifetime (SIGTERM: the controller clears the
//! Ingress status it set, then the process exits).

use anyhow::{Context, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct IngressControllerArgs {
    /// Port for HTTP.
    #[arg(long, default_value_t = 80)]
    pub http_port: u16,
    /// Port for HTTPS.
    #[arg(long, default_value_t = 443)]
    pub https_port: u16,
    /// Port answering /healthz (the readiness probe).
    #[arg(long, default_value_t = 10254)]
    pub healthz_port: u16,
    /// The address written to the Ingresses' status.loadBalancer (the
    /// node's InternalIP; the addon passes the pod's status.hostIP).
    #[arg(long, env = "MINIK_INGRESS_STATUS_ADDRESS")]
    pub publish_status_address: Option<String>,
    /// The IngressClass spec.controller this controller serves.
    #[arg(long, default_value = minik_ingress::CONTROLLER_NAME)]
    pub controller_class: String,
}

pub fn run(args: IngressControllerArgs) -> Result<()> {
    // rustls is built with two providers here (ring and aws-lc-rs), so
    // kube's TLS client needs the process default named.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = kube::Client::try_default().await.context(
            "no in-cluster API access (KUBERNETES_SERVICE_HOST and the ServiceAccount token); this command runs inside the ingress addon's pod: `minik addons enable ingress`",
        )?;
        let cfg = minik_ingress::Config {
            http: ([0, 0, 0, 0], args.http_port).into(),
            https: ([0, 0, 0, 0], args.https_port).into(),
            healthz: ([0, 0, 0, 0], args.healthz_port).into(),
            controller_name: args.controller_class,
            status_address: args.publish_status_address.filter(|a| !a.is_empty()),
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: the ingress controller stops"),
                _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: the ingress controller stops"),
            }
        };
        minik_ingress::run(client, cfg, shutdown).await?;
        Ok(())
    })
}
