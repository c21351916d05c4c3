//! A response body that reports how it ended: the `grpc-status` of its
//! trailers (gRPC answers there), or that it broke off. The proxy records a
//! response's metrics and classification from it, once.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use crate::endpoint::{Body, BoxError};

/// How a body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// The `grpc-status` of the trailers, if there were any.
    pub trailer_grpc_status: Option<i32>,
    /// Whether it broke off (an error, or dropped before its end).
    pub broken: bool,
}

/// Calls `on_end` once when `inner` ends, errs or is dropped.
pub struct Observed<F: FnOnce(Ended)> {
    inner: Body,
    on_end: Option<F>,
    trailer_grpc_status: Option<i32>,
}

impl<F: FnOnce(Ended)> std::fmt::Debug for Observed<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed").finish_non_exhaustive()
    }
}

impl<F: FnOnce(Ended)> Observed<F> {
    /// Wraps `inner`.
    pub fn new(inner: Body, on_end: F) -> Self {
        Self {
            inner,
            on_end: Some(on_end),
            trailer_grpc_status: None,
        }
    }

    fn end(&mut self, broken: bool) {
        if let Some(on_end) = self.on_end.take() {
            on_end(Ended {
                trailer_grpc_status: self.trailer_grpc_status,
                broken,
            });
        }
    }
}

impl<F: FnOnce(Ended)> Drop for Observed<F> {
    fn drop(&mut self) {
        let ended = self.inner.is_end_stream();
        self.end(!ended);
    }
}

impl<F: FnOnce(Ended) + Unpin> HttpBody for Observed<F> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let poll = Pin::new(&mut self.inner).poll_frame(cx);
        match &poll {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    self.trailer_grpc_status = crate::metrics::grpc_status(trailers);
                }
            }
            Poll::Ready(Some(Err(_))) => self.end(true),
            Poll::Ready(None) => self.end(false),
            Poll::Pending => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
