//! `mesh-controller failover`: the failover controller (in
//! `linkerd-failover`), with `/ready`, `/live` and `/metrics`
//! (`failover_*`) on the admin port; of its replicas, the one holding
//! Lease `linkerd-failover` decides.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use mesh_core::admin::{Admin, Readiness};
use mesh_core::drain::Drain;

#[derive(Debug, Args)]
pub(crate) struct FailoverArgs {
    /// The `failover.linkerd.io/controlled-by` value of the TrafficSplits to manage.
    #[arg(long, env = "MESH_FAILOVER_CONTROLLED_BY", default_value = mesh_api::labels::FAILOVER_CONTROLLER_NAME)]
    controlled_by: String,
    /// Time between decisions (and samples of the clients' metrics).
    #[arg(long, env = "MESH_FAILOVER_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Read success rates from this Prometheus server (http://host:port)
    /// instead of the client proxies' metrics pages.
    #[arg(long, env = "MESH_FAILOVER_PROMETHEUS_URL", value_name = "URL")]
    prometheus_url: Option<String>,
    /// How long one metrics page or Prometheus query may take.
    #[arg(long, env = "MESH_FAILOVER_SCRAPE_TIMEOUT", default_value = "800ms", value_parser = humantime::parse_duration)]
    scrape_timeout: Duration,
    /// This controller's name in the Events it publishes (its pod's name,
    /// from the downward API).
    #[arg(long, env = "POD_NAME", value_name = "NAME")]
    pod_name: Option<String>,
    /// The namespace of its Lease (its own, from the downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = mesh_api::labels::FAILOVER_NAMESPACE)]
    namespace: String,
    #[command(flatten)]
    lease: crate::lease::LeaseArgs,
    /// Where /metrics, /ready and /live are served.
    #[arg(long, env = "MESH_ADMIN_LISTEN", default_value_t = crate::admin_listen(mesh_api::ports::FAILOVER_ADMIN))]
    admin_listen: SocketAddr,
}

pub(crate) async fn run(args: FailoverArgs, client: kube::Client) -> anyhow::Result<()> {
    let prometheus = args
        .prometheus_url
        .as_deref()
        .map(|url| mesh_failover::prometheus::Prometheus::new(url, args.scrape_timeout))
        .transpose()?;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = mesh_failover::metrics::FailoverMetrics::register(&mut registry);
    let listener = tokio::net::TcpListener::bind(args.admin_listen).await?;
    let mut drain = Drain::new();
    let readiness = Readiness::new();
    drain.spawn(
        Admin::with_readiness(std::sync::Arc::new(registry), &readiness)
            .serve(listener, drain.signaled()),
    );
    let config = mesh_failover::controller::Config {
        controlled_by: args.controlled_by,
        interval: args.interval,
        prometheus,
        scrape_timeout: args.scrape_timeout,
        instance: args.pod_name,
    };
    let controller = mesh_failover::controller::run(
        client.clone(),
        config,
        metrics,
        readiness.clone(),
        drain.signaled(),
    );
    let lease = (
        args.namespace.as_str(),
        mesh_api::labels::FAILOVER_CONTROLLER_NAME,
    );
    match crate::lease::run_elected(&args.lease, client, lease, &readiness, drain, controller)
        .await?
    {
        Some(result) => Ok(result?),
        None => Ok(()),
    }
}
