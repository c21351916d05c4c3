//! The timeout layer: a route's timeout bounds the whole request, retries
//! included; when it passes, the caller gets 504 and whatever was in
//! flight is dropped (the attempt layer counts a dropped attempt as a
//! failure).

use std::convert::Infallible;
use std::task::{Context, Poll};

use http::StatusCode;

use super::{HttpRequest, HttpResponse, ResponseFuture, Routed, decided};
use crate::http::error_response;

/// Applies route timeouts.
#[derive(Debug, Clone)]
pub struct TimeoutLayer<S> {
    inner: S,
}

impl<S> TimeoutLayer<S> {
    /// Times out `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S> tower::Service<HttpRequest> for TimeoutLayer<S>
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
        let timeout = decided::<Routed>(&req)
            .and_then(|r| r.route)
            .and_then(|r| r.timeout);
        let mut inner = self.inner.clone();
        Box::pin(async move {
            let work = inner.call(req);
            let Some(timeout) = timeout else {
                return work.await;
            };
            Ok(match tokio::time::timeout(timeout, work).await {
                Ok(Ok(response)) => response,
                Err(_) => error_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!(
                        "request timed out after {}",
                        humantime::format_duration(timeout)
                    ),
                ),
            })
        })
    }
}
