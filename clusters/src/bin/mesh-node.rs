//! `mesh-node`: the host-side programs of the local clusters.
//!
//! - `mesh-node wan`: the WAN forwarder between two node namespaces.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
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
    }
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
