//! The etcd backend: the same [`Store`](crate::Store) on a real etcd
//! (`--datastore etcd://host:port`).
//!
//! Owns: the etcd client, a private tokio runtime that drives it, and the
//! *mirror*: a task that watches all of etcd and applies every change to
//! the store's in-memory [`State`] (the same type the embedded store
//! uses). Must not touch: files, JSON.
//!
//! # Design: a watch-fed mirror, not blocking reads
//!
//! `get`, `list`, `list_page`, `revision`, `compacted_revision` and `watch`
//! are synchronous and return no error (`Option`, tuples): that is the
//! store's public API, used by the apiserver. Two ways to serve them from
//! etcd were possible:
//!
//! * a blocking bridge (park the caller while a Range RPC runs): every read
//!   would be an RPC that can fail, but these signatures have nowhere to
//!   put "etcd unreachable" — the only choices would be a panic or a wrong
//!   answer (an empty list makes a garbage collector delete things). It also
//!   parks a runtime worker per read, and `watch` could only learn that a
//!   revision is compacted asynchronously (etcd reports it on the stream
//!   up to 100 ms later).
//! * a mirror fed by one etcd watch (chosen): reads come from memory (the
//!   whole key space is held in memory, as by the embedded store) and
//!   cannot fail, each at one consistent revision (the revision of the last
//!   change the mirror applied, which it returns), exactly as the embedded
//!   store; watch history, `Compacted`, slow-watcher handling and
//!   future-revision watches are the embedded store's code, so the two
//!   backends cannot drift apart.
//!
//! What keeps the mirror correct:
//! * **Writes go to etcd**, as single-key transactions whose compare is
//!   the precondition (`create_revision == 0` for create, `mod_revision ==
//!   N` for CAS), so etcd decides conflicts and a stale mirror can only
//!   cause a `Conflict`, never a lost update. A write resolves after etcd
//!   commits it (etcd fsyncs first) **and** the mirror has applied the
//!   transaction's revision, so a caller reads its own writes (and, after
//!   a `Conflict`, the write it lost against). No `prev_kv` is needed on
//!   the watch: the mirror holds the previous value itself.
//! * **Revisions are etcd's**: a write's `mod_revision` is the header
//!   revision of its transaction; a fresh etcd is at revision 1 like a
//!   fresh embedded store. Writes by other etcd clients reach the mirror
//!   through the watch (several keys at one revision, or gaps in the
//!   revisions of mirrored keys, are fine).
//! * **Start-up** loads the key space at revision `S` (paged Range reads at
//!   that fixed revision), where `S` is etcd's compacted revision or
//!   `current - history_max_events`, whichever is newer, then watches from
//!   `S + 1`, so the retained history (for watch-from-revision) is replayed
//!   into memory; a never-compacted etcd replays all of it from
//!   revision 2. `connect` returns once the mirror has reached the revision
//!   etcd had when it connected.
//! * **Lost watch** (etcd restarted, network): the mirror re-watches from
//!   its revision + 1 with backoff; nothing is missed because etcd keeps
//!   history until compacted. If etcd compacted past the mirror (or the
//!   mirror finds an inconsistency) it **reloads** the whole key space at
//!   etcd's current revision and ends every watcher's stream (their clients
//!   re-list, as after a 410). Writes meanwhile fail after their timeout
//!   with an `Io` error; reads keep answering from the last good revision.
//! * `compact` compacts etcd and the mirror's history; `flush` is a no-op
//!   (etcd acknowledges after its own fsync). The mirror's history is bounded
//!   by `history_max_events`/`history_max_bytes` as in the embedded store,
//!   so `compacted_revision()` may be newer than etcd's own.
//!
//! Limits: values above etcd's `--max-request-bytes` (1.5 MiB by default)
//! are refused by etcd; TLS and authentication to etcd are not supported
//! yet (use etcd on 127.0.0.1 or a trusted network). Keys that are not
//! UTF-8 (written by other clients) are not mirrored.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType,
    GetOptions, KvClient, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchClient,
    WatchOptions,
};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::watch;

use crate::state::{HistoryLimits, State};
use crate::writer::check_sizes;
use crate::{read_lock, write_lock, KeyValue, StoreError, StoreOptions};

/// A unary etcd call (one transaction, one page) that takes longer is
/// reported as an error.
const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a committed write waits for the mirror to show it.
const MIRROR_WAIT: Duration = Duration::from_secs(30);
/// How long `connect` waits for the mirror to load etcd's history.
const LOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// Keys per Range page when loading the key space.
const PAGE: i64 = 1000;
/// gRPC decode limit (tonic's default of 4 MiB is below one page of big objects).
const MAX_MESSAGE: usize = 1 << 30;

/// Whether a `--datastore` value names etcd rather than a directory.
pub(crate) fn is_etcd_url(s: &str) -> bool {
    s.starts_with("etcd://")
}

fn bad_endpoint(s: &str, why: &str) -> StoreError {
    StoreError::Io(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "etcd endpoint {s:?}: {why}; expected etcd://host:port (several: etcd://h1:p1,h2:p2)"
        ),
    ))
}

/// Parses `etcd://h:p[,h:p...]` (also `http://h:p` or `h:p`) into the
/// client's `http://h:p` URLs.
pub(crate) fn parse_endpoints(s: &str) -> Result<Vec<String>, StoreError> {
    if s.starts_with("https://") || s.starts_with("etcds://") {
        return Err(bad_endpoint(
            s,
            "TLS to etcd is not supported yet (serve etcd's client URL over http on 127.0.0.1 or a trusted network)",
        ));
    }
    let rest = s
        .strip_prefix("etcd://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let mut out = Vec::new();
    for hp in rest.split(',') {
        let hp = hp.trim().trim_end_matches('/');
        let Some((host, port)) = hp.rsplit_once(':') else {
            return Err(bad_endpoint(s, &format!("{hp:?} has no port")));
        };
        if host.is_empty() || hp.contains('/') || hp.contains('@') {
            return Err(bad_endpoint(s, &format!("{hp:?} is not host:port")));
        }
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(bad_endpoint(s, &format!("{port:?} is not a port number")));
        }
        out.push(format!("http://{hp}"));
    }
    Ok(out)
}

fn etcd_error(url: &str, what: &str, e: etcd_client::Error) -> StoreError {
    let msg = e.to_string();
    let hint = if msg.contains("request is too large")
        || msg.contains("received message larger than max")
    {
        "; etcd refuses requests over its --max-request-bytes (1.5 MiB by default): raise it or store smaller objects"
    } else if matches!(e, etcd_client::Error::TransportError(_))
        || msg.contains("Unavailable")
        || msg.contains("transport")
    {
        "; check that etcd is running and reachable at that address"
    } else {
        ""
    };
    StoreError::Io(io::Error::other(format!(
        "etcd at {url}: {what}: {msg}{hint}"
    )))
}

fn timed_out(url: &str, what: &str) -> StoreError {
    StoreError::Io(io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "etcd at {url} did not answer {what} within {}s; if this was a write it may or may not have been applied (re-read and retry); check that etcd is running",
            OP_TIMEOUT.as_secs()
        ),
    ))
}

fn is_compacted(e: &etcd_client::Error) -> bool {
    e.to_string()
        .contains("required revision has been compacted")
}

fn header_revision(resp: &TxnResponse, url: &str) -> Result<i64, StoreError> {
    resp.header().map(|h| h.revision()).ok_or_else(|| {
        StoreError::Io(io::Error::other(format!(
            "etcd at {url} answered a transaction without a header"
        )))
    })
}

/// Our `KeyValue` for an etcd one; `None` for a key that is not UTF-8.
fn convert(kv: &etcd_client::KeyValue) -> Option<KeyValue> {
    let key = std::str::from_utf8(kv.key()).ok()?.to_string();
    Some(KeyValue {
        key,
        value: Arc::from(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

async fn with_timeout<T>(
    url: &str,
    what: &str,
    fut: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(OP_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(etcd_error(url, what, e)),
        Err(_) => Err(timed_out(url, what)),
    }
}

/// etcd's current revision (a count-only Range of one key).
async fn current_revision(kv: &mut KvClient, url: &str) -> Result<i64, StoreError> {
    let resp = with_timeout(
        url,
        "read the current revision (--datastore)",
        kv.get(vec![0u8], Some(GetOptions::new().with_count_only())),
    )
    .await?;
    resp.header().map(|h| h.revision()).ok_or_else(|| {
        StoreError::Io(io::Error::other(format!(
            "etcd at {url} answered a Range without a header"
        )))
    })
}

/// Whether a read at `rev` is still possible (`rev >=` etcd's compacted revision).
async fn readable_at(kv: &mut KvClient, url: &str, rev: i64) -> Result<bool, StoreError> {
    let opts = GetOptions::new().with_count_only().with_revision(rev);
    match tokio::time::timeout(OP_TIMEOUT, kv.get(vec![0u8], Some(opts))).await {
        Ok(Ok(_)) => Ok(true),
        Ok(Err(e)) if is_compacted(&e) => Ok(false),
        Ok(Err(e)) => Err(etcd_error(url, "probe the compacted revision", e)),
        Err(_) => Err(timed_out(url, "probe the compacted revision")),
    }
}

/// etcd's compacted revision (0 if never compacted). etcd has no RPC for
/// it; a Range at revision `r` fails exactly when `r` is below it, so
/// binary-search `(1, current]`.
async fn etcd_compacted_revision(
    kv: &mut KvClient,
    url: &str,
    current: i64,
) -> Result<i64, StoreError> {
    if current <= 1 || readable_at(kv, url, 1).await? {
        return Ok(0);
    }
    let (mut lo, mut hi) = (1, current); // unreadable at lo, readable at hi
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if readable_at(kv, url, mid).await? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

/// Every key at revision `rev` (0: the current one), paged, all pages at
/// the same revision. Returns the map and the revision read at.
async fn range_all(
    kv: &mut KvClient,
    url: &str,
    rev: i64,
) -> Result<(BTreeMap<String, KeyValue>, i64), StoreError> {
    let mut map = BTreeMap::new();
    let mut from = vec![0u8];
    let mut at = rev;
    loop {
        let opts = GetOptions::new()
            .with_range(vec![0u8])
            .with_revision(at)
            .with_limit(PAGE);
        let resp =
            with_timeout(url, "load the key space", kv.get(from.clone(), Some(opts))).await?;
        if at <= 0 {
            at = resp.header().map_or(0, |h| h.revision());
        }
        for k in resp.kvs() {
            if let Some(v) = convert(k) {
                map.insert(v.key.clone(), v);
            }
        }
        match resp.kvs().last() {
            Some(last) if resp.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => break,
        }
    }
    Ok((map, at))
}

/// The etcd backend of a [`crate::Store`].
pub(crate) struct Etcd {
    url: String,
    kv: KvClient,
    state: Arc<RwLock<State>>,
    handle: Handle,
    /// Drives the client and the mirror; shut down (in the background, so a
    /// store may be dropped inside any async context) with the store.
    rt: Option<Runtime>,
    /// The revision the mirror has applied up to.
    mirror_rev: watch::Receiver<i64>,
    stop: watch::Sender<bool>,
    closed: AtomicBool,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Etcd {
    pub(crate) async fn connect(
        endpoint: &str,
        opts: &StoreOptions,
    ) -> Result<(Arc<RwLock<State>>, Etcd), StoreError> {
        let endpoints = parse_endpoints(endpoint)?;
        let url = format!(
            "etcd://{}",
            endpoints
                .iter()
                .map(|e| e.trim_start_matches("http://"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("minik-etcd")
            .enable_all()
            .build()
            .map_err(|e| {
                StoreError::Io(io::Error::new(
                    e.kind(),
                    format!("start the etcd client runtime: {e}"),
                ))
            })?;
        let handle = rt.handle().clone();
        let limits = HistoryLimits {
            max_events: opts.history_max_events,
            max_bytes: opts.history_max_bytes,
        };
        let (stop, stop_rx) = watch::channel(false);
        let u = url.clone();
        let started = handle
            .spawn(async move { start(endpoints, u, limits, stop_rx).await })
            .await;
        let (kv, state, mirror_rev) = match started {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                rt.shutdown_background();
                return Err(e);
            }
            Err(e) => {
                rt.shutdown_background();
                return Err(StoreError::Io(io::Error::other(format!(
                    "connecting to etcd at {url} failed: {e}"
                ))));
            }
        };
        tracing::info!(%url, revision = *mirror_rev.borrow(), "store: connected to etcd");
        Ok((
            state.clone(),
            Etcd {
                url,
                kv,
                state,
                handle,
                rt: Some(rt),
                mirror_rev,
                stop,
                closed: AtomicBool::new(false),
            },
        ))
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    /// Runs `fut` on the client's runtime (it works from any caller's
    /// runtime, and survives a caller's runtime being dropped).
    async fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.handle
            .spawn(fut)
            .await
            .map_err(|_| StoreError::Closed)?
    }

    /// Commits `txn`, then waits until the mirror has reached the
    /// transaction's header revision: the new revision when it succeeded,
    /// etcd's current one when its compare failed. So a caller reads its
    /// own writes, and after a `Conflict`/`AlreadyExists` a re-read shows
    /// (at least) the version it lost against instead of spinning on a
    /// stale one.
    async fn commit(&self, what: String, txn: Txn) -> Result<TxnResponse, StoreError> {
        let mut kv = self.kv.clone();
        let mut mirror = self.mirror_rev.clone();
        let url = self.url.clone();
        self.run(async move {
            let resp = with_timeout(&url, &what, kv.txn(txn)).await?;
            let rev = header_revision(&resp, &url)?;
            if tokio::time::timeout(MIRROR_WAIT, mirror.wait_for(|r| *r >= rev))
                .await
                .is_err()
            {
                tracing::warn!(
                    %url,
                    revision = rev,
                    "store: etcd's revision is not yet visible in the mirror (its watch is behind or lost)"
                );
            }
            Ok(resp)
        })
        .await
    }

    pub(crate) async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        self.check_open()?;
        check_sizes(key, value.len())?;
        let stored: Arc<[u8]> = Arc::from(value.as_slice());
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        let resp = self.commit(format!("create {key}"), txn).await?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists {
                key: key.to_string(),
            });
        }
        let rev = header_revision(&resp, &self.url)?;
        Ok(KeyValue {
            key: key.to_string(),
            value: stored,
            create_revision: rev,
            mod_revision: rev,
        })
    }

    /// The compares for "`key` exists (and has mod revision `expected`)".
    fn exists(key: &str, expected: Option<i64>) -> Vec<Compare> {
        let mut c = vec![Compare::create_revision(key, CompareOp::Greater, 0)];
        if let Some(rev) = expected {
            c.push(Compare::mod_revision(key, CompareOp::Equal, rev));
        }
        c
    }

    /// `NotFound` or `Conflict` from the failed branch's Get of `key`.
    fn failed(key: &str, resp: &TxnResponse) -> StoreError {
        let current = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.mod_revision()),
            _ => None,
        });
        match current {
            None => StoreError::NotFound {
                key: key.to_string(),
            },
            Some(current_revision) => StoreError::Conflict {
                key: key.to_string(),
                current_revision,
            },
        }
    }

    fn unexpected(&self, what: &str) -> StoreError {
        StoreError::Io(io::Error::other(format!("etcd at {}: {what}", self.url)))
    }

    pub(crate) async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<i64>,
    ) -> Result<KeyValue, StoreError> {
        self.check_open()?;
        check_sizes(key, value.len())?;
        let stored: Arc<[u8]> = Arc::from(value.as_slice());
        let txn = Txn::new()
            .when(Self::exists(key, expected))
            .and_then([TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.commit(format!("update {key}"), txn).await?;
        if !resp.succeeded() {
            return Err(Self::failed(key, &resp));
        }
        let rev = header_revision(&resp, &self.url)?;
        let create_revision = resp
            .op_responses()
            .into_iter()
            .find_map(|r| match r {
                TxnOpResponse::Put(p) => p.prev_key().map(|kv| kv.create_revision()),
                _ => None,
            })
            .ok_or_else(|| {
                self.unexpected(&format!("the update of {key} returned no previous value"))
            })?;
        Ok(KeyValue {
            key: key.to_string(),
            value: stored,
            create_revision,
            mod_revision: rev,
        })
    }

    pub(crate) async fn delete(
        &self,
        key: &str,
        expected: Option<i64>,
    ) -> Result<KeyValue, StoreError> {
        self.check_open()?;
        if key.is_empty() {
            return Err(StoreError::NotFound { key: String::new() });
        }
        let txn = Txn::new()
            .when(Self::exists(key, expected))
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.commit(format!("delete {key}"), txn).await?;
        if !resp.succeeded() {
            return Err(Self::failed(key, &resp));
        }
        let rev = header_revision(&resp, &self.url)?;
        let mut last = resp
            .op_responses()
            .into_iter()
            .find_map(|r| match r {
                TxnOpResponse::Delete(d) => d.prev_kvs().first().and_then(convert),
                _ => None,
            })
            .ok_or_else(|| {
                self.unexpected(&format!("the delete of {key} returned no previous value"))
            })?;
        last.mod_revision = rev;
        Ok(last)
    }

    pub(crate) async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        self.check_open()?;
        // The mirror's revision is never ahead of etcd's.
        let target = revision.min(read_lock(&self.state).rev);
        if target < 1 {
            return Ok(());
        }
        let mut kv = self.kv.clone();
        let url = self.url.clone();
        self.run(async move {
            let opts = CompactionOptions::new().with_physical();
            match tokio::time::timeout(OP_TIMEOUT, kv.compact(target, Some(opts))).await {
                Ok(Ok(_)) => Ok(()),
                // Already compacted at or beyond `target`: nothing to do.
                Ok(Err(e)) if is_compacted(&e) => Ok(()),
                Ok(Err(e)) => Err(etcd_error(&url, &format!("compact to {target}"), e)),
                Err(_) => Err(timed_out(&url, "a compaction")),
            }
        })
        .await?;
        write_lock(&self.state).compact_to(target);
        Ok(())
    }

    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        self.check_open()
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _ = self.stop.send(true);
        write_lock(&self.state).close_watchers();
    }
}

/// Connects, loads the key space and history, starts the mirror and waits
/// until it has caught up with etcd's revision at connect time.
async fn start(
    endpoints: Vec<String>,
    url: String,
    limits: HistoryLimits,
    stop: watch::Receiver<bool>,
) -> Result<(KvClient, Arc<RwLock<State>>, watch::Receiver<i64>), StoreError> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
        .with_keep_alive_while_idle(true);
    let client = with_timeout(&url, "connect", Client::connect(&endpoints, Some(options))).await?;
    let mut kv = client.kv_client().max_decoding_message_size(MAX_MESSAGE);
    let wc = client.watch_client().max_decoding_message_size(MAX_MESSAGE);
    let current = current_revision(&mut kv, &url).await?;
    let compacted = etcd_compacted_revision(&mut kv, &url, current).await?;
    let from = compacted
        .max(current.saturating_sub(limits.max_events as i64))
        .max(1);
    let mut state = State::new(limits);
    if from > 1 {
        let (map, _) = range_all(&mut kv, &url, from).await?;
        state.reset(map, from);
    }
    let loaded = state.rev;
    let state = Arc::new(RwLock::new(state));
    let (rev_tx, mut rev_rx) = watch::channel(loaded);
    let mirror = Mirror {
        url: url.clone(),
        kv: kv.clone(),
        wc,
        state: state.clone(),
        rev_tx,
        stop,
    };
    tokio::spawn(mirror.run());
    match tokio::time::timeout(LOAD_TIMEOUT, rev_rx.wait_for(|r| *r >= current)).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => {
            return Err(StoreError::Io(io::Error::other(format!(
                "etcd at {url}: the watch that mirrors etcd stopped while loading history (see the log)"
            ))))
        }
        Err(_) => {
            return Err(StoreError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "etcd at {url}: loading history up to revision {current} took longer than {}s; compact etcd or check its health",
                    LOAD_TIMEOUT.as_secs()
                ),
            )))
        }
    }
    drop(client);
    Ok((kv, state, rev_rx))
}

/// Why following the watch stopped.
enum Follow {
    Stop,
    /// The mirror must reload the key space (etcd compacted past it, or it
    /// no longer matches etcd).
    Reload(String),
    /// The stream broke; re-watch from the mirror's revision.
    Lost(String),
}

struct Mirror {
    url: String,
    kv: KvClient,
    wc: WatchClient,
    state: Arc<RwLock<State>>,
    rev_tx: watch::Sender<i64>,
    stop: watch::Receiver<bool>,
}

impl Mirror {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            if *self.stop.borrow() {
                return;
            }
            let from = read_lock(&self.state).rev + 1;
            match self.follow(from).await {
                Follow::Stop => return,
                Follow::Reload(why) => match self.reload().await {
                    Ok(rev) => {
                        tracing::warn!(url = %self.url, revision = rev, reason = %why,
                            "store: reloaded the etcd mirror; every watch was ended so clients re-list");
                        backoff = Duration::from_millis(100);
                        continue;
                    }
                    Err(e) => tracing::warn!(url = %self.url, error = %e, reason = %why,
                        "store: reloading the etcd mirror failed; retrying"),
                },
                Follow::Lost(why) => tracing::warn!(url = %self.url, from, reason = %why,
                    "store: the etcd watch broke; re-watching (reads answer from the last revision seen meanwhile)"),
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.stop.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn follow(&mut self, from: i64) -> Follow {
        let opts = WatchOptions::new()
            .with_all_keys()
            .with_start_revision(from);
        let mut stream = tokio::select! {
            r = self.wc.watch(Vec::<u8>::new(), Some(opts)) => match r {
                Ok(s) => s,
                Err(e) => return Follow::Lost(e.to_string()),
            },
            _ = self.stop.changed() => return Follow::Stop,
        };
        loop {
            let msg = tokio::select! {
                m = stream.message() => m,
                _ = self.stop.changed() => return Follow::Stop,
            };
            let resp = match msg {
                Ok(Some(resp)) => resp,
                Ok(None) => return Follow::Lost("etcd ended the watch stream".into()),
                Err(e) => return Follow::Lost(e.to_string()),
            };
            if resp.compact_revision() > 0 {
                return Follow::Reload(format!(
                    "etcd compacted to revision {} past the mirror",
                    resp.compact_revision()
                ));
            }
            if resp.canceled() {
                return Follow::Lost(format!("etcd canceled the watch: {}", resp.cancel_reason()));
            }
            if resp.events().is_empty() {
                continue;
            }
            if let Err(why) = self.apply(resp.events()) {
                return Follow::Reload(why);
            }
        }
    }

    /// Applies one response's events and fans them out, under the state's
    /// write lock (as the embedded writer does), then publishes the revision.
    fn apply(&self, events: &[etcd_client::Event]) -> Result<(), String> {
        let mut st = write_lock(&self.state);
        let mut out = Vec::with_capacity(events.len());
        for ev in events {
            let Some(kv) = ev.kv() else { continue };
            let rev = kv.mod_revision();
            let Ok(key) = std::str::from_utf8(kv.key()) else {
                st.rev = st.rev.max(rev);
                continue;
            };
            let put = match ev.event_type() {
                EventType::Put => Some((kv.create_revision(), Arc::from(kv.value()))),
                EventType::Delete => None,
            };
            out.push(st.apply_remote(rev, key.to_string(), put)?);
        }
        st.broadcast(&out);
        let rev = st.rev;
        drop(st);
        self.rev_tx.send_replace(rev);
        Ok(())
    }

    async fn reload(&mut self) -> Result<i64, StoreError> {
        let (map, rev) = range_all(&mut self.kv, &self.url, 0).await?;
        write_lock(&self.state).reset(map, rev);
        self.rev_tx.send_replace(rev);
        Ok(rev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_refuse_what_is_not_supported() {
        assert_eq!(
            parse_endpoints("etcd://127.0.0.1:2379").unwrap(),
            ["http://127.0.0.1:2379"]
        );
        assert_eq!(
            parse_endpoints("etcd://a:1,b:2/").unwrap(),
            ["http://a:1", "http://b:2"]
        );
        assert_eq!(
            parse_endpoints("localhost:2379").unwrap(),
            ["http://localhost:2379"]
        );
        assert_eq!(
            parse_endpoints("http://[::1]:2379").unwrap(),
            ["http://[::1]:2379"]
        );
        for bad in [
            "etcd://host",
            "etcd://:2379",
            "etcd://h:0",
            "etcd://h:99999",
            "etcd://h:1/x",
            "https://h:2379",
            "etcds://h:2379",
            "etcd://u@h:1",
        ] {
            let e = parse_endpoints(bad).unwrap_err();
            assert!(e.to_string().contains("etcd://host:port"), "{bad}: {e}");
        }
        assert!(is_etcd_url("etcd://h:1"));
        assert!(!is_etcd_url("/var/lib/minik/store"));
    }
}
