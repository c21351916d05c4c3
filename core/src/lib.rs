//! What every long-running mesh process shares, data plane and control
//! plane alike, and what the proxy does not own:
//!
//! - [`admin`]: the admin server (`/metrics`, `/ready`, `/live`,
//!   `/shutdown`) every process serves.
//! - [`drain`]: one shutdown: the signal every task watches, SIGTERM and
//!   Ctrl-C, and a bounded grace period.
//! - [`tls`]: mutual TLS credentials that renew under open connections,
//!   and the rustls configurations built from them.
//! - [`identity`]: this process's certificate from the identity service,
//!   obtained and kept fresh.
//! - [`control`]: gRPC channels to the control plane.
//! - [`grpc_server`]: serving a control-plane gRPC API over certified TLS
//!   (or plain text without an identity).
//! - [`listen`]: binding a listener, with an error that names the address.
//!
//! It depends on no Kubernetes client and on nothing of the proxy's
//! (QUIC, iptables), so the identity service, which every other component
//! waits for, stays small.

pub mod admin;
pub mod control;
pub mod drain;
pub mod grpc_server;
pub mod http_get;
pub mod identity;
pub mod listen;
pub mod tls;
