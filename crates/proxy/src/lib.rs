//! minik-proxy: kube-proxy's job in nftables mode.
//!
//! Owns the `table ip <table>` (default `minik`) and the two sysctls it needs.
//! It is a pure API client: it watches Services, EndpointSlices and Endpoints
//! through a `kube::Client` and, on every change (debounced), rewrites the
//! whole table in one atomic `nft -f -` transaction. It never touches the
//! store, the pod network (the kubelet's) or other nftables tables.
//!
//! - [`model`]: API objects → service ports with ready backends (pure)
//! - [`render`]: service ports → nft script (pure)
//! - [`nft`]: running `nft`
//! - [`sysctl`]: `ip_forward` / `route_localnet`, saved in the table comment

pub mod model;
pub mod nft;
pub mod render;
pub mod sysctl;

use std::borrow::Borrow;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use thiserror::Error;
use tokio::sync::Notify;
use tokio::task::JoinSet;

pub use render::Params;

/// How the node agent configures the proxy.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The node's primary address (informational; NodePorts answer on every
    /// local address through `fib daddr type local`).
    pub node_ip: String,
    /// Pod network, e.g. `10.244.0.0/16`; traffic from it to the outside is masqueraded.
    pub pod_cidr: String,
    /// The pod bridge, e.g. `minik0`.
    pub bridge: String,
    /// nftables table name in the `ip` family, e.g. `minik`.
    pub table: String,
}

#[derive(Debug, Error)]
pub enum ProxyError {
    #[error(transparent)]
    Params(#[from] render::ParamsError),
    #[error(transparent)]
    Nft(#[from] nft::NftError),
    #[error(transparent)]
    Sysctl(#[from] sysctl::SysctlError),
}

/// Delay between a change and the table rewrite, so a burst of watch events
/// (a Deployment scaling up) becomes one transaction.
pub const DEBOUNCE: Duration = Duration::from_millis(50);
/// How often the table is checked for existence even without changes.
pub const RESYNC: Duration = Duration::from_secs(30);

/// Programs the table from snapshots. Keeps the last applied script so an
/// unchanged model costs no `nft` call.
pub struct Proxier {
    params: Params,
    last: Option<String>,
}

impl Proxier {
    /// Validates the configuration, records the original sysctl values
    /// (from an existing minik table if one survives, else the live ones) and
    /// turns on the ones the proxy needs.
    pub fn new(cfg: &ProxyConfig) -> Result<Self, ProxyError> {
        let own_table = nft::table_comment(&cfg.table)?.is_some();
        let saved = original_sysctls(&cfg.table)?;
        let params = Params::new(&cfg.table, &cfg.pod_cidr, &cfg.bridge, &saved.to_comment())?;
        let mut proxier = Proxier { params, last: None };
        if !own_table {
            // Record the original values before changing anything, so a
            // crash before the first sync still leaves them for teardown.
            // (An existing table keeps serving until the first sync.)
            let empty: [&Service; 0] = [];
            proxier.sync(&empty, &[] as &[&EndpointSlice], &[] as &[&Endpoints])?;
        }
        sysctl::ensure()?;
        Ok(proxier)
    }

    /// Renders the rules for these objects and applies them if they differ
    /// from the last applied ones. Returns whether `nft` was run.
    pub fn sync(
        &mut self,
        services: &[impl Borrow<Service>],
        slices: &[impl Borrow<EndpointSlice>],
        endpoints: &[impl Borrow<Endpoints>],
    ) -> Result<bool, ProxyError> {
        let ports = model::build(services, slices, endpoints);
        let script = render::render(&self.params, &ports);
        if self.last.as_deref() == Some(script.as_str()) {
            return Ok(false);
        }
        nft::apply(&script)?;
        tracing::debug!(table = %self.params.table, ports = ports.len(), "proxy rules applied");
        self.last = Some(script);
        Ok(true)
    }

    /// Makes the next [`Proxier::sync`] write even if nothing changed
    /// (used when the table was removed behind our back).
    pub fn invalidate(&mut self) {
        self.last = None;
    }

    pub fn table(&self) -> &str {
        &self.params.table
    }
}

/// The sysctl values to restore on teardown: those recorded in our own
/// table, else in another minik proxy table (a second agent on this host),
/// else the current ones.
fn original_sysctls(table: &str) -> Result<sysctl::Saved, ProxyError> {
    if let Some(saved) = nft::table_comment(table)?.and_then(|c| sysctl::Saved::from_comment(&c)) {
        return Ok(saved);
    }
    for other in nft::ip_tables()? {
        if let Some(saved) =
            nft::table_comment(&other)?.and_then(|c| sysctl::Saved::from_comment(&c))
        {
            return Ok(saved);
        }
    }
    Ok(sysctl::current()?)
}

/// Watches Services, EndpointSlices and Endpoints and keeps the nft table in
/// sync until the task is dropped. Returns only on a configuration error.
pub async fn run(client: kube::Client, cfg: ProxyConfig) -> anyhow::Result<()> {
    let mut proxier = tokio::task::spawn_blocking({
        let cfg = cfg.clone();
        move || Proxier::new(&cfg)
    })
    .await??;
    let notify = Arc::new(Notify::new());
    // Owned here so that dropping `run` (agent shutdown) stops the watches.
    let mut watches = JoinSet::new();
    let services = minik_informer::spawn::<Service>(&mut watches, &client, &notify, "proxy");
    let slices = minik_informer::spawn::<EndpointSlice>(&mut watches, &client, &notify, "proxy");
    let endpoints = minik_informer::spawn::<Endpoints>(&mut watches, &client, &notify, "proxy");

    // Programming before the first complete list would briefly reject every
    // service; wait for it (but not forever: a missing API must not stop
    // the others from working).
    let ready = async {
        let _ = services.wait_until_ready().await;
        let _ = slices.wait_until_ready().await;
        let _ = endpoints.wait_until_ready().await;
    };
    if tokio::time::timeout(Duration::from_secs(20), ready)
        .await
        .is_err()
    {
        tracing::warn!("proxy: not all watches listed within 20s; programming what is known");
    }
    tracing::info!(table = %cfg.table, "proxy started");

    let mut failing = false;
    loop {
        let (svcs, sls, eps) = (services.state(), slices.state(), endpoints.state());
        let table = proxier.table().to_string();
        let (p, res) = tokio::task::spawn_blocking(move || {
            let res = proxier.sync(&svcs, &sls, &eps);
            (proxier, res)
        })
        .await?;
        proxier = p;
        match res {
            Ok(_) if failing => {
                tracing::info!(%table, "proxy rules applied again");
                failing = false;
            }
            Ok(_) => {}
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "proxy could not apply nftables rules; retrying");
                }
                failing = true;
                proxier.invalidate();
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep(RESYNC) => {
                if let Err(e) = tokio::task::spawn_blocking(sysctl::ensure).await? {
                    tracing::warn!(error = %e, "proxy cannot keep kernel settings");
                }
                let t = table.clone();
                let exists = tokio::task::spawn_blocking(move || nft::table_comment(&t)).await?;
                if !matches!(exists, Ok(Some(_))) {
                    tracing::warn!(%table, "proxy table is missing; writing it again");
                    proxier.invalidate();
                }
            }
        }
        tokio::time::sleep(DEBOUNCE).await;
    }
}

/// Removes the proxy table and restores the sysctls it changed (unless
/// another minik proxy table on this host still needs them). Safe to call
/// when nothing is installed.
pub fn teardown(cfg: &ProxyConfig) -> anyhow::Result<()> {
    let comment = match nft::table_comment(&cfg.table) {
        // no nft binary: nothing can have been installed
        Err(nft::NftError::Spawn(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    nft::delete_table(&cfg.table)?;
    let Some(saved) = comment.as_deref().and_then(sysctl::Saved::from_comment) else {
        return Ok(());
    };
    for other in nft::ip_tables()? {
        if nft::table_comment(&other)?
            .and_then(|c| sysctl::Saved::from_comment(&c))
            .is_some()
        {
            tracing::info!(table = %other, "another minik proxy table remains; keeping sysctls");
            return Ok(());
        }
    }
    let now = sysctl::current()?;
    for (k, v) in sysctl::restore_plan(&saved, &now) {
        sysctl::write(&k, &v)?;
    }
    Ok(())
}
