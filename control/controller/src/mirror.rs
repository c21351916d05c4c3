//! `mesh-controller mirror --link <name>`: the service mirror of one Link
//! (in `linkerd-multicluster`), with `/ready`, `/live` and `/metrics`
//! (Linkerd's gateway metrics) on the admin port; of its replicas, the one
//! holding Lease `linkerd-service-mirror-<link>` mirrors.

use std::net::SocketAddr;

use clap::Args;
use mesh_core::admin::{Admin, Readiness};
use mesh_core::drain::Drain;

#[derive(Debug, Args)]
pub(crate) struct MirrorArgs {
    /// The Link to mirror.
    #[arg(long, env = "MESH_MIRROR_LINK", value_name = "NAME")]
    link: String,
    /// The namespace of the Link and its credentials Secret.
    #[arg(long, env = "MESH_MIRROR_NAMESPACE", default_value = mesh_api::labels::MULTICLUSTER_NAMESPACE)]
    namespace: String,
    /// How many of the linked cluster's exported Services are mirrored at
    /// most (those past it are reported on the Link, not mirrored): a
    /// linked cluster cannot grow this one without bound.
    #[arg(long, env = "MESH_MIRROR_MAX_SERVICES", default_value_t = 5000)]
    max_services: usize,
    #[command(flatten)]
    lease: crate::lease::LeaseArgs,
    /// Where /metrics, /ready and /live are served.
    #[arg(long, env = "MESH_ADMIN_LISTEN", default_value_t = crate::admin_listen(mesh_api::ports::MIRROR_ADMIN))]
    admin_listen: SocketAddr,
}

pub(crate) async fn run(args: MirrorArgs, client: kube::Client) -> anyhow::Result<()> {
    let (registry, metrics) = mesh_mirror::controller::metrics();
    let listener = tokio::net::TcpListener::bind(args.admin_listen).await?;
    let mut drain = Drain::new();
    let readiness = Readiness::new();
    drain.spawn(Admin::with_readiness(registry, &readiness).serve(listener, drain.signaled()));
    tracing::info!(link = %args.link, namespace = %args.namespace, "service mirror started");
    let lease = format!("linkerd-service-mirror-{}", args.link);
    let mirror = mesh_mirror::controller::run(
        client.clone(),
        args.namespace.clone(),
        args.link,
        args.max_services,
        metrics,
        readiness.clone(),
        drain.signaled(),
    );
    crate::lease::run_elected(
        &args.lease,
        client,
        (&args.namespace, &lease),
        &readiness,
        drain,
        mirror,
    )
    .await?;
    Ok(())
}
