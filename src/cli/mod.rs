//! One file per command, as minikube's `cmd/minikube/cmd/<command>.go`.

pub mod addons;
pub mod dashboard;
pub mod delete;
pub mod image;
pub mod ingress_controller;
pub mod kubectl;
pub mod metrics_server;
pub mod node_access;
pub mod registry_server;
pub mod service;
pub mod start;
pub mod status;
pub mod stop;
pub mod storage_provisioner;

/// The Kubernetes version the cluster reports (the kubectl dispatcher on
/// these machines picks its kubectl build by this minor version).
pub const KUBERNETES_VERSION: &str = "v1.33.2";
