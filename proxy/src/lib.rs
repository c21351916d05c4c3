//! The mesh data plane, as a library (the `mesh-proxy` and `mesh-init`
//! binaries and the multicluster gateway are built on it).
//!
//! Request path: [`outbound`] accepts the pod's redirected connections
//! ([`orig_dst`], [`detect`]), asks [`discover`] what the address is,
//! routes, splits ([`split`]), balances ([`balance`]), times out and
//! retries ([`retry`]) each HTTP request, and reaches endpoints through
//! [`endpoint`] (mutual TLS from `mesh_core::tls`, HTTP/1 carried over HTTP/2,
//! [`transport_header`] for opaque streams). [`inbound`] terminates mutual
//! TLS and hands requests to the application with the caller's identity.
//! Both count [`metrics`] (Linkerd's names), served by `mesh_core`'s admin
//! server.
//!
//! - [`app`]: the proxy assembled from its configuration ([`config`]).
//! - [`http`], [`observe`], [`forward`]: HTTP and TCP plumbing.
//! - [`gateway`]: the multicluster gateway mode of the inbound side.
//! - [`quic`]: QUIC between proxies and gateways, with TCP fallback.
//! - [`cache`]: per-target state that unused targets leave.
//! - [`init`]: the iptables rules `mesh-init` installs.

pub mod app;
pub mod balance;
pub mod cache;
pub mod config;
pub mod detect;
pub mod discover;
pub mod endpoint;
pub mod forward;
pub mod gateway;
pub mod http;
pub mod inbound;
pub mod init;
pub mod metrics;
pub mod observe;
pub mod orig_dst;
pub mod outbound;
pub mod quic;
pub mod retry;
pub mod split;
pub mod transport_header;
