//! The observe layer: counts each request once (`request_total`), and its
//! response, classified by the route's classes, with its latency
//! (`response_total`, `response_latency_ms`) when the body ends. The
//! endpoint labels are those of the last attempt, as it reported them.

use std::convert::Infallible;
use std::task::{Context, Poll};

use tokio::time::Instant;

use super::{Attempted, HttpRequest, HttpResponse, ResponseFuture, Routed, decided};
use crate::metrics::HttpMetrics;

/// Counts requests and responses.
#[derive(Debug, Clone)]
pub struct ObserveLayer<S> {
    metrics: HttpMetrics,
    inner: S,
}

impl<S> ObserveLayer<S> {
    /// Counts in `metrics`, then `inner`.
    pub fn new(metrics: HttpMetrics, inner: S) -> Self {
        Self { metrics, inner }
    }
}

impl<S> tower::Service<HttpRequest> for ObserveLayer<S>
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

    fn call(&mut self, req: HttpRequest) -> ResponseFuture {
        let started = Instant::now();
        let routed = decided::<Routed>(&req);
        let mut inner = self.inner.clone();
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let Ok(response) = inner.call(req).await;
            let (mut labels, route) = match routed {
                Some(routed) => (routed.labels, routed.route),
                None => (vec![("direction", "outbound".to_owned())], None),
            };
            let endpoint = response
                .extensions()
                .get::<Attempted>()
                .and_then(|a| a.endpoint_labels.clone());
            labels.extend(endpoint.unwrap_or_else(|| vec![("tls", "no_identity".to_owned())]));
            let route_failure = route.as_ref().and_then(|r| r.is_failure(response.status()));
            Ok(crate::http::observe_response(
                &metrics,
                labels,
                response,
                route_failure,
                started,
            ))
        })
    }
}
