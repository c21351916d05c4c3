//! Talking to the identity service: a gRPC channel over TLS that verifies
//! the service's own identity against the trust roots, and one `Certify`
//! exchange.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use linkerd2_proxy_api::identity::CertifyRequest;
use linkerd2_proxy_api::identity::identity_client::IdentityClient;
use rustls_pki_types::CertificateDer;
use tonic::transport::Channel;

use super::LocalKey;
use crate::tls::{self, Credentials};

/// Why a certificate could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum CertifyError {
    /// The token file could not be read.
    #[error("reading the identity token {path}: {source}")]
    Token {
        /// The token file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The key or CSR could not be made.
    #[error("making a key and CSR: {0}")]
    Key(#[from] rcgen::Error),
    /// The identity service refused or could not be reached.
    #[error("Certify: {}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// The answer is unusable.
    #[error("the identity service's answer is unusable: {0}")]
    Response(String),
    /// TLS set-up failed.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// A certificate obtained from the identity service.
#[derive(Debug)]
pub struct Certified {
    /// Leaf first, then the intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The key the leaf certifies.
    pub key: LocalKey,
    /// When the leaf expires.
    pub valid_until: SystemTime,
}

/// A lazy gRPC channel to the identity service at `addr` (`host:port`),
/// which must present `server_identity`. `credentials` gives the trust
/// roots (and, once there is one, this workload's certificate).
pub fn channel(
    addr: &str,
    server_identity: &str,
    credentials: &Arc<Credentials>,
) -> Result<Channel, CertifyError> {
    crate::control::channel(addr, Some((server_identity, credentials))).map_err(|e| match e {
        crate::control::ChannelError::Tls(e) => CertifyError::Tls(e),
        other => CertifyError::Response(other.to_string()),
    })
}

/// One `Certify`: a fresh key and CSR for `identity`, the token read from
/// `token_path` now (projected tokens rotate), and the answer checked.
pub async fn certify(
    channel: Channel,
    identity: &str,
    token_path: &Path,
) -> Result<Certified, CertifyError> {
    let token = tokio::fs::read(token_path)
        .await
        .map_err(|source| CertifyError::Token {
            path: token_path.display().to_string(),
            source,
        })?;
    let key = LocalKey::generate(identity)?;
    let request = CertifyRequest {
        identity: identity.to_owned(),
        token,
        certificate_signing_request: key.csr_der().to_vec(),
    };
    let response = IdentityClient::new(channel)
        .certify(request)
        .await?
        .into_inner();
    if response.leaf_certificate.is_empty() {
        return Err(CertifyError::Response("no leaf certificate".into()));
    }
    let valid_until = response
        .valid_until
        .and_then(|t| SystemTime::try_from(t).ok())
        .ok_or_else(|| CertifyError::Response("no valid_until".into()))?;
    let mut chain = vec![CertificateDer::from(response.leaf_certificate)];
    chain.extend(
        response
            .intermediate_certificates
            .into_iter()
            .map(CertificateDer::from),
    );
    Ok(Certified {
        chain,
        key,
        valid_until,
    })
}
