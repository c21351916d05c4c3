//! The public surface every mesh crate shares, spelled exactly as Linkerd
//! spells it: ports, label and annotation keys, and identity names. Keeping
//! them here means a Linkerd user's manifests and dashboards keep working, and
//! a rename is one edit, not a search.
//!
//! By default this crate is names and pure functions, with almost no
//! dependencies, so that the proxy, which must stay small, can use it too.
//! Two features add what the controllers and the CLI share: `crds` (the
//! custom resource types, pure data) and `client` (a Kubernetes client
//! built as kubectl builds one, and the pod-proxy requests in
//! [`kube_client`], which do I/O); `watch` adds `index_watch`, which feeds a
//! controller's pure index from Kubernetes watches; `prometheus` adds the
//! query API's paths and answers.

#[cfg(feature = "crds")]
pub mod crds;
pub mod failover_state;
pub mod identity;
#[cfg(feature = "watch")]
pub mod index_watch;
#[cfg(feature = "client")]
pub mod kube_client;
pub mod labels;
pub mod metrics_text;
#[cfg(feature = "crds")]
pub mod pod;
pub mod ports;
#[cfg(feature = "prometheus")]
pub mod prometheus;
pub mod route_policy;
#[cfg(feature = "crds")]
pub mod selector;
#[cfg(feature = "crds")]
pub mod service;

pub use identity::{IdentityName, InvalidIdentity};
