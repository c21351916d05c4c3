//! mesh's end-to-end scenarios, written once against a [`Provider`] of two
//! clusters, `west` and `east`, and run on the local clusters
//! ([`local::LocalProvider`]; CI). Another pair (kind, say) would need a
//! provider of its own; none is written yet (see the README).
//!
//! - [`provider`]: what a scenario needs from the clusters.
//! - [`local`]: the local west/east pair shared by a test run.
//! - [`browser`]: headless Chromium loading the dashboard's pages;
//!   [`devtools`]: a page left open and read while it runs (live tap).
//! - [`anchor_rotation`]: the four-step trust anchor rotation under load,
//!   without a restart.
//! - [`failover`]: the failover scenario (bad deploy, fix, outage under load).
//! - [`gateway_restart`]: east's gateway pod replaced under failover load.
//! - [`helm`]: the Helm-installed cluster upgraded with `--reuse-values`.
//! - [`kube_util`]: namespaces, manifests, waits and one-shot pods.
//! - [`mesh`]: mesh installed on both clusters with one trust anchor (west
//!   by `mesh install`, east by the Helm charts).
//! - [`multicluster`]: the multicluster scenarios (link, WAN cut, moved
//!   gateway, mismatched anchors).
//! - [`viz`]: viz's stat and edges against what the callers counted.
//! - [`viz_dashboard`]: `mesh viz dashboard`'s port-forward, the page and
//!   its API, and a rebound Host refused.
//! - [`scenarios`]: the scenarios themselves; `tests/` runs each one.

pub mod anchor_rotation;
pub mod browser;
pub mod devtools;
pub mod failover;
pub mod gateway_restart;
pub mod helm;
pub mod kube_util;
pub mod local;
pub mod mesh;
pub mod multicluster;
pub mod policy;
pub mod provider;
pub mod routes;
pub mod scenarios;
pub mod viz;
pub mod viz_dashboard;

pub use provider::{Cluster, Provider};
