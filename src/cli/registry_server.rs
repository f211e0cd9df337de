//! `minik registry-server --listen ADDR --root DIR` (hidden): the registry
//! addon's container. Serves the Docker Registry v2 API of crate
//! `minik-registry` until SIGTERM.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct RegistryServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:5000")]
    pub listen: String,
    /// Where blobs, manifests and tags are kept.
    #[arg(long, default_value = "/var/lib/registry")]
    pub root: PathBuf,
}

pub fn run(args: RegistryServerArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(minik_registry::serve(&args.listen, args.root.clone()))
        .with_context(|| format!("serving the registry from {}", args.root.display()))
}
