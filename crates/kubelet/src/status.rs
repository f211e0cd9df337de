//! Pure pod-status logic: the kubelet's in-memory view of each container
//! (`ContainerRecord`), crash/pull back-off, and the Kubernetes `PodStatus`
//! computed from it (phase by `getPhase`'s rules, conditions with stable
//! transition times, containerStatuses). No I/O; the pod worker owns the
//! records and writes the result through `pods/status`.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::time::Duration;

/// chrono → the API's `Time`.
pub fn ktime(t: DateTime<Utc>) -> Time {
    let nanos = t.timestamp_nanos_opt().unwrap_or(0) as i128;
    Time(
        k8s_openapi::jiff::Timestamp::from_nanosecond(nanos)
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

/// Kubernetes' container restart back-off: 10 s, doubling, capped at 5 min.
/// `failures` counts consecutive restarts (1 = first restart).
pub fn backoff_delay(failures: u32) -> Duration {
    let base = 10u64;
    let exp = failures.saturating_sub(1).min(10);
    Duration::from_secs((base << exp).min(300))
}

/// A container that ran for this long gets its crash back-off reset.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);

/// What happens to a container after its process exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExit {
    /// Finished for good (init success, or the restart policy says no).
    Done,
    /// The pod is terminating: nothing more to do.
    Stay,
    /// Start again after `delay`; `failures` is the new consecutive count.
    Restart { failures: u32, delay: Duration },
}

/// The kubelet's restart decision. The first restart after a crash is
/// immediate, later ones back off (10 s doubling to 5 min); a run longer than
/// 10 minutes resets the count; a changed definition restarts at once. Pure.
pub fn after_exit(
    policy: &str,
    is_init: bool,
    exit_code: i32,
    forced: bool,
    terminating: bool,
    failures: u32,
    ran: Duration,
) -> AfterExit {
    if terminating {
        return if is_init && exit_code == 0 {
            AfterExit::Done
        } else {
            AfterExit::Stay
        };
    }
    if forced {
        return AfterExit::Restart {
            failures: 0,
            delay: Duration::ZERO,
        };
    }
    let restart = if is_init {
        exit_code != 0 && policy != "Never"
    } else {
        match policy {
            "Never" => false,
            "OnFailure" => exit_code != 0,
            _ => true,
        }
    };
    if !restart {
        return AfterExit::Done;
    }
    let failures = if ran > BACKOFF_RESET_AFTER {
        1
    } else {
        failures + 1
    };
    let delay = if failures == 1 {
        Duration::ZERO
    } else {
        backoff_delay(failures - 1)
    };
    AfterExit::Restart { failures, delay }
}

/// A finished container run.
#[derive(Debug, Clone, PartialEq)]
pub struct Termination {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
    pub container_id: String,
}

impl Termination {
    /// `Completed` for 0, `Error` otherwise (Kubernetes' reasons).
    pub fn reason_for(exit_code: i32) -> &'static str {
        if exit_code == 0 {
            "Completed"
        } else {
            "Error"
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum CState {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        id: String,
        started_at: DateTime<Utc>,
    },
    Terminated(Termination),
}

/// What the kubelet knows about one container of a pod.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerRecord {
    pub name: String,
    /// As written in the pod spec.
    pub image: String,
    /// Resolved image name and ID once known.
    pub image_ref: Option<String>,
    pub image_id: Option<String>,
    pub restart_count: i32,
    pub state: CState,
    pub last_termination: Option<Termination>,
    /// Startup probe passed (or none).
    pub started: bool,
    /// Readiness probe passing (or none) and started.
    pub ready: bool,
}

impl ContainerRecord {
    pub fn new(name: &str, image: &str) -> Self {
        ContainerRecord {
            name: name.to_string(),
            image: image.to_string(),
            image_ref: None,
            image_id: None,
            restart_count: 0,
            state: CState::Waiting {
                reason: "ContainerCreating".into(),
                message: None,
            },
            last_termination: None,
            started: false,
            ready: false,
        }
    }
    /// Running and ready (what `ready` in the status and the conditions mean).
    pub fn is_ready(&self) -> bool {
        self.is_running() && self.ready
    }
    pub fn is_running(&self) -> bool {
        matches!(self.state, CState::Running { .. })
    }
}

fn terminated(t: &Termination) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: t.exit_code,
            signal: t.signal,
            reason: Some(t.reason.clone()),
            message: t.message.clone(),
            started_at: t.started_at.map(ktime),
            finished_at: Some(ktime(t.finished_at)),
            container_id: Some(format!("runc://{}", t.container_id)),
        }),
        ..Default::default()
    }
}

/// One `containerStatuses[]` entry. Readiness = running (no probes yet).
pub fn container_status(r: &ContainerRecord) -> ContainerStatus {
    let (state, container_id) = match &r.state {
        CState::Waiting { reason, message } => (
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: message.clone(),
                }),
                ..Default::default()
            },
            r.last_termination.as_ref().map(|t| t.container_id.clone()),
        ),
        CState::Running { id, started_at } => (
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(ktime(*started_at)),
                }),
                ..Default::default()
            },
            Some(id.clone()),
        ),
        CState::Terminated(t) => (terminated(t), Some(t.container_id.clone())),
    };
    ContainerStatus {
        name: r.name.clone(),
        image: r.image_ref.clone().unwrap_or_else(|| r.image.clone()),
        image_id: r.image_id.clone().unwrap_or_default(),
        container_id: container_id.map(|id| format!("runc://{id}")),
        ready: r.is_ready(),
        started: Some(r.is_running() && r.started),
        restart_count: r.restart_count,
        state: Some(state),
        last_state: Some(
            r.last_termination
                .as_ref()
                .map(terminated)
                .unwrap_or_default(),
        ),
        ..Default::default()
    }
}

/// The pod phase from its containers (Kubernetes' `getPhase`).
pub fn pod_phase(
    restart_policy: &str,
    init_failed: bool,
    init_done: bool,
    recs: &[ContainerRecord],
) -> &'static str {
    if init_failed {
        return "Failed";
    }
    if !init_done {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for r in recs {
        match &r.state {
            CState::Running { .. } => running += 1,
            CState::Terminated(t) => {
                stopped += 1;
                if t.exit_code == 0 {
                    succeeded += 1;
                }
            }
            CState::Waiting { .. } => {
                if r.last_termination.is_some() {
                    stopped += 1;
                } else {
                    waiting += 1;
                }
            }
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        if restart_policy == "Always" {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if restart_policy == "Never" {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    }
}

/// Inputs for `pod_status`.
#[derive(Debug, Clone)]
pub struct PodStatusInput<'a> {
    pub restart_policy: &'a str,
    pub init: &'a [ContainerRecord],
    pub containers: &'a [ContainerRecord],
    pub init_done: bool,
    pub init_failed: bool,
    pub sandbox_ready: bool,
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub start_time: DateTime<Utc>,
    pub previous: Option<&'a PodStatus>,
    pub now: DateTime<Utc>,
}

fn condition(
    prev: Option<&PodStatus>,
    kind: &str,
    ok: bool,
    now: DateTime<Utc>,
    reason: Option<&str>,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let last = prev
        .and_then(|p| p.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == kind))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone());
    PodCondition {
        type_: kind.to_string(),
        status: status.to_string(),
        last_transition_time: Some(last.unwrap_or_else(|| ktime(now))),
        reason: if ok { None } else { reason.map(str::to_string) },
        ..Default::default()
    }
}

/// The whole `status` the kubelet owns.
pub fn pod_status(i: &PodStatusInput) -> PodStatus {
    let phase = pod_phase(i.restart_policy, i.init_failed, i.init_done, i.containers);
    let all_ready = !i.containers.is_empty() && i.containers.iter().all(|c| c.is_ready());
    let terminal = phase == "Succeeded" || phase == "Failed";
    let containers_ready = all_ready && !terminal;
    let not_ready_reason = if terminal {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let conditions = vec![
        condition(
            i.previous,
            "PodReadyToStartContainers",
            i.sandbox_ready,
            i.now,
            None,
        ),
        condition(
            i.previous,
            "Initialized",
            i.init_done,
            i.now,
            Some("ContainersNotInitialized"),
        ),
        condition(
            i.previous,
            "Ready",
            containers_ready,
            i.now,
            Some(not_ready_reason),
        ),
        condition(
            i.previous,
            "ContainersReady",
            containers_ready,
            i.now,
            Some(not_ready_reason),
        ),
        condition(i.previous, "PodScheduled", true, i.now, None),
    ];
    let pod_ips = i.pod_ip.as_ref().map(|ip| vec![PodIP { ip: ip.clone() }]);
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: Some(i.host_ip.clone()),
        host_ips: Some(vec![HostIP {
            ip: i.host_ip.clone(),
        }]),
        pod_ip: i.pod_ip.clone(),
        pod_ips,
        start_time: Some(ktime(i.start_time)),
        container_statuses: Some(i.containers.iter().map(container_status).collect()),
        init_container_statuses: if i.init.is_empty() {
            None
        } else {
            Some(i.init.iter().map(container_status).collect())
        },
        qos_class: i
            .previous
            .and_then(|p| p.qos_class.clone())
            .or_else(|| Some("BestEffort".to_string())),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(state: CState, last: Option<Termination>) -> ContainerRecord {
        ContainerRecord {
            last_termination: last,
            state,
            ..ContainerRecord::new("c", "minik/hello")
        }
    }
    fn term(code: i32) -> Termination {
        Termination {
            exit_code: code,
            signal: None,
            reason: Termination::reason_for(code).into(),
            message: None,
            started_at: None,
            finished_at: Utc::now(),
            container_id: "x".into(),
        }
    }
    fn running() -> CState {
        CState::Running {
            id: "x".into(),
            started_at: Utc::now(),
        }
    }
    fn waiting(r: &str) -> CState {
        CState::Waiting {
            reason: r.into(),
            message: None,
        }
    }

    #[test]
    fn backoff_doubles_to_five_minutes() {
        assert_eq!(backoff_delay(1), Duration::from_secs(10));
        assert_eq!(backoff_delay(2), Duration::from_secs(20));
        assert_eq!(backoff_delay(3), Duration::from_secs(40));
        assert_eq!(backoff_delay(6), Duration::from_secs(300));
        assert_eq!(backoff_delay(100), Duration::from_secs(300));
    }

    #[test]
    fn restart_decisions() {
        let short = Duration::from_secs(1);
        let r = |failures, delay| AfterExit::Restart {
            failures,
            delay: Duration::from_secs(delay),
        };
        assert_eq!(
            after_exit("Always", false, 0, false, false, 0, short),
            r(1, 0)
        );
        assert_eq!(
            after_exit("Always", false, 1, false, false, 1, short),
            r(2, 10)
        );
        assert_eq!(
            after_exit("Always", false, 1, false, false, 2, short),
            r(3, 20)
        );
        assert_eq!(
            after_exit("Always", false, 1, false, false, 9, short),
            r(10, 300)
        );
        assert_eq!(
            after_exit(
                "Always",
                false,
                1,
                false,
                false,
                9,
                Duration::from_secs(601)
            ),
            r(1, 0),
            "a long run resets the back-off"
        );
        assert_eq!(
            after_exit("OnFailure", false, 0, false, false, 0, short),
            AfterExit::Done
        );
        assert_eq!(
            after_exit("OnFailure", false, 2, false, false, 0, short),
            r(1, 0)
        );
        assert_eq!(
            after_exit("Never", false, 2, false, false, 0, short),
            AfterExit::Done
        );
        assert_eq!(
            after_exit("Never", true, 0, false, false, 0, short),
            AfterExit::Done
        );
        assert_eq!(
            after_exit("Always", true, 0, false, false, 0, short),
            AfterExit::Done
        );
        assert_eq!(
            after_exit("Always", true, 1, false, false, 0, short),
            r(1, 0)
        );
        assert_eq!(
            after_exit("Never", true, 1, false, false, 0, short),
            AfterExit::Done
        );
        assert_eq!(
            after_exit("Always", false, 137, false, true, 0, short),
            AfterExit::Stay
        );
        assert_eq!(
            after_exit("Never", false, 143, true, false, 3, short),
            r(0, 0),
            "definition changed"
        );
    }

    #[test]
    fn phases() {
        assert_eq!(
            pod_phase("Always", false, true, &[rec(running(), None)]),
            "Running"
        );
        assert_eq!(
            pod_phase("Always", false, true, &[rec(waiting("ErrImagePull"), None)]),
            "Pending"
        );
        assert_eq!(
            pod_phase(
                "Always",
                false,
                true,
                &[rec(waiting("CrashLoopBackOff"), Some(term(1)))]
            ),
            "Running"
        );
        assert_eq!(
            pod_phase(
                "Never",
                false,
                true,
                &[rec(CState::Terminated(term(0)), None)]
            ),
            "Succeeded"
        );
        assert_eq!(
            pod_phase(
                "Never",
                false,
                true,
                &[rec(CState::Terminated(term(2)), None)]
            ),
            "Failed"
        );
        assert_eq!(
            pod_phase(
                "OnFailure",
                false,
                true,
                &[rec(CState::Terminated(term(0)), None)]
            ),
            "Succeeded"
        );
        assert_eq!(
            pod_phase(
                "OnFailure",
                false,
                true,
                &[
                    rec(CState::Terminated(term(0)), None),
                    rec(waiting("CrashLoopBackOff"), Some(term(1)))
                ]
            ),
            "Running"
        );
        assert_eq!(
            pod_phase(
                "Always",
                false,
                false,
                &[rec(waiting("PodInitializing"), None)]
            ),
            "Pending"
        );
        assert_eq!(pod_phase("Never", true, false, &[]), "Failed");
    }

    #[test]
    fn status_fields_and_stable_transition_times() {
        let t0 = DateTime::parse_from_rfc3339("2026-11-23T01:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let t1 = t0 + chrono::Duration::seconds(30);
        let recs = vec![ContainerRecord {
            ready: true,
            started: true,
            image_ref: Some("docker.io/minik/hello:latest".into()),
            image_id: Some("docker.io/minik/hello@sha256:ab".into()),
            ..rec(
                CState::Running {
                    id: "cid".into(),
                    started_at: t0,
                },
                None,
            )
        }];
        let mut input = PodStatusInput {
            restart_policy: "Always",
            init: &[],
            containers: &recs,
            init_done: true,
            init_failed: false,
            sandbox_ready: true,
            pod_ip: Some("10.244.0.2".into()),
            host_ip: "192.168.1.5".into(),
            start_time: t0,
            previous: None,
            now: t0,
        };
        let s = pod_status(&input);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("10.244.0.2"));
        assert_eq!(s.pod_ips.as_ref().unwrap()[0].ip, "10.244.0.2");
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert!(cs.ready);
        assert_eq!(cs.container_id.as_deref(), Some("runc://cid"));
        assert_eq!(cs.image, "docker.io/minik/hello:latest");
        let ready = |s: &PodStatus| {
            s.conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == "Ready")
                .cloned()
                .unwrap()
        };
        assert_eq!(ready(&s).status, "True");
        input.previous = Some(&s);
        input.now = t1;
        let s2 = pod_status(&input);
        assert_eq!(
            ready(&s2).last_transition_time,
            Some(ktime(t0)),
            "unchanged condition keeps its time"
        );
        let crashed = vec![rec(waiting("CrashLoopBackOff"), Some(term(1)))];
        input.containers = &crashed;
        let s3 = pod_status(&input);
        assert_eq!(ready(&s3).status, "False");
        assert_eq!(ready(&s3).last_transition_time, Some(ktime(t1)));
        let cs = &s3.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            cs.last_state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            1
        );
        assert_eq!(
            cs.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("CrashLoopBackOff")
        );
    }
}
