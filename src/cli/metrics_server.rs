//! The hidden `minik metrics-server`: the container entrypoint of the
//! `metrics-server` addon (image `minik/minik`, host network). It scrapes
//! the kubelet's `/stats/summary` and serves `metrics.k8s.io/v1beta1` over
//! HTTPS for the API server's aggregation layer, so `kubectl top` works.
//! The server itself is the crate `minik-metrics`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

/// Flags of `minik metrics-server`.
#[derive(Debug, Args)]
pub struct MetricsServerArgs {
    /// Address of the HTTPS API the APIService proxies to.
    #[arg(long, default_value = "0.0.0.0:4443")]
    pub secure_listen: SocketAddr,
    /// Plain-HTTP /healthz and /readyz for the kubelet's probes ("" = none).
    #[arg(long, default_value = "127.0.0.1:4444")]
    pub health_listen: String,
    /// The kubelet to scrape (`<url>/stats/summary`).
    #[arg(long, default_value = "http://127.0.0.1:10250")]
    pub kubelet_url: String,
    /// Seconds between scrapes.
    #[arg(long, default_value_t = 15)]
    pub metric_resolution_seconds: u64,
    /// Extra DNS names or IPs for the self-signed serving certificate.
    #[arg(long = "cert-name")]
    pub cert_names: Vec<String>,
}

/// Runs metrics-server in its own runtime until SIGTERM.
pub fn serve(args: MetricsServerArgs) -> Result<()> {
    let health_listen = match args.health_listen.trim() {
        "" => None,
        a => Some(a.parse::<SocketAddr>().map_err(|e| {
            anyhow::anyhow!("--health-listen {a:?} is not an address like 127.0.0.1:4444: {e}")
        })?),
    };
    if args.metric_resolution_seconds == 0 {
        anyhow::bail!("--metric-resolution-seconds must be at least 1");
    }
    let cfg = minik_metrics::Config {
        secure_listen: args.secure_listen,
        health_listen,
        kubelet_url: args.kubelet_url,
        resolution: Duration::from_secs(args.metric_resolution_seconds),
        cert_names: args.cert_names,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = minik_metrics::run(cfg) => r,
            _ = term.recv() => {
                tracing::info!("SIGTERM: metrics-server stops");
                Ok(())
            }
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}
