//! The proxy's golden metrics, with Linkerd's names, labels and latency
//! buckets, so that dashboards and Flagger queries written for Linkerd read
//! them unchanged.
//!
//! - HTTP: `request_total`, `response_total` (plus `classification` and
//!   `status_code`, and `grpc_status` for gRPC), `response_latency_ms`
//!   (a histogram with `status_code`), and `route_actual_request_total`
//!   and `route_actual_response_total` (every attempt, retries included).
//! - Per route and backend, and the retry counters: see
//!   [`crate::route_metrics`].
//! - TCP: `tcp_open_total`, `tcp_close_total`, `tcp_open_connections`,
//!   `tcp_read_bytes_total`, `tcp_write_bytes_total`, counted as bytes move.
//!
//! Label sets are plain lists (`direction`, `authority`, `tls`,
//! `client_id` or `server_id`, `dst_*`, `route`, …) because which labels
//! apply depends on what discovery said about the target.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::cache::{Kept, WhenFull};

/// A label set: names and values, in a stable order.
pub type Labels = Vec<(&'static str, String)>;

/// Linkerd's `response_latency_ms` buckets.
pub const LATENCY_BUCKETS_MS: [f64; 25] = [
    1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0,
    1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 10000.0, 20000.0, 30000.0, 40000.0, 50000.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_MS)
}

/// What a response counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classification {
    /// Not a failure.
    Success,
    /// A 5xx, a non-OK gRPC status, or an error instead of a response.
    Failure,
}

impl Classification {
    fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

/// The HTTP metric families, cheap to clone (one shared set): every
/// connection and request path layer holds a handle.
#[derive(Debug, Clone)]
pub struct HttpMetrics(Arc<HttpFamilies>);

#[derive(Debug)]
struct HttpFamilies {
    golden: Golden,
    profile_routes: Golden,
    actual_requests: Family<Labels, Counter>,
    actual_responses: Family<Labels, Counter>,
    routes: crate::route_metrics::RouteMetrics,
}

impl HttpMetrics {
    /// Registers the families in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = HttpFamilies {
            golden: Golden::register(registry, ""),
            profile_routes: Golden::register(registry, "route_"),
            actual_requests: Family::default(),
            actual_responses: Family::default(),
            routes: crate::route_metrics::RouteMetrics::register(registry),
        };
        registry.register(
            "route_actual_request",
            "HTTP requests sent to endpoints, retries included",
            metrics.actual_requests.clone(),
        );
        registry.register(
            "route_actual_response",
            "HTTP responses from endpoints, retries included, by classification: \
             what each backend answered, even when a retry elsewhere hid it",
            metrics.actual_responses.clone(),
        );
        Self(Arc::new(metrics))
    }

    /// Linkerd's per-route and per-backend families.
    pub fn routes(&self) -> &crate::route_metrics::RouteMetrics {
        &self.0.routes
    }

    /// The series of Linkerd's ServiceProfile route families
    /// (`route_request_total`, `route_response_total` and
    /// `route_response_latency_ms`, by `dst` and `rt_route`) for requests
    /// labelled `labels`.
    pub fn profile_route(&self, labels: Labels) -> Arc<Series> {
        self.resolve_series(labels, true)
    }

    /// The counters of attempts sent to an endpoint and of what they got
    /// (`route_actual_request_total`, `route_actual_response_total` by
    /// classification), for attempts labelled `labels`.
    pub fn attempts(&self, labels: Labels) -> AttemptCounters {
        AttemptCounters {
            sent: self.0.actual_requests.get_or_create(&labels).clone(),
            metrics: self.clone(),
            labels,
            succeeded: OnceLock::new(),
            failed: OnceLock::new(),
        }
    }
}

/// An endpoint's attempt counters: see [`HttpMetrics::attempts`]. Each
/// outcome's counter is made when the first attempt has it, so that an
/// endpoint that never failed has no failure series.
#[derive(Debug)]
pub struct AttemptCounters {
    metrics: HttpMetrics,
    labels: Labels,
    sent: Counter,
    succeeded: OnceLock<Counter>,
    failed: OnceLock<Counter>,
}

impl AttemptCounters {
    /// Counts an attempt about to be sent, and returns its outcome:
    /// recorded with [`PendingOutcome::record`], or as a failure if it is
    /// dropped first (the attempt was given up before its answer).
    pub fn send(&self) -> PendingOutcome<'_> {
        self.sent.inc();
        PendingOutcome {
            counters: self,
            recorded: false,
        }
    }

    fn outcome(&self, failed: bool) {
        let (counter, classification) = if failed {
            (&self.failed, Classification::Failure)
        } else {
            (&self.succeeded, Classification::Success)
        };
        counter
            .get_or_init(|| {
                let mut labels = self.labels.clone();
                labels.push(("classification", classification.label().to_owned()));
                self.metrics
                    .0
                    .actual_responses
                    .get_or_create(&labels)
                    .clone()
            })
            .inc();
    }
}

impl HttpMetrics {
    /// The golden series of requests labelled `labels`, resolved once: a
    /// connection keeps it for the requests it sees again and again, so
    /// that counting one does no label work.
    pub fn series(&self, labels: Labels) -> Arc<Series> {
        self.resolve_series(labels, false)
    }

    fn resolve_series(&self, labels: Labels, profile_route: bool) -> Arc<Series> {
        let mut series = Series {
            requests: Counter::default(),
            metrics: self.clone(),
            profile_route,
            labels,
            responses: Kept::new(RESOLVED_RESPONSE_KINDS, WhenFull::KeepOld),
        };
        let requests = series
            .golden()
            .requests
            .get_or_create(&series.labels)
            .clone();
        series.requests = requests;
        Arc::new(series)
    }
}

/// What a response is counted by: status code, classification and gRPC
/// status.
type ResponseKind = (u16, Classification, Option<i32>);

/// How many kinds of response a [`Series`] keeps resolved; the rest (an
/// application answering with ever new gRPC statuses) are looked up each
/// time, as a request without a series is.
const RESOLVED_RESPONSE_KINDS: usize = 8;

/// One label set's `request_total`, and its `response_latency_ms` and
/// `response_total` for each kind of response seen, as handles on the
/// families' counters: see [`HttpMetrics::series`].
#[derive(Debug)]
pub struct Series {
    metrics: HttpMetrics,
    /// In the ServiceProfile route families, not the plain ones.
    profile_route: bool,
    labels: Labels,
    requests: Counter,
    responses: Kept<ResponseKind, (Histogram, Counter)>,
}

impl Series {
    /// Counts a request.
    pub fn request(&self) {
        self.requests.inc();
    }

    /// Counts a response (or the error that stood in for it) and its
    /// latency.
    pub fn response(
        &self,
        status: http::StatusCode,
        grpc_status: Option<i32>,
        classification: Classification,
        latency: std::time::Duration,
    ) {
        let kind = (status.as_u16(), classification, grpc_status);
        let (latencies, responses) = self.responses.get_or_insert_with(
            |seen| *seen == kind,
            || (kind, self.golden().resolve(&self.labels, kind)),
        );
        latencies.observe(latency.as_secs_f64() * 1000.0);
        responses.inc();
    }

    fn golden(&self) -> &Golden {
        if self.profile_route {
            &self.metrics.0.profile_routes
        } else {
            &self.metrics.0.golden
        }
    }
}

/// Requests, responses and latency: the golden families, registered once
/// plainly and once for ServiceProfile routes (`route_` prefix).
#[derive(Debug)]
struct Golden {
    requests: Family<Labels, Counter>,
    responses: Family<Labels, Counter>,
    latency: Family<Labels, Histogram, fn() -> Histogram>,
}

impl Golden {
    fn register(registry: &mut Registry, prefix: &str) -> Self {
        let golden = Self {
            requests: Family::default(),
            responses: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        };
        let what = if prefix.is_empty() {
            ""
        } else {
            " on a ServiceProfile route"
        };
        registry.register(
            format!("{prefix}request"),
            format!("HTTP requests received{what}"),
            golden.requests.clone(),
        );
        registry.register(
            format!("{prefix}response"),
            format!("HTTP responses sent{what}, by classification and status"),
            golden.responses.clone(),
        );
        registry.register(
            format!("{prefix}response_latency_ms"),
            format!("Time from a request's start to its response's headers{what}, in milliseconds"),
            golden.latency.clone(),
        );
        golden
    }

    /// The latency histogram (by status) and response counter (by status,
    /// classification and gRPC status) of a response of `kind` to a
    /// request labelled `labels`.
    fn resolve(&self, labels: &Labels, kind: ResponseKind) -> (Histogram, Counter) {
        let (status, classification, grpc_status) = kind;
        let mut with_status = labels.clone();
        with_status.push(("status_code", status.to_string()));
        let latencies = self.latency.get_or_create(&with_status).clone();
        with_status.push(("classification", classification.label().to_owned()));
        if let Some(code) = grpc_status {
            with_status.push(("grpc_status", code.to_string()));
        }
        let responses = self.responses.get_or_create(&with_status).clone();
        (latencies, responses)
    }
}

/// An attempt's outcome not yet known; a failure unless recorded.
#[derive(Debug)]
pub struct PendingOutcome<'a> {
    counters: &'a AttemptCounters,
    recorded: bool,
}

impl PendingOutcome<'_> {
    /// Records what the attempt got.
    pub fn record(mut self, failed: bool) {
        self.recorded = true;
        self.counters.outcome(failed);
    }
}

impl Drop for PendingOutcome<'_> {
    fn drop(&mut self) {
        if !self.recorded {
            self.counters.outcome(true);
        }
    }
}

/// Classifies a response: 5xx, and gRPC statuses other than OK (in the
/// headers of a trailers-only response or in the trailers) are failures.
pub fn classify(status: http::StatusCode, grpc_status: Option<i32>) -> Classification {
    if status.is_server_error() || grpc_status.is_some_and(|code| code != 0) {
        Classification::Failure
    } else {
        Classification::Success
    }
}

/// The `grpc-status` of a header map, if any.
pub fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The TCP metric families.
#[derive(Debug, Clone, Default)]
pub struct TcpMetrics {
    opened: Family<Labels, Counter>,
    closed: Family<Labels, Counter>,
    open: Family<Labels, Gauge>,
    read: Family<Labels, Counter>,
    written: Family<Labels, Counter>,
    accept_errors: crate::limits::AcceptErrors,
}

impl TcpMetrics {
    /// Registers the families in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            accept_errors: crate::limits::AcceptErrors::register(registry),
            ..Self::default()
        };
        registry.register("tcp_open", "TCP connections opened", metrics.opened.clone());
        registry.register(
            "tcp_close",
            "TCP connections closed",
            metrics.closed.clone(),
        );
        registry.register(
            "tcp_open_connections",
            "TCP connections open now",
            metrics.open.clone(),
        );
        registry.register(
            "tcp_read_bytes",
            "Bytes read from TCP connections",
            metrics.read.clone(),
        );
        registry.register(
            "tcp_write_bytes",
            "Bytes written to TCP connections",
            metrics.written.clone(),
        );
        metrics
    }

    /// Connections dropped before they were served.
    pub fn accept_errors(&self) -> &crate::limits::AcceptErrors {
        &self.accept_errors
    }

    /// A cap of `max` connections on the `direction` listener, counted
    /// here when it bites.
    pub fn connection_limit(
        &self,
        max: usize,
        direction: &'static str,
    ) -> crate::limits::ConnectionLimit {
        crate::limits::ConnectionLimit::new(max, direction, self.accept_errors.clone())
    }

    /// Counts a connection as open until the returned guard drops, and
    /// wraps `io` so that its bytes are counted as they move.
    pub fn track<I>(&self, labels: Labels, io: I) -> Counted<I> {
        self.opened.get_or_create(&labels).inc();
        self.open.get_or_create(&labels).inc();
        Counted {
            inner: io,
            read: self.read.get_or_create(&labels).clone(),
            written: self.written.get_or_create(&labels).clone(),
            open: self.open.get_or_create(&labels).clone(),
            closed: self.closed.get_or_create(&labels).clone(),
        }
    }
}

/// A connection whose bytes are counted, and whose close is counted when
/// it drops.
#[derive(Debug)]
pub struct Counted<I> {
    inner: I,
    read: Counter,
    written: Counter,
    open: Gauge,
    closed: Counter,
}

impl<I> Drop for Counted<I> {
    fn drop(&mut self) {
        self.open.dec();
        self.closed.inc();
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Counted<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            self.read.inc_by(read as u64);
        }
        poll
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Counted<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll {
            self.written.inc_by(*n as u64);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &poll {
            self.written.inc_by(*n as u64);
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_and_grpc_errors_are_failures() {
        use http::StatusCode;
        assert_eq!(classify(StatusCode::OK, None), Classification::Success);
        assert_eq!(
            classify(StatusCode::NOT_FOUND, None),
            Classification::Success
        );
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, None),
            Classification::Failure
        );
        assert_eq!(classify(StatusCode::OK, Some(0)), Classification::Success);
        assert_eq!(classify(StatusCode::OK, Some(14)), Classification::Failure);
    }

    /// An application answering with ever new gRPC statuses: each is
    /// counted, and what the series keeps resolved stays bounded.
    #[test]
    fn a_series_counts_every_kind_of_response_and_keeps_a_few() {
        let mut registry = Registry::default();
        let http = HttpMetrics::register(&mut registry);
        let series = http.series(vec![("direction", "inbound".into())]);
        for code in 0..100 {
            for _ in 0..2 {
                series.response(
                    http::StatusCode::OK,
                    Some(code),
                    classify(http::StatusCode::OK, Some(code)),
                    std::time::Duration::from_millis(1),
                );
            }
        }
        assert_eq!(series.responses.len(), RESOLVED_RESPONSE_KINDS);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for code in [0, 7, 99] {
            let class = if code == 0 { "success" } else { "failure" };
            let line = format!(
                "response_total{{direction=\"inbound\",status_code=\"200\",classification=\"{class}\",grpc_status=\"{code}\"}} 2"
            );
            assert!(text.contains(&line), "{line} in\n{text}");
        }
        assert!(
            text.contains(
                "response_latency_ms_count{direction=\"inbound\",status_code=\"200\"} 200"
            )
        );
    }

    #[test]
    fn families_carry_linkerds_names() {
        let mut registry = Registry::default();
        let http = HttpMetrics::register(&mut registry);
        let tcp = TcpMetrics::register(&mut registry);
        let labels: Labels = vec![("direction", "outbound".into())];
        let series = http.series(labels.clone());
        series.request();
        series.response(
            http::StatusCode::OK,
            None,
            Classification::Success,
            std::time::Duration::from_millis(3),
        );
        drop(tcp.track(labels.clone(), ()));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for line in [
            "request_total{direction=\"outbound\"} 1",
            "response_total{direction=\"outbound\",status_code=\"200\",classification=\"success\"} 1",
            "response_latency_ms_bucket{le=\"3.0\",direction=\"outbound\",status_code=\"200\"} 1",
            "tcp_open_total{direction=\"outbound\"} 1",
            "tcp_close_total{direction=\"outbound\"} 1",
            "tcp_open_connections{direction=\"outbound\"} 0",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
