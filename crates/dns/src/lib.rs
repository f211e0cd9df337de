//! minik-dns
