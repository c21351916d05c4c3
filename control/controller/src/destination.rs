//! `mesh-controller destination`: the destination service (Get, GetProfile).

use std::net::SocketAddr;

use clap::Args;
use mesh_destination::index::IndexConfig;
use mesh_destination::index::model::parse_ports;
use mesh_destination::server::{self, ServerConfig};

#[derive(Debug, Args)]
pub(crate) struct DestinationArgs {
    /// Where gRPC (Destination.Get / GetProfile) listens.
    #[arg(long, env = "MESH_DESTINATION_LISTEN", default_value = "0.0.0.0:8086")]
    listen: SocketAddr,
    /// Where /metrics, /ready and /live are served.
    #[arg(long, env = "MESH_ADMIN_LISTEN", default_value_t = crate::admin_listen(mesh_api::ports::DESTINATION_ADMIN))]
    admin_listen: SocketAddr,
    /// The cluster's DNS domain.
    #[arg(long, env = "MESH_CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    /// The control plane's namespace (part of workload identities).
    #[arg(long, env = "MESH_CONTROLLER_NAMESPACE", default_value = mesh_api::labels::CONTROL_PLANE_NAMESPACE)]
    controller_namespace: String,
    /// The trust domain of workload identities.
    #[arg(long, env = "MESH_IDENTITY_TRUST_DOMAIN", default_value = mesh_api::identity::DEFAULT_TRUST_DOMAIN)]
    identity_trust_domain: String,
    #[command(flatten)]
    serving: crate::serving_identity::ServingIdentityArgs,
    /// Ports treated as opaque when a Service does not say (comma list, ranges allowed).
    #[arg(long, env = "MESH_DEFAULT_OPAQUE_PORTS", default_value_t = mesh_api::ports::PortSet::default_opaque().to_string())]
    default_opaque_ports: String,
}

pub(crate) async fn run(args: DestinationArgs, client: kube::Client) -> anyhow::Result<()> {
    let tls = args.serving.server_tls()?;
    let config = ServerConfig {
        tls,
        listen: args.listen,
        admin_listen: args.admin_listen,
        index: IndexConfig {
            cluster_domain: args.cluster_domain,
            control_namespace: args.controller_namespace,
            trust_domain: args.identity_trust_domain,
            default_opaque_ports: parse_ports(&args.default_opaque_ports),
        },
    };
    let running = server::start(config, client).await?;
    running.until_terminated().await;
    Ok(())
}
