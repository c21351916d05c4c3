//! Running the destination service: the index, its watchers, the gRPC
//! server on 8086 and the admin endpoint.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use linkerd2_proxy_api::destination::destination_server::DestinationServer;
use mesh_proxy::admin::Admin;
use mesh_proxy::drain::Drain;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::grpc::DestinationService;
use crate::index::{Index, IndexConfig};
use crate::k8s;

/// How the destination service runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The gRPC listener (`0.0.0.0:8086`).
    pub listen: SocketAddr,
    /// The admin listener (`0.0.0.0:9996`).
    pub admin_listen: SocketAddr,
    /// The index's view of the cluster.
    pub index: IndexConfig,
}

/// A running destination service.
#[derive(Debug)]
pub struct Running {
    /// Where gRPC listens.
    pub addr: SocketAddr,
    /// Where the admin endpoint listens.
    pub admin_addr: SocketAddr,
    /// The index (for tests and benchmarks).
    pub index: Arc<Mutex<Index>>,
    drain: Drain,
}

/// How long open streams get to end on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

impl Running {
    /// Stops serving; open streams get a few seconds, then are cut.
    pub async fn shutdown(self) {
        self.drain.shutdown(SHUTDOWN_GRACE).await;
    }

    /// Runs until `signal`, then shuts down.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }
}

/// Binds, starts the watchers and serves.
pub async fn start(config: ServerConfig, client: kube::Client) -> anyhow::Result<Running> {
    let index = Arc::new(Mutex::new(Index::new(config.index)));
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let admin_listener = TcpListener::bind(config.admin_listen).await?;
    let admin_addr = admin_listener.local_addr()?;
    let mut drain = Drain::new();
    let mut watchers = k8s::spawn_watchers(client, index.clone());
    let watch_stop = drain.signaled();
    drain.spawn(async move {
        watch_stop.await;
        watchers.shutdown().await;
    });
    let service = DestinationService::new(index.clone());
    let grpc_stop = drain.signaled();
    drain.spawn(async move {
        // Updates are small writes on long-lived streams: without NODELAY
        // each one can wait out the client's delayed ACK.
        let incoming = tonic::transport::server::TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(std::time::Duration::from_secs(10)));
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(DestinationServer::new(service))
            .serve_with_incoming_shutdown(incoming, grpc_stop)
            .await
        {
            tracing::error!("destination gRPC server failed: {e}");
        }
    });
    let registry = Registry::default();
    let admin = Admin::new(Arc::new(registry), || true);
    drain.spawn(admin.serve(admin_listener, drain.signaled()));
    tracing::info!(%addr, %admin_addr, "destination service started");
    Ok(Running {
        addr,
        admin_addr,
        index,
        drain,
    })
}
