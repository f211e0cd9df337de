//! CronJob controller: creates Jobs on a cron schedule.
//!
//! Follows kube's `pkg/controller/cronjob` (the v2 controller):
//! - schedules are standard 5-field cron (`minute hour day-of-month month
//!   day-of-week`: lists, ranges, steps, `*`/`?`, JAN-DEC and SUN-SAT names,
//!   the day-of-month/day-of-week OR rule) or `@yearly`, `@annually`,
//!   `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`; see [`Schedule`];
//! - `spec.timeZone` (or a `CRON_TZ=`/`TZ=` prefix) is read from the host's
//!   tz database (`/usr/share/zoneinfo`); UTC otherwise;
//! - each sync finds the most recent missed schedule since
//!   `status.lastScheduleTime` (or creation), bounded by
//!   `startingDeadlineSeconds`; only that one runs (more than 100 missed:
//!   a TooManyMissedTimes warning); too late for the deadline: MissSchedule;
//! - `concurrencyPolicy` Allow / Forbid (JobAlreadyActive) / Replace,
//!   `suspend`, `successfulJobsHistoryLimit` / `failedJobsHistoryLimit`;
//! - jobs are named `<cronjob>-<scheduled unix time in minutes>` and carry
//!   the annotation `batch.kubernetes.io/cronjob-scheduled-timestamp`;
//! - status: active, lastScheduleTime, lastSuccessfulTime.
//!
//! Owns the Jobs it creates (and deletes finished ones past the history limits).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::civil::Date;
use k8s_openapi::jiff::tz::{AmbiguousOffset, TimeZone};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::events::EventType;
use crate::job::finished_condition;
use crate::reconcile::Ctx;
use crate::util::{
    controller_owner_ref, is_conflict, is_controlled_by, is_namespace_terminating, is_not_found,
    time_secs,
};

pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
const ZONEINFO: &str = "/usr/share/zoneinfo";
/// More missed schedules than this earn a warning (kube's limit).
const MAX_MISSED: u32 = 100;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CronError {
    #[error(
        "expected exactly 5 fields (minute hour day-of-month month day-of-week), found {0}: {1:?}"
    )]
    FieldCount(usize, String),
    #[error("unrecognized descriptor {0:?}: use @yearly, @monthly, @weekly, @daily or @hourly")]
    Descriptor(String),
    #[error("{field}: {value:?} is not valid (allowed {min}-{max}, names, `*`, ranges a-b and steps /n)")]
    Field {
        field: &'static str,
        value: String,
        min: u32,
        max: u32,
    },
    #[error("unknown time zone {0:?}: use an IANA name such as \"Europe/Berlin\" (see /usr/share/zoneinfo)")]
    TimeZone(String),
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("CronJob has no namespace, name or uid; it cannot be reconciled")]
    MissingMeta,
    #[error("talking to the API server failed: {0}")]
    Kube(#[from] kube::Error),
}

// ---------------------------------------------------------------------------
// Cron schedules
// ---------------------------------------------------------------------------

/// A parsed cron schedule: one bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    /// `*` or `?` in day-of-month / day-of-week: then both must match
    /// (otherwise either may), as in cron and robfig/cron.
    dom_star: bool,
    dow_star: bool,
}

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DOM: FieldSpec = FieldSpec {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: FieldSpec = FieldSpec {
    name: "day of week",
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// Parses one field; returns (bits, star).
fn parse_field(expr: &str, f: &FieldSpec) -> Result<(u64, bool), CronError> {
    let bad = || CronError::Field {
        field: f.name,
        value: expr.to_string(),
        min: f.min,
        max: f.max,
    };
    let value = |s: &str| -> Result<u32, CronError> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = f.names.iter().position(|n| *n == lower) {
            return Ok(f.min + i as u32);
        }
        let v: u32 = s.parse().map_err(|_| bad())?;
        if v < f.min || v > f.max {
            return Err(bad());
        }
        Ok(v)
    };
    let mut bits = 0u64;
    let mut star = false;
    for part in expr.split(',') {
        if part.is_empty() {
            return Err(bad());
        }
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| bad())?;
                if step == 0 {
                    return Err(bad());
                }
                (r, Some(step))
            }
            None => (part, None),
        };
        let (start, end, is_star) = if range == "*" || range == "?" {
            (f.min, f.max, true)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?, false)
        } else {
            let v = value(range)?;
            // "N/step" means N through the maximum.
            (v, if step.is_some() { f.max } else { v }, false)
        };
        if start > end {
            return Err(bad());
        }
        let step = step.unwrap_or(1);
        if is_star && step == 1 {
            star = true;
        }
        let mut v = start;
        while v <= end {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

/// Splits a `CRON_TZ=<zone> ` / `TZ=<zone> ` prefix off a schedule.
pub fn split_tz_prefix(spec: &str) -> (Option<&str>, &str) {
    let s = spec.trim();
    for p in ["CRON_TZ=", "TZ="] {
        if let Some(rest) = s.strip_prefix(p) {
            let (zone, sched) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            return (Some(zone), sched.trim());
        }
    }
    (None, s)
}

impl Schedule {
    /// Parses a standard cron expression or descriptor (without a TZ prefix).
    pub fn parse(expr: &str) -> Result<Schedule, CronError> {
        let expr = expr.trim();
        let expanded = if let Some(d) = expr.strip_prefix('@') {
            match d.to_ascii_lowercase().as_str() {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                _ => return Err(CronError::Descriptor(expr.to_string())),
            }
        } else {
            expr
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(CronError::FieldCount(fields.len(), expr.to_string()));
        }
        let (minutes, _) = parse_field(fields[0], &MINUTE)?;
        let (hours, _) = parse_field(fields[1], &HOUR)?;
        let (days_of_month, dom_star) = parse_field(fields[2], &DOM)?;
        let (months, _) = parse_field(fields[3], &MONTH)?;
        let (days_of_week, dow_star) = parse_field(fields[4], &DOW)?;
        Ok(Schedule {
            minutes,
            hours,
            days_of_month,
            months,
            days_of_week,
            dom_star,
            dow_star,
        })
    }

    fn day_matches(&self, d: Date) -> bool {
        let dom = self.days_of_month & (1 << d.day()) != 0;
        let dow = self.days_of_week & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first scheduled instant strictly after `after`, in `tz` (None if
    /// nothing matches within five years, e.g. `0 0 30 2 *`). Local times
    /// that do not exist (a DST gap) are skipped; repeated ones (a fold) run
    /// at their first occurrence after `after`.
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let mut day = tz.to_datetime(after).date();
        for _ in 0..(366 * 5 + 2) {
            if self.months & (1 << day.month()) != 0 && self.day_matches(day) {
                for h in (0..24).filter(|h| self.hours & (1u64 << h) != 0) {
                    for m in (0..60).filter(|m| self.minutes & (1u64 << m) != 0) {
                        let dt = day.at(h as i8, m as i8, 0, 0);
                        let candidates: Vec<Timestamp> =
                            match tz.to_ambiguous_timestamp(dt).offset() {
                                AmbiguousOffset::Unambiguous { offset } => {
                                    offset.to_timestamp(dt).ok().into_iter().collect()
                                }
                                AmbiguousOffset::Gap { .. } => vec![],
                                AmbiguousOffset::Fold { before, after } => [before, after]
                                    .into_iter()
                                    .filter_map(|o| o.to_timestamp(dt).ok())
                                    .collect(),
                            };
                        if let Some(t) = candidates.into_iter().filter(|t| *t > after).min() {
                            return Some(t);
                        }
                    }
                }
            }
            day = day.tomorrow().ok()?;
        }
        None
    }
}

/// Loads a time zone by IANA name from the host's tz database.
pub fn load_time_zone(name: &str) -> Result<TimeZone, CronError> {
    if name.is_empty() || name == "UTC" || name == "Etc/UTC" {
        return Ok(TimeZone::UTC);
    }
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/_-+".contains(c));
    if !ok_chars || name.starts_with('/') || name.split('/').any(|p| p.is_empty() || p == "..") {
        return Err(CronError::TimeZone(name.to_string()));
    }
    let data = std::fs::read(std::path::Path::new(ZONEINFO).join(name))
        .map_err(|_| CronError::TimeZone(name.to_string()))?;
    TimeZone::tzif(name, &data).map_err(|_| CronError::TimeZone(name.to_string()))
}

/// The most recent scheduled time in (`earliest`, `now`] and how many
/// schedules were missed (kube's `mostRecentScheduleTime`); counting stops
/// a little past [`MAX_MISSED`].
pub fn most_recent(
    sched: &Schedule,
    tz: &TimeZone,
    earliest: Timestamp,
    now: Timestamp,
) -> (Option<Timestamp>, u32) {
    let mut last = None;
    let mut count = 0u32;
    let mut t = earliest;
    while let Some(next) = sched.next_after(t, tz) {
        if next > now {
            break;
        }
        last = Some(next);
        count += 1;
        t = next;
        if count > MAX_MISSED {
            // Too many to walk one by one: find the latest in growing windows before now.
            for window in [3600, 86_400, 86_400 * 32, 86_400 * 367, 86_400 * 366 * 5] {
                let from = Timestamp::from_second(now.as_second() - window)
                    .unwrap_or(t)
                    .max(t);
                let (mut x, mut latest) = (from, None);
                while let Some(n) = sched.next_after(x, tz).filter(|n| *n <= now) {
                    latest = Some(n);
                    x = n;
                }
                if latest.is_some() {
                    return (latest, count);
                }
            }
            break;
        }
    }
    (last, count)
}

/// The job name for a scheduled time: `<cronjob>-<unix minutes>`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// RFC 3339 in the schedule's zone, `Z` for UTC (as Go's time.RFC3339).
pub fn format_scheduled(t: Timestamp, tz: &TimeZone) -> String {
    let z = t.to_zoned(tz.clone());
    let s = z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string();
    match s.strip_suffix("+00:00") {
        Some(base) => format!("{base}Z"),
        None => s,
    }
}

/// The Job a CronJob creates for `scheduled`.
pub fn job_from_template(cj: &CronJob, scheduled: Timestamp, tz: &TimeZone) -> Option<Job> {
    let spec = cj.spec.as_ref()?;
    let tmpl = &spec.job_template;
    let tmeta = tmpl.metadata.clone().unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP_ANNOTATION.into(),
        format_scheduled(scheduled, tz),
    );
    Some(Job {
        metadata: ObjectMeta {
            name: Some(job_name(cj.metadata.name.as_deref()?, scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_owner_ref(cj)?]),
            ..Default::default()
        },
        spec: tmpl.spec.clone(),
        status: None,
    })
}

/// Finished jobs beyond a history limit, oldest (by start time) first.
pub fn history_to_delete(finished: &[&Job], limit: Option<i32>) -> Vec<String> {
    let Some(limit) = limit else {
        return vec![];
    };
    let mut v: Vec<&&Job> = finished.iter().collect();
    let excess = v.len() as i64 - i64::from(limit.max(0));
    if excess <= 0 {
        return vec![];
    }
    v.sort_by(|a, b| {
        let start = |j: &Job| {
            j.status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0.as_second())
                .unwrap_or(i64::MAX)
        };
        start(a)
            .cmp(&start(b))
            .then_with(|| {
                time_secs(a.metadata.creation_timestamp.as_ref())
                    .cmp(&time_secs(b.metadata.creation_timestamp.as_ref()))
            })
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
    v.into_iter()
        .take(excess as usize)
        .map(|j| j.name_any())
        .collect()
}

// ---------------------------------------------------------------------------
// Reconcile
// ---------------------------------------------------------------------------

/// Runs the CronJob controller until the task is dropped.
pub async fn run(client: Client) -> anyhow::Result<()> {
    let ctx = Ctx::new(&client, "cronjob-controller");
    Controller::new(
        Api::<CronJob>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Job>::all(client), watcher::Config::default())
    .run(reconcile, error_policy, ctx)
    .for_each(|res| crate::reconcile::log_result("cronjob", res))
    .await;
    Ok(())
}

fn error_policy(_c: Arc<CronJob>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    let kube_err = match err {
        Error::Kube(e) => Some(e),
        _ => None,
    };
    Action::requeue(crate::reconcile::error_requeue("cronjob", kube_err, err))
}

fn job_ref(j: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: j.metadata.name.clone(),
        namespace: j.metadata.namespace.clone(),
        uid: j.metadata.uid.clone(),
        resource_version: j.metadata.resource_version.clone(),
        ..Default::default()
    }
}

fn until(now: Timestamp, at: Timestamp) -> Duration {
    // kube wakes 100 ms after the scheduled time.
    let ms = at.as_millisecond() - now.as_millisecond() + 100;
    Duration::from_millis(ms.clamp(100, 24 * 3_600_000) as u64)
}

async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some((ns, name, uid)) = crate::reconcile::ns_name_uid(&cj.metadata) else {
        return Err(Error::MissingMeta);
    };
    let cj_api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(cj) = crate::reconcile::get_current(&cj_api, &name, &uid).await? else {
        return Ok(Action::await_change());
    };
    if cj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(spec) = cj.spec.clone() else {
        return Ok(Action::await_change());
    };
    let jobs: Vec<Job> = jobs_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|j| is_controlled_by(&j.metadata, &uid))
        .collect();
    let old_status = cj.status.clone().unwrap_or_default();
    let mut status = old_status.clone();
    let mut active: Vec<ObjectReference> = status.active.take().unwrap_or_default();

    // 1. Reconcile the active list with the jobs that exist.
    let job_uids: BTreeSet<String> = jobs.iter().filter_map(|j| j.metadata.uid.clone()).collect();
    active.retain(|r| r.uid.as_ref().is_some_and(|u| job_uids.contains(u)));
    for j in &jobs {
        let juid = j.metadata.uid.clone().unwrap_or_default();
        let in_active = active
            .iter()
            .any(|r| r.uid.as_deref() == Some(juid.as_str()));
        match finished_condition(j) {
            Some(cond) => {
                if in_active {
                    active.retain(|r| r.uid.as_deref() != Some(juid.as_str()));
                    ctx.recorder
                        .publish(
                            &cj,
                            EventType::Normal,
                            "SawCompletedJob",
                            &format!(
                                "Saw completed job: {}, status: {}",
                                j.name_any(),
                                cond.type_
                            ),
                        )
                        .await;
                }
                if cond.type_ == "Complete" {
                    let done = j.status.as_ref().and_then(|s| s.completion_time.clone());
                    if let Some(done) = done {
                        if status
                            .last_successful_time
                            .as_ref()
                            .is_none_or(|t| t.0 < done.0)
                        {
                            status.last_successful_time = Some(done);
                        }
                    }
                }
            }
            None if !in_active => {
                ctx.recorder
                    .publish(
                        &cj,
                        EventType::Warning,
                        "UnexpectedJob",
                        &format!(
                            "Saw a job that the controller did not create or forgot: {}",
                            j.name_any()
                        ),
                    )
                    .await;
            }
            None => {}
        }
    }

    // 2. History limits.
    let succeeded: Vec<&Job> = jobs
        .iter()
        .filter(|j| finished_condition(j).is_some_and(|c| c.type_ == "Complete"))
        .collect();
    let failed: Vec<&Job> = jobs
        .iter()
        .filter(|j| finished_condition(j).is_some_and(|c| c.type_ == "Failed"))
        .collect();
    let mut doomed = history_to_delete(&succeeded, spec.successful_jobs_history_limit);
    doomed.extend(history_to_delete(&failed, spec.failed_jobs_history_limit));
    for jname in doomed {
        delete_job(&ctx, &jobs_api, &cj, &jname).await?;
    }

    // 3. Schedule.
    let now = Timestamp::now();
    let (tz_prefix, sched_str) = split_tz_prefix(&spec.schedule);
    let tz_name = spec.time_zone.as_deref().or(tz_prefix).unwrap_or("UTC");
    let mut requeue = None;
    let parsed = Schedule::parse(sched_str).and_then(|s| Ok((s, load_time_zone(tz_name)?)));
    match parsed {
        Err(e) => {
            let reason = if matches!(e, CronError::TimeZone(_)) {
                "UnknownTimeZone"
            } else {
                "UnparseableSchedule"
            };
            ctx.recorder
                .publish(
                    &cj,
                    EventType::Warning,
                    reason,
                    &format!("unparseable schedule {:?}: {e}", spec.schedule),
                )
                .await;
        }
        Ok(_) if spec.suspend.unwrap_or(false) => {}
        Ok((sched, tz)) => {
            let created = cj
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(now);
            let mut earliest = status
                .last_schedule_time
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(created);
            if let Some(sds) = spec.starting_deadline_seconds {
                if let Ok(bound) = Timestamp::from_second(now.as_second() - sds) {
                    if bound > earliest {
                        earliest = bound;
                    }
                }
            }
            let (recent, missed) = most_recent(&sched, &tz, earliest, now);
            requeue = sched.next_after(now, &tz).map(|n| until(now, n));
            if missed > MAX_MISSED {
                ctx.recorder
                    .publish(
                        &cj,
                        EventType::Warning,
                        "TooManyMissedTimes",
                        &format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"),
                    )
                    .await;
            }
            if let Some(scheduled) = recent {
                let too_late = spec
                    .starting_deadline_seconds
                    .is_some_and(|sds| scheduled.as_second() + sds < now.as_second());
                let jname = job_name(&name, scheduled);
                let exists = jobs.iter().any(|j| j.name_any() == jname);
                if too_late {
                    ctx.recorder
                        .publish(
                            &cj,
                            EventType::Warning,
                            "MissSchedule",
                            &format!(
                                "Missed scheduled time to start a job: {}",
                                format_scheduled(scheduled, &tz)
                            ),
                        )
                        .await;
                } else if exists {
                    // Already started (our status write may have been lost).
                    if status
                        .last_schedule_time
                        .as_ref()
                        .is_none_or(|t| t.0 < scheduled)
                    {
                        status.last_schedule_time = Some(Time(scheduled));
                    }
                } else if spec.concurrency_policy.as_deref() == Some("Forbid") && !active.is_empty()
                {
                    ctx.recorder
                        .publish(
                            &cj,
                            EventType::Normal,
                            "JobAlreadyActive",
                            "Not starting job because prior execution is running and concurrency policy is Forbid",
                        )
                        .await;
                } else {
                    if spec.concurrency_policy.as_deref() == Some("Replace") {
                        for r in std::mem::take(&mut active) {
                            if let Some(n) = r.name.as_deref() {
                                delete_job(&ctx, &jobs_api, &cj, n).await?;
                            }
                        }
                    }
                    if let Some(job) = job_from_template(&cj, scheduled, &tz) {
                        match jobs_api.create(&PostParams::default(), &job).await {
                            Ok(j) => {
                                ctx.recorder
                                    .publish(
                                        &cj,
                                        EventType::Normal,
                                        "SuccessfulCreate",
                                        &format!("Created job {jname}"),
                                    )
                                    .await;
                                active.push(job_ref(&j));
                                status.last_schedule_time = Some(Time(scheduled));
                            }
                            Err(e) if is_conflict(&e) => {
                                status.last_schedule_time = Some(Time(scheduled));
                            }
                            Err(e) if is_namespace_terminating(&e) => {
                                return Ok(Action::await_change())
                            }
                            Err(e) => {
                                ctx.recorder
                                    .publish(
                                        &cj,
                                        EventType::Warning,
                                        "FailedCreate",
                                        &format!("Error creating job: {e}"),
                                    )
                                    .await;
                                return Err(e.into());
                            }
                        }
                    }
                }
            }
        }
    }

    // 4. Status.
    status.active = (!active.is_empty()).then_some(active);
    if status != old_status {
        write_status(&cj_api, &name, &status).await?;
    }
    Ok(match requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

async fn write_status(api: &Api<CronJob>, name: &str, status: &CronJobStatus) -> Result<(), Error> {
    let mut value = serde_json::to_value(status).unwrap_or_default();
    if value.get("active").is_none() {
        value["active"] = serde_json::Value::Null;
    }
    // Gone meanwhile: nothing left to write to.
    crate::reconcile::merge_status(api, name, value).await?;
    Ok(())
}

async fn delete_job(ctx: &Ctx, api: &Api<Job>, cj: &CronJob, jname: &str) -> Result<(), Error> {
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    match api.delete(jname, &dp).await {
        Ok(_) => {
            ctx.recorder
                .publish(
                    cj,
                    EventType::Normal,
                    "SuccessfulDelete",
                    &format!("Deleted job {jname}"),
                )
                .await;
            Ok(())
        }
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::civil::date;

    fn utc(y: i16, mo: i8, d: i8, h: i8, mi: i8) -> Timestamp {
        date(y, mo, d)
            .at(h, mi, 0, 0)
            .to_zoned(TimeZone::UTC)
            .unwrap()
            .timestamp()
    }

    fn next(expr: &str, after: Timestamp) -> Timestamp {
        Schedule::parse(expr)
            .unwrap()
            .next_after(after, &TimeZone::UTC)
            .unwrap()
    }

    #[test]
    fn parses_lists_ranges_steps_and_names() {
        let s = Schedule::parse("*/15 9-17 * JAN,mar-May mon-fri").unwrap();
        assert_eq!(s.minutes, 1 | 1 << 15 | 1 << 30 | 1 << 45);
        assert_eq!(s.hours, (9..=17).fold(0, |b, h| b | 1 << h));
        assert_eq!(s.months, 1 << 1 | 1 << 3 | 1 << 4 | 1 << 5);
        assert_eq!(s.days_of_week, (1..=5).fold(0, |b, d| b | 1 << d));
        assert!(s.dom_star && !s.dow_star);
        let s = Schedule::parse("5/20 0 1 * *").unwrap();
        assert_eq!(s.minutes, 1 << 5 | 1 << 25 | 1 << 45);
        assert_eq!(
            Schedule::parse("@hourly").unwrap(),
            Schedule::parse("0 * * * *").unwrap()
        );
        assert_eq!(
            Schedule::parse("@annually").unwrap(),
            Schedule::parse("0 0 1 1 *").unwrap()
        );
        assert!(matches!(
            Schedule::parse("* * * *"),
            Err(CronError::FieldCount(4, _))
        ));
        assert!(matches!(
            Schedule::parse("60 * * * *"),
            Err(CronError::Field {
                field: "minute",
                ..
            })
        ));
        assert!(Schedule::parse("* * * * 7").is_err());
        assert!(Schedule::parse("*/0 * * * *").is_err());
        assert!(Schedule::parse("5-1 * * * *").is_err());
        assert!(Schedule::parse("@reboot").is_err());
        assert_eq!(
            split_tz_prefix("CRON_TZ=Europe/Berlin 0 5 * * *"),
            (Some("Europe/Berlin"), "0 5 * * *")
        );
        assert_eq!(split_tz_prefix("0 5 * * *"), (None, "0 5 * * *"));
    }

    #[test]
    fn next_times() {
        let t = utc(2024, 1, 1, 10, 7);
        assert_eq!(next("*/1 * * * *", t), utc(2024, 1, 1, 10, 8));
        assert_eq!(next("*/15 * * * *", t), utc(2024, 1, 1, 10, 15));
        assert_eq!(next("0 * * * *", t), utc(2024, 1, 1, 11, 0));
        assert_eq!(next("30 9 * * *", t), utc(2024, 1, 2, 9, 30));
        // 2024-01-01 is a Monday; next Sunday is the 7th.
        assert_eq!(next("@weekly", t), utc(2024, 1, 7, 0, 0));
        assert_eq!(next("0 0 29 2 *", t), utc(2024, 2, 29, 0, 0));
        assert_eq!(
            next("@monthly", utc(2024, 12, 15, 0, 0)),
            utc(2025, 1, 1, 0, 0)
        );
        // Exactly on a scheduled minute: strictly after.
        assert_eq!(
            next("0 * * * *", utc(2024, 1, 1, 11, 0)),
            utc(2024, 1, 1, 12, 0)
        );
        assert_eq!(
            Schedule::parse("0 0 30 2 *")
                .unwrap()
                .next_after(t, &TimeZone::UTC),
            None
        );
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // Both restricted: either matches (the 13th, or any Friday).
        let t = utc(2024, 1, 1, 0, 0);
        assert_eq!(next("0 0 13 * 5", t), utc(2024, 1, 5, 0, 0));
        assert_eq!(
            next("0 0 13 * 5", utc(2024, 1, 12, 1, 0)),
            utc(2024, 1, 13, 0, 0)
        );
        // Day of week starred: only the 13th.
        assert_eq!(next("0 0 13 * *", t), utc(2024, 1, 13, 0, 0));
        assert_eq!(next("0 0 * * fri", t), utc(2024, 1, 5, 0, 0));
    }

    #[test]
    fn time_zones_and_dst() {
        let berlin = load_time_zone("Europe/Berlin").expect("tzdata installed");
        let s = Schedule::parse("0 9 * * *").unwrap();
        // Winter: 09:00 CET = 08:00 UTC; summer: 09:00 CEST = 07:00 UTC.
        assert_eq!(
            s.next_after(utc(2024, 1, 10, 12, 0), &berlin),
            Some(utc(2024, 1, 11, 8, 0))
        );
        assert_eq!(
            s.next_after(utc(2024, 7, 10, 12, 0), &berlin),
            Some(utc(2024, 7, 11, 7, 0))
        );
        // 02:30 does not exist on 2024-03-31 in Berlin: that day is skipped.
        let gap = Schedule::parse("30 2 * * *").unwrap();
        assert_eq!(
            gap.next_after(utc(2024, 3, 30, 12, 0), &berlin),
            Some(utc(2024, 4, 1, 0, 30))
        );
        assert_eq!(
            format_scheduled(utc(2024, 7, 11, 7, 0), &berlin),
            "2024-07-11T09:00:00+02:00"
        );
        assert_eq!(
            format_scheduled(utc(2024, 7, 11, 7, 0), &TimeZone::UTC),
            "2024-07-11T07:00:00Z"
        );
        assert!(matches!(
            load_time_zone("Mars/Olympus"),
            Err(CronError::TimeZone(_))
        ));
        assert!(load_time_zone("../etc/passwd").is_err());
        assert!(load_time_zone("").is_ok());
    }

    #[test]
    fn missed_schedules_and_names() {
        let s = Schedule::parse("*/1 * * * *").unwrap();
        let (last, n) = most_recent(
            &s,
            &TimeZone::UTC,
            utc(2024, 1, 1, 10, 0),
            utc(2024, 1, 1, 10, 5),
        );
        assert_eq!((last, n), (Some(utc(2024, 1, 1, 10, 5)), 5));
        let (last, n) = most_recent(
            &s,
            &TimeZone::UTC,
            utc(2024, 1, 1, 10, 0),
            utc(2024, 1, 1, 10, 0),
        );
        assert_eq!((last, n), (None, 0));
        let (last, n) = most_recent(
            &s,
            &TimeZone::UTC,
            utc(2024, 1, 1, 0, 0),
            utc(2024, 1, 2, 0, 0),
        );
        assert_eq!(last, Some(utc(2024, 1, 2, 0, 0)));
        assert!(n > MAX_MISSED);
        assert_eq!(job_name("hello", utc(2024, 1, 1, 0, 1)), "hello-28401121");
    }

    fn finished_job(name: &str, start: i64) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: None,
            status: Some(k8s_openapi::api::batch::v1::JobStatus {
                start_time: Some(Time(Timestamp::from_second(start).unwrap())),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn history_drops_oldest() {
        let (a, b, c) = (
            finished_job("a", 3),
            finished_job("b", 1),
            finished_job("c", 2),
        );
        let all = vec![&a, &b, &c];
        assert_eq!(history_to_delete(&all, Some(1)), vec!["b", "c"]);
        assert_eq!(history_to_delete(&all, Some(0)).len(), 3);
        assert!(history_to_delete(&all, Some(3)).is_empty());
        assert!(history_to_delete(&all, None).is_empty());
    }
}
