//! Event expiry. kube-apiserver stores Events with a one-hour etcd lease so
//! they disappear on their own; minik's store has no leases, so the
//! apiserver sweeps expired Events itself. `expired` is the pure rule.

use crate::rest::storage_prefix;
use crate::Inner;
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use std::sync::Weak;

/// How long an Event lives after it was last seen (kube's `--event-ttl`).
pub const EVENT_TTL: Duration = Duration::hours(1);

/// How often the sweep runs.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// When an Event was last seen: the newest of its timestamps.
fn last_seen(ev: &Value) -> Option<DateTime<Utc>> {
    [
        "/series/lastObservedTime",
        "/lastTimestamp",
        "/eventTime",
        "/firstTimestamp",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .filter_map(|p| ev.pointer(p).and_then(Value::as_str))
    .filter_map(|s| DateTime::parse_from_rfc3339(s).ok())
    .map(|t| t.with_timezone(&Utc))
    .max()
}

/// Whether a (core/v1, stored) Event is past its TTL at `now`.
pub fn expired(ev: &Value, now: DateTime<Utc>, ttl: Duration) -> bool {
    last_seen(ev).is_some_and(|t| now - t > ttl)
}

impl Inner {
    /// Deletes expired Events; returns how many went.
    pub async fn sweep_events(&self, now: DateTime<Utc>) -> usize {
        let Some(info) = minik_apimachinery::resources::find("", "v1", "events") else {
            return 0;
        };
        let (kvs, _) = self.store.list(&storage_prefix(info, None));
        let mut gone = 0;
        for kv in kvs {
            let Ok(ev) = serde_json::from_slice::<Value>(&kv.value) else {
                continue;
            };
            if expired(&ev, now, EVENT_TTL)
                && self
                    .store
                    .delete(&kv.key, Some(kv.mod_revision))
                    .await
                    .is_ok()
            {
                gone += 1;
            }
        }
        gone
    }
}

/// Runs the sweep until the apiserver is dropped.
pub fn spawn_event_sweeper(inner: Weak<Inner>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        loop {
            tick.tick().await;
            let Some(inner) = inner.upgrade() else { return };
            let n = inner.sweep_events(Utc::now()).await;
            if n > 0 {
                tracing::debug!("expired {n} events");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_expire_an_hour_after_last_seen() {
        let now = DateTime::parse_from_rfc3339("2026-01-10T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let old = json!({"metadata": {"creationTimestamp": "2026-01-10T10:00:00Z"}, "lastTimestamp": "2026-01-10T10:30:00Z"});
        assert!(expired(&old, now, EVENT_TTL));
        let recent = json!({"metadata": {"creationTimestamp": "2026-01-10T10:00:00Z"}, "lastTimestamp": "2026-01-10T11:30:00Z"});
        assert!(!expired(&recent, now, EVENT_TTL));
        let series = json!({"eventTime": "2026-01-10T09:00:00.000000Z", "series": {"count": 3, "lastObservedTime": "2026-01-10T11:59:00.000000Z"}});
        assert!(!expired(&series, now, EVENT_TTL));
        assert!(!expired(&json!({}), now, EVENT_TTL), "no timestamp: keep");
    }
}
