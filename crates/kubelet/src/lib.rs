//! minik-kubelet
