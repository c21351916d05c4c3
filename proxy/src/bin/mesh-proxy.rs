//! `mesh-proxy`: the sidecar of meshed pods, configured by the
//! `LINKERD2_PROXY_*` environment (see `mesh_proxy::config`).

use std::process::ExitCode;

fn main() -> ExitCode {
    let config = match mesh_proxy::config::Config::from_lookup(|k| std::env::var(k).ok()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("mesh-proxy: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&config.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,mesh_proxy=info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mesh-proxy: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(mesh_proxy::app::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mesh-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}
