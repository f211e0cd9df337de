//! minik-scheduler
