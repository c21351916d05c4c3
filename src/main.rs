//! `mesh`: the command-line interface of the mesh service mesh.
//!
//! `main` parses the command line (see [`cli`]), sets up logging and hands
//! over to one module per command group under [`commands`].

mod check;
mod cli;
mod commands;
mod demo;
mod failover;
mod images;
mod install;
mod multicluster;
mod output;
mod viz;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    init_logging(&cli.global);
    match commands::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{} {e:#}", console::style("error:").red().bold());
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, filtered by `--log-level` / `MESH_LOG` (warnings by
/// default, so that command output stays readable).
fn init_logging(global: &cli::GlobalArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(&global.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
