//! The policy controller: which clients may reach each port of each meshed
//! pod, served to proxies through Linkerd's `InboundServerPolicies` API so
//! that our proxy and a stock linkerd2-proxy enforce the same policy.
//!
//! - [`index`]: the pure index (Kubernetes objects in, the policy of each
//!   pod port out; no I/O, no clock).
//! - [`proto`]: a port's policy as the API's `Server` message.

pub mod index;
pub mod proto;
