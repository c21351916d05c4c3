//! The viz extension's components that run in the cluster (namespace
//! `linkerd-viz`), and the messages the CLI shares with them.
//!
//! - [`tap_api`]: the tap API as Linkerd's viz serves it (URLs, messages,
//!   framing), used by the tap server and by `mesh viz tap`.
//! - [`tap_server`]: the tap component, an extension API server behind the
//!   Kubernetes API server's aggregation layer.

pub mod tap_api;
pub mod tap_server;
