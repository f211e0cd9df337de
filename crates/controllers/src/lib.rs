//! minik-controllers
