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

use super::profile::{
    Backend, HeaderModifier, PathRewrite, Profile, Redirect, RequestMatch, ResponseClass,
    ResponseMatch, Route, RouteFilter,
};
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
                filters: rule.filters.iter().filter_map(filter).collect(),
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
            serde_json::json!({
                "kind": "Service",
                "metadata": {"namespace": "shop", "name": "web"},
                "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}
            }),
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
        assert!(route.is_failure(http::StatusCode::BAD_GATEWAY) == Some(true));
        assert_eq!(
            route.is_failure(http::StatusCode::INTERNAL_SERVER_ERROR),
            None
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
}
