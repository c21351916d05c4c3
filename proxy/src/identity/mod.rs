//! The client side of workload identity: obtaining and renewing this
//! workload's certificate from the identity service.
//!
//! - [`key`]: the in-memory key and the CSR.

pub mod key;

pub use key::LocalKey;
