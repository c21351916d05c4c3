//! What the layers' in-process tests share: an outbound proxy without
//! discovery or TLS, destinations with hand-made profiles, scripted inner
//! services and the metrics as Prometheus would read them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::registry::Registry;

use super::{HttpRequest, HttpResponse, Next, ResponseFuture};
use crate::config::DirectionConfig;
use crate::discover::profile::{Backend, Profile, RequestMatch, RetryBudget, Route};
use crate::endpoint;
use crate::metrics::{HttpMetrics, TcpMetrics};
use crate::outbound::{Logical, Outbound};
use crate::retry::Budget;

/// An outbound proxy with no discovery and no TLS, and its metrics.
pub fn outbound() -> (Arc<Outbound>, Arc<Mutex<Registry>>) {
    let mut registry = Registry::default();
    let http = HttpMetrics::register(&mut registry);
    let tcp = TcpMetrics::register(&mut registry);
    let config = DirectionConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        detect_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        ..crate::config::Config::from_lookup(|_| None)
            .expect("defaults")
            .outbound
    };
    (
        Outbound::new(config, None, None, http, tcp, Default::default()),
        Arc::new(Mutex::new(registry)),
    )
}

/// A destination at `addr` whose profile is `profile`.
pub fn logical(addr: SocketAddr, profile: Option<Profile>) -> Arc<Logical> {
    logical_watched(addr, profile).0
}

/// A destination at `addr` whose profile is `profile` at first, then what
/// the returned sender sends.
pub fn logical_watched(
    addr: SocketAddr,
    profile: Option<Profile>,
) -> (
    Arc<Logical>,
    tokio::sync::watch::Sender<Option<Arc<Profile>>>,
) {
    let (profiles, watch) = tokio::sync::watch::channel(profile.map(Arc::new));
    let logical = Arc::new(Logical {
        addr,
        name: None,
        profile: Some(watch),
        gave_up: Default::default(),
        budget: Mutex::new(Budget::new(RetryBudget::default())),
        decisions: Default::default(),
    });
    (logical, profiles)
}

/// A route named `route` that takes every request.
pub fn route(retryable: bool, timeout: Option<Duration>) -> Route {
    Route {
        name: Some("route".into()),
        condition: RequestMatch::Any(vec![RequestMatch::Not(Box::new(RequestMatch::Any(vec![])))]),
        response_classes: Vec::new(),
        retryable,
        retry_on: None,
        policy_labels: None,
        max_retries: None,
        timeout,
        attempt_timeout: None,
        backends: Vec::new(),
        filters: Vec::new(),
    }
}

/// The Service `web.test.svc.cluster.local:80`, split over `backends`
/// (`authority`, weight), with `route` and `budget`.
pub fn split(backends: &[(&str, u32)], route: Route, budget: RetryBudget) -> Profile {
    Profile {
        fully_qualified_name: Some("web.test.svc.cluster.local".into()),
        routes: vec![route],
        retry_budget: Some(budget),
        backends: backends
            .iter()
            .map(|(authority, weight)| Backend {
                authority: (*authority).to_owned(),
                weight: *weight,
                ..Backend::default()
            })
            .collect(),
        ..Profile::default()
    }
}

/// `GET http://web.test.svc.cluster.local/` with an empty body.
pub fn get() -> HttpRequest {
    http::Request::get("http://web.test.svc.cluster.local/")
        .body(endpoint::empty())
        .expect("request")
}

/// An inner service that answers each request with `answer`.
pub fn scripted<F>(answer: F) -> impl Next
where
    F: Fn(HttpRequest) -> ResponseFuture + Send + Sync + 'static,
{
    let answer = Arc::new(answer);
    tower::service_fn(move |req| answer(req))
}

/// A response with `status`.
pub fn status(status: u16) -> HttpResponse {
    let mut response = HttpResponse::new(endpoint::empty());
    *response.status_mut() = http::StatusCode::from_u16(status).expect("status");
    response
}

/// Every sample of `family` whose labels include all of `labels`, summed.
pub fn sample(registry: &Mutex<Registry>, family: &str, labels: &[(&str, &str)]) -> f64 {
    let mut page = String::new();
    prometheus_client::encoding::text::encode(&mut page, &registry.lock().expect("registry"))
        .expect("encode");
    mesh_api::metrics_text::samples(&page, family)
        .filter(|(found, _)| {
            labels
                .iter()
                .all(|(k, v)| mesh_api::metrics_text::label(found, k) == Some(*v))
        })
        .map(|(_, value)| value)
        .sum()
}
