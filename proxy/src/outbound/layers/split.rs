//! The split layer: where one attempt goes. A Service's traffic split
//! draws a backend by weight; a retry draws among the backends the request
//! has not failed on yet (even one the split gives no weight, so a primary
//! failing before the failover controller moves the weights loses no
//! retryable request). Without a split: the Service itself, the pod
//! discovery named, or the address as it came.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::StatusCode;

use super::{AttemptSpec, HttpRequest, HttpResponse, Picked, ResponseFuture, Routed, decided};
use crate::http::error_response;
use crate::outbound::Outbound;

/// Picks each attempt's target.
#[derive(Debug, Clone)]
pub struct SplitLayer<S> {
    outbound: Arc<Outbound>,
    inner: S,
}

impl<S> SplitLayer<S> {
    /// Targets from `outbound`'s balancers, then `inner`.
    pub fn new(outbound: Arc<Outbound>, inner: S) -> Self {
        Self { outbound, inner }
    }
}

impl<S> tower::Service<HttpRequest> for SplitLayer<S>
where
    S: tower::Service<
            HttpRequest,
            Response = HttpResponse,
            Error = Infallible,
            Future = ResponseFuture,
        > + Clone
        + Send
        + 'static,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: HttpRequest) -> ResponseFuture {
        let Some(routed) = decided::<Routed>(&req) else {
            return Box::pin(async {
                Ok(error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the request was not routed",
                ))
            });
        };
        let spec = decided::<AttemptSpec>(&req).unwrap_or_default();
        let profile = routed.profile.as_deref();
        let target = self.outbound.target(&routed.logical, profile, &spec.tried);
        let fail_fast = spec.retryable
            && profile.is_some_and(|p| {
                p.backends.iter().any(|b| {
                    Some(b.authority.as_str()) != target.authority()
                        && !spec.tried.contains(&b.authority)
                })
            });
        req.extensions_mut().insert(Picked {
            target: Arc::new(target),
            fail_fast,
        });
        let mut inner = self.inner.clone();
        Box::pin(async move { inner.call(req).await })
    }
}
