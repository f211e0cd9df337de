//! `minik kubectl -- ARGS`: the real kubectl, pointed at this cluster.

use anyhow::{Context, Result};
use clap::Args;

use crate::profile::Profile;

#[derive(Debug, Args)]
pub struct KubectlArgs {
    /// Arguments for kubectl (after `--`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

pub fn run(profile: &Profile, args: KubectlArgs) -> Result<i32> {
    profile.load()?;
    let status = std::process::Command::new("kubectl")
        .arg(format!("--context={}", profile.name))
        .args(&args.args)
        .status()
        .context("running kubectl: is it installed and on PATH? (https://kubernetes.io/docs/tasks/tools/)")?;
    Ok(status.code().unwrap_or(1))
}
