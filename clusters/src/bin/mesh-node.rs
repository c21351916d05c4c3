//! `mesh-node`: the host-side programs of the local clusters.
//!
//! - `mesh-node wan`: the WAN forwarder between two node namespaces.
//! - `mesh-node agent`: the node agent (in place of the kubelet).
//! - `mesh-node exec`: enters a pod and runs a command (used by the agent).

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use mesh_clusters::node::shim::{self, Bind, Entry};
use mesh_clusters::node::{self as agent, AgentConfig};
use mesh_clusters::wan::{self, Impairments};
use tokio::sync::{Mutex, watch};

#[derive(Debug, Parser)]
#[command(
    name = "mesh-node",
    about = "Host-side programs of mesh's local clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log filter.
    #[arg(long, global = true, env = "MESH_LOG", default_value = "info")]
    log_level: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Forwards packets between a TUN device in each of two network
    /// namespaces, with delay, jitter, loss, rate and cut.
    Wan {
        /// The first namespace (a name under /run/netns).
        #[arg(long, env = "MESH_WAN_WEST_NETNS")]
        west_netns: String,
        /// The second namespace.
        #[arg(long, env = "MESH_WAN_EAST_NETNS")]
        east_netns: String,
        /// The TUN device's name in both.
        #[arg(long, env = "MESH_WAN_INTERFACE", default_value = "wan0")]
        interface: String,
        /// The Unix socket that takes commands (`set delay=20ms`, `cut`, …).
        #[arg(long, env = "MESH_WAN_CONTROL")]
        control: PathBuf,
        /// Initial settings, as for the `set` command (`delay=20ms loss=0.01`).
        #[arg(long, env = "MESH_WAN_SETTINGS", default_value = "")]
        settings: String,
    },
    /// Runs the pods bound to this node.
    Agent(AgentArgs),
    /// Enters a pod's namespaces and runs a command.
    Exec {
        /// The pod's network namespace.
        #[arg(long)]
        netns: String,
        /// The pod's hostname.
        #[arg(long)]
        hostname: Option<String>,
        /// SOURCE:TARGET[:ro] bind mounts.
        #[arg(long = "bind")]
        binds: Vec<Bind>,
        /// Working directory.
        #[arg(long)]
        workdir: Option<PathBuf>,
        /// The user id to run as.
        #[arg(long)]
        uid: Option<u32>,
        /// The group id to run as (0 when only --uid is given).
        #[arg(long, requires = "uid")]
        gid: Option<u32>,
        /// The command.
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
struct AgentArgs {
    /// The admin kubeconfig.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// The Node's name.
    #[arg(long, env = "MESH_NODE_NAME")]
    node_name: String,
    /// The node's address (its InternalIP).
    #[arg(long, env = "MESH_NODE_IP")]
    node_ip: std::net::Ipv4Addr,
    /// Where pods keep their files.
    #[arg(long, env = "MESH_NODE_STATE_DIR")]
    state_dir: PathBuf,
    /// Prefix of pod network namespaces.
    #[arg(long, env = "MESH_NODE_POD_NETNS_PREFIX")]
    pod_netns_prefix: String,
    /// The cluster DNS Service address.
    #[arg(long, env = "MESH_NODE_DNS_IP")]
    dns_ip: std::net::Ipv4Addr,
    /// The cluster domain.
    #[arg(long, env = "MESH_CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    /// The `kubernetes` Service address.
    #[arg(long, env = "MESH_NODE_KUBERNETES_SERVICE_IP")]
    kubernetes_service_ip: std::net::Ipv4Addr,
    /// Where the Kubernetes binaries are.
    #[arg(long, env = "MESH_K8S_BIN_DIR")]
    k8s_bin_dir: PathBuf,
    /// The cluster's pgids file (every container's process group is added).
    #[arg(long, env = "MESH_NODE_PGIDS_FILE")]
    pgids_file: Option<PathBuf>,
    /// The pool LoadBalancer Services get addresses from (none: no
    /// addresses are given).
    #[arg(long, env = "MESH_NODE_LB_POOL")]
    lb_pool: Option<mesh_clusters::topology::Cidr>,
    /// The interface load-balancer addresses are put on.
    #[arg(long, env = "MESH_NODE_LB_INTERFACE", default_value = "wan0")]
    lb_interface: String,
    /// The kubelet API's serving certificate (PEM); with the key and the
    /// client CA, the agent serves `kubectl logs` on port 10250.
    #[arg(long, env = "MESH_NODE_TLS_CERT_FILE", requires_all = ["tls_private_key_file", "client_ca_file"])]
    tls_cert_file: Option<PathBuf>,
    /// Its key (PEM).
    #[arg(long, env = "MESH_NODE_TLS_PRIVATE_KEY_FILE")]
    tls_private_key_file: Option<PathBuf>,
    /// The CA the API server's client certificate chains to (PEM).
    #[arg(long, env = "MESH_NODE_CLIENT_CA_FILE")]
    client_ca_file: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Exec {
        netns,
        hostname,
        binds,
        workdir,
        uid,
        gid,
        argv,
    } = cli.command
    {
        // No runtime and no threads: namespaces are per thread.
        let error = shim::enter_and_exec(&Entry {
            netns,
            hostname,
            binds,
            workdir,
            user: uid.map(|uid| (uid, gid.unwrap_or(0))),
            argv,
        });
        eprintln!("mesh-node exec: {error:#}");
        std::process::exit(127);
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log_level))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    match cli.command {
        Command::Wan {
            west_netns,
            east_netns,
            interface,
            control,
            settings,
        } => {
            // One thread: the TUN devices are made by this thread after it
            // enters each namespace in turn.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(run_wan(
                &west_netns,
                &east_netns,
                &interface,
                control,
                &settings,
            ))
        }
        Command::Agent(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(run_agent(args))
        }
        Command::Exec { .. } => unreachable!("handled above"),
    }
}

async fn run_agent(args: AgentArgs) -> anyhow::Result<()> {
    let client = mesh_clusters::control_plane::client_for(&args.kubeconfig).await?;
    let mesh_bin_dir = std::env::current_exe()?
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    agent::run(
        client,
        AgentConfig {
            node_name: args.node_name,
            node_ip: args.node_ip,
            state_dir: args.state_dir,
            pod_netns_prefix: args.pod_netns_prefix,
            dns_ip: args.dns_ip,
            cluster_domain: args.cluster_domain,
            kubernetes_service: (args.kubernetes_service_ip, 443),
            mesh_bin_dir,
            k8s_bin_dir: args.k8s_bin_dir,
            pgids_file: args.pgids_file,
            load_balancer: args.lb_pool.map(|pool| (pool, args.lb_interface)),
            kubelet_tls: match (
                args.tls_cert_file,
                args.tls_private_key_file,
                args.client_ca_file,
            ) {
                (Some(cert), Some(key), Some(client_ca)) => Some(agent::kubelet_api::KubeletTls {
                    cert,
                    key,
                    client_ca,
                }),
                _ => None,
            },
        },
    )
    .await
}

async fn run_wan(
    west: &str,
    east: &str,
    interface: &str,
    control: PathBuf,
    settings: &str,
) -> anyhow::Result<()> {
    let mut initial = Impairments::default();
    if !settings.trim().is_empty() {
        initial
            .apply_command(&format!("set {settings}"))
            .map_err(|e| anyhow::anyhow!("--settings: {e}"))?;
    }
    let home = std::fs::File::open("/proc/self/ns/net")?;
    let west_tun = Arc::new(tun_in(west, interface)?);
    let east_tun = Arc::new(tun_in(east, interface)?);
    nix::sched::setns(home.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
    let (tx, rx) = watch::channel(initial);
    let shared = Arc::new(Mutex::new(tx));
    tracing::info!(west, east, interface, "WAN up: {}", initial.describe());
    tokio::spawn(wan::serve_control(control, shared));
    let there = tokio::spawn(wan::forward(west_tun.clone(), east_tun.clone(), rx.clone()));
    let back = tokio::spawn(wan::forward(east_tun, west_tun, rx));
    let _ = tokio::join!(there, back);
    Ok(())
}

fn tun_in(netns: &str, interface: &str) -> anyhow::Result<tokio_tun::Tun> {
    let path = format!("{}/{netns}", mesh_clusters::netns::NETNS_DIR);
    let ns = std::fs::File::open(&path)
        .map_err(|e| anyhow::anyhow!("opening network namespace {path}: {e}"))?;
    nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| anyhow::anyhow!("entering network namespace {netns}: {e}"))?;
    let mut tuns = tokio_tun::Tun::builder()
        .name(interface)
        .build()
        .map_err(|e| anyhow::anyhow!("creating TUN device {interface} in {netns}: {e}"))?;
    tuns.pop()
        .ok_or_else(|| anyhow::anyhow!("no TUN device made in {netns}"))
}
