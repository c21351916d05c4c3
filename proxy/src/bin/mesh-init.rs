//! `mesh-init`: the init container of meshed pods. Installs the iptables
//! rules that send the pod's traffic through its proxy (see
//! `mesh_proxy::init`), or prints them with `--dry-run`. Flags carry
//! linkerd2-proxy-init's names.

use std::io::Write;
use std::process::{Command, ExitCode, Stdio};

use clap::Parser;
use mesh_proxy::init::{Rules, parse_ports};

/// Installs the iptables rules of a meshed pod.
#[derive(Debug, Parser)]
#[command(name = "mesh-init", version)]
struct Args {
    /// The inbound proxy's port.
    #[arg(long, env = "MESH_INIT_INCOMING_PROXY_PORT", default_value_t = 4143)]
    incoming_proxy_port: u16,
    /// The outbound proxy's port.
    #[arg(long, env = "MESH_INIT_OUTGOING_PROXY_PORT", default_value_t = 4140)]
    outgoing_proxy_port: u16,
    /// The UID the proxy runs as; its connections are not redirected.
    #[arg(long, env = "MESH_INIT_PROXY_UID", default_value_t = 2102)]
    proxy_uid: u32,
    /// Inbound ports that bypass the proxy (`4190,4191,5000-5010`).
    #[arg(long, env = "MESH_INIT_INBOUND_PORTS_TO_IGNORE", default_value = "")]
    inbound_ports_to_ignore: String,
    /// Outbound ports that bypass the proxy.
    #[arg(long, env = "MESH_INIT_OUTBOUND_PORTS_TO_IGNORE", default_value = "")]
    outbound_ports_to_ignore: String,
    /// Networks (CIDRs, comma-separated) whose outbound traffic bypasses
    /// the proxy.
    #[arg(long, env = "MESH_INIT_SUBNETS_TO_IGNORE", default_value = "")]
    subnets_to_ignore: String,
    /// Print the rules instead of installing them.
    #[arg(long, alias = "simulate", env = "MESH_INIT_DRY_RUN")]
    dry_run: bool,
    /// The iptables-save program.
    #[arg(
        long,
        env = "MESH_INIT_FIREWALL_SAVE_BIN_PATH",
        default_value = "iptables-save"
    )]
    firewall_save_bin_path: String,
    /// The iptables-restore program.
    #[arg(
        long,
        env = "MESH_INIT_FIREWALL_RESTORE_BIN_PATH",
        default_value = "iptables-restore"
    )]
    firewall_restore_bin_path: String,
}

fn rules(args: &Args) -> Result<Rules, String> {
    Ok(Rules {
        inbound_port: args.incoming_proxy_port,
        outbound_port: args.outgoing_proxy_port,
        proxy_uid: args.proxy_uid,
        inbound_skip: parse_ports(&args.inbound_ports_to_ignore)
            .map_err(|e| format!("--inbound-ports-to-ignore: {e}"))?,
        outbound_skip: parse_ports(&args.outbound_ports_to_ignore)
            .map_err(|e| format!("--outbound-ports-to-ignore: {e}"))?,
        skip_networks: args
            .subnets_to_ignore
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse().map_err(|_| {
                    format!("--subnets-to-ignore: {s:?} is not a network such as 10.0.0.0/8")
                })
            })
            .collect::<Result<_, _>>()?,
    })
}

fn install(args: &Args, rules: &Rules) -> Result<(), String> {
    let saved = Command::new(&args.firewall_save_bin_path)
        .args(["-t", "nat"])
        .output()
        .map_err(|e| format!("{}: {e}", args.firewall_save_bin_path))?;
    if !saved.status.success() {
        return Err(format!(
            "{} -t nat: {}",
            args.firewall_save_bin_path,
            String::from_utf8_lossy(&saved.stderr).trim()
        ));
    }
    let input = rules.restore_input(&String::from_utf8_lossy(&saved.stdout));
    let mut restore = Command::new(&args.firewall_restore_bin_path)
        .arg("--noflush")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", args.firewall_restore_bin_path))?;
    restore
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(input.as_bytes())
        .map_err(|e| format!("{}: {e}", args.firewall_restore_bin_path))?;
    let out = restore
        .wait_with_output()
        .map_err(|e| format!("{}: {e}", args.firewall_restore_bin_path))?;
    if !out.status.success() {
        return Err(format!(
            "{} refused the rules: {}\n{input}",
            args.firewall_restore_bin_path,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    print!("{input}");
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = rules(&args).and_then(|rules| {
        if args.dry_run {
            print!("{}", rules.restore_input(""));
            Ok(())
        } else {
            install(&args, &rules)
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mesh-init: {e}");
            ExitCode::FAILURE
        }
    }
}
