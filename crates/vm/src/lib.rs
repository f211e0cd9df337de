//! minik-vm
