//! The split layer: where one attempt goes. A Service's traffic split (or
//! the request's route's own backends, from an HTTPRoute) draws a backend
//! by weight; a retry draws among the backends the request
//! has not failed on yet (even one the split gives no weight, so a primary
//! failing before the failover controller moves the weights loses no
//! retryable request). Without a split: the Service itself, the pod
//! discovery named, or the address as it came. The drawn backend's own
//! header modifiers (an HTTPRoute backendRef's filters) apply to that
//! attempt and its response, after the rule's.

use std::sync::Arc;

use http::StatusCode;

use super::{AttemptSpec, HttpRequest, Layer, Next, Picked, ResponseFuture, Routed, decided};
use crate::discover::profile::RouteFilter;
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
        let (target, filters) = self
            .outbound
            .pick(&routed.logical, profile, route, &spec.tried);
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
        let mut response_headers = Vec::new();
        for filter in filters {
            match filter {
                RouteFilter::RequestHeaders(modifier) => modifier.apply(req.headers_mut()),
                RouteFilter::ResponseHeaders(modifier) => response_headers.push(modifier),
                // A backend's failure is its target's; a redirect is not
                // kept for a backend.
                RouteFilter::Redirect(_) | RouteFilter::Fail(..) | RouteFilter::GrpcFail(..) => {}
            }
        }
        let mut next = next;
        super::route::with_response_headers(next.call(req), response_headers)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::discover::profile::{Backend, HeaderModifier};
    use crate::outbound::layers::fixtures::{self, get, logical, outbound, split};

    /// An HTTPRoute backendRef's header modifiers apply to the attempts
    /// drawn to that backend and to their responses; the other backend's
    /// attempts are left as they came.
    #[tokio::test]
    async fn a_backends_header_filters_apply_to_its_attempts_only() {
        let header = |name: &'static str, value: &'static str| {
            (
                http::HeaderName::from_static(name),
                http::HeaderValue::from_static(value),
            )
        };
        let canary = |weight| Backend {
            authority: "web-canary.test.svc.cluster.local:80".into(),
            weight,
            filters: vec![
                RouteFilter::RequestHeaders(HeaderModifier {
                    set: vec![header("x-backend", "canary")],
                    ..HeaderModifier::default()
                }),
                RouteFilter::ResponseHeaders(HeaderModifier {
                    add: vec![header("x-served-by", "canary")],
                    ..HeaderModifier::default()
                }),
            ],
            ..Backend::default()
        };
        let primary = |weight| Backend {
            authority: "web.test.svc.cluster.local:80".into(),
            weight,
            ..Backend::default()
        };
        let (outbound, _) = outbound();
        for (backends, expected) in [
            (vec![canary(1), primary(0)], Some("canary")),
            (vec![canary(0), primary(1)], None),
        ] {
            let mut route = fixtures::route(false, None);
            route.backends = backends;
            let web = logical(
                "10.96.0.10:80".parse().expect("addr"),
                Some(split(&[], route, Default::default())),
            );
            let mut req = get();
            let routed = crate::outbound::layers::route::Route::new(web).routed(&req);
            req.extensions_mut().insert(routed);
            let seen = Arc::new(Mutex::new(None));
            let inner = {
                let seen = seen.clone();
                fixtures::scripted(move |req| {
                    *seen.lock().expect("seen") = req
                        .headers()
                        .get("x-backend")
                        .map(|v| v.to_str().unwrap_or_default().to_owned());
                    Box::pin(async { Ok(fixtures::status(200)) })
                })
            };
            let Ok(response) = Split::new(outbound.clone()).handle(req, inner).await;
            assert_eq!(seen.lock().expect("seen").as_deref(), expected);
            assert_eq!(
                response
                    .headers()
                    .get("x-served-by")
                    .and_then(|v| v.to_str().ok()),
                expected
            );
        }
    }
}
