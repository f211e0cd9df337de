//! The watch-driven side: informers (shared watched caches, crate
//! `minik-informer`) for Ingresses, IngressClasses, Services,
//! EndpointSlices and Secrets; on every change the routing table and the
//! certificate set are rebuilt and swapped in (connections in flight keep
//! what they started with), and our Ingresses' status.loadBalancer is set
//! to the node's address. Owns no routing decisions (`routes.rs`).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::certs::{CertSet, Resolver};
use crate::proxy::State;
use crate::routes::{is_ours, Table};

/// Secret type a TLS Secret must have.
const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";
/// After a change, wait this long for more before rebuilding (a rollout
/// changes many EndpointSlices in a burst).
const DEBOUNCE: Duration = Duration::from_millis(50);

/// The caches the controller reads.
struct Caches {
    ingresses: Store<Ingress>,
    classes: Store<IngressClass>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    secrets: Store<Secret>,
}

/// Everything the loop needs.
pub struct Controller {
    pub client: kube::Client,
    pub state: Arc<State>,
    pub resolver: Arc<Resolver>,
    pub ready: Arc<AtomicBool>,
    /// IngressClass spec.controller we serve.
    pub controller_name: String,
    /// What goes into status.loadBalancer.ingress (an IP, or a hostname).
    pub status_address: Option<String>,
}

/// `status.loadBalancer.ingress` for an address: `ip` when it is one.
pub fn load_balancer_entry(address: &str) -> serde_json::Value {
    if address.parse::<std::net::IpAddr>().is_ok() {
        serde_json::json!({ "ip": address })
    } else {
        serde_json::json!({ "hostname": address })
    }
}

/// Whether an Ingress' status already says exactly `address`.
fn status_is(ing: &Ingress, address: &str) -> bool {
    let entries: Vec<(Option<&str>, Option<&str>)> = ing
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|v| {
            v.iter()
                .map(|e| (e.ip.as_deref(), e.hostname.as_deref()))
                .collect()
        })
        .unwrap_or_default();
    let want = load_balancer_entry(address);
    entries.len() == 1
        && entries[0].0 == want["ip"].as_str()
        && entries[0].1 == want["hostname"].as_str()
}

impl Controller {
    /// Runs until `shutdown` completes; then takes our address off the
    /// Ingresses it was put on (as ingress-nginx does on shutdown), so a
    /// disabled addon leaves no stale ADDRESS behind.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let mut published = BTreeSet::new();
        tokio::select! {
            _ = self.serve(&mut published) => {}
            _ = shutdown => {}
        }
        if !published.is_empty() {
            let clear = self.clear_status(&published);
            if tokio::time::timeout(Duration::from_secs(3), clear)
                .await
                .is_err()
            {
                tracing::warn!("clearing the Ingress status took over 3 s; left as is");
            }
        }
    }

    /// Watches and reloads forever (unless a watch cannot start).
    async fn serve(&self, published: &mut BTreeSet<(String, String)>) {
        let notify = Arc::new(Notify::new());
        let mut tasks = JoinSet::new();
        let c = &self.client;
        let caches = Caches {
            ingresses: minik_informer::spawn(&mut tasks, c, &notify, "ingress controller"),
            classes: minik_informer::spawn(&mut tasks, c, &notify, "ingress controller"),
            services: minik_informer::spawn(&mut tasks, c, &notify, "ingress controller"),
            slices: minik_informer::spawn(&mut tasks, c, &notify, "ingress controller"),
            secrets: minik_informer::spawn(&mut tasks, c, &notify, "ingress controller"),
        };
        for (what, ready) in [
            ("ingresses", caches.ingresses.wait_until_ready().await),
            ("ingressclasses", caches.classes.wait_until_ready().await),
            ("services", caches.services.wait_until_ready().await),
            ("endpointslices", caches.slices.wait_until_ready().await),
            ("secrets", caches.secrets.wait_until_ready().await),
        ] {
            if ready.is_err() {
                tracing::error!("the {what} watch stopped before its first list");
                return;
            }
        }
        tracing::info!("watches synced; serving");
        let mut last_summary = String::new();
        let mut last_warnings = BTreeSet::new();
        let mut failed_status = BTreeSet::new();
        let recorder = minik_events::Recorder::new(self.client.clone(), "minik-ingress-controller");
        let mut synced: HashMap<(String, String), (String, i64)> = HashMap::new();
        loop {
            let ours = self.sync(&caches, &mut last_summary, &mut last_warnings);
            self.ready.store(true, Ordering::Relaxed);
            self.update_status(&caches, &ours, published, &mut failed_status)
                .await;
            sync_events(&recorder, &ours, &mut synced).await;
            notify.notified().await;
            tokio::time::sleep(DEBOUNCE).await;
        }
    }

    /// Rebuilds the table and certificates from the caches and swaps them
    /// in; returns our Ingresses.
    fn sync(
        &self,
        caches: &Caches,
        last_summary: &mut String,
        last_warnings: &mut BTreeSet<String>,
    ) -> Vec<Arc<Ingress>> {
        let classes = caches.classes.state();
        let ours: Vec<Arc<Ingress>> = caches
            .ingresses
            .state()
            .into_iter()
            .filter(|i| is_ours(i, &classes, &self.controller_name))
            .collect();
        let table = Table::build(&ours, &caches.services.state(), &caches.slices.state());
        let (certs, warnings) = CertSet::build(&table, |ns, name| {
            let s = caches.secrets.get(&ObjectRef::new(name).within(ns))?;
            if s.type_.as_deref() != Some(TLS_SECRET_TYPE) {
                return None;
            }
            let data = s.data.as_ref()?;
            Some((
                data.get("tls.crt")?.0.clone(),
                data.get("tls.key")?.0.clone(),
            ))
        });
        let summary = summarize(&table, certs.len());
        if summary != *last_summary {
            tracing::info!("routing table: {summary}");
            *last_summary = summary;
        }
        let warnings: BTreeSet<String> = warnings
            .into_iter()
            .chain(table.warnings.iter().cloned())
            .collect();
        for w in warnings.difference(last_warnings) {
            tracing::warn!("{w}");
        }
        *last_warnings = warnings;
        self.state.replace(table);
        self.resolver.replace(certs);
        ours
    }

    /// Sets status.loadBalancer.ingress on every Ingress of ours that does
    /// not say our address yet, and takes it off Ingresses that stopped
    /// being ours (class changed). `published` is what carries our address.
    /// A failure is logged once per Ingress and retried at the next change.
    async fn update_status(
        &self,
        caches: &Caches,
        ours: &[Arc<Ingress>],
        published: &mut BTreeSet<(String, String)>,
        failed: &mut BTreeSet<(String, String)>,
    ) {
        let Some(address) = self.status_address.as_deref() else {
            return;
        };
        let mut now = BTreeSet::new();
        for ing in ours {
            let (Some(ns), Some(name)) = (&ing.metadata.namespace, &ing.metadata.name) else {
                continue;
            };
            let id = (ns.clone(), name.clone());
            now.insert(id.clone());
            if status_is(ing, address) {
                published.insert(id);
                continue;
            }
            let entry = load_balancer_entry(address);
            match self
                .patch_status(ns, name, serde_json::json!([entry]))
                .await
            {
                Ok(()) => {
                    failed.remove(&id);
                    published.insert(id);
                    tracing::info!(ingress = %format!("{ns}/{name}"), %address, "status updated");
                }
                Err(e) => {
                    if failed.insert(id) {
                        tracing::warn!(ingress = %format!("{ns}/{name}"), error = %e, "updating the Ingress status failed; retrying at the next change");
                    }
                }
            }
        }
        let gone: Vec<(String, String)> = published.difference(&now).cloned().collect();
        for (ns, name) in gone {
            published.remove(&(ns.clone(), name.clone()));
            // Deleted Ingresses need nothing; others lose our address.
            let still = caches
                .ingresses
                .get(&ObjectRef::new(&name).within(&ns))
                .is_some_and(|i| status_is(&i, address));
            if still {
                if let Err(e) = self.patch_status(&ns, &name, serde_json::Value::Null).await {
                    tracing::warn!(ingress = %format!("{ns}/{name}"), error = %e, "clearing the status of an Ingress no longer ours failed");
                }
            }
        }
    }

    /// Sets `status.loadBalancer.ingress` (`null` removes it).
    async fn patch_status(
        &self,
        ns: &str,
        name: &str,
        entries: serde_json::Value,
    ) -> Result<(), kube::Error> {
        let api: Api<Ingress> = Api::namespaced(self.client.clone(), ns);
        let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": entries}}});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
    }

    /// Shutdown: our address off every Ingress that carries it.
    async fn clear_status(&self, published: &BTreeSet<(String, String)>) {
        for (ns, name) in published {
            match self.patch_status(ns, name, serde_json::Value::Null).await {
                Ok(()) => tracing::info!(ingress = %format!("{ns}/{name}"), "status cleared"),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    tracing::warn!(ingress = %format!("{ns}/{name}"), error = %e, "clearing the status failed")
                }
            }
        }
    }
}

/// A `Normal Sync` Event on each Ingress of ours that is new or changed
/// (as ingress-nginx: `kubectl describe ingress` shows it was picked up).
async fn sync_events(
    recorder: &minik_events::Recorder,
    ours: &[Arc<Ingress>],
    synced: &mut HashMap<(String, String), (String, i64)>,
) {
    let mut seen = HashMap::new();
    for ing in ours {
        let m = &ing.metadata;
        let (Some(ns), Some(name)) = (&m.namespace, &m.name) else {
            continue;
        };
        let id = (ns.clone(), name.clone());
        let version = (m.uid.clone().unwrap_or_default(), m.generation.unwrap_or(0));
        if synced.get(&id) != Some(&version) {
            recorder
                .publish(
                    ing.as_ref(),
                    minik_events::EventType::Normal,
                    "Sync",
                    "Scheduled for sync",
                )
                .await;
        }
        seen.insert(id, version);
    }
    *synced = seen;
}

/// One line describing the table (logged when it changes).
fn summarize(t: &Table, certs: usize) -> String {
    let mut backends: Vec<String> = t
        .backends()
        .iter()
        .map(|b| match (&b.problem, &b.external) {
            (Some(p), _) => format!("{} ({p})", b.name),
            (None, Some((host, port))) => format!("{} (ExternalName {host}:{port})", b.name),
            (None, None) => format!("{} ({} ready)", b.name, b.endpoints.len()),
        })
        .collect();
    backends.sort();
    format!(
        "{} ingresses [{}], backends [{}], {certs} TLS hosts",
        t.ingresses.len(),
        t.ingresses.join(", "),
        backends.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_entries_compare_ip_and_hostname() {
        let ing = |status: serde_json::Value| -> Ingress {
            serde_json::from_value(serde_json::json!({"metadata": {"name": "i"}, "status": status}))
                .unwrap()
        };
        assert!(status_is(
            &ing(serde_json::json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.5"}]}})),
            "10.0.0.5"
        ));
        assert!(!status_is(&ing(serde_json::json!({})), "10.0.0.5"));
        assert!(!status_is(
            &ing(serde_json::json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.6"}]}})),
            "10.0.0.5"
        ));
        assert!(status_is(
            &ing(serde_json::json!({"loadBalancer": {"ingress": [{"hostname": "node.local"}]}})),
            "node.local"
        ));
        assert_eq!(load_balancer_entry("node.local")["hostname"], "node.local");
        assert_eq!(load_balancer_entry("fd00::1")["ip"], "fd00::1");
    }
}
