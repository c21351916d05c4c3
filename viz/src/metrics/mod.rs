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
//! - [`routes`]: a Service's golden metrics per ServiceProfile route.

pub mod edges;
pub mod golden;
pub mod prometheus;
pub mod resource;
pub mod routes;
pub mod stat;
