//! `minik delete`: stop the cluster, remove everything it made on this host
//! (containers, pod networks, service rules, state) and its kubeconfig entries.

use std::time::Duration;

use anyhow::Result;
use clap::Args;

use crate::driver::none;
use crate::profile::Profile;
use crate::{kubeconfig, ui};

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Delete every profile.
    #[arg(long)]
    pub all: bool,
}

pub async fn run(profile: &Profile, args: DeleteArgs) -> Result<()> {
    let profiles = if args.all { Profile::all()? } else { vec![profile.clone()] };
    for p in profiles {
        delete_one(&p).await?;
    }
    Ok(())
}

async fn delete_one(profile: &Profile) -> Result<()> {
    let spin = ui::spinner("🔥", format!("Deleting \"{}\" ...", profile.name));
    none::stop_agent(profile, Duration::from_secs(30)).await?;
    if let Ok(cfg) = profile.load() {
        none::teardown(profile, &cfg)?;
    }
    kubeconfig::unmerge(&kubeconfig::path()?, &profile.name)?;
    if profile.dir.exists() {
        std::fs::remove_dir_all(&profile.dir)?;
    }
    spin.finish();
    ui::step("💀", format!("Removed all traces of the \"{}\" cluster.", profile.name));
    Ok(())
}
