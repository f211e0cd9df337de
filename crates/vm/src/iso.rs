//! ISO download and cache.
//!
//! Owns `<cache_dir>/<name>.iso` and `<cache_dir>/<name>.iso.meta.json` (the
//! URL, size and sha256 the cached file was verified against). An ISO is
//! fetched from `file://`, `http://` or `https://`, checked against the
//! `<url>.sha256` file beside it (sha256sum format: hex digest first), and
//! written to `<name>.iso.part`, renamed only after the digest matches. A
//! cached ISO is re-verified (size, then sha256) before it is handed out; a
//! cached file that no longer matches is discarded and fetched again.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error("unsupported ISO URL {0:?}: use https://, http:// or file://")]
    BadUrl(String),
    #[error("cannot fetch {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("{url} is not a sha256 checksum file (expected 64 hex digits first)")]
    BadChecksumFile { url: String },
    #[error(
        "checksum mismatch for {url}: expected sha256 {expected}, got {actual}; the download was discarded. \
         Run the command again; if it keeps failing the ISO at that address is corrupt or does not match its .sha256"
    )]
    Checksum {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> IsoError {
    let context = context.into();
    move |source| IsoError::Io { context, source }
}

/// How [`ensure_iso_with`] behaves.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Draw an indicatif progress bar on stderr (hidden anyway when stderr is
    /// not a terminal).
    pub progress: bool,
    /// Timeout for connecting and for each read of an HTTP transfer.
    pub timeout: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            progress: true,
            timeout: Duration::from_secs(30),
        }
    }
}

/// What the cache records about a verified ISO.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Meta {
    url: String,
    size: u64,
    sha256: String,
}

/// Returns a verified local copy of the ISO at `url`, downloading it into
/// `cache_dir` (usually `~/.minik/cache/iso/`) when needed. See the module
/// comment for the rules.
pub async fn ensure_iso(url: &str, cache_dir: &Path) -> Result<PathBuf, IsoError> {
    ensure_iso_with(url, cache_dir, &FetchOptions::default()).await
}

/// [`ensure_iso`] with options.
pub async fn ensure_iso_with(
    url: &str,
    cache_dir: &Path,
    opts: &FetchOptions,
) -> Result<PathBuf, IsoError> {
    let source = Source::parse(url)?;
    let name = source.file_name()?;
    std::fs::create_dir_all(cache_dir)
        .map_err(io_err(format!("cannot create {}", cache_dir.display())))?;
    let dest = cache_dir.join(&name);
    let meta_path = cache_dir.join(format!("{name}.meta.json"));
    let client = source.client(opts)?;

    // The expected digest. If the checksum cannot be fetched (offline) a
    // cached copy verified earlier against the same URL is still good.
    let cached_meta: Option<Meta> = std::fs::read(&meta_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|m: &Meta| m.url == url);
    let expected = match fetch_checksum(&source, client.as_ref()).await {
        Ok(sum) => sum,
        Err(e @ IsoError::Fetch { .. }) => match &cached_meta {
            Some(m) if dest.exists() => {
                tracing::warn!("{e}; using the cached ISO verified earlier");
                m.sha256.clone()
            }
            _ => return Err(e),
        },
        Err(e) => return Err(e),
    };

    if dest.exists() {
        let size_ok = cached_meta.as_ref().is_none_or(|m| {
            std::fs::metadata(&dest)
                .map(|md| md.len() == m.size)
                .unwrap_or(false)
        });
        let actual = if size_ok {
            Some(sha256_file(&dest)?)
        } else {
            None
        };
        if actual.as_deref() == Some(expected.as_str()) {
            write_meta(&meta_path, url, &dest, &expected)?;
            return Ok(dest);
        }
        tracing::warn!(
            "cached ISO {} does not match {url}.sha256; discarding it and downloading again",
            dest.display()
        );
        std::fs::remove_file(&dest).map_err(io_err(format!("cannot remove {}", dest.display())))?;
        let _ = std::fs::remove_file(&meta_path);
    }

    let part = cache_dir.join(format!("{name}.part"));
    let actual = match &source {
        Source::File(p) => copy_with_hash(p, &part, opts)?,
        Source::Http(u) => {
            let client = client.as_ref().ok_or_else(|| IsoError::BadUrl(u.clone()))?;
            download_with_hash(client, u, &part, opts).await?
        }
    };
    if actual != expected {
        let _ = std::fs::remove_file(&part);
        return Err(IsoError::Checksum {
            url: url.to_string(),
            expected,
            actual,
        });
    }
    std::fs::rename(&part, &dest).map_err(io_err(format!(
        "cannot rename {} to {}",
        part.display(),
        dest.display()
    )))?;
    write_meta(&meta_path, url, &dest, &expected)?;
    Ok(dest)
}

#[derive(Debug)]
enum Source {
    File(PathBuf),
    Http(String),
}

impl Source {
    fn parse(url: &str) -> Result<Source, IsoError> {
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(IsoError::BadUrl(url.to_string()));
            }
            Ok(Source::File(PathBuf::from(percent_decode(path))))
        } else if url.starts_with("http://") || url.starts_with("https://") {
            Ok(Source::Http(url.to_string()))
        } else {
            Err(IsoError::BadUrl(url.to_string()))
        }
    }

    fn file_name(&self) -> Result<String, IsoError> {
        let raw = match self {
            Source::File(p) => p.to_string_lossy().to_string(),
            Source::Http(u) => u.split(['?', '#']).next().unwrap_or(u).to_string(),
        };
        let name = percent_decode(raw.rsplit('/').next().unwrap_or(""));
        if name.is_empty() || name == "." || name == ".." || name.contains('\0') {
            return Err(IsoError::BadUrl(raw));
        }
        Ok(name)
    }

    fn client(&self, opts: &FetchOptions) -> Result<Option<reqwest::Client>, IsoError> {
        match self {
            Source::File(_) => Ok(None),
            Source::Http(u) => reqwest::Client::builder()
                .connect_timeout(opts.timeout)
                .read_timeout(opts.timeout)
                .user_agent(concat!("minik/", env!("CARGO_PKG_VERSION")))
                .build()
                .map(Some)
                .map_err(|e| IsoError::Fetch {
                    url: u.clone(),
                    reason: e.to_string(),
                }),
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a sha256sum-style file: the first token must be 64 hex digits.
fn parse_checksum(text: &str) -> Option<String> {
    let tok = text.split_whitespace().next()?;
    (tok.len() == 64 && tok.bytes().all(|c| c.is_ascii_hexdigit()))
        .then(|| tok.to_ascii_lowercase())
}

async fn fetch_checksum(
    source: &Source,
    client: Option<&reqwest::Client>,
) -> Result<String, IsoError> {
    let (url, text) = match source {
        Source::File(p) => {
            let sum = PathBuf::from(format!("{}.sha256", p.display()));
            let text = std::fs::read_to_string(&sum).map_err(|e| IsoError::Fetch {
                url: format!("file://{}", sum.display()),
                reason: e.to_string(),
            })?;
            (format!("file://{}", sum.display()), text)
        }
        Source::Http(u) => {
            let url = format!("{u}.sha256");
            let fetch_err = |e: reqwest::Error| IsoError::Fetch {
                url: url.clone(),
                reason: e.to_string(),
            };
            let client = client.ok_or_else(|| IsoError::BadUrl(u.clone()))?;
            let resp = client
                .get(&url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(fetch_err)?;
            let text = resp.text().await.map_err(fetch_err)?;
            (url, text)
        }
    };
    parse_checksum(&text).ok_or(IsoError::BadChecksumFile { url })
}

fn sha256_file(path: &Path) -> Result<String, IsoError> {
    let mut f =
        std::fs::File::open(path).map_err(io_err(format!("cannot open {}", path.display())))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut HashWriter(&mut h))
        .map_err(io_err(format!("cannot read {}", path.display())))?;
    Ok(hex::encode(h.finalize()))
}

struct HashWriter<'a>(&'a mut Sha256);
impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn write_meta(meta_path: &Path, url: &str, dest: &Path, sha256: &str) -> Result<(), IsoError> {
    let size = std::fs::metadata(dest)
        .map_err(io_err(format!("cannot stat {}", dest.display())))?
        .len();
    let meta = Meta {
        url: url.to_string(),
        size,
        sha256: sha256.to_string(),
    };
    let body = serde_json::to_vec_pretty(&meta).unwrap_or_default();
    std::fs::write(meta_path, body).map_err(io_err(format!("cannot write {}", meta_path.display())))
}

fn progress_bar(total: Option<u64>, name: &str, opts: &FetchOptions) -> ProgressBar {
    let pb = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::no_length(),
    };
    if !opts.progress {
        pb.set_draw_target(ProgressDrawTarget::hidden());
        return pb;
    }
    pb.set_draw_target(ProgressDrawTarget::stderr());
    let style = if total.is_some() {
        "{msg} [{bar:30}] {bytes} / {total_bytes}  {bytes_per_sec}  eta {eta}"
    } else {
        "{msg} {bytes}  {bytes_per_sec}"
    };
    if let Ok(s) = ProgressStyle::with_template(style) {
        pb.set_style(s.progress_chars("=> "));
    }
    pb.set_message(format!("Downloading {name}"));
    pb
}

fn copy_with_hash(src: &Path, part: &Path, opts: &FetchOptions) -> Result<String, IsoError> {
    let mut input = std::fs::File::open(src).map_err(|e| IsoError::Fetch {
        url: format!("file://{}", src.display()),
        reason: e.to_string(),
    })?;
    let total = input.metadata().ok().map(|m| m.len());
    let mut out =
        std::fs::File::create(part).map_err(io_err(format!("cannot create {}", part.display())))?;
    let pb = progress_bar(
        total,
        &src.file_name().unwrap_or_default().to_string_lossy(),
        opts,
    );
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut input, &mut buf)
            .map_err(io_err(format!("cannot read {}", src.display())))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(io_err(format!("cannot write {}", part.display())))?;
        pb.inc(n as u64);
    }
    out.sync_all()
        .map_err(io_err(format!("cannot sync {}", part.display())))?;
    pb.finish_and_clear();
    Ok(hex::encode(h.finalize()))
}

async fn download_with_hash(
    client: &reqwest::Client,
    url: &str,
    part: &Path,
    opts: &FetchOptions,
) -> Result<String, IsoError> {
    let fetch_err = |reason: String| IsoError::Fetch {
        url: url.to_string(),
        reason,
    };
    let resp = client
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| fetch_err(e.to_string()))?;
    let total = resp.content_length();
    let name = url.rsplit('/').next().unwrap_or(url).to_string();
    let pb = progress_bar(total, &name, opts);
    let mut out =
        std::fs::File::create(part).map_err(io_err(format!("cannot create {}", part.display())))?;
    let mut h = Sha256::new();
    let mut got: u64 = 0;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                pb.abandon();
                let _ = std::fs::remove_file(part);
                return Err(fetch_err(format!(
                    "transfer interrupted after {got} bytes: {e}"
                )));
            }
        };
        h.update(&chunk);
        out.write_all(&chunk)
            .map_err(io_err(format!("cannot write {}", part.display())))?;
        got += chunk.len() as u64;
        pb.inc(chunk.len() as u64);
    }
    out.sync_all()
        .map_err(io_err(format!("cannot sync {}", part.display())))?;
    pb.finish_and_clear();
    if let Some(t) = total {
        if got != t {
            let _ = std::fs::remove_file(part);
            return Err(fetch_err(format!("got {got} of {t} bytes")));
        }
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sha256sum_lines() {
        let d = "b8c33b45e3ce485b1dffdcca5a9ab77c133ede84b40e4a531065c380ec7e50fc";
        assert_eq!(
            parse_checksum(&format!("{d}  minik-0.1.0.iso\n")).as_deref(),
            Some(d)
        );
        assert_eq!(parse_checksum(&d.to_uppercase()).as_deref(), Some(d));
        assert_eq!(parse_checksum("<html>not found</html>"), None);
        assert_eq!(parse_checksum(""), None);
        assert_eq!(parse_checksum(&d[..63]), None);
    }

    #[test]
    fn url_sources_and_names() {
        let s = Source::parse("https://example.org/rel/minik-0.1.0.iso?x=1").unwrap();
        assert_eq!(s.file_name().unwrap(), "minik-0.1.0.iso");
        let s = Source::parse("file:///tmp/a%20b.iso").unwrap();
        assert!(matches!(&s, Source::File(p) if p == Path::new("/tmp/a b.iso")));
        assert_eq!(s.file_name().unwrap(), "a b.iso");
        assert!(Source::parse("ftp://x/y.iso").is_err());
        assert!(Source::parse("file://relative.iso").is_err());
        assert!(Source::parse("https://example.org/")
            .unwrap()
            .file_name()
            .is_err());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
    }
}
