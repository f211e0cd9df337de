//! ensure_iso against a real HTTP server on 127.0.0.1 (a tiny one in this
//! test) and against file:// URLs: download, cache hit, corrupt cache
//! repaired, corrupt download rejected, offline cache use, bad checksum file.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use minik_vm::{ensure_iso_with, FetchOptions, IsoError};
use sha2::{Digest, Sha256};

#[derive(Default)]
struct Files {
    body: HashMap<String, Vec<u8>>,
    hits: HashMap<String, usize>,
}

/// Serves `files` over HTTP/1.1 on 127.0.0.1 until the process ends.
fn serve(files: Arc<Mutex<Files>>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            let files = files.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    return;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let body = {
                    let mut f = files.lock().unwrap();
                    *f.hits.entry(path.clone()).or_default() += 1;
                    f.body.get(&path).cloned()
                };
                let _ = match body {
                    Some(b) => conn
                        .write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", b.len()).as_bytes())
                        .and_then(|_| conn.write_all(&b)),
                    None => conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                };
            });
        }
    });
    port
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("minik-vm-it-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn quiet() -> FetchOptions {
    FetchOptions {
        progress: false,
        ..Default::default()
    }
}

fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test]
async fn http_download_cache_and_corruption() {
    let iso = payload(3 << 20, 7);
    let files = Arc::new(Mutex::new(Files::default()));
    {
        let mut f = files.lock().unwrap();
        f.body.insert("/rel/minik-test.iso".into(), iso.clone());
        f.body.insert(
            "/rel/minik-test.iso.sha256".into(),
            format!("{}  minik-test.iso\n", sha(&iso)).into_bytes(),
        );
    }
    let port = serve(files.clone());
    let url = format!("http://127.0.0.1:{port}/rel/minik-test.iso");
    let cache = tmpdir("http");
    let hits = |p: &str| files.lock().unwrap().hits.get(p).copied().unwrap_or(0);

    // first: downloaded, verified, renamed into the cache
    let got = ensure_iso_with(&url, &cache, &quiet()).await.unwrap();
    assert_eq!(got, cache.join("minik-test.iso"));
    assert_eq!(std::fs::read(&got).unwrap(), iso);
    assert!(!cache.join("minik-test.iso.part").exists());
    assert_eq!(hits("/rel/minik-test.iso"), 1);

    // second: cache hit (only the checksum is fetched)
    ensure_iso_with(&url, &cache, &quiet()).await.unwrap();
    assert_eq!(hits("/rel/minik-test.iso"), 1);
    assert_eq!(hits("/rel/minik-test.iso.sha256"), 2);

    // a cached file corrupted on disk is discarded and fetched again
    let mut bad = iso.clone();
    bad[1000] ^= 0xff;
    std::fs::write(&got, &bad).unwrap();
    ensure_iso_with(&url, &cache, &quiet()).await.unwrap();
    assert_eq!(std::fs::read(&got).unwrap(), iso);
    assert_eq!(hits("/rel/minik-test.iso"), 2);

    // a truncated cached file too (size check)
    std::fs::write(&got, &iso[..1000]).unwrap();
    ensure_iso_with(&url, &cache, &quiet()).await.unwrap();
    assert_eq!(std::fs::read(&got).unwrap(), iso);

    // the server now serves corrupted bytes for a new ISO: rejected, nothing kept
    {
        let mut f = files.lock().unwrap();
        let good = payload(1 << 20, 9);
        let mut served = good.clone();
        served[12345] ^= 1;
        f.body.insert("/rel/minik-bad.iso".into(), served);
        f.body
            .insert("/rel/minik-bad.iso.sha256".into(), sha(&good).into_bytes());
    }
    let bad_url = format!("http://127.0.0.1:{port}/rel/minik-bad.iso");
    let err = ensure_iso_with(&bad_url, &cache, &quiet())
        .await
        .unwrap_err();
    assert!(matches!(err, IsoError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("discarded"), "{err}");
    assert!(!cache.join("minik-bad.iso").exists());
    assert!(!cache.join("minik-bad.iso.part").exists());

    // no checksum beside it: refused
    let err = ensure_iso_with(
        &format!("http://127.0.0.1:{port}/rel/none.iso"),
        &cache,
        &quiet(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, IsoError::Fetch { .. }), "{err}");
    assert!(err.to_string().contains("none.iso.sha256"), "{err}");

    // a checksum file that is not one
    files.lock().unwrap().body.insert(
        "/rel/minik-test.iso.sha256".into(),
        b"<html>oops</html>".to_vec(),
    );
    let err = ensure_iso_with(&url, &cache, &quiet()).await.unwrap_err();
    assert!(matches!(err, IsoError::BadChecksumFile { .. }), "{err}");

    // checksum unreachable (offline): the cached, verified copy is used
    files
        .lock()
        .unwrap()
        .body
        .remove("/rel/minik-test.iso.sha256");
    let got2 = ensure_iso_with(&url, &cache, &quiet()).await.unwrap();
    assert_eq!(std::fs::read(&got2).unwrap(), iso);

    std::fs::remove_dir_all(&cache).unwrap();
}

#[tokio::test]
async fn file_urls() {
    let src = tmpdir("file-src");
    let cache = tmpdir("file-cache");
    let iso = payload(100_000, 3);
    std::fs::write(src.join("m.iso"), &iso).unwrap();
    std::fs::write(src.join("m.iso.sha256"), format!("{}  m.iso\n", sha(&iso))).unwrap();
    let url = format!("file://{}", src.join("m.iso").display());
    let got = ensure_iso_with(&url, &cache, &quiet()).await.unwrap();
    assert_eq!(std::fs::read(&got).unwrap(), iso);

    std::fs::write(
        src.join("m.iso.sha256"),
        format!("{}  m.iso\n", sha(b"other")),
    )
    .unwrap();
    std::fs::remove_file(&got).unwrap();
    let err = ensure_iso_with(&url, &cache, &quiet()).await.unwrap_err();
    assert!(matches!(err, IsoError::Checksum { .. }), "{err}");
    assert!(!got.exists());

    let err = ensure_iso_with("ftp://example.org/m.iso", &cache, &quiet())
        .await
        .unwrap_err();
    assert!(matches!(err, IsoError::BadUrl(_)));
    std::fs::remove_dir_all(&src).unwrap();
    std::fs::remove_dir_all(&cache).unwrap();
}
