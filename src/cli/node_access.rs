//! `minik ip`, `minik ssh [-- cmd]`, `minik logs [-f]`: reaching the node.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;

use crate::profile::Profile;

/// `minik ip`: the node's IP.
pub fn ip(profile: &Profile) -> Result<i32> {
    let cfg = profile.load()?;
    println!("{}", cfg.node_ip);
    Ok(0)
}

#[derive(Debug, Args)]
pub struct SshArgs {
    /// A command to run instead of a shell (after `--`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `minik ssh`: a shell (or one command) in the VM.
pub fn ssh(profile: &Profile, args: SshArgs) -> Result<i32> {
    let cfg = profile.load()?;
    crate::driver::ssh(profile, &cfg, &args.command)
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new lines.
    #[arg(short, long)]
    pub follow: bool,
    /// Lines from the end to start with.
    #[arg(short = 'n', long, default_value_t = 60)]
    pub length: usize,
}

/// `minik logs`: the agent's log (the VM's console with the qemu driver).
pub fn logs(profile: &Profile, args: LogsArgs) -> Result<i32> {
    let cfg = profile.load()?;
    let path = crate::driver::agent_log(profile, &cfg);
    let Ok(mut f) = std::fs::File::open(&path) else {
        bail!(
            "no log yet at {}: start the cluster with `minik start`",
            path.display()
        );
    };
    let mut text = String::new();
    f.read_to_string(&mut text)?;
    let lines: Vec<&str> = text.lines().collect();
    let mut out = std::io::stdout();
    for l in &lines[lines.len().saturating_sub(args.length)..] {
        writeln!(out, "{l}")?;
    }
    if !args.follow {
        return Ok(0);
    }
    let mut pos = f.stream_position()?;
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if len < pos {
            pos = 0; // truncated or replaced
        }
        if len > pos {
            let mut f = std::fs::File::open(&path)?;
            f.seek(SeekFrom::Start(pos))?;
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)?;
            out.write_all(&buf)?;
            out.flush()?;
            pos += buf.len() as u64;
        }
    }
}
