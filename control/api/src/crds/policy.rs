//! `policy.linkerd.io` authorization resources, with Linkerd's versions and
//! field names so existing policy manifests apply unchanged:
//!
//! - [`Server`] (`v1beta3`): a port of a set of pods, and the protocol it speaks.
//! - [`AuthorizationPolicy`] (`v1alpha1`): who may reach a Server (or a route
//!   or a namespace), by the authentications it requires.
//! - [`MeshTLSAuthentication`] (`v1alpha1`): clients by mTLS identity or
//!   ServiceAccount.
//! - [`NetworkAuthentication`] (`v1alpha1`): clients by source network.
//! - [`ServerAuthorization`] (`v1beta1`, the legacy kind): who may reach
//!   the Servers it names or selects.
//!
//! The policy controller (`mesh-policy`) reads them and serves each pod
//! port's policy to the proxies, which enforce it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The spec of a Server.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "policy.linkerd.io",
    version = "v1beta3",
    kind = "Server",
    plural = "servers",
    shortname = "srv",
    namespaced,
    printcolumn = r#"{"name":"Port","type":"string","jsonPath":".spec.port"}"#,
    printcolumn = r#"{"name":"Protocol","type":"string","jsonPath":".spec.proxyProtocol"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ServerSpec {
    /// The pods this Server selects (in its namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// External workloads it selects, instead of pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_workload_selector: Option<LabelSelector>,
    /// A port number or a container port's name.
    #[schemars(schema_with = "super::service_profile::int_or_string")]
    pub port: serde_json::Value,
    /// `unknown` (detect), `HTTP/1`, `HTTP/2`, `gRPC`, `opaque` or `TLS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// What happens to traffic no AuthorizationPolicy allows: `deny`,
    /// `all-authenticated`, `all-unauthenticated`, `cluster-authenticated`,
    /// `cluster-unauthenticated` or `audit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_policy: Option<String>,
}

/// The protocol a Server's port speaks.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum ProxyProtocol {
    /// Detect it.
    #[serde(rename = "unknown")]
    Unknown,
    /// HTTP/1.x.
    #[serde(rename = "HTTP/1")]
    Http1,
    /// HTTP/2 (prior knowledge).
    #[serde(rename = "HTTP/2")]
    Http2,
    /// gRPC.
    #[serde(rename = "gRPC")]
    Grpc,
    /// Opaque TCP.
    #[serde(rename = "opaque")]
    Opaque,
    /// The application's own TLS.
    #[serde(rename = "TLS")]
    Tls,
}

/// A reference to another object, as Gateway API policies name them.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct ObjectRef {
    /// Its API group (empty for the core group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Its namespace, when not the policy's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The spec of an AuthorizationPolicy.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "policy.linkerd.io",
    version = "v1alpha1",
    kind = "AuthorizationPolicy",
    plural = "authorizationpolicies",
    shortname = "authzpolicy",
    namespaced
)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicySpec {
    /// What it authorizes: a Server, an HTTPRoute or a Namespace.
    pub target_ref: ObjectRef,
    /// Authentications a client must all satisfy (MeshTLSAuthentication,
    /// NetworkAuthentication or a ServiceAccount).
    pub required_authentication_refs: Vec<ObjectRef>,
}

/// The spec of a MeshTLSAuthentication.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "policy.linkerd.io",
    version = "v1alpha1",
    kind = "MeshTLSAuthentication",
    plural = "meshtlsauthentications",
    shortname = "meshtlsauthn",
    namespaced
)]
#[serde(rename_all = "camelCase")]
pub struct MeshTlsAuthenticationSpec {
    /// Client identities (`*` for any, `*.ns.serviceaccount.identity.linkerd.cluster.local` for a suffix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identities: Option<Vec<String>>,
    /// Clients by ServiceAccount (or every ServiceAccount of a Namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_refs: Option<Vec<ObjectRef>>,
}

/// The spec of a NetworkAuthentication.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "policy.linkerd.io",
    version = "v1alpha1",
    kind = "NetworkAuthentication",
    plural = "networkauthentications",
    shortname = "netauthn",
    namespaced
)]
#[serde(rename_all = "camelCase")]
pub struct NetworkAuthenticationSpec {
    /// Source networks a client may come from.
    pub networks: Vec<Network>,
}

/// A network and the parts of it that are excluded.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct Network {
    /// An address range (`10.0.0.0/8`, `fd00::/8`) or a single address.
    pub cidr: String,
    /// Ranges within it that do not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub except: Option<Vec<String>>,
}

/// The spec of a ServerAuthorization (the kind AuthorizationPolicy
/// replaces; still served, as Linkerd serves it).
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "policy.linkerd.io",
    version = "v1beta1",
    kind = "ServerAuthorization",
    plural = "serverauthorizations",
    shortname = "saz",
    namespaced
)]
#[serde(rename_all = "camelCase")]
pub struct ServerAuthorizationSpec {
    /// The Servers it authorizes.
    pub server: ServerSelector,
    /// The clients it admits.
    pub client: Client,
}

/// Servers by name, or by a label selector.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServerSelector {
    /// One Server of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The Servers whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// The clients a ServerAuthorization admits.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Client {
    /// Where they may come from (the cluster's networks when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Vec<Network>>,
    /// Clients without mesh TLS too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unauthenticated: Option<bool>,
    /// Clients over mesh TLS.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "meshTLS")]
    pub mesh_tls: Option<MeshTlsClients>,
}

/// Mesh TLS clients of a ServerAuthorization.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MeshTlsClients {
    /// Any mesh TLS client, identified or not.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "unauthenticatedTLS"
    )]
    pub unauthenticated_tls: Option<bool>,
    /// Identities (`*`, `*.suffix` or names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identities: Option<Vec<String>>,
    /// ServiceAccounts (`name`, optionally `namespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<Vec<ServiceAccountRef>>,
}

/// A ServiceAccount, by name and optionally namespace.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct ServiceAccountRef {
    /// Its name.
    pub name: String,
    /// Its namespace (the ServerAuthorization's when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}
