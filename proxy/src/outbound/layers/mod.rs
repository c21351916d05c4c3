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

/// The route layer's decision.
#[derive(Debug, Clone)]
pub struct Routed {
    /// The destination the connection was for.
    pub logical: Arc<Logical>,
    /// Its profile when the request came.
    pub profile: Option<Arc<Profile>>,
    /// The route the request matched.
    pub route: Option<Route>,
    /// `direction`, `authority` and `route`.
    pub labels: Labels,
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
    /// The endpoint's labels (`tls`, `server_id`, `dst_*`) when one was
    /// picked.
    pub endpoint_labels: Option<Labels>,
}

/// The whole stack for requests to `logical`.
pub type Stack = route::RouteLayer<
    observe::ObserveLayer<
        timeout::TimeoutLayer<retry::RetryLayer<split::SplitLayer<attempt::AttemptLayer>>>,
    >,
>;

/// The stack for one destination's requests, on `outbound`'s balancers
/// and metrics.
pub fn stack(outbound: Arc<super::Outbound>, logical: Arc<Logical>) -> Stack {
    let metrics = outbound.http_metrics.clone();
    let attempt = attempt::AttemptLayer::new(metrics.clone());
    let split = split::SplitLayer::new(outbound, attempt);
    let retry = retry::RetryLayer::new(metrics.clone(), split);
    let timeout = timeout::TimeoutLayer::new(retry);
    let observe = observe::ObserveLayer::new(metrics, timeout);
    route::RouteLayer::new(logical, observe)
}

/// A request's decision of type `T`, set by a layer above.
fn decided<T: Clone + Send + Sync + 'static>(req: &HttpRequest) -> Option<T> {
    req.extensions().get::<T>().cloned()
}
