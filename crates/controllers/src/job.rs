//! Job controller: runs pods to completion.
//!
//! Follows kube's `pkg/controller/job` (1.33):
//! - `completions` / `parallelism`, completionMode `NonIndexed` and `Indexed`
//!   (annotation and label `batch.kubernetes.io/job-completion-index`, env
//!   `JOB_COMPLETION_INDEX`, hostname `<job>-<index>`, `status.completedIndexes`);
//! - pod tracking with the `batch.kubernetes.io/job-tracking` finalizer: a
//!   finished pod is first recorded in `status.uncountedTerminatedPods`, then
//!   its finalizer removed, then it moves into `succeeded`/`failed`, so no pod
//!   is counted twice or lost even if the pod is deleted meanwhile;
//! - `backoffLimit` (failed pods, or container restarts with
//!   restartPolicy OnFailure) with exponential back-off between re-creations
//!   (10 s doubling, capped at 6 min), `activeDeadlineSeconds`,
//!   `podFailurePolicy` (FailJob / Ignore / Count on exit codes and pod
//!   conditions), `suspend` / resume;
//! - conditions `FailureTarget` then `Failed` (reasons BackoffLimitExceeded,
//!   DeadlineExceeded, PodFailurePolicy), `SuccessCriteriaMet` then `Complete`
//!   (with `completionTime`), `Suspended`;
//! - `ttlSecondsAfterFinished`: a finished job is deleted (foreground, so its
//!   pods go first) once the TTL has passed.
//!
//! Owns the pods it creates. A sweep removes the tracking finalizer from pods
//! whose Job is gone (deleted jobs are never reconciled again).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{
    Job, JobCondition, PodFailurePolicy, SuccessPolicy, UncountedTerminatedPods,
};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::events::EventType;
use crate::reconcile::Ctx;
use crate::util::{
    controller_owner_ref, controller_ref, is_conflict, is_controlled_by, is_namespace_terminating,
    is_not_found, is_pod_ready, pod_phase, pod_restarts, selector_matches,
};

pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// Failures of the pod's index before it (backoffLimitPerIndex).
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
const BACKOFF_BASE_SECS: u64 = 10;
const BACKOFF_MAX_SECS: u64 = 360;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Job has no namespace, name or uid; it cannot be reconciled")]
    MissingMeta,
    #[error("talking to the API server failed: {0}")]
    Kube(#[from] kube::Error),
}

/// Runs the Job controller (and the orphan-finalizer sweep) until the task is dropped.
pub async fn run(client: Client) -> anyhow::Result<()> {
    let ctx = Ctx::new(&client, "job-controller");
    let controller = Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default());
    let store = controller.store();
    let controller = controller
        .watches(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default(),
            move |pod: Pod| {
                crate::util::pod_owner_refs(&pod, &store.state(), |j: &Job| {
                    j.spec.as_ref().and_then(|s| s.selector.as_ref())
                })
            },
        )
        .run(reconcile, error_policy, ctx)
        .for_each(|res| crate::reconcile::log_result("job", res));
    tokio::join!(controller, sweep_orphans(client));
    Ok(())
}

fn error_policy(_j: Arc<Job>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    let kube_err = match err {
        Error::Kube(e) => Some(e),
        _ => None,
    };
    Action::requeue(crate::reconcile::error_requeue("job", kube_err, err))
}

// ---------------------------------------------------------------------------
// Pure logic
// ---------------------------------------------------------------------------

/// The back-off before re-creating pods after `failures` failures: 10 s
/// doubling per failure, capped at 6 minutes; zero without failures.
pub fn backoff_delay(failures: i32) -> Duration {
    if failures <= 0 {
        return Duration::ZERO;
    }
    let exp = (failures - 1).min(16) as u32;
    Duration::from_secs((BACKOFF_BASE_SECS << exp).min(BACKOFF_MAX_SECS))
}

/// Formats a set of indexes as kube does: `0-2,4,6-7`.
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut it = set.iter().copied().peekable();
    while let Some(first) = it.next() {
        let mut last = first;
        while it.peek() == Some(&(last + 1)) {
            last += 1;
            it.next();
        }
        out.push(if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        });
    }
    out.join(",")
}

/// Parses `0-2,4` into a set; malformed parts are skipped.
pub fn parse_indexes(s: &str) -> BTreeSet<i32> {
    let mut set = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    set.extend(a..=b);
                }
            }
            None => {
                if let Ok(v) = part.parse() {
                    set.insert(v);
                }
            }
        }
    }
    set
}

/// The completion index of a pod of an Indexed job.
pub fn pod_index(pod: &Pod) -> Option<i32> {
    pod.annotations()
        .get(COMPLETION_INDEX)
        .or_else(|| pod.labels().get(COMPLETION_INDEX))
        .and_then(|v| v.parse().ok())
        .filter(|v: &i32| *v >= 0)
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
}

/// A pod that will not run again: Succeeded, Failed, or deleted before it
/// could succeed (kube counts those as failures).
pub fn pod_outcome(pod: &Pod) -> Option<bool> {
    match pod_phase(pod) {
        "Succeeded" => Some(true),
        "Failed" => Some(false),
        _ if pod.metadata.deletion_timestamp.is_some() => Some(false),
        _ => None,
    }
}

fn is_active(pod: &Pod) -> bool {
    pod_outcome(pod).is_none()
}

/// The action of the first podFailurePolicy rule a failed pod matches
/// (`FailJob`, `Ignore`, `Count`, `FailIndex`), None when none matches.
pub fn failure_policy_action(policy: &PodFailurePolicy, pod: &Pod) -> Option<String> {
    let st = pod.status.as_ref();
    let exits: Vec<(&str, i32)> = st
        .into_iter()
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
        })
        .filter_map(|c| {
            let t = c.state.as_ref()?.terminated.as_ref()?;
            (t.exit_code != 0).then_some((c.name.as_str(), t.exit_code))
        })
        .collect();
    let conditions = st.and_then(|s| s.conditions.as_ref());
    for rule in &policy.rules {
        let matched = if let Some(req) = &rule.on_exit_codes {
            exits.iter().any(|(name, code)| {
                req.container_name.as_deref().is_none_or(|n| n == *name)
                    && match req.operator.as_str() {
                        "In" => req.values.contains(code),
                        "NotIn" => !req.values.contains(code),
                        _ => false,
                    }
            })
        } else if let Some(patterns) = &rule.on_pod_conditions {
            patterns.iter().any(|p| {
                conditions.into_iter().flatten().any(|c| {
                    c.type_ == p.type_
                        && c.status
                            == if p.status.is_empty() {
                                "True"
                            } else {
                                &p.status
                            }
                })
            })
        } else {
            false
        };
        if matched {
            return Some(rule.action.clone());
        }
    }
    None
}

/// When a failed pod finished (its latest container termination, else its
/// deletion time), for the back-off.
pub fn pod_finish_time(pod: &Pod) -> Option<Timestamp> {
    let st = pod.status.as_ref();
    st.into_iter()
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
        })
        .filter_map(|c| {
            let t = c.state.as_ref()?.terminated.as_ref()?;
            t.finished_at.as_ref().map(|t| t.0)
        })
        .max()
        .or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// The job's condition of `type_` if its status is True.
pub fn true_condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// "Complete" or "Failed" once the job has finished.
pub fn finished_condition(job: &Job) -> Option<&JobCondition> {
    true_condition(job, "Complete").or_else(|| true_condition(job, "Failed"))
}

/// Sets (or updates) a condition, keeping lastTransitionTime when the status does not change.
pub fn set_condition(
    conds: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &Time,
) {
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status {
            c.last_transition_time = Some(now.clone());
        }
        c.status = status.into();
        c.reason = Some(reason.into());
        c.message = Some(message.into());
        c.last_probe_time = Some(now.clone());
        return;
    }
    conds.push(JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    });
}

/// The index of the first successPolicy rule the succeeded indexes satisfy
/// (Indexed jobs): with `succeededIndexes`, all of them (or
/// `succeededCount` of them) succeeded; with only `succeededCount`, that
/// many indexes succeeded.
pub fn success_policy_rule(policy: &SuccessPolicy, done: &BTreeSet<i32>) -> Option<usize> {
    policy.rules.iter().position(
        |r| match (r.succeeded_indexes.as_deref(), r.succeeded_count) {
            (Some(ix), count) => {
                let wanted = parse_indexes(ix);
                let hit = wanted.intersection(done).count() as i32;
                match count {
                    Some(c) => hit >= c,
                    None => !wanted.is_empty() && hit == wanted.len() as i32,
                }
            }
            (None, Some(c)) => done.len() as i32 >= c,
            (None, None) => false,
        },
    )
}

/// How many pods should be active now (kube's `manageJob` for NonIndexed).
pub fn want_active(parallelism: i32, completions: Option<i32>, succeeded: i32) -> i32 {
    let parallelism = parallelism.max(0);
    match completions {
        Some(c) => (c - succeeded).clamp(0, parallelism),
        None if succeeded > 0 => 0,
        None => parallelism,
    }
}

/// The indexes to start next for an Indexed job: lowest first, not done and
/// not running, at most `room`.
pub fn indexes_to_start(
    completions: i32,
    done: &BTreeSet<i32>,
    running: &BTreeSet<i32>,
    room: i32,
) -> Vec<i32> {
    (0..completions.max(0))
        .filter(|i| !done.contains(i) && !running.contains(i))
        .take(room.max(0) as usize)
        .collect()
}

/// Failures so far of `index` (backoffLimitPerIndex): the highest
/// `job-index-failure-count` + 1 among its failed pods, and when the last
/// one finished.
pub fn index_failures(pods: &[Pod], index: i32) -> (i32, Option<Timestamp>) {
    let failed: Vec<&Pod> = pods
        .iter()
        .filter(|p| pod_index(p) == Some(index) && pod_outcome(p) == Some(false))
        .collect();
    let count = failed
        .iter()
        .map(|p| {
            p.annotations()
                .get(INDEX_FAILURE_COUNT)
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or(0)
                + 1
        })
        .max()
        .unwrap_or(0);
    (
        count,
        failed.iter().filter_map(|p| pod_finish_time(p)).max(),
    )
}

/// The pod a Job creates (for `index` when Indexed; `failures` of that index
/// so far are recorded when backoffLimitPerIndex is set).
pub fn new_pod(job: &Job, index: Option<i32>, failures: Option<i32>) -> Option<Pod> {
    let name = job.metadata.name.as_deref()?;
    let spec = job.spec.as_ref()?;
    let tmeta = spec.template.metadata.clone().unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    let mut finalizers = tmeta.finalizers.unwrap_or_default();
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(TRACKING_FINALIZER.into());
    }
    let mut pspec = spec.template.spec.clone().unwrap_or_default();
    let generate_name = match index {
        Some(i) => {
            labels.insert(COMPLETION_INDEX.into(), i.to_string());
            annotations.insert(COMPLETION_INDEX.into(), i.to_string());
            if let Some(f) = failures {
                annotations.insert(INDEX_FAILURE_COUNT.into(), f.to_string());
            }
            if pspec.hostname.as_deref().is_none_or(str::is_empty) {
                pspec.hostname = Some(format!("{name}-{i}"));
            }
            let env = EnvVar {
                name: COMPLETION_INDEX_ENV.into(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        api_version: Some("v1".into()),
                        field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                    }),
                    ..Default::default()
                }),
            };
            for c in pspec
                .containers
                .iter_mut()
                .chain(pspec.init_containers.iter_mut().flatten())
            {
                let list = c.env.get_or_insert_with(Vec::new);
                if !list.iter().any(|e| e.name == COMPLETION_INDEX_ENV) {
                    list.push(env.clone());
                }
            }
            format!("{name}-{i}-")
        }
        None => format!("{name}-"),
    };
    Some(Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![controller_owner_ref(job)?]),
            ..Default::default()
        },
        spec: Some(pspec),
        status: None,
    })
}

/// When a finished job may be deleted by its TTL (None: no TTL or not finished).
pub fn ttl_expiry(job: &Job) -> Option<Timestamp> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished = finished_condition(job)?;
    let at = job
        .status
        .as_ref()
        .and_then(|s| s.completion_time.as_ref())
        .or(finished.last_transition_time.as_ref())?
        .0;
    Timestamp::from_second(at.as_second() + i64::from(ttl)).ok()
}

// ---------------------------------------------------------------------------
// Reconcile
// ---------------------------------------------------------------------------

fn requeue_at(now: Timestamp, at: Timestamp) -> Duration {
    let ms = at.as_millisecond() - now.as_millisecond();
    Duration::from_millis(ms.clamp(100, 3_600_000) as u64)
}

async fn remove_finalizer(api: &Api<Pod>, pod: &Pod) -> Result<(), kube::Error> {
    let rest: Vec<&String> = pod
        .finalizers()
        .iter()
        .filter(|f| *f != TRACKING_FINALIZER)
        .collect();
    let patch = if rest.is_empty() {
        serde_json::json!({"metadata": {"finalizers": null, "resourceVersion": pod.metadata.resource_version}})
    } else {
        serde_json::json!({"metadata": {"finalizers": rest, "resourceVersion": pod.metadata.resource_version}})
    };
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some((ns, name, uid)) = crate::reconcile::ns_name_uid(&job.metadata) else {
        return Err(Error::MissingMeta);
    };
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(job) = crate::reconcile::get_current(&jobs, &name, &uid).await? else {
        return Ok(Action::await_change());
    };
    let Some(spec) = job.spec.clone() else {
        return Ok(Action::await_change());
    };
    if spec
        .managed_by
        .as_deref()
        .is_some_and(|m| m != "kubernetes.io/job-controller")
    {
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    let now_t = Time(now);
    let selector = spec.selector.clone().unwrap_or_default();
    let all_pods = pods_api.list(&ListParams::default()).await?.items;
    let may_adopt = job.metadata.deletion_timestamp.is_none() && finished_condition(&job).is_none();
    let pods = claim_pods(
        &pods_api,
        controller_owner_ref(&job),
        &selector,
        all_pods,
        may_adopt,
        Some(TRACKING_FINALIZER),
    )
    .await;

    // A job being deleted, or already finished, only lets go of its pods.
    if job.metadata.deletion_timestamp.is_some() {
        for p in pods.iter().filter(|p| has_finalizer(p)) {
            remove_finalizer(&pods_api, p).await?;
        }
        return Ok(Action::await_change());
    }

    let old_status = job.status.clone().unwrap_or_default();
    let mut status = old_status.clone();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions;
    let mut uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut unc_succ: Vec<String> = uncounted.succeeded.take().unwrap_or_default();
    let mut unc_fail: Vec<String> = uncounted.failed.take().unwrap_or_default();
    let mut done_indexes = parse_indexes(status.completed_indexes.as_deref().unwrap_or(""));
    let mut conditions = status.conditions.clone().unwrap_or_default();
    let mut failure: Option<(String, String)> = None;
    let per_index_limit = spec.backoff_limit_per_index.filter(|_| indexed);
    let mut failed_indexes = parse_indexes(status.failed_indexes.as_deref().unwrap_or(""));

    // 1. Record newly finished pods as uncounted (idempotent by uid).
    let mut to_release: Vec<&Pod> = Vec::new();
    let mut recorded_new = false;
    for p in pods.iter().filter(|p| has_finalizer(p)) {
        let Some(outcome) = pod_outcome(p) else {
            continue;
        };
        let puid = p.metadata.uid.clone().unwrap_or_default();
        to_release.push(p);
        if unc_succ.contains(&puid) || unc_fail.contains(&puid) {
            continue;
        }
        if outcome {
            if indexed {
                match pod_index(p) {
                    Some(i) if completions.is_none_or(|c| i < c) && !done_indexes.contains(&i) => {
                        done_indexes.insert(i);
                    }
                    _ => continue, // a duplicate or out-of-range index does not count
                }
            }
            unc_succ.push(puid);
            recorded_new = true;
        } else {
            let action = spec
                .pod_failure_policy
                .as_ref()
                .filter(|_| pod_phase(p) == "Failed")
                .and_then(|pol| failure_policy_action(pol, p));
            if let (Some(limit), Some(i)) = (per_index_limit, pod_index(p)) {
                // This failure is the index's count + 1; past the limit the index fails for good.
                let count = p
                    .annotations()
                    .get(INDEX_FAILURE_COUNT)
                    .and_then(|v| v.parse::<i32>().ok())
                    .unwrap_or(0)
                    + 1;
                if action.as_deref() == Some("FailIndex") || count > limit {
                    failed_indexes.insert(i);
                }
            }
            match action.as_deref() {
                Some("Ignore") => continue,
                Some("FailJob") => {
                    failure.get_or_insert((
                        "PodFailurePolicy".into(),
                        format!(
                            "Pod {}/{} has condition matching FailJob rule of the pod failure policy",
                            ns,
                            p.name_any()
                        ),
                    ));
                }
                _ => {}
            }
            unc_fail.push(puid);
            recorded_new = true;
        }
    }
    if recorded_new {
        status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
            succeeded: Some(unc_succ.clone()),
            failed: Some(unc_fail.clone()),
        });
        if indexed {
            status.completed_indexes = Some(format_indexes(&done_indexes));
        }
        if per_index_limit.is_some() {
            status.failed_indexes = Some(format_indexes(&failed_indexes));
        }
        let patch = serde_json::json!({ "status": status });
        jobs.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    // 2. Release them; 3. count what is released.
    for p in &to_release {
        remove_finalizer(&pods_api, p).await?;
    }
    let still_held: BTreeSet<String> = pods
        .iter()
        .filter(|p| {
            has_finalizer(p) && !to_release.iter().any(|r| r.metadata.uid == p.metadata.uid)
        })
        .filter_map(|p| p.metadata.uid.clone())
        .collect();
    let mut succeeded = status.succeeded.unwrap_or(0);
    let mut failed = status.failed.unwrap_or(0);
    unc_succ.retain(|u| {
        let held = still_held.contains(u);
        if !held {
            succeeded += 1;
        }
        held
    });
    unc_fail.retain(|u| {
        let held = still_held.contains(u);
        if !held {
            failed += 1;
        }
        held
    });
    if indexed {
        succeeded = done_indexes.len() as i32;
        status.completed_indexes = Some(format_indexes(&done_indexes));
    }
    if per_index_limit.is_some() {
        status.failed_indexes = Some(format_indexes(&failed_indexes));
    }
    status.succeeded = Some(succeeded);
    status.failed = Some(failed);
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: (!unc_succ.is_empty()).then_some(unc_succ),
        failed: (!unc_fail.is_empty()).then_some(unc_fail),
    });

    let active: Vec<&Pod> = pods.iter().filter(|p| is_active(p)).collect();
    let terminating = pods
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_some()
                && !matches!(pod_phase(p), "Succeeded" | "Failed")
        })
        .count() as i32;
    let suspended = spec.suspend.unwrap_or(false);
    let finished = finished_condition(&job).is_some();
    let failure_target = true_condition(&job, "FailureTarget").is_some()
        || conditions
            .iter()
            .any(|c| c.type_ == "FailureTarget" && c.status == "True");
    let success_met = conditions
        .iter()
        .any(|c| c.type_ == "SuccessCriteriaMet" && c.status == "True");
    let mut requeue: Option<Duration> = None;

    if !finished && !failure_target && !success_met {
        // 4. Failure checks.
        let restarts_on_failure = spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            == Some("OnFailure");
        let backoff_limit = spec.backoff_limit.unwrap_or(6);
        let total_failed = failed
            + status
                .uncounted_terminated_pods
                .as_ref()
                .and_then(|u| u.failed.as_ref())
                .map_or(0, |v| v.len() as i32);
        if let (Some(_), Some(c)) = (per_index_limit, completions) {
            let max_failed = spec.max_failed_indexes;
            if max_failed.is_some_and(|m| failed_indexes.len() as i32 > m) {
                failure.get_or_insert((
                    "MaxFailedIndexesExceeded".into(),
                    "Job has exceeded the specified maximal number of failed indexes".into(),
                ));
            }
            let resolved = (0..c).all(|i| done_indexes.contains(&i) || failed_indexes.contains(&i));
            if resolved && !failed_indexes.is_empty() && active.is_empty() {
                failure.get_or_insert(("FailedIndexes".into(), "Job has failed indexes".into()));
            }
        }
        if failure.is_none() && per_index_limit.is_none() && total_failed > backoff_limit {
            failure = Some((
                "BackoffLimitExceeded".into(),
                "Job has reached the specified backoff limit".into(),
            ));
        }
        if failure.is_none() && restarts_on_failure {
            let restarts: i32 = active.iter().map(|p| pod_restarts(p)).sum();
            let past = if backoff_limit == 0 {
                restarts > 0
            } else {
                restarts >= backoff_limit
            };
            if past {
                failure = Some((
                    "BackoffLimitExceeded".into(),
                    "Job has reached the specified backoff limit".into(),
                ));
            }
        }
        if failure.is_none() && !suspended {
            if let (Some(ads), Some(start)) =
                (spec.active_deadline_seconds, status.start_time.as_ref())
            {
                let deadline = start.0.as_second() + ads;
                if now.as_second() >= deadline {
                    failure = Some((
                        "DeadlineExceeded".into(),
                        "Job was active longer than specified deadline".into(),
                    ));
                } else if let Ok(at) = Timestamp::from_second(deadline) {
                    requeue = Some(requeue_at(now, at));
                }
            }
        }
    }

    if finished {
        // Nothing to run; only the TTL is left.
    } else if let Some((reason, message)) = failure.clone().or_else(|| {
        failure_target.then(|| {
            conditions
                .iter()
                .find(|c| c.type_ == "FailureTarget")
                .map(|c| {
                    (
                        c.reason.clone().unwrap_or_default(),
                        c.message.clone().unwrap_or_default(),
                    )
                })
                .unwrap_or_default()
        })
    }) {
        // 5. Failing: stop every active pod, then mark Failed.
        if !failure_target {
            set_condition(
                &mut conditions,
                "FailureTarget",
                "True",
                &reason,
                &message,
                &now_t,
            );
            ctx.recorder
                .publish(&job, EventType::Warning, &reason, &message)
                .await;
        }
        for p in &active {
            delete_pod(&ctx, &pods_api, &job, p, false).await?;
        }
        let pending_uncounted = status.uncounted_terminated_pods.as_ref().is_some_and(|u| {
            u.failed.iter().flatten().count() + u.succeeded.iter().flatten().count() > 0
        });
        if active.is_empty() && terminating == 0 && !pending_uncounted {
            set_condition(&mut conditions, "Failed", "True", &reason, &message, &now_t);
        }
    } else {
        let policy_rule = spec
            .success_policy
            .as_ref()
            .filter(|_| indexed)
            .and_then(|p| success_policy_rule(p, &done_indexes));
        let complete_now = if indexed {
            completions.is_some_and(|c| done_indexes.len() as i32 >= c) || policy_rule.is_some()
        } else {
            match completions {
                Some(c) => succeeded >= c,
                None => succeeded > 0 && active.is_empty(),
            }
        };
        if complete_now || success_met {
            // 6. Success: stop leftovers, then mark Complete (with the same reason).
            if !success_met {
                let (reason, message) = match policy_rule {
                    Some(i) => (
                        "SuccessPolicy".to_string(),
                        format!("Matched rules at index {i}"),
                    ),
                    None => (
                        "CompletionsReached".to_string(),
                        "Reached expected number of succeeded pods".to_string(),
                    ),
                };
                set_condition(
                    &mut conditions,
                    "SuccessCriteriaMet",
                    "True",
                    &reason,
                    &message,
                    &now_t,
                );
            }
            let (reason, message) = conditions
                .iter()
                .find(|c| c.type_ == "SuccessCriteriaMet")
                .map(|c| {
                    (
                        c.reason.clone().unwrap_or_default(),
                        c.message.clone().unwrap_or_default(),
                    )
                })
                .unwrap_or_default();
            for p in &active {
                delete_pod(&ctx, &pods_api, &job, p, true).await?;
            }
            let pending_uncounted = status.uncounted_terminated_pods.as_ref().is_some_and(|u| {
                u.failed.iter().flatten().count() + u.succeeded.iter().flatten().count() > 0
            });
            if active.is_empty() && terminating == 0 && !pending_uncounted {
                set_condition(
                    &mut conditions,
                    "Complete",
                    "True",
                    &reason,
                    &message,
                    &now_t,
                );
                status.completion_time = Some(now_t.clone());
                ctx.recorder
                    .publish(&job, EventType::Normal, "Completed", "Job completed")
                    .await;
            }
        } else if suspended {
            // 7. Suspended: no pods run; resuming resets startTime.
            for p in &active {
                delete_pod(&ctx, &pods_api, &job, p, true).await?;
            }
            let was = conditions
                .iter()
                .any(|c| c.type_ == "Suspended" && c.status == "True");
            if !was {
                set_condition(
                    &mut conditions,
                    "Suspended",
                    "True",
                    "JobSuspended",
                    "Job suspended",
                    &now_t,
                );
                ctx.recorder
                    .publish(&job, EventType::Normal, "Suspended", "Job suspended")
                    .await;
            }
            status.start_time = None;
        } else {
            // 8. Running: keep the right number of pods.
            if conditions
                .iter()
                .any(|c| c.type_ == "Suspended" && c.status == "True")
            {
                set_condition(
                    &mut conditions,
                    "Suspended",
                    "False",
                    "JobResumed",
                    "Job resumed",
                    &now_t,
                );
                ctx.recorder
                    .publish(&job, EventType::Normal, "Resumed", "Job resumed")
                    .await;
                status.start_time = None;
            }
            if status.start_time.is_none() {
                status.start_time = Some(now_t.clone());
                if let Some(ads) = spec.active_deadline_seconds {
                    requeue = Some(Duration::from_secs(ads.max(1) as u64));
                }
            }
            let parallelism = spec.parallelism.unwrap_or(1).max(0);
            // podReplacementPolicy Failed: terminating pods still hold their slot.
            let terminating_pods: Vec<&Pod> = pods
                .iter()
                .filter(|p| {
                    p.metadata.deletion_timestamp.is_some()
                        && !matches!(pod_phase(p), "Succeeded" | "Failed")
                })
                .collect();
            let replacement_wait = if spec.pod_replacement_policy.as_deref() == Some("Failed") {
                terminating_pods.len() as i32
            } else {
                0
            };
            let total_failed = failed
                + status
                    .uncounted_terminated_pods
                    .as_ref()
                    .and_then(|u| u.failed.as_ref())
                    .map_or(0, |v| v.len() as i32);
            // Back-off after failures: wait before creating replacements.
            let last_failure = pods
                .iter()
                .filter(|p| pod_outcome(p) == Some(false))
                .filter_map(pod_finish_time)
                .max();
            let backoff_until = last_failure.and_then(|t| {
                Timestamp::from_second(t.as_second() + backoff_delay(total_failed).as_secs() as i64)
                    .ok()
            });
            let in_backoff = backoff_until.is_some_and(|u| u > now);
            if indexed {
                let c = completions.unwrap_or(0);
                let mut running: BTreeMap<i32, Vec<&Pod>> = BTreeMap::new();
                for p in &active {
                    match pod_index(p) {
                        Some(i)
                            if i < c
                                && !done_indexes.contains(&i)
                                && !failed_indexes.contains(&i) =>
                        {
                            running.entry(i).or_default().push(p)
                        }
                        _ => delete_pod(&ctx, &pods_api, &job, p, true).await?,
                    }
                }
                // Duplicates of one index: keep the oldest.
                for list in running.values() {
                    for p in list.iter().skip(1) {
                        delete_pod(&ctx, &pods_api, &job, p, true).await?;
                    }
                }
                let mut running_set: BTreeSet<i32> = running.keys().copied().collect();
                let room = parallelism - running_set.len() as i32 - replacement_wait;
                if replacement_wait > 0 {
                    // podReplacementPolicy Failed: a terminating pod's index is not restarted yet.
                    running_set.extend(terminating_pods.iter().filter_map(|p| pod_index(p)));
                }
                let closed: BTreeSet<i32> = done_indexes.union(&failed_indexes).copied().collect();
                let starts = indexes_to_start(c, &closed, &running_set, room);
                if per_index_limit.is_some() {
                    // Each index backs off on its own failures.
                    for i in starts {
                        let (count, last) = index_failures(&pods, i);
                        let until = last.and_then(|t| {
                            Timestamp::from_second(
                                t.as_second() + backoff_delay(count).as_secs() as i64,
                            )
                            .ok()
                        });
                        match until.filter(|u| *u > now) {
                            Some(u) => {
                                let d = requeue_at(now, u);
                                requeue = Some(requeue.map_or(d, |r: Duration| r.min(d)));
                            }
                            None => create_pod(&ctx, &pods_api, &job, Some(i), Some(count)).await?,
                        }
                    }
                } else if !starts.is_empty() {
                    if in_backoff {
                        requeue = backoff_until.map(|u| requeue_at(now, u));
                    } else {
                        for i in starts {
                            create_pod(&ctx, &pods_api, &job, Some(i), None).await?;
                        }
                    }
                }
            } else {
                let want = want_active(parallelism, completions, succeeded);
                let have = active.len() as i32 + replacement_wait;
                if have < want {
                    if in_backoff {
                        requeue = backoff_until.map(|u| requeue_at(now, u));
                    } else {
                        for _ in 0..(want - have) {
                            create_pod(&ctx, &pods_api, &job, None, None).await?;
                        }
                    }
                } else if active.len() as i32 > want {
                    // Too many: newest first.
                    let mut extra: Vec<&&Pod> = active.iter().collect();
                    extra.sort_by_key(|p| {
                        std::cmp::Reverse(crate::util::time_secs(
                            p.metadata.creation_timestamp.as_ref(),
                        ))
                    });
                    for p in extra
                        .into_iter()
                        .take((active.len() as i32 - want) as usize)
                    {
                        delete_pod(&ctx, &pods_api, &job, p, true).await?;
                    }
                }
            }
        }
    }

    // 9. Status.
    status.active = Some(active.len() as i32);
    status.ready = Some(active.iter().filter(|p| is_pod_ready(p)).count() as i32);
    status.terminating = Some(terminating);
    status.conditions = (!conditions.is_empty()).then_some(conditions);
    if status != old_status {
        let mut value = serde_json::to_value(&status).unwrap_or_default();
        // A merge patch must null what went away.
        for key in ["startTime", "completionTime", "conditions"] {
            if value.get(key).is_none() {
                value[key] = serde_json::Value::Null;
            }
        }
        for key in ["succeeded", "failed"] {
            let u = &mut value["uncountedTerminatedPods"];
            if u.get(key).is_none() {
                u[key] = serde_json::Value::Null;
            }
        }
        if !crate::reconcile::merge_status(&jobs, &name, value).await? {
            return Ok(Action::await_change());
        }
    }

    // 10. TTL after finished.
    let mut updated = job.clone();
    updated.status = Some(status);
    if let Some(expiry) = ttl_expiry(&updated) {
        if expiry <= now {
            let dp = DeleteParams {
                propagation_policy: Some(kube::api::PropagationPolicy::Foreground),
                preconditions: Some(kube::api::Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match jobs.delete(&name, &dp).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) || is_conflict(&e) => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(Action::await_change());
        }
        return Ok(Action::requeue(requeue_at(now, expiry)));
    }
    Ok(match requeue {
        Some(d) => Action::requeue(d),
        None => Action::requeue(Duration::from_secs(300)),
    })
}

/// kube's `ClaimPods`: the owner's pods that still match its selector;
/// orphans that match are adopted (active ones also get `finalizer`, for the
/// Job's tracking), owned pods that stopped matching are released. Shared
/// with the DaemonSet controller.
pub(crate) async fn claim_pods(
    api: &Api<Pod>,
    owner: Option<OwnerReference>,
    selector: &LabelSelector,
    all: Vec<Pod>,
    may_adopt: bool,
    finalizer: Option<&str>,
) -> Vec<Pod> {
    let Some(owner) = owner else {
        return vec![];
    };
    let uid = owner.uid.clone();
    // An empty selector would match every pod in the namespace: never adopt with it.
    let selective = selector
        .match_labels
        .as_ref()
        .is_some_and(|m| !m.is_empty())
        || selector
            .match_expressions
            .as_ref()
            .is_some_and(|e| !e.is_empty());
    let mut owned = Vec::new();
    for pod in all {
        let matches = selective && selector_matches(selector, pod.labels());
        if is_controlled_by(&pod.metadata, &uid) {
            if matches {
                owned.push(pod);
            } else if let Err(e) = release(api, &pod, &uid).await {
                tracing::debug!(pod = %pod.name_any(), error = %e, "could not release pod");
            }
        } else if may_adopt
            && matches
            && controller_ref(&pod.metadata).is_none()
            && pod.metadata.deletion_timestamp.is_none()
        {
            let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
            refs.push(owner.clone());
            let mut fins: Vec<String> = pod.finalizers().to_vec();
            if let Some(f) = finalizer {
                if is_active(&pod) && !fins.iter().any(|x| x == f) {
                    fins.push(f.into());
                }
            }
            let patch = serde_json::json!({
                "metadata": {"ownerReferences": refs, "finalizers": fins, "uid": pod.metadata.uid}
            });
            match api
                .patch(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(p) => owned.push(p),
                Err(e) => tracing::debug!(pod = %pod.name_any(), error = %e, "could not adopt pod"),
            }
        }
    }
    owned
}

async fn release(api: &Api<Pod>, pod: &Pod, uid: &str) -> Result<(), kube::Error> {
    let refs: Vec<_> = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|o| o.uid != uid)
        .cloned()
        .collect();
    let patch = serde_json::json!({ "metadata": { "ownerReferences": refs } });
    api.patch(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
}

async fn create_pod(
    ctx: &Ctx,
    api: &Api<Pod>,
    job: &Job,
    index: Option<i32>,
    failures: Option<i32>,
) -> Result<(), Error> {
    let Some(pod) = new_pod(job, index, failures) else {
        return Ok(());
    };
    match api.create(&PostParams::default(), &pod).await {
        Ok(p) => {
            ctx.recorder
                .publish(
                    job,
                    EventType::Normal,
                    "SuccessfulCreate",
                    &format!("Created pod: {}", p.name_any()),
                )
                .await;
            Ok(())
        }
        Err(e) if is_namespace_terminating(&e) => Ok(()),
        Err(e) => {
            ctx.recorder
                .publish(
                    job,
                    EventType::Warning,
                    "FailedCreate",
                    &format!("Error creating: {e}"),
                )
                .await;
            Err(e.into())
        }
    }
}

/// Deletes a pod of the job; `uncounted` pods lose the tracking finalizer
/// first so their end is not counted as a failure (suspend, surplus).
async fn delete_pod(
    ctx: &Ctx,
    api: &Api<Pod>,
    job: &Job,
    pod: &Pod,
    uncounted: bool,
) -> Result<(), Error> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    if uncounted && has_finalizer(pod) {
        remove_finalizer(api, pod).await?;
    }
    match api.delete(&pod.name_any(), &DeleteParams::default()).await {
        Ok(_) => {
            ctx.recorder
                .publish(
                    job,
                    EventType::Normal,
                    "SuccessfulDelete",
                    &format!("Deleted pod: {}", pod.name_any()),
                )
                .await;
            Ok(())
        }
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes the tracking finalizer from pods whose Job no longer exists
/// (deleted jobs are never reconciled, so their pods would hang in Terminating).
async fn sweep_orphans(client: Client) {
    let pods: Api<Pod> = Api::all(client.clone());
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        // Every pod: a released pod may have lost the job labels but not the finalizer.
        let Ok(list) = pods.list(&ListParams::default()).await else {
            continue;
        };
        for p in list.items.into_iter().filter(has_finalizer) {
            let ns = p.namespace().unwrap_or_default();
            let owner = controller_ref(&p.metadata)
                .filter(|o| o.kind == "Job")
                .cloned();
            let gone = match &owner {
                None => !selected_by_a_job(&client, &ns, &p).await,
                Some(o) => match Api::<Job>::namespaced(client.clone(), &ns)
                    .get_opt(&o.name)
                    .await
                {
                    Ok(Some(j)) => j.metadata.uid.as_deref() != Some(o.uid.as_str()),
                    Ok(None) => true,
                    Err(_) => false,
                },
            };
            if gone {
                let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                if let Err(e) = remove_finalizer(&api, &p).await {
                    tracing::debug!(pod = %p.name_any(), error = %e, "could not release orphan job pod");
                }
            }
        }
    }
}

/// Whether some unfinished Job in the namespace selects the pod (it will be adopted).
async fn selected_by_a_job(client: &Client, ns: &str, pod: &Pod) -> bool {
    let Ok(jobs) = Api::<Job>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
    else {
        return true; // unsure: keep the finalizer for now
    };
    jobs.items.iter().any(|j| {
        finished_condition(j).is_none()
            && j.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_some_and(|sel| {
                    sel.match_labels.as_ref().is_some_and(|m| !m.is_empty())
                        && selector_matches(sel, pod.labels())
                })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::testutil::{labels, pod, ts};
    use k8s_openapi::api::batch::v1::{
        JobSpec, JobStatus, PodFailurePolicyOnExitCodesRequirement,
        PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
    };
    use k8s_openapi::api::core::v1::{
        Container, ContainerState, ContainerStateTerminated, ContainerStatus, PodCondition,
        PodSpec, PodTemplateSpec,
    };

    fn job(indexed: bool) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some("pi".into()),
                namespace: Some("default".into()),
                uid: Some("job-uid".into()),
                ..Default::default()
            },
            spec: Some(JobSpec {
                completions: Some(3),
                parallelism: Some(2),
                completion_mode: Some(if indexed { "Indexed" } else { "NonIndexed" }.into()),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels(&[("job-name", "pi")])),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "c".into(),
                            ..Default::default()
                        }],
                        restart_policy: Some("Never".into()),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff_delay(0), Duration::ZERO);
        assert_eq!(backoff_delay(1), Duration::from_secs(10));
        assert_eq!(backoff_delay(2), Duration::from_secs(20));
        assert_eq!(backoff_delay(3), Duration::from_secs(40));
        assert_eq!(backoff_delay(7), Duration::from_secs(360));
        assert_eq!(backoff_delay(100), Duration::from_secs(360));
    }

    #[test]
    fn index_sets_format_and_parse() {
        let s: BTreeSet<i32> = [0, 1, 2, 4, 6, 7].into_iter().collect();
        assert_eq!(format_indexes(&s), "0-2,4,6-7");
        assert_eq!(parse_indexes("0-2,4,6-7"), s);
        assert_eq!(format_indexes(&BTreeSet::new()), "");
        assert_eq!(parse_indexes("x,3"), [3].into_iter().collect());
    }

    #[test]
    fn active_targets() {
        assert_eq!(want_active(2, Some(3), 0), 2);
        assert_eq!(want_active(2, Some(3), 2), 1);
        assert_eq!(want_active(2, Some(3), 3), 0);
        assert_eq!(want_active(4, None, 0), 4);
        assert_eq!(want_active(4, None, 1), 0);
        let done: BTreeSet<i32> = [0].into_iter().collect();
        let running: BTreeSet<i32> = [1].into_iter().collect();
        assert_eq!(indexes_to_start(4, &done, &running, 1), vec![2]);
        assert_eq!(indexes_to_start(4, &done, &running, 5), vec![2, 3]);
        assert!(indexes_to_start(4, &done, &running, 0).is_empty());
    }

    #[test]
    fn index_failure_counts_follow_annotations() {
        let mut a = failed_with(1, None);
        a.metadata.annotations = Some(labels(&[(COMPLETION_INDEX, "1")]));
        let mut b = failed_with(1, None);
        b.metadata.annotations = Some(labels(&[
            (COMPLETION_INDEX, "1"),
            (INDEX_FAILURE_COUNT, "1"),
        ]));
        let mut other = failed_with(1, None);
        other.metadata.annotations = Some(labels(&[(COMPLETION_INDEX, "2")]));
        let pods = vec![a, b, other];
        assert_eq!(index_failures(&pods, 1), (2, Some(ts(50))));
        assert_eq!(index_failures(&pods, 2).0, 1);
        assert_eq!(index_failures(&pods, 0), (0, None));
        let p = new_pod(&job(true), Some(1), Some(2)).expect("pod");
        assert_eq!(p.annotations()[INDEX_FAILURE_COUNT], "2");
    }

    #[test]
    fn success_policy_rules() {
        use k8s_openapi::api::batch::v1::SuccessPolicyRule;
        let rule = |ix: Option<&str>, n: Option<i32>| SuccessPolicyRule {
            succeeded_indexes: ix.map(Into::into),
            succeeded_count: n,
        };
        let policy = SuccessPolicy {
            rules: vec![
                rule(Some("0,2"), None),
                rule(Some("3-5"), Some(2)),
                rule(None, Some(4)),
            ],
        };
        let done = |v: &[i32]| v.iter().copied().collect::<BTreeSet<i32>>();
        assert_eq!(success_policy_rule(&policy, &done(&[0])), None);
        assert_eq!(success_policy_rule(&policy, &done(&[0, 2])), Some(0));
        assert_eq!(success_policy_rule(&policy, &done(&[3, 5])), Some(1));
        assert_eq!(success_policy_rule(&policy, &done(&[1, 3, 6, 7])), Some(2));
    }

    #[test]
    fn indexed_pod_gets_index_hostname_env_and_finalizer() {
        let p = new_pod(&job(true), Some(2), None).expect("pod");
        assert_eq!(p.metadata.generate_name.as_deref(), Some("pi-2-"));
        assert_eq!(p.annotations()[COMPLETION_INDEX], "2");
        assert_eq!(p.labels()[COMPLETION_INDEX], "2");
        assert_eq!(p.labels()["job-name"], "pi");
        assert!(p.finalizers().contains(&TRACKING_FINALIZER.to_string()));
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("pi-2"));
        let env = &spec.containers[0].env.as_ref().unwrap()[0];
        assert_eq!(env.name, COMPLETION_INDEX_ENV);
        assert_eq!(
            env.value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        );
        assert_eq!(pod_index(&p), Some(2));
        let p = new_pod(&job(false), None, None).expect("pod");
        assert_eq!(p.metadata.generate_name.as_deref(), Some("pi-"));
        assert!(p.annotations().get(COMPLETION_INDEX).is_none());
        assert_eq!(p.metadata.owner_references.as_ref().unwrap()[0].kind, "Job");
    }

    fn failed_with(code: i32, cond: Option<&str>) -> Pod {
        let mut p = pod("p", "Failed", None, Some("n"), 0);
        let st = p.status.as_mut().unwrap();
        st.container_statuses = Some(vec![ContainerStatus {
            name: "c".into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    finished_at: Some(Time(ts(50))),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        if let Some(c) = cond {
            st.conditions
                .get_or_insert_with(Vec::new)
                .push(PodCondition {
                    type_: c.into(),
                    status: "True".into(),
                    ..Default::default()
                });
        }
        p
    }

    #[test]
    fn pod_failure_policy_rules_in_order() {
        let policy = PodFailurePolicy {
            rules: vec![
                PodFailurePolicyRule {
                    action: "Ignore".into(),
                    on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                        type_: "DisruptionTarget".into(),
                        status: "True".into(),
                    }]),
                    on_exit_codes: None,
                },
                PodFailurePolicyRule {
                    action: "FailJob".into(),
                    on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                        container_name: Some("c".into()),
                        operator: "In".into(),
                        values: vec![42],
                    }),
                    on_pod_conditions: None,
                },
            ],
        };
        assert_eq!(
            failure_policy_action(&policy, &failed_with(42, None)).as_deref(),
            Some("FailJob")
        );
        assert_eq!(failure_policy_action(&policy, &failed_with(1, None)), None);
        assert_eq!(
            failure_policy_action(&policy, &failed_with(42, Some("DisruptionTarget"))).as_deref(),
            Some("Ignore")
        );
        assert_eq!(pod_finish_time(&failed_with(1, None)), Some(ts(50)));
    }

    #[test]
    fn outcomes_and_ttl() {
        assert_eq!(
            pod_outcome(&pod("a", "Succeeded", None, None, 0)),
            Some(true)
        );
        assert_eq!(pod_outcome(&pod("a", "Failed", None, None, 0)), Some(false));
        assert_eq!(pod_outcome(&pod("a", "Running", None, None, 0)), None);
        let mut deleted = pod("a", "Running", None, None, 0);
        deleted.metadata.deletion_timestamp = Some(Time(ts(5)));
        assert_eq!(pod_outcome(&deleted), Some(false));

        let mut j = job(false);
        assert_eq!(ttl_expiry(&j), None);
        j.spec.as_mut().unwrap().ttl_seconds_after_finished = Some(30);
        assert_eq!(ttl_expiry(&j), None, "not finished");
        let mut conds = vec![];
        set_condition(
            &mut conds,
            "Complete",
            "True",
            "CompletionsReached",
            "m",
            &Time(ts(100)),
        );
        j.status = Some(JobStatus {
            conditions: Some(conds),
            completion_time: Some(Time(ts(100))),
            ..Default::default()
        });
        assert_eq!(ttl_expiry(&j), Some(ts(130)));
    }

    #[test]
    fn conditions_keep_transition_time() {
        let mut conds = vec![];
        set_condition(
            &mut conds,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            &Time(ts(1)),
        );
        set_condition(
            &mut conds,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            &Time(ts(2)),
        );
        assert_eq!(conds[0].last_transition_time, Some(Time(ts(1))));
        set_condition(
            &mut conds,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            &Time(ts(3)),
        );
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].last_transition_time, Some(Time(ts(3))));
    }
}
