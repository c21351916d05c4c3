//! Proxy injection, as Linkerd's proxy injector does it: which pods get a
//! proxy ([`decide`]), with which settings (the installation's
//! [`values::Values`], overridden per namespace and per pod by
//! `config.linkerd.io/*` annotations), and what the pod becomes
//! ([`inject::inject`]: the `linkerd-init` init container, the
//! `linkerd-proxy` native sidecar, the identity volumes, labels and
//! annotations; [`owner`] names the pod's workload in a
//! `linkerd.io/proxy-<kind>` label). [`workload`] finds the pod template inside any workload
//! kind; [`webhook`] serves it to the API server as a MutatingWebhook, with
//! the certificate [`serving`] keeps in step with its Secret. The
//! webhook and `mesh inject` both use it, so a pod injected
//! offline and one injected by the webhook are the same.

pub mod inject;
pub mod owner;
pub mod serving;
pub mod values;
pub mod webhook;
pub mod workload;

pub use inject::{Decision, decide, inject};
pub use values::{Overrides, Values, ValuesError};
