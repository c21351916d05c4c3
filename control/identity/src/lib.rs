//! The identity service: the certificate authority behind every workload's
//! mTLS identity, compatible with Linkerd's `Identity.Certify`.
//!
//! - [`pem`]: reading certificate bundles and keys as operators bring them.
//! - [`ca`]: trust roots, the issuer, and signing leaves (pure, clock passed in).
//! - [`csr`]: what a CSR must be.
//! - [`token`]: ServiceAccount tokens checked with TokenReview.
//! - [`admission`]: per-source rate and TokenReview concurrency limits.
//! - [`service`]: the `Certify` gRPC method and its refusals.
//! - [`issuer`]: the issuer files, re-loaded when they change.
//! - [`server`]: running it all (gRPC over TLS, admin, reloads).
//! - [`trust_copies`]: the trust roots copied into workloads' namespaces,
//!   with the issuer in force, for proxies to follow without a restart.
//! - [`metrics`]: issued, refused, reloads, issuer expiry.
//! - [`generate`]: making anchors and issuers (`mesh install`, tests).
//! - [`inspect`]: describing a certificate chain (`mesh identity inspect`).

pub mod admission;
pub mod ca;
pub mod csr;
pub mod generate;
pub mod inspect;
pub mod issuer;
pub mod metrics;
pub mod pem;
pub mod server;
pub mod service;
pub mod token;
pub mod trust_copies;
