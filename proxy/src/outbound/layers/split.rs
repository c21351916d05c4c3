//! The split layer: where one attempt goes. A Service's traffic split (or
//! the request's route's own backends, from an HTTPRoute) draws a backend
//! by weight; a retry draws among the backends the request
//! has not failed on yet (even one the split gives no weight, so a primary
//! failing before the failover controller moves the weights loses no
//! retryable request). Without a split: the Service itself, the pod
//! discovery named, or the address as it came.

use std::sync::Arc;

use http::StatusCode;

use super::{AttemptSpec, HttpRequest, Layer, Next, Picked, ResponseFuture, Routed, decided};
use crate::http::error_response;
use crate::outbound::Outbound;

/// Picks each attempt's target.
#[derive(Debug, Clone)]
pub struct Split {
    outbound: Arc<Outbound>,
}

impl Split {
    /// Targets from `outbound`'s balancers.
    pub fn new(outbound: Arc<Outbound>) -> Self {
        Self { outbound }
    }
}

impl Layer for Split {
    fn handle<N: Next>(&self, mut req: HttpRequest, next: N) -> ResponseFuture {
        let Some(routed) = decided::<Arc<Routed>>(&req) else {
            return Box::pin(async {
                Ok(error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the request was not routed",
                ))
            });
        };
        let spec = decided::<AttemptSpec>(&req).unwrap_or_default();
        let profile = routed.profile.as_deref();
        let route = routed.route.as_ref();
        let target = self
            .outbound
            .target(&routed.logical, profile, route, &spec.tried);
        let fail_fast = spec.retryable
            && profile.is_some_and(|p| {
                p.backends_for(route).iter().any(|b| {
                    Some(b.authority.as_str()) != target.authority()
                        && !spec.tried.contains(&b.authority)
                })
            });
        req.extensions_mut().insert(Picked {
            target: Arc::new(target),
            fail_fast,
        });
        let mut next = next;
        next.call(req)
    }
}
