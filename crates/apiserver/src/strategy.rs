//! Per-resource behaviour plugged into the one generic REST path, after
//! kube's `pkg/registry/<group>/<resource>/strategy.go`: defaulting,
//! preparing an object for create/update (status reset, generation bump),
//! and validation. Service IP/port allocation needs the store and lives in
//! `alloc`; everything here is pure and unit-tested.

use crate::error::Cause;
use crate::names::{validate_label_value, validate_name, validate_qualified_name, NameRule};
use crate::selector::{labels_of, LabelSelector};
use minik_apimachinery::ResourceInfo;
use serde_json::{json, Map, Value};

/// Which metadata.name rule a resource uses.
pub fn name_rule(info: &ResourceInfo) -> NameRule {
    match (info.group, info.resource) {
        ("", "namespaces") => NameRule::Label,
        ("", "services") => NameRule::Dns1035,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        // `v1.` names the core group's APIService
        ("apiregistration.k8s.io", "apiservices") => NameRule::PathSegment,
        _ => NameRule::Subdomain,
    }
}

/// Whether the main resource ignores `status` on update (it has a status subresource).
pub fn has_status_subresource(info: &ResourceInfo) -> bool {
    info.subresources.contains(&"status")
}

/// Whether `metadata.generation` is bumped when the spec changes.
fn tracks_generation(info: &ResourceInfo) -> bool {
    // custom resources, CRDs and APIServices count spec changes too
    !minik_apimachinery::resources::is_builtin(info)
        || matches!(
            (info.group, info.resource),
            ("apiextensions.k8s.io", _) | ("apiregistration.k8s.io", _)
        )
        || matches!(
            (info.group, info.resource),
            (
                "apps",
                "deployments" | "replicasets" | "statefulsets" | "daemonsets"
            ) | ("batch", _)
                | ("", "pods" | "replicationcontrollers")
                | ("policy", "poddisruptionbudgets")
                | ("networking.k8s.io", "ingresses")
        )
}

/// Workloads whose status only their controller writes (reset on create).
fn server_owned_status(info: &ResourceInfo) -> bool {
    matches!(
        (info.group, info.resource),
        (
            "apps",
            "deployments" | "replicasets" | "statefulsets" | "daemonsets"
        ) | ("batch", _)
            | ("policy", "poddisruptionbudgets")
            | ("", "resourcequotas" | "replicationcontrollers")
    )
}

fn obj_mut(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// `obj[key]`, created as `{}` if missing.
fn child<'a>(v: &'a mut Value, key: &str) -> &'a mut Value {
    let m = obj_mut(v);
    let e = m.entry(key.to_string()).or_insert_with(|| json!({}));
    if e.is_null() {
        *e = json!({});
    }
    e
}

fn default(v: &mut Value, key: &str, val: Value) {
    let m = obj_mut(v);
    match m.get(key) {
        None | Some(Value::Null) => {
            m.insert(key.to_string(), val);
        }
        _ => {}
    }
}

/// kube's image pull policy default: `Always` for `:latest` or no tag, else `IfNotPresent`.
pub fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

fn default_probe(p: &mut Value) {
    default(p, "timeoutSeconds", json!(1));
    default(p, "periodSeconds", json!(10));
    default(p, "successThreshold", json!(1));
    default(p, "failureThreshold", json!(3));
    if let Some(h) = p.get_mut("httpGet") {
        default(h, "path", json!("/"));
        default(h, "scheme", json!("HTTP"));
    }
}

fn default_container(c: &mut Value) {
    let image = c
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    default(c, "imagePullPolicy", json!(default_pull_policy(&image)));
    default(c, "terminationMessagePath", json!("/dev/termination-log"));
    default(c, "terminationMessagePolicy", json!("File"));
    default(c, "resources", json!({}));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            default(p, "protocol", json!("TCP"));
        }
    }
    if let Some(env) = c.get_mut("env").and_then(Value::as_array_mut) {
        for e in env {
            if let Some(fr) = e.pointer_mut("/valueFrom/fieldRef") {
                default(fr, "apiVersion", json!("v1"));
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe) {
            default_probe(p);
        }
    }
}

/// `SetDefaults_PodSpec` and friends (what a pod template gets too).
pub fn default_pod_spec(spec: &mut Value) {
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "securityContext", json!({}));
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                default_container(c);
            }
        }
    }
    if let Some(vols) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        for v in vols {
            for src in ["configMap", "secret"] {
                if let Some(s) = v.get_mut(src) {
                    default(s, "defaultMode", json!(420));
                }
            }
            if let Some(p) = v.get_mut("projected") {
                default(p, "defaultMode", json!(420));
            }
            if let Some(h) = v.get_mut("hostPath") {
                default(h, "type", json!(""));
            }
        }
    }
}

/// Pod defaults that kube applies through admission plugins on Pods only
/// (ServiceAccount, Priority, DefaultTolerationSeconds) plus `enableServiceLinks`.
fn default_pod_admission(spec: &mut Value) {
    default(spec, "serviceAccountName", json!("default"));
    let sa = spec
        .get("serviceAccountName")
        .cloned()
        .unwrap_or(json!("default"));
    default(spec, "serviceAccount", sa);
    default(spec, "enableServiceLinks", json!(true));
    default(spec, "priority", json!(0));
    default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    let tol = obj_mut(spec)
        .entry("tolerations")
        .or_insert_with(|| json!([]));
    if let Some(list) = tol.as_array_mut() {
        for key in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        ] {
            if !list
                .iter()
                .any(|t| t.get("key").and_then(Value::as_str) == Some(key))
            {
                list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
    }
}

/// Where service-account credentials are mounted in every container.
pub const SERVICE_ACCOUNT_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Adds the `kube-api-access-<suffix>` projected volume (token, `ca.crt`
/// from `kube-root-ca.crt`, namespace) and mounts it read-only into every
/// container, as kube's ServiceAccount admission plugin does. Nothing
/// happens when a container already mounts something at that path.
pub fn mount_service_account_token(pod: &mut Value, suffix: &str) {
    let lists = ["initContainers", "containers"];
    let already = lists.iter().any(|l| {
        pod.pointer(&format!("/spec/{l}"))
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.get("volumeMounts")
                        .and_then(Value::as_array)
                        .is_some_and(|ms| {
                            ms.iter().any(|m| {
                                m.get("mountPath").and_then(Value::as_str)
                                    == Some(SERVICE_ACCOUNT_MOUNT)
                            })
                        })
                })
            })
    });
    if already {
        return;
    }
    let name = format!("kube-api-access-{suffix}");
    let spec = child(pod, "spec");
    let volume = json!({"name": name, "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}});
    let vols = obj_mut(spec).entry("volumes").or_insert_with(|| json!([]));
    if let Some(v) = vols.as_array_mut() {
        v.push(volume);
    }
    for l in lists {
        if let Some(cs) = spec.get_mut(l).and_then(Value::as_array_mut) {
            for c in cs {
                let mounts = obj_mut(c)
                    .entry("volumeMounts")
                    .or_insert_with(|| json!([]));
                if let Some(m) = mounts.as_array_mut() {
                    m.push(
                        json!({"name": name, "readOnly": true, "mountPath": SERVICE_ACCOUNT_MOUNT}),
                    );
                }
            }
        }
    }
}

/// The QoS class of a pod spec (BestEffort / Burstable / Guaranteed).
pub fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        if req.is_some_and(|r| !r.is_empty()) || lim.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let l = lim.and_then(|l| l.get(res));
            let r = req.and_then(|r| r.get(res)).or(l);
            if l.is_none() || r != l {
                guaranteed = false;
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

/// Applies the resource's defaults in place (called on create and update).
pub fn apply_defaults(info: &ResourceInfo, obj: &mut Value) {
    match (info.group, info.resource) {
        ("", "persistentvolumes") => {
            let spec = child(obj, "spec");
            default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
            default(spec, "volumeMode", json!("Filesystem"));
        }
        ("", "persistentvolumeclaims") => {
            default(child(obj, "spec"), "volumeMode", json!("Filesystem"));
        }
        ("storage.k8s.io", "storageclasses") => {
            default(obj, "reclaimPolicy", json!("Delete"));
            default(obj, "volumeBindingMode", json!("Immediate"));
        }
        ("", "pods") => {
            let spec = child(obj, "spec");
            default_pod_spec(spec);
            default_pod_admission(spec);
        }
        ("apps", "deployments") => {
            let spec = child(obj, "spec");
            default(spec, "replicas", json!(1));
            default(spec, "strategy", json!({"type": "RollingUpdate"}));
            let strategy = child(spec, "strategy");
            default(strategy, "type", json!("RollingUpdate"));
            if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                let ru = child(strategy, "rollingUpdate");
                default(ru, "maxUnavailable", json!("25%"));
                default(ru, "maxSurge", json!("25%"));
            }
            default(spec, "revisionHistoryLimit", json!(10));
            default(spec, "progressDeadlineSeconds", json!(600));
            default_pod_spec(child(child(spec, "template"), "spec"));
        }
        ("apps", "replicasets") => {
            let spec = child(obj, "spec");
            default(spec, "replicas", json!(1));
            default_pod_spec(child(child(spec, "template"), "spec"));
        }
        ("", "replicationcontrollers") => {
            // kube's RC defaults: selector and labels from the template's labels.
            let tmpl_labels = obj
                .pointer("/spec/template/metadata/labels")
                .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
                .cloned();
            if let Some(l) = &tmpl_labels {
                let meta = child(obj, "metadata");
                if meta
                    .get("labels")
                    .and_then(Value::as_object)
                    .is_none_or(Map::is_empty)
                {
                    meta["labels"] = l.clone();
                }
            }
            let spec = child(obj, "spec");
            if let Some(l) = tmpl_labels {
                if spec
                    .get("selector")
                    .and_then(Value::as_object)
                    .is_none_or(Map::is_empty)
                {
                    spec["selector"] = l;
                }
            }
            default(spec, "replicas", json!(1));
            default_pod_spec(child(child(spec, "template"), "spec"));
        }
        ("", "services") => {
            let spec = child(obj, "spec");
            default(spec, "type", json!("ClusterIP"));
            let ty = spec
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP")
                .to_string();
            if ty != "ExternalName" {
                default(spec, "sessionAffinity", json!("None"));
                default(spec, "internalTrafficPolicy", json!("Cluster"));
            }
            if ty == "NodePort" || ty == "LoadBalancer" {
                default(spec, "externalTrafficPolicy", json!("Cluster"));
            }
            if ty == "LoadBalancer" {
                default(spec, "allocateLoadBalancerNodePorts", json!(true));
            }
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports {
                    default(p, "protocol", json!("TCP"));
                    if let Some(port) = p.get("port").cloned() {
                        default(p, "targetPort", port);
                    }
                }
            }
        }
        ("", "namespaces") => {
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let labels = child(child(obj, "metadata"), "labels");
            obj_mut(labels).insert("kubernetes.io/metadata.name".into(), json!(name));
        }
        ("", "secrets") => {
            default(obj, "type", json!("Opaque"));
            // stringData is write-only: merged into data (base64) and dropped.
            if let Some(Value::Object(sd)) = obj_mut(obj).remove("stringData") {
                use base64::Engine;
                let data = child(obj, "data");
                for (k, v) in sd {
                    let raw = v.as_str().unwrap_or_default();
                    obj_mut(data).insert(
                        k,
                        json!(base64::engine::general_purpose::STANDARD.encode(raw)),
                    );
                }
            }
        }
        ("apps", "statefulsets") => {
            let spec = child(obj, "spec");
            default(spec, "replicas", json!(1));
            default(spec, "podManagementPolicy", json!("OrderedReady"));
            default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
            default(spec, "revisionHistoryLimit", json!(10));
            default(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            default_pod_spec(child(child(spec, "template"), "spec"));
        }
        ("apps", "daemonsets") => {
            let spec = child(obj, "spec");
            default(spec, "updateStrategy", json!({"type": "RollingUpdate"}));
            let us = child(spec, "updateStrategy");
            if us.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                let ru = child(us, "rollingUpdate");
                default(ru, "maxUnavailable", json!(1));
                default(ru, "maxSurge", json!(0));
            }
            default(spec, "revisionHistoryLimit", json!(10));
            default_pod_spec(child(child(spec, "template"), "spec"));
        }
        ("batch", "jobs") => default_job_spec(child(obj, "spec")),
        ("batch", "cronjobs") => {
            let spec = child(obj, "spec");
            default(spec, "concurrencyPolicy", json!("Allow"));
            default(spec, "suspend", json!(false));
            default(spec, "successfulJobsHistoryLimit", json!(3));
            default(spec, "failedJobsHistoryLimit", json!(1));
            default_job_spec(child(child(spec, "jobTemplate"), "spec"));
        }
        ("scheduling.k8s.io", "priorityclasses") => {
            default(obj, "preemptionPolicy", json!("PreemptLowerPriority"));
        }
        ("", "serviceaccounts") | ("", "configmaps") | ("", "endpoints") => {}
        _ => {}
    }
}

fn default_job_spec(spec: &mut Value) {
    let unset = |k: &str| spec.get(k).is_none_or(Value::is_null);
    // SetDefaults_Job: with neither completions nor parallelism, both are 1
    if unset("completions") && unset("parallelism") {
        spec["completions"] = json!(1);
    }
    default(spec, "parallelism", json!(1));
    default(spec, "backoffLimit", json!(6));
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    default_pod_spec(child(child(spec, "template"), "spec"));
}

/// kube's Job `generateSelector`: unless `spec.manualSelector`, the
/// selector is the job's uid and the template gets the matching labels.
fn generate_job_selector(job: &mut Value) {
    let uid = job
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let name = job
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let spec = child(job, "spec");
    if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let labels = child(child(child(spec, "template"), "metadata"), "labels");
    let l = obj_mut(labels);
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        l.entry(k.to_string()).or_insert_with(|| json!(v));
    }
    spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
}

/// `PrepareForCreate`: status reset for kinds whose status the server owns.
pub fn prepare_for_create(info: &ResourceInfo, obj: &mut Value) {
    let m = obj_mut(obj);
    match (info.group, info.resource) {
        ("", "persistentvolumes") | ("", "persistentvolumeclaims") => {
            m.insert("status".into(), json!({"phase": "Pending"}));
        }
        _ if server_owned_status(info) => {
            m.insert("status".into(), json!({}));
            if info.group == "batch" && info.resource == "jobs" {
                generate_job_selector(obj);
            }
        }
        ("", "pods") => {
            let spec = m.get("spec").cloned().unwrap_or_default();
            let mut status = json!({"phase": "Pending", "qosClass": qos_class(&spec)});
            // The scheduler binds through pods/binding; a pod created with a
            // nodeName is already bound.
            if let Some(old) = m.get("status") {
                if let Some(ni) = old.get("nominatedNodeName") {
                    status["nominatedNodeName"] = ni.clone();
                }
            }
            m.insert("status".into(), status);
        }
        ("", "services") => {
            m.insert("status".into(), json!({"loadBalancer": {}}));
        }
        ("", "namespaces") => {
            m.insert("status".into(), json!({"phase": "Active"}));
            let spec = child(obj, "spec");
            default(spec, "finalizers", json!(["kubernetes"]));
        }
        _ => {}
    }
    if tracks_generation(info) {
        let meta = child(obj, "metadata");
        obj_mut(meta).insert("generation".into(), json!(1));
    }
}

fn spec_part(v: &Value) -> Value {
    let mut c = v.clone();
    if let Some(m) = c.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    c
}

/// `PrepareForUpdate` of the main resource: keep status when the status
/// lives in a subresource, bump generation when the spec changed.
pub fn prepare_for_update(info: &ResourceInfo, new: &mut Value, old: &Value) {
    if has_status_subresource(info) {
        let m = obj_mut(new);
        match old.get("status") {
            Some(s) => {
                m.insert("status".into(), s.clone());
            }
            None => {
                m.remove("status");
            }
        }
    }
    if info.resource == "namespaces" {
        // spec.finalizers changes only through /finalize
        if let Some(f) = old.pointer("/spec/finalizers") {
            child(new, "spec")["finalizers"] = f.clone();
        }
    }
    bump_generation(info, new, old);
}

/// `PrepareForUpdate` of the status subresource: only status may change.
/// Returns the object to store: `old` with the new status.
pub fn prepare_for_status_update(new: &Value, old: &Value) -> Value {
    let mut out = old.clone();
    let m = obj_mut(&mut out);
    match new.get("status") {
        Some(s) => {
            m.insert("status".into(), s.clone());
        }
        None => {
            m.remove("status");
        }
    }
    // like kube's ResetObjectMetaForStatus: labels, annotations, finalizers
    // and owner references stay as stored
    out
}

fn bump_generation(info: &ResourceInfo, new: &mut Value, old: &Value) {
    if !tracks_generation(info) {
        return;
    }
    let old_gen = old
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let changed = spec_part(new) != spec_part(old)
        || new.pointer("/metadata/deletionTimestamp").is_some()
            && old.pointer("/metadata/deletionTimestamp").is_none();
    let gen = if changed { old_gen + 1 } else { old_gen };
    let meta = child(new, "metadata");
    obj_mut(meta).insert("generation".into(), json!(gen));
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// Validates labels and annotations of `metadata`.
fn validate_meta(obj: &Value, causes: &mut Vec<Cause>) {
    if let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            for e in validate_qualified_name(k) {
                causes.push(Cause::invalid("metadata.labels", &json!(k), &e));
            }
            match v.as_str() {
                Some(s) => {
                    for e in validate_label_value(s) {
                        causes.push(Cause::invalid(format!("metadata.labels: {k}"), v, &e));
                    }
                }
                None => causes.push(Cause::invalid(
                    format!("metadata.labels.{k}"),
                    v,
                    "label values must be strings",
                )),
            }
        }
    }
    if let Some(ann) = obj
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        for k in ann.keys() {
            for e in validate_qualified_name(k) {
                causes.push(Cause::invalid("metadata.annotations", &json!(k), &e));
            }
        }
    }
}

fn validate_containers(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    let containers = spec.get("containers").and_then(Value::as_array);
    match containers {
        None => causes.push(Cause::required(format!("{path}.containers"), "")),
        Some(cs) if cs.is_empty() => causes.push(Cause::required(format!("{path}.containers"), "")),
        Some(_) => {}
    }
    let mut seen = std::collections::HashSet::new();
    for list in ["initContainers", "containers"] {
        for (i, c) in spec
            .get(list)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            let p = format!("{path}.{list}[{i}]");
            let name = str_at(c, "/name");
            if name.is_empty() {
                causes.push(Cause::required(format!("{p}.name"), ""));
            } else {
                for e in validate_name(name, NameRule::Label) {
                    causes.push(Cause::invalid(format!("{p}.name"), &json!(name), &e));
                }
                if !seen.insert(name.to_string()) {
                    causes.push(Cause::duplicate(format!("{p}.name"), &json!(name)));
                }
            }
            if str_at(c, "/image").trim().is_empty() {
                causes.push(Cause::required(format!("{p}.image"), ""));
            }
            if let Some(ports) = c.get("ports").and_then(Value::as_array) {
                for (j, port) in ports.iter().enumerate() {
                    let cp = port
                        .get("containerPort")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    if !(1..=65535).contains(&cp) {
                        causes.push(Cause::invalid(
                            format!("{p}.ports[{j}].containerPort"),
                            &json!(cp),
                            "must be between 1 and 65535, inclusive",
                        ));
                    }
                    let proto = str_at(port, "/protocol");
                    if !proto.is_empty() && !["TCP", "UDP", "SCTP"].contains(&proto) {
                        causes.push(Cause::not_supported(
                            format!("{p}.ports[{j}].protocol"),
                            &json!(proto),
                            &["SCTP", "TCP", "UDP"],
                        ));
                    }
                }
            }
            let policy = str_at(c, "/imagePullPolicy");
            if !policy.is_empty() && !["Always", "IfNotPresent", "Never"].contains(&policy) {
                causes.push(Cause::not_supported(
                    format!("{p}.imagePullPolicy"),
                    &json!(policy),
                    &["Always", "IfNotPresent", "Never"],
                ));
            }
        }
    }
    let rp = str_at(spec, "/restartPolicy");
    if !rp.is_empty() && !["Always", "OnFailure", "Never"].contains(&rp) {
        causes.push(Cause::not_supported(
            format!("{path}.restartPolicy"),
            &json!(rp),
            &["Always", "OnFailure", "Never"],
        ));
    }
}

fn validate_workload(obj: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    let selector = obj.pointer("/spec/selector");
    let sel_empty = selector
        .map(|s| {
            s.get("matchLabels")
                .and_then(Value::as_object)
                .is_none_or(Map::is_empty)
                && s.get("matchExpressions")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty)
        })
        .unwrap_or(true);
    if sel_empty {
        causes.push(Cause::required("spec.selector", ""));
    } else if let Some(sel) = selector {
        let tmpl_labels = obj
            .pointer("/spec/template/metadata/labels")
            .cloned()
            .unwrap_or(json!({}));
        let labels = labels_of(&json!({"metadata": {"labels": tmpl_labels}}));
        if !LabelSelector::from_json(sel).matches(&labels) {
            causes.push(Cause::invalid(
                "spec.template.metadata.labels",
                &tmpl_labels,
                "`selector` does not match template `labels`",
            ));
        }
    }
    if let Some(r) = obj.pointer("/spec/replicas").and_then(Value::as_i64) {
        if r < 0 {
            causes.push(Cause::invalid(
                "spec.replicas",
                &json!(r),
                "must be greater than or equal to 0",
            ));
        }
    }
    match obj.pointer("/spec/template/spec") {
        Some(spec) => validate_containers(spec, "spec.template.spec", causes),
        None => causes.push(Cause::required("spec.template.spec.containers", "")),
    }
    if let Some(old) = old {
        if old.pointer("/spec/selector") != obj.pointer("/spec/selector") {
            causes.push(Cause::invalid(
                "spec.selector",
                obj.pointer("/spec/selector").unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
    }
}

fn validate_service(obj: &Value, causes: &mut Vec<Cause>) {
    let ty = str_at(obj, "/spec/type");
    let types = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
    if !types.contains(&ty) {
        causes.push(Cause::not_supported("spec.type", &json!(ty), &types));
        return;
    }
    let ports = obj
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let headless = str_at(obj, "/spec/clusterIP") == "None";
    if ports.is_empty() && ty != "ExternalName" && !headless {
        causes.push(Cause::required("spec.ports", ""));
    }
    if ty == "ExternalName" && str_at(obj, "/spec/externalName").is_empty() {
        causes.push(Cause::required("spec.externalName", ""));
    }
    let mut names = std::collections::HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            causes.push(Cause::invalid(
                format!("spec.ports[{i}].port"),
                &json!(port),
                "must be between 1 and 65535, inclusive",
            ));
        }
        let name = str_at(p, "/name");
        if ports.len() > 1 && name.is_empty() {
            causes.push(Cause::required(format!("spec.ports[{i}].name"), ""));
        }
        if !name.is_empty() && !names.insert(name.to_string()) {
            causes.push(Cause::duplicate(
                format!("spec.ports[{i}].name"),
                &json!(name),
            ));
        }
        let proto = str_at(p, "/protocol");
        if !["TCP", "UDP", "SCTP"].contains(&proto) {
            causes.push(Cause::not_supported(
                format!("spec.ports[{i}].protocol"),
                &json!(proto),
                &["SCTP", "TCP", "UDP"],
            ));
        }
        if p.get("nodePort")
            .and_then(Value::as_i64)
            .is_some_and(|n| n != 0)
            && ty != "NodePort"
            && ty != "LoadBalancer"
        {
            causes.push(Cause::forbidden(
                format!("spec.ports[{i}].nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            ));
        }
    }
}

/// Validates an object for create (`old` = None) or update.
pub fn validate(info: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    validate_meta(obj, &mut causes);
    match (info.group, info.resource) {
        ("apiregistration.k8s.io", "apiservices") => {
            causes.extend(crate::aggregator::validate_apiservice(obj));
        }
        ("", "pods") => {
            match obj.get("spec") {
                Some(spec) => validate_containers(spec, "spec", &mut causes),
                None => causes.push(Cause::required("spec.containers", "")),
            }
            if let Some(old) = old {
                // Pod spec is immutable except images and a few fields.
                let strip = |v: &Value| {
                    let mut s = v.get("spec").cloned().unwrap_or_default();
                    for list in ["containers", "initContainers"] {
                        if let Some(cs) = s.get_mut(list).and_then(Value::as_array_mut) {
                            for c in cs {
                                if let Some(m) = c.as_object_mut() {
                                    m.remove("image");
                                }
                            }
                        }
                    }
                    if let Some(m) = s.as_object_mut() {
                        for f in [
                            "activeDeadlineSeconds",
                            "tolerations",
                            "terminationGracePeriodSeconds",
                            "schedulingGates",
                        ] {
                            m.remove(f);
                        }
                    }
                    s
                };
                if strip(obj) != strip(old) {
                    causes.push(Cause::forbidden("spec", "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"));
                }
            }
        }
        ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets") => {
            validate_workload(obj, old, &mut causes)
        }
        ("", "replicationcontrollers") => {
            // An RC's selector is a plain label map (and may change): check it as `matchLabels`.
            let mut view = obj.clone();
            if let Some(sel) = obj.pointer("/spec/selector").cloned() {
                view["spec"]["selector"] = json!({ "matchLabels": sel });
            }
            validate_workload(&view, None, &mut causes)
        }
        ("batch", "jobs") => {
            validate_workload(obj, old, &mut causes);
            let rp = str_at(obj, "/spec/template/spec/restartPolicy");
            if rp != "OnFailure" && rp != "Never" {
                causes.push(Cause::not_supported(
                    "spec.template.spec.restartPolicy",
                    &json!(rp),
                    &["OnFailure", "Never"],
                ));
            }
        }
        ("batch", "cronjobs") => {
            if str_at(obj, "/spec/schedule").trim().is_empty() {
                causes.push(Cause::required("spec.schedule", ""));
            }
            match obj.pointer("/spec/jobTemplate/spec/template/spec") {
                Some(spec) => {
                    validate_containers(spec, "spec.jobTemplate.spec.template.spec", &mut causes)
                }
                None => causes.push(Cause::required(
                    "spec.jobTemplate.spec.template.spec.containers",
                    "",
                )),
            }
        }
        ("", "services") => validate_service(obj, &mut causes),
        ("", "configmaps") | ("", "secrets") => {
            if info.resource == "secrets" {
                use base64::Engine;
                if let Some(d) = obj.get("data").and_then(Value::as_object) {
                    for (k, v) in d {
                        let ok = v.as_str().is_some_and(|s| {
                            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
                        });
                        if !ok {
                            causes.push(Cause::invalid(
                                format!("data[{k}]"),
                                &json!("<secret contents redacted>"),
                                "secret data values must be base64-encoded strings (use stringData for plain text)",
                            ));
                        }
                    }
                }
            }
            for field in ["data", "binaryData"] {
                if let Some(d) = obj.get(field).and_then(Value::as_object) {
                    for k in d.keys() {
                        let ok = !k.is_empty()
                            && k.len() <= 253
                            && k.chars()
                                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                        if !ok {
                            causes.push(Cause::invalid(
                                format!("{field}[{k}]"),
                                &json!(k),
                                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                            ));
                        }
                    }
                }
            }
        }
        _ => {}
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use minik_apimachinery::resources::find;

    #[test]
    fn pull_policy_defaults() {
        assert_eq!(default_pull_policy("nginx"), "Always");
        assert_eq!(default_pull_policy("nginx:latest"), "Always");
        assert_eq!(default_pull_policy("nginx:1.27"), "IfNotPresent");
        assert_eq!(default_pull_policy("localhost:5000/app"), "Always");
        assert_eq!(default_pull_policy("localhost:5000/app:v1"), "IfNotPresent");
        assert_eq!(default_pull_policy("nginx@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn pod_defaults_and_status() {
        let info = find("", "v1", "pods").unwrap();
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "minik/hello", "ports": [{"containerPort": 80}]}]}});
        apply_defaults(info, &mut pod);
        prepare_for_create(info, &mut pod);
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
        assert_eq!(pod["spec"]["dnsPolicy"], "ClusterFirst");
        assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 30);
        assert_eq!(pod["spec"]["schedulerName"], "default-scheduler");
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
        assert_eq!(pod["spec"]["enableServiceLinks"], true);
        assert_eq!(pod["spec"]["priority"], 0);
        let c = &pod["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(pod["status"]["phase"], "Pending");
        assert_eq!(pod["status"]["qosClass"], "BestEffort");
        assert!(validate(info, &pod, None).is_empty());
    }

    #[test]
    fn service_account_credentials_are_mounted_once() {
        let mut pod = json!({"spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "a"}, {"name": "b", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}});
        mount_service_account_token(&mut pod, "abcde");
        let vols = pod["spec"]["volumes"].as_array().unwrap();
        assert_eq!(vols.len(), 1);
        assert_eq!(vols[0]["name"], "kube-api-access-abcde");
        assert_eq!(
            vols[0]["projected"]["sources"][0]["serviceAccountToken"]["path"],
            "token"
        );
        assert_eq!(
            vols[0]["projected"]["sources"][1]["configMap"]["name"],
            "kube-root-ca.crt"
        );
        for c in ["initContainers", "containers"] {
            for ctr in pod["spec"][c].as_array().unwrap() {
                let m = ctr["volumeMounts"]
                    .as_array()
                    .unwrap()
                    .last()
                    .unwrap()
                    .clone();
                assert_eq!(
                    m,
                    json!({"name": "kube-api-access-abcde", "readOnly": true, "mountPath": SERVICE_ACCOUNT_MOUNT})
                );
            }
        }
        assert_eq!(
            pod["spec"]["containers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let before = pod.clone();
        mount_service_account_token(&mut pod, "zzzzz");
        assert_eq!(
            pod, before,
            "an existing mount at the path means: leave the pod alone"
        );
    }

    #[test]
    fn qos_classes() {
        let g = json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(qos_class(&g), "Guaranteed");
        let b = json!({"containers": [{"resources": {"requests": {"cpu": "1"}}}]});
        assert_eq!(qos_class(&b), "Burstable");
        assert_eq!(qos_class(&json!({"containers": [{}]})), "BestEffort");
    }

    #[test]
    fn deployment_defaults_and_validation() {
        let info = find("apps", "v1", "deployments").unwrap();
        let mut d = json!({"metadata": {"name": "hello"}, "spec": {"selector": {"matchLabels": {"app": "hello"}},
            "template": {"metadata": {"labels": {"app": "hello"}}, "spec": {"containers": [{"name": "hello", "image": "minik/hello:1"}]}}},
            "status": {"replicas": 9}});
        apply_defaults(info, &mut d);
        prepare_for_create(info, &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(d["status"], json!({}));
        assert_eq!(d["metadata"]["generation"], 1);
        assert!(validate(info, &d, None).is_empty());

        let mut bad = d.clone();
        bad["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
        let causes = validate(info, &bad, None);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.template.metadata.labels");
        assert_eq!(causes[0].render(), "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`");

        let mut no_image = d.clone();
        no_image["spec"]["template"]["spec"]["containers"][0]["image"] = json!("");
        assert_eq!(
            validate(info, &no_image, None)[0].render(),
            "spec.template.spec.containers[0].image: Required value"
        );
    }

    #[test]
    fn update_keeps_status_and_bumps_generation() {
        let info = find("apps", "v1", "deployments").unwrap();
        let old = json!({"metadata": {"name": "d", "generation": 3}, "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let mut same =
            json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}, "status": {"replicas": 7}});
        prepare_for_update(info, &mut same, &old);
        assert_eq!(same["status"]["replicas"], 1);
        assert_eq!(same["metadata"]["generation"], 3);
        let mut changed = json!({"metadata": {"name": "d"}, "spec": {"replicas": 2}});
        prepare_for_update(info, &mut changed, &old);
        assert_eq!(changed["metadata"]["generation"], 4);
        let st = prepare_for_status_update(
            &json!({"spec": {"replicas": 5}, "status": {"replicas": 2}}),
            &old,
        );
        assert_eq!(st["spec"]["replicas"], 1);
        assert_eq!(st["status"]["replicas"], 2);
    }

    #[test]
    fn jobs_get_a_generated_selector() {
        let info = find("batch", "v1", "jobs").unwrap();
        let mut j = json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}}}});
        apply_defaults(info, &mut j);
        prepare_for_create(info, &mut j);
        assert_eq!(
            j["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
        );
        assert_eq!(
            j["spec"]["template"]["metadata"]["labels"]["job-name"],
            "pi"
        );
        assert_eq!(j["spec"]["completions"], 1);
        assert_eq!(j["spec"]["backoffLimit"], 6);
        assert!(
            validate(info, &j, None).is_empty(),
            "{:?}",
            validate(info, &j, None)
        );
        let mut always = j.clone();
        always["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        assert_eq!(
            validate(info, &always, None)[0].field,
            "spec.template.spec.restartPolicy"
        );
        let cr = find("apps", "v1", "controllerrevisions").unwrap();
        let mut rev = json!({"metadata": {"name": "r"}, "revision": 1});
        prepare_for_create(cr, &mut rev);
        assert!(rev.get("status").is_none());
    }

    #[test]
    fn service_defaults_and_validation() {
        let info = find("", "v1", "services").unwrap();
        let mut s = json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}], "selector": {"app": "web"}}});
        apply_defaults(info, &mut s);
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(s["spec"]["sessionAffinity"], "None");
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(s["spec"]["ports"][0]["protocol"], "TCP");
        assert!(validate(info, &s, None).is_empty());
        let mut two =
            json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}, {"port": 81}]}});
        apply_defaults(info, &mut two);
        assert_eq!(
            validate(info, &two, None)[0].render(),
            "spec.ports[0].name: Required value"
        );
        let mut none = json!({"metadata": {"name": "web"}, "spec": {}});
        apply_defaults(info, &mut none);
        assert_eq!(
            validate(info, &none, None)[0].render(),
            "spec.ports: Required value"
        );
    }

    #[test]
    fn namespace_and_secret_defaults() {
        let info = find("", "v1", "namespaces").unwrap();
        let mut ns = json!({"metadata": {"name": "team"}});
        apply_defaults(info, &mut ns);
        prepare_for_create(info, &mut ns);
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "team"
        );
        let info = find("", "v1", "secrets").unwrap();
        let mut sec = json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}});
        apply_defaults(info, &mut sec);
        assert_eq!(sec["type"], "Opaque");
        assert_eq!(sec["data"]["k"], "dg==");
        assert!(sec.get("stringData").is_none());
        assert!(validate(info, &sec, None).is_empty());
        sec["data"]["bad"] = json!("not base64!");
        assert_eq!(validate(info, &sec, None)[0].field, "data[bad]");
    }
}

/// ServiceAccount admission, second half: a pod that names no
/// `imagePullSecrets` gets its service account's (the kubelet pulls with them).
pub fn inherit_image_pull_secrets(pod: &mut Value, sa: Option<&Value>) {
    let Some(secrets) = sa
        .and_then(|sa| sa.get("imagePullSecrets"))
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    else {
        return;
    };
    let has_own = pod
        .pointer("/spec/imagePullSecrets")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if has_own {
        return;
    }
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("imagePullSecrets".into(), Value::Array(secrets.clone()));
    }
}

#[cfg(test)]
mod image_pull_secret_tests {
    use super::inherit_image_pull_secrets;
    use serde_json::json;

    #[test]
    fn a_pod_without_pull_secrets_gets_its_service_accounts() {
        let sa = json!({"imagePullSecrets": [{"name": "regcred"}]});
        let mut pod = json!({"spec": {"containers": []}});
        inherit_image_pull_secrets(&mut pod, Some(&sa));
        assert_eq!(
            pod["spec"]["imagePullSecrets"],
            json!([{"name": "regcred"}])
        );
        // the pod's own list wins
        let mut own = json!({"spec": {"imagePullSecrets": [{"name": "mine"}]}});
        inherit_image_pull_secrets(&mut own, Some(&sa));
        assert_eq!(own["spec"]["imagePullSecrets"], json!([{"name": "mine"}]));
        // no service account, or one without secrets: unchanged
        let mut none = json!({"spec": {}});
        inherit_image_pull_secrets(&mut none, None);
        inherit_image_pull_secrets(&mut none, Some(&json!({"imagePullSecrets": []})));
        assert!(none["spec"].get("imagePullSecrets").is_none());
    }
}
