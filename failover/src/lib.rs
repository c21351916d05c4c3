//! The failover controller: for every TrafficSplit or HTTPRoute labelled
//! `failover.linkerd.io/controlled-by`, the weights its backends get, moved
//! by what clients feel (success rate over a sliding window), readiness and
//! the gateways' liveness, and moved back once the primary has recovered.
//!
//! - [`controller`]: the kube runtime: watches, samples, writes, reports.
//! - [`settings`]: the `failover.mesh.dev/*` annotations, validated.
//! - [`window`]: requests over sliding windows, and the confidence test.
//! - [`decision`]: the pure decision core (time passed in).
//! - [`corroborate`]: a client's word bounded by what the backend's proxies
//!   served it.
//! - [`fetch`]: HTTP GETs with a deadline.
//! - [`error`]: the library's typed errors.
//! - [`metrics`]: `failover_state`, `failover_transitions_total`, per-backend gauges.
//! - [`prometheus`]: the same signals read with PromQL.
//! - [`signals`]: what clients saw per backend, from their metrics pages or
//!   Prometheus, as deltas between samples; gateway liveness.
//! - [`split`]: a managed TrafficSplit or HTTPRoute read, or why it cannot be.
//! - [`target`]: the managed object (TrafficSplit or HTTPRoute), written.
//! - [`status`]: the `failover.mesh.dev/status` annotation.

pub mod controller;
pub mod corroborate;
pub mod decision;
pub mod error;
pub mod fetch;
pub mod metrics;
pub mod prometheus;
pub mod settings;
pub mod signals;
pub mod split;
pub mod status;
pub mod target;
pub mod window;
