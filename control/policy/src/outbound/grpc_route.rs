//! A GRPCRoute as outbound routing: what it adds to an HTTPRoute's model.
//! Its matches name a service and a method (exactly: the proxy API has no
//! regular expressions for them) and headers; its only filter is
//! `RequestHeaderModifier` (what linkerd2-proxy-api's gRPC routes carry);
//! its retries are on gRPC codes (`retry.linkerd.io/grpc`). Timeouts come
//! from Linkerd's annotations only (GRPCRoute has no `timeouts` field).

use std::collections::BTreeMap;

use mesh_api::crds::grpc_route::{GrpcRouteSpec, GrpcRule};

use super::model::{
    Filter, GrpcMatch, Matches, OutboundRouteInfo, OutboundRule, RouteKind, backend_refs, filters,
    route_of,
};
use crate::index::Invalid;
use crate::index::model::invalid;
use crate::routes::value_matches;

/// Validates a GRPCRoute in `namespace` as outbound routing: `None` when
/// no `parentRef` is a Service.
pub fn outbound_grpc_route(
    spec: &GrpcRouteSpec,
    namespace: &str,
    annotations: &BTreeMap<String, String>,
    created: Option<String>,
) -> Result<Option<OutboundRouteInfo>, Invalid> {
    route_of(
        RouteKind::Grpc,
        &spec.parent_refs,
        &spec.rules,
        namespace,
        annotations,
        created,
        |rule, r, timeouts, retry| {
            let field = format!("spec.rules[{r}]");
            let backends = backend_refs(&rule.backend_refs, &field, namespace)?;
            for (b, backend) in backends.iter().enumerate() {
                grpc_filters_only(
                    &backend.filters,
                    &format!("{field}.backendRefs[{b}].filters"),
                )?;
            }
            let filters = filters(&rule.filters, &format!("{field}.filters"))?;
            grpc_filters_only(&filters, &format!("{field}.filters"))?;
            Ok(OutboundRule {
                matches: Matches::Grpc(grpc_matches(rule, &field)?),
                filters,
                backends,
                timeouts,
                retry,
            })
        },
    )
}

/// Refuses filters a gRPC route cannot carry.
fn grpc_filters_only(filters: &[Filter], field: &str) -> Result<(), Invalid> {
    match filters
        .iter()
        .position(|f| !matches!(f, Filter::RequestHeaders(_)))
    {
        None => Ok(()),
        Some(i) => Err(invalid(
            &format!("{field}[{i}].type"),
            "a GRPCRoute's filters may only be RequestHeaderModifier",
        )),
    }
}

/// A rule's matches; a rule without any matches every call (also an
/// inbound GRPCRoute's, see [`crate::index::model::inbound_grpc_route`]).
pub(crate) fn grpc_matches(rule: &GrpcRule, field: &str) -> Result<Vec<GrpcMatch>, Invalid> {
    if rule.matches.is_empty() {
        return Ok(vec![GrpcMatch::default()]);
    }
    rule.matches
        .iter()
        .enumerate()
        .map(|(m, call)| {
            let field = format!("{field}.matches[{m}]");
            let (service, method) = match &call.method {
                None => (None, None),
                Some(method) => {
                    if let Some(other) = method.type_.as_deref().filter(|t| *t != "Exact") {
                        return Err(invalid(
                            &format!("{field}.method.type"),
                            format!("{other:?} is not supported (Exact is)"),
                        ));
                    }
                    let name = |value: &Option<String>, what: &str| match value.as_deref() {
                        Some(v) if v.is_empty() || v.contains('/') => Err(invalid(
                            &format!("{field}.method.{what}"),
                            format!("{v:?} is not a gRPC {what} name"),
                        )),
                        other => Ok(other.map(str::to_owned)),
                    };
                    (
                        name(&method.service, "service")?,
                        name(&method.method, "method")?,
                    )
                }
            };
            let headers = value_matches(&call.headers, &format!("{field}.headers"), |name| {
                http::HeaderName::from_bytes(name.as_bytes()).is_ok()
            })?;
            Ok(GrpcMatch {
                service,
                method,
                headers,
            })
        })
        .collect()
}
