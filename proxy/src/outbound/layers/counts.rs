//! What a routed request is counted under, kept with its [`Routed`]
//! decision so that the requests that share one do their label work once:
//! for each endpoint, the attempt counters (`route_actual_*`) and the
//! golden series (`request_total`, `response_total`,
//! `response_latency_ms`), both labelled with the route's labels and the
//! endpoint's; and the ServiceProfile route series (`route_*`).
//!
//! Endpoints are known by their labels' allocation ([`Member::labels`],
//! made once per member and held here, so it cannot be reused for another
//! while it is a key). A balancer's members come and go, so the endpoints
//! kept are bounded ([`MAX_ENDPOINTS`]); past that, a request resolves its
//! counters as if it were the first.
//!
//! [`Member::labels`]: crate::balance::Member::labels

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use super::Routed;
use crate::metrics::{AttemptCounters, HttpMetrics, Labels, Series};

/// How many endpoints one routed decision keeps counters for.
pub const MAX_ENDPOINTS: usize = 32;

/// A routed decision's counters: see the module.
#[derive(Debug, Default)]
pub struct RoutedCounts {
    by_endpoint: Mutex<Vec<(Arc<Labels>, Arc<EndpointCounts>)>>,
    profile_route: OnceLock<Option<Arc<Series>>>,
}

/// Requests routed one way to one endpoint: what counts them.
#[derive(Debug)]
pub struct EndpointCounts {
    /// Its attempts.
    pub attempts: AttemptCounters,
    /// Its requests and responses.
    pub golden: Arc<Series>,
}

/// A copy starts with nothing resolved (the counters are found again).
impl Clone for RoutedCounts {
    fn clone(&self) -> Self {
        Self::default()
    }
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
        let mut kept = self
            .by_endpoint
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, counts)) = kept.iter().find(|(seen, _)| Arc::ptr_eq(seen, endpoint)) {
            return counts.clone();
        }
        let labels: Labels = routed.iter().chain(endpoint.iter()).cloned().collect();
        let counts = Arc::new(EndpointCounts {
            attempts: metrics.attempts(labels.clone()),
            golden: metrics.series(labels),
        });
        if kept.len() >= MAX_ENDPOINTS {
            kept.clear();
        }
        kept.push((endpoint.clone(), counts.clone()));
        counts
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

    /// How many endpoints it keeps counters for now.
    #[cfg(test)]
    pub fn endpoints(&self) -> usize {
        self.by_endpoint
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
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
        assert!(counts.endpoints() <= MAX_ENDPOINTS);
    }
}
