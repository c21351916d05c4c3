//! The public surface every mesh crate shares, spelled exactly as Linkerd
//! spells it: ports, label and annotation keys, and identity names. Keeping
//! them here means a Linkerd user's manifests and dashboards keep working, and
//! a rename is one edit, not a search.
//!
//! This crate has no I/O and almost no dependencies so that the proxy, which
//! must stay small, can use it too. CRD types join it when the controllers
//! that read them arrive.

#[cfg(feature = "crds")]
pub mod crds;
pub mod identity;
#[cfg(feature = "client")]
pub mod kube_client;
pub mod labels;
pub mod metrics_text;
#[cfg(feature = "crds")]
pub mod pod;
pub mod ports;

pub use identity::{IdentityName, InvalidIdentity};
