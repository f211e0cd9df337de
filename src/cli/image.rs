//! `minik image load|ls|rm`: the node's image store from the host (as
//! minikube's `cmd/minikube/cmd/image.go`). Every driver is reached the same
//! way: the kubelet's `/images` endpoints through the API server's
//! `nodes/<node>/proxy` subresource, with the profile's admin certificate.
//! With the `none` driver, an API server without `nodes/proxy` (an older
//! agent) falls back to the kubelet on 127.0.0.1:10250 directly.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::api::ApiClient;
use crate::certs::CertPaths;
use crate::profile::{Profile, ProfileConfig};
use crate::ui;

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Load an image archive (`docker save` or OCI archive, tar or tar.gz;
    /// `-` reads stdin) into the node, for pods with imagePullPolicy Never
    /// or IfNotPresent.
    Load {
        /// The archive file, or `-` for stdin.
        file: String,
        /// The name for images the archive does not name (default: the
        /// file name without extension, tag `latest`).
        #[arg(long)]
        name: Option<String>,
    },
    /// List the images on the node.
    #[command(visible_alias = "list")]
    Ls {
        /// `table` (default) or `json`.
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Remove images from the node (refused while a running container uses one).
    #[command(visible_alias = "remove")]
    Rm {
        /// Image references, e.g. `myapp:dev` or `docker.io/library/nginx:1.27`.
        #[arg(required = true)]
        images: Vec<String>,
    },
}

/// The node's kubelet, through the API server (or directly, see the module docs).
struct Node {
    api: ApiClient,
    /// `/api/v1/nodes/<node>/proxy`
    proxy: String,
    /// Set when the API server has no `nodes/proxy` and the kubelet is on
    /// this host (`none` driver): requests go to 127.0.0.1:10250.
    direct: Option<reqwest::Client>,
}

/// An answer from the kubelet (or the API server refusing to proxy).
struct Answer {
    status: reqwest::StatusCode,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim().to_string()
    }
    fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "the node answered something that is not JSON: {}",
                self.text()
            )
        })
    }
    /// The API server's own `Status` (not the kubelet's answer): the proxy
    /// subresource is missing or refused.
    fn is_api_status(&self) -> bool {
        serde_json::from_slice::<Value>(&self.body).is_ok_and(|v| v["kind"] == "Status")
    }
}

impl Node {
    async fn connect(profile: &Profile) -> Result<Node> {
        if !profile.exists() {
            bail!(
                "the \"{}\" cluster does not exist: create it with `minik start -p {}`",
                profile.name,
                profile.name
            );
        }
        let cfg: ProfileConfig = profile.load()?;
        let api = ApiClient::new(
            &CertPaths::in_dir(&profile.certs_dir()),
            &crate::driver::api_server_url(&cfg),
        )?;
        if !api.ready().await {
            bail!(
                "the \"{}\" cluster is not running: start it with `minik start -p {}`",
                profile.name,
                profile.name
            );
        }
        let mut node = Node {
            api,
            proxy: format!("/api/v1/nodes/{}/proxy", cfg.name),
            direct: None,
        };
        // One probe decides the route, so a body (stdin) is sent only once.
        let probe = node
            .send(Method::GET, "/healthz", None, Duration::from_secs(30))
            .await?;
        if !probe.status.is_success() {
            if probe.is_api_status() && cfg.driver == "none" {
                node.direct = Some(
                    reqwest::Client::builder()
                        .connect_timeout(Duration::from_secs(5))
                        .build()?,
                );
            } else {
                bail!(
                    "cannot reach the node's kubelet through the API server ({}): {}; is the node Ready? (`minik status`)",
                    probe.status,
                    probe.text()
                );
            }
        }
        Ok(node)
    }

    /// Sends a request to the kubelet path `path` (`/images...`).
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<reqwest::Body>,
        timeout: Duration,
    ) -> Result<Answer> {
        let mut req = match &self.direct {
            Some(http) => http.request(method, format!("http://127.0.0.1:10250{path}")),
            None => self.api.request(method, &format!("{}{path}", self.proxy)),
        }
        .timeout(timeout);
        if let Some(b) = body {
            req = req.header("Content-Type", "application/x-tar").body(b);
        }
        let resp = req.send().await.with_context(|| {
            if self.direct.is_some() {
                "reaching the kubelet on 127.0.0.1:10250".to_string()
            } else {
                "reaching the node through the API server".to_string()
            }
        })?;
        Ok(Answer {
            status: resp.status(),
            body: resp.bytes().await?.to_vec(),
        })
    }
}

pub async fn run(profile: &Profile, args: ImageArgs) -> Result<()> {
    let node = Node::connect(profile).await?;
    match args.command {
        ImageCommand::Load { file, name } => load(&node, &file, name).await,
        ImageCommand::Ls { format } => ls(&node, &format).await,
        ImageCommand::Rm { images } => rm(&node, &images).await,
    }
}

/// `app.tar.gz` → `app:latest`; lower-cased, characters a name cannot hold dropped.
pub fn default_name(file: &str) -> String {
    let base = std::path::Path::new(file)
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut stem = base.as_str();
    for ext in [".tar.gz", ".tgz", ".tar", ".oci", ".gz"] {
        if let Some(s) = stem.strip_suffix(ext) {
            stem = s;
            break;
        }
    }
    let clean: String = stem
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .collect();
    let clean = clean.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if clean.is_empty() {
        "image:latest".into()
    } else {
        format!("{clean}:latest")
    }
}

async fn load(node: &Node, file: &str, name: Option<String>) -> Result<()> {
    let fallback = name.unwrap_or_else(|| default_name(file));
    let (data, total): (Option<std::path::PathBuf>, Option<u64>) = if file == "-" {
        (None, None)
    } else {
        let md = std::fs::metadata(file).with_context(|| {
            format!("cannot read {file}: give an image archive (docker save or OCI archive)")
        })?;
        if md.is_dir() {
            bail!(
                "{file} is a directory: make it an archive first (`tar -C {file} -cf image.tar .`)"
            );
        }
        (Some(std::path::PathBuf::from(file)), Some(md.len()))
    };
    let what = if file == "-" { "stdin" } else { file };
    let bar = ui::progress_bytes("🚚", format!("Loading {what} into the node"), total);
    let body = match &data {
        Some(path) => {
            let f = tokio::fs::File::open(path)
                .await
                .with_context(|| format!("opening {}", path.display()))?;
            reqwest::Body::wrap_stream(chunks(f, bar.clone()))
        }
        None => reqwest::Body::wrap_stream(chunks(tokio::io::stdin(), bar.clone())),
    };
    let q: String = form_urlencode(&fallback);
    let ans = node
        .send(
            Method::POST,
            &format!("/images?name={q}"),
            Some(body),
            Duration::from_secs(3600),
        )
        .await;
    bar.finish_and_clear();
    let ans = ans?;
    if !ans.status.is_success() {
        bail!("loading the image failed ({}): {}", ans.status, ans.text());
    }
    let v = ans.json()?;
    let names: Vec<String> = v["images"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for n in &names {
        ui::success(format!("Loaded {n}"));
    }
    if names.is_empty() {
        bail!("the archive held no image");
    }
    ui::info("Pods use it with imagePullPolicy: Never or IfNotPresent (a :latest tag defaults to Always, which asks the registry)");
    Ok(())
}

fn form_urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Reads `r` in 256 KiB chunks, counting them on `bar`.
fn chunks<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    r: R,
    bar: indicatif::ProgressBar,
) -> impl futures::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static {
    futures::stream::unfold((r, bar, false), |(mut r, bar, done)| async move {
        if done {
            return None;
        }
        let mut buf = vec![0u8; 256 * 1024];
        match r.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                bar.inc(n as u64);
                Some((Ok(buf), (r, bar, false)))
            }
            Err(e) => Some((Err(e), (r, bar, true))),
        }
    })
}

/// `1536` → `1.5kB`, as docker prints sizes (powers of 1000).
pub fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else if v < 10.0 {
        format!("{:.2}{}", v, units[i])
    } else if v < 100.0 {
        format!("{:.1}{}", v, units[i])
    } else {
        format!("{:.0}{}", v, units[i])
    }
}

/// The `minik image ls` table from the kubelet's `GET /images` answer. Pure.
pub fn table(images: &[Value]) -> String {
    let mut rows: Vec<[String; 4]> =
        vec![["IMAGE".into(), "TAG".into(), "ID".into(), "SIZE".into()]];
    for i in images {
        let tag = i["tag"].as_str().unwrap_or("");
        let id = i["id"].as_str().unwrap_or("");
        let short = id.strip_prefix("sha256:").unwrap_or(id);
        rows.push([
            i["repository"].as_str().unwrap_or("").to_string(),
            if tag.is_empty() {
                "<none>".into()
            } else {
                tag.to_string()
            },
            short.chars().take(12).collect(),
            human_size(i["size"].as_u64().unwrap_or(0)),
        ]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = (0..4)
            .map(|c| {
                if c == 3 {
                    r[c].clone()
                } else {
                    format!("{:w$}", r[c], w = widths[c])
                }
            })
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

async fn ls(node: &Node, format: &str) -> Result<()> {
    if format != "table" && format != "json" {
        bail!("--format must be table or json, not {format:?}");
    }
    let ans = node
        .send(Method::GET, "/images", None, Duration::from_secs(60))
        .await?;
    if !ans.status.is_success() {
        bail!("listing images failed ({}): {}", ans.status, ans.text());
    }
    let v = ans.json()?;
    let images = v["images"].as_array().cloned().unwrap_or_default();
    // By-digest names duplicate their tag's row: show those only when untagged.
    let shown: Vec<Value> = images
        .iter()
        .filter(|i| {
            !i["tag"].as_str().unwrap_or("").is_empty()
                || !images
                    .iter()
                    .any(|o| o["id"] == i["id"] && !o["tag"].as_str().unwrap_or("").is_empty())
        })
        .cloned()
        .collect();
    if format == "json" {
        println!("{}", serde_json::to_string_pretty(&images)?);
    } else {
        print!("{}", table(&shown));
    }
    Ok(())
}

async fn rm(node: &Node, images: &[String]) -> Result<()> {
    let mut failed = Vec::new();
    for img in images {
        let ans = node
            .send(
                Method::DELETE,
                &format!("/images/{img}"),
                None,
                Duration::from_secs(120),
            )
            .await?;
        if ans.status.is_success() {
            ui::success(format!("Removed {img}"));
        } else {
            ui::error(format!("Cannot remove {img}: {}", ans.text()));
            failed.push(img.clone());
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} image(s) not removed: {}",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_come_from_the_file() {
        assert_eq!(default_name("/tmp/My App.tar"), "myapp:latest");
        assert_eq!(default_name("web.tar.gz"), "web:latest");
        assert_eq!(default_name("-"), "image:latest");
        assert_eq!(default_name("x/.tar"), "image:latest");
    }

    #[test]
    fn sizes_print_like_docker() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_500), "1.50kB");
        assert_eq!(human_size(4_260_000), "4.26MB");
        assert_eq!(human_size(72_800_000), "72.8MB");
        assert_eq!(human_size(312_000_000), "312MB");
    }

    #[test]
    fn the_table_aligns_columns() {
        let rows = vec![
            serde_json::json!({"repository":"docker.io/minik/busybox","tag":"latest","id":"sha256:0123456789abcdef","size":2_100_000}),
            serde_json::json!({"repository":"localhost:5000/x","tag":"","id":"sha256:fedcba9876543210","size":5}),
        ];
        assert_eq!(
            table(&rows),
            "IMAGE                     TAG      ID             SIZE\n\
             docker.io/minik/busybox   latest   0123456789ab   2.10MB\n\
             localhost:5000/x          <none>   fedcba987654   5B\n"
        );
    }
}
