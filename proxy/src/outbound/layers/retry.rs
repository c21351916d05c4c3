//! The retry layer: a request on a retryable route (and with a body small
//! enough to keep, [`retry::MAX_BUFFERED_BODY`]) is buffered, and an
//! attempt that failed, or found no endpoint while another backend could
//! take it, is sent again while the destination's budget allows
//! (Linkerd's retry budget: every request deposits, every retry
//! withdraws), and, when the route sets one, at most its limit of retries
//! per request. Each retry names the backends already tried, so the split
//! layer sends it elsewhere when it can. Retries are counted in Linkerd's
//! `outbound_{http,grpc}_route_retry_*` families ([`RetryEvent`]).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Body as _;
use tokio::time::Instant;

use super::{
    AttemptSpec, Attempted, HttpRequest, HttpResponse, Layer, Next, ResponseFuture, Routed, decided,
};
use crate::endpoint;
use crate::http::error_response;
use crate::metrics::{HttpMetrics, Labels};
use crate::retry;
use crate::route_metrics::{RetryEvent, RouteMetrics};

/// Retries failed attempts within the budget.
#[derive(Debug, Clone)]
pub struct Retry {
    metrics: HttpMetrics,
}

impl Retry {
    /// Counting retries in `metrics`.
    pub fn new(metrics: HttpMetrics) -> Self {
        Self { metrics }
    }
}

impl Layer for Retry {
    fn handle<N: Next>(&self, req: HttpRequest, next: N) -> ResponseFuture {
        let inner = next;
        let metrics = self.metrics.clone();
        let routed = decided::<Arc<Routed>>(&req);
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
        // A request that is not retried goes on as it came (the layers
        // below take a missing AttemptSpec as its default).
        let (Some(routed), true) = (routed, retryable) else {
            let mut inner = inner;
            return inner.call(req);
        };
        Box::pin(retrying(inner, metrics, routed, req))
    }
}

async fn retrying<S>(
    mut inner: S,
    metrics: HttpMetrics,
    routed: Arc<Routed>,
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
    // An HTTPRoute's `retry.linkerd.io/limit` bounds each request's
    // retries, on top of the budget.
    let limit = routed.route.as_ref().and_then(|r| r.max_retries);
    // A policy route counts its retries under its own labels (Linkerd's);
    // a ServiceProfile route under the request's and endpoint's.
    let policy = routed
        .route
        .as_ref()
        .and_then(|r| r.policy_labels.as_deref())
        .map(|policy| {
            let hostname = crate::route_metrics::hostname(&parts.uri, &parts.headers);
            (policy.grpc, RouteMetrics::route_labels(policy, hostname))
        });
    let mut retries = 0u32;
    loop {
        let Ok(response) = inner.call(attempt_request(&parts, &body, &spec)).await;
        let attempted = response
            .extensions()
            .get::<Attempted>()
            .cloned()
            .unwrap_or_default();
        let count = |event| match &policy {
            Some((grpc, labels)) => metrics.routes().retry(*grpc, labels, event),
            None => {
                let labels: Labels = routed
                    .labels
                    .iter()
                    .cloned()
                    .chain(
                        attempted
                            .endpoint_labels
                            .iter()
                            .flat_map(|l| l.iter())
                            .cloned(),
                    )
                    .collect();
                metrics.routes().retry(false, &labels, event);
            }
        };
        let retry_wanted = if attempted.no_endpoint {
            attempted.elsewhere
        } else {
            attempted.retry
        };
        if !retry_wanted {
            if attempted.no_endpoint {
                count(RetryEvent::Overflow);
            } else if retries > 0 {
                count(RetryEvent::Succeeded);
            }
            return Ok(response);
        }
        if limit.is_some_and(|limit| retries >= limit)
            || !logical.budget(profile).withdraw(Instant::now())
        {
            count(RetryEvent::LimitExceeded);
            return Ok(response);
        }
        spec.tried.extend(attempted.backend);
        retries += 1;
        count(RetryEvent::Sent);
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tower::Service as _;

    use super::*;
    use crate::discover::profile::RetryBudget;
    use crate::outbound::layers::fixtures::{
        self, get, logical, outbound, sample, scripted, split, status,
    };
    use crate::outbound::layers::route::Route;
    use crate::outbound::layers::split::Split;
    use crate::outbound::layers::{Picked, decided};

    const PRIMARY: &str = "primary.test.svc.cluster.local:80";
    const SECONDARY: &str = "secondary.test.svc.cluster.local:80";

    /// What the backends saw: (backend, whether it could fail fast).
    type Seen = Arc<Mutex<Vec<(String, bool)>>>;

    /// Route → retry → split over backends that answer as `answer` says
    /// (by backend authority), recording what each attempt was sent to.
    fn stack(
        backends: &[(&str, u32)],
        retryable: bool,
        budget: RetryBudget,
        answer: fn(&str) -> (u16, bool),
    ) -> (
        impl Next,
        Seen,
        Arc<Mutex<prometheus_client::registry::Registry>>,
    ) {
        stack_with(backends, fixtures::route(retryable, None), budget, answer)
    }

    /// [`stack`] with `route`.
    fn stack_with(
        backends: &[(&str, u32)],
        route: crate::discover::profile::Route,
        budget: RetryBudget,
        answer: fn(&str) -> (u16, bool),
    ) -> (
        impl Next,
        Seen,
        Arc<Mutex<prometheus_client::registry::Registry>>,
    ) {
        let (outbound, registry) = outbound();
        let seen: Seen = Arc::default();
        let record = seen.clone();
        let backends_app = scripted(move |req| {
            let picked = decided::<Picked>(&req).expect("picked");
            let backend = picked.target.authority().unwrap_or_default().to_owned();
            record
                .lock()
                .expect("seen")
                .push((backend.clone(), picked.fail_fast));
            let (code, no_endpoint) = answer(&backend);
            let mut response = status(code);
            response.extensions_mut().insert(Attempted {
                backend: Some(backend),
                no_endpoint,
                elsewhere: picked.fail_fast,
                failed: code >= 500,
                retry: code >= 500,
                endpoint_labels: None,
            });
            Box::pin(async move { Ok(response) })
        });
        let web = logical(
            "10.96.0.10:80".parse().expect("addr"),
            Some(split(backends, route, budget)),
        );
        let metrics = outbound.http_metrics.clone();
        let service =
            Route::new(web).over(Retry::new(metrics).over(Split::new(outbound).over(backends_app)));
        (service, seen, registry)
    }

    fn backends(seen: &Seen) -> Vec<String> {
        seen.lock()
            .expect("seen")
            .iter()
            .map(|(b, _)| b.clone())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_on_the_primary_is_retried_on_the_secondary_of_the_split() {
        // The failover controller has not moved the weights yet: the
        // secondary has none, and still takes the retry.
        let (mut service, seen, registry) = stack(
            &[(PRIMARY, 1), (SECONDARY, 0)],
            true,
            RetryBudget::default(),
            |backend| (if backend == PRIMARY { 500 } else { 200 }, false),
        );
        let Ok(response) = service.call(get()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(backends(&seen), [PRIMARY, SECONDARY]);
        assert_eq!(
            sample(&registry, "outbound_http_route_retry_requests_total", &[]),
            1.0
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_backend_with_no_endpoints_is_skipped_at_once() {
        let (mut service, seen, _) = stack(
            &[(PRIMARY, 1), (SECONDARY, 0)],
            true,
            RetryBudget::default(),
            |backend| {
                if backend == PRIMARY {
                    (503, true)
                } else {
                    (200, false)
                }
            },
        );
        let Ok(response) = service.call(get()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            *seen.lock().expect("seen"),
            [(PRIMARY.to_owned(), true), (SECONDARY.to_owned(), false)],
            "the primary was asked to fail fast, as the secondary could take the request"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_when_the_budget_is_spent() {
        let budget = RetryBudget {
            ratio: 0.0,
            min_per_second: 1,
            ttl: Duration::from_secs(3),
        };
        let (mut service, seen, registry) = stack(&[], true, budget, |_| (500, false));
        let Ok(response) = service.call(get()).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            seen.lock().expect("seen").len(),
            4,
            "the first attempt and the 3 retries the budget holds"
        );
        assert_eq!(
            sample(&registry, "outbound_http_route_retry_requests_total", &[]),
            3.0
        );
        assert_eq!(
            sample(
                &registry,
                "outbound_http_route_retry_limit_exceeded_total",
                &[]
            ),
            1.0
        );
    }

    /// A route the policy controller sent counts its retries in Linkerd's
    /// families, under its parent and route labels and `hostname`: a retry
    /// that is answered is a success; one past the route's limit is
    /// counted as exceeding it; a request with no endpoint and no other
    /// backend overflows; a gRPC route counts in the gRPC families.
    #[tokio::test(start_paused = true)]
    async fn a_policy_routes_retries_count_in_linkerds_families() {
        let policy_route = |grpc: bool, limit: u32| {
            let mut route = fixtures::route(true, None);
            route.max_retries = Some(limit);
            route.policy_labels = Some(Arc::new(crate::route_metrics::PolicyRouteLabels {
                grpc,
                route: vec![
                    ("parent_name", "web".to_owned()),
                    ("route_name", "web-route".to_owned()),
                ],
                backends: Vec::new(),
            }));
            route
        };
        let labels = [
            ("parent_name", "web"),
            ("route_name", "web-route"),
            ("hostname", "web.test.svc.cluster.local"),
        ];
        let counted = |registry: &Arc<Mutex<prometheus_client::registry::Registry>>,
                       expected: &[(&str, f64)]| {
            for (family, value) in expected {
                assert_eq!(sample(registry, family, &labels), *value, "{family}");
            }
        };

        // Retried on the secondary, which answers.
        let (mut service, _, registry) = stack_with(
            &[(PRIMARY, 1), (SECONDARY, 0)],
            policy_route(false, 2),
            RetryBudget::default(),
            |backend| (if backend == PRIMARY { 500 } else { 200 }, false),
        );
        let Ok(response) = service.call(get()).await;
        assert_eq!(response.status(), StatusCode::OK);
        counted(
            &registry,
            &[
                ("outbound_http_route_retry_requests_total", 1.0),
                ("outbound_http_route_retry_successes_total", 1.0),
                ("outbound_http_route_retry_limit_exceeded_total", 0.0),
            ],
        );

        // Every attempt fails: one retry (the limit), then the limit.
        let (mut service, seen, registry) =
            stack_with(&[], policy_route(true, 1), RetryBudget::default(), |_| {
                (500, false)
            });
        let Ok(response) = service.call(get()).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(seen.lock().expect("seen").len(), 2);
        counted(
            &registry,
            &[
                ("outbound_grpc_route_retry_requests_total", 1.0),
                ("outbound_grpc_route_retry_limit_exceeded_total", 1.0),
                ("outbound_grpc_route_retry_successes_total", 0.0),
                ("outbound_http_route_retry_requests_total", 0.0),
            ],
        );

        // No endpoint, nowhere else to go.
        let (mut service, _, registry) =
            stack_with(&[], policy_route(false, 2), RetryBudget::default(), |_| {
                (503, true)
            });
        let Ok(response) = service.call(get()).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        counted(
            &registry,
            &[
                ("outbound_http_route_retry_overflow_total", 1.0),
                ("outbound_http_route_retry_requests_total", 0.0),
            ],
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_route_that_is_not_retryable_is_sent_once() {
        let (mut service, seen, _) = stack(
            &[(PRIMARY, 1), (SECONDARY, 0)],
            false,
            RetryBudget::default(),
            |_| (500, false),
        );
        let Ok(response) = service.call(get()).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            *seen.lock().expect("seen"),
            [(PRIMARY.to_owned(), false)],
            "one attempt, and no fail-fast for a request that cannot go elsewhere"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_retried_request_sends_its_body_again() {
        let bodies: Arc<Mutex<Vec<Bytes>>> = Arc::default();
        let record = bodies.clone();
        let app = scripted(move |req| {
            let record = record.clone();
            Box::pin(async move {
                let body = req.into_body().collect().await.expect("body").to_bytes();
                let first = {
                    let mut bodies = record.lock().expect("bodies");
                    bodies.push(body);
                    bodies.len() == 1
                };
                let mut response = status(if first { 500 } else { 200 });
                response.extensions_mut().insert(Attempted {
                    failed: first,
                    retry: first,
                    ..Attempted::default()
                });
                Ok(response)
            })
        });
        let (outbound, _) = outbound();
        let web = logical(
            "10.96.0.10:80".parse().expect("addr"),
            Some(split(
                &[],
                fixtures::route(true, None),
                RetryBudget::default(),
            )),
        );
        let mut service = Route::new(web)
            .over(Retry::new(outbound.http_metrics.clone()).over(Split::new(outbound).over(app)));
        let request = http::Request::post("http://web.test.svc.cluster.local/")
            .body(endpoint::full("order #1"))
            .expect("request");
        let Ok(response) = service.call(request).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(*bodies.lock().expect("bodies"), ["order #1", "order #1"]);
    }
}
