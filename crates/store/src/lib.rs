//! minik-store: the cluster's etcd. An embedded, durable, revisioned
//! key-value store with etcd semantics: a global revision that every write
//! increments, per-key create/mod revisions, compare-and-swap on the mod
//! revision, prefix list (with paging), watch on a prefix from any revision
//! still in history, and compaction.
//!
//! Owns: the files under `<root>/store/` and everything about keeping them
//! correct; and, as a second backend behind the same [`Store`], the
//! connection to a real etcd (`--datastore etcd://host:port`, module
//! `etcd`). Must not touch: JSON or Kubernetes types (values are opaque
//! bytes; the apiserver maps `mod_revision` to `resourceVersion`).
//!
//! # Backends
//!
//! [`Store::open`] is the embedded store described below.
//! [`Store::connect_etcd`] (or [`Store::open_url`] with `etcd://...`) keeps
//! the data in etcd: writes are etcd transactions (etcd decides conflicts
//! and revisions), and a watch-fed mirror of etcd in the same in-memory
//! state serves the synchronous reads and watches (see the `etcd` module
//! for why a mirror rather than blocking reads). The semantics below hold
//! for both, except the file sections; one behaviour suite runs against
//! both (`tests::embedded::*`, `tests::etcd::*`).
//!
//! # Semantics
//!
//! * Revisions follow etcd: a new, empty store is at revision **1**; the
//!   first write gets revision 2; every create, update and delete takes the
//!   next revision. `compact` takes no revision.
//! * A write's future resolves only after its WAL record is `fdatasync`ed
//!   (group commit: one writer thread batches every queued write into one
//!   append + one `fdatasync`). Readers see a write only once it is durable.
//! * `delete` returns (and the `Delete` event carries) the last value with
//!   `mod_revision` set to the deletion's revision; `Event::prev` holds the
//!   value exactly as it was.
//! * Each `list`/`list_page` call reads at the revision it returns. The
//!   store keeps no old versions of keys (no MVCC reads at a past revision),
//!   so successive pages are each consistent but may be read at different
//!   revisions.
//! * History: the last `history_max_events` events (and at most
//!   `history_max_bytes`) stay in memory and in snapshots. `watch(prefix,
//!   after)` needs `after >= compacted_revision()`; it replays history
//!   events with revision > `after`, then goes live. Trimming history or
//!   `compact(rev)` moves `compacted_revision()` forward; older watches get
//!   `StoreError::Compacted` (the apiserver answers 410 Gone).
//! * A watcher has a bounded buffer (`watch_buffer`); one that falls that
//!   far behind is dropped: its stream ends (`next()` → `None`) and the
//!   client re-lists. Writers never block on watchers.
//!
//! # Files
//!
//! `<dir>/LOCK` (advisory `flock`, one open store per directory; open
//! retries for up to 1 s, since a just-forked child briefly shares the lock
//! of a store that was just closed), `<dir>/wal`,
//! `<dir>/snapshot` (absent until the first snapshot), and transiently
//! `wal.tmp` / `snapshot.tmp` (deleted on open).
//!
//! Both files start with a 16-byte header and then hold **frames**:
//!
//! ```text
//! header:  magic[8] ("MINIKWAL" or "MINIKSNP") | version u32 LE (=1) | reserved u32 (=0)
//! frame:   len u32 LE | crc u32 LE | payload[len]
//!          crc = CRC-32/IEEE over (the 4 len bytes ++ payload); 0 < len <= 128 MiB
//! strings: u32 LE length | bytes      (keys are UTF-8)
//! kv:      create_rev i64 | mod_rev i64 | key string | value bytes
//!
//! WAL payloads (one per mutation, in revision order):
//!   0x01 Put      rev i64 | create_rev i64 | key string | value bytes
//!   0x02 Delete   rev i64 | key string
//!   0x03 Compact  rev i64          (history up to rev is dropped; takes no revision)
//!
//! Snapshot payloads (in this order):
//!   0x10 Meta     rev i64 | compacted i64 | kv_count u64 | history_count u64
//!   0x11 KV       kv                       × kv_count, sorted by key
//!   0x12 Event    type u8 (0 Put, 1 Delete) | kv | has_prev u8 | [prev kv]  × history_count
//!   0x1F End
//! ```
//!
//! All integers are little-endian. Open loads the snapshot (any defect is
//! `Corrupt`: it was written to `snapshot.tmp`, fsynced, renamed, and the
//! directory fsynced), then replays WAL records: Put/Delete at or below the
//! snapshot revision are skipped (left over from a crash between snapshot and
//! WAL reset), later ones must follow revision by revision. The first frame
//! that is short, has an implausible length or a bad checksum ends the log:
//! it is a write torn by a crash (never acknowledged, since acknowledgement
//! follows `fdatasync`), so the file is truncated there. If more than
//! 256 MiB would be dropped that cannot be one unfinished batch and open
//! fails with `Corrupt` instead.
//!
//! When the WAL grows past `max(snapshot_wal_bytes, size of the last
//! snapshot)` the writer thread writes a new snapshot (state + history) and
//! replaces the WAL with an empty one (temp file, fsync, rename, dir fsync).

mod codec;
mod crc32;
mod etcd;
mod state;
mod writer;

use std::collections::VecDeque;
use std::fs::{self, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::task::{Context, Poll};

use tokio::sync::{mpsc, oneshot};

use codec::{FrameRead, HEADER_LEN};
use state::{HistoryLimits, Mutation, State};
use writer::{Request, Writer, SNAPSHOT_FILE, SNAPSHOT_TMP, WAL_FILE, WAL_TMP};

pub use writer::{MAX_KEY_LEN, MAX_VALUE_LEN};

/// A torn tail is at most one unfinished batch; anything bigger is damage.
const TORN_TAIL_LIMIT: usize = 256 << 20;

/// One key at one revision.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyValue {
    pub key: String,
    pub value: Arc<[u8]>,
    /// Revision of the write that created the key (kept across updates).
    pub create_revision: i64,
    /// Revision of the last write to the key (the resourceVersion).
    pub mod_revision: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Put,
    Delete,
}

/// A change seen by a watcher.
#[derive(Clone, Debug)]
pub struct Event {
    pub event_type: EventType,
    /// For `Put`: the new value. For `Delete`: the previous value with
    /// `mod_revision` = the deletion's revision.
    pub kv: KeyValue,
    /// The value before this event (`None` for a create).
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision of this event.
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {key} not found")]
    NotFound { key: String },
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    #[error("key {key} was modified concurrently (its mod revision is now {current_revision}); re-read it and retry")]
    Conflict { key: String, current_revision: i64 },
    #[error("revision is compacted: history starts after revision {compact_revision} (current revision {current_revision}); re-list and watch from the new revision")]
    Compacted {
        compact_revision: i64,
        current_revision: i64,
    },
    #[error("store I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
    #[error("the store is closed")]
    Closed,
}

/// Tuning knobs; `StoreOptions::default()` is what minik uses.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Events kept for watch-from-revision (default 10,000).
    pub history_max_events: usize,
    /// Memory bound on the same history (default 64 MiB).
    pub history_max_bytes: usize,
    /// Events buffered per watcher before it is dropped as too slow (default 4,096).
    pub watch_buffer: usize,
    /// Snapshot + WAL reset once the WAL exceeds this (default 64 MiB), or
    /// the last snapshot's size if bigger.
    pub snapshot_wal_bytes: u64,
    /// Upper bound on one group commit (default 16 MiB; at most 64 MiB).
    pub max_batch_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            history_max_events: 10_000,
            history_max_bytes: 64 << 20,
            watch_buffer: 4096,
            snapshot_wal_bytes: 64 << 20,
            max_batch_bytes: 16 << 20,
        }
    }
}

/// Handle to an open store. Cheap to clone; the store closes (pending
/// writes finished, watchers ended, files closed) when the last clone is
/// dropped or on [`Store::close`].
///
/// Two backends sit behind this one type (callers never see which): the
/// embedded store in a directory ([`Store::open`]) and a real etcd
/// ([`Store::connect_etcd`], see the `etcd` module docs). Both keep the
/// key space and the watch history in the same in-memory [`State`], so
/// reads (`get`, `list`, `revision`, `watch`) are synchronous and
/// identical; only writes differ.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    state: Arc<RwLock<State>>,
    watch_buffer: usize,
    backend: Backend,
}

enum Backend {
    Embedded(Embedded),
    Etcd(Box<etcd::Etcd>),
}

/// The embedded backend: the writer thread and its request channel.
struct Embedded {
    tx: mpsc::UnboundedSender<Request>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    dir: PathBuf,
}

impl Drop for Embedded {
    fn drop(&mut self) {
        let _ = self.tx.send(Request::Close { reply: None });
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            // Wait so the directory lock is released when the last handle is gone.
            let _ = h.join();
        }
    }
}

pub(crate) fn read_lock(s: &RwLock<State>) -> RwLockReadGuard<'_, State> {
    s.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write_lock(s: &RwLock<State>) -> RwLockWriteGuard<'_, State> {
    s.write().unwrap_or_else(|e| e.into_inner())
}

fn io_context(e: io::Error, what: impl std::fmt::Display) -> StoreError {
    StoreError::Io(io::Error::new(e.kind(), format!("{what}: {e}")))
}

impl Store {
    /// Opens (creating if needed) the store in `dir` with default options.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, StoreOptions::default())
    }

    /// Opens the store in `dir`: takes the directory lock, loads the
    /// snapshot, replays the WAL (dropping a torn tail record), and starts
    /// the writer thread.
    pub fn open_with(dir: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        let mut opts = opts;
        opts.max_batch_bytes = opts.max_batch_bytes.clamp(1, 64 << 20);
        fs::create_dir_all(dir)
            .map_err(|e| io_context(e, format!("create store directory {}", dir.display())))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_context(e, format!("open {}", lock_path.display())))?;
        // A process forked by this one (the kubelet starting runc, a test
        // spawning a child) holds a copy of a just-closed lock descriptor
        // until it execs, so a lock held a moment ago is retried briefly.
        let mut attempt = 0;
        let locked = loop {
            match lock.try_lock() {
                Err(fs::TryLockError::WouldBlock) if attempt < 100 => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => break other,
            }
        };
        match locked {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Io(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "store directory {} is in use by another store (is a minik node already running?); stop it first",
                        dir.display()
                    ),
                )))
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(io_context(e, format!("lock {}", lock_path.display())))
            }
        }
        for tmp in [WAL_TMP, SNAPSHOT_TMP] {
            match fs::remove_file(dir.join(tmp)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_context(e, format!("remove {}", dir.join(tmp).display()))),
            }
        }

        let mut state = State::new(HistoryLimits {
            max_events: opts.history_max_events,
            max_bytes: opts.history_max_bytes,
        });
        let snap_path = dir.join(SNAPSHOT_FILE);
        let mut last_snapshot_len = 0;
        match fs::read(&snap_path) {
            Ok(buf) => {
                let s = codec::decode_snapshot(&buf).map_err(|e| {
                    StoreError::Corrupt(format!(
                        "snapshot {}: {e}; move the store directory aside to start with an empty cluster",
                        snap_path.display()
                    ))
                })?;
                state.kv = s.kv;
                state.rev = s.rev;
                state.compacted = s.compacted;
                for ev in s.history {
                    state.push_history(ev);
                }
                last_snapshot_len = buf.len() as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_context(e, format!("read {}", snap_path.display()))),
        }
        let base_rev = state.rev;

        let wal_path = dir.join(WAL_FILE);
        let (wal, wal_len) = match fs::read(&wal_path) {
            Ok(buf) => {
                let corrupt = |what: String| {
                    StoreError::Corrupt(format!(
                        "WAL {}: {what}; move the store directory aside to start with an empty cluster",
                        wal_path.display()
                    ))
                };
                codec::check_header(&buf, codec::WAL_MAGIC).map_err(corrupt)?;
                let mut off = HEADER_LEN;
                let mut records = 0u64;
                let valid_len = loop {
                    match codec::read_frame(&buf, off) {
                        FrameRead::Frame(payload, next) => {
                            let m = codec::decode_mutation(payload)
                                .map_err(|e| corrupt(format!("record at offset {off}: {e}")))?;
                            let skip = match &m {
                                Mutation::Put { rev, .. } | Mutation::Delete { rev, .. } => {
                                    *rev <= base_rev
                                }
                                Mutation::Compact { .. } => false,
                            };
                            if !skip {
                                state
                                    .apply(m)
                                    .map_err(|e| corrupt(format!("record at offset {off}: {e}")))?;
                            }
                            records += 1;
                            off = next;
                        }
                        FrameRead::End => break off,
                        FrameRead::Bad(why) => {
                            let dropped = buf.len() - off;
                            if dropped > TORN_TAIL_LIMIT {
                                return Err(corrupt(format!(
                                    "unreadable record at offset {off} ({why}) followed by {dropped} bytes, too much for a write torn by a crash"
                                )));
                            }
                            tracing::warn!(
                                wal = %wal_path.display(),
                                offset = off,
                                dropped_bytes = dropped,
                                reason = %why,
                                "store: dropping a torn record at the end of the WAL (a write interrupted by a crash, never acknowledged)"
                            );
                            break off;
                        }
                    }
                };
                let mut f = OpenOptions::new()
                    .write(true)
                    .open(&wal_path)
                    .map_err(|e| io_context(e, format!("open {}", wal_path.display())))?;
                if valid_len < buf.len() {
                    f.set_len(valid_len as u64)
                        .and_then(|_| f.sync_all())
                        .map_err(|e| io_context(e, format!("truncate {}", wal_path.display())))?;
                }
                f.seek(SeekFrom::End(0))
                    .map_err(|e| io_context(e, format!("seek {}", wal_path.display())))?;
                tracing::debug!(records, revision = state.rev, "store WAL replayed");
                (f, valid_len as u64)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let f = writer::create_fresh_wal(dir)
                    .map_err(|e| io_context(e, format!("create {}", wal_path.display())))?;
                (f, HEADER_LEN as u64)
            }
            Err(e) => return Err(io_context(e, format!("read {}", wal_path.display()))),
        };

        let state = Arc::new(RwLock::new(state));
        let (tx, rx) = mpsc::unbounded_channel();
        let w = Writer {
            state: state.clone(),
            dir: dir.to_path_buf(),
            wal,
            wal_len,
            last_snapshot_len,
            opts: opts.clone(),
            failed: None,
            rx,
            _lock: lock,
        };
        let handle = std::thread::Builder::new()
            .name("minik-store-writer".into())
            .spawn(move || w.run())
            .map_err(|e| io_context(e, "start the store writer thread"))?;
        Ok(Store {
            inner: Arc::new(Inner {
                state,
                watch_buffer: opts.watch_buffer,
                backend: Backend::Embedded(Embedded {
                    tx,
                    writer: Mutex::new(Some(handle)),
                    dir: dir.to_path_buf(),
                }),
            }),
        })
    }

    /// Connects to a real etcd with default options; see
    /// [`Store::connect_etcd_with`].
    pub async fn connect_etcd(endpoint: &str) -> Result<Store, StoreError> {
        Store::connect_etcd_with(endpoint, StoreOptions::default()).await
    }

    /// Connects to etcd at `endpoint` (`etcd://host:port`, several
    /// endpoints comma-separated, or plain `host:port` / `http://host:port`),
    /// loads the key space and the retained history into memory and starts
    /// mirroring it (see the `etcd` module docs). `history_max_events`,
    /// `history_max_bytes` and `watch_buffer` apply as for the embedded
    /// store; the WAL and batch options do not.
    pub async fn connect_etcd_with(
        endpoint: &str,
        opts: StoreOptions,
    ) -> Result<Store, StoreError> {
        let (state, backend) = etcd::Etcd::connect(endpoint, &opts).await?;
        Ok(Store {
            inner: Arc::new(Inner {
                state,
                watch_buffer: opts.watch_buffer,
                backend: Backend::Etcd(Box::new(backend)),
            }),
        })
    }

    /// The node's `--datastore` value: `etcd://host:port[,host:port...]`
    /// connects to etcd, anything else is the embedded store's directory.
    pub async fn open_url(url_or_dir: &str) -> Result<Store, StoreError> {
        if etcd::is_etcd_url(url_or_dir) {
            Store::connect_etcd(url_or_dir).await
        } else {
            Store::open(Path::new(url_or_dir))
        }
    }

    /// The directory this store lives in (the empty path for an etcd store).
    pub fn dir(&self) -> &Path {
        match &self.inner.backend {
            Backend::Embedded(e) => &e.dir,
            Backend::Etcd(_) => Path::new(""),
        }
    }

    /// Where the data lives, for logs and messages: the directory, or
    /// `etcd://host:port`.
    pub fn datastore(&self) -> String {
        match &self.inner.backend {
            Backend::Embedded(e) => e.dir.display().to_string(),
            Backend::Etcd(e) => e.url().to_string(),
        }
    }

    /// Current global revision (1 for an empty store; see the module docs).
    pub fn revision(&self) -> i64 {
        read_lock(&self.inner.state).rev
    }

    /// History covers revisions after this one; older watches are `Compacted`.
    pub fn compacted_revision(&self) -> i64 {
        read_lock(&self.inner.state).compacted
    }

    pub fn get(&self, key: &str) -> Option<KeyValue> {
        read_lock(&self.inner.state).kv.get(key).cloned()
    }

    /// All keys starting with `prefix`, sorted, and the revision read at.
    pub fn list(&self, prefix: &str) -> (Vec<KeyValue>, i64) {
        let st = read_lock(&self.inner.state);
        let items = state::prefix_range(&st.kv, prefix, None).cloned().collect();
        (items, st.rev)
    }

    /// Up to `limit` keys starting with `prefix` and sorting after
    /// `start_after` (the last key of the previous page), the revision read
    /// at, and whether more keys follow. `limit == 0` means no limit.
    pub fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> (Vec<KeyValue>, i64, bool) {
        let st = read_lock(&self.inner.state);
        let mut it = state::prefix_range(&st.kv, prefix, start_after);
        let limit = if limit == 0 { usize::MAX } else { limit };
        let items: Vec<KeyValue> = it.by_ref().take(limit).cloned().collect();
        let more = it.next().is_some();
        (items, st.rev, more)
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<T, StoreError> {
        let Backend::Embedded(e) = &self.inner.backend else {
            unreachable!("call() is only used by the embedded backend")
        };
        let (reply, rx) = oneshot::channel();
        e.tx.send(make(reply)).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Creates `key`; `AlreadyExists` if it exists. Resolves once durable.
    pub async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        if let Backend::Etcd(e) = &self.inner.backend {
            return e.create(key, value).await;
        }
        let key = key.to_string();
        self.call(|reply| Request::Create { key, value, reply })
            .await
    }

    /// Replaces the value of an existing `key` (`NotFound` otherwise). With
    /// `Some(rev)`, only if its mod revision is still `rev` (`Conflict`
    /// otherwise). Resolves once durable.
    pub async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Option<i64>,
    ) -> Result<KeyValue, StoreError> {
        if let Backend::Etcd(e) = &self.inner.backend {
            return e.update(key, value, expected_mod_revision).await;
        }
        let key = key.to_string();
        self.call(|reply| Request::Update {
            key,
            value,
            expected: expected_mod_revision,
            reply,
        })
        .await
    }

    /// Deletes `key` (`NotFound` if absent; CAS as in `update`). Returns the
    /// last value with `mod_revision` = the deletion's revision.
    pub async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<i64>,
    ) -> Result<KeyValue, StoreError> {
        if let Backend::Etcd(e) = &self.inner.backend {
            return e.delete(key, expected_mod_revision).await;
        }
        let key = key.to_string();
        self.call(|reply| Request::Delete {
            key,
            expected: expected_mod_revision,
            reply,
        })
        .await
    }

    /// Watches keys starting with `prefix` for events with revision >
    /// `after_revision`: history first, then live. `Compacted` if
    /// `after_revision < compacted_revision()`. A future `after_revision` is
    /// allowed (events arrive once the store reaches it).
    pub fn watch(&self, prefix: &str, after_revision: i64) -> Result<Watch, StoreError> {
        let mut st = write_lock(&self.inner.state);
        if st.closed {
            return Err(StoreError::Closed);
        }
        let (replay, rx) = st
            .add_watcher(prefix, after_revision, self.inner.watch_buffer)
            .map_err(
                |(compact_revision, current_revision)| StoreError::Compacted {
                    compact_revision,
                    current_revision,
                },
            )?;
        Ok(Watch { replay, rx })
    }

    /// Drops history up to and including `revision` (clamped to the current
    /// revision; compacting to an already compacted revision is a no-op).
    /// Durable when it resolves. On etcd this compacts etcd itself too.
    pub async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        if let Backend::Etcd(e) = &self.inner.backend {
            return e.compact(revision).await;
        }
        self.call(|reply| Request::Compact {
            rev: revision,
            reply,
        })
        .await
    }

    /// Resolves when every write submitted before it is durable (they are
    /// fsynced before being acknowledged anyway; this is a barrier for
    /// shutdown). A no-op on etcd, which acknowledges after its own fsync.
    pub async fn flush(&self) -> Result<(), StoreError> {
        if let Backend::Etcd(e) = &self.inner.backend {
            return e.flush();
        }
        self.call(|reply| Request::Flush { reply }).await
    }

    /// Finishes queued writes, ends every watch, and stops the writer (on
    /// etcd: stops mirroring); later writes fail with `Closed` (reads still
    /// answer from memory).
    pub async fn close(&self) -> Result<(), StoreError> {
        let e = match &self.inner.backend {
            Backend::Embedded(e) => e,
            Backend::Etcd(e) => {
                e.close();
                return Ok(());
            }
        };
        let (reply, rx) = oneshot::channel();
        if e.tx.send(Request::Close { reply: Some(reply) }).is_err() {
            return Ok(());
        }
        let _ = rx.await;
        Ok(())
    }
}

/// A stream of events from [`Store::watch`]. `None` means the watch ended
/// (the watcher fell too far behind, or the store closed): re-list and
/// watch again from the list's revision.
pub struct Watch {
    replay: VecDeque<Event>,
    rx: mpsc::Receiver<Event>,
}

impl Watch {
    pub async fn next(&mut self) -> Option<Event> {
        if let Some(ev) = self.replay.pop_front() {
            return Some(ev);
        }
        self.rx.recv().await
    }
}

impl futures::Stream for Watch {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let this = self.get_mut();
        if let Some(ev) = this.replay.pop_front() {
            return Poll::Ready(Some(ev));
        }
        this.rx.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests;
