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
                    if let Some((ty, obj)) = convert(info, &ev, &sel) {
                        if tx.send(Ok(event_line(ty, &render(&obj)))).await.is_err() {
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
