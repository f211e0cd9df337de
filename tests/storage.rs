//! Storage end to end with the real binary and the real kubectl (none
//! driver): the default StorageClass from the default addons, a class-less
//! claim bound through the hostPath provisioner, data written by one pod and
//! read by the next, kept across `minik stop`/`minik start`, claim
//! protection while a pod uses it, Delete reclaim removing the volume and its
//! directory, a static hostPath volume chosen by a selector (Retain keeps it
//! Released), a generic ephemeral volume living and dying with its pod, and
//! a pod waiting on an unbound claim. One cluster for the whole file, steps
//! in order.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{assert_no_cluster_running, host_snapshot, text, wait_for, Env};

fn claim(name: &str, size: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {name}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: {size}\n{extra_spec}"
    )
}

/// A pod that runs `script` with the claim at /data.
fn pod(name: &str, claim: &str, script: &str, restart: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: {restart}
  terminationGracePeriodSeconds: 1
  containers:
    - name: c
      image: minik/busybox
      command: ["sh", "-c", "{script}"]
      volumeMounts:
        - name: data
          mountPath: /data
  volumes:
    - name: data
      persistentVolumeClaim:
        claimName: {claim}
"#
    )
}

fn wait_phase(env: &Env, kind: &str, name: &str, phase: &str, timeout: Duration) {
    wait_for(&format!("{kind} {name} {phase}"), timeout, || {
        let got = env.jsonpath(&["get", kind, name], "{.status.phase}");
        if got == phase {
            Ok(())
        } else {
            Err(format!(
                "phase {got:?}\n{}",
                text(&env.kubectl(&["describe", kind, name]).stdout)
            ))
        }
    });
}

fn gone(env: &Env, args: &[&str]) -> bool {
    let out = env.kubectl(&[args, &["--ignore-not-found", "-o", "name"]].concat());
    out.status.success() && text(&out.stdout).trim().is_empty()
}

/// Reads /data/greeting in a fresh pod and returns what it printed.
fn read_back(env: &Env, pod_name: &str) -> String {
    env.apply(&pod(pod_name, "data", "cat /data/greeting", "Never"));
    wait_phase(env, "pod", pod_name, "Succeeded", Duration::from_secs(90));
    let out = env.k(&["logs", pod_name]);
    env.k(&["delete", "pod", pod_name, "--wait=true"]);
    out
}

fn header_cols(table: &str) -> Vec<String> {
    table
        .lines()
        .next()
        .unwrap_or_default()
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn row<'a>(table: &'a str, first: &str) -> Vec<&'a str> {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no row {first} in:\n{table}"))
        .split_whitespace()
        .collect()
}

#[test]
fn persistent_volumes_end_to_end() {
    // Waits for the host lock: one none-driver cluster at a time.
    let env = Env::new("storage");
    assert_no_cluster_running();
    let before = host_snapshot();
    env.start_none();
    let node_root = env.dir.join("minik/profiles/minik/node");
    let volumes = node_root.join("volumes");

    // --- the default StorageClass from the default addons --------------------
    let sc = env.k(&["get", "sc"]);
    assert_eq!(
        header_cols(&sc),
        [
            "NAME",
            "PROVISIONER",
            "RECLAIMPOLICY",
            "VOLUMEBINDINGMODE",
            "ALLOWVOLUMEEXPANSION",
            "AGE"
        ],
        "{sc}"
    );
    assert_eq!(
        row(&sc, "standard")[..6],
        [
            "standard",
            "(default)",
            "minik.io/hostpath",
            "Delete",
            "Immediate",
            "false"
        ],
        "{sc}"
    );
    let listed = env.m(&["addons", "list"]);
    for a in ["storage-provisioner", "default-storageclass"] {
        let r = row(&listed, a);
        assert_eq!(r[1], "enabled", "{listed}");
    }

    // --- a claim with no class binds, through the provisioner ----------------
    let t0 = Instant::now();
    env.apply(&claim("data", "100Mi", ""));
    wait_phase(&env, "pvc", "data", "Bound", Duration::from_secs(60));
    let bind_time = t0.elapsed();
    eprintln!("class-less claim bound in {bind_time:?}");
    assert!(
        bind_time < Duration::from_secs(30),
        "binding took {bind_time:?} (the provisioner pod starts on a new cluster)"
    );
    let uid = env.jsonpath(&["get", "pvc", "data"], "{.metadata.uid}");
    let pv_name = format!("pvc-{uid}");
    assert_eq!(
        env.jsonpath(&["get", "pvc", "data"], "{.spec.storageClassName}"),
        "standard",
        "the default class is assigned"
    );
    assert_eq!(
        env.jsonpath(&["get", "pvc", "data"], "{.spec.volumeName}"),
        pv_name
    );
    assert_eq!(
        env.jsonpath(
            &["get", "pvc", "data"],
            "{.status.capacity.storage} {.status.accessModes[0]}"
        ),
        "100Mi ReadWriteOnce"
    );
    assert_eq!(
        env.jsonpath(&["get", "pvc", "data"],
            r"{.metadata.annotations.pv\.kubernetes\.io/bind-completed} {.metadata.annotations.volume\.kubernetes\.io/storage-provisioner} {.metadata.finalizers[0]}"
        ),
        "yes minik.io/hostpath kubernetes.io/pvc-protection"
    );
    assert_eq!(
        env.jsonpath(&["get", "pv", &pv_name],
            r"{.status.phase} {.spec.claimRef.name} {.spec.persistentVolumeReclaimPolicy} {.metadata.annotations.pv\.kubernetes\.io/provisioned-by} {.spec.hostPath.path}"
        ),
        format!(
            "Bound data Delete minik.io/hostpath {}",
            volumes.join(&pv_name).display()
        )
    );
    let dir = volumes.join(&pv_name);
    assert!(dir.is_dir(), "{} was not created", dir.display());
    let events = env.events_of("data");
    assert!(
        events.contains("ProvisioningSucceeded")
            && events.contains(&format!("Successfully provisioned volume {pv_name}")),
        "{events}"
    );

    // --- kubectl get pv,pvc columns ----------------------------------------------
    let table = env.k(&["get", "pv,pvc"]);
    assert!(
        table.contains("NAME")
            && table.contains("CAPACITY")
            && table.contains("ACCESS MODES")
            && table.contains("RECLAIM POLICY")
            && table.contains("STATUS")
            && table.contains("CLAIM")
            && table.contains("STORAGECLASS")
            && table.contains("VOLUMEATTRIBUTESCLASS")
            && table.contains("REASON")
            && table.contains("VOLUME"),
        "{table}"
    );
    let pv_row = row(&table, &format!("persistentvolume/{pv_name}"));
    assert_eq!(
        pv_row[1..8],
        [
            "100Mi",
            "RWO",
            "Delete",
            "Bound",
            "default/data",
            "standard",
            "<unset>"
        ],
        "{table}"
    );
    let pvc_row = row(&table, "persistentvolumeclaim/data");
    assert_eq!(
        pvc_row[1..7],
        [
            "Bound",
            pv_name.as_str(),
            "100Mi",
            "RWO",
            "standard",
            "<unset>"
        ],
        "{table}"
    );
    let pvc_table = env.k(&["get", "pvc"]);
    assert_eq!(
        header_cols(&pvc_table),
        [
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS MODES",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "AGE"
        ],
        "{pvc_table}"
    );

    // --- a pod writes; a new pod reads it back ---------------------------------
    let payload = format!("hello-{}", std::process::id());
    env.apply(&pod(
        "writer",
        "data",
        &format!("echo {payload} > /data/greeting"),
        "Never",
    ));
    wait_phase(&env, "pod", "writer", "Succeeded", Duration::from_secs(90));
    assert_eq!(
        std::fs::read_to_string(dir.join("greeting"))
            .unwrap_or_default()
            .trim(),
        payload,
        "the file is on the node"
    );
    env.k(&["delete", "pod", "writer", "--wait=true"]);
    assert_eq!(read_back(&env, "reader").trim(), payload);

    // --- it survives minik stop / minik start ----------------------------------
    env.m(&["stop"]);
    env.m(&["start", "--driver=none"]);
    assert_eq!(
        env.jsonpath(
            &["get", "pvc", "data"],
            "{.status.phase} {.spec.volumeName}"
        ),
        format!("Bound {pv_name}")
    );
    assert_eq!(read_back(&env, "reader2").trim(), payload);

    // --- a pod that is not bound waits, with FailedMount ------------------------
    env.apply(&claim("orphan", "1Mi", "  storageClassName: nope\n"));
    env.apply(&pod("waiter", "orphan", "true", "Never"));
    // FailedMount on the waiting pod
    env.wait_events(
        "waiter",
        &[
            "FailedMount",
            "persistentvolumeclaim \"orphan\" is not bound",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(
        env.jsonpath(&["get", "pod", "waiter"], "{.status.phase}"),
        "Pending"
    );
    assert_eq!(
        env.jsonpath(
            &["get", "pod", "waiter"],
            "{.status.containerStatuses[0].state.waiting.reason}"
        ),
        "ContainerCreating"
    );
    let ev = env.events_of("orphan");
    assert!(
        ev.contains("storageclass.storage.k8s.io \"nope\" not found"),
        "{ev}"
    );
    env.k(&["delete", "pod", "waiter", "--wait=true"]);
    env.k(&["delete", "pvc", "orphan", "--wait=true"]);

    // --- protection: the claim stays while a pod uses it -------------------------
    env.apply(&pod("user", "data", "sleep 3600", "Never"));
    wait_phase(&env, "pod", "user", "Running", Duration::from_secs(90));
    env.k(&["delete", "pvc", "data", "--wait=false"]);
    std::thread::sleep(Duration::from_secs(3));
    let t = env.k(&["get", "pvc", "data"]);
    assert_eq!(row(&t, "data")[1], "Terminating", "{t}");
    assert!(dir.is_dir(), "data kept while in use");
    // --- Delete reclaim: claim gone → volume and directory gone ----------------
    env.k(&["delete", "pod", "user", "--wait=true"]);
    wait_for(
        "the claim, its volume and its directory gone",
        Duration::from_secs(60),
        || {
            let ok = gone(&env, &["get", "pvc", "data"])
                && gone(&env, &["get", "pv", &pv_name])
                && !dir.exists();
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "{}\ndir exists: {}",
                    env.k(&["get", "pv,pvc"]),
                    dir.exists()
                ))
            }
        },
    );

    // --- a static hostPath volume picked by a selector; Retain -------------------
    let static_dir = env.dir.join("static");
    std::fs::create_dir_all(&static_dir).unwrap();
    std::fs::write(static_dir.join("seed"), "seeded").unwrap();
    let pv = |name: &str, size: &str, label: &str, path: &Path| {
        format!(
            "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: {name}\n  labels:\n    type: {label}\nspec:\n  storageClassName: manual\n  capacity:\n    storage: {size}\n  accessModes: [ReadWriteOnce]\n  persistentVolumeReclaimPolicy: Retain\n  hostPath:\n    path: {}\n",
            path.display()
        )
    };
    env.apply(&pv(
        "static-small",
        "1Gi",
        "other",
        &env.dir.join("elsewhere"),
    ));
    env.apply(&pv("static-local", "5Gi", "local", &static_dir));
    wait_for("static volumes Available", Duration::from_secs(30), || {
        let p = env.jsonpath(
            &["get", "pv", "static-small", "static-local"],
            "{.items[*].status.phase}",
        );
        if p == "Available Available" {
            Ok(())
        } else {
            Err(p)
        }
    });
    env.apply(&claim(
        "picked",
        "500Mi",
        "  storageClassName: manual\n  selector:\n    matchLabels:\n      type: local\n",
    ));
    wait_phase(&env, "pvc", "picked", "Bound", Duration::from_secs(30));
    assert_eq!(
        env.jsonpath(
            &["get", "pvc", "picked"],
            "{.spec.volumeName} {.status.capacity.storage}"
        ),
        "static-local 5Gi",
        "the selector wins over the smaller volume"
    );
    assert_eq!(
        env.jsonpath(&["get", "pv", "static-small"], "{.status.phase}"),
        "Available"
    );
    env.apply(&pod("static-reader", "picked", "cat /data/seed", "Never"));
    wait_phase(
        &env,
        "pod",
        "static-reader",
        "Succeeded",
        Duration::from_secs(90),
    );
    assert_eq!(env.k(&["logs", "static-reader"]).trim(), "seeded");
    env.k(&["delete", "pod", "static-reader", "--wait=true"]);
    env.k(&["delete", "pvc", "picked", "--wait=true"]);
    env.wait_jsonpath(
        &["get", "pv", "static-local"],
        "{.status.phase}",
        "Released",
        Duration::from_secs(30),
    );
    assert!(static_dir.join("seed").exists(), "Retain keeps the data");
    let t = env.k(&["get", "pv", "static-local"]);
    assert_eq!(row(&t, "static-local")[4], "Released", "{t}");

    // --- a generic ephemeral volume: a claim per pod, gone with the pod --------
    env.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: scratch
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: c
      image: minik/busybox
      command: ["sh", "-c", "echo tmp > /work/f && sleep 3600"]
      volumeMounts:
        - name: work
          mountPath: /work
  volumes:
    - name: work
      ephemeral:
        volumeClaimTemplate:
          spec:
            accessModes: [ReadWriteOnce]
            resources:
              requests:
                storage: 10Mi
"#,
    );
    wait_phase(&env, "pod", "scratch", "Running", Duration::from_secs(90));
    assert_eq!(
        env.jsonpath(&["get", "pvc", "scratch-work"],
            "{.status.phase} {.spec.storageClassName} {.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}"
        ),
        "Bound standard Pod/scratch"
    );
    let eph_pv = env.jsonpath(&["get", "pvc", "scratch-work"], "{.spec.volumeName}");
    assert_eq!(
        std::fs::read_to_string(volumes.join(&eph_pv).join("f"))
            .unwrap_or_default()
            .trim(),
        "tmp"
    );
    env.k(&["delete", "pod", "scratch", "--wait=true"]);
    wait_for(
        "the ephemeral claim and volume gone with the pod",
        Duration::from_secs(60),
        || {
            if gone(&env, &["get", "pvc", "scratch-work"])
                && gone(&env, &["get", "pv", &eph_pv])
                && !volumes.join(&eph_pv).exists()
            {
                Ok(())
            } else {
                Err(env.k(&["get", "pv,pvc"]))
            }
        },
    );

    // --- delete: the host is left as it was found ------------------------------
    env.delete_and_check_host(&before);
}
