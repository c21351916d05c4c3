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
//! Both count [`metrics`] (Linkerd's names; per route and backend of the
//! policy controller's routes, [`route_metrics`]), served by `mesh_core`'s
//! admin server.
//!
//! - [`app`]: the proxy assembled from its configuration ([`config`]).
//! - [`http`], [`observe`], [`forward`]: HTTP and TCP plumbing.
//! - [`gateway`]: the multicluster gateway mode of the inbound side.
//! - [`quic`]: QUIC between proxies and gateways, with TCP fallback.
//! - [`cache`]: per-target state that unused targets leave.
//! - [`limits`]: caps on connections per listener, and the accept errors
//!   counted when a bound bites.
//! - [`route_match`]: Gateway API request matching, for inbound policy
//!   and outbound routes.
//! - [`tap`]: live request events for `viz tap`, served on the control
//!   port to the tap component alone.
//! - [`init`]: the iptables rules `mesh-init` installs.

pub mod app;
pub(crate) mod balance;
pub(crate) mod cache;
pub mod config;
pub(crate) mod detect;
pub(crate) mod discover;
pub(crate) mod endpoint;
pub(crate) mod forward;
pub(crate) mod gateway;
pub(crate) mod http;
pub(crate) mod inbound;
pub mod init;
pub(crate) mod limits;
pub(crate) mod metrics;
pub(crate) mod observe;
pub mod orig_dst;
pub(crate) mod outbound;
pub(crate) mod quic;
pub(crate) mod retry;
pub(crate) mod route_match;
pub(crate) mod route_metrics;
pub(crate) mod split;
pub(crate) mod tap;
pub mod transport_header;
