//! The single writer thread: group commit, WAL appends, snapshots.
//!
//! Owns: the WAL file handle and the store directory lock. Every mutation
//! goes through here: requests queue on a channel; the thread takes
//! everything queued (a batch), validates it against the state plus the
//! batch's own earlier writes, appends all records with one `write`, makes
//! them durable with one `fdatasync`, then applies them to the in-memory
//! state, fans events out to watchers, and only then answers the callers.
//! So an acknowledged write is always on disk, and readers never see a
//! write that could be lost.
//!
//! Must not touch: the read path (readers only take the state's read lock).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio::sync::{mpsc, oneshot};

use crate::codec;
use crate::state::{Mutation, State};
use crate::{write_lock, KeyValue, StoreError, StoreOptions};

pub(crate) const WAL_FILE: &str = "wal";
pub(crate) const SNAPSHOT_FILE: &str = "snapshot";
pub(crate) const WAL_TMP: &str = "wal.tmp";
pub(crate) const SNAPSHOT_TMP: &str = "snapshot.tmp";

/// At most this many requests per group commit.
const MAX_BATCH_REQUESTS: usize = 4096;

pub(crate) type KvReply = oneshot::Sender<Result<KeyValue, StoreError>>;
pub(crate) type UnitReply = oneshot::Sender<Result<(), StoreError>>;

pub(crate) enum Request {
    Create {
        key: String,
        value: Vec<u8>,
        reply: KvReply,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: Option<i64>,
        reply: KvReply,
    },
    Delete {
        key: String,
        expected: Option<i64>,
        reply: KvReply,
    },
    Compact {
        rev: i64,
        reply: UnitReply,
    },
    Flush {
        reply: UnitReply,
    },
    /// Finish what was queued before, close watchers, stop.
    Close {
        reply: Option<oneshot::Sender<()>>,
    },
}

impl Request {
    fn size(&self) -> usize {
        match self {
            Request::Create { key, value, .. } | Request::Update { key, value, .. } => {
                key.len() + value.len() + 64
            }
            Request::Delete { key, .. } => key.len() + 32,
            _ => 16,
        }
    }
}

enum Reply {
    Kv(KvReply, Result<KeyValue, StoreError>),
    Unit(UnitReply, Result<(), StoreError>),
    Close(Option<oneshot::Sender<()>>),
}

pub(crate) struct Writer {
    pub state: Arc<RwLock<State>>,
    pub dir: PathBuf,
    pub wal: File,
    pub wal_len: u64,
    pub last_snapshot_len: u64,
    pub opts: StoreOptions,
    /// Set after a failed append or fsync: the WAL's state is unknown
    /// (fsync errors cannot be retried safely), so every later write fails.
    pub failed: Option<String>,
    pub rx: mpsc::UnboundedReceiver<Request>,
    /// Holds the directory lock until the thread ends.
    pub _lock: File,
}

pub(crate) fn io_error(msg: impl Into<String>) -> StoreError {
    StoreError::Io(io::Error::other(msg.into()))
}

fn clone_io(e: &io::Error, what: &str) -> StoreError {
    StoreError::Io(io::Error::new(e.kind(), format!("{what}: {e}")))
}

/// fsyncs a directory so a rename or file creation in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir/name` atomically with just a header: write a temp file,
/// fsync, rename, fsync the directory. Returns the open handle (positioned
/// at the end).
pub(crate) fn create_fresh_wal(dir: &Path) -> io::Result<File> {
    let tmp = dir.join(WAL_TMP);
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&tmp)?;
    f.write_all(&codec::file_header(codec::WAL_MAGIC))?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(WAL_FILE))?;
    sync_dir(dir)?;
    Ok(f)
}

impl Writer {
    pub(crate) fn run(mut self) {
        // Ends all watches when this thread stops, even by a panic, so no
        // watcher waits forever on a store that will never write again.
        struct CloseWatchersOnExit(Arc<RwLock<State>>);
        impl Drop for CloseWatchersOnExit {
            fn drop(&mut self) {
                write_lock(&self.0).close_watchers();
            }
        }
        let _close_watchers = CloseWatchersOnExit(self.state.clone());
        let mut buf = Vec::new();
        let mut pending: Option<Request> = None;
        loop {
            let first = match pending.take() {
                Some(r) => r,
                None => match self.rx.blocking_recv() {
                    Some(r) => r,
                    None => break,
                },
            };
            let mut bytes = first.size();
            let mut batch = vec![first];
            let mut closing = matches!(batch[0], Request::Close { .. });
            while !closing && batch.len() < MAX_BATCH_REQUESTS && bytes < self.opts.max_batch_bytes
            {
                match self.rx.try_recv() {
                    Ok(r) => {
                        closing = matches!(r, Request::Close { .. });
                        bytes += r.size();
                        batch.push(r);
                    }
                    Err(_) => break,
                }
            }
            self.commit(batch, &mut buf);
            if closing {
                break;
            }
            if self.failed.is_none()
                && self.wal_len > self.opts.snapshot_wal_bytes.max(self.last_snapshot_len)
            {
                if let Err(e) = self.snapshot() {
                    tracing::error!(dir = %self.dir.display(), error = %e, "store snapshot failed; the WAL keeps growing and will be retried");
                }
            }
            if pending.is_none() && buf.capacity() > (8 << 20) {
                buf = Vec::new();
            }
        }
        // Requests still queued get `Closed` when their reply sender drops with `rx`.
        self.rx.close();
        while let Ok(r) = self.rx.try_recv() {
            drop(r);
        }
    }

    /// Validates, persists, applies and answers one batch.
    fn commit(&mut self, batch: Vec<Request>, buf: &mut Vec<u8>) {
        let mut replies = Vec::with_capacity(batch.len());
        let mut mutations = Vec::new();
        buf.clear();

        if let Some(why) = &self.failed {
            for r in batch {
                let err = || {
                    io_error(format!("the store stopped accepting writes after an earlier disk error ({why}); restart minik after checking the disk"))
                };
                match r {
                    Request::Create { reply, .. }
                    | Request::Update { reply, .. }
                    | Request::Delete { reply, .. } => replies.push(Reply::Kv(reply, Err(err()))),
                    Request::Compact { reply, .. } | Request::Flush { reply } => {
                        replies.push(Reply::Unit(reply, Err(err())))
                    }
                    Request::Close { reply } => replies.push(Reply::Close(reply)),
                }
            }
            send_replies(replies);
            return;
        }

        {
            let st = self.state.read().unwrap_or_else(|e| e.into_inner());
            // Writes earlier in this batch, not yet in `st`.
            let mut overlay: HashMap<String, Option<KeyValue>> = HashMap::new();
            let mut rev = st.rev;
            let mut compacted = st.compacted;
            let current =
                |overlay: &HashMap<String, Option<KeyValue>>, key: &str| match overlay.get(key) {
                    Some(v) => v.clone(),
                    None => st.kv.get(key).cloned(),
                };
            for r in batch {
                match r {
                    Request::Create { key, value, reply } => {
                        let res = if let Err(e) = check_sizes(&key, value.len()) {
                            Err(e)
                        } else if current(&overlay, &key).is_some() {
                            Err(StoreError::AlreadyExists { key })
                        } else {
                            rev += 1;
                            let kv = KeyValue {
                                key: key.clone(),
                                value: Arc::from(value),
                                create_revision: rev,
                                mod_revision: rev,
                            };
                            mutations.push(Mutation::Put {
                                rev,
                                create_rev: rev,
                                key: key.clone(),
                                value: kv.value.clone(),
                            });
                            overlay.insert(key, Some(kv.clone()));
                            Ok(kv)
                        };
                        replies.push(Reply::Kv(reply, res));
                    }
                    Request::Update {
                        key,
                        value,
                        expected,
                        reply,
                    } => {
                        let res = match (check_sizes(&key, value.len()), current(&overlay, &key)) {
                            (Err(e), _) => Err(e),
                            (Ok(()), None) => Err(StoreError::NotFound { key }),
                            (Ok(()), Some(cur))
                                if expected.is_some_and(|e| e != cur.mod_revision) =>
                            {
                                Err(StoreError::Conflict {
                                    key,
                                    current_revision: cur.mod_revision,
                                })
                            }
                            (Ok(()), Some(cur)) => {
                                rev += 1;
                                let kv = KeyValue {
                                    key: key.clone(),
                                    value: Arc::from(value),
                                    create_revision: cur.create_revision,
                                    mod_revision: rev,
                                };
                                mutations.push(Mutation::Put {
                                    rev,
                                    create_rev: cur.create_revision,
                                    key: key.clone(),
                                    value: kv.value.clone(),
                                });
                                overlay.insert(key, Some(kv.clone()));
                                Ok(kv)
                            }
                        };
                        replies.push(Reply::Kv(reply, res));
                    }
                    Request::Delete {
                        key,
                        expected,
                        reply,
                    } => {
                        let res = match current(&overlay, &key) {
                            None => Err(StoreError::NotFound { key }),
                            Some(cur) if expected.is_some_and(|e| e != cur.mod_revision) => {
                                Err(StoreError::Conflict {
                                    key,
                                    current_revision: cur.mod_revision,
                                })
                            }
                            Some(mut cur) => {
                                rev += 1;
                                mutations.push(Mutation::Delete {
                                    rev,
                                    key: key.clone(),
                                });
                                overlay.insert(key, None);
                                cur.mod_revision = rev;
                                Ok(cur)
                            }
                        };
                        replies.push(Reply::Kv(reply, res));
                    }
                    Request::Compact { rev: target, reply } => {
                        let target = target.min(rev);
                        if target > compacted {
                            compacted = target;
                            mutations.push(Mutation::Compact { rev: target });
                        }
                        replies.push(Reply::Unit(reply, Ok(())));
                    }
                    Request::Flush { reply } => replies.push(Reply::Unit(reply, Ok(()))),
                    Request::Close { reply } => replies.push(Reply::Close(reply)),
                }
            }
        }

        for m in &mutations {
            codec::encode_mutation(buf, m);
        }
        if !buf.is_empty() {
            let res = self
                .wal
                .write_all(buf)
                .map_err(|e| ("append to the WAL", e))
                .and_then(|_| self.wal.sync_data().map_err(|e| ("fdatasync the WAL", e)));
            if let Err((what, e)) = res {
                tracing::error!(dir = %self.dir.display(), error = %e, "store: failed to {what}; refusing further writes");
                self.failed = Some(format!("{what}: {e}"));
                for r in &mut replies {
                    match r {
                        Reply::Kv(_, res) => *res = Err(clone_io(&e, what)),
                        Reply::Unit(_, res) => *res = Err(clone_io(&e, what)),
                        Reply::Close(_) => {}
                    }
                }
                send_replies(replies);
                return;
            }
            self.wal_len += buf.len() as u64;
        }

        if !mutations.is_empty() {
            let mut st = write_lock(&self.state);
            let mut events = Vec::with_capacity(mutations.len());
            for m in mutations {
                match st.apply(m) {
                    Ok(Some(ev)) => events.push(ev),
                    Ok(None) => {}
                    // Validation above makes this unreachable; if it ever
                    // happens the WAL and memory disagree, so stop writing.
                    Err(e) => {
                        tracing::error!(error = %e, "store: internal inconsistency applying a committed write");
                        self.failed = Some(format!("internal inconsistency: {e}"));
                        break;
                    }
                }
            }
            st.broadcast(&events);
        }
        send_replies(replies);
    }

    /// Writes the whole state (and history) to a new snapshot, then starts
    /// an empty WAL. Crash-safe at every step: until `snapshot` is renamed
    /// into place the old snapshot + WAL are complete; after, the old WAL's
    /// records are all at or below the snapshot revision and are skipped.
    fn snapshot(&mut self) -> io::Result<()> {
        let started = std::time::Instant::now();
        let tmp = self.dir.join(SNAPSHOT_TMP);
        let mut f = io::BufWriter::with_capacity(
            1 << 20,
            OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&tmp)?,
        );
        // Copy the state (keys and Arc'd values: cheap) and encode it
        // without holding the lock, so neither readers nor `watch` wait on
        // the disk. Only this thread mutates the state, so the copy is
        // consistent.
        let (rev, compacted, kv, history) = {
            let st = self.state.read().unwrap_or_else(|e| e.into_inner());
            (st.rev, st.compacted, st.kv.clone(), st.history.clone())
        };
        let keys = kv.len();
        let mut len = 0u64;
        codec::encode_snapshot(rev, compacted, &kv, &history, |chunk| {
            len += chunk.len() as u64;
            f.write_all(chunk)
        })?;
        drop((kv, history));
        let f = f.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, self.dir.join(SNAPSHOT_FILE))?;
        sync_dir(&self.dir)?;
        // The snapshot is durable; now replace the WAL. If this fails the
        // old WAL stays in use (its records are skipped on replay).
        let new_wal = create_fresh_wal(&self.dir)?;
        self.wal = new_wal;
        self.wal_len = codec::HEADER_LEN as u64;
        self.last_snapshot_len = len;
        tracing::info!(
            revision = rev,
            keys,
            bytes = len,
            ms = started.elapsed().as_millis() as u64,
            "store snapshot written, WAL truncated"
        );
        Ok(())
    }
}

/// Largest key (bytes) the store accepts.
pub const MAX_KEY_LEN: usize = 64 << 10;
/// Largest value (bytes) the store accepts.
pub const MAX_VALUE_LEN: usize = 32 << 20;

pub(crate) fn check_sizes(key: &str, value_len: usize) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(StoreError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "key of {} bytes: keys must be 1..={MAX_KEY_LEN} bytes",
                key.len()
            ),
        )));
    }
    if value_len > MAX_VALUE_LEN {
        return Err(StoreError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("value for {key} is {value_len} bytes; the store accepts at most {MAX_VALUE_LEN} bytes per value"),
        )));
    }
    Ok(())
}

fn send_replies(replies: Vec<Reply>) {
    for r in replies {
        // A caller that stopped waiting (future dropped) is not an error:
        // its write is committed all the same, as with etcd.
        match r {
            Reply::Kv(tx, res) => {
                let _ = tx.send(res);
            }
            Reply::Unit(tx, res) => {
                let _ = tx.send(res);
            }
            Reply::Close(Some(tx)) => {
                let _ = tx.send(());
            }
            Reply::Close(None) => {}
        }
    }
}
