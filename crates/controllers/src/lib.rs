//! minik-controllers: the controller manager.
//!
//! Every controller is a level-triggered loop over the API (kube-rs
//! `Controller` or watchers as triggers, fresh API reads for decisions) and
//! writes back through the API only. This crate must not depend on the
//! apiserver or the store: in the node agent the `kube::Client` it gets talks
//! in-process to the apiserver, elsewhere it could be any cluster.

pub mod events;
pub mod replicaset;
pub mod util;

/// Runs every controller concurrently until the task is dropped or one of
/// them fails.
pub async fn run(client: kube::Client) -> anyhow::Result<()> {
    tokio::try_join!(replicaset::run(client.clone()),)?;
    Ok(())
}
