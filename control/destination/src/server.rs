//! Running the destination service: the index, its watchers, the gRPC
//! server on 8086 and the admin endpoint.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use linkerd2_proxy_api::destination::destination_server::DestinationServer;
use mesh_core::drain::Serving;
use mesh_core::grpc_server;
pub use mesh_core::grpc_server::ServerTls;

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
    /// Serve gRPC over TLS, as proxies expect of the control plane; plain
    /// when unset (development, tests).
    pub tls: Option<ServerTls>,
}

/// What it tells its caller once running.
pub type Started = grpc_server::Started<Index>;

/// A running destination service: where it listens, and how it stops.
pub type Running = Serving<Started>;

pub use mesh_core::grpc_server::StartError;

/// Binds, starts the watchers and serves.
pub async fn start(config: ServerConfig, client: kube::Client) -> Result<Running, StartError> {
    let index = Arc::new(Mutex::new(Index::new(config.index)));
    let watchers = k8s::spawn_watchers(client, index.clone());
    // Updates are small writes on long-lived streams: without NODELAY each
    // one can wait out the client's delayed ACK.
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(DestinationServer::new(DestinationService::new(
            index.clone(),
        )));
    grpc_server::start_indexed(
        "destination service",
        config.listen,
        config.admin_listen,
        config.tls,
        index,
        watchers,
        router,
        |admin| admin,
    )
    .await
}
