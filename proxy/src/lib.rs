//! The mesh data plane, as a library (the `mesh-proxy` binary and the
//! multicluster gateway are built on it).
//!
//! - [`admin`]: `/metrics`, `/ready`, `/live`.
//! - [`config`]: the `LINKERD2_PROXY_*` environment.
//! - [`detect`]: what a connection speaks, from its first bytes.
//! - [`orig_dst`]: where a redirected connection was going.
//! - [`drain`]: graceful shutdown of a component's tasks.
//! - [`tls`]: mutual TLS on workload identities: rustls configurations that
//!   present the current certificate (swapped on renewal), verify peers
//!   against the trust roots, and expose the peer's identity.
//! - [`identity`]: the client of the identity service: a key that never
//!   leaves the process, a CSR, the ServiceAccount token, `Certify`, and
//!   renewal at 70 % of the lifetime.

pub mod admin;
pub mod config;
pub mod detect;
pub mod drain;
pub mod identity;
pub mod orig_dst;
pub mod tls;
