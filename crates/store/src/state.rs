//! The in-memory state of the store: the current key space (a `BTreeMap`),
//! the global revision, the compacted revision, the bounded history of
//! recent events (for watch-from-revision) and the registered watchers.
//!
//! Owns: applying one [`Mutation`] (from the writer or from WAL replay — the
//! same code path, so a reopened store is bit-for-bit the store that was
//! running), history trimming, fan-out of events to watchers.
//! Must not touch: files (see `writer` and `codec`), locking (callers hold
//! the `RwLock` around `State`).

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::{Event, EventType, KeyValue};

/// One durable change, exactly what a WAL record holds.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Mutation {
    /// Create or update `key` at revision `rev`.
    Put {
        rev: i64,
        create_rev: i64,
        key: String,
        value: Arc<[u8]>,
    },
    /// Delete `key` at revision `rev`.
    Delete { rev: i64, key: String },
    /// Forget history up to and including `rev` (does not use a revision).
    Compact { rev: i64 },
}

/// Bounds on the in-memory event history.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HistoryLimits {
    pub max_events: usize,
    pub max_bytes: usize,
}

struct WatcherSlot {
    prefix: String,
    /// Only events after this revision (a watch may start in the future).
    after: i64,
    tx: mpsc::Sender<Event>,
}

pub(crate) struct State {
    pub(crate) kv: BTreeMap<String, KeyValue>,
    /// Current global revision. A new store is at 1 (as etcd); the first
    /// write gets revision 2.
    pub(crate) rev: i64,
    /// History covers events with revision in `(compacted, rev]`.
    pub(crate) compacted: i64,
    pub(crate) history: VecDeque<Event>,
    history_bytes: usize,
    limits: HistoryLimits,
    watchers: Vec<WatcherSlot>,
    /// Set when the writer stops: no new watches (they would never end).
    pub(crate) closed: bool,
}

/// Rough memory cost of keeping `ev` in the history (values are shared
/// `Arc`s with the live map while current, so this over-counts a bit).
fn event_cost(ev: &Event) -> usize {
    96 + ev.kv.key.len() + ev.kv.value.len() + ev.prev.as_ref().map_or(0, |p| p.value.len())
}

/// Iterates `map` over keys with `prefix`, strictly after `start_after`.
pub(crate) fn prefix_range<'a>(
    map: &'a BTreeMap<String, KeyValue>,
    prefix: &'a str,
    start_after: Option<&'a str>,
) -> impl Iterator<Item = &'a KeyValue> + 'a {
    let lower = match start_after {
        Some(s) if s >= prefix => Bound::Excluded(s),
        _ => Bound::Included(prefix),
    };
    map.range::<str, _>((lower, Bound::Unbounded))
        .take_while(move |(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
}

impl State {
    pub(crate) fn new(limits: HistoryLimits) -> State {
        State {
            kv: BTreeMap::new(),
            rev: 1,
            compacted: 0,
            history: VecDeque::new(),
            history_bytes: 0,
            limits,
            watchers: Vec::new(),
            closed: false,
        }
    }

    /// Applies one mutation. Errors describe an inconsistency (a WAL that
    /// does not follow its snapshot, or a writer bug) and are reported as
    /// `Corrupt` by the caller.
    pub(crate) fn apply(&mut self, m: Mutation) -> Result<Option<Event>, String> {
        match m {
            Mutation::Put {
                rev,
                create_rev,
                key,
                value,
            } => {
                if rev != self.rev + 1 {
                    return Err(format!(
                        "put of {key} at revision {rev} does not follow revision {}",
                        self.rev
                    ));
                }
                let prev = self.kv.get(&key).cloned();
                let expected_create = prev.as_ref().map_or(rev, |p| p.create_revision);
                if create_rev != expected_create {
                    return Err(format!(
                        "put of {key} at revision {rev} has create revision {create_rev}, expected {expected_create}"
                    ));
                }
                let kv = KeyValue {
                    key: key.clone(),
                    value,
                    create_revision: create_rev,
                    mod_revision: rev,
                };
                self.kv.insert(key, kv.clone());
                self.rev = rev;
                let ev = Event {
                    event_type: EventType::Put,
                    kv,
                    prev,
                };
                self.push_history(ev.clone());
                Ok(Some(ev))
            }
            Mutation::Delete { rev, key } => {
                if rev != self.rev + 1 {
                    return Err(format!(
                        "delete of {key} at revision {rev} does not follow revision {}",
                        self.rev
                    ));
                }
                let Some(prev) = self.kv.remove(&key) else {
                    return Err(format!(
                        "delete of {key} at revision {rev}, but the key does not exist"
                    ));
                };
                self.rev = rev;
                let mut kv = prev.clone();
                kv.mod_revision = rev;
                let ev = Event {
                    event_type: EventType::Delete,
                    kv,
                    prev: Some(prev),
                };
                self.push_history(ev.clone());
                Ok(Some(ev))
            }
            Mutation::Compact { rev } => {
                self.compact_to(rev);
                Ok(None)
            }
        }
    }

    /// Applies one change observed on etcd (the `etcd` backend's mirror).
    /// Unlike [`State::apply`] revisions may skip (writes to keys this
    /// mirror does not hold) or repeat (several keys changed by one etcd
    /// transaction), but never go back. `None` as the value is a delete.
    /// An error means the mirror no longer matches etcd (it must reload).
    pub(crate) fn apply_remote(
        &mut self,
        rev: i64,
        key: String,
        put: Option<(i64, Arc<[u8]>)>,
    ) -> Result<Event, String> {
        if rev < self.rev {
            return Err(format!(
                "change of {key} at revision {rev} arrived after revision {}",
                self.rev
            ));
        }
        let ev = match put {
            Some((create_revision, value)) => {
                let kv = KeyValue {
                    key: key.clone(),
                    value,
                    create_revision,
                    mod_revision: rev,
                };
                let prev = self.kv.insert(key, kv.clone());
                Event {
                    event_type: EventType::Put,
                    kv,
                    prev,
                }
            }
            None => {
                let Some(prev) = self.kv.remove(&key) else {
                    return Err(format!(
                        "delete of {key} at revision {rev}, but the key is not in the mirror"
                    ));
                };
                let mut kv = prev.clone();
                kv.mod_revision = rev;
                Event {
                    event_type: EventType::Delete,
                    kv,
                    prev: Some(prev),
                }
            }
        };
        self.rev = rev;
        self.push_history(ev.clone());
        Ok(ev)
    }

    /// Replaces the whole key space with `kv` read at revision `rev` and
    /// forgets history (it no longer connects to the new state): every
    /// watcher's stream ends, so clients re-list, and older watches are
    /// `Compacted`.
    pub(crate) fn reset(&mut self, kv: BTreeMap<String, KeyValue>, rev: i64) {
        self.kv = kv;
        self.rev = rev;
        self.compacted = rev;
        self.history.clear();
        self.history_bytes = 0;
        self.watchers.clear();
    }

    /// Appends to the history and trims it to its bounds; trimming an event
    /// moves the compacted revision past it.
    pub(crate) fn push_history(&mut self, ev: Event) {
        self.history_bytes += event_cost(&ev);
        self.history.push_back(ev);
        while self.history.len() > self.limits.max_events
            || (self.history_bytes > self.limits.max_bytes && !self.history.is_empty())
        {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some(old) = self.history.pop_front() {
            self.history_bytes -= event_cost(&old);
            self.compacted = self.compacted.max(old.kv.mod_revision);
        }
    }

    /// Drops history up to and including `rev` (clamped to the current
    /// revision). Never moves the compacted revision backwards.
    pub(crate) fn compact_to(&mut self, rev: i64) {
        let rev = rev.min(self.rev);
        if rev <= self.compacted {
            return;
        }
        self.compacted = rev;
        while self
            .history
            .front()
            .is_some_and(|e| e.kv.mod_revision <= rev)
        {
            self.pop_oldest();
        }
    }

    /// Registers a watcher on `prefix` for events after `after_revision`.
    /// Returns the history to replay (already filtered) and the live
    /// receiver, or `Err((compacted, current))` if the history no longer
    /// reaches back to `after_revision`. Replay and registration happen
    /// under the same lock as `apply` + `broadcast`, so nothing is lost or
    /// delivered twice.
    #[allow(clippy::type_complexity)]
    pub(crate) fn add_watcher(
        &mut self,
        prefix: &str,
        after_revision: i64,
        capacity: usize,
    ) -> Result<(VecDeque<Event>, mpsc::Receiver<Event>), (i64, i64)> {
        if after_revision < self.compacted {
            return Err((self.compacted, self.rev));
        }
        // History is ordered by revision: binary-search the first event to replay.
        let start = self
            .history
            .partition_point(|e| e.kv.mod_revision <= after_revision);
        let replay: VecDeque<Event> = self
            .history
            .range(start..)
            .filter(|e| e.kv.key.starts_with(prefix))
            .cloned()
            .collect();
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.watchers.push(WatcherSlot {
            prefix: prefix.to_string(),
            after: after_revision,
            tx,
        });
        Ok((replay, rx))
    }

    /// Sends `events` to every interested watcher without ever blocking: a
    /// watcher whose buffer is full is dropped (its stream ends after the
    /// buffered events; the client re-lists, as on a 410 Gone).
    pub(crate) fn broadcast(&mut self, events: &[Event]) {
        self.watchers.retain(|w| {
            if w.tx.is_closed() {
                return false;
            }
            for ev in events {
                if ev.kv.mod_revision <= w.after || !ev.kv.key.starts_with(&w.prefix) {
                    continue;
                }
                match w.tx.try_send(ev.clone()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!(
                            prefix = %w.prefix,
                            revision = ev.kv.mod_revision,
                            "store watcher fell too far behind; closing it so the client re-lists"
                        );
                        return false;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            true
        });
    }

    /// Ends every watch stream and refuses new ones (store closing).
    pub(crate) fn close_watchers(&mut self) {
        self.closed = true;
        self.watchers.clear();
    }

    #[cfg(test)]
    pub(crate) fn watcher_count(&self) -> usize {
        self.watchers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_events: usize) -> HistoryLimits {
        HistoryLimits {
            max_events,
            max_bytes: usize::MAX,
        }
    }

    fn put(rev: i64, create_rev: i64, key: &str, v: &str) -> Mutation {
        Mutation::Put {
            rev,
            create_rev,
            key: key.into(),
            value: Arc::from(v.as_bytes()),
        }
    }

    #[test]
    fn apply_rejects_gaps_and_bad_deletes() {
        let mut s = State::new(limits(100));
        assert!(
            s.apply(put(3, 3, "/a", "x")).is_err(),
            "gap must be rejected"
        );
        s.apply(put(2, 2, "/a", "x")).unwrap();
        assert!(
            s.apply(put(3, 3, "/a", "y")).is_err(),
            "create rev must be kept"
        );
        s.apply(put(3, 2, "/a", "y")).unwrap();
        assert!(s
            .apply(Mutation::Delete {
                rev: 4,
                key: "/b".into()
            })
            .is_err());
        let ev = s
            .apply(Mutation::Delete {
                rev: 4,
                key: "/a".into(),
            })
            .unwrap()
            .unwrap();
        assert_eq!(ev.event_type, EventType::Delete);
        assert_eq!(ev.kv.mod_revision, 4);
        assert_eq!(&*ev.kv.value, b"y");
        assert_eq!(ev.prev.unwrap().mod_revision, 3);
    }

    #[test]
    fn history_bound_moves_compacted_revision() {
        let mut s = State::new(limits(3));
        for rev in 2..=10 {
            s.apply(put(rev, 2, "/k", "v")).unwrap();
        }
        assert_eq!(s.history.len(), 3);
        assert_eq!(s.compacted, 7);
        assert_eq!(s.history.front().unwrap().kv.mod_revision, 8);
        assert!(s.add_watcher("/", 6, 10).is_err());
        let (replay, _rx) = s.add_watcher("/", 7, 10).unwrap();
        assert_eq!(replay.len(), 3);
    }

    #[test]
    fn prefix_range_respects_prefix_and_start_after() {
        let mut s = State::new(limits(100));
        for (i, k) in ["/a/1", "/a/2", "/a/3", "/ab", "/b/1"].iter().enumerate() {
            s.apply(put(i as i64 + 2, i as i64 + 2, k, "v")).unwrap();
        }
        let keys = |p: &str, after: Option<&str>| -> Vec<String> {
            prefix_range(&s.kv, p, after)
                .map(|kv| kv.key.clone())
                .collect()
        };
        assert_eq!(keys("/a/", None), ["/a/1", "/a/2", "/a/3"]);
        assert_eq!(keys("/a/", Some("/a/1")), ["/a/2", "/a/3"]);
        assert_eq!(keys("/a/", Some("/0")), ["/a/1", "/a/2", "/a/3"]);
        assert!(keys("/a/", Some("/a/3")).is_empty());
        assert_eq!(keys("/a", None), ["/a/1", "/a/2", "/a/3", "/ab"]);
        assert_eq!(keys("", None).len(), 5);
    }
}
