//! The identity service: the certificate authority behind every workload's
//! mTLS identity, compatible with Linkerd's `Identity.Certify`.
//!
//! - [`pem`]: reading certificate bundles and keys as operators bring them.
//! - [`ca`]: trust roots, the issuer, and signing leaves (pure, clock passed in).
//! - [`csr`]: what a CSR must be.
//! - [`generate`]: making anchors and issuers (`mesh install`, tests).

pub mod ca;
pub mod csr;
pub mod generate;
pub mod pem;
