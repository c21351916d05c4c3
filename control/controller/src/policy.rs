//! `mesh-controller policy`: the policy controller (InboundServerPolicies
//! and OutboundPolicies).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use mesh_policy::index::defaults::{ClusterInfo, DefaultPolicy};
use mesh_policy::server::{self, ServerConfig};

#[derive(Debug, Args)]
pub(crate) struct PolicyArgs {
    /// Where gRPC (InboundServerPolicies.GetPort / WatchPort) listens.
    #[arg(long, env = "MESH_POLICY_LISTEN", default_value_t = crate::admin_listen(mesh_api::ports::POLICY))]
    listen: SocketAddr,
    /// Where /metrics, /ready and /live are served.
    #[arg(long, env = "MESH_ADMIN_LISTEN", default_value_t = crate::admin_listen(mesh_api::ports::POLICY_ADMIN))]
    admin_listen: SocketAddr,
    /// The cluster's pod and node networks (`clusterNetworks`), for the
    /// `cluster-*` default policies and authorizations that name no network.
    #[arg(long, env = "MESH_CLUSTER_NETWORKS", default_value = mesh_api::ports::DEFAULT_CLUSTER_NETWORKS)]
    cluster_networks: String,
    /// The default inbound policy (`proxy.defaultInboundPolicy`):
    /// all-unauthenticated, all-authenticated, cluster-unauthenticated,
    /// cluster-authenticated, deny or audit.
    #[arg(
        long,
        env = "MESH_DEFAULT_INBOUND_POLICY",
        default_value = "all-unauthenticated"
    )]
    default_policy: String,
    /// The control plane's namespace (part of workload identities).
    #[arg(long, env = "MESH_CONTROLLER_NAMESPACE", default_value = mesh_api::labels::CONTROL_PLANE_NAMESPACE)]
    controller_namespace: String,
    /// The trust domain of workload identities.
    #[arg(long, env = "MESH_IDENTITY_TRUST_DOMAIN", default_value = mesh_api::identity::DEFAULT_TRUST_DOMAIN)]
    identity_trust_domain: String,
    /// How long a proxy waits to detect the protocol on a port no Server describes.
    #[arg(long, env = "MESH_DEFAULT_DETECT_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    default_detect_timeout: Duration,
    /// The cluster's DNS domain (Services are `<svc>.<ns>.svc.<domain>`).
    #[arg(long, env = "MESH_CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    #[command(flatten)]
    serving: crate::serving_identity::ServingIdentityArgs,
}

pub(crate) async fn run(args: PolicyArgs, client: kube::Client) -> anyhow::Result<()> {
    let networks = args
        .cluster_networks
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            n.parse()
                .with_context(|| format!("--cluster-networks: {n:?} is not a CIDR"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let default_policy: DefaultPolicy = args.default_policy.parse().context("--default-policy")?;
    let config = ServerConfig {
        listen: args.listen,
        admin_listen: args.admin_listen,
        cluster: ClusterInfo {
            networks,
            default_policy,
            control_namespace: args.controller_namespace,
            trust_domain: args.identity_trust_domain,
            detect_timeout: args.default_detect_timeout,
            cluster_domain: args.cluster_domain,
            ..ClusterInfo::default()
        },
        tls: args.serving.server_tls()?,
    };
    let running = server::start(config, client).await?;
    running.until_terminated().await;
    Ok(())
}
