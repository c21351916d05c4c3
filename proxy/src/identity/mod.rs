//! The client side of workload identity: obtaining and renewing this
//! workload's certificate from the identity service.
//!
//! - [`key`]: the in-memory key and the CSR.
//! - [`client`]: the TLS channel to the identity service and `Certify`.
//! - [`schedule`]: renewal at 70 % of the lifetime; jittered back-off.
//! - [`refresh`]: the loop that keeps the certificate fresh.

pub mod client;
pub mod key;
pub mod refresh;
pub mod schedule;

pub use key::LocalKey;
pub use refresh::{IdentityConfig, IdentityMetrics};
