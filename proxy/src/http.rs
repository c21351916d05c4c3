//! HTTP plumbing shared by the inbound and outbound sides: serving an
//! accepted connection in the protocol detection found (with graceful
//! shutdown), relaying connection upgrades such as WebSocket, and the
//! proxy's own error responses (with Linkerd's `l5d-proxy-error` header).

use std::convert::Infallible;
use std::future::Future;

use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
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

/// Serves HTTP (`protocol` says which version) on `io` with `handle` until
/// the connection ends; once `drain` completes, in-flight requests finish
/// and the connection closes.
pub async fn serve<I, F, Fut>(io: I, protocol: Protocol, handle: F, drain: impl Future<Output = ()>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let handle = handle.clone();
        async move { Ok::<_, Infallible>(handle(req).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(hyper_util::rt::TokioTimer::new());
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(None);
    let builder = match protocol {
        Protocol::Http2 => builder.http2_only(),
        _ => builder.http1_only(),
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn, drain);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!("HTTP connection: {e}");
            }
        }
        () = &mut drain => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Takes the upgrade half of a request that asks to switch protocols.
pub fn take_upgrade(req: &mut Request<Incoming>) -> Option<OnUpgrade> {
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
    metrics: &crate::metrics::HttpMetrics,
    labels: crate::metrics::Labels,
    response: Response<Body>,
    route_failure: Option<bool>,
    started: tokio::time::Instant,
) -> Response<Body> {
    use crate::metrics::{Classification, classify, grpc_status};
    use http_body_util::BodyExt;

    metrics.request(&labels);
    let latency = started.elapsed();
    let status = response.status();
    let header_grpc = grpc_status(response.headers());
    let metrics = metrics.clone();
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
            metrics.response(&labels, status, grpc, classification, latency);
        })
        .boxed()
    })
}

/// Whether `headers` already hold a `Forwarded` element by the same proxy
/// as `ours` (`by=<identity>;…`): a request that came back around.
pub fn forwarded_loop(headers: &http::HeaderMap, ours: &HeaderValue) -> bool {
    let by = |value: &str| {
        value
            .split([';', ','])
            .map(str::trim)
            .find_map(|part| part.strip_prefix("by="))
            .map(str::to_owned)
    };
    let Some(ours) = ours.to_str().ok().and_then(by) else {
        return false;
    };
    headers
        .get_all(http::header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|element| by(element).as_deref() == Some(ours.as_str()))
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
