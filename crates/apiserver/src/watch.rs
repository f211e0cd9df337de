//! Watch: a chunked HTTP response with one JSON event per line, fed by a
//! store watch. Sends the current state first when no resourceVersion (or
//! "0") is given, applies label/field selectors (an object that stops
//! matching is sent as DELETED, as kube's cacher does), sends BOOKMARKs when
//! allowed (every minute, and 2 s before `timeoutSeconds` runs out), an
//! ERROR 410 event when the revision is compacted, and ends on
//! `timeoutSeconds` or when the client goes away.

use crate::error::ApiError;
use crate::request::{Output, Query, ResourcePath};
use crate::rest::{from_kv, storage_prefix, Selectors};
use crate::Inner;
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use minik_apimachinery::ResourceInfo;
use minik_store::{Event, EventType, StoreError};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// One wire line: `{"type":"ADDED","object":{...}}\n`.
pub fn event_line(ty: &str, obj: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": ty, "object": obj})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// Maps a store event to a watch event under the selectors (None = not visible).
pub fn convert(info: &ResourceInfo, ev: &Event, sel: &Selectors) -> Option<(&'static str, Value)> {
    match ev.event_type {
        EventType::Put => {
            let new = from_kv(info, &ev.kv).ok()?;
            let new_match = sel.matches(&new);
            let old = ev.prev.as_ref().and_then(|p| from_kv(info, p).ok());
            let old_match = old.as_ref().map(|o| sel.matches(o));
            match (new_match, old_match) {
                (true, Some(true)) => Some(("MODIFIED", new)),
                (true, _) => Some(("ADDED", new)),
                (false, Some(true)) => {
                    let mut old = old?;
                    crate::rest::set_rv(&mut old, ev.kv.mod_revision);
                    Some(("DELETED", old))
                }
                (false, _) => None,
            }
        }
        EventType::Delete => {
            let old = from_kv(info, &ev.kv).ok()?;
            sel.matches(&old).then_some(("DELETED", old))
        }
    }
}

/// Watch events decoded and encoded once, shared by every watch that sends
/// them: with 200 informers on pods, one update is parsed, rendered and
/// serialized once instead of 200 times. Keyed by the resource row, the
/// store key and the revision (an object at a revision never changes);
/// the oldest entries go first once `WATCH_CACHE_ENTRIES` is reached.
#[derive(Default)]
pub(crate) struct WatchCache {
    m: std::sync::Mutex<CacheMap>,
}

#[derive(Default)]
struct CacheMap {
    entries: std::collections::HashMap<CacheKey, Cached>,
    order: std::collections::VecDeque<CacheKey>,
}

/// (address of the ResourceInfo row, store key, mod revision)
type CacheKey = (usize, String, i64);

struct Cached {
    obj: Arc<Value>,
    /// Encoded lines of this object: (event type, output) → bytes.
    lines: Vec<(&'static str, Output, Bytes)>,
}

/// How many decoded objects the cache keeps (a few MB at most).
const WATCH_CACHE_ENTRIES: usize = 256;

impl WatchCache {
    fn key(info: &ResourceInfo, kv: &minik_store::KeyValue) -> CacheKey {
        (
            info as *const ResourceInfo as usize,
            kv.key.clone(),
            kv.mod_revision,
        )
    }

    /// The object of a stored key-value as `from_kv` makes it, decoded once.
    fn object(&self, info: &ResourceInfo, kv: &minik_store::KeyValue) -> Option<Arc<Value>> {
        let key = Self::key(info, kv);
        if let Some(c) = self.m.lock().ok()?.entries.get(&key) {
            return Some(c.obj.clone());
        }
        let obj = Arc::new(from_kv(info, kv).ok()?);
        let mut m = self.m.lock().ok()?;
        if !m.entries.contains_key(&key) {
            while m.order.len() >= WATCH_CACHE_ENTRIES {
                if let Some(old) = m.order.pop_front() {
                    m.entries.remove(&old);
                }
            }
            m.order.push_back(key.clone());
            m.entries.insert(
                key,
                Cached {
                    obj: obj.clone(),
                    lines: Vec::new(),
                },
            );
        }
        Some(obj)
    }

    /// The encoded event line for this object, made by `make` on first use.
    /// Tables are not cached (their cells hold ages relative to now).
    fn line(
        &self,
        info: &ResourceInfo,
        kv: &minik_store::KeyValue,
        ty: &'static str,
        output: Output,
        make: impl FnOnce() -> Bytes,
    ) -> Bytes {
        if matches!(output, Output::Table(_)) {
            return make();
        }
        let key = Self::key(info, kv);
        if let Ok(m) = self.m.lock() {
            if let Some(b) = m.entries.get(&key).and_then(|c| {
                c.lines
                    .iter()
                    .find(|(t, o, _)| *t == ty && *o == output)
                    .map(|(_, _, b)| b.clone())
            }) {
                return b;
            }
        }
        let b = make();
        if let Ok(mut m) = self.m.lock() {
            if let Some(c) = m.entries.get_mut(&key) {
                c.lines.push((ty, output, b.clone()));
            }
        }
        b
    }
}

/// `convert` through the shared cache: the event type and the line to send.
/// Only an object leaving the selectors (sent as DELETED with the new
/// revision) is built outside the cache: it is rare.
fn convert_cached(
    cache: &WatchCache,
    info: &ResourceInfo,
    ev: &Event,
    sel: &Selectors,
    output: Output,
    render: impl Fn(&Value) -> Value,
) -> Option<Bytes> {
    let (ty, kv, obj) = match ev.event_type {
        EventType::Put => {
            let new = cache.object(info, &ev.kv)?;
            let new_match = sel.matches(&new);
            let old = ev.prev.as_ref().and_then(|p| cache.object(info, p));
            let old_match = old.as_ref().map(|o| sel.matches(o));
            match (new_match, old_match) {
                (true, Some(true)) => ("MODIFIED", &ev.kv, new),
                (true, _) => ("ADDED", &ev.kv, new),
                (false, Some(true)) => {
                    let (ty, obj) = convert(info, ev, sel)?;
                    return Some(event_line(ty, &render(&obj)));
                }
                (false, _) => return None,
            }
        }
        EventType::Delete => {
            let old = cache.object(info, &ev.kv)?;
            if !sel.matches(&old) {
                return None;
            }
            ("DELETED", &ev.kv, old)
        }
    };
    Some(cache.line(info, kv, ty, output, || event_line(ty, &render(&obj))))
}

fn too_old(rv: i64, compact: i64) -> Value {
    ApiError::gone(format!("too old resource version: {rv} ({compact})")).status()
}

fn bookmark(info: &ResourceInfo, rev: i64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rev.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": info.kind, "apiVersion": info.api_version(), "metadata": meta})
}

/// How often a watch with `allowWatchBookmarks` gets a BOOKMARK.
const BOOKMARK_PERIOD: Duration = Duration::from_secs(60);
/// A watch with a timeout gets its last BOOKMARK this long before it ends.
const BOOKMARK_BEFORE_TIMEOUT: Duration = Duration::from_secs(2);

/// When the next BOOKMARK is due, as kube's cacher decides: every minute,
/// and 2 s before the watch's deadline if that is sooner; none if that
/// moment has come (the client resumes from the last one it got).
fn next_bookmark(
    now: tokio::time::Instant,
    end: tokio::time::Instant,
) -> Option<tokio::time::Instant> {
    let periodic = now + BOOKMARK_PERIOD;
    let before_end = end.checked_sub(BOOKMARK_BEFORE_TIMEOUT)?;
    let at = periodic.min(before_end);
    (at > now).then_some(at)
}

/// Counts an open watch for as long as it lives.
struct WatchCount(Arc<AtomicUsize>);

impl WatchCount {
    fn new(c: Arc<AtomicUsize>) -> WatchCount {
        c.fetch_add(1, Ordering::SeqCst);
        WatchCount(c)
    }
}

impl Drop for WatchCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Starts a watch and returns the streaming response.
pub async fn watch(
    inner: Arc<Inner>,
    p: &ResourcePath,
    q: &Query,
    output: Output,
) -> Result<Response, ApiError> {
    let info = p.info;
    let sel = Selectors::from_query(info, q, p.name.as_deref())?;
    let ns = p.namespace.clone();
    let allow_bookmarks = q.flag("allowWatchBookmarks");
    let send_initial_param = q.get("sendInitialEvents").map(|v| v == "true");
    let rv_param = q.get("resourceVersion").unwrap_or("");
    let rv: Option<i64> = match rv_param {
        "" | "0" => None,
        s => Some(s.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "resourceVersion {s:?} is not valid: use the resourceVersion of a list"
            ))
        })?),
    };
    let send_initial = send_initial_param.unwrap_or(rv.is_none());
    let timeout = match q.int("timeoutSeconds")? {
        Some(t) if t > 0 => Duration::from_secs(t as u64),
        _ => Duration::from_secs(1800 + (rand::random::<u64>() % 1800)),
    };

    let mut initial: Vec<Value> = Vec::new();
    let start_rev = if send_initial {
        let (items, rev, _) = inner.list_objects(info, ns.as_deref(), &sel, 0, None)?;
        initial = items;
        // an explicit rv with sendInitialEvents: still start after the list
        rev
    } else {
        rv.unwrap_or_else(|| inner.store.revision())
    };

    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(256);
    let prefix = storage_prefix(info, ns.as_deref());
    let custom = inner.crds.get(info);
    let render = move |obj: &Value| match custom.as_deref() {
        Some(c) => {
            // schema defaults apply to what is read from storage too
            let mut o = obj.clone();
            c.default_on_read(&mut o);
            crate::rest::render_object_with(info, Some(c), &o, output)
        }
        None => crate::rest::render_object(info, obj, output),
    };
    let store_watch = inner.store.watch(&prefix, start_rev);
    let cache = inner.watch_cache.clone();
    let counter = WatchCount::new(inner.active_watches.clone());
    tokio::spawn(async move {
        let _counted = counter;
        let mut w = match store_watch {
            Ok(w) => w,
            Err(StoreError::Compacted {
                compact_revision, ..
            }) => {
                let _ = tx
                    .send(Ok(event_line(
                        "ERROR",
                        &too_old(start_rev, compact_revision),
                    )))
                    .await;
                return;
            }
            Err(e) => {
                let _ = tx
                    .send(Ok(event_line(
                        "ERROR",
                        &ApiError::internal(e.to_string()).status(),
                    )))
                    .await;
                return;
            }
        };
        for obj in &initial {
            if tx
                .send(Ok(event_line("ADDED", &render(obj))))
                .await
                .is_err()
            {
                return;
            }
        }
        if send_initial
            && allow_bookmarks
            && send_initial_param == Some(true)
            && tx
                .send(Ok(event_line("BOOKMARK", &bookmark(info, start_rev, true))))
                .await
                .is_err()
        {
            return;
        }
        let end = tokio::time::Instant::now() + timeout;
        let deadline = tokio::time::sleep_until(end);
        tokio::pin!(deadline);
        let now = tokio::time::Instant::now();
        let mut next_bm = next_bookmark(now, end);
        let bm_timer = tokio::time::sleep_until(next_bm.unwrap_or(end));
        tokio::pin!(bm_timer);
        let mut last_rev = start_rev;
        loop {
            tokio::select! {
                _ = tx.closed() => break,
                _ = &mut deadline => break,
                _ = &mut bm_timer, if allow_bookmarks && next_bm.is_some() => {
                    if tx.send(Ok(event_line("BOOKMARK", &bookmark(info, last_rev, false)))).await.is_err() {
                        break;
                    }
                    next_bm = next_bookmark(tokio::time::Instant::now(), end);
                    if let Some(t) = next_bm {
                        bm_timer.as_mut().reset(t);
                    }
                }
                ev = w.next() => {
                    let Some(ev) = ev else { break };
                    last_rev = ev.revision();
                    if let Some(line) = convert_cached(&cache, info, &ev, &sel, output, &render) {
                        if tx.send(Ok(line)).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
    });

    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use minik_apimachinery::resources::find;
    use minik_store::KeyValue;

    fn kv(v: Value, rev: i64) -> KeyValue {
        KeyValue {
            key: "/k".into(),
            value: serde_json::to_vec(&v).unwrap().into(),
            create_revision: 1,
            mod_revision: rev,
        }
    }

    #[test]
    fn cached_events_are_decoded_and_encoded_once_for_all_watchers() {
        let pods = find("", "v1", "pods").unwrap();
        let cache = WatchCache::default();
        let all = Selectors::from_query(pods, &Query::parse(None), None).unwrap();
        let web = Selectors::from_query(pods, &Query::parse(Some("labelSelector=app%3Dweb")), None)
            .unwrap();
        let db = Selectors::from_query(pods, &Query::parse(Some("labelSelector=app%3Ddb")), None)
            .unwrap();
        let p = json!({"metadata": {"name": "p", "labels": {"app": "web"}}});
        let ev = Event {
            event_type: EventType::Put,
            kv: kv(p.clone(), 7),
            prev: Some(kv(p.clone(), 6)),
        };
        let render = |o: &Value| crate::rest::render_object(pods, o, Output::Json);
        let a = convert_cached(&cache, pods, &ev, &all, Output::Json, render).unwrap();
        let b = convert_cached(&cache, pods, &ev, &web, Output::Json, render).unwrap();
        assert!(convert_cached(&cache, pods, &ev, &db, Output::Json, render).is_none());
        // the very same buffer: encoded once
        assert_eq!(a.as_ptr(), b.as_ptr());
        let line: Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(line["type"], "MODIFIED");
        assert_eq!(line["object"]["metadata"]["resourceVersion"], "7");
        // and the same line as the uncached path makes
        let (ty, obj) = convert(pods, &ev, &all).unwrap();
        assert_eq!(a, event_line(ty, &render(&obj)));
        // a delete of the object is its own entry
        let del = Event {
            event_type: EventType::Delete,
            kv: kv(p, 8),
            prev: None,
        };
        let d: Value = serde_json::from_slice(
            &convert_cached(&cache, pods, &del, &web, Output::Json, render).unwrap(),
        )
        .unwrap();
        assert_eq!(d["type"], "DELETED");
    }

    #[test]
    fn selector_transitions_become_added_and_deleted() {
        let pods = find("", "v1", "pods").unwrap();
        let q = Query::parse(Some("labelSelector=app%3Dweb"));
        let sel = Selectors::from_query(pods, &q, None).unwrap();
        let web = json!({"metadata": {"name": "p", "labels": {"app": "web"}}});
        let other = json!({"metadata": {"name": "p", "labels": {"app": "db"}}});
        let created = Event {
            event_type: EventType::Put,
            kv: kv(web.clone(), 2),
            prev: None,
        };
        assert_eq!(convert(pods, &created, &sel).unwrap().0, "ADDED");
        let modified = Event {
            event_type: EventType::Put,
            kv: kv(web.clone(), 3),
            prev: Some(kv(web.clone(), 2)),
        };
        let (ty, obj) = convert(pods, &modified, &sel).unwrap();
        assert_eq!(
            (ty, obj["metadata"]["resourceVersion"].as_str()),
            ("MODIFIED", Some("3"))
        );
        let left = Event {
            event_type: EventType::Put,
            kv: kv(other.clone(), 4),
            prev: Some(kv(web.clone(), 3)),
        };
        let (ty, obj) = convert(pods, &left, &sel).unwrap();
        assert_eq!(ty, "DELETED");
        assert_eq!(obj["metadata"]["labels"]["app"], "web");
        assert_eq!(obj["metadata"]["resourceVersion"], "4");
        let back = Event {
            event_type: EventType::Put,
            kv: kv(web.clone(), 5),
            prev: Some(kv(other.clone(), 4)),
        };
        assert_eq!(convert(pods, &back, &sel).unwrap().0, "ADDED");
        let invisible = Event {
            event_type: EventType::Put,
            kv: kv(other.clone(), 6),
            prev: Some(kv(other, 5)),
        };
        assert!(convert(pods, &invisible, &sel).is_none());
        let deleted = Event {
            event_type: EventType::Delete,
            kv: kv(web, 7),
            prev: None,
        };
        assert_eq!(convert(pods, &deleted, &sel).unwrap().0, "DELETED");
    }

    #[test]
    fn bookmarks_are_periodic_and_just_before_the_deadline() {
        let now = tokio::time::Instant::now();
        let s = Duration::from_secs;
        // a long watch: every minute
        assert_eq!(next_bookmark(now, now + s(1800)), Some(now + s(60)));
        // a short one: 2 s before it ends
        assert_eq!(next_bookmark(now, now + s(10)), Some(now + s(8)));
        // after the pre-timeout bookmark (or a timeout under 2 s): no more
        assert_eq!(next_bookmark(now + s(9), now + s(10)), None);
        assert_eq!(next_bookmark(now, now + s(1)), None);
    }

    #[test]
    fn lines_are_newline_terminated_json() {
        let l = event_line("ADDED", &json!({"a": 1}));
        assert_eq!(&l[..], b"{\"type\":\"ADDED\",\"object\":{\"a\":1}}\n");
        assert_eq!(too_old(5, 10)["code"], 410);
        assert_eq!(too_old(5, 10)["reason"], "Expired");
    }
}
