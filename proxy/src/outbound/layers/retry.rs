//! The retry layer: a request on a retryable route (and with a body small
//! enough to keep, [`retry::MAX_BUFFERED_BODY`]) is buffered, and an
//! attempt that failed, or found no endpoint while another backend could
//! take it, is sent again while the destination's budget allows
//! (Linkerd's retry budget: every request deposits, every retry
//! withdraws). Each retry names the backends already tried, so the split
//! layer sends it elsewhere when it can.

use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Body as _;
use tokio::time::Instant;

use super::{AttemptSpec, Attempted, HttpRequest, HttpResponse, ResponseFuture, Routed, decided};
use crate::endpoint;
use crate::http::error_response;
use crate::metrics::{HttpMetrics, Labels};
use crate::retry;

/// Retries failed attempts within the budget.
#[derive(Debug, Clone)]
pub struct RetryLayer<S> {
    metrics: HttpMetrics,
    inner: S,
}

impl<S> RetryLayer<S> {
    /// Retries on `inner`, counting in `metrics`.
    pub fn new(metrics: HttpMetrics, inner: S) -> Self {
        Self { metrics, inner }
    }
}

impl<S> tower::Service<HttpRequest> for RetryLayer<S>
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
        let inner = self.inner.clone();
        let metrics = self.metrics.clone();
        let routed = decided::<Routed>(&req);
        let retryable = routed
            .as_ref()
            .and_then(|r| r.route.as_ref())
            .is_some_and(|r| r.retryable)
            && !endpoint::is_upgrade(&req)
            && req
                .body()
                .size_hint()
                .exact()
                .is_some_and(|n| n <= retry::MAX_BUFFERED_BODY);
        let (Some(routed), true) = (routed, retryable) else {
            req.extensions_mut().insert(AttemptSpec::default());
            let mut inner = inner;
            return Box::pin(async move { inner.call(req).await });
        };
        Box::pin(retrying(inner, metrics, routed, req))
    }
}

async fn retrying<S>(
    mut inner: S,
    metrics: HttpMetrics,
    routed: Routed,
    req: HttpRequest,
) -> Result<HttpResponse, Infallible>
where
    S: tower::Service<
            HttpRequest,
            Response = HttpResponse,
            Error = Infallible,
            Future = ResponseFuture,
        >,
{
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return Ok(error_response(
                StatusCode::BAD_REQUEST,
                &format!("reading the request body: {e}"),
            ));
        }
    };
    let logical = &routed.logical;
    let profile = routed.profile.as_deref();
    logical.budget(profile).deposit(Instant::now());
    let mut spec = AttemptSpec {
        retryable: true,
        tried: Vec::new(),
    };
    loop {
        let Ok(response) = inner.call(attempt_request(&parts, &body, &spec)).await;
        let attempted = response
            .extensions()
            .get::<Attempted>()
            .cloned()
            .unwrap_or_default();
        let labels: Labels = routed
            .labels
            .iter()
            .cloned()
            .chain(attempted.endpoint_labels.iter().flatten().cloned())
            .collect();
        let retry_wanted = if attempted.no_endpoint {
            attempted.elsewhere
        } else {
            attempted.failed
        };
        if !retry_wanted {
            return Ok(response);
        }
        if !logical.budget(profile).withdraw(Instant::now()) {
            if !attempted.no_endpoint {
                metrics.retry_refused(&labels);
            }
            return Ok(response);
        }
        spec.tried.extend(attempted.backend);
        metrics.retry(&labels);
        tracing::debug!(attempt = spec.tried.len(), "retrying");
    }
}

/// One attempt of the buffered request.
fn attempt_request(parts: &http::request::Parts, body: &Bytes, spec: &AttemptSpec) -> HttpRequest {
    let mut request = HttpRequest::new(endpoint::full(Bytes::clone(body)));
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    *request.extensions_mut() = parts.extensions.clone();
    request.extensions_mut().insert(spec.clone());
    request
}
