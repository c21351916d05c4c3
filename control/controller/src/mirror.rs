//! `mesh-controller mirror --link <name>`: the service mirror of one Link
//! (in `linkerd-multicluster`), with `/ready`, `/live` and `/metrics`
//! (Linkerd's gateway metrics) on the admin port.

use std::net::SocketAddr;

use clap::Args;
use mesh_proxy::admin::Admin;

#[derive(Debug, Args)]
pub(crate) struct MirrorArgs {
    /// The Link to mirror.
    #[arg(long, env = "MESH_MIRROR_LINK", value_name = "NAME")]
    link: String,
    /// The namespace of the Link and its credentials Secret.
    #[arg(long, env = "MESH_MIRROR_NAMESPACE", default_value = mesh_api::labels::MULTICLUSTER_NAMESPACE)]
    namespace: String,
    /// Where /metrics, /ready and /live are served.
    #[arg(long, env = "MESH_ADMIN_LISTEN", default_value = "0.0.0.0:9999")]
    admin_listen: SocketAddr,
}

pub(crate) async fn run(args: MirrorArgs, client: kube::Client) -> anyhow::Result<()> {
    let (registry, metrics) = mesh_mirror::controller::metrics();
    let listener = tokio::net::TcpListener::bind(args.admin_listen).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let admin =
        tokio::spawn(Admin::new(registry, || true).serve(listener, stopped(stop_rx.clone())));
    tracing::info!(link = %args.link, namespace = %args.namespace, "service mirror started");
    let mirror =
        mesh_mirror::controller::run(client, args.namespace, args.link, metrics, stopped(stop_rx));
    tokio::select! {
        () = mirror => {}
        () = crate::shutdown_signal() => {}
    }
    let _ = stop_tx.send(true);
    let _ = admin.await;
    Ok(())
}
