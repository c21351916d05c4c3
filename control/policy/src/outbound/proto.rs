//! An [`OutboundPolicy`] as linkerd2-proxy-api's `outbound.OutboundPolicy`,
//! in the shape Linkerd's policy controller sends (so a stock linkerd2-proxy
//! routes the same way): a detecting Service port carries its HTTP routes
//! for HTTP/1 and HTTP/2 and a default opaque route, and a port with
//! GRPCRoutes carries them as the gRPC protocol (no detection); each backend is a
//! peak-EWMA balancer discovering through the destination service's `Get`
//! with a queue of 100 and a 3 s fail-fast; a missing backend Service is a
//! failure injector (HTTP 500, gRPC `INTERNAL`); retries allow 64 KiB bodies with Linkerd's
//! backoff.

use std::time::Duration;

use linkerd2_proxy_api::http_route as routes;
use linkerd2_proxy_api::http_types;
use linkerd2_proxy_api::meta::{Metadata, Resource, metadata};
use linkerd2_proxy_api::outbound::{
    self as api, backend, grpc_route, http_route, opaque_route, proxy_protocol,
};
use mesh_api::route_policy::{
    ConsecutiveFailures, GrpcRetryCondition, Retry, StatusRange, Timeouts,
};

use super::model::{Filter, HeaderModifier, Matches, PathRewrite, Redirect, RouteKind, RouteRetry};
use super::{AppProtocol, OutboundPolicy, ResolvedBackend, ResolvedRoute, ResolvedRule};
use crate::proto::route_match;

/// How long detection waits on a port (Linkerd's 10 s).
const DETECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests a backend queues before pushing back.
const QUEUE_CAPACITY: u32 = 100;
/// How long a backend may stay unready before its queue fails.
const FAILFAST: Duration = Duration::from_secs(3);
/// The balancer's first latency estimate.
const DEFAULT_RTT: Duration = Duration::from_millis(30);
/// The balancer's latency decay.
const RTT_DECAY: Duration = Duration::from_secs(10);
/// The largest request body a retry keeps.
pub const MAX_RETRY_BODY: u32 = 64 * 1024;

fn duration(d: Duration) -> Option<prost_types::Duration> {
    prost_types::Duration::try_from(d).ok()
}

/// `policy` as the API's message.
pub fn policy(policy: &OutboundPolicy) -> api::OutboundPolicy {
    let parent = service_backend(
        &policy.namespace,
        &policy.name,
        policy.port,
        &policy.authority,
    );
    let opaque = proxy_protocol::Opaque {
        routes: vec![default_opaque_route(parent.clone())],
    };
    let accrual = policy.accrual.map(failure_accrual);
    let grpc = policy
        .routes
        .first()
        .is_some_and(|r| r.kind == RouteKind::Grpc);
    let routes = if policy.routes.is_empty() {
        vec![default_http_route(parent.clone(), policy)]
    } else {
        policy
            .routes
            .iter()
            .map(|route| http_route(route_metadata(route), &route.rules, &parent))
            .collect()
    };
    let kind = match policy.protocol {
        AppProtocol::Opaque => proxy_protocol::Kind::Opaque(opaque),
        AppProtocol::Detect | AppProtocol::Http2 if grpc => {
            proxy_protocol::Kind::Grpc(proxy_protocol::Grpc {
                routes: policy
                    .routes
                    .iter()
                    .map(|route| api::GrpcRoute {
                        metadata: Some(route_metadata(route)),
                        hosts: Vec::new(),
                        rules: route.rules.iter().map(|r| grpc_rule(r, &parent)).collect(),
                    })
                    .collect(),
                failure_accrual: accrual,
            })
        }
        AppProtocol::Http1 => proxy_protocol::Kind::Http1(proxy_protocol::Http1 {
            routes,
            failure_accrual: accrual,
        }),
        AppProtocol::Http2 => proxy_protocol::Kind::Http2(proxy_protocol::Http2 {
            routes,
            failure_accrual: accrual,
        }),
        AppProtocol::Detect => proxy_protocol::Kind::Detect(proxy_protocol::Detect {
            timeout: duration(DETECT_TIMEOUT),
            opaque: Some(opaque),
            http1: Some(proxy_protocol::Http1 {
                routes: routes.clone(),
                failure_accrual: accrual,
            }),
            http2: Some(proxy_protocol::Http2 {
                routes,
                failure_accrual: accrual,
            }),
        }),
    };
    api::OutboundPolicy {
        protocol: Some(api::ProxyProtocol { kind: Some(kind) }),
        metadata: Some(service_metadata(
            &policy.namespace,
            &policy.name,
            policy.port,
        )),
    }
}

fn route_metadata(route: &ResolvedRoute) -> Metadata {
    Metadata {
        kind: Some(metadata::Kind::Resource(Resource {
            group: route.key.group.clone(),
            kind: route.kind.as_str().into(),
            name: route.key.name.clone(),
            namespace: route.namespace.clone(),
            ..Resource::default()
        })),
    }
}

fn service_metadata(namespace: &str, name: &str, port: u16) -> Metadata {
    Metadata {
        kind: Some(metadata::Kind::Resource(Resource {
            group: "core".into(),
            kind: "Service".into(),
            name: name.into(),
            namespace: namespace.into(),
            port: u32::from(port),
            ..Resource::default()
        })),
    }
}

fn service_backend(namespace: &str, name: &str, port: u16, authority: &str) -> api::Backend {
    use backend::balance_p2c::{Load, PeakEwma};
    use backend::endpoint_discovery::{DestinationGet, Kind as Discovery};
    api::Backend {
        metadata: Some(service_metadata(namespace, name, port)),
        queue: Some(api::Queue {
            capacity: QUEUE_CAPACITY,
            failfast_timeout: duration(FAILFAST),
        }),
        kind: Some(backend::Kind::Balancer(backend::BalanceP2c {
            discovery: Some(backend::EndpointDiscovery {
                kind: Some(Discovery::Dst(DestinationGet {
                    path: authority.into(),
                })),
            }),
            load: Some(Load::PeakEwma(PeakEwma {
                default_rtt: duration(DEFAULT_RTT),
                decay: duration(RTT_DECAY),
            })),
        })),
    }
}

fn default_opaque_route(parent: api::Backend) -> api::OpaqueRoute {
    api::OpaqueRoute {
        metadata: Some(Metadata {
            kind: Some(metadata::Kind::Default("opaq".into())),
        }),
        rules: vec![opaque_route::Rule {
            backends: Some(opaque_route::Distribution {
                kind: Some(opaque_route::distribution::Kind::FirstAvailable(
                    opaque_route::distribution::FirstAvailable {
                        backends: vec![opaque_route::RouteBackend {
                            backend: Some(parent),
                            filters: Vec::new(),
                        }],
                    },
                )),
            }),
            filters: Vec::new(),
        }],
    }
}

/// The route a Service without HTTPRoutes has: every request to itself,
/// with its annotations' retries and timeouts.
fn default_http_route(parent: api::Backend, policy: &OutboundPolicy) -> api::HttpRoute {
    let rule = policy.default_rule();
    http_route(
        Metadata {
            kind: Some(metadata::Kind::Default("http".into())),
        },
        std::slice::from_ref(&rule),
        &parent,
    )
}

fn http_route(metadata: Metadata, rules: &[ResolvedRule], parent: &api::Backend) -> api::HttpRoute {
    api::HttpRoute {
        metadata: Some(metadata),
        hosts: Vec::new(),
        rules: rules.iter().map(|rule| http_rule(rule, parent)).collect(),
    }
}

#[allow(deprecated)]
fn http_rule(rule: &ResolvedRule, parent: &api::Backend) -> http_route::Rule {
    use http_route::distribution::{FirstAvailable, Kind, RandomAvailable};
    let backends = if rule.backends.is_empty() {
        Kind::FirstAvailable(FirstAvailable {
            backends: vec![http_route::RouteBackend {
                backend: Some(parent.clone()),
                filters: Vec::new(),
                request_timeout: None,
            }],
        })
    } else {
        Kind::RandomAvailable(RandomAvailable {
            backends: rule.backends.iter().map(weighted_backend).collect(),
        })
    };
    let http_matches = match &rule.matches {
        Matches::Http(matches) => matches.iter().map(route_match).collect(),
        Matches::Grpc(_) => Vec::new(),
    };
    http_route::Rule {
        matches: http_matches,
        filters: rule.filters.iter().map(filter).collect(),
        backends: Some(http_route::Distribution {
            kind: Some(backends),
        }),
        request_timeout: rule.timeouts.request.and_then(duration),
        timeouts: Some(timeouts(&rule.timeouts)),
        retry: match &rule.retry {
            Some(RouteRetry::Http(r)) => Some(retry(r)),
            _ => None,
        },
        allow_l5d_request_headers: false,
    }
}

#[allow(deprecated)]
fn grpc_rule(rule: &ResolvedRule, parent: &api::Backend) -> grpc_route::Rule {
    use grpc_route::distribution::{FirstAvailable, Kind, RandomAvailable};
    let backends = if rule.backends.is_empty() {
        Kind::FirstAvailable(FirstAvailable {
            backends: vec![grpc_route::RouteBackend {
                backend: Some(parent.clone()),
                filters: Vec::new(),
                request_timeout: None,
            }],
        })
    } else {
        Kind::RandomAvailable(RandomAvailable {
            backends: rule
                .backends
                .iter()
                .map(|backend| {
                    let (api_backend, missing) = route_backend(backend);
                    let filters = match missing {
                        Some(message) => vec![grpc_route::Filter {
                            kind: Some(grpc_route::filter::Kind::FailureInjector(
                                linkerd2_proxy_api::grpc_route::GrpcFailureInjector {
                                    code: GRPC_INTERNAL,
                                    message,
                                    ratio: None,
                                },
                            )),
                        }],
                        None => backend
                            .backend
                            .filters
                            .iter()
                            .filter_map(grpc_filter)
                            .collect(),
                    };
                    grpc_route::WeightedRouteBackend {
                        backend: Some(grpc_route::RouteBackend {
                            backend: Some(api_backend),
                            filters,
                            request_timeout: None,
                        }),
                        weight: backend.backend.weight,
                    }
                })
                .collect(),
        })
    };
    let grpc_matches = match &rule.matches {
        Matches::Grpc(matches) => matches.iter().map(crate::proto::grpc_route_match).collect(),
        Matches::Http(_) => Vec::new(),
    };
    grpc_route::Rule {
        matches: grpc_matches,
        filters: rule.filters.iter().filter_map(grpc_filter).collect(),
        backends: Some(grpc_route::Distribution {
            kind: Some(backends),
        }),
        request_timeout: rule.timeouts.request.and_then(duration),
        timeouts: Some(timeouts(&rule.timeouts)),
        retry: match &rule.retry {
            Some(RouteRetry::Grpc(r)) => Some(grpc_retry(r)),
            _ => None,
        },
        allow_l5d_request_headers: false,
    }
}

/// The gRPC status a missing backend Service answers with (`INTERNAL`).
const GRPC_INTERNAL: u32 = 13;

/// A rule backend's API message, and why requests to it fail when its
/// Service does not exist (the caller adds its kind of failure injector).
fn route_backend(backend: &ResolvedBackend) -> (api::Backend, Option<String>) {
    let reference = &backend.backend;
    match &backend.authority {
        Some(authority) => (
            service_backend(
                &reference.namespace,
                &reference.name,
                backend.port,
                authority,
            ),
            None,
        ),
        None => (
            api::Backend {
                metadata: Some(service_metadata(
                    &reference.namespace,
                    &reference.name,
                    backend.port,
                )),
                queue: Some(api::Queue {
                    capacity: QUEUE_CAPACITY,
                    failfast_timeout: duration(FAILFAST),
                }),
                kind: None,
            },
            Some(format!("Service not found {}", reference.name)),
        ),
    }
}

#[allow(deprecated)]
fn weighted_backend(backend: &ResolvedBackend) -> http_route::WeightedRouteBackend {
    let (api_backend, missing) = route_backend(backend);
    let filters = match missing {
        Some(message) => vec![http_route::Filter {
            kind: Some(http_route::filter::Kind::FailureInjector(
                routes::HttpFailureInjector {
                    status: 500,
                    message,
                    ratio: None,
                },
            )),
        }],
        None => backend.backend.filters.iter().map(filter).collect(),
    };
    http_route::WeightedRouteBackend {
        backend: Some(http_route::RouteBackend {
            backend: Some(api_backend),
            filters,
            request_timeout: None,
        }),
        weight: backend.backend.weight,
    }
}

fn timeouts(t: &Timeouts) -> routes::Timeouts {
    routes::Timeouts {
        response: t.response.and_then(duration),
        request: t.request.and_then(duration),
        idle: t.idle.and_then(duration),
    }
}

/// Linkerd's retry backoff: 25 ms to 250 ms, full jitter.
fn retry_backoff() -> Option<api::ExponentialBackoff> {
    Some(api::ExponentialBackoff {
        min_backoff: duration(Duration::from_millis(25)),
        max_backoff: duration(Duration::from_millis(250)),
        jitter_ratio: 1.0,
        ..api::ExponentialBackoff::default()
    })
}

fn grpc_retry(r: &Retry<GrpcRetryCondition>) -> grpc_route::Retry {
    let mut conditions = grpc_route::retry::Conditions::default();
    for condition in r.conditions.iter().flatten() {
        match condition {
            GrpcRetryCondition::Cancelled => conditions.cancelled = true,
            GrpcRetryCondition::DeadlineExceeded => conditions.deadine_exceeded = true,
            GrpcRetryCondition::ResourceExhausted => conditions.resource_exhausted = true,
            GrpcRetryCondition::Internal => conditions.internal = true,
            GrpcRetryCondition::Unavailable => conditions.unavailable = true,
        }
    }
    grpc_route::Retry {
        max_retries: r.limit,
        max_request_bytes: MAX_RETRY_BODY,
        conditions: Some(conditions),
        timeout: r.timeout.and_then(duration),
        backoff: retry_backoff(),
    }
}

fn retry(r: &Retry<StatusRange>) -> http_route::Retry {
    use http_route::retry::{Conditions, conditions::StatusRange as Range};
    http_route::Retry {
        max_retries: r.limit,
        max_request_bytes: MAX_RETRY_BODY,
        conditions: Some(Conditions {
            status_ranges: r
                .conditions
                .iter()
                .flatten()
                .map(|range| Range {
                    start: u32::from(range.start),
                    end: u32::from(range.end),
                })
                .collect(),
        }),
        timeout: r.timeout.and_then(duration),
        backoff: retry_backoff(),
    }
}

fn failure_accrual(accrual: ConsecutiveFailures) -> api::FailureAccrual {
    use api::failure_accrual::{ConsecutiveFailures as Consecutive, Kind};
    api::FailureAccrual {
        kind: Some(Kind::ConsecutiveFailures(Consecutive {
            max_failures: accrual.max_failures,
            backoff: Some(api::ExponentialBackoff {
                min_backoff: duration(accrual.min_penalty),
                max_backoff: duration(accrual.max_penalty),
                jitter_ratio: accrual.jitter,
                ..api::ExponentialBackoff::default()
            }),
        })),
        ejection: None,
    }
}

fn headers(pairs: &[(String, String)]) -> Option<http_types::Headers> {
    (!pairs.is_empty()).then(|| http_types::Headers {
        headers: pairs
            .iter()
            .map(|(name, value)| http_types::headers::Header {
                name: name.clone(),
                value: value.clone().into_bytes(),
            })
            .collect(),
    })
}

fn filter(filter: &Filter) -> http_route::Filter {
    use http_route::filter::Kind;
    let modifier = |m: &HeaderModifier| (headers(&m.add), headers(&m.set), m.remove.clone());
    let kind = match filter {
        Filter::RequestHeaders(m) => {
            let (add, set, remove) = modifier(m);
            Kind::RequestHeaderModifier(routes::RequestHeaderModifier { add, set, remove })
        }
        Filter::ResponseHeaders(m) => {
            let (add, set, remove) = modifier(m);
            Kind::ResponseHeaderModifier(routes::ResponseHeaderModifier { add, set, remove })
        }
        Filter::Redirect(r) => Kind::Redirect(redirect(r)),
    };
    http_route::Filter { kind: Some(kind) }
}

/// A filter as a gRPC route carries it (request header modifiers only;
/// the model refuses the others on GRPCRoutes).
fn grpc_filter(filter: &Filter) -> Option<grpc_route::Filter> {
    let Filter::RequestHeaders(m) = filter else {
        return None;
    };
    Some(grpc_route::Filter {
        kind: Some(grpc_route::filter::Kind::RequestHeaderModifier(
            routes::RequestHeaderModifier {
                add: headers(&m.add),
                set: headers(&m.set),
                remove: m.remove.clone(),
            },
        )),
    })
}

fn redirect(r: &Redirect) -> routes::RequestRedirect {
    use routes::path_modifier::Replace;
    let scheme = r.scheme.as_deref().map(|s| {
        let registered = if s == "https" {
            http_types::scheme::Registered::Https
        } else {
            http_types::scheme::Registered::Http
        };
        http_types::Scheme {
            r#type: Some(http_types::scheme::Type::Registered(registered.into())),
        }
    });
    routes::RequestRedirect {
        scheme,
        host: r.hostname.clone().unwrap_or_default(),
        path: r.path.as_ref().map(|p| routes::PathModifier {
            replace: Some(match p {
                PathRewrite::Full(path) => Replace::Full(path.clone()),
                PathRewrite::Prefix(prefix) => Replace::Prefix(prefix.clone()),
            }),
        }),
        port: r.port.map_or(0, u32::from),
        status: u32::from(r.status),
    }
}

/// The authorities a policy message's HTTP backends discover through the
/// destination service, route by route (tests and diagnostics read them).
pub fn backend_authorities(message: &api::OutboundPolicy) -> Vec<String> {
    let mut found = Vec::new();
    let mut visit = |backend: &Option<api::Backend>| {
        if let Some(api::Backend {
            kind: Some(backend::Kind::Balancer(b)),
            ..
        }) = backend
            && let Some(backend::EndpointDiscovery {
                kind: Some(backend::endpoint_discovery::Kind::Dst(dst)),
            }) = &b.discovery
        {
            found.push(dst.path.clone());
        }
    };
    let routes: Vec<&api::HttpRoute> = match message.protocol.as_ref().and_then(|p| p.kind.as_ref())
    {
        Some(proxy_protocol::Kind::Detect(d)) => {
            d.http1.iter().flat_map(|h| h.routes.iter()).collect()
        }
        Some(proxy_protocol::Kind::Http1(h)) => h.routes.iter().collect(),
        Some(proxy_protocol::Kind::Http2(h)) => h.routes.iter().collect(),
        _ => Vec::new(),
    };
    for route in routes {
        for rule in &route.rules {
            match rule.backends.as_ref().and_then(|d| d.kind.as_ref()) {
                Some(http_route::distribution::Kind::FirstAvailable(f)) => {
                    f.backends.iter().for_each(|b| visit(&b.backend));
                }
                Some(http_route::distribution::Kind::RandomAvailable(r)) => r
                    .backends
                    .iter()
                    .filter_map(|w| w.backend.as_ref())
                    .for_each(|b| visit(&b.backend)),
                _ => {}
            }
        }
    }
    if let Some(proxy_protocol::Kind::Grpc(g)) =
        message.protocol.as_ref().and_then(|p| p.kind.as_ref())
    {
        for rule in g.routes.iter().flat_map(|r| &r.rules) {
            match rule.backends.as_ref().and_then(|d| d.kind.as_ref()) {
                Some(grpc_route::distribution::Kind::FirstAvailable(f)) => {
                    f.backends.iter().for_each(|b| visit(&b.backend));
                }
                Some(grpc_route::distribution::Kind::RandomAvailable(r)) => r
                    .backends
                    .iter()
                    .filter_map(|w| w.backend.as_ref())
                    .for_each(|b| visit(&b.backend)),
                _ => {}
            }
        }
    }
    found
}
