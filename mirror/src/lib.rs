//! The service mirror, one per `Link`: a linked cluster's exported Services
//! become `<svc>-<link>` Services in this cluster whose Endpoints are the
//! linked cluster's gateway, named and annotated as Linkerd's service
//! mirror does so that the destination service and `linkerd`-style tooling
//! read them unchanged.
//!
//! - [`controller`]: the loop: Link, credentials, watches, passes, status.
//! - [`desired`]: what the mirrors of a set of remote Services must be
//!   (pure), and the plan that turns the mirrors that exist into them.
//! - [`events`]: the Events the mirror publishes on its Link (conflicts).
//! - [`link`]: a Link's fields, checked and defaulted; the gateway resolved.
//! - [`metrics`]: Linkerd's `gateway_*` metrics.
//! - [`probe`]: the gateway probe, its failure threshold and the prober task.
//! - [`status`]: the Link's status (conditions, mirrored and rejected Services).
//! - [`sync`]: the watched views of both clusters and one mirroring pass.
//! - [`watch`]: a watched set of objects that keeps its last complete view.

pub mod controller;
pub mod desired;
pub mod events;
pub mod link;
pub mod metrics;
pub mod probe;
pub mod status;
pub mod sync;
pub mod watch;
