//! `io.linkerd.proxy.identity.Identity/Certify`: authenticate the token,
//! authorize the identity for the token's ServiceAccount, check the CSR, and
//! sign. Each refusal has its own status and says what was wrong:
//!
//! | refusal | status |
//! |---|---|
//! | identity not a workload name of this trust domain, empty token | InvalidArgument |
//! | token invalid, expired, for another audience, not a ServiceAccount | Unauthenticated |
//! | identity of another ServiceAccount | PermissionDenied |
//! | CSR malformed, badly signed, not P-256 | InvalidArgument |
//! | CSR for another name | FailedPrecondition |
//! | no issuer loaded, API server unreachable | Unavailable |
//! | too many requests from the client's address | ResourceExhausted |
//! | every place for a TokenReview taken (see [`crate::admission`]) | Unavailable |
//!
//! A token that is not shaped like a ServiceAccount token, or a request
//! over its source's rate, never reaches the API server.

use std::sync::Arc;
use std::time::SystemTime;

use linkerd2_proxy_api::identity::identity_server::Identity;
use linkerd2_proxy_api::identity::{CertifyRequest, CertifyResponse};
use mesh_api::IdentityName;
use tonic::{Request, Response, Status};

use crate::admission::{Admission, Refused};
use crate::ca::CertifyError;
use crate::csr::CsrError;
use crate::issuer::IssuerStore;
use crate::metrics::Metrics;
use crate::token::{TokenError, TokenReviewer};

/// The status and metric reason of a refused token.
fn token_refusal(e: &TokenError) -> (Status, &'static str) {
    let status = match e {
        TokenError::Empty => Status::invalid_argument(e.to_string()),
        TokenError::Unavailable(_) => Status::unavailable(e.to_string()),
        _ => Status::unauthenticated(e.to_string()),
    };
    (status, e.reason())
}

/// The Certify service.
#[derive(Debug, Clone)]
pub struct CertifyService {
    issuer: Arc<IssuerStore>,
    reviewer: TokenReviewer,
    control_namespace: String,
    trust_domain: String,
    metrics: Metrics,
    admission: Admission,
    copies: Option<Arc<crate::trust_copies::TrustCopies>>,
}

impl CertifyService {
    /// Certifies identities under `<control_namespace>.<trust_domain>`,
    /// reviewing tokens as `admission` allows.
    pub fn new(
        issuer: Arc<IssuerStore>,
        reviewer: TokenReviewer,
        control_namespace: impl Into<String>,
        trust_domain: impl Into<String>,
        metrics: Metrics,
        admission: Admission,
    ) -> Self {
        Self {
            issuer,
            reviewer,
            control_namespace: control_namespace.into(),
            trust_domain: trust_domain.into(),
            metrics,
            admission,
            copies: None,
        }
    }

    /// Tells `copies` of every namespace a workload is certified in.
    #[must_use]
    pub fn with_trust_copies(mut self, copies: Arc<crate::trust_copies::TrustCopies>) -> Self {
        self.copies = Some(copies);
        self
    }

    async fn certify(
        &self,
        req: CertifyRequest,
        source: Option<std::net::IpAddr>,
    ) -> Result<CertifyResponse, (Status, &'static str)> {
        let identity = IdentityName::parse(&req.identity)
            .map_err(|e| (Status::invalid_argument(e.to_string()), "identity_invalid"))?;
        if identity.control_namespace != self.control_namespace
            || identity.trust_domain != self.trust_domain
        {
            return Err((
                Status::invalid_argument(format!(
                    "identity {} is not under this control plane's domain {}.{}",
                    req.identity, self.control_namespace, self.trust_domain
                )),
                "identity_invalid",
            ));
        }
        let refused = |e: Refused| {
            let status = match e {
                Refused::RateLimited(_) => Status::resource_exhausted(e.to_string()),
                Refused::Busy => Status::unavailable(e.to_string()),
            };
            (status, e.reason())
        };
        if let Some(source) = source {
            self.admission
                .admit(source, tokio::time::Instant::now())
                .map_err(refused)?;
        }
        crate::token::check_shape(&req.token).map_err(|e| token_refusal(&e))?;
        let reviewing = self.admission.review().await.map_err(refused)?;
        let account = self
            .reviewer
            .review(&req.token)
            .await
            .map_err(|e| token_refusal(&e))?;
        drop(reviewing);
        if account.namespace != identity.namespace || account.name != identity.service_account {
            return Err((
                Status::permission_denied(format!(
                    "the token is for ServiceAccount {}/{}, which may not use the identity {}",
                    account.namespace, account.name, req.identity
                )),
                "identity_mismatch",
            ));
        }
        let loaded = self.issuer.current().ok_or_else(|| {
            (
                Status::unavailable("no issuer is loaded yet"),
                "issuer_unavailable",
            )
        })?;
        let issued = loaded
            .ca
            .certify(
                &req.identity,
                &identity.spiffe_id(),
                &req.certificate_signing_request,
                SystemTime::now(),
            )
            .map_err(|e| {
                let status = match &e {
                    CertifyError::Csr(
                        CsrError::SanMismatch { .. } | CsrError::CommonName { .. },
                    ) => Status::failed_precondition(e.to_string()),
                    CertifyError::Csr(_) => Status::invalid_argument(e.to_string()),
                    CertifyError::Serial | CertifyError::Sign(_) => Status::internal(e.to_string()),
                };
                (status, e.reason())
            })?;
        if let Some(copies) = &self.copies {
            copies.certified_in(&identity.namespace);
        }
        Ok(CertifyResponse {
            leaf_certificate: issued.leaf.to_vec(),
            intermediate_certificates: issued.intermediates.iter().map(|c| c.to_vec()).collect(),
            valid_until: Some(issued.valid_until.into()),
        })
    }
}

#[tonic::async_trait]
impl Identity for CertifyService {
    async fn certify(
        &self,
        request: Request<CertifyRequest>,
    ) -> Result<Response<CertifyResponse>, Status> {
        let source = request
            .extensions()
            .get::<mesh_core::tls::incoming::PeerInfo>()
            .and_then(|peer| peer.addr)
            .map(|addr| addr.ip());
        let req = request.into_inner();
        let identity = req.identity.clone();
        match CertifyService::certify(self, req, source).await {
            Ok(response) => {
                self.metrics.issued.inc();
                tracing::info!(%identity, "issued a certificate");
                Ok(Response::new(response))
            }
            Err((status, reason)) => {
                self.metrics.reject(reason);
                tracing::info!(%identity, reason, "refused: {}", status.message());
                Err(status)
            }
        }
    }
}
