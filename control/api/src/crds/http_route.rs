//! HTTPRoute, the parts mesh reads: routes attached to a Service
//! (`parentRefs` of kind Service) or to a Server (inbound routes), their
//! matches and timeouts, and Linkerd's `retry.linkerd.io/*` and
//! `timeout.linkerd.io/*` annotations. Unknown fields are preserved by the
//! API server.
//!
//! Two kinds share the spec, as in Linkerd: [`HttpRoute`]
//! (`gateway.networking.k8s.io`, stored as `v1`, `v1beta1` served too) and
//! [`PolicyHttpRoute`] (`policy.linkerd.io`, stored as `v1beta3`,
//! `v1alpha1` to `v1beta2` served too; [`policy_crd`]).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The spec of an HTTPRoute.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "HTTPRoute",
    root = "HttpRoute",
    plural = "httproutes",
    status = "RouteStatus",
    namespaced
)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    /// What the route attaches to (for mesh: Services).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parent_refs: Vec<ParentRef>,
    /// Host names (unused for Service parents).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// The rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
}

/// A route's status (HTTPRoute and GRPCRoute alike): one entry per parent
/// and controller, with its conditions (`Accepted`, `ResolvedRefs`). Each
/// controller writes its own entries and keeps the others'.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct RouteStatus {
    /// Per parent and controller.
    #[serde(default)]
    #[schemars(schema_with = "preserved_array")]
    pub parents: Vec<serde_json::Value>,
}

/// A parent reference.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    /// Group (`core` or empty for a Service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind (`Service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name.
    pub name: String,
    /// Namespace (default: the route's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Port of the Service (default: every port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Section name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// A rule.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Matches (any of them); none means every request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<Match>,
    /// Backends (kept, not used by GetProfile).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "preserved_array")]
    pub backend_refs: Vec<serde_json::Value>,
    /// Filters (kept, not used by GetProfile).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "preserved_array")]
    pub filters: Vec<serde_json::Value>,
    /// Timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
}

/// A request match (all fields set must hold).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Match {
    /// Path match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    /// Method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Header matches (all must hold).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ValueMatch>,
    /// Query parameter matches (all must hold).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<ValueMatch>,
}

/// A header or query parameter match.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct ValueMatch {
    /// `Exact` (default) or `RegularExpression`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// The header's or parameter's name.
    pub name: String,
    /// The value.
    pub value: String,
}

/// A path match.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct PathMatch {
    /// `Exact`, `PathPrefix` (default) or `RegularExpression`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// The value (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Gateway API timeouts.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    /// The whole request, retries included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// One attempt to a backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_request: Option<String>,
}

/// `policy.linkerd.io` HTTPRoute: Linkerd's own kind with the Gateway
/// API's spec (its CRD is [`policy_crd`]).
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "policy.linkerd.io",
    version = "v1beta3",
    kind = "HTTPRoute",
    root = "PolicyHttpRoute",
    plural = "httproutes",
    schema = "disabled",
    status = "RouteStatus",
    namespaced
)]
pub struct PolicyHttpRouteSpec {
    /// The Gateway API spec.
    #[serde(flatten)]
    pub route: HttpRouteSpec,
}

/// The `policy.linkerd.io` HTTPRoute CRD: the Gateway API kind's schema in
/// Linkerd's group, stored as `v1beta3` and served as every version
/// Linkerd serves.
pub fn policy_crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    let mut crd = HttpRoute::crd();
    crd.metadata.name = Some("httproutes.policy.linkerd.io".into());
    crd.metadata.annotations = None;
    crd.spec.group = "policy.linkerd.io".into();
    crd.spec.versions[0].name = "v1beta3".into();
    super::also_serving(crd, &["v1alpha1", "v1beta1", "v1beta2"])
}

pub(super) fn preserved_array(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
    })
}
