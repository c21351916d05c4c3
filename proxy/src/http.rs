//! HTTP plumbing shared by the inbound and outbound sides: serving an
//! accepted connection in the protocol detection found (with graceful
//! shutdown), relaying connection upgrades such as WebSocket, and the
//! proxy's own error responses (with Linkerd's `l5d-proxy-error` header).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;

use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::detect::Protocol;
use crate::endpoint::{self, Body};

/// The header naming why the proxy answered instead of the application.
pub const PROXY_ERROR: &str = "l5d-proxy-error";

/// The proxy's own response: `status` with `message` in the body and in
/// `l5d-proxy-error`.
pub fn error_response(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(endpoint::full(format!("{message}\n")));
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(message) {
        response.headers_mut().insert(PROXY_ERROR, value);
    }
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    response
}

/// A gRPC error as a trailers-only response: HTTP 200, the status `code`
/// and `message` in the headers, no body.
pub fn grpc_error_response(code: u32, message: &str) -> Response<Body> {
    let mut response = Response::new(endpoint::full(bytes::Bytes::new()));
    let headers = response.headers_mut();
    headers.insert("grpc-status", HeaderValue::from(code));
    if let Ok(value) = HeaderValue::from_str(message) {
        headers.insert("grpc-message", value.clone());
        headers.insert(PROXY_ERROR, value);
    }
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    response
}

/// The most streams an HTTP/2 connection may have reset by the proxy (for
/// a protocol error, or refused over its stream limit) before the proxy
/// closes it with GOAWAY `ENHANCE_YOUR_CALM`: h2's own default.
const MAX_LOCAL_RESETS: u32 = 1024;

/// Serves HTTP (`protocol` says which version) on `io` with `handle` until
/// the connection ends, at most `max_concurrent_streams` requests at once
/// on HTTP/2. Streams over it are refused, each with a RST_STREAM the
/// proxy must decode and answer: a client refused as many streams as it
/// may have open (or [`MAX_LOCAL_RESETS`]) is not honouring the limit and
/// is sent away, so that a flood of streams costs the proxy no more than
/// twice the streams it accepts. Once `drain` completes, in-flight
/// requests finish and the connection closes.
pub async fn serve<I, F, Fut>(
    io: I,
    protocol: Protocol,
    max_concurrent_streams: u32,
    handle: F,
    drain: impl Future<Output = ()>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let handle = handle.clone();
        async move { Ok::<_, Infallible>(handle(req).await) }
    });
    // One protocol's connection each, boxed: a connection that could be
    // either (hyper-util's `auto`) keeps room for an HTTP/2 connection's
    // state in every idle HTTP/1 connection.
    match protocol {
        Protocol::Http2 => {
            let mut builder = http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .max_concurrent_streams(max_concurrent_streams)
                .max_local_error_reset_streams(
                    max_concurrent_streams.min(MAX_LOCAL_RESETS) as usize
                );
            let conn = builder.serve_connection(TokioIo::new(io), service);
            Box::pin(until_drained(
                conn,
                http2::Connection::graceful_shutdown,
                drain,
            ))
            .await;
        }
        _ => {
            let mut builder = http1::Builder::new();
            builder.timer(TokioTimer::new());
            let conn = builder
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            Box::pin(until_drained(
                conn,
                http1::UpgradeableConnection::graceful_shutdown,
                drain,
            ))
            .await;
        }
    }
}

/// Drives `conn` until it ends, or until `drain` completes: then tells it
/// to finish (`shutdown`: what is in flight completes, nothing new is
/// taken) and waits for it.
async fn until_drained<C, E>(
    conn: C,
    shutdown: impl FnOnce(Pin<&mut C>),
    drain: impl Future<Output = ()>,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(conn, drain);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!("HTTP connection: {e}");
            }
        }
        () = &mut drain => {
            shutdown(conn.as_mut());
            let _ = conn.await;
        }
    }
}

/// Takes the upgrade half of a request that asks to switch protocols.
pub fn take_upgrade<B>(req: &mut Request<B>) -> Option<OnUpgrade> {
    endpoint::is_upgrade(req).then(|| hyper::upgrade::on(req))
}

/// When `response` switches protocols, joins the two upgraded connections
/// and copies bytes between them until both ends close.
pub fn relay_upgrade(downstream: Option<OnUpgrade>, response: &mut Response<Incoming>) {
    let Some(downstream) = downstream else { return };
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return;
    }
    let upstream = hyper::upgrade::on(response);
    tokio::spawn(async move {
        match tokio::try_join!(downstream, upstream) {
            Ok((down, up)) => {
                let (mut down, mut up) = (TokioIo::new(down), TokioIo::new(up));
                let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
            }
            Err(e) => tracing::debug!("upgrade: {e}"),
        }
    });
}

/// Turns a received response into the body type the proxy sends.
pub fn boxed_response(response: Response<Incoming>) -> Response<Body> {
    response.map(endpoint::boxed)
}

/// Counts a request and, once its response body ends, the response:
/// `request_total`, `response_latency_ms` (to the response headers) and
/// `response_total` classified by status, `grpc-status` (headers or
/// trailers), a broken body, and the route's response classes
/// (`route_failure` gives their verdict on the status).
pub fn observe_response(
    series: std::sync::Arc<crate::metrics::Series>,
    response: Response<Body>,
    route_failure: Option<bool>,
    profile_route: Option<std::sync::Arc<crate::metrics::Series>>,
    started: tokio::time::Instant,
) -> Response<Body> {
    use crate::metrics::{Classification, classify, grpc_status};
    use http_body_util::BodyExt;

    series.request();
    if let Some(route) = &profile_route {
        route.request();
    }
    let latency = started.elapsed();
    let status = response.status();
    let header_grpc = grpc_status(response.headers());
    response.map(move |body| {
        crate::observe::Observed::new(body, move |ended| {
            let grpc = ended.trailer_grpc_status.or(header_grpc);
            let classification = if ended.broken {
                Classification::Failure
            } else {
                match route_failure {
                    Some(true) => Classification::Failure,
                    Some(false) if grpc.is_none_or(|c| c == 0) => Classification::Success,
                    _ => classify(status, grpc),
                }
            };
            series.response(status, grpc, classification, latency);
            if let Some(route) = &profile_route {
                route.response(status, grpc, classification, latency);
            }
        })
        .boxed()
    })
}

/// Calls `record` with how long the response took from `started` to the
/// end of its body, and how it ended (status, gRPC status from the headers
/// or trailers, a broken body).
pub fn on_response_end(
    response: Response<Body>,
    started: tokio::time::Instant,
    record: impl FnOnce(std::time::Duration, crate::route_metrics::Outcome)
    + Send
    + Sync
    + Unpin
    + 'static,
) -> Response<Body> {
    use http_body_util::BodyExt;
    let status = response.status();
    let header_grpc = crate::metrics::grpc_status(response.headers());
    response.map(move |body| {
        crate::observe::Observed::new(body, move |ended| {
            record(
                started.elapsed(),
                crate::route_metrics::Outcome {
                    status,
                    grpc: ended.trailer_grpc_status.or(header_grpc),
                    broken: ended.broken,
                },
            );
        })
        .boxed()
    })
}

/// The `Forwarded` elements of `headers` (RFC 7239), in order, as their
/// `(by, for)` parameters.
fn forwarded_elements(
    headers: &http::HeaderMap,
) -> impl Iterator<Item = (Option<&str>, Option<&str>)> {
    headers
        .get_all(http::header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(forwarded_pair)
}

fn forwarded_pair(element: &str) -> (Option<&str>, Option<&str>) {
    let param = |name: &str| {
        element
            .split(';')
            .map(str::trim)
            .find_map(|part| part.strip_prefix(name)?.strip_prefix('='))
            .map(|value| value.trim_matches('"'))
    };
    (param("by"), param("for"))
}

/// Whether a request already passed the gateway whose `Forwarded` element
/// is `ours` (its `by=` appears among the request's elements): a loop.
pub fn forwarded_loop(headers: &http::HeaderMap, ours: &HeaderValue) -> bool {
    let Some(ours) = ours.to_str().ok().and_then(|v| forwarded_pair(v).0) else {
        return false;
    };
    forwarded_elements(headers).any(|(by, _)| by == Some(ours))
}

/// The client that gateway `by` says it forwarded this request for: the
/// `for=` of the last element `by` wrote (it appends its own after any a
/// client sent, so earlier ones prove nothing).
pub fn forwarded_for(headers: &http::HeaderMap, by: &str) -> Option<String> {
    forwarded_elements(headers)
        .last()
        .filter(|(last_by, _)| *last_by == Some(by))
        .and_then(|(_, client)| client.map(str::to_owned))
}

/// Restores an HTTP/1 request a proxy carried over HTTP/2 (`l5d-orig-proto`)
/// to its version; whether it was one.
pub fn restore_orig_proto<B>(req: &mut Request<B>) -> bool {
    match req.headers_mut().remove(crate::endpoint::ORIG_PROTO) {
        Some(orig) if req.version() == http::Version::HTTP_2 => {
            *req.version_mut() = if orig.as_bytes() == b"HTTP/1.0" {
                http::Version::HTTP_10
            } else {
                http::Version::HTTP_11
            };
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for value in values {
            map.append(
                http::header::FORWARDED,
                HeaderValue::from_str(value).expect("value"),
            );
        }
        map
    }

    #[test]
    fn forwarded_elements_give_loops_and_the_client_a_gateway_vouches_for() {
        let ours = HeaderValue::from_static("by=gw-a;for=client-1;host=web:80;proto=https");
        assert!(!forwarded_loop(&headers(&["by=gw-b;for=mallory"]), &ours));
        assert!(forwarded_loop(
            &headers(&["for=x;by=gw-a", "by=gw-c"]),
            &ours
        ));
        assert!(forwarded_loop(
            &headers(&["by=gw-c, by=\"gw-a\";for=y"]),
            &ours
        ));
        let vouched = headers(&["by=gw-a;for=mallory", "by=gw-b;for=client-1"]);
        assert_eq!(forwarded_for(&vouched, "gw-b").as_deref(), Some("client-1"));
        assert_eq!(
            forwarded_for(&vouched, "gw-a"),
            None,
            "only the last element counts"
        );
        assert_eq!(forwarded_for(&headers(&[]), "gw-a"), None);
    }
}
