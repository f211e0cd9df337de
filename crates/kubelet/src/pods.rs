//! Pod manager and pod workers: owns the reconciliation of Pods bound to
//! this node. One watch (`fieldSelector=spec.nodeName=<node>`) feeds one
//! worker task per pod UID; each worker is a level-triggered loop — look at
//! the pod, make one round of progress (sandbox, image, container start,
//! restart with back-off, termination), write `pods/status` when it changed,
//! sleep until the next event (pod update, container exit, back-off timer).
//! All container work goes through `sandbox::Machinery`; all cluster state
//! through the API client.

use crate::events::{pod_ref, Recorder};
use crate::images::{effective_pull_policy, pull_decision, ImageError, ImageRecord, PullDecision};
use crate::probes::{self, Kind, ProbeTracker, Verdict};
use crate::sandbox::{ContainerInputs, ExitInfo, Machinery, PodMeta, RunningContainer, Sandbox};
use crate::spec::BindMount;
use crate::status::{self, backoff_delay, CState, ContainerRecord, PodStatusInput, Termination};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Pod, PodStatus, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How often API-backed volumes are refreshed.
const VOLUME_RESYNC: Duration = Duration::from_secs(5);
/// How long `ErrImagePull` shows before it turns into `ImagePullBackOff`.
const ERR_IMAGE_PULL_SHOWN: Duration = Duration::from_secs(2);

/// A duration as Go prints it (`1.234s`, `850ms`), as in kubelet events.
fn go_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        let s = format!("{:.3}", d.as_secs_f64());
        format!("{}s", s.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// Shared by all workers.
pub struct Ctx {
    pub client: Client,
    pub machinery: Machinery,
    pub events: Recorder,
}

/// Watches this node's pods and runs one worker per pod until aborted.
pub async fn run(ctx: Arc<Ctx>) -> anyhow::Result<()> {
    let node = ctx.machinery.cfg.node_name.clone();
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = watcher(api, cfg).default_backoff().boxed();
    let mut workers: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    let mut set: JoinSet<String> = JoinSet::new();
    let mut listing: Option<HashSet<String>> = None;
    let mut first_sync_done = false;
    // UIDs whose worker finished a deletion; later events for them are stale.
    let mut finished: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            ev = stream.next() => {
                let Some(ev) = ev else { break };
                match ev {
                    Ok(Event::Init) => listing = Some(HashSet::new()),
                    Ok(Event::InitApply(pod)) | Ok(Event::Apply(pod)) => {
                        if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node.as_str()) {
                            continue;
                        }
                        let Some(uid) = pod.metadata.uid.clone() else { continue };
                        if let Some(l) = listing.as_mut() {
                            l.insert(uid.clone());
                        }
                        if finished.contains(&uid) {
                            continue;
                        }
                        if let Some(ns) = pod.metadata.namespace.as_deref() {
                            if let Some(name) = pod.metadata.name.as_deref() {
                                ctx.machinery.logs.set_pod(ns, name, Some(&uid));
                            }
                        }
                        // A worker that died (panicked) leaves a closed channel: start a new one.
                        let pod = match workers.get(&uid) {
                            Some(tx) => match tx.send(Some(pod)) {
                                Ok(()) => None,
                                Err(watch::error::SendError(p)) => {
                                    tracing::warn!("pod worker for {uid} was gone; starting a new one");
                                    p
                                }
                            },
                            None => Some(pod),
                        };
                        match pod {
                            None => {}
                            Some(pod) => {
                                let (tx, rx) = watch::channel(Some(pod));
                                workers.insert(uid.clone(), tx);
                                let ctx = ctx.clone();
                                set.spawn(async move {
                                    worker(ctx, uid.clone(), rx).await;
                                    uid
                                });
                            }
                        }
                    }
                    Ok(Event::Delete(pod)) => {
                        if let Some(uid) = pod.metadata.uid.as_deref() {
                            if let Some(tx) = workers.get(uid) {
                                let _ = tx.send(None);
                            }
                        }
                    }
                    Ok(Event::InitDone) => {
                        let seen = listing.take().unwrap_or_default();
                        for (uid, tx) in &workers {
                            if !seen.contains(uid) {
                                let _ = tx.send(None);
                            }
                        }
                        if !first_sync_done {
                            first_sync_done = true;
                            // Pods with state on disk that no longer exist: remove.
                            let m = ctx.machinery.clone();
                            let keep: HashSet<String> = seen.union(&workers.keys().cloned().collect()).cloned().collect();
                            tokio::task::spawn_blocking(move || {
                                for uid in m.pods_on_disk() {
                                    if !keep.contains(&uid) {
                                        tracing::info!("removing state of pod {uid}: it no longer exists");
                                        m.remove_pod(&uid);
                                    }
                                }
                                // IPs held by pods that have no directory any more.
                                let on_disk: HashSet<String> = m.pods_on_disk().into_iter().collect();
                                for (_, uid) in m.ipam.list() {
                                    if !on_disk.contains(&uid) && !keep.contains(&uid) {
                                        m.ipam.release(&uid);
                                    }
                                }
                            });
                        }
                    }
                    Err(e) => tracing::warn!("watching pods of node {node}: {e}"),
                }
            }
            Some(done) = set.join_next() => {
                if let Ok(uid) = done {
                    workers.remove(&uid);
                    finished.insert(uid);
                }
            }
        }
    }
    Ok(())
}

/// Per-container bookkeeping of a worker.
struct Slot {
    rec: ContainerRecord,
    spec: Container,
    running: Option<RunningContainer>,
    /// Consecutive restarts (crash back-off).
    failures: u32,
    not_before: Option<Instant>,
    pull_failures: u32,
    pull_error: Option<(Instant, String)>,
    /// The waiting reason of the last image failure (`ErrImagePull`,
    /// `ErrImageNeverPull`, `InvalidImageName`); only `ErrImagePull` turns
    /// into `ImagePullBackOff`.
    pull_reason: &'static str,
    /// Terminated and will not run again (init success or restart policy).
    done: bool,
    /// An ephemeral container (`kubectl debug`): runs once, never restarted,
    /// reported in `ephemeralContainerStatuses`.
    ephemeral: bool,
    ever_started: bool,
    backoff_reported: Option<Instant>,
    /// Probes of the current run (startup, liveness, readiness).
    probes: Vec<ProbeTracker>,
    /// A probe decided to kill the current run; the stop is under way.
    killing: bool,
    /// The container's definition changed: restart at once when it exits.
    force_restart: bool,
}

impl Slot {
    /// Ran to completion with exit code 0 and will not run again (init containers).
    fn succeeded(&self) -> bool {
        self.done && matches!(&self.rec.state, CState::Terminated(t) if t.exit_code == 0)
    }

    fn new(c: &Container, prev: Option<&k8s_openapi::api::core::v1::ContainerStatus>) -> Self {
        let image = c.image.clone().unwrap_or_default();
        let mut rec = ContainerRecord::new(&c.name, &image);
        if let Some(p) = prev {
            // A container from an earlier kubelet life (node restart) counts as a restart.
            rec.restart_count = p.restart_count + i32::from(p.container_id.is_some());
        }
        Slot {
            rec,
            spec: c.clone(),
            running: None,
            failures: 0,
            not_before: None,
            pull_failures: 0,
            pull_error: None,
            pull_reason: "ErrImagePull",
            done: false,
            ephemeral: false,
            ever_started: false,
            backoff_reported: None,
            probes: Vec::new(),
            killing: false,
            force_restart: false,
        }
    }
}

struct Worker {
    ctx: Arc<Ctx>,
    uid: String,
    meta: PodMeta,
    sandbox: Option<Sandbox>,
    sandbox_error: Option<String>,
    sandbox_retry: Option<Instant>,
    network_released: bool,
    init: Vec<Slot>,
    app: Vec<Slot>,
    init_failed: bool,
    start_time: DateTime<Utc>,
    posted: Option<PodStatus>,
    exit_tx: mpsc::UnboundedSender<ExitInfo>,
    terminating: bool,
    /// The pod's restart policy (immutable in the API).
    policy: String,
    /// The pod had already finished (Succeeded/Failed) when this worker
    /// started (kubelet restart): it is not run again.
    finished_before: bool,
    /// The last status write failed.
    status_dirty: bool,
    /// Next refresh of configMap/secret/downwardAPI/projected volumes.
    next_volume_sync: Option<Instant>,
    /// `activeDeadlineSeconds` ran out: the pod is Failed.
    deadline_exceeded: bool,
    /// The pod's updates, so a long image pull gives way to a deletion.
    updates: watch::Receiver<Option<Pod>>,
}

fn pod_meta(pod: &Pod, uid: &str) -> PodMeta {
    let spec = pod.spec.clone().unwrap_or_default();
    PodMeta {
        uid: uid.to_string(),
        namespace: pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        name: pod.metadata.name.clone().unwrap_or_default(),
        host_network: spec.host_network.unwrap_or(false),
        dns_policy: spec
            .dns_policy
            .clone()
            .unwrap_or_else(|| "ClusterFirst".into()),
        host_aliases: spec
            .host_aliases
            .unwrap_or_default()
            .into_iter()
            .map(|h| (h.ip, h.hostnames.unwrap_or_default()))
            .collect(),
        grace_seconds: spec.termination_grace_period_seconds.unwrap_or(30),
        hostname: spec.hostname.clone(),
        subdomain: spec.subdomain.clone(),
    }
}

async fn worker(ctx: Arc<Ctx>, uid: String, mut rx: watch::Receiver<Option<Pod>>) {
    let Some(first) = rx.borrow().clone() else {
        return;
    };
    let (exit_tx, mut exit_rx) = mpsc::unbounded_channel();
    let spec = first.spec.clone().unwrap_or_default();
    let prev_status = first.status.clone().unwrap_or_default();
    let prev_of = |name: &str, init: bool| {
        let list = if init {
            prev_status.init_container_statuses.as_ref()
        } else {
            prev_status.container_statuses.as_ref()
        };
        list.and_then(|l| l.iter().find(|s| s.name == name))
            .cloned()
    };
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| Slot::new(c, prev_of(&c.name, true).as_ref()))
        .collect();
    let app = spec
        .containers
        .iter()
        .map(|c| Slot::new(c, prev_of(&c.name, false).as_ref()))
        .collect();
    let start_time = prev_status
        .start_time
        .as_ref()
        .and_then(|t| DateTime::from_timestamp(t.0.as_second(), 0))
        .unwrap_or_else(Utc::now);
    let mut w = Worker {
        meta: pod_meta(&first, &uid),
        ctx,
        uid,
        sandbox: None,
        sandbox_error: None,
        sandbox_retry: None,
        network_released: false,
        init,
        app,
        init_failed: false,
        start_time,
        posted: first.status.clone(),
        exit_tx,
        terminating: false,
        policy: Worker::restart_policy(&first),
        status_dirty: false,
        next_volume_sync: None,
        deadline_exceeded: false,
        updates: rx.clone(),
        finished_before: matches!(
            prev_status.phase.as_deref(),
            Some("Succeeded") | Some("Failed")
        ),
    };
    let mut last_pod = first;
    loop {
        let current = rx.borrow_and_update().clone();
        let wake = match current {
            None => {
                // Gone from the API: stop everything, nothing to delete.
                w.terminate(&last_pod, &mut exit_rx, false).await;
                return;
            }
            Some(pod) if pod.metadata.deletion_timestamp.is_some() => {
                w.terminate(&pod, &mut exit_rx, true).await;
                return;
            }
            Some(pod) => {
                let wake = w.sync(&pod).await;
                last_pod = pod;
                wake
            }
        };
        let sleep = async {
            match wake {
                Some(t) => tokio::time::sleep_until(t).await,
                None => futures::future::pending::<()>().await,
            }
        };
        tokio::select! {
            r = rx.changed() => {
                if r.is_err() {
                    // The manager is gone (kubelet stopping); containers are
                    // stopped by `shutdown`.
                    return;
                }
            }
            Some(exit) = exit_rx.recv() => {
                if crate::is_stopping(&w.ctx.machinery.cfg.root_dir) {
                    // `minik stop`: the containers stay stopped, state as it was.
                    return;
                }
                w.on_exit(exit).await;
                while let Ok(more) = exit_rx.try_recv() {
                    w.on_exit(more).await;
                }
            }
            _ = sleep => {}
        }
    }
}

impl Worker {
    fn obj(
        &self,
        pod: &Pod,
        c: &Container,
        init: bool,
    ) -> k8s_openapi::api::core::v1::ObjectReference {
        let ephemeral = pod
            .spec
            .as_ref()
            .and_then(|s| s.ephemeral_containers.as_ref())
            .is_some_and(|e| e.iter().any(|e| e.name == c.name));
        let list = if init {
            "initContainers"
        } else if ephemeral {
            "ephemeralContainers"
        } else {
            "containers"
        };
        pod_ref(pod, Some(format!("spec.{list}{{{}}}", c.name)))
    }

    fn restart_policy(pod: &Pod) -> String {
        pod.spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into())
    }

    /// One round of progress. Returns when to look again (if no event comes).
    async fn sync(&mut self, pod: &Pod) -> Option<Instant> {
        if crate::is_stopping(&self.ctx.machinery.cfg.root_dir) || self.finished_before {
            return None;
        }
        self.apply_spec_changes(pod);
        self.add_ephemeral(pod);
        self.check_deadline(pod);
        let policy = Self::restart_policy(pod);
        let terminal = self.is_terminal(&policy);
        if self.sandbox.is_none() && !terminal {
            if let Some(t) = self.sandbox_retry {
                if Instant::now() < t {
                    self.post_status(pod).await;
                    return Some(t);
                }
            }
            // Volumes first, as the kubelet's volume manager: a claim that is
            // not Bound yet keeps the pod ContainerCreating, retried.
            let unready = crate::volumes::unready_claims(&self.ctx.client, pod).await;
            if !unready.is_empty() {
                self.ctx
                    .events
                    .warning(pod_ref(pod, None), "FailedMount", unready.join("; "));
                let t = Instant::now() + Duration::from_secs(2);
                self.sandbox_retry = Some(t);
                self.post_status(pod).await;
                return Some(t);
            }
            let m = self.ctx.machinery.clone();
            let meta = pod_meta(pod, &self.uid);
            self.meta = meta.clone();
            let res = tokio::task::spawn_blocking(move || m.create_sandbox(&meta)).await;
            match res {
                Ok(Ok(sb)) => {
                    self.sandbox = Some(sb);
                    self.sandbox_error = None;
                    self.sandbox_retry = None;
                }
                Ok(Err(e)) => {
                    let msg = format!("Failed to create pod sandbox: {e}");
                    self.ctx.events.warning(
                        pod_ref(pod, None),
                        "FailedCreatePodSandBox",
                        msg.clone(),
                    );
                    self.sandbox_error = Some(msg);
                    let t = Instant::now() + Duration::from_secs(3);
                    self.sandbox_retry = Some(t);
                    self.post_status(pod).await;
                    return Some(t);
                }
                Err(e) => {
                    tracing::warn!("sandbox task: {e}");
                    return Some(Instant::now() + Duration::from_secs(3));
                }
            }
        }
        if !terminal && self.sandbox.is_some() {
            // Init containers, in order, each to completion.
            let mut init_done = true;
            for i in 0..self.init.len() {
                if self.init[i].succeeded() {
                    continue;
                }
                init_done = false;
                if self.init[i].running.is_some() {
                    break;
                }
                if self.init[i].done {
                    // Failed and not to be restarted (restartPolicy Never).
                    self.init_failed = true;
                    break;
                }
                self.try_start(pod, i, true).await;
                break;
            }
            if init_done && !self.init_failed {
                for i in 0..self.app.len() {
                    let s = &self.app[i];
                    if s.running.is_some() || s.done {
                        continue;
                    }
                    self.try_start(pod, i, false).await;
                }
            } else if !self.init_failed {
                for s in &mut self.app {
                    if s.running.is_none() && !s.ever_started {
                        s.rec.state = CState::Waiting {
                            reason: "PodInitializing".into(),
                            message: None,
                        };
                    }
                }
            }
        }
        // A finished pod does not keep its network.
        if self.is_terminal(&policy) && !self.network_released && self.sandbox.is_some() {
            self.network_released = true;
            let m = self.ctx.machinery.clone();
            let uid = self.uid.clone();
            let _ = tokio::task::spawn_blocking(move || {
                m.stop_sandbox_network(&uid);
                m.ipam.release(&uid);
            })
            .await;
        }
        self.run_probes(pod).await;
        self.post_status(pod).await;
        let next_probe = self
            .init
            .iter()
            .chain(self.app.iter())
            .filter(|s| s.running.is_some() && !s.killing)
            .flat_map(|s| {
                s.probes
                    .iter()
                    .filter(|t| t.kind == Kind::Startup || s.rec.started)
                    .map(|t| t.next)
            })
            .min();
        // Next wake-up: the earliest back-off expiry or ErrImagePull→BackOff flip.
        let wake = self
            .init
            .iter()
            .chain(self.app.iter())
            .filter(|s| s.running.is_none() && !s.done)
            .flat_map(|s| {
                let flip = s
                    .pull_error
                    .as_ref()
                    .map(|(t, _)| *t + ERR_IMAGE_PULL_SHOWN);
                [s.not_before, flip]
            })
            .flatten()
            .filter(|t| *t > Instant::now())
            .min()
            .or_else(|| {
                // Anything due now (e.g. an immediate restart) — come back soon.
                self.init
                    .iter()
                    .chain(self.app.iter())
                    .any(|s| {
                        s.running.is_none()
                            && !s.done
                            && s.not_before.is_some_and(|t| t <= Instant::now())
                    })
                    .then(|| Instant::now() + Duration::from_millis(10))
            });
        // API-backed volumes follow their ConfigMaps, Secrets and labels.
        let mut next_volume_sync = None;
        if self.sandbox.is_some()
            && !self.is_terminal(&policy)
            && crate::volumes::has_api_volumes(pod)
        {
            let due = self.next_volume_sync.is_none_or(|t| t <= Instant::now());
            if due {
                if let Some(sb) = &self.sandbox {
                    if let Err(e) = crate::volumes::prepare(
                        &self.ctx.client,
                        pod,
                        &sb.dir,
                        &sb.ip,
                        &self.ctx.machinery.cfg.node_ip,
                    )
                    .await
                    {
                        tracing::debug!(
                            "refreshing volumes of {}/{}: {e}",
                            self.meta.namespace,
                            self.meta.name
                        );
                    }
                }
                self.next_volume_sync = Some(Instant::now() + VOLUME_RESYNC);
            }
            next_volume_sync = self.next_volume_sync;
        }
        let deadline = self.deadline_at(pod).filter(|_| !self.deadline_exceeded);
        let wake = [wake, next_probe, next_volume_sync, deadline]
            .into_iter()
            .flatten()
            .min();
        if self.status_dirty {
            // The last status write failed: try again soon.
            let retry = Instant::now() + Duration::from_secs(1);
            return Some(wake.map_or(retry, |w| w.min(retry)));
        }
        wake
    }

    /// A changed container image (the one mutable container field) restarts
    /// that container with the new definition, as the kubelet does.
    fn apply_spec_changes(&mut self, pod: &Pod) {
        let Some(spec) = pod.spec.as_ref() else {
            return;
        };
        let grace = Duration::from_secs(self.meta.grace_seconds.clamp(0, 300) as u64);
        for init in [true, false] {
            let new: Vec<Container> = if init {
                spec.init_containers.clone().unwrap_or_default()
            } else {
                spec.containers.clone()
            };
            let slots = if init { &mut self.init } else { &mut self.app };
            for s in slots.iter_mut() {
                let Some(c) = new.iter().find(|c| c.name == s.spec.name) else {
                    continue;
                };
                if c.image == s.spec.image {
                    continue;
                }
                s.spec = c.clone();
                s.rec.image = c.image.clone().unwrap_or_default();
                s.rec.image_ref = None;
                s.rec.image_id = None;
                s.failures = 0;
                s.pull_failures = 0;
                s.pull_error = None;
                s.not_before = None;
                if let Some(run) = &s.running {
                    if !s.killing {
                        s.killing = true;
                        s.force_restart = true;
                        let list = if init { "initContainers" } else { "containers" };
                        self.ctx.events.normal(
                            pod_ref(pod, Some(format!("spec.{list}{{{}}}", c.name))),
                            "Killing",
                            format!("Container {} definition changed, will be restarted", c.name),
                        );
                        let m = self.ctx.machinery.clone();
                        let (id, pid) = (run.id.clone(), run.pid);
                        tokio::spawn(async move { m.stop_container(&id, pid, grace).await });
                    }
                } else if !init {
                    s.done = false;
                }
            }
        }
    }

    /// Runs the probes that are due, concurrently; applies their verdicts.
    async fn run_probes(&mut self, pod: &Pod) {
        let now = Instant::now();
        let ip = match &self.sandbox {
            Some(s) => s.ip.clone(),
            None => return,
        };
        let mut due = Vec::new();
        for init in [true, false] {
            let v = if init { &self.init } else { &self.app };
            for (i, s) in v.iter().enumerate() {
                let Some(run) = &s.running else { continue };
                if s.killing {
                    continue;
                }
                let ports = named_ports(&s.spec);
                for (j, t) in s.probes.iter().enumerate() {
                    if t.next > now || (t.kind != Kind::Startup && !s.rec.started) {
                        continue;
                    }
                    let (probe, timeout, rt, id, ip, ports) = (
                        t.probe.clone(),
                        t.timeout(),
                        self.ctx.machinery.runtime.clone(),
                        run.id.clone(),
                        ip.clone(),
                        ports.clone(),
                    );
                    due.push(async move {
                        let r = probes::run_probe(&probe, &ip, &rt, &id, &ports, timeout).await;
                        (init, i, j, r)
                    });
                }
            }
        }
        if due.is_empty() {
            return;
        }
        let results = futures::future::join_all(due).await;
        let now = Instant::now();
        let grace = Duration::from_secs(self.meta.grace_seconds.clamp(0, 300) as u64);
        for (init, i, j, r) in results {
            let obj = {
                let s = self.slot(i, init);
                (
                    s.spec.clone(),
                    s.running.as_ref().map(|r| (r.id.clone(), r.pid)),
                )
            };
            let (spec, Some((id, pid))) = obj else {
                continue;
            };
            let oref = self.obj(pod, &spec, init);
            let events = self.ctx.events.clone();
            let s = self.slot(i, init);
            let Some(t) = s.probes.get_mut(j) else {
                continue;
            };
            let kind = t.kind;
            if let Err(msg) = &r {
                events.warning(
                    oref.clone(),
                    "Unhealthy",
                    format!("{} probe failed: {msg}", kind.title()),
                );
            }
            match (kind, t.record(r.is_ok(), now)) {
                (Kind::Startup, Verdict::Succeeded) => {
                    s.rec.started = true;
                    s.rec.ready = !s.probes.iter().any(|p| p.kind == Kind::Readiness);
                }
                (Kind::Readiness, Verdict::Succeeded) => s.rec.ready = true,
                (Kind::Readiness, Verdict::Failed) => s.rec.ready = false,
                (Kind::Startup | Kind::Liveness, Verdict::Failed) => {
                    s.killing = true;
                    s.rec.ready = false;
                    events.normal(
                        oref,
                        "Killing",
                        format!(
                            "Container {} failed {} probe, will be restarted",
                            spec.name,
                            kind.title().to_lowercase()
                        ),
                    );
                    let m = self.ctx.machinery.clone();
                    tokio::spawn(async move { m.stop_container(&id, pid, grace).await });
                }
                _ => {}
            }
        }
    }

    /// When `activeDeadlineSeconds` runs out (from the pod's start time).
    fn deadline_at(&self, pod: &Pod) -> Option<Instant> {
        let secs = pod.spec.as_ref()?.active_deadline_seconds?;
        let elapsed = (Utc::now() - self.start_time).to_std().unwrap_or_default();
        let total = Duration::from_secs(secs.max(0) as u64);
        Some(Instant::now() + total.saturating_sub(elapsed))
    }

    /// Fails the pod once `activeDeadlineSeconds` passed: containers are
    /// stopped and never restarted.
    fn check_deadline(&mut self, pod: &Pod) {
        if self.deadline_exceeded {
            return;
        }
        let Some(at) = self.deadline_at(pod) else {
            return;
        };
        if at > Instant::now() {
            return;
        }
        self.deadline_exceeded = true;
        self.ctx.events.warning(
            pod_ref(pod, None),
            "DeadlineExceeded",
            "Pod was active on the node longer than the specified deadline".into(),
        );
        let grace = Duration::from_secs(self.meta.grace_seconds.clamp(0, 300) as u64);
        for init in [true, false] {
            let slots = if init { &mut self.init } else { &mut self.app };
            for s in slots.iter_mut() {
                s.done = true;
                s.not_before = None;
                if let Some(run) = &s.running {
                    if !s.killing {
                        s.killing = true;
                        let m = self.ctx.machinery.clone();
                        let (id, pid) = (run.id.clone(), run.pid);
                        tokio::spawn(async move { m.stop_container(&id, pid, grace).await });
                    }
                } else if !matches!(s.rec.state, CState::Terminated(_)) {
                    s.rec.state = CState::Terminated(Termination {
                        exit_code: 137,
                        signal: None,
                        reason: "DeadlineExceeded".into(),
                        message: None,
                        started_at: None,
                        finished_at: Utc::now(),
                        container_id: String::new(),
                    });
                }
            }
        }
    }

    fn is_terminal(&self, policy: &str) -> bool {
        if self.init_failed || self.deadline_exceeded {
            return true;
        }
        let init_done = self.init.iter().all(Slot::succeeded);
        init_done
            && !self.app.is_empty()
            && matches!(
                status::pod_phase(policy, false, true, &self.recs(false)),
                "Succeeded" | "Failed"
            )
    }

    /// Records of init or regular containers (ephemeral ones excluded).
    fn recs(&self, init: bool) -> Vec<ContainerRecord> {
        let v = if init { &self.init } else { &self.app };
        v.iter()
            .filter(|s| !s.ephemeral)
            .map(|s| s.rec.clone())
            .collect()
    }

    /// Picks up ephemeral containers added through `pods/ephemeralcontainers`.
    fn add_ephemeral(&mut self, pod: &Pod) {
        let Some(list) = pod
            .spec
            .as_ref()
            .and_then(|s| s.ephemeral_containers.as_ref())
        else {
            return;
        };
        for ec in list {
            if self.app.iter().any(|s| s.spec.name == ec.name) {
                continue;
            }
            // Same fields as a Container (plus targetContainerName).
            let Ok(c) = serde_json::to_value(ec).and_then(serde_json::from_value::<Container>)
            else {
                continue;
            };
            let mut slot = Slot::new(&c, None);
            slot.ephemeral = true;
            self.app.push(slot);
        }
    }

    fn slot(&mut self, i: usize, init: bool) -> &mut Slot {
        if init {
            &mut self.init[i]
        } else {
            &mut self.app[i]
        }
    }

    async fn try_start(&mut self, pod: &Pod, i: usize, init: bool) {
        let now = Instant::now();
        let pod_name = self.meta.name.clone();
        let ns = self.meta.namespace.clone();
        let uid = self.uid.clone();
        let events = self.ctx.events.clone();
        let spec = self.slot(i, init).spec.clone();
        let obj = self.obj(pod, &spec, init);
        let image = spec.image.clone().unwrap_or_default();
        {
            let s = self.slot(i, init);
            if let CState::Terminated(t) = &s.rec.state {
                s.rec.last_termination = Some(t.clone());
            }
            if let Some(t) = s.not_before {
                if now < t {
                    let left = (t - now).as_secs().max(1);
                    if let Some((since, err)) = &s.pull_error {
                        let reason = if s.pull_reason != "ErrImagePull" {
                            s.pull_reason
                        } else if now < *since + ERR_IMAGE_PULL_SHOWN {
                            "ErrImagePull"
                        } else {
                            "ImagePullBackOff"
                        };
                        s.rec.state = CState::Waiting {
                            reason: reason.into(),
                            message: Some(if reason != "ImagePullBackOff" {
                                err.clone()
                            } else {
                                format!("Back-off pulling image \"{image}\": {err}")
                            }),
                        };
                        if reason == "ImagePullBackOff" && s.backoff_reported != s.not_before {
                            s.backoff_reported = s.not_before;
                            events.normal(
                                obj.clone(),
                                "BackOff",
                                format!("Back-off pulling image \"{image}\""),
                            );
                        }
                    } else if s.failures > 0 {
                        let delay = backoff_delay(s.failures.saturating_sub(1)).as_secs();
                        s.rec.state = CState::Waiting {
                            reason: "CrashLoopBackOff".into(),
                            message: Some(format!(
                                "back-off {delay}s restarting failed container={} pod={pod_name}_{ns}({uid})",
                                spec.name
                            )),
                        };
                        if s.backoff_reported != s.not_before {
                            s.backoff_reported = s.not_before;
                            events.warning(
                                obj.clone(),
                                "BackOff",
                                format!("Back-off restarting failed container {} in pod {pod_name}_{ns}({uid})", spec.name),
                            );
                        }
                    }
                    let _ = left;
                    return;
                }
            }
        }
        // Image: the policy decides between the store and the registry.
        let policy = effective_pull_policy(&image, spec.image_pull_policy.as_deref());
        let t0 = std::time::Instant::now();
        let resolved = self.ctx.machinery.images.resolve(&image);
        let decision = pull_decision(&image, &policy, resolved.is_ok());
        let outcome: Result<ImageRecord, (&'static str, String)> = match (decision, resolved) {
            (_, Err(ImageError::InvalidReference(_))) => Err((
                "InvalidImageName",
                format!("Failed to apply default image tag \"{image}\": couldn't parse image name \"{image}\": invalid reference format"),
            )),
            (PullDecision::UseLocal, Ok(r)) => {
                if policy == "Always" {
                    events.normal(obj.clone(), "Pulling", format!("Pulling image \"{image}\""));
                    let ms = t0.elapsed().as_millis();
                    events.normal(
                        obj.clone(),
                        "Pulled",
                        format!("Successfully pulled image \"{image}\" in {ms}ms ({ms}ms including waiting). Image is built into the node."),
                    );
                } else {
                    events.normal(
                        obj.clone(),
                        "Pulled",
                        format!("Container image \"{image}\" already present on machine"),
                    );
                }
                Ok(r)
            }
            (PullDecision::NeverPullMissing, _) => Err((
                "ErrImageNeverPull",
                format!("Container image \"{image}\" is not present with pull policy of Never"),
            )),
            (PullDecision::UseLocal, Err(e)) => {
                events.normal(obj.clone(), "Pulling", format!("Pulling image \"{image}\""));
                Err(("ErrImagePull", e.to_string()))
            }
            (PullDecision::Pull, _) => {
                events.normal(obj.clone(), "Pulling", format!("Pulling image \"{image}\""));
                let keyring = self.pull_keyring(pod, &obj).await;
                // A deleted pod stops waiting (the shared pull finishes on its own).
                let mut updates = self.updates.clone();
                let deleted = async move {
                    loop {
                        if updates.changed().await.is_err() {
                            return;
                        }
                        let gone = updates
                            .borrow()
                            .as_ref()
                            .is_none_or(|p| p.metadata.deletion_timestamp.is_some());
                        if gone {
                            return;
                        }
                    }
                };
                let pulled = tokio::select! {
                    r = crate::registry::pull(&self.ctx.machinery.images, &image, &keyring) => r,
                    _ = deleted => return,
                };
                match pulled {
                    Ok(p) => {
                        let took = go_duration(t0.elapsed());
                        events.normal(
                            obj.clone(),
                            "Pulled",
                            format!("Successfully pulled image \"{image}\" in {took} ({took} including waiting). Image size: {} bytes.", p.size),
                        );
                        Ok(p.record)
                    }
                    Err(e) => Err(("ErrImagePull", e.to_string())),
                }
            }
        };
        let record = match outcome {
            Ok(r) => r,
            Err((reason, msg)) => {
                if reason == "ErrImagePull" {
                    events.warning(
                        obj.clone(),
                        "Failed",
                        format!("Failed to pull image \"{image}\": {msg}"),
                    );
                }
                events.warning(obj.clone(), "Failed", format!("Error: {reason}"));
                let s = self.slot(i, init);
                s.pull_failures += 1;
                s.pull_error = Some((now, msg.clone()));
                s.pull_reason = reason;
                s.not_before = Some(now + backoff_delay(s.pull_failures));
                s.rec.state = CState::Waiting {
                    reason: reason.into(),
                    message: Some(msg),
                };
                return;
            }
        };
        {
            let s = self.slot(i, init);
            s.pull_error = None;
            s.pull_failures = 0;
            s.rec.image_ref = Some(record.name.clone());
            s.rec.image_id = Some(record.image_id());
        }
        // Environment and volumes (may read ConfigMaps/Secrets).
        let sandbox = match &self.sandbox {
            Some(s) => s.clone(),
            None => return,
        };
        let inputs = match self.container_inputs(pod, &spec, &sandbox).await {
            Ok(inp) => inp,
            Err(msg) => {
                events.warning(obj.clone(), "Failed", format!("Error: {msg}"));
                let s = self.slot(i, init);
                s.rec.state = CState::Waiting {
                    reason: "CreateContainerConfigError".into(),
                    message: Some(msg),
                };
                s.not_before = Some(now + Duration::from_secs(5));
                return;
            }
        };
        let restart_count = {
            let s = self.slot(i, init);
            if s.ever_started {
                s.rec.restart_count += 1;
            }
            s.rec.restart_count
        };
        let inputs = ContainerInputs {
            restart_count,
            ..inputs
        };
        let m = self.ctx.machinery.clone();
        let res = m
            .start_container(
                &self.meta,
                &sandbox,
                &record,
                &spec,
                inputs,
                self.exit_tx.clone(),
            )
            .await;
        let s = self.slot(i, init);
        s.ever_started = true;
        match res {
            Ok(run) => {
                events.normal(
                    obj.clone(),
                    "Created",
                    format!("Created container: {}", spec.name),
                );
                events.normal(obj, "Started", format!("Started container {}", spec.name));
                s.rec.state = CState::Running {
                    id: run.id.clone(),
                    started_at: run.started_at,
                };
                s.running = Some(run);
                s.not_before = None;
                s.killing = false;
                let t0 = Instant::now();
                s.probes = [
                    (Kind::Startup, spec.startup_probe.clone()),
                    (Kind::Liveness, spec.liveness_probe.clone()),
                    (Kind::Readiness, spec.readiness_probe.clone()),
                ]
                .into_iter()
                .filter_map(|(k, p)| p.map(|p| ProbeTracker::new(k, p, t0)))
                .collect();
                s.rec.started = spec.startup_probe.is_none();
                s.rec.ready = s.rec.started && spec.readiness_probe.is_none();
                let post_start = spec.lifecycle.as_ref().and_then(|l| l.post_start.clone());
                if let (Some(hook), Some(run)) = (post_start, s.running.clone()) {
                    let ip = self
                        .sandbox
                        .as_ref()
                        .map(|s| s.ip.clone())
                        .unwrap_or_default();
                    let rt = self.ctx.machinery.runtime.clone();
                    let ports = named_ports(&spec);
                    let res =
                        probes::run_hook(&hook, &ip, &rt, &run.id, &ports, Duration::from_secs(30))
                            .await;
                    if let Err(msg) = res {
                        let s = self.slot(i, init);
                        s.killing = true;
                        s.rec.ready = false;
                        let oref = pod_ref(
                            pod,
                            Some(format!(
                                "spec.{}{{{}}}",
                                if init { "initContainers" } else { "containers" },
                                spec.name
                            )),
                        );
                        events.warning(
                            oref.clone(),
                            "FailedPostStartHook",
                            format!("PostStartHook failed: {msg}"),
                        );
                        events.normal(
                            oref,
                            "Killing",
                            format!("FailedPostStartHook: stopping container {}", spec.name),
                        );
                        let m = self.ctx.machinery.clone();
                        let grace =
                            Duration::from_secs(self.meta.grace_seconds.clamp(0, 300) as u64);
                        tokio::spawn(
                            async move { m.stop_container(&run.id, run.pid, grace).await },
                        );
                    }
                }
            }
            Err(e) => {
                let msg = e.to_string();
                events.warning(obj, "Failed", format!("Error: {msg}"));
                s.failures += 1;
                s.not_before = Some(now + backoff_delay(s.failures));
                let t = Termination {
                    exit_code: 128,
                    signal: None,
                    reason: "StartError".into(),
                    message: Some(msg),
                    started_at: None,
                    finished_at: Utc::now(),
                    container_id: crate::sandbox::container_id(&uid, &spec.name, restart_count),
                };
                s.rec.state = CState::Terminated(t);
            }
        }
    }

    async fn on_exit(&mut self, exit: ExitInfo) {
        let policy = self.policy.clone();
        let terminating = self.terminating || self.deadline_exceeded;
        let uid = self.uid.clone();
        let m = self.ctx.machinery.clone();
        let (is_init, idx) = match self
            .init
            .iter()
            .position(|s| s.running.as_ref().is_some_and(|r| r.id == exit.id))
        {
            Some(i) => (true, i),
            None => match self
                .app
                .iter()
                .position(|s| s.running.as_ref().is_some_and(|r| r.id == exit.id))
            {
                Some(i) => (false, i),
                None => return,
            },
        };
        let s = self.slot(idx, is_init);
        let Some(run) = s.running.take() else { return };
        let code = exit.exit_code.unwrap_or(255);
        let oom = code != 0 && m.oom_killed(&uid, &s.spec.name, s.rec.restart_count);
        let t = Termination {
            exit_code: code,
            signal: None,
            reason: if oom {
                "OOMKilled".into()
            } else {
                Termination::reason_for(code).into()
            },
            message: m.termination_message(&uid, &s.spec, code, &run.log_path),
            started_at: Some(run.started_at),
            finished_at: exit.finished_at,
            container_id: run.id.clone(),
        };
        s.rec.state = CState::Terminated(t);
        s.probes.clear();
        s.rec.ready = false;
        s.killing = false;
        let forced = std::mem::take(&mut s.force_restart);
        let ran = (exit.finished_at - run.started_at)
            .to_std()
            .unwrap_or_default();
        let policy = if s.ephemeral {
            "Never"
        } else {
            policy.as_str()
        };
        match status::after_exit(policy, is_init, code, forced, terminating, s.failures, ran) {
            status::AfterExit::Done => {
                s.done = true;
                s.not_before = None;
            }
            status::AfterExit::Stay => s.not_before = None,
            status::AfterExit::Restart { failures, delay } => {
                s.done = false;
                s.failures = failures;
                s.not_before = Some(Instant::now() + delay);
            }
        }
        let name = s.spec.name.clone();
        let id = run.id.clone();
        let _ = tokio::task::spawn_blocking(move || m.remove_container(&uid, &name, &id)).await;
    }

    /// Registry credentials from the pod's imagePullSecrets. A Secret that
    /// is missing or malformed gets a warning event (as the kubelet's
    /// `FailedToRetrieveImagePullSecret`) and the pull goes on without it.
    async fn pull_keyring(
        &self,
        pod: &Pod,
        obj: &k8s_openapi::api::core::v1::ObjectReference,
    ) -> crate::registry::Keyring {
        let names: Vec<String> = pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.as_ref())
            .map(|v| v.iter().map(|r| r.name.clone()).collect())
            .unwrap_or_default();
        let mut keyring = Vec::new();
        if names.is_empty() {
            return keyring;
        }
        let api: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &self.meta.namespace);
        for name in names {
            let problem = match api.get_opt(&name).await {
                Ok(Some(sec)) => {
                    let data: BTreeMap<String, Vec<u8>> = sec
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    match crate::registry::parse_pull_secret(
                        sec.type_.as_deref().unwrap_or("Opaque"),
                        &data,
                    ) {
                        Ok(k) => {
                            keyring.extend(k);
                            continue;
                        }
                        Err(e) => format!("secret {name:?} {e}"),
                    }
                }
                Ok(None) => format!("secret {name:?} not found"),
                Err(e) => format!("secret {name:?}: {e}"),
            };
            self.ctx.events.warning(
                obj.clone(),
                "FailedToRetrieveImagePullSecret",
                format!("Unable to retrieve some image pull secrets ({problem}); attempting to pull the image may not succeed."),
            );
        }
        keyring
    }

    async fn container_inputs(
        &self,
        pod: &Pod,
        c: &Container,
        sandbox: &Sandbox,
    ) -> Result<ContainerInputs, String> {
        let env = resolve_env(
            &self.ctx.client,
            pod,
            c,
            &sandbox.ip,
            &self.ctx.machinery.cfg.node_ip,
        )
        .await?;
        let vols = crate::volumes::prepare(
            &self.ctx.client,
            pod,
            &sandbox.dir,
            &sandbox.ip,
            &self.ctx.machinery.cfg.node_ip,
        )
        .await?;
        let mut binds = Vec::new();
        for vm in c.volume_mounts.iter().flatten() {
            let Some(src) = vols.get(&vm.name) else {
                tracing::warn!(
                    "pod {}: volume {:?} is not supported yet; mount skipped",
                    self.meta.name,
                    vm.name
                );
                continue;
            };
            let mut source = src.clone();
            if let Some(sp) = vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
                if sp.split('/').any(|p| p == "..") {
                    return Err(format!("subPath {sp:?} must not contain '..'"));
                }
                source = source.join(sp);
                if !source.exists() {
                    let _ = std::fs::create_dir_all(&source);
                }
            }
            binds.push(BindMount {
                source,
                destination: vm.mount_path.clone(),
                readonly: vm.read_only.unwrap_or(false)
                    || crate::volumes::claim_read_only(pod, &vm.name),
            });
        }
        Ok(ContainerInputs {
            env,
            binds,
            restart_count: 0,
            pod_security: pod
                .spec
                .as_ref()
                .map(crate::sandbox::PodSecurity::from_pod)
                .unwrap_or_default(),
        })
    }

    /// Graceful termination; `delete_object` finishes a graceful API delete.
    async fn terminate(
        &mut self,
        pod: &Pod,
        exit_rx: &mut mpsc::UnboundedReceiver<ExitInfo>,
        delete_object: bool,
    ) {
        self.terminating = true;
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                pod.spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30)
            .clamp(0, 300) as u64;
        let grace = Duration::from_secs(grace);
        let mut stops = Vec::new();
        for init in [true, false] {
            let v = if init { &self.init } else { &self.app };
            for s in v {
                if let Some(run) = &s.running {
                    self.ctx.events.normal(
                        self.obj(pod, &s.spec, init),
                        "Killing",
                        format!("Stopping container {}", s.spec.name),
                    );
                    let m = self.ctx.machinery.clone();
                    let (id, pid) = (run.id.clone(), run.pid);
                    let pre_stop = s.spec.lifecycle.as_ref().and_then(|l| l.pre_stop.clone());
                    let ip = self
                        .sandbox
                        .as_ref()
                        .map(|s| s.ip.clone())
                        .unwrap_or_default();
                    let ports = named_ports(&s.spec);
                    let events = self.ctx.events.clone();
                    let oref = self.obj(pod, &s.spec, init);
                    let cname = s.spec.name.clone();
                    stops.push(async move {
                        // preStop runs inside the grace period; SIGTERM follows.
                        let t0 = Instant::now();
                        if let Some(hook) = pre_stop {
                            if let Err(msg) =
                                probes::run_hook(&hook, &ip, &m.runtime, &id, &ports, grace).await
                            {
                                events.warning(
                                    oref,
                                    "FailedPreStopHook",
                                    format!("PreStopHook failed for container {cname}: {msg}"),
                                );
                            }
                        }
                        let left = grace.saturating_sub(t0.elapsed());
                        m.stop_container(&id, pid, left).await
                    });
                }
            }
        }
        futures::future::join_all(stops).await;
        // Collect the exits (codes for the final status).
        let deadline = Instant::now() + Duration::from_secs(2);
        while self
            .init
            .iter()
            .chain(self.app.iter())
            .any(|s| s.running.is_some())
        {
            match tokio::time::timeout_at(deadline, exit_rx.recv()).await {
                Ok(Some(e)) => self.on_exit(e).await,
                _ => break,
            }
        }
        if delete_object {
            self.post_status(pod).await;
        }
        let m = self.ctx.machinery.clone();
        let uid = self.uid.clone();
        let _ = tokio::task::spawn_blocking(move || m.remove_pod(&uid)).await;
        self.ctx
            .machinery
            .logs
            .forget_pod(&self.meta.namespace, &self.meta.name, &self.uid);
        if delete_object {
            let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.meta.namespace);
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(self.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&self.meta.name, &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => tracing::warn!(
                    "deleting pod {}/{}: {e}",
                    self.meta.namespace,
                    self.meta.name
                ),
            }
        }
    }

    async fn post_status(&mut self, pod: &Pod) {
        let policy = Self::restart_policy(pod);
        let init = self.recs(true);
        let app = self.recs(false);
        let init_done = self.init.iter().all(Slot::succeeded);
        let mut st = status::pod_status(&PodStatusInput {
            restart_policy: &policy,
            init: &init,
            containers: &app,
            init_done,
            init_failed: self.init_failed,
            sandbox_ready: self.sandbox.is_some() && !self.network_released,
            pod_ip: self.sandbox.as_ref().map(|s| s.ip.clone()),
            host_ip: self.ctx.machinery.cfg.node_ip.clone(),
            start_time: self.start_time,
            previous: self.posted.as_ref(),
            now: Utc::now(),
        });
        st.qos_class = Some(qos_class(pod).into());
        let eph: Vec<_> = self
            .app
            .iter()
            .filter(|s| s.ephemeral)
            .map(|s| status::container_status(&s.rec))
            .collect();
        if !eph.is_empty() {
            st.ephemeral_container_statuses = Some(eph);
        }
        if self.deadline_exceeded {
            st.phase = Some("Failed".into());
            st.reason = Some("DeadlineExceeded".into());
            st.message =
                Some("Pod was active on the node longer than the specified deadline".into());
        }
        if let Some(msg) = &self.sandbox_error {
            st.message = Some(msg.clone());
        }
        if self.posted.as_ref() == Some(&st) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.meta.namespace);
        let patch = serde_json::json!({"status": st});
        match api
            .patch_status(
                &self.meta.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {
                self.posted = Some(st);
                self.status_dirty = false;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                self.posted = Some(st);
                self.status_dirty = false;
            }
            Err(e) => {
                self.status_dirty = true;
                tracing::warn!(
                    "updating status of pod {}/{}: {e}",
                    self.meta.namespace,
                    self.meta.name
                )
            }
        }
    }
}

/// `(name, containerPort)` of a container's named ports (for probes and hooks).
fn named_ports(c: &Container) -> Vec<(String, i32)> {
    c.ports
        .iter()
        .flatten()
        .filter_map(|p| p.name.clone().map(|n| (n, p.container_port)))
        .collect()
}

/// Kubernetes' QoS class from requests and limits.
pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return "BestEffort";
    };
    let all: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &all {
        let r = c.resources.clone().unwrap_or_default();
        let req = r.requests.unwrap_or_default();
        let lim = r.limits.unwrap_or_default();
        if !req.is_empty() || !lim.is_empty() {
            any = true;
        }
        for k in ["cpu", "memory"] {
            match (lim.get(k), req.get(k)) {
                (Some(l), Some(q)) if l == q => {}
                (Some(_), None) => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

pub(crate) fn field_ref(pod: &Pod, path: &str, pod_ip: &str, host_ip: &str) -> Option<String> {
    let md = &pod.metadata;
    let spec = pod.spec.as_ref();
    let sel = |m: &Option<BTreeMap<String, String>>, prefix: &str| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        m.as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .or(Some(String::new()))
    };
    match path {
        "metadata.name" => md.name.clone(),
        "metadata.namespace" => md.namespace.clone(),
        "metadata.uid" => md.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" | "status.podIPs" => Some(pod_ip.to_string()),
        "status.hostIP" | "status.hostIPs" => Some(host_ip.to_string()),
        p if p.starts_with("metadata.labels['") => sel(&md.labels, "metadata.labels['"),
        p if p.starts_with("metadata.annotations['") => {
            sel(&md.annotations, "metadata.annotations['")
        }
        _ => None,
    }
}

/// Docker-link style variables for the namespace's services (enableServiceLinks).
pub fn service_env(services: &[Service]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .filter(|i| !i.is_empty() && *i != "None")
        else {
            continue;
        };
        let Some(name) = svc.metadata.name.as_deref() else {
            continue;
        };
        let prefix = name.to_ascii_uppercase().replace('-', "_");
        let ports = spec.ports.clone().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        for p in &ports {
            if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!(
                        "{prefix}_SERVICE_PORT_{}",
                        pn.to_ascii_uppercase().replace('-', "_")
                    ),
                    p.port.to_string(),
                ));
            }
        }
        let proto = first.protocol.clone().unwrap_or_else(|| "TCP".into());
        out.push((
            format!("{prefix}_PORT"),
            format!("{}://{ip}:{}", proto.to_lowercase(), first.port),
        ));
        for p in &ports {
            let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            let base = format!("{prefix}_PORT_{}_{}", p.port, proto.to_ascii_uppercase());
            out.push((
                base.clone(),
                format!("{}://{ip}:{}", proto.to_lowercase(), p.port),
            ));
            out.push((format!("{base}_PROTO"), proto.to_lowercase()));
            out.push((format!("{base}_PORT"), p.port.to_string()));
            out.push((format!("{base}_ADDR"), ip.to_string()));
        }
    }
    out
}

/// The container's environment, Kubernetes' order: service links, envFrom, env
/// (with `$(VAR)` expansion of earlier values).
async fn resolve_env(
    client: &Client,
    pod: &Pod,
    c: &Container,
    pod_ip: &str,
    host_ip: &str,
) -> Result<Vec<(String, String)>, String> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut vars: Vec<(String, String)> = Vec::new();
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let mut services: Vec<Service> = Vec::new();
    if links {
        if let Ok(l) = Api::<Service>::namespaced(client.clone(), &ns)
            .list(&ListParams::default())
            .await
        {
            services.extend(l.items);
        }
    }
    // The `kubernetes` service is always linked (in-cluster clients need it).
    if ns != "default" || !links {
        if let Ok(k) = Api::<Service>::namespaced(client.clone(), "default")
            .get("kubernetes")
            .await
        {
            services.push(k);
        }
    }
    vars.extend(service_env(&services));
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    for ef in c.env_from.iter().flatten() {
        let prefix = ef.prefix.clone().unwrap_or_default();
        if let Some(r) = &ef.config_map_ref {
            match cms.get_opt(&r.name).await {
                Ok(Some(cm)) => {
                    for (k, v) in cm.data.unwrap_or_default() {
                        vars.push((format!("{prefix}{k}"), v));
                    }
                }
                Ok(None) if r.optional == Some(true) => {}
                Ok(None) => return Err(format!("configmap \"{}\" not found", r.name)),
                Err(e) => return Err(format!("reading configmap \"{}\": {e}", r.name)),
            }
        }
        if let Some(r) = &ef.secret_ref {
            match secrets.get_opt(&r.name).await {
                Ok(Some(s)) => {
                    for (k, v) in s.data.unwrap_or_default() {
                        vars.push((
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v.0).into_owned(),
                        ));
                    }
                }
                Ok(None) if r.optional == Some(true) => {}
                Ok(None) => return Err(format!("secret \"{}\" not found", r.name)),
                Err(e) => return Err(format!("reading secret \"{}\": {e}", r.name)),
            }
        }
    }
    for EnvVar {
        name,
        value,
        value_from,
    } in c.env.iter().flatten()
    {
        let known: BTreeMap<String, String> = vars.iter().cloned().collect();
        let v = if let Some(v) = value {
            crate::spec::expand(v, &known)
        } else if let Some(src) = value_from {
            if let Some(f) = &src.field_ref {
                field_ref(pod, &f.field_path, pod_ip, host_ip).unwrap_or_default()
            } else if let Some(k) = &src.config_map_key_ref {
                match cms.get_opt(&k.name).await {
                    Ok(Some(cm)) => match cm.data.unwrap_or_default().get(&k.key) {
                        Some(v) => v.clone(),
                        None if k.optional == Some(true) => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {ns}/{}",
                                k.key, k.name
                            ))
                        }
                    },
                    Ok(None) if k.optional == Some(true) => continue,
                    Ok(None) => return Err(format!("configmap \"{}\" not found", k.name)),
                    Err(e) => return Err(format!("reading configmap \"{}\": {e}", k.name)),
                }
            } else if let Some(k) = &src.secret_key_ref {
                match secrets.get_opt(&k.name).await {
                    Ok(Some(s)) => match s.data.unwrap_or_default().get(&k.key) {
                        Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                        None if k.optional == Some(true) => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {ns}/{}",
                                k.key, k.name
                            ))
                        }
                    },
                    Ok(None) if k.optional == Some(true) => continue,
                    Ok(None) => return Err(format!("secret \"{}\" not found", k.name)),
                    Err(e) => return Err(format!("reading secret \"{}\": {e}", k.name)),
                }
            } else if let Some(r) = &src.resource_field_ref {
                crate::volumes::resource_value(
                    c,
                    &r.resource,
                    r.divisor.as_ref(),
                    crate::volumes::node_allocatable(),
                )
                .unwrap_or_default()
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        vars.push((name.clone(), v));
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ResourceRequirements, ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    #[test]
    fn pull_durations_print_like_go() {
        assert_eq!(go_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(go_duration(Duration::from_millis(1234)), "1.234s");
        assert_eq!(go_duration(Duration::from_millis(4050)), "4.05s");
        assert_eq!(go_duration(Duration::from_secs(12)), "12s");
    }

    fn pod_with(resources: Option<ResourceRequirements>) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "web"}},
            "spec": {"nodeName": "minik", "containers": [{"name": "c", "image": "minik/hello"}]}
        }))
        .map(|mut p: Pod| {
            p.spec.as_mut().unwrap().containers[0].resources = resources;
            p
        })
        .unwrap()
    }

    #[test]
    fn qos() {
        assert_eq!(qos_class(&pod_with(None)), "BestEffort");
        let q = |s: &str| Quantity(s.into());
        let both: BTreeMap<String, Quantity> = [
            ("cpu".to_string(), q("1")),
            ("memory".to_string(), q("1Gi")),
        ]
        .into();
        assert_eq!(
            qos_class(&pod_with(Some(ResourceRequirements {
                limits: Some(both.clone()),
                requests: Some(both.clone()),
                ..Default::default()
            }))),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&pod_with(Some(ResourceRequirements {
                requests: Some(both),
                ..Default::default()
            }))),
            "Burstable"
        );
    }

    #[test]
    fn field_refs() {
        let p = pod_with(None);
        assert_eq!(
            field_ref(&p, "metadata.name", "10.244.0.2", "1.2.3.4").as_deref(),
            Some("p")
        );
        assert_eq!(
            field_ref(&p, "status.podIP", "10.244.0.2", "1.2.3.4").as_deref(),
            Some("10.244.0.2")
        );
        assert_eq!(
            field_ref(&p, "metadata.labels['app']", "", "").as_deref(),
            Some("web")
        );
        assert_eq!(
            field_ref(&p, "spec.nodeName", "", "").as_deref(),
            Some("minik")
        );
        assert_eq!(field_ref(&p, "bogus", "", ""), None);
    }

    #[test]
    fn service_links() {
        let svc = Service {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("my-web".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some("10.96.3.4".into()),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let env: BTreeMap<String, String> = service_env(&[svc]).into_iter().collect();
        assert_eq!(env["MY_WEB_SERVICE_HOST"], "10.96.3.4");
        assert_eq!(env["MY_WEB_SERVICE_PORT"], "80");
        assert_eq!(env["MY_WEB_SERVICE_PORT_HTTP"], "80");
        assert_eq!(env["MY_WEB_PORT"], "tcp://10.96.3.4:80");
        assert_eq!(env["MY_WEB_PORT_80_TCP_ADDR"], "10.96.3.4");
    }
}
