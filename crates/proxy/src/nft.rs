//! Talks to nftables through the `nft` command.
//!
//! Owns running `nft -f -` (one atomic transaction per call), reading a
//! table's comment and deleting a table. Knows nothing about Services.

use std::io::Write;
use std::process::{Command, Stdio};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum NftError {
    #[error("cannot run `nft` ({0}): install the nftables package and run as root")]
    Spawn(#[source] std::io::Error),
    #[error("`nft {args}` failed: {stderr}")]
    Failed { args: String, stderr: String },
}

/// Applies `script` as one transaction (`nft -f -`).
pub fn apply(script: &str) -> Result<(), NftError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(NftError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(NftError::Spawn)?;
    if !out.status.success() {
        return Err(NftError::Failed {
            args: "-f -".into(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

fn run(args: &[&str]) -> Result<Option<String>, NftError> {
    let out = Command::new("nft")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(NftError::Spawn)?;
    if out.status.success() {
        return Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()));
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if stderr.contains("No such file or directory") {
        return Ok(None);
    }
    Err(NftError::Failed {
        args: args.join(" "),
        stderr,
    })
}

/// The comment of `table ip <table>`, `None` if the table does not exist.
pub fn table_comment(table: &str) -> Result<Option<String>, NftError> {
    Ok(run(&["list", "table", "ip", table])?.map(|text| parse_comment(&text).unwrap_or_default()))
}

/// Names of all `ip` family tables.
pub fn ip_tables() -> Result<Vec<String>, NftError> {
    let text = run(&["list", "tables", "ip"])?.unwrap_or_default();
    Ok(text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("table ip "))
        .map(|s| s.trim().to_string())
        .collect())
}

/// Deletes `table ip <table>`; a missing table is not an error.
pub fn delete_table(table: &str) -> Result<bool, NftError> {
    Ok(run(&["delete", "table", "ip", table])?.is_some())
}

/// Finds `comment "…"` in `nft list table` output (the table's own comment
/// is the first one printed, right after the `table` line).
pub fn parse_comment(text: &str) -> Option<String> {
    let mut lines = text.lines();
    lines.find(|l| l.trim_start().starts_with("table "))?;
    let next = lines.next()?.trim();
    let rest = next.strip_prefix("comment \"")?;
    Some(rest.strip_suffix('"').unwrap_or(rest).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_is_read_from_table_listing() {
        let text =
            "table ip minik {\n\tcomment \"minik-proxy ip_forward=0\"\n\tchain x {\n\t}\n}\n";
        assert_eq!(
            parse_comment(text).as_deref(),
            Some("minik-proxy ip_forward=0")
        );
        assert_eq!(
            parse_comment("table ip minik {\n\tchain x {\n\t}\n}\n"),
            None
        );
    }
}
