//! `split.smi-spec.io/v1alpha2` TrafficSplit: requests to `spec.service`
//! are split between `spec.backends` by weight. The failover controller
//! rewrites these weights; the destination service turns them into
//! `dst_overrides`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The spec of a TrafficSplit.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "split.smi-spec.io",
    version = "v1alpha2",
    kind = "TrafficSplit",
    plural = "trafficsplits",
    shortname = "ts",
    namespaced,
    printcolumn = r#"{"name":"Service","type":"string","jsonPath":".spec.service"}"#
)]
pub struct TrafficSplitSpec {
    /// The apex service clients call.
    pub service: String,
    /// Where its requests go.
    pub backends: Vec<Backend>,
}

/// One backend and its weight.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct Backend {
    /// A Service name in the split's namespace (or an FQDN).
    pub service: String,
    /// Its weight, relative to the others; v1alpha2 weights are integers,
    /// and the quantity form of v1alpha1 (`500m`) is accepted too.
    #[schemars(schema_with = "super::service_profile::int_or_string")]
    pub weight: serde_json::Value,
}
