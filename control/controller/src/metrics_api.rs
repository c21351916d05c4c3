//! `mesh-controller metrics-api`: viz's metrics-api
//! ([`mesh_viz::metrics_api`]), Linkerd viz's `linkerd2.viz.Api` gRPC
//! service on Linkerd's port 8085 (plain gRPC, as behind Linkerd's own
//! proxy; every figure it answers is one viz's Prometheus also serves). It
//! reads Kubernetes with its own read-only ServiceAccount and asks viz's
//! Prometheus directly; `/ready` turns true once Prometheus has answered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Args;
use mesh_core::admin::Admin;
use mesh_core::drain::{CONTROLLER_GRACE, Drain};
use mesh_viz::metrics::prometheus::Prometheus;
use mesh_viz::metrics_api::MetricsApi;
use mesh_viz::metrics_api::grpc::router;

#[derive(Debug, Args)]
pub(crate) struct MetricsApiArgs {
    /// Where the API is served (gRPC).
    #[arg(long, env = "MESH_METRICS_API_LISTEN", default_value_t = crate::admin_listen(mesh_api::ports::METRICS_API))]
    listen: SocketAddr,
    /// Where /metrics, /ready and /live are served.
    #[arg(long, env = "MESH_ADMIN_LISTEN", default_value_t = crate::admin_listen(mesh_api::ports::METRICS_API_ADMIN))]
    admin_listen: SocketAddr,
    /// The Prometheus viz uses (`http://host:port`); empty: viz's own,
    /// `prometheus.linkerd-viz` in --cluster-domain.
    #[arg(long, env = "MESH_METRICS_API_PROMETHEUS_URL", default_value = "")]
    prometheus_url: String,
    /// The cluster's DNS domain.
    #[arg(long, env = "MESH_CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
}

pub(crate) async fn run(args: MetricsApiArgs, client: kube::Client) -> anyhow::Result<()> {
    let prometheus_url = mesh_viz::prometheus_url(&args.prometheus_url, &args.cluster_domain);
    let prometheus = Prometheus::direct(&prometheus_url)
        .map_err(|e| anyhow::anyhow!("--prometheus-url: {e}"))?;
    let api = MetricsApi::new(client, prometheus.clone());
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let (admin_listener, _) = mesh_core::listen::bind(args.admin_listen).await?;
    let mut registry = prometheus_client::registry::Registry::default();
    let mut drain = Drain::new();
    mesh_core::grpc_server::serve(
        router(api),
        listener,
        None,
        &mut registry,
        &mut drain,
        "metrics-api",
    )?;
    // Ready once Prometheus answers; asked again every 10 s until then.
    let ready = Arc::new(AtomicBool::new(false));
    let answered = ready.clone();
    let stop = drain.signaled();
    drain.spawn(async move {
        tokio::select! {
            () = async {
                while prometheus.query("vector(1)").await.is_err() {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
                answered.store(true, Ordering::Relaxed);
            } => {}
            () = stop => {}
        }
    });
    let admin = Admin::new(Arc::new(registry), move || ready.load(Ordering::Relaxed));
    drain.spawn(admin.serve(admin_listener, drain.signaled()));
    tracing::info!(listen = %args.listen, prometheus = %prometheus_url, "metrics-api started");
    drain.until_terminated(CONTROLLER_GRACE).await;
    Ok(())
}
