//! Server-side printing: the `meta.k8s.io/v1` `Table` kubectl asks for with
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`. Columns and cell
//! formatting follow kube's `pkg/printers/internalversion/printers.go`
//! (cells are printed by kubectl verbatim, so the server formats ages and
//! statuses). Everything here is pure and unit-tested; `now` is a parameter.

use crate::request::Include;
use crate::selector::LabelSelector;
use chrono::{DateTime, Utc};
use minik_apimachinery::ResourceInfo;
use serde_json::{json, Map, Value};

/// kube's `duration.HumanDuration`: 5s, 3m2s, 15m, 4h, 5h30m, 2d, 3d4h, 2y.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{}h", hours / 24, h)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{}d", hours / 24 / 365, dy)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// `translateTimestampSince`: `<unknown>` for a missing timestamp.
pub fn since(ts: Option<&Value>, now: DateTime<Utc>) -> String {
    match ts
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
    {
        Some(t) => human_duration((now - t.with_timezone(&Utc)).num_seconds()),
        None => "<unknown>".into(),
    }
}

fn col(name: &str, ty: &str, priority: i32, description: &str) -> Value {
    let mut c = json!({"name": name, "type": ty, "format": "", "description": description, "priority": priority});
    if name == "Name" {
        c["format"] = json!("name");
    }
    c
}

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.";

fn name_col() -> Value {
    col("Name", "string", 0, NAME_DESC)
}
fn age_col() -> Value {
    col("Age", "string", 0, AGE_DESC)
}

/// The column definitions for a resource.
pub fn columns(info: &ResourceInfo) -> Vec<Value> {
    match (info.group, info.resource) {
        ("", "pods") => vec![
            name_col(),
            col("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
            col("Status", "string", 0, "The aggregate status of the containers in this pod."),
            col("Restarts", "string", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            age_col(),
            col("IP", "string", 1, "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
            col("Node", "string", 1, "NodeName indicates in which node this pod is scheduled."),
            col("Nominated Node", "string", 1, "nominatedNodeName is set only when this pod preempts other pods on the node."),
            col("Readiness Gates", "string", 1, "If specified, all readiness gates will be evaluated for pod readiness."),
        ],
        ("apps", "deployments") => vec![
            name_col(),
            col("Ready", "string", 0, "Number of the pod with ready state"),
            col("Up-to-date", "integer", 0, "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
            col("Available", "integer", 0, "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
            age_col(),
            col("Containers", "string", 1, "Names of each container in the template."),
            col("Images", "string", 1, "Images referenced by each container in the template."),
            col("Selector", "string", 1, "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment."),
        ],
        ("", "replicationcontrollers") => vec![
            name_col(),
            col("Desired", "integer", 0, "Replicas is the number of desired replicas."),
            col("Current", "integer", 0, "Replicas is the most recently observed number of replicas."),
            col("Ready", "integer", 0, "The number of ready replicas for this replication controller."),
            age_col(),
            col("Containers", "string", 1, "Names of each container in the template."),
            col("Images", "string", 1, "Images referenced by each container in the template."),
            col("Selector", "string", 1, "Selector is a label query over pods that should match the Replicas count."),
        ],
        ("apps", "replicasets") => vec![
            name_col(),
            col("Desired", "integer", 0, "Replicas is the number of desired replicas."),
            col("Current", "integer", 0, "Replicas is the most recently observed number of replicas."),
            col("Ready", "integer", 0, "The number of ready replicas for this replica set."),
            age_col(),
            col("Containers", "string", 1, "Names of each container in the template."),
            col("Images", "string", 1, "Images referenced by each container in the template."),
            col("Selector", "string", 1, "Selector is a label query over pods that should match the replica count."),
        ],
        ("", "services") => vec![
            name_col(),
            col("Type", "string", 0, "type determines how the Service is exposed."),
            col("Cluster-IP", "string", 0, "clusterIP is the IP address of the service and is usually assigned randomly."),
            col("External-IP", "string", 0, "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
            col("Port(s)", "string", 0, "The list of ports that are exposed by this service."),
            age_col(),
            col("Selector", "string", 1, "Route service traffic to pods with label keys and values matching this selector."),
        ],
        ("", "nodes") => vec![
            name_col(),
            col("Status", "string", 0, "The status of the node"),
            col("Roles", "string", 0, "The roles of the node"),
            age_col(),
            col("Version", "string", 0, "Kubelet Version reported by the node."),
            col("Internal-IP", "string", 1, "List of addresses reachable to the node."),
            col("External-IP", "string", 1, "List of addresses reachable to the node."),
            col("OS-Image", "string", 1, "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
            col("Kernel-Version", "string", 1, "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
            col("Container-Runtime", "string", 1, "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
        ],
        ("", "namespaces") => vec![
            name_col(),
            col("Status", "string", 0, "The status of the namespace"),
            age_col(),
        ],
        ("", "endpoints") => vec![
            name_col(),
            col("Endpoints", "string", 0, "Endpoints of the resource."),
            age_col(),
        ],
        ("", "configmaps") => vec![name_col(), col("Data", "integer", 0, "Number of data entries."), age_col()],
        ("", "secrets") => vec![
            name_col(),
            col("Type", "string", 0, "The type of the secret"),
            col("Data", "integer", 0, "Number of data entries."),
            age_col(),
        ],
        ("", "serviceaccounts") => vec![
            name_col(),
            col("Secrets", "integer", 0, "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."),
            age_col(),
        ],
        ("", "events") | ("events.k8s.io", "events") => vec![
            col("Last Seen", "string", 0, "The time at which the most recent occurrence of this event was recorded."),
            col("Type", "string", 0, "Type of this event (Normal, Warning), new types could be added in the future"),
            col("Reason", "string", 0, "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
            col("Object", "string", 0, "The object that this event is about."),
            col("Subobject", "string", 1, "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement."),
            col("Source", "string", 1, "The component reporting this event."),
            col("Message", "string", 0, "A human-readable description of the status of this operation."),
            col("First Seen", "string", 1, "The time at which the event was first recorded."),
            col("Count", "string", 1, "The number of times this event has occurred."),
            json!({"name": "Name", "type": "string", "format": "name", "description": NAME_DESC, "priority": 1}),
        ],
        ("discovery.k8s.io", "endpointslices") => vec![
            name_col(),
            col("AddressType", "string", 0, "The IP protocol family of the addresses in this EndpointSlice."),
            col("Ports", "string", 0, "The ports of this EndpointSlice."),
            col("Endpoints", "string", 0, "The endpoints of this EndpointSlice."),
            age_col(),
        ],
        ("coordination.k8s.io", "leases") => vec![
            name_col(),
            col("Holder", "string", 0, "The holder of the lease."),
            age_col(),
        ],
        ("apps", "statefulsets") => vec![
            name_col(),
            col("Ready", "string", 0, "Number of the pod with ready state"),
            age_col(),
            col("Containers", "string", 1, "Names of each container in the template."),
            col("Images", "string", 1, "Images referenced by each container in the template."),
        ],
        ("apps", "daemonsets") => vec![
            name_col(),
            col("Desired", "integer", 0, "The total number of nodes that should be running the daemon pod."),
            col("Current", "integer", 0, "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
            col("Ready", "integer", 0, "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition."),
            col("Up-to-date", "integer", 0, "The total number of nodes that are running updated daemon pod"),
            col("Available", "integer", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
            col("Node Selector", "string", 0, "NodeSelector is a selector which must be true for the pod to fit on a node."),
            age_col(),
            col("Containers", "string", 1, "Names of each container in the template."),
            col("Images", "string", 1, "Images referenced by each container in the template."),
            col("Selector", "string", 1, "A label query over pods that are managed by the daemon set."),
        ],
        ("apps", "controllerrevisions") => vec![
            name_col(),
            col("Controller", "string", 0, "Controller of the object"),
            col("Revision", "integer", 0, "Revision indicates the revision of the state represented by Data."),
            age_col(),
        ],
        ("batch", "jobs") => vec![
            name_col(),
            col("Status", "string", 0, "Status of the job."),
            col("Completions", "string", 0, "The completion status of the job."),
            col("Duration", "string", 0, "Time required to complete the job."),
            age_col(),
            col("Containers", "string", 1, "Names of each container in the template."),
            col("Images", "string", 1, "Images referenced by each container in the template."),
            col("Selector", "string", 1, "A label query over pods that should match the pod count."),
        ],
        ("batch", "cronjobs") => vec![
            name_col(),
            col("Schedule", "string", 0, "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
            col("Timezone", "string", 0, "The time zone name for the given schedule."),
            col("Suspend", "boolean", 0, "This flag tells the controller to suspend subsequent executions."),
            col("Active", "integer", 0, "A list of pointers to currently running jobs."),
            col("Last Schedule", "string", 0, "Information when was the last time the job was successfully scheduled."),
            age_col(),
            col("Containers", "string", 1, "Names of each container in the template."),
            col("Images", "string", 1, "Images referenced by each container in the template."),
            col("Selector", "string", 1, "A label query over pods that should match the pod count."),
        ],
        ("rbac.authorization.k8s.io", "roles") | ("rbac.authorization.k8s.io", "clusterroles") => vec![
            name_col(),
            col("Created At", "date", 0, AGE_DESC),
        ],
        ("rbac.authorization.k8s.io", "rolebindings") | ("rbac.authorization.k8s.io", "clusterrolebindings") => vec![
            name_col(),
            col("Role", "string", 0, "RoleRef references the Role or ClusterRole this binding grants."),
            age_col(),
            col("Users", "string", 1, "Users in the binding"),
            col("Groups", "string", 1, "Groups in the binding"),
            col("ServiceAccounts", "string", 1, "ServiceAccounts in the binding"),
        ],
        ("policy", "poddisruptionbudgets") => vec![
            name_col(),
            col("Min Available", "string", 0, "The minimum number of pods that must be available simultaneously"),
            col("Max Unavailable", "string", 0, "The maximum number of pods that may be unavailable simultaneously"),
            col("Allowed Disruptions", "integer", 0, "Calculated number of pods that may be disrupted at this time"),
            age_col(),
        ],
        ("networking.k8s.io", "ingresses") => vec![
            name_col(),
            col("Class", "string", 0, "The name of the IngressClass resource that should be used for ingress"),
            col("Hosts", "string", 0, "Hosts that incoming requests are matched against before the ingress rule"),
            col("Address", "string", 0, "Address is a list containing ingress points for the load-balancer"),
            col("Ports", "string", 0, "Ports of TLS configurations that open"),
            age_col(),
        ],
        ("scheduling.k8s.io", "priorityclasses") => vec![
            name_col(),
            col("Value", "integer", 0, "The value of this priority class."),
            col("Global-Default", "boolean", 0, "globalDefault specifies whether this PriorityClass should be considered as the default priority."),
            age_col(),
            col("Preemption Policy", "string", 1, "preemptionPolicy is the Policy for preempting pods with lower priority."),
        ],
        ("autoscaling", "horizontalpodautoscalers") => vec![
            name_col(),
            col("Reference", "string", 0, "reference to the target resource"),
            col("Targets", "string", 0, "the target metrics and their current values"),
            col("MinPods", "string", 0, "minimum number of replicas the autoscaler may scale down to"),
            col("MaxPods", "integer", 0, "maximum number of replicas the autoscaler may scale up to"),
            col("Replicas", "integer", 0, "current number of replicas of the target"),
            age_col(),
        ],
        ("", "limitranges") | ("apiextensions.k8s.io", "customresourcedefinitions") => vec![
            name_col(),
            col("Created At", "date", 0, AGE_DESC),
        ],
        ("networking.k8s.io", "ingressclasses") => vec![
            name_col(),
            col("Controller", "string", 0, "Controller that is responsible for handling this class"),
            col("Parameters", "string", 0, "A reference to a resource with additional parameters"),
            age_col(),
        ],
        ("networking.k8s.io", "networkpolicies") => vec![
            name_col(),
            col("Pod-Selector", "string", 0, "Select pods this policy applies to"),
            age_col(),
        ],
        ("apiregistration.k8s.io", "apiservices") => vec![
            name_col(),
            col("Service", "string", 0, "The reference to the service that hosts this API endpoint."),
            col("Available", "string", 0, "Whether this service is available."),
            age_col(),
        ],
        ("", "resourcequotas") => vec![
            name_col(),
            age_col(),
            col("Request", "string", 0, "Request represents a minimum amount of cpu/memory that a container may consume."),
            col("Limit", "string", 0, "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
        ],
        ("", "persistentvolumes") => vec![
            name_col(),
            col("Capacity", "string", 0, "capacity is the description of the persistent volume's resources and capacity."),
            col("Access Modes", "string", 0, "accessModes contains all ways the volume can be mounted."),
            col("Reclaim Policy", "string", 0, "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim."),
            col("Status", "string", 0, "phase indicates if a volume is available, bound to a claim, or released by a claim."),
            col("Claim", "string", 0, "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
            col("StorageClass", "string", 0, "StorageClass of the pv"),
            col("VolumeAttributesClass", "string", 0, "VolumeAttributesClass of the pv"),
            col("Reason", "string", 0, "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
            age_col(),
            col("VolumeMode", "string", 1, "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state."),
        ],
        ("", "persistentvolumeclaims") => vec![
            name_col(),
            col("Status", "string", 0, "phase represents the current phase of PersistentVolumeClaim."),
            col("Volume", "string", 0, "volumeName is the binding reference to the PersistentVolume backing this claim."),
            col("Capacity", "string", 0, "capacity represents the actual resources of the underlying volume."),
            col("Access Modes", "string", 0, "accessModes contains the actual access modes the volume backing the PVC has."),
            col("StorageClass", "string", 0, "StorageClass of the pvc"),
            col("VolumeAttributesClass", "string", 0, "VolumeAttributesClass of the pvc"),
            age_col(),
            col("VolumeMode", "string", 1, "volumeMode defines what type of volume is required by the claim."),
        ],
        ("storage.k8s.io", "storageclasses") => vec![
            name_col(),
            col("Provisioner", "string", 0, "provisioner indicates the type of the provisioner."),
            col("ReclaimPolicy", "string", 0, "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete."),
            col("VolumeBindingMode", "string", 0, "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound. When unset, VolumeBindingImmediate is used."),
            col("AllowVolumeExpansion", "string", 0, "allowVolumeExpansion shows whether the storage class allow volume expand."),
            age_col(),
        ],
        _ => vec![name_col(), age_col()],
    }
}

fn s<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}
fn i(obj: &Value, ptr: &str) -> i64 {
    obj.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}
fn arr<'a>(obj: &'a Value, ptr: &str) -> &'a [Value] {
    obj.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}
fn or_none(v: &str) -> String {
    if v.is_empty() {
        "<none>".into()
    } else {
        v.to_string()
    }
}

fn is_restartable_init(c: Option<&Value>) -> bool {
    c.map(|c| s(c, "/restartPolicy") == "Always")
        .unwrap_or(false)
}

fn later(a: &str, b: &str) -> bool {
    match (
        DateTime::parse_from_rfc3339(a),
        DateTime::parse_from_rfc3339(b),
    ) {
        (Ok(a), Ok(b)) => a > b,
        (Ok(_), Err(_)) => true,
        _ => false,
    }
}

/// The pod STATUS column (kubectl's `printPod` reason logic).
pub fn pod_cells(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let containers = arr(pod, "/spec/containers");
    let init_specs = arr(pod, "/spec/initContainers");
    let mut total = containers.len();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut restartable_init_restarts = 0i64;
    let mut last_restart = String::new();
    let mut last_restartable_init_restart = String::new();
    let phase = s(pod, "/status/phase");
    let mut reason = phase.to_string();
    if !s(pod, "/status/reason").is_empty() {
        reason = s(pod, "/status/reason").to_string();
    }
    let conditions = arr(pod, "/status/conditions");
    for c in conditions {
        if s(c, "/type") == "PodScheduled" && s(c, "/reason") == "SchedulingGated" {
            reason = "SchedulingGated".into();
        }
    }
    for c in init_specs {
        if s(c, "/restartPolicy") == "Always" {
            total += 1;
        }
    }
    let init_by_name = |n: &str| init_specs.iter().find(|c| s(c, "/name") == n);

    let mut initializing = false;
    for (idx, st) in arr(pod, "/status/initContainerStatuses").iter().enumerate() {
        restarts += i(st, "/restartCount");
        let fin = s(st, "/lastState/terminated/finishedAt");
        if st.pointer("/lastState/terminated").is_some() && later(fin, &last_restart) {
            last_restart = fin.to_string();
        }
        let restartable = is_restartable_init(init_by_name(s(st, "/name")));
        if restartable {
            restartable_init_restarts += i(st, "/restartCount");
            if st.pointer("/lastState/terminated").is_some()
                && later(fin, &last_restartable_init_restart)
            {
                last_restartable_init_restart = fin.to_string();
            }
        }
        let terminated = st.pointer("/state/terminated");
        let waiting_reason = s(st, "/state/waiting/reason");
        if terminated.is_some() && i(st, "/state/terminated/exitCode") == 0 {
            continue;
        } else if restartable && st.get("started").and_then(Value::as_bool) == Some(true) {
            if st.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        } else if terminated.is_some() {
            let r = s(st, "/state/terminated/reason");
            reason = if r.is_empty() {
                let sig = i(st, "/state/terminated/signal");
                if sig != 0 {
                    format!("Init:Signal:{sig}")
                } else {
                    format!("Init:ExitCode:{}", i(st, "/state/terminated/exitCode"))
                }
            } else {
                format!("Init:{r}")
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{}/{}", idx, init_specs.len());
        }
        initializing = true;
        break;
    }

    let initialized = conditions
        .iter()
        .any(|c| s(c, "/type") == "Initialized" && s(c, "/status") == "True");
    if !initializing || initialized {
        restarts = restartable_init_restarts;
        last_restart = last_restartable_init_restart;
        let mut has_running = false;
        for st in arr(pod, "/status/containerStatuses").iter().rev() {
            restarts += i(st, "/restartCount");
            let fin = s(st, "/lastState/terminated/finishedAt");
            if st.pointer("/lastState/terminated").is_some() && later(fin, &last_restart) {
                last_restart = fin.to_string();
            }
            let waiting_reason = s(st, "/state/waiting/reason");
            let terminated = st.pointer("/state/terminated");
            let term_reason = s(st, "/state/terminated/reason");
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if terminated.is_some() && !term_reason.is_empty() {
                reason = term_reason.to_string();
            } else if terminated.is_some() {
                let sig = i(st, "/state/terminated/signal");
                reason = if sig != 0 {
                    format!("Signal:{sig}")
                } else {
                    format!("ExitCode:{}", i(st, "/state/terminated/exitCode"))
                };
            } else if st.get("ready").and_then(Value::as_bool) == Some(true)
                && st.pointer("/state/running").is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = conditions
                .iter()
                .any(|c| s(c, "/type") == "Ready" && s(c, "/status") == "True");
            reason = if pod_ready {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    let deleting = pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null());
    if deleting && s(pod, "/status/reason") == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }

    let restarts_str = if restarts != 0 && !last_restart.is_empty() {
        format!(
            "{} ({} ago)",
            restarts,
            since(Some(&Value::String(last_restart)), now)
        )
    } else {
        restarts.to_string()
    };

    let pod_ip = arr(pod, "/status/podIPs")
        .first()
        .map(|p| s(p, "/ip").to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| s(pod, "/status/podIP").to_string());
    let gates = arr(pod, "/spec/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let true_count = gates
            .iter()
            .filter(|g| {
                let t = s(g, "/conditionType");
                conditions
                    .iter()
                    .find(|c| s(c, "/type") == t)
                    .is_some_and(|c| s(c, "/status") == "True")
            })
            .count();
        format!("{}/{}", true_count, gates.len())
    };
    vec![
        json!(s(pod, "/metadata/name")),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_str),
        json!(since(pod.pointer("/metadata/creationTimestamp"), now)),
        json!(or_none(&pod_ip)),
        json!(or_none(s(pod, "/spec/nodeName"))),
        json!(or_none(s(pod, "/status/nominatedNodeName"))),
        json!(readiness_gates),
    ]
}

fn template_containers(obj: &Value) -> (String, String) {
    let cs = arr(obj, "/spec/template/spec/containers");
    let names: Vec<&str> = cs.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| s(c, "/image")).collect();
    (names.join(","), images.join(","))
}

fn selector_string(obj: &Value) -> String {
    match obj.pointer("/spec/selector") {
        Some(sel) => {
            let s = LabelSelector::from_json(sel).to_string();
            if s.is_empty() {
                "<none>".into()
            } else {
                s
            }
        }
        None => "<none>".into(),
    }
}

/// `labels.FormatLabels`: sorted `k=v,k2=v2`, `<none>` when empty.
fn format_map(obj: Option<&Value>) -> String {
    let mut pairs: Vec<String> = obj
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{}={}", k, v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    if pairs.is_empty() {
        "<none>".into()
    } else {
        pairs.join(",")
    }
}

fn service_external_ip(svc: &Value) -> String {
    let external: Vec<&str> = arr(svc, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match s(svc, "/spec/type") {
        "ClusterIP" | "NodePort" | "" => {
            if external.is_empty() {
                "<none>".into()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            let mut ips: Vec<String> = arr(svc, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| {
                    if s(i, "/ip").is_empty() {
                        s(i, "/hostname").to_string()
                    } else {
                        s(i, "/ip").to_string()
                    }
                })
                .filter(|s| !s.is_empty())
                .collect();
            ips.extend(external.iter().map(|s| s.to_string()));
            if ips.is_empty() {
                "<pending>".into()
            } else {
                ips.join(",")
            }
        }
        "ExternalName" => s(svc, "/spec/externalName").to_string(),
        _ => "<unknown>".into(),
    }
}

fn service_ports(svc: &Value) -> String {
    let pieces: Vec<String> = arr(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let proto = if s(p, "/protocol").is_empty() {
                "TCP"
            } else {
                s(p, "/protocol")
            };
            let np = i(p, "/nodePort");
            if np > 0 {
                format!("{}:{}/{}", i(p, "/port"), np, proto)
            } else {
                format!("{}/{}", i(p, "/port"), proto)
            }
        })
        .collect();
    if pieces.is_empty() {
        "<none>".into()
    } else {
        pieces.join(",")
    }
}

fn node_cells(node: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut status: Vec<String> = Vec::new();
    if let Some(c) = arr(node, "/status/conditions")
        .iter()
        .find(|c| s(c, "/type") == "Ready")
    {
        status.push(if s(c, "/status") == "True" {
            "Ready".into()
        } else {
            "NotReady".into()
        });
    }
    if status.is_empty() {
        status.push("Unknown".into());
    }
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled".into());
    }
    let mut roles: Vec<String> = Vec::new();
    if let Some(labels) = node.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(r) = k.strip_prefix("node-role.kubernetes.io/") {
                if !r.is_empty() {
                    roles.push(r.to_string());
                }
            } else if k == "kubernetes.io/role" {
                if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                    roles.push(v.to_string());
                }
            }
        }
    }
    roles.sort();
    roles.dedup();
    let addr = |t: &str| {
        arr(node, "/status/addresses")
            .iter()
            .find(|a| s(a, "/type") == t)
            .map(|a| s(a, "/address").to_string())
            .unwrap_or_else(|| "<none>".into())
    };
    let unknown = |p: &str| {
        let v = s(node, p);
        if v.is_empty() {
            "<unknown>".to_string()
        } else {
            v.to_string()
        }
    };
    vec![
        json!(s(node, "/metadata/name")),
        json!(status.join(",")),
        json!(if roles.is_empty() {
            "<none>".to_string()
        } else {
            roles.join(",")
        }),
        json!(since(node.pointer("/metadata/creationTimestamp"), now)),
        json!(s(node, "/status/nodeInfo/kubeletVersion")),
        json!(addr("InternalIP")),
        json!(addr("ExternalIP")),
        json!(unknown("/status/nodeInfo/osImage")),
        json!(unknown("/status/nodeInfo/kernelVersion")),
        json!(unknown("/status/nodeInfo/containerRuntimeVersion")),
    ]
}

fn format_endpoints(ep: &Value) -> String {
    let subsets = arr(ep, "/subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    let max = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for ss in subsets {
        let addrs = arr(ss, "/addresses");
        let ports = arr(ss, "/ports");
        if ports.is_empty() {
            count += addrs.len();
            for a in addrs {
                if list.len() == max {
                    more = true;
                    break;
                }
                list.push(s(a, "/ip").to_string());
            }
            continue;
        }
        for p in ports {
            count += addrs.len();
            for a in addrs {
                if list.len() == max {
                    more = true;
                    break;
                }
                let ip = s(a, "/ip");
                let port = i(p, "/port");
                list.push(if ip.contains(':') {
                    format!("[{ip}]:{port}")
                } else {
                    format!("{ip}:{port}")
                });
            }
        }
    }
    let ret = list.join(",");
    if more {
        format!("{} + {} more...", ret, count - max)
    } else {
        ret
    }
}

fn list_with_more(list: Vec<String>, more: bool, count: usize, max: usize) -> String {
    let ret = list.join(",");
    if more {
        return format!("{} + {} more...", ret, count - max);
    }
    if ret.is_empty() {
        "<unset>".into()
    } else {
        ret
    }
}

fn endpointslice_cells(es: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let max = 3;
    let (mut list, mut more, mut count) = (Vec::new(), false, 0);
    for p in arr(es, "/ports") {
        if list.len() < max {
            let n = if let Some(port) = p.get("port").and_then(Value::as_i64) {
                port.to_string()
            } else if let Some(name) = p.get("name").and_then(Value::as_str) {
                name.to_string()
            } else {
                "*".to_string()
            };
            list.push(n);
        } else if list.len() == max {
            more = true;
        }
        count += 1;
    }
    let ports = list_with_more(list, more, count, max);
    let (mut list, mut more, mut count) = (Vec::new(), false, 0);
    for e in arr(es, "/endpoints") {
        for a in arr(e, "/addresses") {
            if list.len() < max {
                list.push(a.as_str().unwrap_or_default().to_string());
            } else if list.len() == max {
                more = true;
            }
            count += 1;
        }
    }
    let endpoints = list_with_more(list, more, count, max);
    vec![
        json!(s(es, "/metadata/name")),
        json!(s(es, "/addressType")),
        json!(ports),
        json!(endpoints),
        json!(since(es.pointer("/metadata/creationTimestamp"), now)),
    ]
}

fn event_cells(ev: &Value, now: DateTime<Utc>, new_api: bool) -> Vec<Value> {
    // events.k8s.io/v1 renames the core fields; read either form.
    let (first_p, last_p, involved, msg_p, src_comp, src_host) = if new_api {
        (
            "/deprecatedFirstTimestamp",
            "/deprecatedLastTimestamp",
            "/regarding",
            "/note",
            "/deprecatedSource/component",
            "/deprecatedSource/host",
        )
    } else {
        (
            "/firstTimestamp",
            "/lastTimestamp",
            "/involvedObject",
            "/message",
            "/source/component",
            "/source/host",
        )
    };
    let present = |p: &str| {
        ev.pointer(p)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    let mut first = since(ev.pointer(first_p), now);
    if !present(first_p) {
        first = since(ev.pointer("/eventTime"), now);
    }
    let mut last = since(ev.pointer(last_p), now);
    if !present(last_p) {
        last = first.clone();
    }
    let count_p = if new_api {
        "/deprecatedCount"
    } else {
        "/count"
    };
    let mut count = i(ev, count_p);
    if ev.get("series").is_some_and(|v| !v.is_null()) {
        last = since(ev.pointer("/series/lastObservedTime"), now);
        count = i(ev, "/series/count");
    } else if count == 0 {
        count = 1;
    }
    let kind = s(ev, &format!("{involved}/kind")).to_lowercase();
    let name = s(ev, &format!("{involved}/name"));
    let target = if name.is_empty() {
        kind
    } else {
        format!("{kind}/{name}")
    };
    let component = if present(src_comp) {
        s(ev, src_comp)
    } else {
        s(ev, "/reportingController")
    };
    let host = if present(src_host) {
        s(ev, src_host)
    } else {
        s(ev, "/reportingInstance")
    };
    let source = if component.is_empty() {
        String::new()
    } else if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    };
    vec![
        json!(last),
        json!(s(ev, "/type")),
        json!(s(ev, "/reason")),
        json!(target),
        json!(s(ev, &format!("{involved}/fieldPath"))),
        json!(source),
        json!(s(ev, msg_p).trim()),
        json!(first),
        json!(count),
        json!(s(ev, "/metadata/name")),
    ]
}

/// kube's `GetAccessModesAsString`: RWO, ROX, RWX, RWOP in that order.
fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(m, _)| has(m))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// A storage quantity as kube prints it (`0` when absent).
fn storage_quantity(v: Option<&Value>) -> String {
    v.map(quantity).unwrap_or_else(|| "0".into())
}

/// PV/PVC phase, `Terminating` while being deleted.
fn storage_phase(obj: &Value) -> String {
    if obj
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        "Terminating".into()
    } else {
        s(obj, "/status/phase").to_string()
    }
}

/// An optional string field, `<unset>` when absent.
fn unset(v: &str, raw: Option<&Value>) -> String {
    match raw {
        Some(Value::String(_)) => v.to_string(),
        _ => "<unset>".into(),
    }
}

fn quantity(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn job_cells(job: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (c, im) = template_containers(job);
    let succeeded = i(job, "/status/succeeded");
    let completions = match job.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(n) => format!("{succeeded}/{n}"),
        None => {
            let parallelism = job
                .pointer("/spec/parallelism")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if parallelism > 1 {
                format!("{succeeded}/1 of {parallelism}")
            } else {
                format!("{succeeded}/1")
            }
        }
    };
    let start = s(job, "/status/startTime");
    let done = s(job, "/status/completionTime");
    let duration = match (
        DateTime::parse_from_rfc3339(start),
        DateTime::parse_from_rfc3339(done),
    ) {
        (Err(_), _) => String::new(),
        (Ok(st), Err(_)) => human_duration((now - st.with_timezone(&Utc)).num_seconds()),
        (Ok(st), Ok(d)) => human_duration((d - st).num_seconds()),
    };
    let cond = |t: &str| {
        arr(job, "/status/conditions")
            .iter()
            .any(|c| s(c, "/type") == t && s(c, "/status") == "True")
    };
    let status = if cond("Failed") {
        "Failed"
    } else if cond("Complete") {
        "Complete"
    } else if cond("Suspended") {
        "Suspended"
    } else if cond("FailureTarget") {
        "FailureTarget"
    } else if cond("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else if job
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        "Terminating"
    } else {
        "Running"
    };
    vec![
        json!(s(job, "/metadata/name")),
        json!(status),
        json!(completions),
        json!(duration),
        json!(since(job.pointer("/metadata/creationTimestamp"), now)),
        json!(c),
        json!(im),
        json!(selector_string(job)),
    ]
}

/// The cells of one row.
pub fn cells(info: &ResourceInfo, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let name = json!(s(obj, "/metadata/name"));
    let age = json!(since(obj.pointer("/metadata/creationTimestamp"), now));
    match (info.group, info.resource) {
        ("", "pods") => pod_cells(obj, now),
        ("apps", "deployments") => {
            let (c, im) = template_containers(obj);
            let desired = obj
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            vec![
                name,
                json!(format!("{}/{}", i(obj, "/status/readyReplicas"), desired)),
                json!(i(obj, "/status/updatedReplicas")),
                json!(i(obj, "/status/availableReplicas")),
                age,
                json!(c),
                json!(im),
                json!(selector_string(obj)),
            ]
        }
        ("", "replicationcontrollers") => {
            // Same columns as a ReplicaSet; the selector is a plain label map.
            let (c, im) = template_containers(obj);
            vec![
                name,
                json!(obj
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)),
                json!(i(obj, "/status/replicas")),
                json!(i(obj, "/status/readyReplicas")),
                age,
                json!(c),
                json!(im),
                json!(format_map(obj.pointer("/spec/selector"))),
            ]
        }
        ("apps", "replicasets") => {
            let (c, im) = template_containers(obj);
            vec![
                name,
                json!(obj
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)),
                json!(i(obj, "/status/replicas")),
                json!(i(obj, "/status/readyReplicas")),
                age,
                json!(c),
                json!(im),
                json!(selector_string(obj)),
            ]
        }
        ("", "services") => {
            let cluster_ip = arr(obj, "/spec/clusterIPs")
                .first()
                .and_then(Value::as_str)
                .map(String::from)
                .unwrap_or_else(|| or_none(s(obj, "/spec/clusterIP")));
            vec![
                name,
                json!(s(obj, "/spec/type")),
                json!(cluster_ip),
                json!(service_external_ip(obj)),
                json!(service_ports(obj)),
                age,
                json!(format_map(obj.pointer("/spec/selector"))),
            ]
        }
        ("", "nodes") => node_cells(obj, now),
        ("", "namespaces") => vec![name, json!(s(obj, "/status/phase")), age],
        ("", "endpoints") => vec![name, json!(format_endpoints(obj)), age],
        ("", "configmaps") => {
            let n = obj
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, Map::len)
                + obj
                    .get("binaryData")
                    .and_then(Value::as_object)
                    .map_or(0, Map::len);
            vec![name, json!(n), age]
        }
        ("", "secrets") => {
            let n = obj
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, Map::len);
            vec![name, json!(s(obj, "/type")), json!(n), age]
        }
        ("", "serviceaccounts") => vec![name, json!(arr(obj, "/secrets").len()), age],
        ("", "events") => event_cells(obj, now, false),
        ("events.k8s.io", "events") => event_cells(obj, now, true),
        ("discovery.k8s.io", "endpointslices") => endpointslice_cells(obj, now),
        ("coordination.k8s.io", "leases") => vec![name, json!(s(obj, "/spec/holderIdentity")), age],
        ("apps", "statefulsets") => {
            let (c, im) = template_containers(obj);
            let desired = obj
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            vec![
                name,
                json!(format!("{}/{}", i(obj, "/status/readyReplicas"), desired)),
                age,
                json!(c),
                json!(im),
            ]
        }
        ("apps", "daemonsets") => {
            let (c, im) = template_containers(obj);
            vec![
                name,
                json!(i(obj, "/status/desiredNumberScheduled")),
                json!(i(obj, "/status/currentNumberScheduled")),
                json!(i(obj, "/status/numberReady")),
                json!(i(obj, "/status/updatedNumberScheduled")),
                json!(i(obj, "/status/numberAvailable")),
                json!(format_map(obj.pointer("/spec/template/spec/nodeSelector"))),
                age,
                json!(c),
                json!(im),
                json!(selector_string(obj)),
            ]
        }
        ("apps", "controllerrevisions") => {
            let controller = arr(obj, "/metadata/ownerReferences")
                .iter()
                .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
                .map(|o| {
                    let av = s(o, "/apiVersion");
                    let group = av.split_once('/').map(|(g, _)| g).unwrap_or("");
                    let kind = s(o, "/kind").to_lowercase();
                    let kind = if group.is_empty() {
                        kind
                    } else {
                        format!("{kind}.{group}")
                    };
                    format!("{kind}/{}", s(o, "/name"))
                })
                .unwrap_or_else(|| "<none>".into());
            vec![name, json!(controller), json!(i(obj, "/revision")), age]
        }
        ("batch", "jobs") => job_cells(obj, now),
        ("batch", "cronjobs") => {
            let cs = arr(obj, "/spec/jobTemplate/spec/template/spec/containers");
            let names: Vec<&str> = cs.iter().map(|c| s(c, "/name")).collect();
            let images: Vec<&str> = cs.iter().map(|c| s(c, "/image")).collect();
            let last = if obj
                .pointer("/status/lastScheduleTime")
                .and_then(Value::as_str)
                .is_some()
            {
                since(obj.pointer("/status/lastScheduleTime"), now)
            } else {
                "<none>".into()
            };
            let sel = obj
                .pointer("/spec/jobTemplate/spec/selector")
                .map(|sel| LabelSelector::from_json(sel).to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "<none>".into());
            vec![
                name,
                json!(s(obj, "/spec/schedule")),
                json!(or_none(s(obj, "/spec/timeZone"))),
                // kube's printBoolPtr: "True"/"False"/"<unset>" as text
                json!(
                    match obj.pointer("/spec/suspend").and_then(Value::as_bool) {
                        Some(true) => "True",
                        Some(false) => "False",
                        None => "<unset>",
                    }
                ),
                json!(arr(obj, "/status/active").len()),
                json!(last),
                age,
                json!(names.join(",")),
                json!(images.join(",")),
                json!(sel),
            ]
        }
        ("rbac.authorization.k8s.io", "roles") | ("rbac.authorization.k8s.io", "clusterroles") => {
            vec![name, json!(s(obj, "/metadata/creationTimestamp"))]
        }
        ("rbac.authorization.k8s.io", "rolebindings")
        | ("rbac.authorization.k8s.io", "clusterrolebindings") => {
            let subjects = arr(obj, "/subjects");
            let of = |kind: &str| -> String {
                subjects
                    .iter()
                    .filter(|x| s(x, "/kind") == kind)
                    .map(|x| {
                        if kind == "ServiceAccount" {
                            format!("{}/{}", s(x, "/namespace"), s(x, "/name"))
                        } else {
                            s(x, "/name").to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    s(obj, "/roleRef/kind"),
                    s(obj, "/roleRef/name")
                )),
                age,
                json!(of("User")),
                json!(of("Group")),
                json!(of("ServiceAccount")),
            ]
        }
        ("policy", "poddisruptionbudgets") => {
            let show = |p: &str| match obj.pointer(p) {
                Some(Value::String(v)) => v.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => "N/A".into(),
            };
            vec![
                name,
                json!(show("/spec/minAvailable")),
                json!(show("/spec/maxUnavailable")),
                json!(i(obj, "/status/disruptionsAllowed")),
                age,
            ]
        }
        ("networking.k8s.io", "ingresses") => {
            let hosts: Vec<String> = arr(obj, "/spec/rules")
                .iter()
                .map(|r| {
                    if s(r, "/host").is_empty() {
                        "*".to_string()
                    } else {
                        s(r, "/host").to_string()
                    }
                })
                .collect();
            let hosts = if hosts.is_empty() {
                "*".to_string()
            } else if hosts.len() > 3 {
                format!("{} + {} more...", hosts[..3].join(","), hosts.len() - 3)
            } else {
                hosts.join(",")
            };
            let addrs: Vec<String> = arr(obj, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| {
                    if s(i, "/ip").is_empty() {
                        s(i, "/hostname").to_string()
                    } else {
                        s(i, "/ip").to_string()
                    }
                })
                .collect();
            let ports = if arr(obj, "/spec/tls").is_empty() {
                "80"
            } else {
                "80, 443"
            };
            let class = obj
                .pointer("/spec/ingressClassName")
                .and_then(Value::as_str)
                .unwrap_or("<none>");
            vec![
                name,
                json!(class),
                json!(hosts),
                json!(addrs.join(",")),
                json!(ports),
                age,
            ]
        }
        ("scheduling.k8s.io", "priorityclasses") => vec![
            name,
            json!(i(obj, "/value")),
            json!(obj
                .get("globalDefault")
                .and_then(Value::as_bool)
                .unwrap_or(false)),
            age,
            json!(s(obj, "/preemptionPolicy")),
        ],
        ("autoscaling", "horizontalpodautoscalers") => {
            let reference = format!(
                "{}/{}",
                s(obj, "/spec/scaleTargetRef/kind"),
                s(obj, "/spec/scaleTargetRef/name")
            );
            let min = match obj.pointer("/spec/minReplicas").and_then(Value::as_i64) {
                Some(m) => m.to_string(),
                None => "<unset>".into(),
            };
            vec![
                name,
                json!(reference),
                json!(hpa_targets(obj)),
                json!(min),
                json!(i(obj, "/spec/maxReplicas")),
                json!(i(obj, "/status/currentReplicas")),
                age,
            ]
        }
        ("", "limitranges") | ("apiextensions.k8s.io", "customresourcedefinitions") => {
            vec![name, json!(s(obj, "/metadata/creationTimestamp"))]
        }
        ("networking.k8s.io", "ingressclasses") => {
            let params = match obj.pointer("/spec/parameters") {
                Some(p) if p.is_object() => {
                    let mut kind = s(p, "/kind").to_string();
                    if !s(p, "/apiGroup").is_empty() {
                        kind = format!("{kind}.{}", s(p, "/apiGroup"));
                    }
                    format!("{kind}/{}", s(p, "/name"))
                }
                _ => "<none>".into(),
            };
            vec![name, json!(s(obj, "/spec/controller")), json!(params), age]
        }
        ("networking.k8s.io", "networkpolicies") => {
            let sel = obj
                .pointer("/spec/podSelector")
                .map(|p| LabelSelector::from_json(p).to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "<none>".into());
            vec![name, json!(sel), age]
        }
        ("apiregistration.k8s.io", "apiservices") => {
            let service = match obj.pointer("/spec/service") {
                Some(svc) if svc.is_object() => {
                    format!("{}/{}", s(svc, "/namespace"), s(svc, "/name"))
                }
                _ => "Local".into(),
            };
            let available = arr(obj, "/status/conditions")
                .iter()
                .find(|c| s(c, "/type") == "Available")
                .map(|c| {
                    let st = s(c, "/status");
                    let reason = s(c, "/reason");
                    if st != "True" && !reason.is_empty() {
                        format!("{st} ({reason})")
                    } else {
                        st.to_string()
                    }
                })
                .unwrap_or_else(|| "Unknown".into());
            vec![name, json!(service), json!(available), age]
        }
        ("", "resourcequotas") => {
            let hard = obj
                .pointer("/status/hard")
                .or_else(|| obj.pointer("/spec/hard"))
                .and_then(Value::as_object);
            let used = obj.pointer("/status/used").and_then(Value::as_object);
            let (mut req, mut lim) = (Vec::new(), Vec::new());
            if let Some(hard) = hard {
                let mut keys: Vec<&String> = hard.keys().collect();
                keys.sort();
                for k in keys {
                    let h = hard.get(k).map(quantity).unwrap_or_default();
                    let u = used
                        .and_then(|u| u.get(k))
                        .map(quantity)
                        .unwrap_or_else(|| "0".into());
                    let item = format!("{k}: {u}/{h}");
                    if k.starts_with("limits.") {
                        lim.push(item);
                    } else {
                        req.push(item);
                    }
                }
            }
            vec![name, age, json!(req.join(", ")), json!(lim.join(", "))]
        }
        ("", "persistentvolumes") => {
            let claim = match obj.pointer("/spec/claimRef") {
                Some(r) if r.is_object() => {
                    format!("{}/{}", s(r, "/namespace"), s(r, "/name"))
                }
                _ => String::new(),
            };
            let beta = s(
                obj,
                "/metadata/annotations/volume.beta.kubernetes.io~1storage-class",
            );
            let class = if beta.is_empty() {
                s(obj, "/spec/storageClassName")
            } else {
                beta
            };
            vec![
                name,
                json!(storage_quantity(obj.pointer("/spec/capacity/storage"))),
                json!(access_modes(arr(obj, "/spec/accessModes"))),
                json!(s(obj, "/spec/persistentVolumeReclaimPolicy")),
                json!(storage_phase(obj)),
                json!(claim),
                json!(class),
                json!(unset(
                    s(obj, "/spec/volumeAttributesClassName"),
                    obj.pointer("/spec/volumeAttributesClassName")
                )),
                json!(s(obj, "/status/reason")),
                age,
                json!(unset(
                    s(obj, "/spec/volumeMode"),
                    obj.pointer("/spec/volumeMode")
                )),
            ]
        }
        ("", "persistentvolumeclaims") => {
            let volume = s(obj, "/spec/volumeName");
            let (capacity, modes) = if volume.is_empty() {
                (String::new(), String::new())
            } else {
                (
                    storage_quantity(obj.pointer("/status/capacity/storage")),
                    access_modes(arr(obj, "/status/accessModes")),
                )
            };
            let beta = s(
                obj,
                "/metadata/annotations/volume.beta.kubernetes.io~1storage-class",
            );
            let class = if beta.is_empty() {
                s(obj, "/spec/storageClassName")
            } else {
                beta
            };
            vec![
                name,
                json!(storage_phase(obj)),
                json!(volume),
                json!(capacity),
                json!(modes),
                json!(class),
                json!(unset(
                    s(obj, "/spec/volumeAttributesClassName"),
                    obj.pointer("/spec/volumeAttributesClassName")
                )),
                age,
                json!(unset(
                    s(obj, "/spec/volumeMode"),
                    obj.pointer("/spec/volumeMode")
                )),
            ]
        }
        ("storage.k8s.io", "storageclasses") => {
            let default = [
                "storageclass.kubernetes.io~1is-default-class",
                "storageclass.beta.kubernetes.io~1is-default-class",
            ]
            .iter()
            .any(|k| s(obj, &format!("/metadata/annotations/{k}")) == "true");
            let mut shown = s(obj, "/metadata/name").to_string();
            if default {
                shown.push_str(" (default)");
            }
            let or = |v: &str, d: &str| {
                if v.is_empty() {
                    d.to_string()
                } else {
                    v.to_string()
                }
            };
            vec![
                json!(shown),
                json!(s(obj, "/provisioner")),
                json!(or(s(obj, "/reclaimPolicy"), "Delete")),
                json!(or(s(obj, "/volumeBindingMode"), "Immediate")),
                json!(obj
                    .get("allowVolumeExpansion")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)),
                age,
            ]
        }
        _ => vec![name, age],
    }
}

/// kubectl's HPA `TARGETS`: `cpu: 20%/50%` per metric (`<unknown>` when not
/// measured yet), at most three then `+ N more...`, `<none>` without metrics.
fn hpa_targets(hpa: &Value) -> String {
    let specs = arr(hpa, "/spec/metrics");
    if specs.is_empty() {
        return "<none>".into();
    }
    let current = arr(hpa, "/status/currentMetrics");
    let mut out = Vec::new();
    for (n, m) in specs.iter().enumerate() {
        let ty = s(m, "/type");
        let cur = current.get(n);
        let item = match ty {
            "Resource" | "ContainerResource" => {
                let key = if ty == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let res = s(m, &format!("/{key}/name"));
                let target = m
                    .pointer(&format!("/{key}/target"))
                    .cloned()
                    .unwrap_or_default();
                let cur = cur.and_then(|c| c.get(key)).and_then(|c| c.get("current"));
                if let Some(u) = target.get("averageUtilization").and_then(Value::as_i64) {
                    let c = cur
                        .and_then(|c| c.get("averageUtilization"))
                        .and_then(Value::as_i64)
                        .map(|c| format!("{c}%"))
                        .unwrap_or_else(|| "<unknown>".into());
                    format!("{res}: {c}/{u}%")
                } else {
                    let t = target.get("averageValue").map(quantity).unwrap_or_default();
                    let c = cur
                        .and_then(|c| c.get("averageValue"))
                        .map(quantity)
                        .unwrap_or_else(|| "<unknown>".into());
                    format!("{res}: {c}/{t}")
                }
            }
            other => {
                let key = match other {
                    "Pods" => "pods",
                    "Object" => "object",
                    "External" => "external",
                    _ => "",
                };
                let target = m
                    .pointer(&format!("/{key}/target"))
                    .cloned()
                    .unwrap_or_default();
                let t = target
                    .get("averageValue")
                    .or_else(|| target.get("value"))
                    .map(quantity)
                    .unwrap_or_default();
                let c = cur
                    .and_then(|c| c.get(key))
                    .and_then(|c| c.get("current"))
                    .and_then(|c| c.get("averageValue").or_else(|| c.get("value")))
                    .map(quantity)
                    .unwrap_or_else(|| "<unknown>".into());
                let avg = if target.get("averageValue").is_some() && other != "Pods" {
                    " (avg)"
                } else {
                    ""
                };
                format!("{c}/{t}{avg}")
            }
        };
        out.push(item);
    }
    if out.len() > 3 {
        let more = out.len() - 3;
        out.truncate(3);
        return format!("{} + {more} more...", out.join(", "));
    }
    out.join(", ")
}

/// `PartialObjectMetadata` for `rows[].object` (managedFields dropped).
pub fn partial_object(obj: &Value) -> Value {
    let mut meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    if let Some(m) = meta.as_object_mut() {
        m.remove("managedFields");
    }
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta})
}

/// One row: cells plus the object (its metadata by default).
pub fn row(info: &ResourceInfo, obj: &Value, include: Include, now: DateTime<Utc>) -> Value {
    let mut r = json!({"cells": cells(info, obj, now)});
    match include {
        Include::Metadata => r["object"] = partial_object(obj),
        Include::Object => r["object"] = obj.clone(),
        Include::None => {}
    }
    let phase = s(obj, "/status/phase");
    if info.resource == "pods" && (phase == "Succeeded" || phase == "Failed") {
        r["conditions"] = json!([{"type": "Completed", "status": "True", "reason": phase, "message": format!("The pod has completed {}", if phase == "Succeeded" { "successfully" } else { "with a failure" })}]);
    }
    r
}

/// A whole Table for a list (or a single object: one row).
pub fn table(
    info: &ResourceInfo,
    objs: &[Value],
    list_meta: Value,
    include: Include,
    now: DateTime<Utc>,
) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": columns(info),
        "rows": objs.iter().map(|o| row(info, o, include, now)).collect::<Vec<_>>(),
    })
}

/// A Table of custom resources: Name, then the CRD version's printer columns.
pub fn custom_table(
    cols: &[crate::crd_schema::PrinterColumn],
    objs: &[Value],
    list_meta: Value,
    include: Include,
    now: DateTime<Utc>,
) -> Value {
    let mut defs = vec![name_col()];
    defs.extend(cols.iter().map(|c| c.definition()));
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let mut cells = vec![json!(s(o, "/metadata/name"))];
            cells.extend(cols.iter().map(|c| c.cell(o, now)));
            let mut r = json!({"cells": cells});
            match include {
                Include::Metadata => r["object"] = partial_object(o),
                Include::Object => r["object"] = o.clone(),
                Include::None => {}
            }
            r
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use minik_apimachinery::resources::find;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-10T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn human_durations_like_kubectl() {
        assert_eq!(human_duration(-5), "<invalid>");
        assert_eq!(human_duration(-1), "0s");
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(182), "3m2s");
        assert_eq!(human_duration(180), "3m");
        assert_eq!(human_duration(15 * 60 + 7), "15m");
        assert_eq!(human_duration(4 * 3600), "4h");
        assert_eq!(human_duration(5 * 3600 + 30 * 60), "5h30m");
        assert_eq!(human_duration(20 * 3600), "20h");
        assert_eq!(human_duration(2 * 86400), "2d");
        assert_eq!(human_duration(3 * 86400 + 4 * 3600), "3d4h");
        assert_eq!(human_duration(100 * 86400), "100d");
        assert_eq!(human_duration(3 * 365 * 86400), "3y");
        assert_eq!(human_duration(3 * 365 * 86400 + 10 * 86400), "3y10d");
        assert_eq!(since(None, now()), "<unknown>");
        assert_eq!(since(Some(&json!("2026-01-10T11:59:55Z")), now()), "5s");
    }

    fn pod(status: Value) -> Value {
        json!({"metadata": {"name": "p", "creationTimestamp": "2026-01-10T11:55:00Z"},
               "spec": {"containers": [{"name": "c", "image": "i"}], "nodeName": "minik"},
               "status": status})
    }

    #[test]
    fn pod_status_column() {
        let c = pod_cells(&pod(json!({"phase": "Pending"})), now());
        assert_eq!(c[1], "0/1");
        assert_eq!(c[2], "Pending");
        assert_eq!(c[4], "5m");
        assert_eq!(c[5], "<none>");
        assert_eq!(c[6], "minik");
        let running = pod(
            json!({"phase": "Running", "podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}],
            "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2026-01-10T11:56:00Z"}}}]}),
        );
        let c = pod_cells(&running, now());
        assert_eq!(
            (c[1].as_str(), c[2].as_str(), c[5].as_str()),
            (Some("1/1"), Some("Running"), Some("10.244.0.5"))
        );
        for waiting in [
            "ContainerCreating",
            "ErrImagePull",
            "ImagePullBackOff",
            "CrashLoopBackOff",
        ] {
            let p = pod(
                json!({"phase": "Pending", "containerStatuses": [{"name": "c", "ready": false, "restartCount": 3,
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-01-10T11:59:00Z"}},
                "state": {"waiting": {"reason": waiting}}}]}),
            );
            let c = pod_cells(&p, now());
            assert_eq!(c[2], waiting);
            assert_eq!(c[3], "3 (60s ago)");
        }
        let done = pod(
            json!({"phase": "Succeeded", "containerStatuses": [{"name": "c", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
        );
        assert_eq!(pod_cells(&done, now())[2], "Completed");
        let mut term = running.clone();
        term["metadata"]["deletionTimestamp"] = json!("2026-01-10T12:00:30Z");
        assert_eq!(pod_cells(&term, now())[2], "Terminating");
        let init = json!({"metadata": {"name": "p"}, "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [{"name": "i", "state": {"running": {}}}]}});
        assert_eq!(pod_cells(&init, now())[2], "Init:0/1");
    }

    #[test]
    fn deployment_and_service_rows() {
        let d = json!({"metadata": {"name": "hello", "creationTimestamp": "2026-01-08T12:00:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "hello"}},
                     "template": {"spec": {"containers": [{"name": "hello", "image": "minik/hello"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let info = find("apps", "v1", "deployments").unwrap();
        let c = cells(info, &d, now());
        assert_eq!(
            c,
            vec![
                json!("hello"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("2d"),
                json!("hello"),
                json!("minik/hello"),
                json!("app=hello")
            ]
        );
        assert_eq!(columns(info).len(), c.len());

        let svc = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}], "selector": {"app": "web"}}});
        let info = find("", "v1", "services").unwrap();
        let c = cells(info, &svc, now());
        assert_eq!(c[1], "NodePort");
        assert_eq!(c[2], "10.96.0.20");
        assert_eq!(c[3], "<none>");
        assert_eq!(c[4], "80:30080/TCP,53/UDP");
        assert_eq!(c[5], "<unknown>");
        assert_eq!(c[6], "app=web");
        let mut lb = svc.clone();
        lb["spec"]["type"] = json!("LoadBalancer");
        assert_eq!(cells(info, &lb, now())[3], "<pending>");
    }

    #[test]
    fn jobs_and_daemonsets() {
        let job = json!({"metadata": {"name": "pi", "creationTimestamp": "2026-01-10T11:58:00Z"},
            "spec": {"completions": 1, "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
            "status": {"succeeded": 1, "startTime": "2026-01-10T11:58:00Z", "completionTime": "2026-01-10T11:58:30Z",
                       "conditions": [{"type": "Complete", "status": "True"}]}});
        let c = job_cells(&job, now());
        assert_eq!(&c[1..4], &[json!("Complete"), json!("1/1"), json!("30s")]);
        let ds = json!({"metadata": {"name": "d"}, "spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}}}},
            "status": {"desiredNumberScheduled": 1, "numberReady": 1}});
        let c = cells(find("apps", "v1", "daemonsets").unwrap(), &ds, now());
        assert_eq!(c[1], 1);
        assert_eq!(c[6], "kubernetes.io/os=linux");
    }

    #[test]
    fn storage_rows_like_kubectl() {
        let find = |g: &str, r: &str| {
            minik_apimachinery::builtin_resources()
                .iter()
                .find(|i| i.group == g && i.resource == r)
                .copied()
                .unwrap()
        };
        let pv = json!({"metadata": {"name": "pvc-1", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "standard",
                     "claimRef": {"namespace": "default", "name": "data"}, "volumeMode": "Filesystem"},
            "status": {"phase": "Bound"}});
        let c = cells(&find("", "persistentvolumes"), &pv, now());
        assert_eq!(
            c[..9],
            [
                json!("pvc-1"),
                json!("1Gi"),
                json!("RWO,RWX"),
                json!("Delete"),
                json!("Bound"),
                json!("default/data"),
                json!("standard"),
                json!("<unset>"),
                json!("")
            ]
        );
        assert_eq!(c[10], json!("Filesystem"));
        let pending = json!({"metadata": {"name": "data"}, "spec": {"storageClassName": "standard",
            "resources": {"requests": {"storage": "1Gi"}}}, "status": {"phase": "Pending"}});
        let c = cells(&find("", "persistentvolumeclaims"), &pending, now());
        assert_eq!(
            c[1..7],
            [
                json!("Pending"),
                json!(""),
                json!(""),
                json!(""),
                json!("standard"),
                json!("<unset>")
            ]
        );
        let bound = json!({"metadata": {"name": "data", "deletionTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"volumeName": "pvc-1", "storageClassName": "standard"},
            "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}});
        let c = cells(&find("", "persistentvolumeclaims"), &bound, now());
        assert_eq!(
            c[1..5],
            [
                json!("Terminating"),
                json!("pvc-1"),
                json!("1Gi"),
                json!("RWO")
            ]
        );
        let sc = json!({"metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "minik.io/hostpath"});
        let c = cells(&find("storage.k8s.io", "storageclasses"), &sc, now());
        assert_eq!(
            c[..5],
            [
                json!("standard (default)"),
                json!("minik.io/hostpath"),
                json!("Delete"),
                json!("Immediate"),
                json!(false)
            ]
        );
    }

    #[test]
    fn every_resource_has_matching_cells_and_columns() {
        for info in minik_apimachinery::builtin_resources() {
            let obj = json!({"metadata": {"name": "x"}});
            assert_eq!(
                columns(info).len(),
                cells(info, &obj, now()).len(),
                "{}",
                info.resource
            );
        }
    }

    #[test]
    fn extension_and_policy_rows() {
        let hpa = json!({"metadata": {"name": "web", "creationTimestamp": "2026-01-10T11:00:00Z"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]},
            "status": {"currentReplicas": 2, "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 12}}}]}});
        let info = find("autoscaling", "v2", "horizontalpodautoscalers").unwrap();
        assert_eq!(
            cells(info, &hpa, now()),
            vec![
                json!("web"),
                json!("Deployment/web"),
                json!("cpu: 12%/50%"),
                json!("1"),
                json!(5),
                json!(2),
                json!("60m")
            ]
        );
        let mut fresh = hpa.clone();
        fresh["status"] = json!({});
        fresh["spec"].as_object_mut().unwrap().remove("minReplicas");
        let c = cells(info, &fresh, now());
        assert_eq!(
            (c[2].as_str(), c[3].as_str()),
            (Some("cpu: <unknown>/50%"), Some("<unset>"))
        );
        let svc = json!({"metadata": {"name": "v1beta1.metrics.k8s.io", "creationTimestamp": "2026-01-10T11:00:00Z"},
            "spec": {"service": {"namespace": "kube-system", "name": "metrics-server"}},
            "status": {"conditions": [{"type": "Available", "status": "False", "reason": "MissingEndpoints"}]}});
        let info = find("apiregistration.k8s.io", "v1", "apiservices").unwrap();
        assert_eq!(
            cells(info, &svc, now()),
            vec![
                json!("v1beta1.metrics.k8s.io"),
                json!("kube-system/metrics-server"),
                json!("False (MissingEndpoints)"),
                json!("60m")
            ]
        );
        let np = json!({"metadata": {"name": "deny"}, "spec": {"podSelector": {"matchLabels": {"app": "web"}}}});
        let info = find("networking.k8s.io", "v1", "networkpolicies").unwrap();
        assert_eq!(cells(info, &np, now())[1], "app=web");
        let np_all = json!({"metadata": {"name": "deny"}, "spec": {"podSelector": {}}});
        assert_eq!(cells(info, &np_all, now())[1], "<none>");
        let ic = json!({"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb"}}});
        let info = find("networking.k8s.io", "v1", "ingressclasses").unwrap();
        assert_eq!(
            cells(info, &ic, now())[2],
            "IngressParameters.k8s.example.com/external-lb"
        );
        let lr =
            json!({"metadata": {"name": "limits", "creationTimestamp": "2026-01-10T11:00:00Z"}});
        let info = find("", "v1", "limitranges").unwrap();
        assert_eq!(
            cells(info, &lr, now()),
            vec![json!("limits"), json!("2026-01-10T11:00:00Z")]
        );
        assert_eq!(columns(info)[1]["name"], "Created At");
    }

    #[test]
    fn node_endpoints_events() {
        let node = json!({"metadata": {"name": "minik", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.33.2"},
                       "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}});
        let c = node_cells(&node, now());
        assert_eq!(&c[1..3], &[json!("Ready"), json!("control-plane")]);
        assert_eq!(c[5], "127.0.0.1");
        assert_eq!(c[6], "<none>");
        let ep = json!({"subsets": [{"addresses": [{"ip": "1.1.1.1"}, {"ip": "2.2.2.2"}, {"ip": "3.3.3.3"}, {"ip": "4.4.4.4"}], "ports": [{"port": 80}]}]});
        assert_eq!(
            format_endpoints(&ep),
            "1.1.1.1:80,2.2.2.2:80,3.3.3.3:80 + 1 more..."
        );
        assert_eq!(format_endpoints(&json!({})), "<none>");
        let ev = json!({"metadata": {"name": "e1"}, "type": "Normal", "reason": "Scheduled", "message": " ok ",
            "involvedObject": {"kind": "Pod", "name": "hw"}, "source": {"component": "default-scheduler"},
            "lastTimestamp": "2026-01-10T11:59:00Z"});
        let c = event_cells(&ev, now(), false);
        assert_eq!(c[0], "60s");
        assert_eq!(c[3], "pod/hw");
        assert_eq!(c[5], "default-scheduler");
        assert_eq!(c[6], "ok");
        assert_eq!(c[8], 1);
    }
}
