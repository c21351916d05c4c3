//! The service mirror, one per `Link`: a linked cluster's exported Services
//! become `<svc>-<link>` Services in this cluster whose Endpoints are the
//! linked cluster's gateway, named and annotated as Linkerd's service
//! mirror does so that the destination service and `linkerd`-style tooling
//! read them unchanged.
//!
//! - [`controller`]: the loop: Link, credentials, probe, pass, metrics.
//! - [`desired`]: what the mirrors of a set of remote Services must be
//!   (pure), and the plan that turns the mirrors that exist into them.
//! - [`link`]: a Link's fields, checked and defaulted; the gateway resolved.
//! - [`probe`]: the gateway probe and its failure threshold.
//! - [`sync`]: one pass against the two API servers: list what the remote
//!   cluster exports, apply the plan here.
//!

pub mod controller;
pub mod desired;
pub mod link;
pub mod probe;
pub mod sync;
