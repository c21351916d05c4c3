//! Golden metrics from viz's Prometheus, with Linkerd's queries and
//! labels: what the CLI (`mesh viz stat`, `edges`, `routes`) prints and the
//! dashboard (`mesh-controller web`) shows.
//!
//! - [`prometheus`]: the Prometheus viz uses, asked through the API
//!   server's service proxy; PromQL durations and matchers.
//! - [`resource`]: the kinds viz reports on, their labels in the series,
//!   and their objects and meshed pods in Kubernetes.
//! - [`golden`]: a row's success rate, rate and latency, from the answers.
//! - [`stat`]: golden metrics per resource.
//! - [`edges`]: who calls whom, and whether both sides presented
//!   identities.
//! - [`routes`]: a Service's golden metrics per route (ServiceProfile
//!   routes and HTTPRoutes).
//! - [`http_route`]: golden metrics per HTTPRoute and parent (`stat
//!   httproute`).

pub mod edges;
pub mod golden;
pub mod http_route;
pub mod prometheus;
pub mod resource;
pub mod routes;
pub mod stat;

/// A list's items; none when the kind is not installed (no multicluster
/// extension, no SMI or Gateway API CRD: a 404), an error naming `what`
/// for anything else.
pub fn installed<K>(
    listed: Result<kube::api::ObjectList<K>, kube::Error>,
    what: &str,
) -> anyhow::Result<Vec<K>>
where
    K: Clone,
{
    match listed {
        Ok(list) => Ok(list.items),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Vec::new()),
        Err(e) => Err(anyhow::anyhow!("listing {what}: {e}")),
    }
}
