//! minik-apiserver
