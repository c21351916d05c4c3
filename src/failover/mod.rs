//! `mesh failover`: the failover extension.
//!
//! - [`install`]: `mesh failover install` renders the `linkerd-failover`
//!   namespace, the controller's ServiceAccount and permissions, and its
//!   Deployment (`mesh-controller failover`).
//! - [`status`]: `mesh failover status`, every managed TrafficSplit with
//!   its state, backends, weights, success rates and last transition, as
//!   the controller wrote them.
//! - [`chart`]: `charts/mesh-failover`, generated from [`install`]'s
//!   renderer.

pub mod chart;
pub mod install;
pub mod status;
