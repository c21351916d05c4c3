//! The outbound HTTP request path, as a stack of small tower layers, each
//! with one job and named for it (outermost first):
//!
//! 1. [`route`]: which profile route the request takes, and its labels.
//! 2. [`observe`]: the request's metrics (`request_total`,
//!    `response_total`, `response_latency_ms`).
//! 3. [`timeout`]: the route's timeout, retries included (504).
//! 4. [`retry`]: budgeted retries of a retryable route, with the body
//!    buffered.
//! 5. [`split`]: which backend of a split (or which Service, pod or
//!    address) an attempt goes to; a retry prefers one not tried yet.
//! 6. [`attempt`]: which endpoint, and one attempt sent to it, counted
//!    (`route_actual_*`).
//!
//! A layer tells the ones below what it decided through request
//! extensions ([`Routed`], [`AttemptSpec`], [`Picked`]), and the attempt
//! tells the ones above what happened through a response extension
//! ([`Attempted`]). Each layer is tested on its own, in process, with a
//! paused clock.

pub mod attempt;
pub mod counts;
#[cfg(test)]
mod fixtures;
pub mod observe;
pub mod retry;
pub mod route;
pub mod split;
pub mod timeout;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};

use super::{Logical, Target};
use crate::discover::profile::{Profile, Route};
use crate::endpoint::Body;
use crate::metrics::Labels;

/// What every layer takes.
pub type HttpRequest = Request<Body>;
/// What every layer answers; errors are answered as responses.
pub type HttpResponse = Response<Body>;
/// A layer's future.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Result<HttpResponse, Infallible>> + Send>>;

/// The route layer's decision for a request: the destination, and the
/// [`Decision`] it shares with the requests like it (read through this).
#[derive(Debug, Clone)]
pub struct Routed {
    /// The destination the connection was for.
    pub logical: Arc<Logical>,
    /// What was decided.
    pub decision: Arc<Decision>,
}

impl std::ops::Deref for Routed {
    type Target = Decision;

    fn deref(&self) -> &Decision {
        &self.decision
    }
}

/// A routing decision, kept by the destination for the requests like it
/// (see [`route`]).
#[derive(Debug)]
pub struct Decision {
    /// The profile it was made with.
    pub profile: Option<Arc<Profile>>,
    /// The route the request matched.
    pub route: Option<Route>,
    /// `direction`, `authority` and `route`.
    pub labels: Labels,
    /// What its requests are counted under.
    pub counts: counts::RoutedCounts,
}

/// What the retry layer asks of one attempt.
#[derive(Debug, Clone, Default)]
pub struct AttemptSpec {
    /// The request may be retried if this attempt fails.
    pub retryable: bool,
    /// Backends the request already failed on.
    pub tried: Vec<String>,
}

/// The split layer's decision for one attempt.
#[derive(Clone)]
pub struct Picked {
    /// Where the attempt goes.
    pub target: Arc<Target>,
    /// Another backend could take the request: a backend known to have no
    /// endpoint fails at once instead of waiting for one.
    pub fail_fast: bool,
}

impl std::fmt::Debug for Picked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Picked")
            .field("backend", &self.target.authority())
            .field("fail_fast", &self.fail_fast)
            .finish()
    }
}

/// What one attempt did, on its response.
#[derive(Debug, Clone, Default)]
pub struct Attempted {
    /// The backend (Service authority) it went to, when balanced.
    pub backend: Option<String>,
    /// No endpoint could be picked: nothing was sent.
    pub no_endpoint: bool,
    /// Another backend could take the request (the split layer's
    /// [`Picked::fail_fast`]).
    pub elsewhere: bool,
    /// The attempt failed (by the route's classes, or 5xx, gRPC errors,
    /// transport errors).
    pub failed: bool,
    /// The attempt is to be retried (its route's retry conditions hold, or
    /// without any, it failed).
    pub retry: bool,
    /// The endpoint's labels (`tls`, `server_id`, `dst_*`) when one was
    /// picked.
    pub endpoint_labels: Option<Arc<Labels>>,
}

/// What a layer hands the request on to: the rest of the stack.
pub trait Next:
    tower::Service<
        HttpRequest,
        Response = HttpResponse,
        Error = Infallible,
        Future = ResponseFuture,
    > + Clone
    + Send
    + 'static
{
}

impl<T> Next for T where
    T: tower::Service<
            HttpRequest,
            Response = HttpResponse,
            Error = Infallible,
            Future = ResponseFuture,
        > + Clone
        + Send
        + 'static
{
}

/// One job on the request path.
pub trait Layer: Clone + Send + Sync + 'static {
    /// Does this layer's job for `req`, handing it on to `next`.
    fn handle<N: Next>(&self, req: HttpRequest, next: N) -> ResponseFuture;

    /// This layer in front of `next`, as a tower `Service`.
    fn over<N: Next>(self, next: N) -> Stacked<Self, N> {
        Stacked { layer: self, next }
    }
}

/// A layer in front of the rest of the stack.
#[derive(Debug, Clone)]
pub struct Stacked<L, N> {
    layer: L,
    next: N,
}

impl<L: Layer, N: Next> tower::Service<HttpRequest> for Stacked<L, N> {
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: HttpRequest) -> ResponseFuture {
        self.layer.handle(req, self.next.clone())
    }
}

/// The whole stack for requests to one destination.
pub type Stack = Stacked<
    route::Route,
    Stacked<
        observe::Observe,
        Stacked<timeout::Timeout, Stacked<retry::Retry, Stacked<split::Split, attempt::Attempt>>>,
    >,
>;

/// The stack for `logical`'s requests, on `outbound`'s balancers and
/// metrics.
pub fn stack(outbound: Arc<super::Outbound>, logical: Arc<Logical>) -> Stack {
    let metrics = outbound.http_metrics.clone();
    let attempt = attempt::Attempt::new(metrics.clone(), outbound.taps.clone());
    let split = split::Split::new(outbound).over(attempt);
    let retry = retry::Retry::new(metrics.clone()).over(split);
    let timeout = timeout::Timeout::new().over(retry);
    let observe = observe::Observe::new(metrics).over(timeout);
    route::Route::new(logical).over(observe)
}

/// A request's decision of type `T`, set by a layer above.
fn decided<T: Clone + Send + Sync + 'static>(req: &HttpRequest) -> Option<T> {
    req.extensions().get::<T>().cloned()
}
