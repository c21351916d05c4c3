//! What a routed request is counted under, kept with its [`Routed`]
//! decision so that the requests that share one do their label work once:
//! for each endpoint, the attempt counters (`route_actual_*`) and the
//! golden series (`request_total`, `response_total`,
//! `response_latency_ms`), both labelled with the route's labels and the
//! endpoint's; the ServiceProfile route series (`route_*`); and for a
//! route the policy controller sent, Linkerd's route series by hostname
//! and backend series by backend (`outbound_*_route_*`).
//!
//! Endpoints are known by their labels' allocation ([`Member::labels`],
//! made once per member and held here, so it cannot be reused for another
//! while it is a key). A balancer's members come and go, so the endpoints
//! kept are bounded ([`MAX_ENDPOINTS`]); past that, a request resolves its
//! counters as if it were the first. The hostnames kept are bounded too
//! ([`MAX_HOSTNAMES`]): the client chooses them. A decision is shared by
//! every connection to its destination, so a full set starts afresh rather
//! than refusing newcomers: ever new names cannot keep common ones out.
//!
//! [`Member::labels`]: crate::balance::Member::labels

use std::sync::{Arc, OnceLock};

use super::Routed;
use crate::cache::{Kept, WhenFull};
use crate::metrics::{AttemptCounters, HttpMetrics, Labels, Series};
use crate::route_metrics::{BackendSeries, PolicyRouteLabels, RouteMetrics, StatusSeries};

/// How many endpoints one routed decision keeps counters for.
pub const MAX_ENDPOINTS: usize = 32;
/// How many hostnames one routed decision keeps policy route series for.
pub const MAX_HOSTNAMES: usize = 16;

/// How many backends one routed decision keeps series for (a route has
/// few; the bound is a backstop).
const MAX_BACKENDS: usize = 64;

/// A routed decision's counters: see the module.
#[derive(Debug)]
pub struct RoutedCounts {
    by_endpoint: Kept<Arc<Labels>, Arc<EndpointCounts>>,
    profile_route: OnceLock<Option<Arc<Series>>>,
    by_hostname: Kept<Option<String>, Arc<StatusSeries>>,
    /// By the address of the backend's labels in the route's
    /// [`PolicyRouteLabels`], which the decision holds.
    by_backend: Kept<usize, Arc<BackendSeries>>,
}

impl Default for RoutedCounts {
    fn default() -> Self {
        Self {
            by_endpoint: Kept::new(MAX_ENDPOINTS, WhenFull::StartAfresh),
            profile_route: OnceLock::new(),
            by_hostname: Kept::new(MAX_HOSTNAMES, WhenFull::StartAfresh),
            by_backend: Kept::new(MAX_BACKENDS, WhenFull::StartAfresh),
        }
    }
}

/// Requests routed one way to one endpoint: what counts them.
#[derive(Debug)]
pub struct EndpointCounts {
    /// Its attempts.
    pub attempts: AttemptCounters,
    /// Its requests and responses.
    pub golden: Arc<Series>,
}

impl RoutedCounts {
    /// The counters of `routed`'s requests to the endpoint labelled
    /// `endpoint`.
    pub fn endpoint(
        &self,
        routed: &Labels,
        endpoint: &Arc<Labels>,
        metrics: &HttpMetrics,
    ) -> Arc<EndpointCounts> {
        self.by_endpoint.get_or_insert_with(
            |seen| Arc::ptr_eq(seen, endpoint),
            || {
                let labels: Labels = routed.iter().chain(endpoint.iter()).cloned().collect();
                let counts = EndpointCounts {
                    attempts: metrics.attempts(labels.clone()),
                    golden: metrics.series(labels),
                };
                (endpoint.clone(), Arc::new(counts))
            },
        )
    }

    /// The ServiceProfile route series of `routed`'s requests, if they
    /// are counted there.
    pub fn profile_route(&self, routed: &Routed, metrics: &HttpMetrics) -> Option<Arc<Series>> {
        self.profile_route
            .get_or_init(|| {
                profile_route_labels(routed).map(|labels| metrics.profile_route(labels))
            })
            .clone()
    }

    /// The series of requests on the policy route `route` (the decision's
    /// own) naming `hostname`.
    pub fn policy_route(
        &self,
        route: &PolicyRouteLabels,
        hostname: Option<&str>,
        metrics: &RouteMetrics,
    ) -> Arc<StatusSeries> {
        self.by_hostname.get_or_insert_with(
            |seen| seen.as_deref() == hostname,
            || {
                let series = metrics.route_series(route, hostname);
                (hostname.map(str::to_owned), series)
            },
        )
    }

    /// The series of attempts on the policy route `route` (the decision's
    /// own) to the backend labelled `backend` (one of the route's).
    pub fn backend(
        &self,
        route: &PolicyRouteLabels,
        backend: &Labels,
        metrics: &RouteMetrics,
    ) -> Arc<BackendSeries> {
        let address = std::ptr::from_ref(backend).addr();
        self.by_backend.get_or_insert_with(
            |seen| *seen == address,
            || (address, Arc::new(metrics.backend_series(route, backend))),
        )
    }

    /// How many endpoints and hostnames it keeps series for now.
    #[cfg(test)]
    pub fn kept(&self) -> (usize, usize) {
        (self.by_endpoint.len(), self.by_hostname.len())
    }
}

/// Linkerd's ServiceProfile route labels (`direction`, `dst`, and
/// `rt_route` unless the request took no named route), for a request to a
/// Service whose profile has named routes: ServiceProfile routes, or the
/// routes of HTTPRoute/GRPCRoute resources the policy controller sent.
/// `None` otherwise: no profile, or only the Service's default route
/// (every request to every Service would be counted twice).
fn profile_route_labels(routed: &Routed) -> Option<Labels> {
    let profile = routed.profile.as_ref()?;
    if !profile.routes.iter().any(|r| r.name.is_some()) {
        return None;
    }
    let label = |name: &str| {
        routed
            .labels
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    };
    let mut labels = vec![
        ("direction", "outbound".to_owned()),
        ("dst", label("authority")?),
    ];
    if let Some(route) = label("route") {
        labels.push(("rt_route", route));
    }
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(id: &str) -> Arc<Labels> {
        Arc::new(vec![
            ("tls", "true".to_owned()),
            ("server_id", id.to_owned()),
        ])
    }

    fn metrics() -> HttpMetrics {
        HttpMetrics::register(&mut prometheus_client::registry::Registry::default())
    }

    #[test]
    fn each_endpoint_is_counted_under_its_own_labels_and_resolved_once() {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = HttpMetrics::register(&mut registry);
        let counts = RoutedCounts::default();
        let routed: Labels = vec![("direction", "outbound".to_owned())];
        let (web, db) = (endpoint("web"), endpoint("db"));
        let first = counts.endpoint(&routed, &web, &metrics);
        assert!(Arc::ptr_eq(
            &first,
            &counts.endpoint(&routed, &web, &metrics)
        ));
        assert!(!Arc::ptr_eq(
            &first,
            &counts.endpoint(&routed, &db, &metrics)
        ));
        first.golden.request();
        counts.endpoint(&routed, &db, &metrics).golden.request();
        counts.endpoint(&routed, &db, &metrics).golden.request();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for line in [
            "request_total{direction=\"outbound\",tls=\"true\",server_id=\"web\"} 1",
            "request_total{direction=\"outbound\",tls=\"true\",server_id=\"db\"} 2",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    /// A balancer whose members keep changing (each new member has new
    /// labels): what a routed decision keeps stays bounded.
    #[test]
    fn endpoints_that_come_and_go_do_not_grow_what_is_kept() {
        let (counts, metrics) = (RoutedCounts::default(), metrics());
        let routed: Labels = vec![("direction", "outbound".to_owned())];
        for i in 0..1_000 {
            counts.endpoint(&routed, &endpoint(&format!("pod-{i}")), &metrics);
        }
        assert!(counts.kept().0 <= MAX_ENDPOINTS);
    }

    /// Hostnames are the client's to choose: each request is counted
    /// under its own, what is kept stays bounded, and a common one is
    /// still kept.
    #[test]
    fn ever_new_hostnames_are_counted_as_themselves_and_kept_bounded() {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = HttpMetrics::register(&mut registry);
        let counts = RoutedCounts::default();
        let route = PolicyRouteLabels {
            grpc: false,
            route: vec![("route_name", "web".to_owned())],
            backends: Vec::new(),
        };
        let outcome = crate::route_metrics::Outcome {
            status: http::StatusCode::OK,
            grpc: None,
            broken: false,
        };
        for i in 0..100 {
            counts
                .policy_route(&route, Some(&format!("host-{i}")), metrics.routes())
                .record(std::time::Duration::from_millis(1), outcome);
        }
        assert!(counts.kept().1 <= MAX_HOSTNAMES);
        let common = counts.policy_route(&route, Some("web"), metrics.routes());
        assert!(
            Arc::ptr_eq(
                &common,
                &counts.policy_route(&route, Some("web"), metrics.routes())
            ),
            "ever new hostnames do not keep a common one out"
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for i in [0, 50, 99] {
            let line = format!(
                "outbound_http_route_request_statuses_total{{route_name=\"web\",hostname=\"host-{i}\",http_status=\"200\"}} 1"
            );
            assert!(text.contains(&line), "{line} in\n{text}");
        }
    }
}
