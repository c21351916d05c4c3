//! The command line: every command, flag and the environment variable each
//! flag also reads. Flags shared by every command live in [`GlobalArgs`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A Linkerd-compatible service mesh for running one application across
/// several Kubernetes clusters.
#[derive(Debug, Parser)]
#[command(name = "mesh", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts, named as kubectl names them.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file to use (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, env = "KUBECONFIG", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, global = true, env = "MESH_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,
    /// Log filter for diagnostics on stderr (`info`, `debug`, `mesh=trace`, …).
    /// kube's per-request error log is off by default: every failed request
    /// is also returned to the command, which explains it.
    #[arg(
        long,
        global = true,
        env = "MESH_LOG",
        default_value = "warn,kube_client::client::builder=off",
        value_name = "FILTER"
    )]
    pub log_level: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the version of this CLI, of the control plane (and with --proxy
    /// of the data plane), and of the Kubernetes release it runs locally.
    Version(VersionArgs),
    /// Start two local Kubernetes clusters, west and east, linked by a WAN
    /// (builds Kubernetes on first use).
    Up(UpArgs),
    /// Stop the clusters started by `mesh up` and remove everything they made.
    Down(StateArgs),
    /// Show or change the WAN between the local clusters.
    #[command(subcommand)]
    Wan(WanCommand),
    /// Render the control plane for `kubectl apply -f -`.
    Install(Box<crate::install::InstallArgs>),
    /// Render the installed control plane again with this CLI, for
    /// `kubectl apply -f -`: the values it was installed with (kept in
    /// linkerd-config) and its trust material and webhook certificate, with
    /// anything given now over them (a new issuer alone, a new anchors
    /// bundle alone).
    Upgrade(Box<crate::install::InstallArgs>),
    /// Check the cluster, the control plane and (with --proxy) the data plane;
    /// say what is wrong and how to fix it.
    Check(crate::check::CheckArgs),
    /// Render what removes the control plane and its CRDs, for
    /// `kubectl delete -f -`.
    Uninstall,
    /// Add the proxy to the workloads of YAML manifests (files or `-` for
    /// stdin), offline, and print them for `kubectl apply -f -`.
    Inject(InjectArgs),
    /// Workload identities and certificates.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// The routes, Servers and authorizations the policy controller serves
    /// for a workload's ports.
    Authz(AuthzArgs),
    /// What the control plane serves, for troubleshooting.
    #[command(subcommand)]
    Diagnostics(DiagnosticsCommand),
    /// The multicluster extension: gateways between clusters.
    #[command(subcommand)]
    Multicluster(MulticlusterCommand),
    /// The whole story on this machine: two linked clusters, podinfo in
    /// both, failover by success rate shown as it happens.
    Demo(crate::demo::DemoArgs),
    /// The failover extension: TrafficSplit weights moved by success rate.
    #[command(subcommand)]
    Failover(FailoverCommand),
    /// The observability extension: Prometheus, golden metrics per
    /// resource, who calls whom and whether it is secured.
    #[command(subcommand)]
    Viz(VizCommand),
    /// The Kubernetes binaries local clusters run.
    #[command(subcommand)]
    K8s(K8sCommand),
    /// mesh's container images: build them from the release binaries
    /// (no Docker needed) and push them to a registry.
    #[command(subcommand)]
    Images(crate::images::ImagesCommand),
    /// mesh's Helm charts, generated from the renderer `mesh install` uses.
    #[command(subcommand)]
    Charts(ChartsCommand),
}

#[derive(Debug, Subcommand)]
pub enum ChartsCommand {
    /// Write the charts (mesh-crds, mesh-control-plane, mesh-multicluster,
    /// mesh-failover, mesh-viz) from this CLI's renderers; the
    /// repository's `charts/` is this command's output.
    Generate {
        /// The directory to write them into.
        #[arg(long, env = "MESH_CHARTS_DIR", default_value = crate::install::chart::DEFAULT_DIR)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum DiagnosticsCommand {
    /// The policy the policy controller serves for a pod's port.
    Policy(DiagnosticsPolicyArgs),
    /// The routes the policy controller serves a Service's clients
    /// (HTTPRoutes, backends and weights, retries, timeouts).
    Outbound(DiagnosticsOutboundArgs),
}

#[derive(Debug, Args)]
pub struct DiagnosticsOutboundArgs {
    /// The Service's namespace.
    #[arg(long, short, env = "MESH_NAMESPACE")]
    pub namespace: Option<String>,
    /// The Service, with its port (`NAME:PORT`; 80 when absent).
    pub service: String,
    /// Show what a client in this namespace gets: its namespace's consumer
    /// routes for the Service, then the Service's own (default: a client
    /// in the Service's namespace, which gets only the Service's own).
    #[arg(long, env = "MESH_FROM_NAMESPACE")]
    pub from: Option<String>,
    /// Output format.
    #[arg(long, short, env = "MESH_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct DiagnosticsPolicyArgs {
    /// The pod's namespace.
    #[arg(long, short, env = "MESH_NAMESPACE")]
    pub namespace: Option<String>,
    /// The pod.
    pub pod: String,
    /// Its port.
    pub port: u16,
    /// Output format.
    #[arg(long, short, env = "MESH_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct AuthzArgs {
    /// The resource's namespace.
    #[arg(long, short, env = "MESH_NAMESPACE")]
    pub namespace: Option<String>,
    /// `deploy/NAME`, `pod/NAME`, or a Deployment's name.
    pub resource: String,
    /// Output format.
    #[arg(long, short, env = "MESH_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum VizCommand {
    /// Render viz (namespace linkerd-viz: Prometheus scraping every proxy)
    /// for `kubectl apply -f -`.
    Install(crate::viz::install::InstallArgs),
    /// Render what removes viz, for `kubectl delete -f -`.
    Uninstall(crate::viz::install::InstallArgs),
    /// Check viz: Prometheus running, answering, and scraping every meshed
    /// pod (by Prometheus's own word).
    Check(MulticlusterCheckArgs),
    /// Golden metrics per resource: success rate, requests per second,
    /// latency percentiles, open connections.
    Stat(crate::viz::stat::StatArgs),
    /// Who calls whom, and whether both sides presented identities.
    Edges(crate::viz::edges::EdgesArgs),
    /// Golden metrics per route of a Service's ServiceProfile, and
    /// [DEFAULT] for requests that matched none.
    Routes(crate::viz::routes::RoutesArgs),
    /// Live requests of a resource's pods, as their proxies see them (through
    /// the API server: RBAC decides who may tap).
    Tap(crate::viz::tap::TapArgs),
    /// The tap stream summed by source, destination, method and path:
    /// counts, best, worst and last latency, success rate.
    Top(crate::viz::top::TopArgs),
    /// Forward localhost:50750 to viz's dashboard and open it.
    Dashboard(crate::viz::dashboard::DashboardArgs),
}

#[derive(Debug, Subcommand)]
pub enum FailoverCommand {
    /// Render the failover controller (namespace linkerd-failover) for
    /// `kubectl apply -f -`.
    Install(crate::failover::install::InstallArgs),
    /// Every managed TrafficSplit: state, backends, weights, success rates,
    /// last transition and why.
    Status(FailoverStatusArgs),
}

#[derive(Debug, Args)]
pub struct FailoverStatusArgs {
    /// Only this namespace (every namespace by default).
    #[arg(long, short, env = "MESH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(long, short, env = "MESH_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct InjectArgs {
    /// Manifests to inject (`-` reads stdin).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// PEM trust anchors; read from the cluster's
    /// `linkerd-identity-trust-roots` ConfigMap when unset.
    #[arg(long, env = "MESH_IDENTITY_TRUST_ANCHORS_FILE", value_name = "FILE")]
    pub identity_trust_anchors_file: Option<PathBuf>,
    /// The proxy version to inject (the image tag).
    #[arg(long, env = "MESH_PROXY_VERSION", default_value = concat!("v", env!("CARGO_PKG_VERSION")))]
    pub proxy_version: String,
    /// YAML for kubectl (`table`, the default) or one JSON List (`json`).
    #[arg(long, short, env = "MESH_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum MulticlusterCommand {
    /// Render the extension (namespace linkerd-multicluster, the Link CRD,
    /// the gateway and its LoadBalancer Service) for `kubectl apply -f -`.
    Install(crate::multicluster::install::InstallArgs),
    /// Read this cluster (its gateway and read-only credentials) and render
    /// the Link, credentials and service mirror for the other cluster:
    /// `mesh --context=east multicluster link --cluster-name east | kubectl --context=west apply -f -`.
    Link(crate::multicluster::link::LinkArgs),
    /// Each linked cluster's gateway: alive, mirrored Services, probe latency.
    Gateways(GatewaysArgs),
    /// Check the extension and every Link: credentials, shared trust
    /// anchors, mirror controllers, gateways and mirror Services.
    Check(MulticlusterCheckArgs),
    /// Render the policy that lets a linked cluster's workloads (their
    /// identities cross the gateway) into a namespace of this cluster, for
    /// `kubectl apply -f -`.
    Allow(crate::multicluster::allow::AllowArgs),
    /// Render what removes a link from this cluster (mirror Services
    /// included), for `kubectl delete -f -`.
    Unlink(UnlinkArgs),
}

#[derive(Debug, Args)]
pub struct GatewaysArgs {
    /// Output format.
    #[arg(long, short, env = "MESH_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct MulticlusterCheckArgs {
    /// How long to wait for the extension's components before failing.
    #[arg(long, env = "MESH_CHECK_WAIT", default_value = "5m", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub wait: Duration,
    /// Output format.
    #[arg(long, short, env = "MESH_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct UnlinkArgs {
    /// The linked cluster's name.
    #[arg(long, env = "MESH_LINK_CLUSTER_NAME", value_name = "NAME")]
    pub cluster_name: String,
}

#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Describe a PEM certificate chain: identity, issuer, validity and the
    /// trust anchor it chains to.
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The PEM file (a leaf and its chain, an issuer, or a bundle of anchors); `-` for stdin.
    #[arg(env = "MESH_INSPECT_FILE")]
    pub file: PathBuf,
    /// A PEM bundle of trust anchors to check the chain against.
    #[arg(long, env = "MESH_IDENTITY_TRUST_ANCHORS_FILE", value_name = "FILE")]
    pub trust_anchors_file: Option<PathBuf>,
    /// Output format.
    #[arg(long, short, env = "MESH_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Print only the client's version, without asking the cluster.
    #[arg(long, env = "MESH_VERSION_CLIENT")]
    pub client: bool,
    /// Print only the versions, one per line (client, then server).
    #[arg(long, env = "MESH_VERSION_SHORT")]
    pub short: bool,
    /// Also print the versions the data plane's proxies run, with how many
    /// pods run each.
    #[arg(long, env = "MESH_VERSION_PROXY")]
    pub proxy: bool,
    /// With --proxy: only the proxies of this namespace [default: all].
    #[arg(long, short, env = "MESH_NAMESPACE", requires = "proxy")]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(long, short, env = "MESH_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct StateArgs {
    /// Where local clusters keep their certificates, data and logs.
    #[arg(long, env = "MESH_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// One-way delay on the WAN between west and east (`20ms`).
    #[arg(long, env = "MESH_WAN_DELAY", value_name = "DURATION")]
    pub wan_delay: Option<String>,
    /// Jitter added to the WAN delay (`5ms`; packets are never reordered).
    #[arg(long, env = "MESH_WAN_JITTER", value_name = "DURATION")]
    pub wan_jitter: Option<String>,
    /// Share of WAN packets dropped (`0.01` or `1%`).
    #[arg(long, env = "MESH_WAN_LOSS", value_name = "SHARE")]
    pub wan_loss: Option<String>,
    /// WAN bandwidth (`100mbit`).
    #[arg(long, env = "MESH_WAN_RATE", value_name = "RATE")]
    pub wan_rate: Option<String>,
    /// Route pod addresses between the clusters (a flat network); by default
    /// only LoadBalancer addresses are reachable across the WAN.
    #[arg(long, env = "MESH_FLAT_NETWORK")]
    pub flat: bool,
    /// The clusters' DNS domain.
    #[arg(long, env = "MESH_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Output format.
    #[arg(long, short, env = "MESH_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

impl UpArgs {
    /// The WAN flags as forwarder settings (`delay=20ms loss=0.01`).
    pub fn wan_settings(&self) -> String {
        [
            ("delay", &self.wan_delay),
            ("jitter", &self.wan_jitter),
            ("loss", &self.wan_loss),
            ("rate", &self.wan_rate),
        ]
        .iter()
        .filter_map(|(key, value)| value.as_ref().map(|v| format!("{key}={v}")))
        .collect::<Vec<_>>()
        .join(" ")
    }
}

#[derive(Debug, Subcommand)]
pub enum WanCommand {
    /// Print the WAN's settings.
    Show(StateArgs),
    /// Drop every packet between the clusters until `mesh wan restore`.
    Cut(StateArgs),
    /// Undo `mesh wan cut`.
    Restore(StateArgs),
    /// Change settings: `mesh wan set delay=20ms jitter=2ms loss=1% rate=100mbit`.
    Set {
        #[command(flatten)]
        state: StateArgs,
        /// `key=value` settings (delay, jitter, loss, rate, udp=drop|pass).
        #[arg(required = true, env = "MESH_WAN_SETTINGS")]
        settings: Vec<String>,
    },
    /// Remove every impairment (no delay, loss or rate limit; not cut).
    Clear(StateArgs),
}

#[derive(Debug, Subcommand)]
pub enum K8sCommand {
    /// Build etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
    /// kube-proxy, kubectl and CoreDNS from the pinned sources, once.
    Build(K8sBuildArgs),
    /// Print the directory that holds (or will hold) the binaries.
    Path,
}

#[derive(Debug, Args)]
pub struct K8sBuildArgs {
    /// Build into this directory instead of the cache.
    #[arg(long, env = "MESH_K8S_BIN_DIR", value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
}

/// How a command prints what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned text for people.
    Table,
    /// JSON for programs.
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli =
            Cli::try_parse_from(["mesh", "version", "--context", "west", "--kubeconfig", "/k"])
                .expect("parses");
        assert_eq!(cli.global.context.as_deref(), Some("west"));
        assert_eq!(cli.global.kubeconfig, Some(PathBuf::from("/k")));
    }

    #[test]
    fn every_flag_reads_an_environment_variable() {
        fn check(cmd: &clap::Command, path: &str) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") || arg.is_positional() {
                    continue;
                }
                assert!(
                    arg.get_env().is_some(),
                    "{path} --{id} has no environment variable"
                );
            }
            for sub in cmd.get_subcommands() {
                check(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        check(&Cli::command(), "mesh");
    }
}
