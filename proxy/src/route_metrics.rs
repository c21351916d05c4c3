//! Linkerd's per-route and per-backend outbound families, for requests
//! routed by what the policy controller sent (an HTTPRoute or GRPCRoute,
//! or a Service's retry and timeout annotations):
//!
//! - `outbound_{http,grpc}_route_request_duration_seconds` (buckets 0.05,
//!   0.5, 1, 10 s) and `..._request_statuses_total`, by parent and route
//!   (`parent_group`, `parent_kind`, `parent_namespace`, `parent_name`,
//!   `parent_port`, `parent_section_name`, `route_group`, `route_kind`,
//!   `route_namespace`, `route_name`) and `hostname`;
//! - `..._backend_requests_total`, `..._backend_response_duration_seconds`
//!   (buckets 0.025 to 10 s) and `..._backend_response_statuses_total`, by
//!   parent, route and backend (`backend_group`, `backend_kind`,
//!   `backend_namespace`, `backend_name`, `backend_port`,
//!   `backend_section_name`), one per attempt.
//!
//! - `..._retry_requests_total` (retries sent), `..._retry_successes_total`
//!   (retries whose answer was not to be retried again),
//!   `..._retry_limit_exceeded_total` (retries wanted but not sent: the
//!   route's `retry.linkerd.io/limit` or the retry budget) and
//!   `..._retry_overflow_total` (retryable requests with nowhere to go: no
//!   endpoint, and no other backend), by parent, route and `hostname`.
//!   Retries of a ServiceProfile route are counted in the HTTP families
//!   too, with its own labels (`authority`, `route`, …).
//!
//! Statuses carry `http_status` (HTTP) or `grpc_status` (gRPC, by name:
//! `OK`, `UNAVAILABLE`, …), and `error="UNKNOWN"` for a response whose body
//! broke off. Durations run to the end of the response stream. Every
//! request to a Service the policy controller knows is counted, under its
//! default route (`route_kind="default"`) when no route resource matches.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::cache::{Kept, WhenFull};
use crate::metrics::Labels;

/// The labels of a route the policy controller sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRouteLabels {
    /// A gRPC route (`outbound_grpc_route_*`).
    pub grpc: bool,
    /// `parent_*` and `route_*`.
    pub route: Labels,
    /// `backend_*`, by the authority the backend discovers.
    pub backends: Vec<(String, Labels)>,
}

impl PolicyRouteLabels {
    /// The labels of the backend that discovers `authority`, or of the
    /// route's only backend when the attempt went to the Service itself.
    pub fn backend(&self, authority: Option<&str>) -> Option<&Labels> {
        let named = authority.and_then(|authority| {
            self.backends
                .iter()
                .find(|(a, _)| a == authority)
                .map(|(_, labels)| labels)
        });
        match (named, self.backends.as_slice()) {
            (Some(labels), _) => Some(labels),
            (None, [(_, only)]) => Some(only),
            _ => None,
        }
    }
}

const REQUEST_BUCKETS: [f64; 4] = [0.05, 0.5, 1.0, 10.0];
const RESPONSE_BUCKETS: [f64; 7] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0];

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

fn response_histogram() -> Histogram {
    Histogram::new(RESPONSE_BUCKETS)
}

/// One protocol's families.
#[derive(Debug)]
struct Families {
    request_duration: Family<Labels, Histogram, fn() -> Histogram>,
    request_statuses: Family<Labels, Counter>,
    backend_requests: Family<Labels, Counter>,
    backend_response_duration: Family<Labels, Histogram, fn() -> Histogram>,
    backend_response_statuses: Family<Labels, Counter>,
    retry_requests: Family<Labels, Counter>,
    retry_successes: Family<Labels, Counter>,
    retry_limit_exceeded: Family<Labels, Counter>,
    retry_overflow: Family<Labels, Counter>,
}

/// What became of a retry, or of a request that wanted one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryEvent {
    /// A retry was sent.
    Sent,
    /// A retry's answer was not to be retried again.
    Succeeded,
    /// A retry was wanted but the route's limit or the budget refused it.
    LimitExceeded,
    /// A retryable request had nowhere to go (no endpoint, no other
    /// backend).
    Overflow,
}

impl Families {
    fn register(registry: &mut Registry, protocol: &str) -> Self {
        let families = Self {
            request_duration: Family::new_with_constructor(request_histogram),
            request_statuses: Family::default(),
            backend_requests: Family::default(),
            backend_response_duration: Family::new_with_constructor(response_histogram),
            backend_response_statuses: Family::default(),
            retry_requests: Family::default(),
            retry_successes: Family::default(),
            retry_limit_exceeded: Family::default(),
            retry_overflow: Family::default(),
        };
        let prefix = format!("outbound_{protocol}_route");
        registry.register(
            format!("{prefix}_request_duration_seconds"),
            "Time from a routed request's start to the end of its response stream",
            families.request_duration.clone(),
        );
        registry.register(
            format!("{prefix}_backend_response_duration_seconds"),
            "Time from an attempt's start to the end of its response stream",
            families.backend_response_duration.clone(),
        );
        let counters = [
            (
                "request_statuses",
                "Routed requests, by the status of their response",
                &families.request_statuses,
            ),
            (
                "backend_requests",
                "Attempts sent to a route's backends",
                &families.backend_requests,
            ),
            (
                "backend_response_statuses",
                "Attempts, by the status of their backend's response",
                &families.backend_response_statuses,
            ),
            ("retry_requests", "Retries sent", &families.retry_requests),
            (
                "retry_successes",
                "Retries whose answer was not to be retried again",
                &families.retry_successes,
            ),
            (
                "retry_limit_exceeded",
                "Retries wanted but not sent: the route's retry limit or the retry budget",
                &families.retry_limit_exceeded,
            ),
            (
                "retry_overflow",
                "Retryable requests that had nowhere to go: no endpoint and no other backend",
                &families.retry_overflow,
            ),
        ];
        for (name, help, family) in counters {
            registry.register(format!("{prefix}_{name}"), help, family.clone());
        }
        families
    }
}

/// How a response ended, for its status labels.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// Its HTTP status.
    pub status: http::StatusCode,
    /// Its gRPC status (headers or trailers).
    pub grpc: Option<i32>,
    /// Whether its body broke off.
    pub broken: bool,
}

/// The route families, cheap to clone.
#[derive(Debug, Clone)]
pub struct RouteMetrics(Arc<[Families; 2]>);

impl RouteMetrics {
    /// Registers the HTTP and gRPC families in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let http = Families::register(registry, "http");
        let grpc = Families::register(registry, "grpc");
        Self(Arc::new([http, grpc]))
    }

    fn families(&self, route: &PolicyRouteLabels) -> &Families {
        &self.0[usize::from(route.grpc)]
    }

    /// The series of `route`'s requests for `hostname`: their duration
    /// and statuses.
    pub fn route_series(
        &self,
        route: &PolicyRouteLabels,
        hostname: Option<&str>,
    ) -> Arc<StatusSeries> {
        let families = self.families(route);
        Arc::new(StatusSeries::new(
            route.grpc,
            Self::route_labels(route, hostname),
            &families.request_duration,
            &families.request_statuses,
        ))
    }

    /// The series of `route`'s attempts to `backend`: how many, and their
    /// responses' duration and statuses.
    pub fn backend_series(&self, route: &PolicyRouteLabels, backend: &Labels) -> BackendSeries {
        let families = self.families(route);
        let labels = backend_labels(route, backend);
        BackendSeries {
            requests: families.backend_requests.get_or_create(&labels).clone(),
            responses: StatusSeries::new(
                route.grpc,
                labels,
                &families.backend_response_duration,
                &families.backend_response_statuses,
            ),
        }
    }

    /// Counts a retry `event` of a request labelled `labels` (a policy
    /// route's, from [`Self::route_labels`], or a ServiceProfile route's),
    /// in the gRPC families for a gRPC route.
    pub fn retry(&self, grpc: bool, labels: &Labels, event: RetryEvent) {
        let families = &self.0[usize::from(grpc)];
        let family = match event {
            RetryEvent::Sent => &families.retry_requests,
            RetryEvent::Succeeded => &families.retry_successes,
            RetryEvent::LimitExceeded => &families.retry_limit_exceeded,
            RetryEvent::Overflow => &families.retry_overflow,
        };
        family.get_or_create(labels).inc();
    }

    /// The labels of a policy route's requests and retries: its parent
    /// and route, and `hostname`.
    pub fn route_labels(route: &PolicyRouteLabels, hostname: Option<&str>) -> Labels {
        let mut labels = route.route.clone();
        labels.push(("hostname", hostname.unwrap_or_default().to_owned()));
        labels
    }
}

/// How a response ended, as far as its status labels go: HTTP status,
/// gRPC status, a broken body.
type OutcomeKind = (u16, Option<i32>, bool);

/// How many kinds of outcome a [`StatusSeries`] keeps resolved; the rest
/// are looked up each time.
const RESOLVED_OUTCOMES: usize = 8;

/// One label set's duration histogram and its status counters (made as
/// each kind of outcome is first seen): what a connection keeps for a
/// route or a backend, so that a request like an earlier one does no label
/// work.
#[derive(Debug)]
pub struct StatusSeries {
    grpc: bool,
    labels: Labels,
    duration: Histogram,
    statuses: Family<Labels, Counter>,
    resolved: Kept<OutcomeKind, Counter>,
}

impl StatusSeries {
    fn new(
        grpc: bool,
        labels: Labels,
        durations: &Family<Labels, Histogram, fn() -> Histogram>,
        statuses: &Family<Labels, Counter>,
    ) -> Self {
        Self {
            grpc,
            duration: durations.get_or_create(&labels).clone(),
            statuses: statuses.clone(),
            labels,
            resolved: Kept::new(RESOLVED_OUTCOMES, WhenFull::KeepOld),
        }
    }

    /// Records a response that ended after `duration`.
    pub fn record(&self, duration: Duration, outcome: Outcome) {
        self.duration.observe(duration.as_secs_f64());
        let kind = (outcome.status.as_u16(), outcome.grpc, outcome.broken);
        let counter = self.resolved.get_or_insert_with(
            |seen| *seen == kind,
            || {
                let mut labels = self.labels.clone();
                push_status(&mut labels, self.grpc, outcome);
                (kind, self.statuses.get_or_create(&labels).clone())
            },
        );
        counter.inc();
    }
}

/// A route's attempts to one backend: see [`RouteMetrics::backend_series`].
#[derive(Debug)]
pub struct BackendSeries {
    /// Attempts sent.
    pub requests: Counter,
    /// Their responses.
    pub responses: StatusSeries,
}

/// The host a request names (its URI's, else its `Host` header's, without
/// a port), Linkerd's `hostname` label.
pub fn hostname<'a>(uri: &'a http::Uri, headers: &'a http::HeaderMap) -> Option<&'a str> {
    uri.host().or_else(|| {
        headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| h.rsplit_once(':').map_or(h, |(host, _)| host))
    })
}

fn backend_labels(route: &PolicyRouteLabels, backend: &Labels) -> Labels {
    route.route.iter().chain(backend).cloned().collect()
}

fn push_status(labels: &mut Labels, grpc: bool, outcome: Outcome) {
    if grpc {
        labels.push(("grpc_status", grpc_code_name(outcome.grpc).to_owned()));
    } else {
        labels.push(("http_status", outcome.status.as_u16().to_string()));
    }
    if outcome.broken {
        labels.push(("error", "UNKNOWN".to_owned()));
    }
}

/// A gRPC status's name, as Linkerd labels it (`UNKNOWN` when absent).
fn grpc_code_name(code: Option<i32>) -> &'static str {
    match code {
        Some(0) => "OK",
        Some(1) => "CANCELLED",
        Some(3) => "INVALID_ARGUMENT",
        Some(4) => "DEADLINE_EXCEEDED",
        Some(5) => "NOT_FOUND",
        Some(6) => "ALREADY_EXISTS",
        Some(7) => "PERMISSION_DENIED",
        Some(8) => "RESOURCE_EXHAUSTED",
        Some(9) => "FAILED_PRECONDITION",
        Some(10) => "ABORTED",
        Some(11) => "OUT_OF_RANGE",
        Some(12) => "UNIMPLEMENTED",
        Some(13) => "INTERNAL",
        Some(14) => "UNAVAILABLE",
        Some(15) => "DATA_LOSS",
        Some(16) => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}
