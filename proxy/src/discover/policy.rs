//! What the policy controller's `OutboundPolicies` says about a Service
//! port, folded into the proxy's [`Profile`]: HTTPRoutes become routes
//! (Gateway API matches, per-rule weighted backends, request timeouts,
//! retries with their status ranges and limit), and a Service's own retry
//! and timeout annotations become its default route.
//!
//! A ServiceProfile or a TrafficSplit (routes or backends in the
//! destination's profile) wins over HTTPRoutes, as in Linkerd; otherwise
//! the policy's routes apply on top of what the destination said about the
//! address (its name, its endpoint, opacity).

use std::time::Duration;

use linkerd2_proxy_api::meta::{Metadata, metadata};
use linkerd2_proxy_api::outbound::{self as api, backend, grpc_route, http_route, proxy_protocol};

use super::profile::{
    Backend, BackendFailure, HeaderModifier, PathRewrite, Profile, Redirect, RequestMatch,
    ResponseMatch, Route, RouteFilter,
};
use crate::metrics::Labels;
use crate::route_match::{InvalidMatch, RouteMatch};
use crate::route_metrics::PolicyRouteLabels;
use std::sync::Arc;

/// A port's routes as the policy sends them: HTTP routes (HTTP/1's, which
/// Linkerd sends the same as HTTP/2's) or gRPC routes; none for an opaque
/// port.
enum Routes<'a> {
    Http(&'a [api::HttpRoute]),
    Grpc(&'a [api::GrpcRoute]),
}

fn routes(policy: &api::OutboundPolicy) -> Routes<'_> {
    match policy.protocol.as_ref().and_then(|p| p.kind.as_ref()) {
        Some(proxy_protocol::Kind::Detect(d)) => {
            Routes::Http(d.http1.as_ref().map_or(&[], |h| &h.routes))
        }
        Some(proxy_protocol::Kind::Http1(h)) => Routes::Http(&h.routes),
        Some(proxy_protocol::Kind::Http2(h)) => Routes::Http(&h.routes),
        Some(proxy_protocol::Kind::Grpc(g)) => Routes::Grpc(&g.routes),
        _ => Routes::Http(&[]),
    }
}

/// One rule of either kind, in the terms a profile route needs.
struct RuleParts {
    /// Linkerd's `backend_*` labels by the authority each backend
    /// discovers.
    backend_labels: Vec<(String, Labels)>,
    matches: Vec<RouteMatch>,
    retry: Option<(u32, Option<Duration>, Option<ResponseMatch>)>,
    timeouts: Option<linkerd2_proxy_api::http_route::Timeouts>,
    backends: Vec<Backend>,
    filters: Vec<RouteFilter>,
}

/// Linkerd's labels for a parent (`parent_*`), route (`route_*`) or backend
/// (`backend_*`) from its metadata: a resource's group, kind, namespace,
/// name, port and section; a default route is kind `default`.
fn metadata_labels<const N: usize>(names: [&'static str; N], meta: Option<&Metadata>) -> Labels {
    let values: [String; 6] = match meta.and_then(|m| m.kind.as_ref()) {
        Some(metadata::Kind::Resource(r)) => [
            r.group.clone(),
            r.kind.clone(),
            r.namespace.clone(),
            r.name.clone(),
            if r.port == 0 {
                String::new()
            } else {
                r.port.to_string()
            },
            r.section.clone(),
        ],
        Some(metadata::Kind::Default(name)) => [
            String::new(),
            "default".into(),
            String::new(),
            name.clone(),
            String::new(),
            String::new(),
        ],
        None => Default::default(),
    };
    names.into_iter().zip(values).collect()
}

const BACKEND_LABELS: [&str; 6] = [
    "backend_group",
    "backend_kind",
    "backend_namespace",
    "backend_name",
    "backend_port",
    "backend_section_name",
];

/// The `backend_*` labels of a rule's backends, by the authority each
/// discovers.
fn backend_labels<'a>(
    backends: impl Iterator<Item = Option<&'a api::Backend>>,
) -> Vec<(String, Labels)> {
    backends
        .flatten()
        .filter_map(|backend| {
            let backend::Kind::Balancer(p2c) = backend.kind.as_ref()? else {
                return None;
            };
            let backend::endpoint_discovery::Kind::Dst(dst) =
                p2c.discovery.as_ref()?.kind.as_ref()?;
            Some((
                dst.path.clone(),
                metadata_labels(BACKEND_LABELS, backend.metadata.as_ref()),
            ))
        })
        .collect()
}

/// A route's name (a resource's, not a default route's), its `route_*`
/// labels and its rules.
type FoldedRoute = (Option<String>, Labels, Vec<RuleParts>);

/// One backend of a rule, as folding reads it.
struct RuleBackend<'a> {
    backend: Option<&'a api::Backend>,
    /// Its weight, when the rule splits by weight.
    weight: Option<u32>,
    /// Its filters, in the proxy's terms.
    filters: Vec<RouteFilter>,
}

impl RuleBackend<'_> {
    /// The profile backend it folds into: requests drawn to a backend
    /// with a failure injector (one the controller could not resolve) are
    /// answered with its failure; header modifiers are applied to the
    /// others' requests and responses (a redirect means nothing for one
    /// backend of a split and is left out, with a warning).
    fn fold(&self) -> Option<Backend> {
        let weight = self.weight?;
        let mut failure = None;
        let mut filters = Vec::new();
        for filter in &self.filters {
            match filter {
                RouteFilter::Fail(status, message) => {
                    failure = Some(BackendFailure::Http(*status, message.clone()));
                }
                RouteFilter::GrpcFail(code, message) => {
                    failure = Some(BackendFailure::Grpc(*code, message.clone()));
                }
                RouteFilter::RequestHeaders(_) | RouteFilter::ResponseHeaders(_) => {
                    filters.push(filter.clone());
                }
                RouteFilter::Redirect(_) => {
                    tracing::warn!("ignoring a redirect filter on a route backend");
                }
            }
        }
        if let Some(failure) = failure {
            return Some(Backend {
                weight,
                failure: Some(failure),
                ..Backend::default()
            });
        }
        Some(Backend {
            authority: discovered(self.backend)?,
            weight,
            failure: None,
            filters,
        })
    }
}

/// What folding reads from a route message, HTTP or gRPC.
trait ApiRoute {
    type Rule: ApiRule;
    fn metadata(&self) -> Option<&Metadata>;
    fn rules(&self) -> &[Self::Rule];
}

/// What folding reads from a rule message, HTTP or gRPC.
trait ApiRule {
    /// Its matches, for the route named `route`.
    fn matches(&self, route: &str) -> Result<Vec<RouteMatch>, InvalidMatch>;
    /// Each backend, with its weight when the rule splits by weight, and
    /// its filters.
    fn backends(&self) -> Vec<RuleBackend<'_>>;
    /// Its retries: limit, per-attempt timeout, what is retried.
    fn retry(&self) -> Option<(u32, Option<Duration>, Option<ResponseMatch>)>;
    fn timeouts(&self) -> Option<linkerd2_proxy_api::http_route::Timeouts>;
    fn filters(&self) -> Vec<RouteFilter>;
}

macro_rules! api_route {
    ($route:ty, $rule:ty, $module:ident, $from:path, $retry_on:path, $filter:path) => {
        impl ApiRoute for $route {
            type Rule = $rule;
            fn metadata(&self) -> Option<&Metadata> {
                self.metadata.as_ref()
            }
            fn rules(&self) -> &[$rule] {
                &self.rules
            }
        }

        impl ApiRule for $rule {
            fn matches(&self, route: &str) -> Result<Vec<RouteMatch>, InvalidMatch> {
                self.matches.iter().map(|m| $from(m, route)).collect()
            }
            fn backends(&self) -> Vec<RuleBackend<'_>> {
                use $module::distribution::Kind;
                match self.backends.as_ref().and_then(|d| d.kind.as_ref()) {
                    Some(Kind::FirstAvailable(f)) => f
                        .backends
                        .iter()
                        .map(|b| RuleBackend {
                            backend: b.backend.as_ref(),
                            weight: None,
                            filters: b.filters.iter().filter_map($filter).collect(),
                        })
                        .collect(),
                    Some(Kind::RandomAvailable(r)) => r
                        .backends
                        .iter()
                        .map(|w| RuleBackend {
                            backend: w.backend.as_ref().and_then(|b| b.backend.as_ref()),
                            weight: Some(w.weight),
                            filters: w
                                .backend
                                .iter()
                                .flat_map(|b| &b.filters)
                                .filter_map($filter)
                                .collect(),
                        })
                        .collect(),
                    _ => Vec::new(),
                }
            }
            fn retry(&self) -> Option<(u32, Option<Duration>, Option<ResponseMatch>)> {
                self.retry
                    .as_ref()
                    .map(|r| (r.max_retries, duration(r.timeout), $retry_on(r)))
            }
            fn timeouts(&self) -> Option<linkerd2_proxy_api::http_route::Timeouts> {
                self.timeouts
            }
            fn filters(&self) -> Vec<RouteFilter> {
                self.filters.iter().filter_map($filter).collect()
            }
        }
    };
}

api_route!(
    api::HttpRoute,
    http_route::Rule,
    http_route,
    RouteMatch::from_http,
    http_retry_on,
    filter
);
api_route!(
    api::GrpcRoute,
    grpc_route::Rule,
    grpc_route,
    RouteMatch::from_grpc,
    grpc_retry_on,
    grpc_filter
);

/// Each route folded; a rule whose matches cannot be used is left out
/// with a warning.
fn route_rules(routes: &Routes<'_>) -> Vec<FoldedRoute> {
    match routes {
        Routes::Http(routes) => routes.iter().map(fold_route).collect(),
        Routes::Grpc(routes) => routes.iter().map(fold_route).collect(),
    }
}

fn fold_route<R: ApiRoute>(route: &R) -> FoldedRoute {
    const ROUTE_LABELS: [&str; 4] = ["route_group", "route_kind", "route_namespace", "route_name"];
    let name = match route.metadata().and_then(|m| m.kind.as_ref()) {
        Some(metadata::Kind::Resource(r)) => Some(r.name.clone()),
        _ => None,
    };
    let label = name.as_deref().unwrap_or("default");
    let rules = route
        .rules()
        .iter()
        .filter_map(|rule| {
            let matches = match rule.matches(label) {
                Ok(matches) => matches,
                Err(e) => {
                    tracing::warn!(route = ?name, "ignoring a rule: {e}");
                    return None;
                }
            };
            let backends = rule.backends();
            Some(RuleParts {
                backend_labels: backend_labels(backends.iter().map(|b| b.backend)),
                matches,
                retry: rule.retry(),
                timeouts: rule.timeouts(),
                // Weighted backends (none: the Service itself); one the
                // controller could not resolve answers with its failure.
                backends: backends.iter().filter_map(RuleBackend::fold).collect(),
                filters: rule.filters(),
            })
        })
        .collect();
    (name, metadata_labels(ROUTE_LABELS, route.metadata()), rules)
}

/// What an HTTP route's retries are made on: its status ranges (none: the
/// failed responses).
fn http_retry_on(retry: &http_route::Retry) -> Option<ResponseMatch> {
    let ranges: Vec<ResponseMatch> = retry
        .conditions
        .iter()
        .flat_map(|c| &c.status_ranges)
        .filter_map(|range| {
            Some(ResponseMatch::Status(
                u16::try_from(range.start).ok()?,
                u16::try_from(range.end).ok()?,
            ))
        })
        .collect();
    (!ranges.is_empty()).then_some(ResponseMatch::Any(ranges))
}

/// What a gRPC route's retries are made on: its codes (none: the failed
/// calls).
fn grpc_retry_on(retry: &grpc_route::Retry) -> Option<ResponseMatch> {
    let c = retry.conditions.as_ref()?;
    let codes: Vec<i32> = [
        (c.cancelled, 1),
        (c.deadine_exceeded, 4),
        (c.resource_exhausted, 8),
        (c.internal, 13),
        (c.unavailable, 14),
    ]
    .into_iter()
    .filter_map(|(on, code)| on.then_some(code))
    .collect();
    (!codes.is_empty()).then_some(ResponseMatch::GrpcStatus(codes))
}

/// `profile` with `policy`'s routes (its route resources, or the Service's
/// default route, with its retries and timeouts if it has any, and always
/// Linkerd's route metric labels), when the profile has no ServiceProfile
/// or TrafficSplit of its own and the port is not opaque.
pub fn apply(profile: &Profile, policy: &api::OutboundPolicy) -> Option<Profile> {
    if !profile.routes.is_empty() || !profile.backends.is_empty() || profile.refused.is_some() {
        return None;
    }
    let grpc = matches!(routes(policy), Routes::Grpc(_));
    let routes = route_rules(&routes(policy));
    if routes.is_empty() {
        return None;
    }
    let parent = metadata_labels(
        [
            "parent_group",
            "parent_kind",
            "parent_namespace",
            "parent_name",
            "parent_port",
            "parent_section_name",
        ],
        policy.metadata.as_ref(),
    );
    let mut merged = profile.clone();
    // One profile route per rule (rules are tried in order, as the Gateway
    // API's precedence among one route's rules).
    merged.routes = routes
        .into_iter()
        .flat_map(|(name, route_labels, rules)| {
            let labels: Labels = parent.iter().chain(&route_labels).cloned().collect();
            rules.into_iter().map(move |rule| {
                let timeouts = rule.timeouts.as_ref();
                let (max_retries, retry_timeout, retry_on) = match rule.retry {
                    Some((max, timeout, on)) => (Some(max), timeout, on),
                    None => (None, None, None),
                };
                Route {
                    name: name.clone(),
                    condition: RequestMatch::Any(
                        rule.matches.into_iter().map(RequestMatch::Http).collect(),
                    ),
                    response_classes: Vec::new(),
                    retryable: max_retries.is_some(),
                    retry_on,
                    max_retries,
                    timeout: duration(timeouts.and_then(|t| t.request)),
                    attempt_timeout: retry_timeout
                        .or_else(|| duration(timeouts.and_then(|t| t.response))),
                    backends: rule.backends,
                    filters: rule.filters,
                    policy_labels: Some(Arc::new(PolicyRouteLabels {
                        grpc,
                        route: labels.clone(),
                        backends: rule.backend_labels,
                    })),
                }
            })
        })
        .collect();
    Some(merged)
}

fn duration(d: Option<prost_types::Duration>) -> Option<Duration> {
    d.and_then(|d| Duration::try_from(d).ok())
        .filter(|d| !d.is_zero())
}

/// The authority a backend discovers through the destination service;
/// `None` for a backend the controller could not resolve (a Service that
/// does not exist), which is left out with a warning.
fn discovered(backend: Option<&api::Backend>) -> Option<String> {
    let found = backend.and_then(|b| match b.kind.as_ref()? {
        backend::Kind::Balancer(p2c) => match p2c.discovery.as_ref()?.kind.as_ref()? {
            backend::endpoint_discovery::Kind::Dst(dst) => Some(dst.path.clone()),
        },
        backend::Kind::Forward(_) => None,
    });
    if found.is_none() {
        tracing::warn!("a route backend the controller could not resolve is left out");
    }
    found
}

/// A gRPC rule's filter in the proxy's terms (a failure injector answers
/// its gRPC status in a trailers-only response).
fn grpc_filter(filter: &grpc_route::Filter) -> Option<RouteFilter> {
    use grpc_route::filter::Kind;
    Some(match filter.kind.as_ref()? {
        Kind::RequestHeaderModifier(m) => {
            RouteFilter::RequestHeaders(header_modifier(m.add.as_ref(), m.set.as_ref(), &m.remove))
        }
        Kind::FailureInjector(f) => RouteFilter::GrpcFail(f.code, f.message.clone()),
    })
}

/// A header modification as the API writes it; invalid names or values
/// are left out, with a warning.
fn header_modifier(
    add: Option<&linkerd2_proxy_api::http_types::Headers>,
    set: Option<&linkerd2_proxy_api::http_types::Headers>,
    remove: &[String],
) -> HeaderModifier {
    let pairs = |headers: Option<&linkerd2_proxy_api::http_types::Headers>| {
        headers
            .into_iter()
            .flat_map(|h| &h.headers)
            .filter_map(|h| {
                let parsed = http::HeaderName::from_bytes(h.name.as_bytes())
                    .ok()
                    .zip(http::HeaderValue::from_bytes(&h.value).ok());
                if parsed.is_none() {
                    tracing::warn!(header = %h.name, "ignoring an invalid header of a route filter");
                }
                parsed
            })
            .collect()
    };
    HeaderModifier {
        add: pairs(add),
        set: pairs(set),
        remove: remove
            .iter()
            .filter_map(|n| http::HeaderName::from_bytes(n.as_bytes()).ok())
            .collect(),
    }
}

/// A rule's filter in the proxy's terms.
fn filter(filter: &http_route::Filter) -> Option<RouteFilter> {
    use http_route::filter::Kind;
    use linkerd2_proxy_api::http_route::path_modifier::Replace;
    Some(match filter.kind.as_ref()? {
        Kind::RequestHeaderModifier(m) => {
            RouteFilter::RequestHeaders(header_modifier(m.add.as_ref(), m.set.as_ref(), &m.remove))
        }
        Kind::ResponseHeaderModifier(m) => {
            RouteFilter::ResponseHeaders(header_modifier(m.add.as_ref(), m.set.as_ref(), &m.remove))
        }
        Kind::Redirect(r) => {
            use linkerd2_proxy_api::http_types::scheme::{Registered, Type};
            let scheme = r.scheme.as_ref().and_then(|s| match s.r#type.as_ref()? {
                Type::Registered(code) => Some(
                    if *code == Registered::Https as i32 {
                        "https"
                    } else {
                        "http"
                    }
                    .to_owned(),
                ),
                Type::Unregistered(other) => Some(other.clone()),
            });
            RouteFilter::Redirect(Redirect {
                scheme,
                host: Some(r.host.clone()).filter(|h| !h.is_empty()),
                path: r.path.as_ref().and_then(|p| match p.replace.as_ref()? {
                    Replace::Full(path) => Some(PathRewrite::Full(path.clone())),
                    Replace::Prefix(prefix) => Some(PathRewrite::Prefix(prefix.clone())),
                }),
                port: u16::try_from(r.port).ok().filter(|p| *p != 0),
                status: http::StatusCode::from_u16(u16::try_from(r.status).unwrap_or(302))
                    .ok()
                    .filter(|s| s.is_redirection())
                    .unwrap_or(http::StatusCode::FOUND),
            })
        }
        Kind::FailureInjector(f) => RouteFilter::Fail(
            http::StatusCode::from_u16(u16::try_from(f.status).unwrap_or(500))
                .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR),
            f.message.clone(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy controller's own messages (from a user's Service and
    /// HTTPRoute) fold into routes with their matches, backends, retries,
    /// timeouts and filters; a profile with a ServiceProfile's routes is
    /// left alone.
    #[test]
    fn an_httproute_folds_into_the_profile_unless_it_has_routes() {
        let objects = [
            mesh_test_util::outbound::service("shop", "web", "10.96.0.10", 80),
            serde_json::json!({
                "kind": "HTTPRoute",
                "metadata": {"namespace": "shop", "name": "web-route", "annotations": {
                    "retry.linkerd.io/http": "502-504", "retry.linkerd.io/limit": "3",
                    "retry.linkerd.io/timeout": "300ms", "timeout.linkerd.io/request": "2s"
                }},
                "spec": {
                    "parentRefs": [{"kind": "Service", "name": "web"}],
                    "rules": [{
                        "matches": [{"path": {"value": "/old"}}],
                        "filters": [
                            {"type": "RequestHeaderModifier", "requestHeaderModifier": {"add": [{"name": "x-from", "value": "route"}]}},
                            {"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}
                        ]
                    }]
                }
            }),
        ];
        let message = mesh_test_util::outbound::policy(&objects, "shop", "web", 80);
        let profile = Profile {
            fully_qualified_name: Some("web.shop.svc.cluster.local".into()),
            ..Profile::default()
        };
        let folded = apply(&profile, &message).expect("the route applies");
        let route = &folded.routes[0];
        assert_eq!(route.name.as_deref(), Some("web-route"));
        assert_eq!(route.max_retries, Some(3));
        assert_eq!(route.attempt_timeout, Some(Duration::from_millis(300)));
        assert_eq!(route.timeout, Some(Duration::from_secs(2)));
        assert!(route.retries(http::StatusCode::BAD_GATEWAY, None, true));
        assert!(
            !route.retries(http::StatusCode::INTERNAL_SERVER_ERROR, None, true),
            "500 is outside 502-504"
        );
        let old = http::Request::get("/old/x").body(()).expect("request");
        assert!(route.condition.matches(&(&old).into()));
        assert!(matches!(&route.filters[0], RouteFilter::RequestHeaders(m) if m.add.len() == 1));
        assert!(matches!(
            &route.filters[1],
            RouteFilter::Redirect(r) if r.scheme.as_deref() == Some("https") && r.status == http::StatusCode::MOVED_PERMANENTLY
        ));

        let mut with_profile_routes = profile.clone();
        with_profile_routes.routes = folded.routes.clone();
        assert!(
            apply(&with_profile_routes, &message).is_none(),
            "a ServiceProfile's routes win"
        );
    }

    /// A GRPCRoute folds into routes that match its service and method and
    /// retry on its codes only; a port without routes of its own keeps the
    /// profile as the destination said.
    #[test]
    fn a_grpcroute_folds_into_routes_that_retry_on_its_codes() {
        let objects = [
            mesh_test_util::outbound::service("shop", "api", "10.96.0.20", 9999),
            serde_json::json!({
                "kind": "GRPCRoute",
                "metadata": {"namespace": "shop", "name": "api-grpc", "annotations": {
                    "retry.linkerd.io/grpc": "unavailable", "retry.linkerd.io/limit": "2"
                }},
                "spec": {
                    "parentRefs": [{"kind": "Service", "name": "api"}],
                    "rules": [{"matches": [{"method": {"service": "grpc.health.v1.Health", "method": "Check"}}]}]
                }
            }),
        ];
        let message = mesh_test_util::outbound::policy(&objects, "shop", "api", 9999);
        let folded = apply(&Profile::default(), &message).expect("the route applies");
        let route = &folded.routes[0];
        assert_eq!(route.name.as_deref(), Some("api-grpc"));
        assert_eq!(route.max_retries, Some(2));
        let call = http::Request::post("/grpc.health.v1.Health/Check")
            .body(())
            .expect("request");
        assert!(route.condition.matches(&(&call).into()));
        let other = http::Request::post("/grpc.health.v1.Health/Watch")
            .body(())
            .expect("request");
        assert!(!route.condition.matches(&(&other).into()));
        let ok = http::StatusCode::OK;
        assert!(route.retries(ok, Some(14), true), "UNAVAILABLE is retried");
        assert!(!route.retries(ok, Some(5), true), "NOT_FOUND is not");
        assert!(!route.retries(ok, None, false));
    }

    /// A route backend the controller could not resolve (its Service does
    /// not exist) keeps its weight and answers with the controller's
    /// failure (Linkerd's 500), so a split never silently moves its share;
    /// a backend's own header filters are kept for its attempts.
    #[test]
    fn a_missing_backend_keeps_its_share_and_fails_and_a_backend_keeps_its_filters() {
        let objects = [
            mesh_test_util::outbound::service("shop", "web", "10.96.0.10", 80),
            serde_json::json!({
                "kind": "HTTPRoute",
                "metadata": {"namespace": "shop", "name": "web-route"},
                "spec": {
                    "parentRefs": [{"kind": "Service", "name": "web"}],
                    "rules": [{"backendRefs": [
                        {"name": "web", "port": 80, "weight": 90, "filters": [
                            {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-backend", "value": "web"}]}}
                        ]},
                        {"name": "web-gone", "port": 80, "weight": 10}
                    ]}]
                }
            }),
        ];
        let message = mesh_test_util::outbound::policy(&objects, "shop", "web", 80);
        let folded = apply(&Profile::default(), &message).expect("the route applies");
        let backends = &folded.routes[0].backends;
        assert_eq!(backends.len(), 2);
        assert_eq!(
            (
                backends[0].authority.as_str(),
                backends[0].weight,
                &backends[0].failure
            ),
            ("web.shop.svc.cluster.local:80", 90, &None)
        );
        assert!(
            matches!(&backends[0].filters[..], [RouteFilter::RequestHeaders(m)] if m.set.len() == 1),
            "the backend's own filters: {:?}",
            backends[0].filters
        );
        assert_eq!(backends[1].weight, 10);
        assert!(matches!(
            &backends[1].failure,
            Some(BackendFailure::Http(status, message))
                if *status == http::StatusCode::INTERNAL_SERVER_ERROR && message.contains("web-gone")
        ));
    }
}
