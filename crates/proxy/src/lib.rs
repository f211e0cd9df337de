//! minik-proxy
