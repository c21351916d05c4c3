//! What other programs share with the demo app: the line its load
//! generator prints each second ([`report`]), and, with the `drive`
//! feature, the operations that drive a podinfo workload in a cluster
//! from outside ([`drive`]: break it, heal it, scale it, read the split
//! and the load's lines), used by `mesh demo`, the e2e scenarios and the
//! failover benchmark.

pub mod report;

#[cfg(feature = "drive")]
pub mod drive;
