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

use linkerd2_proxy_api::meta::metadata;
use linkerd2_proxy_api::outbound::{self as api, backend, http_route, proxy_protocol};

use super::profile::{Backend, Profile, RequestMatch, ResponseClass, ResponseMatch, Route};
use crate::route_match::RouteMatch;

/// The HTTP routes of `policy` (HTTP/1's, which Linkerd sends the same as
/// HTTP/2's), or none for an opaque port.
fn http_routes(policy: &api::OutboundPolicy) -> &[api::HttpRoute] {
    match policy.protocol.as_ref().and_then(|p| p.kind.as_ref()) {
        Some(proxy_protocol::Kind::Detect(d)) => d.http1.as_ref().map_or(&[], |h| &h.routes),
        Some(proxy_protocol::Kind::Http1(h)) => &h.routes,
        Some(proxy_protocol::Kind::Http2(h)) => &h.routes,
        _ => &[],
    }
}

/// Whether the policy says anything a default profile would not: an
/// HTTPRoute, or retries or timeouts on the Service's default route.
fn has_routing(routes: &[api::HttpRoute]) -> bool {
    routes.iter().any(|route| {
        let resource = matches!(
            route.metadata.as_ref().and_then(|m| m.kind.as_ref()),
            Some(metadata::Kind::Resource(_))
        );
        resource
            || route.rules.iter().any(|rule| {
                rule.retry.is_some()
                    || rule
                        .timeouts
                        .as_ref()
                        .is_some_and(|t| t.request.is_some() || t.response.is_some())
            })
    })
}

/// `profile` with `policy`'s routing, when it has any and the profile has
/// no ServiceProfile or TrafficSplit of its own.
pub fn apply(profile: &Profile, policy: &api::OutboundPolicy) -> Option<Profile> {
    if !profile.routes.is_empty() || !profile.backends.is_empty() || profile.refused.is_some() {
        return None;
    }
    let routes = http_routes(policy);
    if !has_routing(routes) {
        return None;
    }
    let mut merged = profile.clone();
    merged.routes = routes.iter().flat_map(profile_routes).collect();
    Some(merged)
}

fn duration(d: Option<prost_types::Duration>) -> Option<Duration> {
    d.and_then(|d| Duration::try_from(d).ok())
        .filter(|d| !d.is_zero())
}

/// One profile route per rule (rules are tried in order, as the Gateway
/// API's precedence among one route's rules).
fn profile_routes(route: &api::HttpRoute) -> Vec<Route> {
    let name = match route.metadata.as_ref().and_then(|m| m.kind.as_ref()) {
        Some(metadata::Kind::Resource(r)) => Some(r.name.clone()),
        _ => None,
    };
    route
        .rules
        .iter()
        .filter_map(|rule| {
            let matches = rule
                .matches
                .iter()
                .map(|m| RouteMatch::from_http(m, name.as_deref().unwrap_or("default")))
                .collect::<Result<Vec<_>, _>>();
            let matches = match matches {
                Ok(matches) => matches,
                Err(e) => {
                    tracing::warn!(route = ?name, "ignoring a rule: {e}");
                    return None;
                }
            };
            let retry = rule.retry.as_ref();
            let timeouts = rule.timeouts.as_ref();
            Some(Route {
                name: name.clone(),
                condition: RequestMatch::Any(matches.into_iter().map(RequestMatch::Http).collect()),
                response_classes: retry
                    .and_then(|r| r.conditions.as_ref())
                    .into_iter()
                    .flat_map(|c| &c.status_ranges)
                    .filter_map(|range| {
                        Some(ResponseClass {
                            condition: ResponseMatch::Status(
                                u16::try_from(range.start).ok()?,
                                u16::try_from(range.end).ok()?,
                            ),
                            is_failure: true,
                        })
                    })
                    .collect(),
                retryable: retry.is_some(),
                max_retries: retry.map(|r| r.max_retries),
                timeout: duration(timeouts.and_then(|t| t.request)),
                attempt_timeout: duration(retry.and_then(|r| r.timeout))
                    .or_else(|| duration(timeouts.and_then(|t| t.response))),
                backends: backends(rule),
            })
        })
        .collect()
}

/// A rule's weighted backends (none: the Service itself). A backend the
/// controller could not resolve (a Service that does not exist) is left
/// out, with a warning.
fn backends(rule: &http_route::Rule) -> Vec<Backend> {
    let Some(http_route::distribution::Kind::RandomAvailable(random)) =
        rule.backends.as_ref().and_then(|d| d.kind.as_ref())
    else {
        return Vec::new();
    };
    random
        .backends
        .iter()
        .filter_map(|weighted| {
            let discovered = weighted
                .backend
                .as_ref()
                .and_then(|b| b.backend.as_ref())
                .and_then(|b| match b.kind.as_ref()? {
                    backend::Kind::Balancer(p2c) => match p2c.discovery.as_ref()?.kind.as_ref()? {
                        backend::endpoint_discovery::Kind::Dst(dst) => Some(dst.path.clone()),
                    },
                    backend::Kind::Forward(_) => None,
                });
            match discovered {
                Some(authority) => Some(Backend {
                    authority,
                    weight: weighted.weight,
                }),
                None => {
                    tracing::warn!("a route backend the controller could not resolve is left out");
                    None
                }
            }
        })
        .collect()
}
