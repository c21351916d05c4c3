//! A tapped response's body: counts its bytes and reports how it ended
//! (`ResponseEnd`: the `grpc-status` of its trailers or headers, or the
//! reset that broke it off) once.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use linkerd2_proxy_api::tap::Eos;
use tokio::time::Instant;

use super::Tapped;
use crate::endpoint::{Body, BoxError};

/// HTTP/2's `INTERNAL_ERROR`: the body failed.
const RESET_INTERNAL_ERROR: u32 = 0x2;
/// HTTP/2's `CANCEL`: the body was dropped before its end.
const RESET_CANCEL: u32 = 0x8;

/// The body of a tapped response.
#[derive(Debug)]
pub struct TapBody {
    inner: Body,
    tapped: Option<Tapped>,
    response_init: Instant,
    bytes: u64,
    grpc_status: Option<i32>,
}

impl TapBody {
    /// Wraps `inner`; `header_grpc` is a trailers-only gRPC status.
    pub fn new(inner: Body, tapped: Tapped, header_grpc: Option<i32>) -> Self {
        Self {
            inner,
            tapped: Some(tapped),
            response_init: Instant::now(),
            bytes: 0,
            grpc_status: header_grpc,
        }
    }

    /// The body as the proxy sends it.
    pub fn boxed(self) -> Body {
        http_body_util::BodyExt::boxed(self)
    }

    fn end(&mut self, reset: Option<u32>) {
        if let Some(tapped) = self.tapped.take() {
            let eos = match (reset, self.grpc_status) {
                (Some(code), _) => Some(Eos {
                    end: Some(linkerd2_proxy_api::tap::eos::End::ResetErrorCode(code)),
                }),
                (None, Some(status)) => Some(Eos::from_grpc_status(status.unsigned_abs())),
                (None, None) => None,
            };
            tapped.end(self.response_init, self.bytes, eos);
        }
    }
}

impl HttpBody for TapBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                } else if let Some(trailers) = frame.trailers_ref()
                    && let Some(status) = crate::metrics::grpc_status(trailers)
                {
                    self.grpc_status = Some(status);
                }
                if self.inner.is_end_stream() {
                    self.end(None);
                }
            }
            Poll::Ready(Some(Err(_))) => self.end(Some(RESET_INTERNAL_ERROR)),
            Poll::Ready(None) => self.end(None),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TapBody {
    fn drop(&mut self) {
        let reset = (!self.inner.is_end_stream()).then_some(RESET_CANCEL);
        self.end(reset);
    }
}
