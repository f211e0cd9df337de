//! minik-controllers: the controller manager.
//!
//! Every controller is a level-triggered loop over the API (kube-rs
//! `Controller` or watchers as triggers, fresh API reads for decisions) and
//! writes back through the API only. This crate must not depend on the
//! apiserver or the store: in the node agent the `kube::Client` it gets talks
//! in-process to the apiserver, elsewhere it could be any cluster.
//!
//! One module per controller; `events`, `discovery`, `reconcile` and `util` are shared.

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod discovery;
pub mod endpoints;
pub mod endpointslice;
/// The Event recorder (shared with the other API-client components).
pub use minik_events as events;
pub mod garbagecollector;
pub mod job;
pub mod namespace;
pub mod persistentvolume;
pub mod reconcile;
pub mod replicaset;
pub mod resourcequota;
pub mod serviceaccount;
pub mod statefulset;
pub mod util;

/// Runs every controller concurrently until the task is dropped (or one of
/// them fails, which none does on its own: API errors are retried inside).
pub async fn run(client: kube::Client) -> anyhow::Result<()> {
    tokio::try_join!(
        deployment::run(client.clone()),
        replicaset::run(client.clone()),
        endpoints::run(client.clone()),
        endpointslice::run(client.clone()),
        serviceaccount::run(client.clone()),
        namespace::run(client.clone()),
        persistentvolume::run(client.clone()),
        garbagecollector::run(client.clone()),
        resourcequota::run(client.clone()),
        statefulset::run(client.clone()),
        job::run(client.clone()),
        daemonset::run(client.clone()),
        cronjob::run(client.clone()),
    )?;
    Ok(())
}
