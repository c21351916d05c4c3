//! The observe layer: counts each request once (`request_total`), and its
//! response, classified by the route's classes, with its latency
//! (`response_total`, `response_latency_ms`) when the body ends. The
//! endpoint labels are those of the last attempt, as it reported them.
//! A route the policy controller sent is also counted in Linkerd's
//! `outbound_*_route_request_*` families ([`crate::route_metrics`]); a
//! request to a Service with named routes (ServiceProfile routes, or
//! HTTPRoute/GRPCRoute resources) in Linkerd's `route_request_total`,
//! `route_response_total` and `route_response_latency_ms` (`dst`,
//! `rt_route`: the ServiceProfile route's or the route resource's name),
//! which `viz routes` and `viz stat httproute` read: the policy families'
//! latency buckets (0.05 s to 10 s) are too coarse for a p50 in
//! milliseconds.

use std::sync::Arc;

use tokio::time::Instant;

use super::{Attempted, HttpRequest, Layer, Next, ResponseFuture, Routed, decided};
use crate::metrics::HttpMetrics;

/// Counts requests and responses.
#[derive(Debug, Clone)]
pub struct Observe {
    metrics: HttpMetrics,
}

impl Observe {
    /// Counting in `metrics`.
    pub fn new(metrics: HttpMetrics) -> Self {
        Self { metrics }
    }
}

impl Layer for Observe {
    fn handle<N: Next>(&self, req: HttpRequest, next: N) -> ResponseFuture {
        let started = Instant::now();
        let routed = decided::<Arc<Routed>>(&req);
        let metrics = self.metrics.clone();
        // Only Linkerd's route families label the host: read it for a
        // route the policy controller sent, not on every request.
        let policy_route = routed.as_ref().and_then(|routed| {
            let policy = routed.route.as_ref()?.policy_labels.as_deref()?;
            let hostname = crate::route_metrics::hostname(req.uri(), req.headers());
            Some(
                routed
                    .counts
                    .policy_route(policy, hostname, metrics.routes()),
            )
        });
        let mut inner = next;
        Box::pin(async move {
            let Ok(response) = inner.call(req).await;
            let route = routed.as_ref().and_then(|r| r.route.as_ref());
            let endpoint = response
                .extensions()
                .get::<Attempted>()
                .and_then(|a| a.endpoint_labels.as_ref());
            let series = match (&routed, endpoint) {
                (Some(routed), Some(endpoint)) => routed
                    .counts
                    .endpoint(&routed.labels, endpoint, &metrics)
                    .golden
                    .clone(),
                // No endpoint answered (none could be picked, or the
                // route answered itself).
                _ => {
                    let mut labels = match &routed {
                        Some(routed) => routed.labels.clone(),
                        None => vec![("direction", "outbound".to_owned())],
                    };
                    labels.push(("tls", "no_identity".to_owned()));
                    metrics.series(labels)
                }
            };
            let route_failure = route.and_then(|r| {
                r.is_failure(
                    response.status(),
                    crate::metrics::grpc_status(response.headers()),
                )
            });
            let profile_route = routed
                .as_deref()
                .and_then(|routed| routed.counts.profile_route(routed, &metrics));
            let response = crate::http::observe_response(
                series,
                response,
                route_failure,
                profile_route,
                started,
            );
            Ok(match policy_route {
                Some(series) => {
                    crate::http::on_response_end(response, started, move |duration, outcome| {
                        series.record(duration, outcome);
                    })
                }
                None => response,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use tower::Service as _;

    use super::*;
    use crate::discover::profile::{ResponseClass, ResponseMatch};
    use crate::outbound::layers::fixtures::{
        self, get, logical, outbound, sample, scripted, split, status,
    };
    use crate::outbound::layers::route::Route;

    fn answering(
        code: u16,
    ) -> (
        impl Next,
        std::sync::Arc<std::sync::Mutex<prometheus_client::registry::Registry>>,
    ) {
        let mut route = fixtures::route(false, None);
        // This route counts 503 as a success (a deliberate "closed" answer).
        route.response_classes = vec![ResponseClass {
            condition: ResponseMatch::Status(503, 503),
            is_failure: false,
        }];
        answering_on(code, route)
    }

    /// A Service whose only route is `route`, answered `code` with mTLS.
    fn answering_on(
        code: u16,
        route: crate::discover::profile::Route,
    ) -> (
        impl Next,
        std::sync::Arc<std::sync::Mutex<prometheus_client::registry::Registry>>,
    ) {
        let (outbound, registry) = outbound();
        let app = scripted(move |_| {
            let mut response = status(code);
            response.extensions_mut().insert(Attempted {
                endpoint_labels: Some(Arc::new(vec![
                    ("tls", "true".to_owned()),
                    (
                        "server_id",
                        "web.test.serviceaccount.identity.linkerd.cluster.local".to_owned(),
                    ),
                ])),
                ..Attempted::default()
            });
            Box::pin(async move { Ok(response) })
        });
        let web = logical(
            "10.96.0.10:80".parse().expect("addr"),
            Some(split(&[], route, Default::default())),
        );
        (
            Route::new(web).over(Observe::new(outbound.http_metrics.clone()).over(app)),
            registry,
        )
    }

    #[tokio::test]
    async fn a_response_is_counted_once_with_its_endpoint_and_classified_by_its_route() {
        for (code, classification) in [(500, "failure"), (503, "success"), (200, "success")] {
            let (mut service, registry) = answering(code);
            let Ok(response) = service.call(get()).await;
            response.into_body().collect().await.expect("body");
            let labels = [
                ("authority", "web.test.svc.cluster.local:80"),
                ("route", "route"),
                ("tls", "true"),
                ("classification", classification),
            ];
            assert_eq!(sample(&registry, "request_total", &labels[..3]), 1.0);
            assert_eq!(
                sample(&registry, "response_total", &labels),
                1.0,
                "{code} is a {classification}"
            );
            // Linkerd's ServiceProfile route families, which `viz routes`
            // reads: by `dst` and `rt_route`, classified the same way.
            let route = [
                ("direction", "outbound"),
                ("dst", "web.test.svc.cluster.local:80"),
                ("rt_route", "route"),
                ("classification", classification),
            ];
            assert_eq!(sample(&registry, "route_request_total", &route[..3]), 1.0);
            assert_eq!(
                sample(&registry, "route_response_total", &route),
                1.0,
                "{code} is a {classification} on its route too"
            );
            assert_eq!(
                sample(&registry, "route_response_latency_ms_count", &route[..3]),
                1.0
            );
        }
    }

    /// A route the policy controller sent from an HTTPRoute counts in the
    /// `route_*` families under the HTTPRoute's name, as a ServiceProfile
    /// route does; the Service's default route (no resource: no name) does
    /// not, or every request to every Service would be counted twice.
    #[tokio::test]
    async fn an_httproutes_requests_count_under_its_name_and_the_default_routes_do_not() {
        let policy_route = |name: Option<&str>| {
            let mut route = fixtures::route(false, None);
            route.name = name.map(str::to_owned);
            route.policy_labels = Some(std::sync::Arc::new(
                crate::route_metrics::PolicyRouteLabels {
                    grpc: false,
                    route: vec![("route_name", name.unwrap_or("default").to_owned())],
                    backends: Vec::new(),
                },
            ));
            route
        };
        let route = [
            ("direction", "outbound"),
            ("dst", "web.test.svc.cluster.local:80"),
            ("rt_route", "web-root"),
            ("classification", "success"),
        ];
        let (mut service, registry) = answering_on(200, policy_route(Some("web-root")));
        let Ok(response) = service.call(get()).await;
        response.into_body().collect().await.expect("body");
        assert_eq!(sample(&registry, "route_request_total", &route[..3]), 1.0);
        assert_eq!(sample(&registry, "route_response_total", &route), 1.0);

        let (mut service, registry) = answering_on(200, policy_route(None));
        let Ok(response) = service.call(get()).await;
        response.into_body().collect().await.expect("body");
        assert_eq!(
            sample(&registry, "route_request_total", &[]),
            0.0,
            "the default route is not counted per route"
        );
        assert_eq!(
            sample(&registry, "request_total", &[("direction", "outbound")]),
            1.0,
            "the request itself is counted"
        );
    }
}
