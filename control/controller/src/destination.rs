//! `mesh-controller destination`: the destination service (Get, GetProfile).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use mesh_core::identity::IdentityConfig;
use mesh_core::identity::schedule::Backoff;

use clap::Args;
use mesh_destination::index::IndexConfig;
use mesh_destination::index::model::parse_ports;
use mesh_destination::server::{self, ServerConfig, ServerTls};

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
    /// Serve gRPC over mutual TLS as this identity (what proxies expect,
    /// `linkerd-destination.<ns>.serviceaccount.identity.<ns>.<trust domain>`),
    /// with a certificate from the identity service; plain when unset.
    #[arg(
        long,
        env = "MESH_IDENTITY_LOCAL_NAME",
        value_name = "NAME",
        requires = "identity_trust_anchors_file"
    )]
    identity_local_name: Option<String>,
    /// The trust anchors (PEM) for that certificate.
    #[arg(long, env = "MESH_IDENTITY_TRUST_ANCHORS_FILE", value_name = "FILE")]
    identity_trust_anchors_file: Option<PathBuf>,
    /// The identity service's address.
    #[arg(
        long,
        env = "MESH_IDENTITY_ADDR",
        default_value = "linkerd-identity-headless.linkerd.svc.cluster.local.:8080"
    )]
    identity_addr: String,
    /// The identity service's own identity.
    #[arg(
        long,
        env = "MESH_IDENTITY_SVC_NAME",
        default_value = "linkerd-identity.linkerd.serviceaccount.identity.linkerd.cluster.local"
    )]
    identity_svc_name: String,
    /// The projected ServiceAccount token (audience identity.l5d.io) to certify with.
    #[arg(long, env = "MESH_IDENTITY_TOKEN_FILE", default_value = mesh_api::labels::IDENTITY_TOKEN_PATH)]
    identity_token_file: PathBuf,
    /// Ports treated as opaque when a Service does not say (comma list, ranges allowed).
    #[arg(long, env = "MESH_DEFAULT_OPAQUE_PORTS", default_value_t = mesh_api::ports::PortSet::default_opaque().to_string())]
    default_opaque_ports: String,
}

pub(crate) async fn run(args: DestinationArgs, client: kube::Client) -> anyhow::Result<()> {
    let tls = match (&args.identity_local_name, &args.identity_trust_anchors_file) {
        (Some(local_identity), Some(anchors)) => Some(ServerTls {
            local_identity: local_identity.clone(),
            trust_anchors_pem: std::fs::read_to_string(anchors)
                .with_context(|| format!("--identity-trust-anchors-file {}", anchors.display()))?,
            identity: IdentityConfig {
                addr: args.identity_addr.clone(),
                server_identity: args.identity_svc_name.clone(),
                token_path: args.identity_token_file.clone(),
                // At install the identity service may come up after this
                // one: retry often enough that proxies are not kept waiting.
                backoff: Backoff {
                    min: std::time::Duration::from_millis(500),
                    max: std::time::Duration::from_secs(5),
                },
            },
        }),
        _ => None,
    };
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
