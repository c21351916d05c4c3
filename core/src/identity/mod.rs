//! The client side of workload identity: obtaining and renewing this
//! workload's certificate from the identity service.
//!
//! - [`key`]: the in-memory key and the CSR.
//! - [`client`]: the TLS channel to the identity service and `Certify`.
//! - [`schedule`]: renewal at 70 % of the lifetime; jittered back-off.
//! - [`refresh`]: the loop that keeps the certificate fresh.
//! - [`trust_dir`]: trust roots and issuer changes followed without a
//!   restart.

pub mod client;
pub mod key;
pub mod refresh;
pub mod schedule;
pub mod trust_dir;

pub use key::LocalKey;
pub use refresh::{IdentityConfig, IdentityMetrics};

use std::sync::Arc;

use prometheus_client::registry::Registry;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::drain::Drain;
use crate::tls::{Credentials, TlsError};

/// Why a workload's credentials could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The trust anchors are not PEM certificates.
    #[error("the trust anchors are not PEM certificates: {0}")]
    Anchors(String),
    /// rustls refused them.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Credentials for `local_name` that trust `anchors_pem`, kept certified by
/// the identity service (registering the identity metrics) until `drain`
/// shuts down. The proxy and the control plane's own servers use it.
pub fn certified_credentials(
    local_name: &str,
    anchors_pem: &str,
    config: IdentityConfig,
    registry: &mut Registry,
    drain: &mut Drain,
) -> Result<Arc<Credentials>, CredentialsError> {
    let roots = CertificateDer::pem_slice_iter(anchors_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CredentialsError::Anchors(e.to_string()))?;
    let credentials = Credentials::new(local_name, &roots)?;
    let metrics = IdentityMetrics::register(registry);
    metrics.trust().set_anchors(&roots);
    drain.spawn(refresh::run(
        config,
        credentials.clone(),
        metrics,
        drain.signal().receiver(),
    ));
    Ok(credentials)
}
