//! `mesh-podinfo`: a podinfo-compatible demo app.
//!
//! The local clusters run it for the image `ghcr.io/stefanprodan/podinfo`
//! (see `clusters/images.toml`), so podinfo manifests from its docs run
//! unchanged. It serves HTTP/1.1, HTTP/2 (prior knowledge) and gRPC's
//! health check on one port,
//! answers with the pod's hostname, and can be told to fail a share of
//! requests or to answer slowly (`MESH_DEMO_ERROR_RATE`, `MESH_DEMO_DELAY`)
//! while staying Ready: the brown-out the failover controller must see.
//! `mesh-podinfo podcli check http …` is podinfo's probe helper;
//! `mesh-podinfo load --rps 50 URL` is the demo's load generator.

mod args;
mod faults;
mod grpc;
mod load;
mod podcli;
mod routes;

use std::net::{Ipv6Addr, SocketAddr};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::routes::App;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // `mesh-podinfo podcli …` (or the binary called `podcli`): the checker.
    let argv: Vec<String> = std::env::args().collect();
    let called = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_owned());
    if called.as_deref() == Some("podcli") {
        std::process::exit(podcli::run(&argv[1..]).await);
    }
    if argv.get(1).map(String::as_str) == Some("podcli") {
        std::process::exit(podcli::run(&argv[2..]).await);
    }
    // `mesh-podinfo load …`: the demo's steady load generator.
    if called.as_deref() == Some("load") || argv.get(1).map(String::as_str) == Some("load") {
        let skip = if called.as_deref() == Some("load") {
            1
        } else {
            2
        };
        std::process::exit(load::run(&argv[skip..]).await);
    }
    if let Err(e) = run().await {
        eprintln!("mesh-podinfo: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    let settings = args::parse(std::env::args(), |key| std::env::var(key).ok())?;
    let hostname = hostname();
    let listener = bind(settings.port).await?;
    let shutdown_timeout = settings.shutdown_timeout;
    eprintln!(
        "mesh-podinfo: listening on {} as {hostname} (error rate {}, delay {:?})",
        listener.local_addr()?,
        settings.error_rate,
        settings.delay
    );
    let app = App::new(settings, hostname);
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let service = service_fn(move |request| {
                    let app = app.clone();
                    async move { Ok::<_, std::convert::Infallible>(app.handle_call(request).await) }
                });
                let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    app.set_ready(false);
    eprintln!("mesh-podinfo: shutting down, draining for up to {shutdown_timeout:?}");
    if tokio::time::timeout(shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!("mesh-podinfo: in-flight requests did not finish in time");
    }
    Ok(())
}

/// Listens on every address, IPv6 and IPv4 alike where the host allows it.
async fn bind(port: u16) -> anyhow::Result<TcpListener> {
    match TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))).await {
        Ok(listener) => Ok(listener),
        Err(_) => Ok(TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port)))
            .await
            .map_err(|e| anyhow::anyhow!("listening on port {port}: {e}"))?),
    }
}

/// The host name, as podinfo reports it (the pod's name in a cluster).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}
