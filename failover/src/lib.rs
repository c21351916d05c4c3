//! The failover controller: for every TrafficSplit labelled
//! `failover.linkerd.io/controlled-by`, the weights its backends get, moved
//! by what clients feel (success rate over a sliding window), readiness and
//! the gateways' liveness, and moved back once the primary has recovered.
//!
//! - [`settings`]: the `failover.mesh.dev/*` annotations, validated.
//! - [`window`]: requests over sliding windows, and the confidence test.
//! - [`decision`]: the pure decision core (time passed in).

pub mod decision;
pub mod settings;
pub mod window;
