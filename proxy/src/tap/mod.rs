//! Tap: live events of the requests this proxy handles, for `viz tap`.
//!
//! The tap component asks over `tap.Tap/Observe` (linkerd2-proxy-api) on
//! the control port, 4190, over mutual TLS, and only the identity named by
//! `LINKERD2_PROXY_TAP_SVC_NAME` may ask ([`server`]). Each tap holds a
//! [`matcher::Match`] and a limit on the requests it takes; each request it
//! takes is reported as `RequestInit`, `ResponseInit` and `ResponseEnd`
//! events with one stream id.
//!
//! While no one taps, a request costs one atomic load ([`Taps::observe`]).
//! While someone does, events go through a bounded buffer per tap: a tap
//! that does not keep up loses events (counted in `tap_events_dropped_total`)
//! and never slows a request down or holds memory without bound.

mod body;
pub mod matcher;
pub mod server;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::Response;
use linkerd2_proxy_api::tap::{TapEvent, tap_event};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::endpoint::Body;

/// How many events one tap's buffer holds before newer ones are dropped.
pub const EVENT_BUFFER: usize = 1000;

/// The address of the application's connection an outbound request came
/// on, carried to the attempt while someone taps.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Which side of the proxy a request passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// To this pod's application.
    Inbound,
    /// From this pod's application.
    Outbound,
}

/// What a tap sees of a request, borrowed from the request path.
#[derive(Debug)]
pub struct Observed<'a> {
    /// Which side.
    pub direction: Direction,
    /// The client's address.
    pub source: SocketAddr,
    /// The server's address (the application's, or the endpoint's).
    pub destination: SocketAddr,
    /// The client's labels (`tls`, `client_id` or `no_tls_reason`).
    pub source_labels: &'a [(&'static str, String)],
    /// The server's labels (`tls`, `server_id`, `dst_*`).
    pub destination_labels: &'a [(&'static str, String)],
    /// The route's labels.
    pub route_labels: &'a [(&'static str, String)],
    /// The request's method, URI and headers.
    pub request: Head<'a>,
}

/// A request's head.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    method: &'a http::Method,
    uri: &'a http::Uri,
    headers: &'a http::HeaderMap,
}

impl<'a, B> From<&'a http::Request<B>> for Head<'a> {
    fn from(req: &'a http::Request<B>) -> Self {
        Self {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
        }
    }
}

impl Head<'_> {
    /// The method.
    pub fn method(&self) -> &http::Method {
        self.method
    }

    /// The URI.
    pub fn uri(&self) -> &http::Uri {
        self.uri
    }
}

impl Observed<'_> {
    /// The request's authority: its URI's, else its `Host` header.
    pub fn authority(&self) -> String {
        self.request
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| {
                self.request
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .unwrap_or_default()
            .to_owned()
    }
}

/// The taps of one proxy, shared by its inbound and outbound sides and its
/// tap server.
#[derive(Debug, Clone)]
pub struct Taps {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// How many taps are registered: zero is the fast path.
    active: AtomicUsize,
    subscribers: Mutex<Vec<Arc<Subscriber>>>,
    next_subscriber: AtomicU64,
    /// The random base of this process's stream ids.
    base: u32,
    next_stream: AtomicU64,
    dropped: Counter,
}

/// One tap.
#[derive(Debug)]
struct Subscriber {
    id: u64,
    matcher: matcher::Match,
    /// Requests it may still take.
    remaining: AtomicU32,
    events: mpsc::Sender<TapEvent>,
}

impl Subscriber {
    /// Takes one more request, if the tap's limit allows.
    fn take(&self) -> bool {
        self.remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }
}

impl Default for Taps {
    /// No taps yet, its drops counted nowhere (tests).
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                active: AtomicUsize::new(0),
                subscribers: Mutex::new(Vec::new()),
                next_subscriber: AtomicU64::new(0),
                base: rand::random(),
                next_stream: AtomicU64::new(0),
                dropped: Counter::default(),
            }),
        }
    }
}

impl Taps {
    /// No taps yet; `tap_events_dropped_total` in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let taps = Self::default();
        registry.register(
            "tap_events_dropped",
            "Tap events dropped because the tap did not read them in time",
            taps.inner.dropped.clone(),
        );
        taps
    }

    /// Whether any tap is registered. Built without the `tap` feature,
    /// never: the request path's tap checks are constant and compiled out.
    pub fn is_active(&self) -> bool {
        cfg!(feature = "tap") && self.inner.active.load(Ordering::Relaxed) > 0
    }

    /// Starts reporting `request` to the taps that want it, if any; the
    /// returned handle reports its response.
    pub fn observe(&self, request: &Observed<'_>) -> Option<Tapped> {
        if !self.is_active() {
            return None;
        }
        self.observe_active(request)
    }

    fn observe_active(&self, request: &Observed<'_>) -> Option<Tapped> {
        let senders: Vec<_> = {
            let mut subscribers = self.lock();
            let taken = subscribers
                .iter()
                .filter(|s| !s.events.is_closed() && s.matcher.matches(request) && s.take())
                .map(|s| s.events.clone())
                .collect();
            // A tap that took its last request, or whose reader left, takes
            // no more: its stream ends once its requests' events are sent.
            subscribers
                .retain(|s| !s.events.is_closed() && s.remaining.load(Ordering::Acquire) > 0);
            self.inner
                .active
                .store(subscribers.len(), Ordering::Relaxed);
            taken
        };
        if senders.is_empty() {
            return None;
        }
        let id = tap_event::http::StreamId {
            base: self.inner.base,
            stream: self.inner.next_stream.fetch_add(1, Ordering::Relaxed),
        };
        let tapped = Tapped {
            senders,
            template: template(request),
            id,
            started: Instant::now(),
            dropped: self.inner.dropped.clone(),
        };
        let uri = request.request.uri;
        tapped.send(tap_event::http::Event::RequestInit(
            tap_event::http::RequestInit {
                id: Some(id),
                method: Some(request.request.method.clone().into()),
                scheme: uri.scheme().map(Into::into),
                authority: request.authority(),
                path: uri.path().to_owned(),
                headers: None,
            },
        ));
        Some(tapped)
    }

    /// Registers a tap taking up to `limit` requests that `matcher` selects;
    /// its events arrive on the returned receiver, which unregisters it
    /// when dropped.
    fn subscribe(&self, matcher: matcher::Match, limit: u32) -> Subscription {
        let (events, rx) = mpsc::channel(EVENT_BUFFER);
        let id = self.inner.next_subscriber.fetch_add(1, Ordering::Relaxed);
        let mut subscribers = self.lock();
        subscribers.push(Arc::new(Subscriber {
            id,
            matcher,
            remaining: AtomicU32::new(limit),
            events,
        }));
        self.inner
            .active
            .store(subscribers.len(), Ordering::Relaxed);
        Subscription {
            rx,
            taps: self.clone(),
            id,
        }
    }

    /// How many taps are registered.
    fn count(&self) -> usize {
        self.lock().len()
    }

    fn unsubscribe(&self, id: u64) {
        let mut subscribers = self.lock();
        subscribers.retain(|s| s.id != id);
        self.inner
            .active
            .store(subscribers.len(), Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Subscriber>>> {
        // The list stays consistent whatever a panicking holder did.
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A registered tap's events; dropping it ends the tap.
#[derive(Debug)]
pub(crate) struct Subscription {
    rx: mpsc::Receiver<TapEvent>,
    taps: Taps,
    id: u64,
}

impl tokio_stream::Stream for Subscription {
    type Item = Result<TapEvent, tonic::Status>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|event| event.map(Ok))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.taps.unsubscribe(self.id);
    }
}

/// The parts of every event of one request.
fn template(request: &Observed<'_>) -> TapEvent {
    TapEvent {
        source: Some(request.source.into()),
        source_meta: Some(meta(request.source_labels)),
        route_meta: (!request.route_labels.is_empty()).then(|| tap_event::RouteMeta {
            labels: request
                .route_labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        }),
        destination: Some(request.destination.into()),
        destination_meta: Some(meta(request.destination_labels)),
        proxy_direction: match request.direction {
            Direction::Inbound => tap_event::ProxyDirection::Inbound,
            Direction::Outbound => tap_event::ProxyDirection::Outbound,
        } as i32,
        event: None,
    }
}

/// A peer's labels as tap shows them: without the metrics' `dst_` prefix,
/// and `tls` saying why there is none (`no_tls_from_remote`) where the
/// metrics say `no_identity` and give the reason apart.
fn meta(labels: &[(&'static str, String)]) -> tap_event::EndpointMeta {
    let mut map: HashMap<String, String> = labels
        .iter()
        .map(|(k, v)| (matcher::label_key(k).to_owned(), v.clone()))
        .collect();
    if map.get("tls").is_some_and(|tls| tls != "true")
        && let Some(reason) = map.remove("no_tls_reason")
    {
        map.insert("tls".to_owned(), reason);
    }
    tap_event::EndpointMeta { labels: map }
}

/// A request some taps took: reports its response.
#[derive(Debug)]
pub struct Tapped {
    senders: Vec<mpsc::Sender<TapEvent>>,
    template: TapEvent,
    id: tap_event::http::StreamId,
    started: Instant,
    dropped: Counter,
}

impl Tapped {
    fn send(&self, event: tap_event::http::Event) {
        let event = TapEvent {
            event: Some(tap_event::Event::Http(tap_event::Http {
                event: Some(event),
            })),
            ..self.template.clone()
        };
        for sender in &self.senders {
            if sender.try_send(event.clone()).is_err() {
                self.dropped.inc();
            }
        }
    }

    /// Reports `response` (`ResponseInit` now, `ResponseEnd` when its body
    /// ends) and hands it on.
    pub fn response(self, response: Response<Body>) -> Response<Body> {
        let since_request_init = duration(self.started.elapsed());
        self.send(tap_event::http::Event::ResponseInit(
            tap_event::http::ResponseInit {
                id: Some(self.id),
                since_request_init,
                http_status: u32::from(response.status().as_u16()),
                headers: None,
            },
        ));
        let header_grpc = crate::metrics::grpc_status(response.headers());
        response.map(|inner| body::TapBody::new(inner, self, header_grpc).boxed())
    }

    fn end(&self, response_init: Instant, bytes: u64, eos: Option<linkerd2_proxy_api::tap::Eos>) {
        self.send(tap_event::http::Event::ResponseEnd(
            tap_event::http::ResponseEnd {
                id: Some(self.id),
                since_request_init: duration(self.started.elapsed()),
                since_response_init: duration(response_init.elapsed()),
                response_bytes: bytes,
                eos,
                trailers: None,
            },
        ));
    }
}

fn duration(d: std::time::Duration) -> Option<prost_types::Duration> {
    prost_types::Duration::try_from(d).ok()
}

#[cfg(test)]
mod tests;
