//! Informers, as client-go calls them: a cache of every object of one kind,
//! kept current by a watch (list, then watch, re-list on errors with
//! back-off), that wakes a shared `Notify` whenever it changes. The proxy and
//! the dns each rebuild their view from a few informers when woken. Owns no
//! decisions about what the objects mean.

use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// Starts an informer for `K` on `tasks` and returns its cache. `component`
/// names the owner in the (once per outage) warning when the watch fails.
pub fn spawn<K>(
    tasks: &mut JoinSet<()>,
    client: &kube::Client,
    notify: &Arc<Notify>,
    component: &'static str,
) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    let api: Api<K> = Api::all(client.clone());
    let notify = notify.clone();
    let kind = K::kind(&());
    tasks.spawn(async move {
        let mut warned = false;
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .reflect(writer);
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(_) => {
                    warned = false;
                    notify.notify_one();
                }
                Err(e) if !warned => {
                    tracing::warn!(%kind, error = %e, "{component} watch failed; retrying");
                    warned = true;
                }
                Err(_) => {}
            }
        }
    });
    reader
}
