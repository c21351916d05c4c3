//! The timeout layer: a route's timeout bounds the whole request, retries
//! included; when it passes, the caller gets 504 and whatever was in
//! flight is dropped (the attempt layer counts a dropped attempt as a
//! failure).

use std::sync::Arc;

use http::StatusCode;

use super::{HttpRequest, Layer, Next, ResponseFuture, Routed, decided};
use crate::http::error_response;

/// Applies route timeouts.
#[derive(Debug, Clone)]
pub struct Timeout {}

impl Timeout {
    /// Timing out requests on their route's timeout.
    pub fn new() -> Self {
        Self {}
    }
}

impl Layer for Timeout {
    fn handle<N: Next>(&self, req: HttpRequest, next: N) -> ResponseFuture {
        let timeout = decided::<Arc<Routed>>(&req).and_then(|r| r.route.as_ref()?.timeout);
        let mut next = next;
        let Some(timeout) = timeout else {
            return next.call(req);
        };
        Box::pin(async move {
            let work = next.call(req);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;
    use tower::Service as _;

    use super::*;
    use crate::outbound::layers::fixtures::{self, get, logical, scripted, split, status};
    use crate::outbound::layers::route::Route;

    fn slow_app() -> impl Next {
        scripted(|_| {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok(status(200))
            })
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_route_timeout_answers_504_when_it_passes() {
        let web = logical(
            "10.96.0.10:80".parse().expect("addr"),
            Some(split(
                &[],
                fixtures::route(false, Some(Duration::from_secs(1))),
                Default::default(),
            )),
        );
        let mut service = Route::new(web).over(Timeout::new().over(slow_app()));
        let started = Instant::now();
        let Ok(response) = service.call(get()).await;
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        assert!(
            response
                .headers()
                .get(crate::http::PROXY_ERROR)
                .is_some_and(|v| v.to_str().is_ok_and(|v| v.contains("timed out after 1s"))),
            "the proxy says why: {:?}",
            response.headers()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_timeout_the_request_waits_for_its_answer() {
        let web = logical(
            "10.96.0.10:80".parse().expect("addr"),
            Some(split(&[], fixtures::route(false, None), Default::default())),
        );
        let mut service = Route::new(web).over(Timeout::new().over(slow_app()));
        let Ok(response) = service.call(get()).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
}
