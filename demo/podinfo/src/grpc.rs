//! gRPC on podinfo's port (HTTP/2, `content-type: application/grpc`):
//! `grpc.health.v1.Health/Check` answers `SERVING`, through the same
//! injected [`Faults`](crate::faults::Faults) as HTTP: a failed call is
//! answered `UNAVAILABLE` (14) trailers-only, as a server that cannot take
//! it; any other method is `UNIMPLEMENTED` (12).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use hyper::body::{Body, Frame};

/// The health service's Check method.
pub const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
/// `HealthCheckResponse { status: SERVING }` as protobuf.
const SERVING: [u8; 2] = [0x08, 0x01];

/// Whether `request` is a gRPC call.
pub fn is_grpc<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// A unary answer: one message, then the trailers.
#[derive(Debug)]
pub struct UnaryBody {
    message: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Body for UnaryBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(message) = self.message.take() {
            return Poll::Ready(Some(Ok(Frame::data(message))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.message.is_none() && self.trailers.is_none()
    }
}

fn grpc_response(body: UnaryBody, status: Option<(u32, &str)>) -> Response<UnaryBody> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    if let Some((code, message)) = status {
        headers.insert("grpc-status", HeaderValue::from(code));
        if let Ok(message) = HeaderValue::from_str(message) {
            headers.insert("grpc-message", message);
        }
    }
    response
}

/// A trailers-only answer with `code`.
pub fn failed(code: u32, message: &str) -> Response<UnaryBody> {
    grpc_response(
        UnaryBody {
            message: None,
            trailers: None,
        },
        Some((code, message)),
    )
}

/// The answer to a call of `path` that the faults let through.
pub fn answer(path: &str) -> Response<UnaryBody> {
    if path != HEALTH_CHECK {
        return failed(12, &format!("{path} is not implemented"));
    }
    let mut frame = Vec::with_capacity(5 + SERVING.len());
    frame.push(0); // not compressed
    frame.extend_from_slice(&(SERVING.len() as u32).to_be_bytes());
    frame.extend_from_slice(&SERVING);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    grpc_response(
        UnaryBody {
            message: Some(Bytes::from(frame)),
            trailers: Some(trailers),
        },
        None,
    )
}
