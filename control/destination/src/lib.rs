//! The destination service: tells each proxy where a service's endpoints
//! are, who they are, how to talk to them, and how to route, retry and split
//! requests, through Linkerd's `Destination` API (`Get`, `GetProfile`).
//!
//! - [`authority`]: parsing what is asked.
//! - [`index`]: the pure index (events in, answers out).
//! - [`convert`]: answers as proxy-API messages; Get stream diffs.
//! - [`gateway`]: a multicluster gateway's lookups, answered only for
//!   exported Services.
//! - [`grpc`]: the gRPC service.
//! - [`k8s`]: Kubernetes watchers feeding the index.
//! - [`server`]: running it all.

pub mod authority;
pub mod convert;
pub mod gateway;
pub mod grpc;
pub mod index;
pub mod k8s;
pub mod server;
