//! `mesh-controller web`: viz's dashboard ([`mesh_viz::web`]), plain HTTP
//! on Linkerd's port 8084, reached by users through `mesh viz dashboard`'s
//! port-forward. It reads Kubernetes with its own read-only
//! ServiceAccount and asks viz's Prometheus directly.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use mesh_core::admin::Admin;
use mesh_core::drain::{CONTROLLER_GRACE, Drain};
use mesh_viz::metrics::prometheus::Prometheus;
use mesh_viz::web::{DEFAULT_ENFORCED_HOST, Dashboard, serve};

#[derive(Debug, Args)]
pub(crate) struct WebArgs {
    /// Where the dashboard is served (HTTP).
    #[arg(long, env = "MESH_WEB_LISTEN", default_value_t = crate::admin_listen(mesh_api::ports::WEB))]
    listen: SocketAddr,
    /// Where /metrics, /ready and /live are served.
    #[arg(long, env = "MESH_ADMIN_LISTEN", default_value_t = crate::admin_listen(mesh_api::ports::WEB_ADMIN))]
    admin_listen: SocketAddr,
    /// The Prometheus viz uses (`http://host:port`); empty: viz's own,
    /// `prometheus.linkerd-viz` in --cluster-domain.
    #[arg(long, env = "MESH_WEB_PROMETHEUS_URL", default_value = "")]
    prometheus_url: String,
    /// The cluster's DNS domain.
    #[arg(long, env = "MESH_CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    /// The `Host` values answered (a regular expression); others are
    /// refused, so that a page rebinding its name to 127.0.0.1 cannot read
    /// the dashboard through a port-forward.
    #[arg(long, env = "MESH_WEB_ENFORCED_HOST", default_value = DEFAULT_ENFORCED_HOST)]
    enforced_host: String,
}

pub(crate) async fn run(args: WebArgs, client: kube::Client) -> anyhow::Result<()> {
    let prometheus_url = mesh_viz::prometheus_url(&args.prometheus_url, &args.cluster_domain);
    let prometheus = Prometheus::direct(&prometheus_url)
        .map_err(|e| anyhow::anyhow!("--prometheus-url: {e}"))?;
    let enforced_host = regex::Regex::new(&args.enforced_host)
        .with_context(|| format!("--enforced-host {:?}", args.enforced_host))?;
    let dashboard = Arc::new(Dashboard::new(client, prometheus, enforced_host));
    let (listener, _) = mesh_core::listen::bind(args.listen).await?;
    let (admin_listener, _) = mesh_core::listen::bind(args.admin_listen).await?;
    let registry = prometheus_client::registry::Registry::default();
    let mut drain = Drain::new();
    let admin = Admin::new(Arc::new(registry), || true);
    drain.spawn(admin.serve(admin_listener, drain.signaled()));
    drain.spawn(serve(listener, dashboard, drain.signal()));
    tracing::info!(listen = %args.listen, prometheus = %prometheus_url, "web started");
    drain.until_terminated(CONTROLLER_GRACE).await;
    Ok(())
}
