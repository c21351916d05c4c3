//! `mesh viz`: the observability extension, with Linkerd's viz names.
//!
//! - [`install`]: `mesh viz install` renders namespace `linkerd-viz` and
//!   Prometheus, scraping every proxy with Linkerd's relabelling.
//! - [`chart`]: `charts/mesh-viz`, generated from [`install`]'s renderer.
//! - [`prometheus`]: viz's Prometheus, asked through the API server's
//!   service proxy; PromQL durations and matchers.
//! - [`resource`]: the kinds viz reports on, their labels in the series,
//!   and their objects and meshed pods in Kubernetes.
//! - [`stat`]: `mesh viz stat`, golden metrics per resource;
//!   [`traffic_split`]: `stat ts`, each split's leaves.
//! - [`routes`]: `mesh viz routes`, per ServiceProfile route.
//! - [`edges`]: `mesh viz edges`, who calls whom and whether both sides
//!   presented identities.
//! - [`contexts`]: `--contexts` / `--all-contexts`, one table across
//!   clusters with a CLUSTER column.
//! - [`golden`]: a row's success rate, rate and latency, from the answers.
//! - [`check`]: `mesh viz check`, what viz's own components experience.
//! - [`tap`]: `mesh viz tap`, live requests through the tap APIService;
//!   [`tap_component`]: the tap component's objects (APIService, RBAC,
//!   Deployment); [`top`]: `mesh viz top`, the tap stream summed by path.
//! - [`web_component`]: the dashboard's objects; [`dashboard`]: `mesh viz
//!   dashboard`, a port-forward to it.

pub use mesh_viz::metrics::{golden, prometheus};

pub mod chart;
pub mod check;
pub mod contexts;
pub mod dashboard;
pub mod edges;
pub mod install;
pub mod resource;
pub mod routes;
pub mod stat;
pub mod tap;
pub mod tap_component;
pub mod top;
pub mod traffic_split;
pub mod web_component;
