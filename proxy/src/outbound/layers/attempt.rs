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
use crate::discover::profile::BackendFailure;
use crate::http::{self as proxy_http, error_response, grpc_error_response};
use crate::metrics::{self, HttpMetrics, Labels};
use crate::outbound::Target;
use crate::tap::{Direction, Observed, Taps};

/// Sends attempts to endpoints.
#[derive(Debug, Clone)]
pub struct Attempt {
    metrics: HttpMetrics,
    taps: Taps,
}

impl Attempt {
    /// Counting in `metrics`, reporting to `taps`.
    pub fn new(metrics: HttpMetrics, taps: Taps) -> Self {
        Self { metrics, taps }
    }
}

impl tower::Service<HttpRequest> for Attempt {
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: HttpRequest) -> ResponseFuture {
        let metrics = self.metrics.clone();
        let taps = self.taps.clone();
        Box::pin(async move { Ok(attempt(&metrics, &taps, req).await) })
    }
}

async fn attempt(metrics: &HttpMetrics, taps: &Taps, mut req: HttpRequest) -> HttpResponse {
    let (Some(routed), Some(picked)) = (
        decided::<std::sync::Arc<Routed>>(&req),
        decided::<Picked>(&req),
    ) else {
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
    if let Target::Failing(failure) = &*picked.target {
        attempted.failed = true;
        attempted.retry = true;
        let mut response = match failure {
            BackendFailure::Http(status, message) => error_response(*status, message),
            BackendFailure::Grpc(code, message) => grpc_error_response(*code, message),
        };
        response.extensions_mut().insert(attempted);
        return response;
    }
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
    let endpoint_labels = member.labels().clone();
    let counts = routed
        .counts
        .endpoint(&routed.labels, &endpoint_labels, metrics);
    let tapped = tap(taps, &req, &member, &endpoint_labels, &routed.labels);
    attempted.endpoint_labels = Some(endpoint_labels);
    // Linkerd's per-backend families, for a route the policy controller
    // sent.
    let policy_backend = routed
        .route
        .as_ref()
        .and_then(|r| r.policy_labels.as_deref())
        .and_then(|policy| {
            let backend = policy.backend(picked.target.authority())?;
            let series = routed.counts.backend(policy, backend, metrics.routes());
            series.requests.inc();
            Some(series)
        });
    let sent = tokio::time::Instant::now();
    let inflight = member.start();
    let outcome = counts.attempts.send();
    // The route's per-attempt bound (an HTTPRoute's `retry.linkerd.io/timeout`
    // or `timeouts.backendRequest`): a failure, retryable, answered 504.
    let attempt_timeout = routed.route.as_ref().and_then(|r| r.attempt_timeout);
    let result = match attempt_timeout {
        Some(limit) => match tokio::time::timeout(limit, member.client.send(req)).await {
            Ok(result) => result.map_err(AttemptError::Failed),
            Err(_) => Err(AttemptError::TimedOut(limit)),
        },
        None => member.client.send(req).await.map_err(AttemptError::Failed),
    };
    let failed = match &result {
        Ok(response) => {
            let status = response.status();
            let grpc = metrics::grpc_status(response.headers());
            routed
                .route
                .as_ref()
                .and_then(|r| r.is_failure(status, grpc))
                .unwrap_or_else(|| {
                    metrics::classify(status, grpc) == metrics::Classification::Failure
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
        Err(AttemptError::Failed(e)) => error_response(
            StatusCode::BAD_GATEWAY,
            &format!("{}: {}", member.endpoint().addr, error_chain(e.as_ref())),
        ),
        Err(AttemptError::TimedOut(limit)) => error_response(
            StatusCode::GATEWAY_TIMEOUT,
            &format!(
                "{}: no response within the attempt timeout ({limit:?})",
                member.endpoint().addr
            ),
        ),
    };
    // A route's retry conditions judge the answer the caller would see
    // (a transport error is a 502, an attempt timeout a 504).
    attempted.retry = routed.route.as_ref().map_or(failed, |r| {
        r.retries(
            response.status(),
            metrics::grpc_status(response.headers()),
            failed,
        )
    });
    response.extensions_mut().insert(attempted);
    if let Some(tapped) = tapped {
        response = tapped.response(response);
    }
    match policy_backend {
        Some(series) => proxy_http::on_response_end(response, sent, move |duration, outcome| {
            series.responses.record(duration, outcome);
        }),
        None => response,
    }
}

/// Reports an attempt to `member` to the taps that want it.
fn tap(
    taps: &Taps,
    req: &HttpRequest,
    member: &Member,
    endpoint_labels: &Labels,
    route_labels: &Labels,
) -> Option<crate::tap::Tapped> {
    if !taps.is_active() {
        return None;
    }
    let route: Labels = route_labels
        .iter()
        .filter(|(k, _)| *k == "route")
        .cloned()
        .collect();
    let unspecified = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
    taps.observe(&Observed {
        direction: Direction::Outbound,
        source: req
            .extensions()
            .get::<crate::tap::ClientAddr>()
            .map_or(unspecified, |c| c.0),
        destination: member.endpoint().addr,
        source_labels: &[],
        destination_labels: endpoint_labels,
        route_labels: &route,
        request: req.into(),
    })
}

/// Why an attempt got no response.
enum AttemptError {
    /// The endpoint failed it.
    Failed(crate::endpoint::BoxError),
    /// It outlasted the route's attempt timeout.
    TimedOut(std::time::Duration),
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::Instant;
    use tower::Service as _;

    use super::*;
    use crate::balance::{Balancer, MakeClient};
    use crate::discover::{Endpoint, EndpointSet};
    use crate::endpoint::EndpointClient;
    use crate::outbound::layers::fixtures::{self, get, logical, outbound, sample, split};
    use crate::outbound::layers::route::Route;
    use crate::outbound::layers::timeout::Timeout;
    use crate::outbound::layers::{Layer as _, Next};
    use crate::outbound::{ENDPOINT_WAIT, Target};

    /// A backend whose endpoints discovery has answered: there are none
    /// (while the sender lives, discovery could still add one).
    fn empty_backend() -> (Arc<Target>, tokio::sync::watch::Sender<Arc<EndpointSet>>) {
        let set = EndpointSet {
            resolved: true,
            exists: true,
            ..EndpointSet::default()
        };
        let (discovery, watch) = tokio::sync::watch::channel(Arc::new(set));
        let make: MakeClient = Arc::new(|_: &Endpoint| None);
        let target = Target::Balanced(Balancer::new(
            "primary.test.svc.cluster.local:80".into(),
            watch,
            make,
        ));
        (Arc::new(target), discovery)
    }

    /// Route (with `timeout`) → timeout → attempt to `target`.
    fn to(
        target: Arc<Target>,
        fail_fast: bool,
        timeout: Option<Duration>,
    ) -> (
        impl Next,
        Arc<std::sync::Mutex<prometheus_client::registry::Registry>>,
    ) {
        let (outbound, registry) = outbound();
        let attempt = Attempt::new(outbound.http_metrics.clone(), Default::default());
        let pick = fixtures::scripted(move |mut req| {
            req.extensions_mut().insert(Picked {
                target: target.clone(),
                fail_fast,
            });
            let mut attempt = attempt.clone();
            Box::pin(async move { attempt.call(req).await })
        });
        let web = logical(
            "10.96.0.10:80".parse().expect("addr"),
            Some(split(
                &[],
                fixtures::route(false, timeout),
                Default::default(),
            )),
        );
        (Route::new(web).over(Timeout::new().over(pick)), registry)
    }

    #[tokio::test(start_paused = true)]
    async fn a_backend_without_endpoints_fails_at_once_when_another_could_answer() {
        let (backend, _discovery) = empty_backend();
        let (mut service, _) = to(backend, true, None);
        let started = Instant::now();
        let Ok(response) = service.call(get()).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(started.elapsed(), Duration::ZERO, "no wait");
        let attempted = response.extensions().get::<Attempted>().expect("attempted");
        assert!(attempted.no_endpoint && attempted.elsewhere);
    }

    #[tokio::test(start_paused = true)]
    async fn a_backend_without_endpoints_is_waited_for_when_it_is_the_only_one() {
        let (backend, _discovery) = empty_backend();
        let (mut service, _) = to(backend, false, None);
        let started = Instant::now();
        let Ok(response) = service.call(get()).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(started.elapsed(), ENDPOINT_WAIT);
    }

    /// An endpoint on loopback that reads requests and answers `answer`
    /// (or never, when `None`).
    async fn endpoint(answer: Option<&'static str>) -> Arc<Target> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    let _ = stream.read(&mut buffer).await;
                    match answer {
                        Some(answer) => {
                            let _ = stream.write_all(answer.as_bytes()).await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                });
            }
        });
        let client = EndpointClient::plain(Endpoint::unmeshed(addr), Duration::from_secs(1));
        Arc::new(Target::Direct(crate::balance::Member::new(client)))
    }

    #[tokio::test]
    async fn an_attempt_given_up_before_its_answer_counts_as_a_failure() {
        let (mut service, registry) = to(
            endpoint(None).await,
            false,
            Some(Duration::from_millis(200)),
        );
        let Ok(response) = service.call(get()).await;
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            sample(
                &registry,
                "route_actual_request_total",
                &[("route", "route")]
            ),
            1.0
        );
        assert_eq!(
            sample(
                &registry,
                "route_actual_response_total",
                &[("classification", "failure")]
            ),
            1.0,
            "the endpoint that did not answer in time is charged with a failure"
        );
    }

    #[tokio::test]
    async fn an_answered_attempt_is_counted_by_its_status() {
        let (mut service, registry) = to(
            endpoint(Some("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")).await,
            false,
            None,
        );
        let Ok(response) = service.call(get()).await;
        assert_eq!(response.status(), StatusCode::OK);
        let attempted = response.extensions().get::<Attempted>().expect("attempted");
        assert!(!attempted.failed);
        assert_eq!(
            attempted.endpoint_labels.as_deref().map(Vec::as_slice),
            Some(&[("tls", "no_identity".to_owned())][..])
        );
        assert_eq!(
            sample(
                &registry,
                "route_actual_response_total",
                &[("classification", "success")]
            ),
            1.0
        );
    }
}
