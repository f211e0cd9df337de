//! `minik delete`: stop the cluster, remove everything it made (VM and disk,
//! or containers, pod networks and service rules on this host), its state
//! and its kubeconfig entries.

use anyhow::Result;
use clap::Args;

use crate::driver;
use crate::profile::Profile;
use crate::{kubeconfig, ui};

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Delete every profile.
    #[arg(long)]
    pub all: bool,
}

pub async fn run(profile: &Profile, args: DeleteArgs) -> Result<()> {
    let profiles = if args.all {
        Profile::all()?
    } else {
        vec![profile.clone()]
    };
    for p in profiles {
        delete_one(&p).await?;
    }
    Ok(())
}

async fn delete_one(profile: &Profile) -> Result<()> {
    let spin = ui::spinner("🔥", format!("Deleting \"{}\" ...", profile.name));
    if let Ok(cfg) = profile.load() {
        driver::delete(profile, &cfg).await?;
    }
    kubeconfig::unmerge(&kubeconfig::path()?, &profile.name)?;
    if profile.dir.exists() {
        std::fs::remove_dir_all(&profile.dir)?;
    }
    spin.finish();
    ui::step(
        "💀",
        format!("Removed all traces of the \"{}\" cluster.", profile.name),
    );
    Ok(())
}
