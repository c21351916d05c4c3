//! `linkerd.io/v1alpha2` ServiceProfile: per-route conditions, response
//! classes, retryability and timeouts, and the retry budget of a service.
//! Its name is the service's FQDN (`web.shop.svc.cluster.local`).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The spec of a ServiceProfile.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "linkerd.io",
    version = "v1alpha2",
    kind = "ServiceProfile",
    plural = "serviceprofiles",
    shortname = "sp",
    namespaced
)]
#[serde(rename_all = "camelCase")]
pub struct ServiceProfileSpec {
    /// Routes, first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteSpec>,
    /// How much extra load retries may add.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
    /// Legacy traffic-split field (unused by mesh; kept so old YAML applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_overrides: Option<Vec<WeightedDst>>,
    /// Whether the service is reached from outside the cluster (unused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opaque_ports: Option<Vec<String>>,
}

/// One route.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    /// The route's name (a metric label).
    pub name: String,
    /// Which requests belong to it.
    pub condition: RequestMatch,
    /// How responses are classified.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_classes: Vec<ResponseClass>,
    /// Whether failed requests may be retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_retryable: Option<bool>,
    /// The request timeout (`25ms`, `1s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// A request condition; the fields set are all required.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RequestMatch {
    /// Every one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "object_array")]
    pub all: Option<Vec<RequestMatch>>,
    /// At least one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "object_array")]
    pub any: Option<Vec<RequestMatch>>,
    /// Not this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub not: Option<Box<RequestMatch>>,
    /// A regular expression the whole path must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    /// The HTTP method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// A response class.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResponseClass {
    /// Which responses belong to it.
    pub condition: ResponseMatch,
    /// Whether they count as failures.
    #[serde(default)]
    pub is_failure: bool,
}

/// A response condition.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResponseMatch {
    /// Every one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "object_array")]
    pub all: Option<Vec<ResponseMatch>>,
    /// At least one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "object_array")]
    pub any: Option<Vec<ResponseMatch>>,
    /// Not this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub not: Option<Box<ResponseMatch>>,
    /// A status range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusRange>,
}

/// An inclusive status range; one bound alone means that one status.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct StatusRange {
    /// Lowest status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u32>,
    /// Highest status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
}

/// The retry budget.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RetryBudget {
    /// Retries per original request (0.2 = one retry per five requests).
    pub retry_ratio: f32,
    /// Retries always allowed per second.
    pub min_retries_per_second: u32,
    /// The window the ratio is computed over (`10s`).
    pub ttl: String,
}

/// A weighted destination (legacy field).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct WeightedDst {
    /// The authority.
    pub authority: String,
    /// The weight, as a quantity.
    #[schemars(schema_with = "int_or_string")]
    pub weight: serde_json::Value,
}

// Conditions nest (`all`, `any`, `not`); structural CRD schemas cannot refer
// to themselves, so nested conditions are kept as free-form objects.
fn object_array(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
    })
}

fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

pub(crate) fn int_or_string(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true
    })
}
