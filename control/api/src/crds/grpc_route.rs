//! GRPCRoute (`gateway.networking.k8s.io`, stored as `v1`, `v1alpha2`
//! served too): routes for gRPC calls to a Service, matched by service,
//! method and headers, with weighted `backendRefs` and Linkerd's
//! `retry.linkerd.io/grpc` and `timeout.linkerd.io/*` annotations. Filters
//! and backends are kept as written (the policy controller validates them
//! by field); unknown fields are preserved by the API server.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::http_route::{ParentRef, RouteStatus, ValueMatch};

/// The spec of a GRPCRoute.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "GRPCRoute",
    root = "GrpcRoute",
    plural = "grpcroutes",
    status = "RouteStatus",
    namespaced
)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteSpec {
    /// What the route attaches to (for mesh: Services).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parent_refs: Vec<ParentRef>,
    /// Host names (unused for Service parents).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// The rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<GrpcRule>,
}

/// A rule.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRule {
    /// Matches (any of them); none means every call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<GrpcMatch>,
    /// Filters, as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::http_route::preserved_array")]
    pub filters: Vec<serde_json::Value>,
    /// Backends, as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::http_route::preserved_array")]
    pub backend_refs: Vec<serde_json::Value>,
}

/// A call match (all fields set must hold).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct GrpcMatch {
    /// The service and method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<MethodMatch>,
    /// Header matches (all must hold).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ValueMatch>,
}

/// A service and method match.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct MethodMatch {
    /// `Exact` (default) or `RegularExpression`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// The fully qualified service (`grpc.health.v1.Health`); none: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The method (`Check`); none: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}
