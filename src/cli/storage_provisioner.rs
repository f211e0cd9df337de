//! `minik storage-provisioner --root DIR` (hidden): the storage-provisioner
//! addon's container. Runs the hostPath provisioner (crate `minik-storage`)
//! with the pod's ServiceAccount (or KUBECONFIG when run by hand) until
//! SIGTERM.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct ProvisionerArgs {
    /// The node directory that holds the volumes (`pvc-<uid>` each); the
    /// addon mounts it at the same path so volume paths are node paths.
    #[arg(long)]
    pub root: PathBuf,
}

pub fn run(args: ProvisionerArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = kube::Client::try_default().await.context(
            "no API server credentials: run in a pod with a ServiceAccount, or set KUBECONFIG",
        )?;
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "minik".into());
        let cfg = minik_storage::Config {
            root: args.root,
            identity: format!("{}_{host}", minik_storage::PROVISIONER),
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = minik_storage::run(client, cfg) => r,
            _ = term.recv() => {
                tracing::info!("SIGTERM: the storage provisioner stops");
                Ok(())
            }
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}
