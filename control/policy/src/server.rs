//! Running the policy controller: the index, its watchers, the gRPC server
//! on 8090 and the admin endpoint (9990), stopped by the same drain as
//! every component.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use linkerd2_proxy_api::inbound::inbound_server_policies_server::InboundServerPoliciesServer;
use linkerd2_proxy_api::outbound::outbound_policies_server::OutboundPoliciesServer;
use mesh_core::drain::Serving;
use mesh_core::grpc_server::{self, ServerTls};

use crate::grpc::InboundPolicyService;
use crate::index::Index;
use crate::index::defaults::ClusterInfo;
use crate::k8s;

/// How the policy controller runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The gRPC listener (`0.0.0.0:8090`).
    pub listen: SocketAddr,
    /// The admin listener (`0.0.0.0:9990`).
    pub admin_listen: SocketAddr,
    /// What it knows of the cluster (networks, default policy).
    pub cluster: ClusterInfo,
    /// Serve gRPC over TLS with this identity; plain when unset.
    pub tls: Option<ServerTls>,
}

/// What it tells its caller once running.
pub type Started = grpc_server::Started<Index>;

/// A running policy controller.
pub type Running = Serving<Started>;

pub use mesh_core::grpc_server::StartError;

/// Binds, starts the watchers and serves.
pub async fn start(config: ServerConfig, client: kube::Client) -> Result<Running, StartError> {
    let networks = config.cluster.networks.clone();
    let domain = config.cluster.cluster_domain.clone();
    let index = Arc::new(Mutex::new(Index::new(config.cluster)));
    let mut watchers = k8s::spawn_watchers(client.clone(), index.clone());
    watchers
        .0
        .spawn(crate::route_status::run(client, index.clone()));
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(InboundServerPoliciesServer::new(InboundPolicyService::new(
            index.clone(),
            networks,
        )))
        .add_service(OutboundPoliciesServer::new(
            crate::outbound::grpc::OutboundPolicyService::new(index.clone(), &domain),
        ));
    let diagnosed = index.clone();
    let outbound_diagnosed = index.clone();
    grpc_server::start_indexed(
        "policy controller",
        config.listen,
        config.admin_listen,
        config.tls,
        index,
        watchers,
        router,
        |admin| {
            admin
                .with_json(crate::diagnostics::PATH, move |query| {
                    crate::diagnostics::answer(&diagnosed, query)
                })
                .with_json(crate::outbound::diagnostics::PATH, move |query| {
                    crate::outbound::diagnostics::answer(&outbound_diagnosed, query)
                })
        },
    )
    .await
}
