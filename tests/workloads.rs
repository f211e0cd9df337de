//! The workload controllers end to end, as a user sees them with the real
//! kubectl against a none-driver cluster running real runc pods:
//! StatefulSet (ordered start, stable DNS names from another pod, reverse
//! scale-down, rollout status/history), DaemonSet (one pod on the node,
//! rollout status), Jobs (completions/parallelism, backoffLimit, TTL, Indexed)
//! and CronJobs (a real `*/1` schedule, Forbid, history limits, `kubectl
//! create job --from=cronjob/...`). One cluster; independent workloads run
//! side by side so the whole file stays near a minute and a half.

mod common;

use std::time::{Duration, Instant};

use common::{text, wait_for, Env};

const WORKLOADS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: hello
        image: minik/hello
        ports: [{containerPort: 80}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: agent
        image: minik/busybox
        command: ["sleep", "3600"]
---
apiVersion: batch/v1
kind: Job
metadata: {name: three}
spec:
  completions: 3
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: minik/busybox
        command: ["sh", "-c", "sleep 1; echo done"]
---
apiVersion: batch/v1
kind: Job
metadata: {name: doomed}
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: minik/busybox
        command: ["sh", "-c", "exit 3"]
---
apiVersion: batch/v1
kind: Job
metadata: {name: shortlived}
spec:
  ttlSecondsAfterFinished: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: minik/busybox
        command: ["true"]
---
apiVersion: batch/v1
kind: Job
metadata: {name: idx}
spec:
  completionMode: Indexed
  completions: 3
  parallelism: 3
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: minik/busybox
        command: ["sh", "-c", "echo index=$JOB_COMPLETION_INDEX host=$(hostname)"]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "*/1 * * * *"
  successfulJobsHistoryLimit: 1
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: tick
            image: minik/busybox
            command: ["echo", "tick"]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: solo}
spec:
  schedule: "*/1 * * * *"
  concurrencyPolicy: Forbid
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          terminationGracePeriodSeconds: 1
          containers:
          - name: long
            image: minik/busybox
            command: ["sleep", "600"]
"#;

/// The sts pods as (name, phase, ready) in one API snapshot.
fn web_pods(env: &Env) -> Vec<(String, String, bool)> {
    env.jsonpath(&["get", "pods", "-l", "app=web"],
        r#"{range .items[*]}{.metadata.name} {.status.phase} {.status.conditions[?(@.type=="Ready")].status} {.metadata.deletionTimestamp}{"\n"}{end}"#,
    )
    .lines()
    .filter_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        Some((
            f.first()?.to_string(),
            f.get(1).unwrap_or(&"").to_string(),
            f.get(2) == Some(&"True") && f.len() == 3,
        ))
    })
    .collect()
}

#[test]
fn workload_controllers_on_the_none_driver() {
    let env = Env::new("workloads");
    let t0 = Instant::now();
    env.start_none();
    env.apply(WORKLOADS);
    // A missed-schedule catch-up for the Forbid cronjob: as if the controller
    // had been down for three minutes, it runs the most recent one at once.
    let three_min_ago = env.jsonpath(&["get", "cronjob", "solo"], "{.metadata.creationTimestamp}");
    assert!(!three_min_ago.is_empty());
    let past = chrono_minus(&three_min_ago, 180);
    env.k(&[
        "patch",
        "cronjob",
        "solo",
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!(r#"{{"status":{{"lastScheduleTime":"{past}"}}}}"#),
    ]);

    eprintln!("[{:?}] cluster up, workloads applied", t0.elapsed());
    // --- StatefulSet: ordered start --------------------------------------
    // In every snapshot, pod i exists only if pod i-1 is Running and Ready.
    let ready3 = wait_for(
        "3 ready web pods, in order",
        Duration::from_secs(90),
        || {
            let pods = web_pods(&env);
            for (name, _, _) in &pods {
                let i: usize = name.trim_start_matches("web-").parse().expect("ordinal");
                if i > 0 {
                    let prev = format!("web-{}", i - 1);
                    let ok = pods
                        .iter()
                        .any(|(n, phase, ready)| n == &prev && phase == "Running" && *ready);
                    assert!(
                        ok,
                        "{name} exists before {prev} is Running and Ready: {pods:?}"
                    );
                }
            }
            let ready = pods.iter().filter(|(_, p, r)| p == "Running" && *r).count();
            if ready == 3 {
                Ok(pods)
            } else {
                Err(format!("{pods:?}"))
            }
        },
    );
    let names: Vec<&str> = ready3.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, vec!["web-0", "web-1", "web-2"]);
    let rs = env.k(&["rollout", "status", "sts/web", "--timeout=30s"]);
    // With the default partition 0, kubectl reports a partitioned rollout (as against kube).
    assert!(
        rs.contains("roll out complete: 3 new pods have been updated"),
        "{rs}"
    );
    eprintln!("[{:?}] statefulset ready", t0.elapsed());
    let labels = env.jsonpath(&["get", "pod", "web-1"], "{.metadata.labels}");
    assert!(
        labels.contains(r#""statefulset.kubernetes.io/pod-name":"web-1""#)
            && labels.contains(r#""apps.kubernetes.io/pod-index":"1""#)
            && labels.contains(r#""controller-revision-hash":"web-"#),
        "{labels}"
    );
    let hist = env.k(&["rollout", "history", "sts/web"]);
    assert!(
        hist.lines().any(|l| l.trim_start().starts_with('1')),
        "{hist}"
    );

    // Stable DNS name, from another pod: web-2.web resolves to web-2's IP.
    let ip2 = env.jsonpath(&["get", "pod", "web-2"], "{.status.podIP}");
    assert!(ip2.starts_with("10.244."), "web-2 IP {ip2:?}");
    let answer = wait_for(
        "web-2's DNS name from web-0",
        Duration::from_secs(30),
        || {
            let out = env.try_k(&[
                "exec",
                "web-0",
                "--",
                "nslookup",
                "web-2.web.default.svc.cluster.local",
            ])?;
            if out.contains(&format!("Address: {ip2}")) {
                Ok(out)
            } else {
                Err(out)
            }
        },
    );
    assert!(
        answer.contains("web-2.web.default.svc.cluster.local"),
        "{answer}"
    );
    eprintln!("[{:?}] dns ok", t0.elapsed());

    // --- StatefulSet: rolling update from the highest ordinal, then undo ----------
    let rev1 = env.jsonpath(&["get", "sts", "web"], "{.status.currentRevision}");
    env.k(&["set", "env", "sts/web", "GREETING=two"]);
    wait_for(
        "web rolled to the new revision",
        Duration::from_secs(60),
        || {
            let update = env.jsonpath(&["get", "sts", "web"], "{.status.updateRevision}");
            let snapshot = env.jsonpath(&["get", "pods", "-l", "app=web"],
                r#"{range .items[*]}{.metadata.name}={.metadata.labels.controller-revision-hash} {end}"#,
            );
            let revs: Vec<(String, String)> = snapshot
                .split_whitespace()
                .filter_map(|kv| {
                    kv.split_once('=')
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                })
                .collect();
            // web-i is updated only once every higher ordinal is.
            for (name, rev) in &revs {
                let i: u32 = name.trim_start_matches("web-").parse().expect("ordinal");
                if *rev == update && update != rev1 {
                    for (other, orev) in &revs {
                        let j: u32 = other.trim_start_matches("web-").parse().expect("ordinal");
                        assert!(
                            j <= i || *orev == update,
                            "{name} updated before {other}: {snapshot}"
                        );
                    }
                }
            }
            let ready = web_pods(&env)
                .iter()
                .filter(|(_, p, r)| p == "Running" && *r)
                .count();
            if update != rev1
                && revs.len() == 3
                && revs.iter().all(|(_, r)| *r == update)
                && ready == 3
            {
                Ok(())
            } else {
                Err(snapshot)
            }
        },
    );
    env.k(&["rollout", "status", "sts/web", "--timeout=30s"]);
    let hist = env.k(&["rollout", "history", "sts/web"]);
    assert!(hist.contains("\n1 ") && hist.contains("\n2 "), "{hist}");
    env.k(&["rollout", "undo", "sts/web"]);
    wait_for(
        "the undo back to the first revision",
        Duration::from_secs(60),
        || {
            let st = env.jsonpath(
                &["get", "sts", "web"],
                "{.status.currentRevision} {.status.updatedReplicas} {.status.readyReplicas}",
            );
            if st == format!("{rev1} 3 3") {
                Ok(())
            } else {
                Err(st)
            }
        },
    );
    eprintln!("[{:?}] statefulset update and undo ok", t0.elapsed());
    // --- DaemonSet ----------------------------------------------------------
    let ds = env.k(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    assert!(ds.contains("successfully rolled out"), "{ds}");
    let nodes = env.jsonpath(
        &["get", "pods", "-l", "app=agent"],
        "{.items[*].spec.nodeName}",
    );
    assert_eq!(nodes.trim(), "minik", "one agent pod, on the node");
    let hash1 = env.jsonpath(
        &["get", "pods", "-l", "app=agent"],
        "{.items[*].metadata.labels.controller-revision-hash}",
    );
    env.k(&["set", "env", "ds/agent", "MODE=two"]);
    env.k(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    let hash2 = wait_for("one updated agent pod", Duration::from_secs(30), || {
        let h = env.jsonpath(
            &["get", "pods", "-l", "app=agent"],
            "{.items[*].metadata.labels.controller-revision-hash}",
        );
        if !h.contains(' ') && !h.is_empty() && h != hash1 {
            Ok(h)
        } else {
            Err(h)
        }
    });
    assert!(!hash2.is_empty());

    eprintln!("[{:?}] daemonset ok", t0.elapsed());
    // --- Jobs ---------------------------------------------------------------
    env.k(&[
        "wait",
        "--for=condition=complete",
        "job/three",
        "--timeout=60s",
    ]);
    let row = env.k(&["get", "job", "three", "--no-headers"]);
    let f: Vec<&str> = row.split_whitespace().collect();
    assert_eq!((f[1], f[2]), ("Complete", "3/3"), "{row}");
    assert_eq!(
        env.jsonpath(&["get", "job", "three"], "{.status.succeeded}"),
        "3"
    );
    let finalizers = env.jsonpath(
        &["get", "pods", "-l", "job-name=three"],
        "{.items[*].metadata.finalizers}",
    );
    assert!(
        finalizers.trim().is_empty(),
        "tracking finalizers left: {finalizers}"
    );

    env.k(&[
        "wait",
        "--for=condition=complete",
        "job/idx",
        "--timeout=60s",
    ]);
    assert_eq!(
        env.jsonpath(&["get", "job", "idx"], "{.status.completedIndexes}"),
        "0-2"
    );
    let logs = env.k(&["logs", "-l", "job-name=idx", "--prefix=false"]);
    for i in 0..3 {
        assert!(logs.contains(&format!("index={i} host=idx-{i}")), "{logs}");
    }

    env.k(&[
        "wait",
        "--for=condition=failed",
        "job/doomed",
        "--timeout=60s",
    ]);
    assert_eq!(
        env.jsonpath(
            &["get", "job", "doomed"],
            r#"{.status.conditions[?(@.type=="Failed")].reason}"#
        ),
        "BackoffLimitExceeded"
    );
    assert_eq!(
        env.jsonpath(&["get", "job", "doomed"], "{.status.failed}"),
        "2"
    );
    let events = env.events_of("doomed");
    assert!(events.contains("backoff limit"), "{events}");

    wait_for(
        "the TTL to delete job shortlived and its pod",
        Duration::from_secs(40),
        || {
            let job = env.kubectl(&["get", "job", "shortlived"]);
            let pods = env.jsonpath(
                &["get", "pods", "-l", "job-name=shortlived"],
                "{.items[*].metadata.name}",
            );
            if !job.status.success() && pods.trim().is_empty() {
                Ok(())
            } else {
                Err(format!("job: {} pods: {pods}", text(&job.stdout)))
            }
        },
    );

    eprintln!("[{:?}] jobs ok", t0.elapsed());
    // --- StatefulSet: scale down in reverse order -----------------------------
    env.k(&["scale", "sts", "web", "--replicas=1"]);
    wait_for("web scaled down to web-0", Duration::from_secs(60), || {
        let pods = web_pods(&env);
        let has = |n: &str| pods.iter().any(|(p, _, _)| p == n);
        assert!(
            !has("web-2") || has("web-1"),
            "web-1 removed before web-2: {pods:?}"
        );
        if pods.len() == 1 && has("web-0") {
            Ok(())
        } else {
            Err(format!("{pods:?}"))
        }
    });
    assert_eq!(
        env.jsonpath(&["get", "sts", "web"], "{.status.replicas}"),
        "1"
    );

    eprintln!("[{:?}] scale down ok", t0.elapsed());
    // --- CronJobs --------------------------------------------------------------
    // The catch-up run of solo started at once; it keeps running (Forbid).
    let solo_job = wait_job(
        &env,
        "solo's catch-up job",
        "solo-",
        Duration::from_secs(20),
    );
    let ts = env.jsonpath(
        &["get", "job", &solo_job],
        r#"{.metadata.annotations.batch\.kubernetes\.io/cronjob-scheduled-timestamp}"#,
    );
    assert!(ts.ends_with(":00Z"), "scheduled timestamp {ts:?}");

    // The real schedule: a tick job within ~70 s of creating the cronjob.
    let tick_job = wait_job(
        &env,
        "a scheduled tick job",
        "tick-",
        Duration::from_secs(75),
    );
    env.k(&[
        "wait",
        "--for=condition=complete",
        &format!("job/{tick_job}"),
        "--timeout=30s",
    ]);
    // Manual runs from the template are owned by the cronjob and subject to
    // its history limit (made after the scheduled job finished: the limit
    // may remove that one as soon as these finish).
    for n in ["manual-1", "manual-2"] {
        env.k(&["create", "job", n, "--from=cronjob/tick"]);
    }
    // successfulJobsHistoryLimit 1: only the newest finished job of tick is kept.
    wait_for("tick's history limit", Duration::from_secs(30), || {
        let names = env.jsonpath(&["get", "jobs"], "{.items[*].metadata.name}");
        let tick: Vec<&str> = names
            .split_whitespace()
            .filter(|n| n.starts_with("tick-") || n.starts_with("manual-"))
            .collect();
        if tick.len() == 1 {
            Ok(())
        } else {
            Err(names.clone())
        }
    });
    assert!(!env
        .jsonpath(&["get", "cronjob", "tick"], "{.status.lastScheduleTime}")
        .is_empty());
    assert!(!env
        .jsonpath(&["get", "cronjob", "tick"], "{.status.lastSuccessfulTime}")
        .is_empty());
    // A later minute passed for solo while its job still runs: no second one. (If the
    // catch-up landed on the tick's minute itself, this waits for the next minute.)
    env.wait_events("solo", &["JobAlreadyActive"], Duration::from_secs(75));
    let solo_jobs = env.jsonpath(&["get", "jobs"], "{.items[*].metadata.name}");
    assert_eq!(
        solo_jobs
            .split_whitespace()
            .filter(|n| n.starts_with("solo-"))
            .count(),
        1,
        "{solo_jobs}"
    );
    assert!(env
        .jsonpath(&["get", "cronjob", "solo"], "{.status.active[*].name}")
        .contains(&solo_job));

    eprintln!("workloads test body took {:?}", t0.elapsed());
    env.m(&["delete"]);
}

/// Waits for a Job whose name starts with `prefix`; its name.
fn wait_job(env: &Env, what: &str, prefix: &str, timeout: Duration) -> String {
    wait_for(what, timeout, || {
        let names = env.jsonpath(&["get", "jobs"], "{.items[*].metadata.name}");
        names
            .split_whitespace()
            .find(|n| n.starts_with(prefix))
            .map(String::from)
            .ok_or(names)
    })
}

/// An RFC 3339 UTC time minus `secs` seconds (kubectl prints `...Z`).
fn chrono_minus(rfc3339: &str, secs: i64) -> String {
    let t: k8s_openapi::jiff::Timestamp = rfc3339.parse().expect("an RFC 3339 time");
    let t = k8s_openapi::jiff::Timestamp::from_second(t.as_second() - secs).expect("valid");
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}
