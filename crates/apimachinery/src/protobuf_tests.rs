use super::*;
use k8s_pb::api::apps::v1 as pb_apps;
use k8s_pb::api::core::v1 as pb_core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as pb_meta;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message as _;
use serde_json::json;

/// JSON `null` is how Go writes an unset `Time`; it means the same as absent.
fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

/// Every body the real kubectl 1.33 POSTs for `kubectl create <generator>`
/// (captured from the wire) decodes to exactly the JSON the same command
/// prints with `--dry-run=client -o json`.
#[test]
fn real_kubectl_create_bodies_decode_to_kubectl_json() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/kubectl-create");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("bin") {
            continue;
        }
        let body = std::fs::read(&path).unwrap();
        let expected: Value =
            serde_json::from_slice(&std::fs::read(path.with_extension("json")).unwrap()).unwrap();
        let got = decode(&body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            strip_nulls(&got),
            strip_nulls(&expected),
            "{}",
            path.display()
        );
        n += 1;
    }
    assert!(n >= 22, "only {n} fixtures found in {}", dir.display());
}

fn meta(name: &str) -> pb_meta::ObjectMeta {
    pb_meta::ObjectMeta {
        name: Some(name.into()),
        namespace: Some("default".into()),
        labels: [("app".to_string(), name.to_string())]
            .into_iter()
            .collect(),
        creation_timestamp: Some(pb_meta::Time {
            seconds: Some(1_700_000_000),
            nanos: Some(0),
        }),
        ..Default::default()
    }
}

fn round_trip<T: prost::Message>(api_version: &str, kind: &str, obj: &T) -> Value {
    decode(&envelope(api_version, kind, &obj.encode_to_vec())).unwrap()
}

/// The decoded JSON survives a round trip through the k8s-openapi type, so
/// every field name it produced is one the real type has.
fn assert_typed_round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) {
    let typed: T = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(&serde_json::to_value(typed).unwrap(), v);
}

#[test]
fn deployment_with_special_types_round_trips() {
    let container = pb_core::Container {
        name: Some("web".into()),
        image: Some("nginx:1.27".into()),
        ports: vec![pb_core::ContainerPort {
            container_port: Some(80),
            host_port: Some(0),
            ..Default::default()
        }],
        env: vec![
            pb_core::EnvVar {
                name: Some("A".into()),
                value: Some("1".into()),
                ..Default::default()
            },
            pb_core::EnvVar {
                name: Some("B".into()),
                value_from: Some(pb_core::EnvVarSource {
                    config_map_key_ref: Some(pb_core::ConfigMapKeySelector {
                        local_object_reference: Some(pb_core::LocalObjectReference {
                            name: Some("cm".into()),
                        }),
                        key: Some("k".into()),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ],
        resources: Some(pb_core::ResourceRequirements {
            limits: [(
                "memory".to_string(),
                Quantity {
                    string: Some("128Mi".into()),
                },
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        }),
        readiness_probe: Some(pb_core::Probe {
            handler: Some(pb_core::ProbeHandler {
                http_get: Some(pb_core::HttpGetAction {
                    path: Some("/healthz".into()),
                    port: Some(IntOrString {
                        r#type: Some(1),
                        int_val: None,
                        str_val: Some("http".into()),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            period_seconds: Some(5),
            ..Default::default()
        }),
        volume_mounts: vec![pb_core::VolumeMount {
            name: Some("scratch".into()),
            mount_path: Some("/tmp".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let d = pb_apps::Deployment {
        metadata: Some(meta("web")),
        spec: Some(pb_apps::DeploymentSpec {
            replicas: Some(0),
            selector: Some(pb_meta::LabelSelector {
                match_labels: [("app".to_string(), "web".to_string())]
                    .into_iter()
                    .collect(),
                ..Default::default()
            }),
            template: Some(pb_core::PodTemplateSpec {
                metadata: Some(pb_meta::ObjectMeta {
                    labels: [("app".to_string(), "web".to_string())]
                        .into_iter()
                        .collect(),
                    ..Default::default()
                }),
                spec: Some(pb_core::PodSpec {
                    containers: vec![container],
                    volumes: vec![pb_core::Volume {
                        name: Some("scratch".into()),
                        volume_source: Some(pb_core::VolumeSource {
                            empty_dir: Some(pb_core::EmptyDirVolumeSource::default()),
                            ..Default::default()
                        }),
                    }],
                    automount_service_account_token: Some(false),
                    host_network: Some(false),
                    ..Default::default()
                }),
            }),
            strategy: Some(pb_apps::DeploymentStrategy {
                r#type: Some("RollingUpdate".into()),
                rolling_update: Some(pb_apps::RollingUpdateDeployment {
                    max_surge: Some(IntOrString {
                        r#type: Some(1),
                        int_val: None,
                        str_val: Some("25%".into()),
                    }),
                    max_unavailable: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(0),
                        str_val: None,
                    }),
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let got = round_trip("apps/v1", "Deployment", &d);
    let expected = json!({
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                     "creationTimestamp": "2023-11-14T22:13:20Z"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{
                        "name": "web",
                        "image": "nginx:1.27",
                        "ports": [{"containerPort": 80}],
                        "env": [
                            {"name": "A", "value": "1"},
                            {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k", "optional": false}}}
                        ],
                        "resources": {"limits": {"memory": "128Mi"}},
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5},
                        "volumeMounts": [{"name": "scratch", "mountPath": "/tmp"}]
                    }],
                    "volumes": [{"name": "scratch", "emptyDir": {}}],
                    "automountServiceAccountToken": false
                }
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}
        }
    });
    assert_eq!(got, expected);
    assert_typed_round_trip::<k8s_openapi::api::apps::v1::Deployment>(&got);
    // kind and apiVersion come first, as kubectl writes them.
    let keys: Vec<_> = got.as_object().unwrap().keys().take(2).cloned().collect();
    assert_eq!(keys, ["kind", "apiVersion"]);
}

#[test]
fn secret_bytes_become_base64_and_service_int_or_string() {
    let s = pb_core::Secret {
        metadata: Some(meta("s")),
        data: [("pw".to_string(), b"\x00\xffhi".to_vec())]
            .into_iter()
            .collect(),
        r#type: Some("Opaque".into()),
        immutable: Some(true),
        ..Default::default()
    };
    let got = round_trip("v1", "Secret", &s);
    assert_eq!(got["data"], json!({"pw": "AP9oaQ=="}));
    assert_eq!(got["immutable"], json!(true));
    assert_typed_round_trip::<k8s_openapi::api::core::v1::Secret>(&got);

    let svc = pb_core::Service {
        metadata: Some(meta("svc")),
        spec: Some(pb_core::ServiceSpec {
            ports: vec![pb_core::ServicePort {
                port: Some(80),
                target_port: Some(IntOrString {
                    r#type: Some(0),
                    int_val: Some(8080),
                    str_val: None,
                }),
                node_port: Some(0),
                protocol: Some("TCP".into()),
                ..Default::default()
            }],
            cluster_ip: Some("10.96.0.5".into()),
            cluster_ips: vec!["10.96.0.5".into()],
            ..Default::default()
        }),
        status: None,
    };
    let got = round_trip("v1", "Service", &svc);
    assert_eq!(
        got["spec"],
        json!({"ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}],
               "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"]})
    );
    assert_typed_round_trip::<k8s_openapi::api::core::v1::Service>(&got);
}

#[test]
fn rbac_and_micro_time_and_raw_extension() {
    use k8s_pb::api::rbac::v1 as rbac;
    let role = rbac::Role {
        metadata: Some(meta("r")),
        rules: vec![rbac::PolicyRule {
            verbs: vec!["get".into(), "list".into()],
            api_groups: vec!["".into(), "apps".into()],
            resources: vec!["pods".into(), "deployments".into()],
            ..Default::default()
        }],
    };
    let got = round_trip("rbac.authorization.k8s.io/v1", "Role", &role);
    // An empty string inside a list is a value, not an absent field.
    assert_eq!(
        got["rules"],
        json!([{"verbs": ["get", "list"], "apiGroups": ["", "apps"], "resources": ["pods", "deployments"]}])
    );
    assert_typed_round_trip::<k8s_openapi::api::rbac::v1::Role>(&got);

    let lease = k8s_pb::api::coordination::v1::Lease {
        metadata: Some(meta("l")),
        spec: Some(k8s_pb::api::coordination::v1::LeaseSpec {
            holder_identity: Some("minik".into()),
            renew_time: Some(pb_meta::MicroTime {
                seconds: Some(1_700_000_000),
                nanos: Some(123_456_000),
            }),
            ..Default::default()
        }),
    };
    let got = round_trip("coordination.k8s.io/v1", "Lease", &lease);
    assert_eq!(
        got["spec"]["renewTime"],
        json!("2023-11-14T22:13:20.123456Z")
    );

    let cr = k8s_pb::api::apps::v1::ControllerRevision {
        metadata: Some(meta("cr")),
        data: Some(k8s_pb::apimachinery::pkg::runtime::RawExtension {
            raw: Some(br#"{"spec":{"a":1}}"#.to_vec()),
        }),
        revision: Some(3),
    };
    let got = round_trip("apps/v1", "ControllerRevision", &cr);
    assert_eq!(got["data"], json!({"spec": {"a": 1}}));
    assert_eq!(got["revision"], json!(3));
}

#[test]
fn managed_fields_v1_is_embedded_json() {
    let mut m = meta("cm");
    m.managed_fields = vec![pb_meta::ManagedFieldsEntry {
        manager: Some("kubectl".into()),
        operation: Some("Apply".into()),
        fields_type: Some("FieldsV1".into()),
        fields_v1: Some(pb_meta::FieldsV1 {
            raw: Some(br#"{"f:data":{"f:a":{}}}"#.to_vec()),
        }),
        ..Default::default()
    }];
    let cm = pb_core::ConfigMap {
        metadata: Some(m),
        data: [("a".to_string(), "".to_string())].into_iter().collect(),
        ..Default::default()
    };
    let got = round_trip("v1", "ConfigMap", &cm);
    assert_eq!(
        got["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:data": {"f:a": {}}})
    );
    // An empty map value is kept (a ConfigMap key with an empty value).
    assert_eq!(got["data"], json!({"a": ""}));
    assert_typed_round_trip::<k8s_openapi::api::core::v1::ConfigMap>(&got);
}

#[test]
fn message_names_cover_the_generator_kinds() {
    for (av, kind) in [
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "Namespace"),
        ("v1", "Pod"),
        ("v1", "ServiceAccount"),
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview"),
        ("batch/v1", "Job"),
        ("batch/v1", "CronJob"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ("v1", "ResourceQuota"),
        ("policy/v1", "PodDisruptionBudget"),
        ("networking.k8s.io/v1", "Ingress"),
        ("scheduling.k8s.io/v1", "PriorityClass"),
        ("authentication.k8s.io/v1", "TokenRequest"),
        ("meta.k8s.io/v1", "DeleteOptions"),
        ("v1", "DeleteOptions"),
    ] {
        assert!(message_name(av, kind).is_some(), "{av} {kind}");
    }
    assert!(message_name("v1", "NoSuchKind").is_none());
}

#[test]
fn malformed_bodies_are_errors_not_panics() {
    assert!(matches!(
        decode(b"{\"kind\":\"Pod\"}"),
        Err(ProtobufError::Malformed(_))
    ));
    assert!(matches!(
        decode(b"k8s\x00\x0a\xff"),
        Err(ProtobufError::Malformed(_))
    ));
    assert!(matches!(
        decode(&envelope("v1", "Bogus", b"")),
        Err(ProtobufError::UnsupportedKind(_))
    ));
    // a length that runs past the end
    let mut body = envelope("v1", "ConfigMap", b"");
    body.extend_from_slice(&[0x12, 0x7f, 0x0a]);
    assert!(decode(&body).is_err());
    // truncating a real body anywhere never panics
    let cm = pb_core::ConfigMap {
        metadata: Some(meta("x")),
        ..Default::default()
    };
    let full = envelope("v1", "ConfigMap", &cm.encode_to_vec());
    for n in 0..full.len() {
        let _ = decode(&full[..n]);
    }
}

#[test]
fn schema_file_parses_fully() {
    let lines = SCHEMA_TEXT
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("message "))
        .count();
    let parsed: usize = schema().values().map(|m| m.len()).sum();
    assert_eq!(
        lines, parsed,
        "every field line of protobuf_schema.txt parses"
    );
    // Every referenced message is defined.
    for fields in schema().values() {
        for f in fields.values() {
            if let Ty::Message(m) = f.ty {
                assert!(
                    schema().contains_key(m),
                    "{m} is referenced but not defined"
                );
            }
        }
    }
}

#[test]
fn pod_status_acronym_fields_and_times_in_lists() {
    let t = |s| {
        Some(pb_meta::Time {
            seconds: Some(s),
            nanos: Some(0),
        })
    };
    let pod = pb_core::Pod {
        metadata: Some(meta("p")),
        spec: Some(pb_core::PodSpec {
            containers: vec![pb_core::Container {
                name: Some("c".into()),
                image: Some("busybox".into()),
                ..Default::default()
            }],
            node_name: Some("minik".into()),
            termination_grace_period_seconds: Some(0),
            ..Default::default()
        }),
        status: Some(pb_core::PodStatus {
            phase: Some("Running".into()),
            conditions: vec![pb_core::PodCondition {
                r#type: Some("Ready".into()),
                status: Some("True".into()),
                last_transition_time: t(1_700_000_001),
                ..Default::default()
            }],
            host_ip: Some("10.0.0.1".into()),
            host_ips: vec![pb_core::HostIp {
                ip: Some("10.0.0.1".into()),
            }],
            pod_ip: Some("10.244.0.5".into()),
            pod_ips: vec![pb_core::PodIp {
                ip: Some("10.244.0.5".into()),
            }],
            start_time: t(1_700_000_000),
            container_statuses: vec![pb_core::ContainerStatus {
                name: Some("c".into()),
                ready: Some(true),
                restart_count: Some(0),
                image: Some("busybox".into()),
                image_id: Some("".into()),
                state: Some(pb_core::ContainerState {
                    running: Some(pb_core::ContainerStateRunning {
                        started_at: t(1_700_000_002),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
    };
    let got = round_trip("v1", "Pod", &pod);
    assert_eq!(
        got["spec"]["terminationGracePeriodSeconds"],
        json!(0),
        "a meaningful zero pointer is kept"
    );
    assert_eq!(
        got["status"],
        json!({
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2023-11-14T22:13:21Z"}],
            "hostIP": "10.0.0.1",
            "podIP": "10.244.0.5",
            "startTime": "2023-11-14T22:13:20Z",
            "containerStatuses": [{"name": "c", "state": {"running": {"startedAt": "2023-11-14T22:13:22Z"}},
                                   "ready": true, "restartCount": 0, "image": "busybox", "imageID": ""}],
            "podIPs": [{"ip": "10.244.0.5"}],
            "hostIPs": [{"ip": "10.0.0.1"}]
        })
    );
    assert_typed_round_trip::<k8s_openapi::api::core::v1::Pod>(&got);
}
