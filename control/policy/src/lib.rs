//! The policy controller: which clients may reach each port of each meshed
//! pod, served to proxies through Linkerd's `InboundServerPolicies` API so
//! that our proxy and a stock linkerd2-proxy enforce the same policy; and
//! how clients route to each Service port (HTTPRoutes, retries, timeouts,
//! failure accrual), served through `OutboundPolicies`.
//!
//! - [`index`]: the pure index (Kubernetes objects in, the policy of each
//!   pod port out; no I/O, no clock).
//! - [`proto`]: a port's policy as the API's `Server` message.
//! - [`routes`]: HTTPRoute rule matches, shared by inbound and outbound.
//! - [`grpc`]: the `InboundServerPolicies` service.
//! - [`diagnostics`]: a pod port's policy as JSON on the admin server.
//! - [`k8s`]: Kubernetes watchers feeding the index.
//! - [`outbound`]: the outbound index and the `OutboundPolicies` service.
//! - [`route_status`]: route status conditions written back to the API
//!   server.
//! - [`server`]: running it all (gRPC on 8090, admin on 9990).

pub mod diagnostics;
pub mod grpc;
pub mod index;
pub mod k8s;
pub mod outbound;
pub mod proto;
pub mod route_status;
pub mod routes;
pub mod server;
