//! The attempt layer, the last one: picks an endpoint of the target
//! (waiting up to [`ENDPOINT_WAIT`](crate::outbound::ENDPOINT_WAIT) for
//! one to exist, or failing at once when another backend could take the
//! request), sends the attempt, and counts it (`route_actual_request_total`
//! and `route_actual_response_total`; an attempt dropped before its answer,
//! by a timeout or a caller that hung up, counts as a failure of that
//! endpoint). What happened travels up on the response as [`Attempted`].

use std::convert::Infallible;
use std::task::{Context, Poll};

use http::StatusCode;

use super::{Attempted, HttpRequest, HttpResponse, Picked, ResponseFuture, Routed, decided};
use crate::balance::Member;
use crate::http::{self as proxy_http, error_response};
use crate::metrics::{self, HttpMetrics, Labels};

/// Sends attempts to endpoints.
#[derive(Debug, Clone)]
pub struct AttemptLayer {
    metrics: HttpMetrics,
}

impl AttemptLayer {
    /// Counting in `metrics`.
    pub fn new(metrics: HttpMetrics) -> Self {
        Self { metrics }
    }
}

impl tower::Service<HttpRequest> for AttemptLayer {
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: HttpRequest) -> ResponseFuture {
        let metrics = self.metrics.clone();
        Box::pin(async move { Ok(attempt(&metrics, req).await) })
    }
}

async fn attempt(metrics: &HttpMetrics, mut req: HttpRequest) -> HttpResponse {
    let (Some(routed), Some(picked)) = (decided::<Routed>(&req), decided::<Picked>(&req)) else {
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the request has no target",
        );
    };
    let mut attempted = Attempted {
        backend: picked.target.authority().map(str::to_owned),
        elsewhere: picked.fail_fast,
        ..Attempted::default()
    };
    let member = match picked.target.pick_within(picked.fail_fast).await {
        Ok(member) => member,
        Err(e) => {
            attempted.no_endpoint = true;
            attempted.failed = true;
            let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
            response.extensions_mut().insert(attempted);
            return response;
        }
    };
    let downstream_upgrade = proxy_http::take_upgrade(&mut req);
    let endpoint_labels = endpoint_labels(&member);
    let mut labels = routed.labels.clone();
    labels.extend(endpoint_labels.iter().cloned());
    attempted.endpoint_labels = Some(endpoint_labels);
    metrics.attempt(&labels);
    let inflight = member.start();
    let outcome = metrics.outcome_on_drop(&labels);
    let result = member.client.send(req).await;
    let failed = match &result {
        Ok(response) => {
            let status = response.status();
            routed
                .route
                .as_ref()
                .and_then(|r| r.is_failure(status))
                .unwrap_or_else(|| {
                    metrics::classify(status, metrics::grpc_status(response.headers()))
                        == metrics::Classification::Failure
                })
        }
        Err(_) => true,
    };
    inflight.finish(!failed);
    outcome.record(failed);
    attempted.failed = failed;
    let mut response = match result {
        Ok(mut response) => {
            proxy_http::relay_upgrade(downstream_upgrade, &mut response);
            proxy_http::boxed_response(response)
        }
        Err(e) => error_response(
            StatusCode::BAD_GATEWAY,
            &format!("{}: {}", member.endpoint().addr, error_chain(e.as_ref())),
        ),
    };
    response.extensions_mut().insert(attempted);
    response
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The labels of traffic to `member`: `tls` and `server_id`, `dst_*`.
pub fn endpoint_labels(member: &Member) -> Labels {
    let endpoint = member.endpoint();
    let mut labels = Vec::new();
    match (&endpoint.identity, member.client.meshed()) {
        (Some(id), true) => {
            labels.push(("tls", "true".to_owned()));
            labels.push(("server_id", id.clone()));
        }
        _ => labels.push(("tls", "no_identity".to_owned())),
    }
    labels.extend(endpoint.labels.iter().cloned());
    labels
}
