//! The viz extension's components that run in the cluster (namespace
//! `linkerd-viz`), and the messages the CLI shares with them.
//!
//! - [`metrics`]: golden metrics from viz's Prometheus (Linkerd's
//!   queries), what `mesh viz stat` prints and the dashboard shows.
//! - [`metrics_api`]: the metrics-api, Linkerd viz's `linkerd2.viz.Api`
//!   gRPC service answered from [`metrics`].
//! - [`tap_api`]: the tap API as Linkerd's viz serves it (URLs, messages,
//!   framing), used by the tap server and by `mesh viz tap`.
//! - [`tap_server`]: the tap component, an extension API server behind the
//!   Kubernetes API server's aggregation layer.
//! - [`web`]: the dashboard, a page and its JSON API.

pub mod metrics;
pub mod metrics_api;
pub mod tap_api;
pub mod tap_server;
pub mod web;

/// viz's namespace.
pub const NAMESPACE: &str = mesh_api::labels::VIZ_NAMESPACE;
/// Prometheus's Service, Deployment and ServiceAccount.
pub const PROMETHEUS: &str = "prometheus";
/// The port Prometheus serves its API on.
pub const PROMETHEUS_PORT: u16 = 9090;
/// The ConfigMap that says where viz's Prometheus is (`prometheusUrl`,
/// empty for the one viz installs).
pub const CONFIG: &str = "linkerd-viz-config";

/// The Prometheus an in-cluster component asks: `configured`, or viz's
/// own in `cluster_domain` when that is empty.
pub fn prometheus_url(configured: &str, cluster_domain: &str) -> String {
    if configured.is_empty() {
        format!("http://{PROMETHEUS}.{NAMESPACE}.svc.{cluster_domain}:{PROMETHEUS_PORT}")
    } else {
        configured.to_owned()
    }
}
