//! Named network namespaces (the ones `ip netns` lists), managed with
//! iproute2: creating them, running commands in them, and removing them
//! together with every process still inside. Everything a local cluster
//! creates in the network lives in namespaces named with one prefix, so
//! tearing down is "kill what is inside, delete the namespace" for each.

use std::path::Path;

use tokio::process::Command;

/// Where iproute2 keeps named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Why a network operation failed.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` failed: {reason}")]
pub struct NetError {
    /// The command that failed.
    pub command: String,
    /// What it printed, or why it did not run.
    pub reason: String,
}

/// Runs `program args…` and fails with its stderr when it fails.
pub async fn run(program: &str, args: &[&str]) -> Result<String, NetError> {
    let command = format!("{program} {}", args.join(" "));
    let output = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| NetError {
            command: command.clone(),
            reason: format!("{e} (is iproute2 installed? scripts/setup.sh installs it)"),
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(NetError {
            command,
            reason: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Runs `ip args…`.
pub async fn ip(args: &[&str]) -> Result<String, NetError> {
    run("ip", args).await
}

/// Runs `ip -n <netns> args…`.
pub async fn ip_in(netns: &str, args: &[&str]) -> Result<String, NetError> {
    let mut all = vec!["-n", netns];
    all.extend_from_slice(args);
    run("ip", &all).await
}

/// Creates a veth pair whose end `inner` goes into `netns`, and brings up
/// the end `outer` that stays here with address `outer_cidr`.
pub async fn veth_into(
    netns: &str,
    outer: &str,
    outer_cidr: &str,
    inner: &str,
) -> Result<(), NetError> {
    ip(&[
        "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", netns,
    ])
    .await?;
    ip(&["addr", "add", outer_cidr, "dev", outer]).await?;
    ip(&["link", "set", outer, "up"]).await?;
    Ok(())
}

/// Runs `program args…` inside `netns`.
pub async fn exec_in(netns: &str, program: &str, args: &[&str]) -> Result<String, NetError> {
    let mut all = vec!["netns", "exec", netns, program];
    all.extend_from_slice(args);
    run("ip", &all).await
}

/// Writes a sysctl inside `netns` (`net.ipv4.ip_forward` style key).
pub async fn sysctl_in(netns: &str, key: &str, value: &str) -> Result<(), NetError> {
    exec_in(netns, "sysctl", &["-qw", &format!("{key}={value}")])
        .await
        .map(drop)
}

/// The named namespaces whose name starts with `prefix`.
pub fn list_with_prefix(prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// Whether a named namespace exists.
pub fn exists(name: &str) -> bool {
    Path::new(NETNS_DIR).join(name).exists()
}

/// Kills every process inside `name` and deletes it (which also removes its
/// interfaces, their veth peers, its routes and its iptables rules).
pub async fn remove(name: &str) {
    if let Ok(pids) = ip(&["netns", "pids", name]).await {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    if let Err(e) = ip(&["netns", "del", name]).await {
        tracing::warn!("removing network namespace {name}: {e}");
    }
}

/// Removes every namespace whose name starts with `prefix`.
pub async fn remove_all_with_prefix(prefix: &str) {
    for name in list_with_prefix(prefix) {
        remove(&name).await;
    }
}

/// A shell snippet (for the janitor, which runs when no Rust code can) that
/// does what [`remove_all_with_prefix`] does.
pub fn shell_cleanup(prefix: &str) -> String {
    format!(
        "for ns in $(ls {NETNS_DIR} 2>/dev/null | grep '^{prefix}'); do \
           for p in $(ip netns pids \"$ns\" 2>/dev/null); do kill -KILL \"$p\" 2>/dev/null; done; \
           ip netns del \"$ns\" 2>/dev/null; \
         done"
    )
}
