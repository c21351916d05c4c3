//! The command line: every command, flag and the environment variable each
//! flag also reads. Flags shared by every command live in [`GlobalArgs`].

use std::path::PathBuf;

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
    /// Print the version of this CLI and of the Kubernetes release it runs locally.
    Version(VersionArgs),
    /// Start the local Kubernetes cluster on this machine (builds it on first use).
    Up(StateArgs),
    /// Stop the local cluster started by `mesh up` and remove its files.
    Down(StateArgs),
    /// Render the control plane for `kubectl apply -f -`.
    Install(crate::install::InstallArgs),
    /// Workload identities and certificates.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// The Kubernetes binaries local clusters run.
    #[command(subcommand)]
    K8s(K8sCommand),
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
