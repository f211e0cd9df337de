//! The reconcile-loop plumbing the workload controllers (Deployment,
//! StatefulSet, DaemonSet, Job, CronJob) share: their context (client and
//! Event recorder), the requeue after a failed reconcile, logging the run
//! loop's results, reading the live object at the start of a reconcile
//! (`ns_name_uid`, `get_current`), merge-patching its status, and the wake-up
//! a controller needs for pods waiting out `minReadySeconds`.
//!
//! The decisions (`ns_name_uid`, `error_requeue`, `next_available_in`) are
//! pure and unit tested below; the two API calls are thin wrappers over
//! kube's `Api`.

use std::fmt::{Debug, Display};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde::de::DeserializeOwned;

use crate::events::Recorder;
use crate::util::{
    is_conflict, is_namespace_terminating, is_not_found, is_pod_available, is_pod_ready,
    pod_ready_since,
};

/// What a workload controller's reconcile gets: the API client and an
/// Event recorder that signs its Events as the controller.
pub struct Ctx {
    pub client: Client,
    pub recorder: Recorder,
}

impl Ctx {
    /// The context of the controller `component` (e.g. `job-controller`).
    pub fn new(client: &Client, component: &str) -> Arc<Ctx> {
        Arc::new(Ctx {
            recorder: Recorder::new(client.clone(), component),
            client: client.clone(),
        })
    }
}

/// How long a controller waits before reconciling again after `err` (with
/// `kube_err`, the API error inside it, if any): a write into a namespace
/// being deleted → 5 s (quietly: the namespace controller is removing
/// everything), a write conflict → 300 ms (someone else wrote the object:
/// just look again), anything else → 2 s, logged as a warning for
/// `controller`.
pub fn error_requeue(
    controller: &str,
    kube_err: Option<&kube::Error>,
    err: &dyn Display,
) -> Duration {
    match kube_err {
        Some(e) if is_namespace_terminating(e) => Duration::from_secs(5),
        Some(e) if is_conflict(e) => Duration::from_millis(300),
        _ => {
            tracing::warn!(error = %err, "{controller} reconcile failed; retrying");
            Duration::from_secs(2)
        }
    }
}

/// The `for_each` step of a controller's run loop: a failed reconcile is
/// already retried by its error policy, so it is only logged (debug).
pub async fn log_result<T, E: Display>(controller: &'static str, res: Result<T, E>) {
    if let Err(e) = res {
        tracing::debug!(error = %e, "{controller} reconcile");
    }
}

/// An object's namespace, name and uid, which a namespaced controller needs
/// to reconcile it; None when one is missing.
pub fn ns_name_uid(meta: &ObjectMeta) -> Option<(String, String, String)> {
    Some((
        meta.namespace.clone()?,
        meta.name.clone()?,
        meta.uid.clone()?,
    ))
}

/// Reads `name` fresh from the API (the controller's cache may lag): None
/// when it is gone or a new object of that name replaced the one with `uid`
/// (nothing to reconcile either way).
pub async fn get_current<K>(api: &Api<K>, name: &str, uid: &str) -> Result<Option<K>, kube::Error>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug,
{
    match api.get(name).await {
        Ok(o) if o.meta().uid.as_deref() == Some(uid) => Ok(Some(o)),
        Ok(_) => Ok(None),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Merge-patches `{"status": status}` into `name`'s status subresource:
/// false when the object is gone meanwhile.
pub async fn merge_status<K>(
    api: &Api<K>,
    name: &str,
    status: serde_json::Value,
) -> Result<bool, kube::Error>
where
    K: Clone + DeserializeOwned + Debug,
{
    let patch = serde_json::json!({ "status": status });
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// When the first of `pods` that is Ready but not yet available (it has not
/// been Ready for `min_ready` seconds) becomes available, from `now`: the
/// requeue a controller needs to count it (1 s to 1 h). None when no pod
/// waits (always with `min_ready` 0).
pub fn next_available_in<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    min_ready: i32,
    now: Timestamp,
) -> Option<Duration> {
    if min_ready <= 0 {
        return None;
    }
    pods.into_iter()
        .filter(|p| is_pod_ready(p) && !is_pod_available(p, min_ready, now))
        .filter_map(pod_ready_since)
        .map(|since| since.as_second() + i64::from(min_ready) - now.as_second())
        .min()
        .map(|secs| Duration::from_secs(secs.clamp(1, 3600) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::testutil::{pod, ts};
    use kube::core::response::{StatusCause, StatusDetails};
    use kube::core::Status;

    fn api_error(code: u16, message: &str, cause: Option<&str>) -> kube::Error {
        let mut s = Status::failure(message, "").with_code(code);
        if let Some(reason) = cause {
            s = s.with_details(StatusDetails {
                name: String::new(),
                group: String::new(),
                kind: String::new(),
                uid: String::new(),
                causes: vec![StatusCause {
                    reason: reason.into(),
                    message: String::new(),
                    field: String::new(),
                }],
                retry_after_seconds: 0,
            });
        }
        kube::Error::Api(s.boxed())
    }

    #[test]
    fn error_requeue_by_kind_of_failure() {
        let terminating = api_error(
            403,
            "unable to create new content in namespace x because it is being terminated",
            Some("NamespaceTerminating"),
        );
        let conflict = api_error(409, "the object has been modified", None);
        let other = api_error(500, "boom", None);
        let r = |e: Option<&kube::Error>| error_requeue("test", e, &"failed");
        assert_eq!(r(Some(&terminating)), Duration::from_secs(5));
        assert_eq!(r(Some(&conflict)), Duration::from_millis(300));
        assert_eq!(r(Some(&other)), Duration::from_secs(2));
        assert_eq!(r(None), Duration::from_secs(2));
        // A 403 for another reason is not "namespace terminating".
        let forbidden = api_error(403, "forbidden", None);
        assert_eq!(r(Some(&forbidden)), Duration::from_secs(2));
    }

    #[test]
    fn ns_name_uid_needs_all_three() {
        let p = pod("a", "Running", None, None, 0);
        assert_eq!(
            ns_name_uid(&p.metadata),
            Some(("default".into(), "a".into(), "uid-a".into()))
        );
        let mut no_uid = p.metadata.clone();
        no_uid.uid = None;
        assert_eq!(ns_name_uid(&no_uid), None);
        let mut no_ns = p.metadata;
        no_ns.namespace = None;
        assert_eq!(ns_name_uid(&no_ns), None);
    }

    #[test]
    fn next_available_in_waits_for_the_earliest_ready_pod() {
        let now = ts(1_000);
        let pods = [
            pod("a", "Running", Some(995), None, 900), // available at 1005: 5 s
            pod("b", "Running", Some(998), None, 900), // 8 s
            pod("c", "Running", None, None, 900),      // not ready: no wake-up
            pod("d", "Running", Some(900), None, 900), // already available
        ];
        assert_eq!(
            next_available_in(&pods, 10, now),
            Some(Duration::from_secs(5))
        );
        // Nothing waits without minReadySeconds, nor when all are available.
        assert_eq!(next_available_in(&pods, 0, now), None);
        assert_eq!(next_available_in(&pods[2..], 10, now), None);
        // Far-off availability is capped at an hour.
        assert_eq!(
            next_available_in(&pods[..1], 100_000, now),
            Some(Duration::from_secs(3600))
        );
    }
}
