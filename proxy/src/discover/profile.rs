//! What `GetProfile` says about a target, in the proxy's own terms: whether
//! the address is a Service (its fully-qualified name), a pod (one endpoint)
//! or neither; whether it is opaque; its routes (request matches, response
//! classes, timeouts, retryability); its retry budget; and the weighted
//! backends a TrafficSplit gives it. HTTPRoutes from the policy controller
//! fold into the same shape ([`super::policy`]).
//!
//! A route or match that cannot be used (a bad regex, an unknown method) is
//! dropped with a warning; the rest of the profile still applies.

use std::time::Duration;

use linkerd2_proxy_api::destination as api;
use regex::Regex;

use super::endpoints::Endpoint;
use crate::route_match::RequestView;

/// A profile.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    /// The Service's name (`name.ns.svc.cluster.local`) when the address is
    /// a Service's.
    pub fully_qualified_name: Option<String>,
    /// Whether connections are opaque TCP (no detection).
    pub opaque: bool,
    /// The routes, first match wins.
    pub routes: Vec<Route>,
    /// The budget retries draw from.
    pub retry_budget: Option<RetryBudget>,
    /// Weighted backends (`authority` with port) when a TrafficSplit applies.
    pub backends: Vec<Backend>,
    /// The one endpoint, when the address is a pod's.
    pub endpoint: Option<Endpoint>,
    /// Why the destination service gave no profile (an address it does not
    /// know, or a name a gateway does not export): a pod forwards such a
    /// connection as addressed, a gateway refuses it.
    pub refused: Option<String>,
}

impl Profile {
    /// The default profile, remembering why there is no other.
    pub fn refused(status: &tonic::Status) -> Self {
        Self {
            refused: Some(format!("{:?}: {}", status.code(), status.message())),
            ..Self::default()
        }
    }
}

/// A weighted backend of a split.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Backend {
    /// `name:port`.
    pub authority: String,
    /// Its weight (relative).
    pub weight: u32,
    /// How requests drawn to it fail instead (a route backend the policy
    /// controller could not resolve: a Service that does not exist).
    pub failure: Option<BackendFailure>,
    /// Header modifiers applied to requests drawn to it and to their
    /// responses (an HTTPRoute backendRef's `filters`), after the rule's.
    pub filters: Vec<RouteFilter>,
}

/// How requests to a backend that cannot be reached are answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendFailure {
    /// An HTTP status and message.
    Http(http::StatusCode, String),
    /// A gRPC status code and message.
    Grpc(u32, String),
}

/// Linkerd's retry budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudget {
    /// Retries allowed per request, on top of the minimum.
    pub ratio: f32,
    /// Retries always allowed per second.
    pub min_per_second: u32,
    /// The window requests and retries are counted over.
    pub ttl: Duration,
}

impl Default for RetryBudget {
    /// Linkerd's default: 20 % more, at least 10 per second, over 10 s.
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_second: 10,
            ttl: Duration::from_secs(10),
        }
    }
}

/// A route of a profile.
#[derive(Debug, Clone)]
pub struct Route {
    /// The route's name (its `route` metric label).
    pub name: Option<String>,
    /// Which requests it takes.
    pub condition: RequestMatch,
    /// How responses are classified (before the default rule: 5xx fail).
    pub response_classes: Vec<ResponseClass>,
    /// Whether failed requests may be retried.
    pub retryable: bool,
    /// Which responses are retried (an HTTPRoute's or GRPCRoute's retry
    /// conditions); `None`: the failed ones.
    pub retry_on: Option<ResponseMatch>,
    /// At most this many retries of one request (besides the budget).
    pub max_retries: Option<u32>,
    /// How long a request may take, retries included.
    pub timeout: Option<Duration>,
    /// How long one attempt may wait for its response.
    pub attempt_timeout: Option<Duration>,
    /// The route's own weighted backends (none: the profile's, or the
    /// Service itself).
    pub backends: Vec<Backend>,
    /// What the route does to its requests and responses (HTTPRoute
    /// filters).
    pub filters: Vec<RouteFilter>,
    /// Linkerd's route and backend labels, for a route the policy
    /// controller sent.
    pub policy_labels: Option<std::sync::Arc<crate::route_metrics::PolicyRouteLabels>>,
}

/// Headers to add, set and remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderModifier {
    /// Added beside existing values.
    pub add: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Replacing existing values.
    pub set: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Removed.
    pub remove: Vec<http::HeaderName>,
}

impl HeaderModifier {
    /// Applies the modification to `headers`: additions, then sets, then
    /// removals, as the API orders them.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for name in &self.remove {
            headers.remove(name);
        }
    }
}

/// A redirect the proxy answers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// `http` or `https` (none: the request's).
    pub scheme: Option<String>,
    /// The host (none: the request's).
    pub host: Option<String>,
    /// The new path, whole or in place of the matched prefix.
    pub path: Option<PathRewrite>,
    /// The port (none: the scheme's default).
    pub port: Option<u16>,
    /// 301 or 302.
    pub status: http::StatusCode,
}

/// How a redirect rewrites the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRewrite {
    /// The whole path.
    Full(String),
    /// The part a prefix match matched.
    Prefix(String),
}

/// A route filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteFilter {
    /// Modify the request's headers.
    RequestHeaders(HeaderModifier),
    /// Modify the response's headers.
    ResponseHeaders(HeaderModifier),
    /// Answer with a redirect.
    Redirect(Redirect),
    /// Answer with this status and message (a backend the controller
    /// could not resolve).
    Fail(http::StatusCode, String),
    /// Answer a gRPC call with this status and message.
    GrpcFail(u32, String),
}

/// A request condition.
#[derive(Debug, Clone)]
pub enum RequestMatch {
    /// Every one of these.
    All(Vec<RequestMatch>),
    /// Any of these.
    Any(Vec<RequestMatch>),
    /// Not this.
    Not(Box<RequestMatch>),
    /// The path matches this (anchored) regex.
    Path(Regex),
    /// The method is this.
    Method(http::Method),
    /// A Gateway API match (path, method, headers, query parameters).
    Http(crate::route_match::RouteMatch),
}

impl RequestMatch {
    /// Whether `req` matches.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        match self {
            Self::All(all) => all.iter().all(|m| m.matches(req)),
            Self::Any(any) => any.iter().any(|m| m.matches(req)),
            Self::Not(not) => !not.matches(req),
            Self::Path(regex) => regex.is_match(req.uri.path()),
            Self::Method(m) => m == req.method,
            Self::Http(m) => m.matches(req),
        }
    }
}

/// A response class.
#[derive(Debug, Clone)]
pub struct ResponseClass {
    /// Which responses.
    pub condition: ResponseMatch,
    /// Whether they are failures.
    pub is_failure: bool,
}

/// A response condition.
#[derive(Debug, Clone)]
pub enum ResponseMatch {
    /// Every one of these.
    All(Vec<ResponseMatch>),
    /// Any of these.
    Any(Vec<ResponseMatch>),
    /// Not this.
    Not(Box<ResponseMatch>),
    /// The status is within `min..=max`.
    Status(u16, u16),
    /// The gRPC status (`grpc-status` in the response's headers, as a
    /// server answers a call it fails without a message) is one of these.
    GrpcStatus(Vec<i32>),
}

impl ResponseMatch {
    /// Whether a response with `status` (and gRPC status `grpc`) matches.
    pub fn matches(&self, status: http::StatusCode, grpc: Option<i32>) -> bool {
        match self {
            Self::All(all) => all.iter().all(|m| m.matches(status, grpc)),
            Self::Any(any) => any.iter().any(|m| m.matches(status, grpc)),
            Self::Not(not) => !not.matches(status, grpc),
            Self::Status(min, max) => (*min..=*max).contains(&status.as_u16()),
            Self::GrpcStatus(codes) => grpc.is_some_and(|code| codes.contains(&code)),
        }
    }
}

impl Profile {
    /// The route `req` takes, if any.
    pub fn route(&self, req: &RequestView<'_>) -> Option<&Route> {
        self.routes.iter().find(|r| r.condition.matches(req))
    }

    /// The weighted backends a request on `route` is split over: the
    /// route's own, else the profile's (none: the Service itself).
    pub fn backends_for<'a>(&'a self, route: Option<&'a Route>) -> &'a [Backend] {
        match route {
            Some(route) if !route.backends.is_empty() => &route.backends,
            _ => &self.backends,
        }
    }
}

impl Route {
    /// The prefix of the route's prefix match that `path` is under (for a
    /// redirect replacing it).
    pub fn matched_prefix(&self, path: &str) -> Option<String> {
        fn find(m: &RequestMatch, path: &str) -> Option<String> {
            match m {
                RequestMatch::Any(all) | RequestMatch::All(all) => {
                    all.iter().find_map(|m| find(m, path))
                }
                RequestMatch::Http(m) => match &m.path {
                    Some(crate::route_match::PathMatch::Prefix(prefix))
                        if path.starts_with(prefix.trim_end_matches('/')) =>
                    {
                        Some(prefix.trim_end_matches('/').to_owned())
                    }
                    _ => None,
                },
                _ => None,
            }
        }
        find(&self.condition, path)
    }

    /// Whether a response with `status` (and gRPC status `grpc`) is a
    /// failure under this route's classes (else the default: 5xx).
    pub fn is_failure(&self, status: http::StatusCode, grpc: Option<i32>) -> Option<bool> {
        self.response_classes
            .iter()
            .find(|c| c.condition.matches(status, grpc))
            .map(|c| c.is_failure)
    }

    /// Whether an attempt answered with `status` (and `grpc`), `failed`
    /// or not, is to be retried.
    pub fn retries(&self, status: http::StatusCode, grpc: Option<i32>, failed: bool) -> bool {
        self.retry_on
            .as_ref()
            .map_or(failed, |on| on.matches(status, grpc))
    }
}

/// Converts a `DestinationProfile`; `port` completes backend authorities
/// that carry none.
pub fn from_api(profile: api::DestinationProfile, port: u16) -> Profile {
    let routes = profile
        .routes
        .into_iter()
        .filter_map(|route| {
            let name = route.metrics_labels.get("route").cloned();
            let condition = route.condition.as_ref().and_then(request_match);
            let Some(condition) = condition else {
                tracing::warn!(route = ?name, "ignoring a route whose condition is unusable");
                return None;
            };
            Some(Route {
                name,
                condition,
                response_classes: route
                    .response_classes
                    .iter()
                    .filter_map(|c| {
                        Some(ResponseClass {
                            condition: response_match(c.condition.as_ref()?)?,
                            is_failure: c.is_failure,
                        })
                    })
                    .collect(),
                retryable: route.is_retryable,
                retry_on: None,
                max_retries: None,
                timeout: route
                    .timeout
                    .and_then(|t| Duration::try_from(t).ok())
                    .filter(|t| !t.is_zero()),
                attempt_timeout: None,
                backends: Vec::new(),
                filters: Vec::new(),
                policy_labels: None,
            })
        })
        .collect();
    let retry_budget = profile.retry_budget.map(|b| RetryBudget {
        ratio: b.retry_ratio.max(0.0),
        min_per_second: b.min_retries_per_second,
        ttl: b
            .ttl
            .and_then(|t| Duration::try_from(t).ok())
            .filter(|t| !t.is_zero())
            .unwrap_or(Duration::from_secs(10)),
    });
    let backends = profile
        .dst_overrides
        .into_iter()
        .map(|dst| Backend {
            authority: with_port(&dst.authority, port),
            weight: dst.weight,
            ..Backend::default()
        })
        .collect();
    Profile {
        fully_qualified_name: Some(profile.fully_qualified_name)
            .filter(|n| !n.is_empty())
            .map(|n| n.trim_end_matches('.').to_owned()),
        opaque: profile.opaque_protocol,
        routes,
        retry_budget,
        backends,
        endpoint: profile
            .endpoint
            .and_then(|e| super::endpoints::endpoint_from_api(e, &Default::default())),
        refused: None,
    }
}

/// `authority` with `:port` appended when it has none.
fn with_port(authority: &str, port: u16) -> String {
    let authority = authority.trim_end_matches('.');
    match authority.rsplit_once(':') {
        Some((_, p)) if p.parse::<u16>().is_ok() => authority.to_owned(),
        _ => format!("{authority}:{port}"),
    }
}

fn request_match(m: &api::RequestMatch) -> Option<RequestMatch> {
    use api::request_match::Match;
    Some(match m.r#match.as_ref()? {
        Match::All(seq) => {
            RequestMatch::All(seq.matches.iter().filter_map(request_match).collect())
        }
        Match::Any(seq) => {
            RequestMatch::Any(seq.matches.iter().filter_map(request_match).collect())
        }
        Match::Not(not) => RequestMatch::Not(Box::new(request_match(not)?)),
        Match::Path(path) => match Regex::new(&format!("^(?:{})$", path.regex)) {
            Ok(regex) => RequestMatch::Path(regex),
            Err(e) => {
                tracing::warn!("route path regex {:?}: {e}", path.regex);
                return None;
            }
        },
        Match::Method(method) => RequestMatch::Method(http::Method::try_from(method.clone()).ok()?),
    })
}

fn response_match(m: &api::ResponseMatch) -> Option<ResponseMatch> {
    use api::response_match::Match;
    Some(match m.r#match.as_ref()? {
        Match::All(seq) => {
            ResponseMatch::All(seq.matches.iter().filter_map(response_match).collect())
        }
        Match::Any(seq) => {
            ResponseMatch::Any(seq.matches.iter().filter_map(response_match).collect())
        }
        Match::Not(not) => ResponseMatch::Not(Box::new(response_match(not)?)),
        Match::Status(range) => ResponseMatch::Status(
            u16::try_from(range.min).ok()?,
            u16::try_from(range.max).ok()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(regex: &str) -> api::RequestMatch {
        api::RequestMatch {
            r#match: Some(api::request_match::Match::Path(api::PathMatch {
                regex: regex.into(),
            })),
        }
    }

    #[test]
    fn routes_match_in_order_on_anchored_paths() {
        let profile = from_api(
            api::DestinationProfile {
                fully_qualified_name: "web.shop.svc.cluster.local".into(),
                routes: vec![
                    api::Route {
                        condition: Some(path("/api/[^/]+")),
                        metrics_labels: [("route".to_owned(), "api".to_owned())].into(),
                        is_retryable: true,
                        timeout: Some(prost_types::Duration {
                            seconds: 0,
                            nanos: 250_000_000,
                        }),
                        ..Default::default()
                    },
                    api::Route {
                        condition: Some(path("(")),
                        ..Default::default()
                    },
                ],
                dst_overrides: vec![api::WeightedDst {
                    authority: "web-east.shop.svc.cluster.local.".into(),
                    weight: 100,
                    ..Default::default()
                }],
                ..Default::default()
            },
            8080,
        );
        assert_eq!(profile.routes.len(), 1, "the bad regex is dropped");
        let get = |path: &str| {
            http::Request::builder()
                .uri(path)
                .body(())
                .expect("request")
        };
        let items = get("/api/items");
        let route = profile.route(&(&items).into()).expect("matches");
        assert_eq!(route.name.as_deref(), Some("api"));
        assert_eq!(route.timeout, Some(Duration::from_millis(250)));
        assert!(profile.route(&(&get("/api/items/3")).into()).is_none());
        assert!(profile.route(&(&get("/x/api/items")).into()).is_none());
        assert_eq!(
            profile.backends[0].authority,
            "web-east.shop.svc.cluster.local:8080"
        );
    }

    #[test]
    fn response_classes_override_the_default() {
        let route = Route {
            name: None,
            condition: RequestMatch::All(vec![]),
            response_classes: vec![ResponseClass {
                condition: ResponseMatch::Status(400, 499),
                is_failure: true,
            }],
            retryable: false,
            retry_on: None,
            max_retries: None,
            timeout: None,
            attempt_timeout: None,
            backends: Vec::new(),
            filters: Vec::new(),
            policy_labels: None,
        };
        assert_eq!(
            route.is_failure(http::StatusCode::CONFLICT, None),
            Some(true)
        );
        assert_eq!(route.is_failure(http::StatusCode::OK, None), None);
    }
}
