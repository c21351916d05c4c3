//! `mesh failover`: the failover extension.
//!
//! - [`install`]: `mesh failover install` renders the `linkerd-failover`
//!   namespace, the controller's ServiceAccount and permissions, and its
//!   Deployment (`mesh-controller failover`).
//! - [`status`]: `mesh failover status`, every managed TrafficSplit with
//!   its state, backends, weights, success rates and last transition, as
//!   the controller wrote them.

pub mod install;
pub mod status;
