//! `mesh-controller <component>`: one binary for every control-plane
//! component, as Linkerd ships one controller image. Each component runs in
//! a cluster (in-cluster credentials) or outside one (`--kubeconfig`,
//! `--context`) for development and tests. Every component stops the same
//! way (`mesh_core::drain`): SIGTERM or SIGINT starts a drain bounded by
//! `CONTROLLER_GRACE`, and its `/ready` turns true only once its caches
//! have synced.

mod destination;
mod failover;
mod identity;
mod injector;
mod lease;
mod metrics_api;
mod mirror;
mod policy;
mod serving_identity;
mod tap;
mod web;

use clap::{Parser, Subcommand};

/// The mesh control plane.
#[derive(Debug, Parser)]
#[command(name = "mesh-controller", version, max_term_width = 100)]
struct Cli {
    /// Path to a kubeconfig; in-cluster credentials (or ~/.kube/config) when unset.
    #[arg(long, global = true, env = "KUBECONFIG", value_name = "PATH")]
    kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true, env = "MESH_CONTEXT", value_name = "NAME")]
    context: Option<String>,
    /// Log filter (`info`, `debug`, `mesh_identity=debug`, …).
    #[arg(long, global = true, env = "MESH_LOG", default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    component: Component,
}

#[derive(Debug, Subcommand)]
enum Component {
    /// The identity service: issues workload certificates (Identity.Certify).
    Identity(identity::IdentityArgs),
    /// The destination service: endpoints and profiles (Destination.Get, GetProfile).
    Destination(destination::DestinationArgs),
    /// The policy controller: who may reach each pod port (InboundServerPolicies).
    Policy(policy::PolicyArgs),
    /// The proxy injector: a MutatingWebhook that adds the proxy to pods.
    Injector(injector::InjectorArgs),
    /// The service mirror of one Link: a linked cluster's exported Services here.
    Mirror(mirror::MirrorArgs),
    /// The failover controller: TrafficSplit weights by success rate and readiness.
    Failover(failover::FailoverArgs),
    /// viz's tap: live requests from the proxies, behind the API server (APIService v1alpha1.tap.linkerd.io).
    Tap(tap::TapArgs),
    /// viz's dashboard: namespaces, workloads, clusters and failover, on port 8084.
    Web(web::WebArgs),
    /// viz's metrics-api: Linkerd viz's gRPC API (stat, edges, routes), on port 8085.
    MetricsApi(metrics_api::MetricsApiArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log_level)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let client =
        mesh_api::kube_client::client(cli.kubeconfig.as_deref(), cli.context.as_deref()).await?;
    match cli.component {
        Component::Identity(args) => identity::run(args, client).await,
        Component::Destination(args) => destination::run(args, client).await,
        Component::Policy(args) => policy::run(args, client).await,
        Component::Injector(args) => injector::run(args, client).await,
        Component::Mirror(args) => mirror::run(args, client).await,
        Component::Failover(args) => failover::run(args, client).await,
        Component::Tap(args) => tap::run(args, client).await,
        Component::Web(args) => web::run(args, client).await,
        Component::MetricsApi(args) => metrics_api::run(args, client).await,
    }
}

/// The admin listener on every interface at `port`, the default of
/// each component's `--admin-listen`.
pub(crate) fn admin_listen(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([0, 0, 0, 0], port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent_and_every_flag_has_an_env_var() {
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        for sub in cmd.get_subcommands() {
            for arg in sub.get_arguments().chain(cmd.get_arguments()) {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                assert!(
                    arg.get_env().is_some(),
                    "{} --{id} has no environment variable",
                    sub.get_name()
                );
            }
        }
    }
}
