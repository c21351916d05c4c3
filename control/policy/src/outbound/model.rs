//! An HTTPRoute as outbound routing for the Services it names, validated by
//! field: its matches, filters, weighted backends, timeouts and retries
//! (Linkerd's annotations on the route). A route that cannot be used is an
//! [`Invalid`], and the index keeps its last valid version. What GRPCRoutes
//! add (their matches and retry conditions) is in [`super::grpc_route`].

use std::collections::BTreeMap;
use std::time::Duration;

use mesh_api::crds::http_route::{HttpRouteSpec, Rule};
use mesh_api::route_policy::{self, GrpcRetryCondition, Retry, StatusRange};
use serde_json::Value;

use crate::index::Invalid;
use crate::index::model::invalid;
use crate::routes::{RouteMatch, ValueMatch, rule_matches};

/// The kind of a route, which decides how its calls are matched and
/// retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteKind {
    /// An HTTPRoute.
    Http,
    /// A GRPCRoute.
    Grpc,
}

impl RouteKind {
    /// The kind as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "HTTPRoute",
            Self::Grpc => "GRPCRoute",
        }
    }
}

/// One way a gRPC call matches a rule: every part set must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GrpcMatch {
    /// The fully qualified service (none: any).
    pub service: Option<String>,
    /// The method (none: any).
    pub method: Option<String>,
    /// Headers, by name.
    pub headers: Vec<(String, ValueMatch)>,
}

impl std::fmt::Display for GrpcMatch {
    /// `grpc.health.v1.Health/Check`, `*/* header x-team=ops`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}",
            self.service.as_deref().unwrap_or("*"),
            self.method.as_deref().unwrap_or("*")
        )?;
        for (name, value) in &self.headers {
            match value {
                ValueMatch::Exact(v) => write!(f, " header {name}={v}")?,
                ValueMatch::Regex(r) => write!(f, " header {name}~{r}")?,
            }
        }
        Ok(())
    }
}

/// A rule's matches (any of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matches {
    /// An HTTPRoute's.
    Http(Vec<RouteMatch>),
    /// A GRPCRoute's.
    Grpc(Vec<GrpcMatch>),
}

/// How a rule retries: on HTTP statuses or on gRPC codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteRetry {
    /// `retry.linkerd.io/http`.
    Http(Retry<StatusRange>),
    /// `retry.linkerd.io/grpc`.
    Grpc(Retry<GrpcRetryCondition>),
}

/// A Service port a route attaches to (`None`: every port).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Parent {
    /// The Service's namespace: the route's own (a producer route) or
    /// another (a consumer route, which applies only to clients in the
    /// route's namespace).
    pub namespace: String,
    /// The Service's name.
    pub service: String,
    /// Its port, when the parentRef names one.
    pub port: Option<u16>,
}

/// A header modification.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderModifier {
    /// Headers added (kept with earlier values).
    pub add: Vec<(String, String)>,
    /// Headers set (replacing earlier values).
    pub set: Vec<(String, String)>,
    /// Headers removed.
    pub remove: Vec<String>,
}

/// How a redirect rewrites the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRewrite {
    /// The whole path.
    Full(String),
    /// The part the rule's prefix matched.
    Prefix(String),
}

/// A redirect answered by the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Redirect {
    /// `http` or `https`.
    pub scheme: Option<String>,
    /// The host.
    pub hostname: Option<String>,
    /// The path.
    pub path: Option<PathRewrite>,
    /// The port.
    pub port: Option<u16>,
    /// 301 or 302 (default 302).
    pub status: u16,
}

/// A route filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// `RequestHeaderModifier`.
    RequestHeaders(HeaderModifier),
    /// `ResponseHeaderModifier`.
    ResponseHeaders(HeaderModifier),
    /// `RequestRedirect`.
    Redirect(Redirect),
}

/// A backend a rule sends to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendRef {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// Its port (default: the parent's).
    pub port: Option<u16>,
    /// Its share (default 1).
    pub weight: u32,
    /// Filters for requests to it.
    pub filters: Vec<Filter>,
}

/// One rule of an outbound route.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundRule {
    /// Its matches (any).
    pub matches: Matches,
    /// Its filters.
    pub filters: Vec<Filter>,
    /// Its backends (none: the parent Service).
    pub backends: Vec<BackendRef>,
    /// Its timeouts: the annotations', else `timeouts.request` and
    /// `timeouts.backendRequest` (as the response timeout).
    pub timeouts: route_policy::Timeouts,
    /// Its retries, from the route's annotations.
    pub retry: Option<RouteRetry>,
}

/// An HTTPRoute or GRPCRoute as outbound routing.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundRouteInfo {
    /// Its kind.
    pub kind: RouteKind,
    /// The Service ports it attaches to.
    pub parents: Vec<Parent>,
    /// Its rules, in order.
    pub rules: Vec<OutboundRule>,
    /// When it was created (older routes win ties, as the Gateway API says).
    pub created: Option<String>,
    /// The `metadata.generation` it was read at (its status conditions'
    /// `observedGeneration`).
    pub generation: Option<i64>,
}

fn is_service(group: Option<&str>, kind: Option<&str>) -> bool {
    matches!(group, None | Some("") | Some("core")) && kind.unwrap_or("Service") == "Service"
}

/// The Services a route of `namespace` names in its `parentRefs`: of its
/// own namespace by default, or of the namespace a parentRef names.
pub fn service_parents(
    parent_refs: &[mesh_api::crds::http_route::ParentRef],
    namespace: &str,
) -> Vec<Parent> {
    parent_refs
        .iter()
        .filter(|p| {
            p.kind.as_deref() == Some("Service")
                && is_service(p.group.as_deref(), p.kind.as_deref())
        })
        .map(|p| Parent {
            namespace: p
                .namespace
                .clone()
                .filter(|ns| !ns.is_empty())
                .unwrap_or_else(|| namespace.to_owned()),
            service: p.name.clone(),
            port: p.port,
        })
        .collect()
}

/// A bad route annotation, named as a field.
pub(super) fn bad_annotation(e: route_policy::BadAnnotation) -> Invalid {
    invalid(&format!("metadata.annotations[{}]", e.key), e.reason)
}

/// A route of `kind` as outbound routing: `None` when no `parentRef` is a
/// Service; else its rules, each built by `rule` from the
/// route's annotated timeouts and retries.
pub(super) fn route_of<R>(
    kind: RouteKind,
    parent_refs: &[mesh_api::crds::http_route::ParentRef],
    rules: &[R],
    namespace: &str,
    annotations: &BTreeMap<String, String>,
    created: Option<String>,
    rule: impl Fn(
        &R,
        usize,
        route_policy::Timeouts,
        Option<RouteRetry>,
    ) -> Result<OutboundRule, Invalid>,
) -> Result<Option<OutboundRouteInfo>, Invalid> {
    let parents = service_parents(parent_refs, namespace);
    if parents.is_empty() {
        return Ok(None);
    }
    let timeouts = route_policy::timeouts(annotations).map_err(bad_annotation)?;
    let retry = match kind {
        RouteKind::Http => route_policy::http_retry(annotations)
            .map_err(bad_annotation)?
            .map(RouteRetry::Http),
        RouteKind::Grpc => route_policy::grpc_retry(annotations)
            .map_err(bad_annotation)?
            .map(RouteRetry::Grpc),
    };
    let rules = rules
        .iter()
        .enumerate()
        .map(|(r, each)| rule(each, r, timeouts, retry.clone()))
        .collect::<Result<_, _>>()?;
    Ok(Some(OutboundRouteInfo {
        kind,
        parents,
        rules,
        created,
        generation: None,
    }))
}

/// Validates an HTTPRoute in `namespace` as outbound routing: `None` when
/// no `parentRef` is a Service.
pub fn outbound_route(
    spec: &HttpRouteSpec,
    namespace: &str,
    annotations: &BTreeMap<String, String>,
    created: Option<String>,
) -> Result<Option<OutboundRouteInfo>, Invalid> {
    route_of(
        RouteKind::Http,
        &spec.parent_refs,
        &spec.rules,
        namespace,
        annotations,
        created,
        |rule, r, annotated, retry| outbound_rule(rule, r, namespace, annotated, retry),
    )
}

fn outbound_rule(
    rule: &Rule,
    r: usize,
    namespace: &str,
    annotated: route_policy::Timeouts,
    retry: Option<RouteRetry>,
) -> Result<OutboundRule, Invalid> {
    let field = format!("spec.rules[{r}]");
    let matches = Matches::Http(rule_matches(rule, r)?);
    let filters = filters(&rule.filters, &format!("{field}.filters"))?;
    let backends = backend_refs(&rule.backend_refs, &field, namespace)?;
    let spec_timeout = |value: Option<&String>, what: &str| {
        value
            .map(|v| {
                route_policy::parse_duration(what, v)
                    .map_err(|e| invalid(&format!("{field}.timeouts.{what}"), e.reason))
            })
            .transpose()
            // Zero means no timeout (GEP-1742).
            .map(|d| d.filter(|d: &Duration| !d.is_zero()))
    };
    let timeouts = rule.timeouts.as_ref();
    let request = spec_timeout(timeouts.and_then(|t| t.request.as_ref()), "request")?;
    let backend = spec_timeout(
        timeouts.and_then(|t| t.backend_request.as_ref()),
        "backendRequest",
    )?;
    Ok(OutboundRule {
        matches,
        filters,
        backends,
        timeouts: route_policy::Timeouts {
            request: annotated.request.or(request),
            response: annotated.response.or(backend),
            idle: annotated.idle,
        },
        retry,
    })
}

/// A rule's `backendRefs`, each validated.
pub(super) fn backend_refs(
    list: &[Value],
    rule_field: &str,
    namespace: &str,
) -> Result<Vec<BackendRef>, Invalid> {
    list.iter()
        .enumerate()
        .map(|(b, backend)| {
            backend_ref(
                backend,
                &format!("{rule_field}.backendRefs[{b}]"),
                namespace,
            )
        })
        .collect()
}

fn backend_ref(value: &Value, field: &str, namespace: &str) -> Result<BackendRef, Invalid> {
    let text = |key: &str| value.get(key).and_then(Value::as_str);
    if !is_service(text("group"), text("kind")) {
        return Err(invalid(
            &format!("{field}.kind"),
            format!(
                "{}/{} is not a Service",
                text("group").unwrap_or("core"),
                text("kind").unwrap_or_default()
            ),
        ));
    }
    let name = text("name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid(&format!("{field}.name"), "a backend needs a name"))?;
    let number =
        |key: &str, max: u64| -> Result<Option<u64>, Invalid> {
            match value.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_u64().filter(|n| *n <= max).map(Some).ok_or_else(|| {
                    invalid(&format!("{field}.{key}"), format!("{v} is out of range"))
                }),
            }
        };
    let port = number("port", u64::from(u16::MAX))?.map(|p| p as u16);
    let weight = number("weight", 1_000_000)?.map_or(1, |w| w as u32);
    let filters = match value.get("filters") {
        Some(Value::Array(list)) => filters(list, &format!("{field}.filters"))?,
        _ => Vec::new(),
    };
    // A redirect answers the request: it has no meaning for one backend
    // of a split.
    if let Some(i) = filters
        .iter()
        .position(|f| matches!(f, Filter::Redirect(_)))
    {
        return Err(invalid(
            &format!("{field}.filters[{i}].type"),
            "a backendRef's filters may only modify headers (RequestHeaderModifier, ResponseHeaderModifier)",
        ));
    }
    Ok(BackendRef {
        namespace: text("namespace").unwrap_or(namespace).to_owned(),
        name: name.to_owned(),
        port,
        weight,
        filters,
    })
}

/// A rule's or backend's filters; kinds the proxy cannot apply
/// (`RequestMirror`, `URLRewrite`, `ExtensionRef`) are refused by field.
pub(super) fn filters(list: &[Value], field: &str) -> Result<Vec<Filter>, Invalid> {
    list.iter()
        .enumerate()
        .map(|(i, filter)| {
            let field = format!("{field}[{i}]");
            match filter.get("type").and_then(Value::as_str) {
                Some("RequestHeaderModifier") => header_modifier(
                    filter.get("requestHeaderModifier"),
                    &format!("{field}.requestHeaderModifier"),
                )
                .map(Filter::RequestHeaders),
                Some("ResponseHeaderModifier") => header_modifier(
                    filter.get("responseHeaderModifier"),
                    &format!("{field}.responseHeaderModifier"),
                )
                .map(Filter::ResponseHeaders),
                Some("RequestRedirect") => redirect(
                    filter.get("requestRedirect"),
                    &format!("{field}.requestRedirect"),
                )
                .map(Filter::Redirect),
                other => Err(invalid(
                    &format!("{field}.type"),
                    format!(
                        "{} is not supported (RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect are)",
                        other.unwrap_or("a filter without a type")
                    ),
                )),
            }
        })
        .collect()
}

fn header_modifier(value: Option<&Value>, field: &str) -> Result<HeaderModifier, Invalid> {
    let value = value.ok_or_else(|| invalid(field, "missing"))?;
    let pairs = |key: &str| -> Result<Vec<(String, String)>, Invalid> {
        value
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, header)| {
                let name = header
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    invalid(
                        &format!("{field}.{key}[{i}].name"),
                        format!("{name:?} is not a header name"),
                    )
                })?;
                let value = header
                    .get("value")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                http::HeaderValue::from_str(value).map_err(|_| {
                    invalid(&format!("{field}.{key}[{i}].value"), "not a header value")
                })?;
                Ok((name.to_ascii_lowercase(), value.to_owned()))
            })
            .collect()
    };
    let remove = value
        .get("remove")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_ascii_lowercase)
        .collect();
    Ok(HeaderModifier {
        add: pairs("add")?,
        set: pairs("set")?,
        remove,
    })
}

fn redirect(value: Option<&Value>, field: &str) -> Result<Redirect, Invalid> {
    let value = value.ok_or_else(|| invalid(field, "missing"))?;
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    let scheme = text("scheme");
    if let Some(s) = scheme.as_deref().filter(|s| *s != "http" && *s != "https") {
        return Err(invalid(
            &format!("{field}.scheme"),
            format!("{s:?} is not http or https"),
        ));
    }
    let status = match value.get("statusCode").and_then(Value::as_u64) {
        None => 302,
        Some(code @ (301 | 302)) => code as u16,
        Some(code) => {
            return Err(invalid(
                &format!("{field}.statusCode"),
                format!("{code} is not 301 or 302"),
            ));
        }
    };
    let path = match value.get("path") {
        None => None,
        Some(path) => Some(match path.get("type").and_then(Value::as_str) {
            Some("ReplaceFullPath") => PathRewrite::Full(
                path.get("replaceFullPath")
                    .and_then(Value::as_str)
                    .unwrap_or("/")
                    .into(),
            ),
            Some("ReplacePrefixMatch") => PathRewrite::Prefix(
                path.get("replacePrefixMatch")
                    .and_then(Value::as_str)
                    .unwrap_or("/")
                    .into(),
            ),
            other => {
                return Err(invalid(
                    &format!("{field}.path.type"),
                    format!("{other:?} is not ReplaceFullPath or ReplacePrefixMatch"),
                ));
            }
        }),
    };
    let port = match value.get("port") {
        None | Some(Value::Null) => None,
        Some(p) => Some(
            p.as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| invalid(&format!("{field}.port"), format!("{p} is not a port")))?,
        ),
    };
    Ok(Redirect {
        scheme,
        hostname: text("hostname"),
        path,
        port,
        status,
    })
}
