//! `multicluster.linkerd.io` Link: how one cluster reaches another's
//! gateway and API. Stored as `v1alpha3`; `v1alpha1` and `v1alpha2` are
//! served with the same schema (later versions only added optional
//! selectors), so Links written for any Linkerd release apply.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The spec of a Link.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "multicluster.linkerd.io",
    version = "v1alpha3",
    kind = "Link",
    plural = "links",
    namespaced,
    status = "LinkStatus",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.targetClusterName"}"#,
    printcolumn = r#"{"name":"Gateway","type":"string","jsonPath":".spec.gatewayAddress"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct LinkSpec {
    /// The linked cluster's name (mirrors are `<svc>-<name>`).
    #[serde(default)]
    pub target_cluster_name: String,
    /// Its DNS domain (`cluster.local`).
    #[serde(default)]
    pub target_cluster_domain: String,
    /// Its control-plane namespace (`linkerd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_cluster_linkerd_namespace: Option<String>,
    /// The Secret (type `mirror.linkerd.io/remote-kubeconfig`, key
    /// `kubeconfig`) with credentials for its API.
    #[serde(default)]
    pub cluster_credentials_secret: String,
    /// Its gateway: a comma-separated list of IPs or hostnames.
    #[serde(default)]
    pub gateway_address: String,
    /// The gateway's mTLS port (`4143`), as a string as Linkerd writes it.
    #[serde(default)]
    #[schemars(schema_with = "super::service_profile::int_or_string")]
    pub gateway_port: serde_json::Value,
    /// The gateway's mTLS identity.
    #[serde(default)]
    pub gateway_identity: String,
    /// How the gateway is probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_spec: Option<ProbeSpec>,
    /// Which of its Services are mirrored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Which of its Services are mirrored for remote discovery (no gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_discovery_selector: Option<LabelSelector>,
    /// Which of its Services join federated Services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federated_service_selector: Option<LabelSelector>,
}

/// How a gateway is probed (Linkerd writes the numbers as strings).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProbeSpec {
    /// The HTTP path (`/ready`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The port (`4191`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_int_or_string")]
    pub port: Option<serde_json::Value>,
    /// How often (`3s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// Failed probes before the gateway counts as down (`3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_int_or_string")]
    pub failure_threshold: Option<serde_json::Value>,
    /// How long one probe may take (`30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// What the service mirror reports on a Link: conditions and per-Service
/// mirroring results, kept free-form so any controller's status survives.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(transparent)]
pub struct LinkStatus(pub serde_json::Map<String, serde_json::Value>);

impl JsonSchema for LinkStatus {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "LinkStatus".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true
        })
    }
}

fn optional_int_or_string(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    super::service_profile::int_or_string(g)
}

/// The Link CRD with every served version.
pub fn crd() -> CustomResourceDefinition {
    super::also_serving(Link::crd(), &["v1alpha2", "v1alpha1"])
}
