//! minik: a local single-node Kubernetes. `minik start`, then the real kubectl.
//! This file only parses the command line and dispatches; each command lives
//! in `src/cli/<command>.rs`.

mod addons;
mod api;
mod certs;
mod cli;
mod driver;
mod kubeconfig;
mod node;
mod profile;
mod ui;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "minik",
    version,
    about = "A local single-node Kubernetes cluster: `minik start`, then kubectl."
)]
struct Cli {
    /// The cluster (profile) to act on.
    #[arg(
        short = 'p',
        long = "profile",
        global = true,
        default_value = "minik",
        env = "MINIK_PROFILE"
    )]
    profile: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start (or create) the cluster and point kubectl at it.
    Start(cli::start::StartArgs),
    /// Stop the cluster, keeping its state.
    Stop,
    /// Delete the cluster and everything it made on this machine.
    Delete(cli::delete::DeleteArgs),
    /// Show whether the host, kubelet, API server and kubeconfig are fine.
    Status,
    /// Print a Service's URL, or open it in the browser.
    Service(cli::service::ServiceArgs),
    /// Run kubectl against this cluster: `minik kubectl -- get pods`.
    Kubectl(cli::kubectl::KubectlArgs),
    /// Open the minik dashboard in the browser (`--url` prints the URL).
    Dashboard(cli::dashboard::DashboardArgs),
    /// List, enable or disable addons: `minik addons enable dashboard`.
    Addons(cli::addons::AddonsArgs),
    /// Load, list and remove images on the node: `minik image load app.tar`.
    Image(cli::image::ImageArgs),
    /// Print the node's IP address.
    Ip,
    /// Open a shell in the VM, or run a command there: `minik ssh -- uptime`.
    Ssh(cli::node_access::SshArgs),
    /// Print the agent's log (`-f` to follow).
    Logs(cli::node_access::LogsArgs),
    /// Print minik's version.
    Version,
    /// Run the node agent (used by `start`; not for people).
    #[command(hide = true)]
    Node(node::NodeArgs),
    /// Serve the dashboard inside its pod (the dashboard addon's container).
    #[command(hide = true, name = "dashboard-server")]
    DashboardServer(cli::dashboard::ServerArgs),
    /// Serve metrics.k8s.io inside its pod (the metrics-server addon's container).
    #[command(hide = true, name = "metrics-server")]
    MetricsServer(cli::metrics_server::MetricsServerArgs),
    /// Serve Ingresses on ports 80/443 (the ingress addon's container).
    #[command(hide = true, name = "ingress-controller")]
    IngressController(cli::ingress_controller::IngressControllerArgs),
    /// Serve a Docker registry (the registry addon's container).
    #[command(hide = true, name = "registry-server")]
    RegistryServer(cli::registry_server::RegistryServerArgs),
    /// Provision hostPath volumes (the storage-provisioner addon's container).
    #[command(hide = true, name = "storage-provisioner")]
    StorageProvisioner(cli::storage_provisioner::ProvisionerArgs),
}

fn main() {
    let cli = Cli::parse();
    if let Command::Node(args) = cli.command {
        init_agent_logging();
        if let Err(e) = node::run(args) {
            tracing::error!("{e:#}");
            eprintln!("minik node: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    if let Command::DashboardServer(args) = cli.command {
        init_agent_logging();
        if let Err(e) = cli::dashboard::serve_in_cluster(args) {
            tracing::error!("{e:#}");
            std::process::exit(1);
        }
        return;
    }
    if let Command::IngressController(args) = cli.command {
        init_agent_logging();
        if let Err(e) = cli::ingress_controller::run(args) {
            tracing::error!("{e:#}");
            std::process::exit(1);
        }
        return;
    }
    if let Command::RegistryServer(args) = cli.command {
        init_agent_logging();
        if let Err(e) = cli::registry_server::run(args) {
            tracing::error!("{e:#}");
            std::process::exit(1);
        }
        return;
    }
    if let Command::StorageProvisioner(args) = cli.command {
        init_agent_logging();
        if let Err(e) = cli::storage_provisioner::run(args) {
            tracing::error!("{e:#}");
            std::process::exit(1);
        }
        return;
    }
    if let Command::MetricsServer(args) = cli.command {
        init_agent_logging();
        if let Err(e) = cli::metrics_server::serve(args) {
            tracing::error!("{e:#}");
            std::process::exit(1);
        }
        return;
    }
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            ui::error(format!("{e:#}"));
            1
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let profile = profile::Profile::new(&cli.profile)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Start(a) => rt.block_on(cli::start::run(&profile, a)).map(|_| 0),
        Command::Stop => rt.block_on(cli::stop::run(&profile)).map(|_| 0),
        Command::Delete(a) => rt.block_on(cli::delete::run(&profile, a)).map(|_| 0),
        Command::Status => rt.block_on(cli::status::run(&profile)),
        Command::Service(a) => rt.block_on(cli::service::run(&profile, a)).map(|_| 0),
        Command::Kubectl(a) => cli::kubectl::run(&profile, a),
        Command::Dashboard(a) => rt.block_on(cli::dashboard::run(&profile, a)).map(|_| 0),
        Command::Addons(a) => rt.block_on(cli::addons::run(&profile, a)).map(|_| 0),
        Command::Image(a) => rt.block_on(cli::image::run(&profile, a)).map(|_| 0),
        Command::Ip => cli::node_access::ip(&profile),
        Command::Ssh(a) => cli::node_access::ssh(&profile, a),
        Command::Logs(a) => cli::node_access::logs(&profile, a),
        Command::Version => {
            println!("minik version: v{}", env!("CARGO_PKG_VERSION"));
            println!("kubernetes version: {}", cli::KUBERNETES_VERSION);
            Ok(0)
        }
        Command::Node(_) => unreachable!("handled in main"),
        Command::DashboardServer(_) => unreachable!("handled in main"),
        Command::MetricsServer(_) => unreachable!("handled in main"),
        Command::IngressController(_) => unreachable!("handled in main"),
        Command::StorageProvisioner(_) => unreachable!("handled in main"),
        Command::RegistryServer(_) => unreachable!("handled in main"),
    }
}

fn init_agent_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MINIK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}
