//! The fields the index keeps of each object, validated: an object that
//! cannot be used is an [`Invalid`] naming the field and why, and the index
//! keeps the last valid version of it.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::core::Selector;
use mesh_api::crds::policy::{
    AuthorizationPolicySpec, MeshTlsAuthenticationSpec, NetworkAuthenticationSpec, ObjectRef,
    ProxyProtocol, ServerSpec,
};
use mesh_api::ports::PortSet;

use super::defaults::{ClusterInfo, DefaultPolicy};
use super::{IdentityMatch, NetworkMatch, Protocol};

pub use mesh_api::labels::{
    DEFAULT_INBOUND_POLICY_ANNOTATION as DEFAULT_POLICY_ANNOTATION, OPAQUE_PORTS_ANNOTATION,
    REQUIRE_IDENTITY_PORTS_ANNOTATION as REQUIRE_IDENTITY_ANNOTATION,
};

/// Why an object is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    /// The field at fault (`spec.port`).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

pub(crate) fn invalid(field: &str, reason: impl Into<String>) -> Invalid {
    Invalid {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// A pod as the index sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodInfo {
    /// Its labels (Servers select by them).
    pub labels: BTreeMap<String, String>,
    /// Its own default policy, when annotated (a bad value is ignored and
    /// reported: the namespace's or cluster's applies).
    pub default_policy: Option<DefaultPolicy>,
    /// Ports whose default policy requires a mesh identity.
    pub require_identity: PortSet,
    /// Ports that are opaque TCP.
    pub opaque: PortSet,
    /// Container port names and the numbers they stand for.
    pub port_names: BTreeMap<String, BTreeSet<u16>>,
    /// HTTP probe paths by port (kubelet's probes stay allowed).
    pub probes: BTreeMap<u16, BTreeSet<String>>,
}

/// The index's view of a pod, with what was wrong with its annotations.
pub fn pod(pod: &Pod) -> (PodInfo, Vec<Invalid>) {
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let mut problems = Vec::new();
    let mut ports = |key: &str| match annotations.get(key).map(|v| v.parse::<PortSet>()) {
        Some(Ok(set)) => set,
        Some(Err(e)) => {
            problems.push(invalid(&format!("metadata.annotations[{key}]"), e));
            PortSet::default()
        }
        None => PortSet::default(),
    };
    let require_identity = ports(REQUIRE_IDENTITY_ANNOTATION);
    let opaque = ports(OPAQUE_PORTS_ANNOTATION);
    let default_policy = match annotations
        .get(DEFAULT_POLICY_ANNOTATION)
        .map(|v| v.parse::<DefaultPolicy>())
    {
        Some(Ok(policy)) => Some(policy),
        Some(Err(e)) => {
            problems.push(invalid(
                &format!("metadata.annotations[{DEFAULT_POLICY_ANNOTATION}]"),
                e.to_string(),
            ));
            None
        }
        None => None,
    };
    let containers: Vec<&Container> = pod.spec.iter().flat_map(|s| s.containers.iter()).collect();
    let mut port_names: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    for container in &containers {
        for port in container.ports.iter().flatten() {
            if let (Some(name), Ok(number)) = (&port.name, u16::try_from(port.container_port)) {
                port_names.entry(name.clone()).or_default().insert(number);
            }
        }
    }
    let mut probes: BTreeMap<u16, BTreeSet<String>> = BTreeMap::new();
    for container in &containers {
        let container_probes = [
            &container.liveness_probe,
            &container.readiness_probe,
            &container.startup_probe,
        ];
        for probe in container_probes.into_iter().flatten() {
            if let Some((port, path)) = http_probe(probe, container) {
                probes.entry(port).or_default().insert(path);
            }
        }
    }
    let info = PodInfo {
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        default_policy,
        require_identity,
        opaque,
        port_names,
        probes,
    };
    (info, problems)
}

/// The port and path of an HTTP probe (a named port resolved through the
/// container's own ports).
fn http_probe(probe: &Probe, container: &Container) -> Option<(u16, String)> {
    let get = probe.http_get.as_ref()?;
    let port = match &get.port {
        IntOrString::Int(n) => u16::try_from(*n).ok()?,
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok())?,
    };
    Some((port, get.path.clone().unwrap_or_else(|| "/".into())))
}

/// A Server's port: a number, or a container port's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerPort {
    /// By number.
    Number(u16),
    /// By a container port's name.
    Name(String),
}

/// A Server, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerInfo {
    /// Which pods it selects.
    pub pod_selector: Selector,
    /// Which of their ports.
    pub port: ServerPort,
    /// How connections to it are handled.
    pub protocol: Protocol,
    /// What it allows besides its AuthorizationPolicies.
    pub access_policy: Option<DefaultPolicy>,
    /// Its labels (legacy ServerAuthorizations select Servers by them).
    pub labels: BTreeMap<String, String>,
    /// When it was created (the oldest Server wins a port two select).
    pub created: Option<String>,
}

impl ServerInfo {
    /// Whether it selects `port` of `pod`.
    pub fn selects(&self, pod: &PodInfo, port: u16) -> bool {
        use kube::core::SelectorExt;
        let port_matches = match &self.port {
            ServerPort::Number(n) => *n == port,
            ServerPort::Name(name) => pod.port_names.get(name).is_some_and(|p| p.contains(&port)),
        };
        port_matches && self.pod_selector.matches(&pod.labels)
    }
}

/// Validates a Server's spec.
pub fn server(
    spec: &ServerSpec,
    labels: BTreeMap<String, String>,
    created: Option<String>,
    cluster: &ClusterInfo,
) -> Result<ServerInfo, Invalid> {
    let selector = match (&spec.pod_selector, &spec.external_workload_selector) {
        (Some(selector), None) => selector.clone(),
        (None, Some(_)) => {
            return Err(invalid(
                "spec.externalWorkloadSelector",
                "external workloads are not supported; select pods with spec.podSelector",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(invalid(
                "spec.podSelector",
                "set podSelector or externalWorkloadSelector, not both",
            ));
        }
        (None, None) => return Err(invalid("spec.podSelector", "required")),
    };
    let pod_selector =
        Selector::try_from(selector).map_err(|e| invalid("spec.podSelector", e.to_string()))?;
    let port = match &spec.port {
        serde_json::Value::Number(n) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| *n != 0)
            .map(ServerPort::Number)
            .ok_or_else(|| invalid("spec.port", format!("{n} is not a port from 1 to 65535")))?,
        serde_json::Value::String(name) if !name.is_empty() => ServerPort::Name(name.clone()),
        other => {
            return Err(invalid(
                "spec.port",
                format!("{other} is neither a port number nor a container port name"),
            ));
        }
    };
    let protocol = match spec.proxy_protocol {
        None | Some(ProxyProtocol::Unknown) => Protocol::Detect {
            timeout: cluster.detect_timeout,
        },
        Some(ProxyProtocol::Http1) => Protocol::Http1,
        Some(ProxyProtocol::Http2) => Protocol::Http2,
        Some(ProxyProtocol::Grpc) => Protocol::Grpc,
        Some(ProxyProtocol::Opaque) => Protocol::Opaque,
        Some(ProxyProtocol::Tls) => Protocol::Tls,
    };
    let access_policy = spec
        .access_policy
        .as_deref()
        .map(|p| p.parse())
        .transpose()
        .map_err(|e: super::defaults::UnknownPolicy| invalid("spec.accessPolicy", e.to_string()))?;
    Ok(ServerInfo {
        pod_selector,
        port,
        protocol,
        access_policy,
        labels,
        created,
    })
}

/// What an AuthorizationPolicy authorizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyTarget {
    /// One Server of its namespace.
    Server(String),
    /// Every Server of its namespace.
    Namespace,
    /// One HTTPRoute of its namespace (route-level authorization).
    HttpRoute {
        /// Its API group.
        group: String,
        /// Its name.
        name: String,
    },
    /// One GRPCRoute of its namespace (route-level authorization).
    GrpcRoute(String),
}

/// An authentication an AuthorizationPolicy requires, by `(namespace, name)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthenticationRef {
    /// A MeshTLSAuthentication.
    MeshTls(String, String),
    /// A NetworkAuthentication.
    Network(String, String),
    /// A ServiceAccount's identity.
    ServiceAccount(String, String),
}

/// An AuthorizationPolicy, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    /// What it authorizes.
    pub target: PolicyTarget,
    /// What a client must satisfy (at most one MeshTLSAuthentication or set
    /// of ServiceAccounts, at most one NetworkAuthentication).
    pub authentications: Vec<AuthenticationRef>,
}

fn group_is(reference: &ObjectRef, group: &str) -> bool {
    reference.group.as_deref().unwrap_or_default() == group
}

/// Validates an AuthorizationPolicy's spec (in `namespace`).
pub fn authorization_policy(
    spec: &AuthorizationPolicySpec,
    namespace: &str,
) -> Result<PolicyInfo, Invalid> {
    let target_ref = &spec.target_ref;
    let target = match target_ref.kind.to_ascii_lowercase().as_str() {
        "server" if group_is(target_ref, "policy.linkerd.io") => {
            PolicyTarget::Server(target_ref.name.clone())
        }
        "namespace" if group_is(target_ref, "") || group_is(target_ref, "core") => {
            if target_ref.name != namespace {
                return Err(invalid(
                    "spec.targetRef.name",
                    format!("a policy may only target its own namespace ({namespace})"),
                ));
            }
            PolicyTarget::Namespace
        }
        "httproute"
            if group_is(target_ref, "policy.linkerd.io")
                || group_is(target_ref, "gateway.networking.k8s.io") =>
        {
            PolicyTarget::HttpRoute {
                group: target_ref.group.clone().unwrap_or_default(),
                name: target_ref.name.clone(),
            }
        }
        "grpcroute" if group_is(target_ref, "gateway.networking.k8s.io") => {
            PolicyTarget::GrpcRoute(target_ref.name.clone())
        }
        _ => {
            return Err(invalid(
                "spec.targetRef",
                format!(
                    "{}/{} cannot be authorized (a Server, HTTPRoute, GRPCRoute or Namespace can)",
                    target_ref.group.as_deref().unwrap_or("core"),
                    target_ref.kind
                ),
            ));
        }
    };
    if spec.required_authentication_refs.is_empty() {
        return Err(invalid(
            "spec.requiredAuthenticationRefs",
            "at least one authentication is required",
        ));
    }
    let mut authentications = Vec::new();
    for (i, reference) in spec.required_authentication_refs.iter().enumerate() {
        let ns = reference
            .namespace
            .clone()
            .unwrap_or_else(|| namespace.to_owned());
        let name = reference.name.clone();
        let kind = reference.kind.to_ascii_lowercase();
        authentications.push(match kind.as_str() {
            "meshtlsauthentication" if group_is(reference, "policy.linkerd.io") => {
                AuthenticationRef::MeshTls(ns, name)
            }
            "networkauthentication" if group_is(reference, "policy.linkerd.io") => {
                AuthenticationRef::Network(ns, name)
            }
            "serviceaccount" if group_is(reference, "") || group_is(reference, "core") => {
                AuthenticationRef::ServiceAccount(ns, name)
            }
            _ => {
                return Err(invalid(
                    &format!("spec.requiredAuthenticationRefs[{i}]"),
                    format!(
                        "{} is not an authentication (MeshTLSAuthentication, NetworkAuthentication or ServiceAccount)",
                        reference.kind
                    ),
                ));
            }
        });
    }
    let count =
        |want: fn(&AuthenticationRef) -> bool| authentications.iter().filter(|a| want(a)).count();
    let mesh_tls = count(|a| matches!(a, AuthenticationRef::MeshTls(..)));
    let accounts = count(|a| matches!(a, AuthenticationRef::ServiceAccount(..)));
    let networks = count(|a| matches!(a, AuthenticationRef::Network(..)));
    if mesh_tls > 1 || (mesh_tls == 1 && accounts > 0) {
        return Err(invalid(
            "spec.requiredAuthenticationRefs",
            "at most one MeshTLSAuthentication, and not together with ServiceAccounts",
        ));
    }
    if networks > 1 {
        return Err(invalid(
            "spec.requiredAuthenticationRefs",
            "at most one NetworkAuthentication",
        ));
    }
    Ok(PolicyInfo {
        target,
        authentications,
    })
}

/// Validates a MeshTLSAuthentication's spec: the identities it admits.
pub fn mesh_tls_authentication(
    spec: &MeshTlsAuthenticationSpec,
    namespace: &str,
    cluster: &ClusterInfo,
) -> Result<Vec<IdentityMatch>, Invalid> {
    let mut identities = Vec::new();
    for (i, identity) in spec.identities.iter().flatten().enumerate() {
        identities.push(
            identity_match(identity)
                .map_err(|reason| invalid(&format!("spec.identities[{i}]"), reason))?,
        );
    }
    for (i, reference) in spec.identity_refs.iter().flatten().enumerate() {
        let ns = reference.namespace.as_deref().unwrap_or(namespace);
        let field = format!("spec.identityRefs[{i}]");
        match reference.kind.to_ascii_lowercase().as_str() {
            "serviceaccount" => identities.push(IdentityMatch::Exact(
                cluster.service_account_identity(ns, &reference.name),
            )),
            "namespace" => identities.push(IdentityMatch::Suffix(
                format!(
                    "{}.serviceaccount.identity.{}.{}",
                    reference.name, cluster.control_namespace, cluster.trust_domain
                )
                .split('.')
                .map(str::to_owned)
                .collect(),
            )),
            _ => {
                return Err(invalid(
                    &field,
                    format!("{} is not a ServiceAccount or Namespace", reference.kind),
                ));
            }
        }
    }
    if identities.is_empty() {
        return Err(invalid(
            "spec",
            "no identities and no identityRefs: it would admit no one",
        ));
    }
    Ok(identities)
}

/// An identity as MeshTLSAuthentication writes it: `*` (any), `*.suffix`
/// or an exact DNS-like name.
fn identity_match(text: &str) -> Result<IdentityMatch, String> {
    let text = text.trim().trim_end_matches('.');
    if text == "*" {
        return Ok(IdentityMatch::Suffix(Vec::new()));
    }
    if let Some(suffix) = text.strip_prefix("*.") {
        let parts: Vec<String> = suffix.split('.').map(str::to_owned).collect();
        if parts.iter().any(|p| p.is_empty() || p.contains('*')) {
            return Err(format!("{text:?} is not `*`, `*.<suffix>` or a name"));
        }
        return Ok(IdentityMatch::Suffix(parts));
    }
    if text.is_empty() || text.contains('*') || text.split('.').any(str::is_empty) {
        return Err(format!("{text:?} is not `*`, `*.<suffix>` or a name"));
    }
    Ok(IdentityMatch::Exact(text.to_owned()))
}

/// Validates a NetworkAuthentication's spec.
pub fn network_authentication(
    spec: &NetworkAuthenticationSpec,
) -> Result<Vec<NetworkMatch>, Invalid> {
    if spec.networks.is_empty() {
        return Err(invalid("spec.networks", "at least one network is required"));
    }
    networks(&spec.networks, "spec.networks")
}

/// Networks as a policy writes them, `field` naming them in errors.
fn networks(
    networks: &[mesh_api::crds::policy::Network],
    field: &str,
) -> Result<Vec<NetworkMatch>, Invalid> {
    networks
        .iter()
        .enumerate()
        .map(|(i, network)| {
            let net = cidr(&network.cidr)
                .map_err(|reason| invalid(&format!("{field}[{i}].cidr"), reason))?;
            let except = network
                .except
                .iter()
                .flatten()
                .enumerate()
                .map(|(j, e)| {
                    cidr(e).map_err(|reason| invalid(&format!("{field}[{i}].except[{j}]"), reason))
                })
                .collect::<Result<_, _>>()?;
            Ok(NetworkMatch { net, except })
        })
        .collect()
}

/// A route attached to Servers, as an inbound route (an HTTPRoute's
/// matches by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRouteInfo<M = super::RouteMatch> {
    /// The Servers (of its namespace) its `parentRefs` name.
    pub servers: Vec<String>,
    /// The requests it matches.
    pub matches: Vec<M>,
}

/// The Servers of `namespace` a route's `parentRefs` name.
fn server_parents(
    parent_refs: &[mesh_api::crds::http_route::ParentRef],
    namespace: &str,
) -> Vec<String> {
    parent_refs
        .iter()
        .filter(|p| {
            p.kind.as_deref() == Some("Server")
                && p.group.as_deref() == Some("policy.linkerd.io")
                && p.namespace.as_deref().is_none_or(|ns| ns == namespace)
        })
        .map(|p| p.name.clone())
        .collect()
}

/// A GRPCRoute attached to Servers, as an inbound route.
pub type InboundGrpcRouteInfo = InboundRouteInfo<crate::outbound::model::GrpcMatch>;

/// Validates a GRPCRoute as an inbound route: `None` when no `parentRef`
/// is a Server of its namespace.
pub fn inbound_grpc_route(
    spec: &mesh_api::crds::grpc_route::GrpcRouteSpec,
    namespace: &str,
) -> Result<Option<InboundGrpcRouteInfo>, Invalid> {
    inbound_of(&spec.parent_refs, &spec.rules, namespace, |rule, r| {
        crate::outbound::grpc_route::grpc_matches(rule, &format!("spec.rules[{r}]"))
    })
}

/// Validates an HTTPRoute as an inbound route: `None` when no `parentRef`
/// is a Server of its namespace.
pub fn inbound_route(
    spec: &mesh_api::crds::http_route::HttpRouteSpec,
    namespace: &str,
) -> Result<Option<InboundRouteInfo>, Invalid> {
    inbound_of(&spec.parent_refs, &spec.rules, namespace, |rule, r| {
        crate::routes::rule_matches(rule, r)
    })
}

/// A route of either kind as an inbound route: the Servers of `namespace`
/// its `parentRefs` name (`None` when none) and every rule's matches, read
/// by `rule_matches` (a rule and its index).
fn inbound_of<R, M>(
    parent_refs: &[mesh_api::crds::http_route::ParentRef],
    rules: &[R],
    namespace: &str,
    rule_matches: impl Fn(&R, usize) -> Result<Vec<M>, Invalid>,
) -> Result<Option<InboundRouteInfo<M>>, Invalid> {
    let servers = server_parents(parent_refs, namespace);
    if servers.is_empty() {
        return Ok(None);
    }
    let mut matches = Vec::new();
    for (r, rule) in rules.iter().enumerate() {
        matches.extend(rule_matches(rule, r)?);
    }
    Ok(Some(InboundRouteInfo { servers, matches }))
}

/// Which Servers a ServerAuthorization authorizes.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerSelection {
    /// One, by name.
    Name(String),
    /// Those whose labels match.
    Labels(Selector),
}

impl ServerSelection {
    /// Whether it selects the Server `name` with `labels`.
    pub fn selects(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        use kube::core::SelectorExt;
        match self {
            Self::Name(selected) => selected == name,
            Self::Labels(selector) => selector.matches(labels),
        }
    }
}

/// A ServerAuthorization, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerAuthorizationInfo {
    /// The Servers it authorizes.
    pub servers: ServerSelection,
    /// What it admits.
    pub authorization: super::ClientAuthorization,
}

/// Validates a ServerAuthorization's spec (in `namespace`).
pub fn server_authorization(
    spec: &mesh_api::crds::policy::ServerAuthorizationSpec,
    namespace: &str,
    cluster: &ClusterInfo,
) -> Result<ServerAuthorizationInfo, Invalid> {
    use super::ClientAuthentication;
    let servers = match (&spec.server.name, &spec.server.selector) {
        (Some(name), None) if !name.is_empty() => ServerSelection::Name(name.clone()),
        (None, Some(selector)) => ServerSelection::Labels(
            Selector::try_from(selector.clone())
                .map_err(|e| invalid("spec.server.selector", e.to_string()))?,
        ),
        _ => {
            return Err(invalid(
                "spec.server",
                "exactly one of name and selector is required",
            ));
        }
    };
    let client = &spec.client;
    let networks = networks(
        client.networks.as_deref().unwrap_or_default(),
        "spec.client.networks",
    )?;
    let authentication = match (client.unauthenticated.unwrap_or(false), &client.mesh_tls) {
        (true, None) => ClientAuthentication::Unauthenticated,
        (true, Some(_)) => {
            return Err(invalid(
                "spec.client",
                "unauthenticated and meshTLS cannot be set together",
            ));
        }
        (false, None) => {
            return Err(invalid(
                "spec.client",
                "set unauthenticated: true or meshTLS",
            ));
        }
        (false, Some(tls)) => {
            let mut identities = Vec::new();
            for (i, identity) in tls.identities.iter().flatten().enumerate() {
                identities.push(identity_match(identity).map_err(|reason| {
                    invalid(&format!("spec.client.meshTLS.identities[{i}]"), reason)
                })?);
            }
            for account in tls.service_accounts.iter().flatten() {
                identities.push(IdentityMatch::Exact(cluster.service_account_identity(
                    account.namespace.as_deref().unwrap_or(namespace),
                    &account.name,
                )));
            }
            match (
                tls.unauthenticated_tls.unwrap_or(false),
                identities.is_empty(),
            ) {
                (true, true) => ClientAuthentication::TlsUnauthenticated,
                (false, false) => ClientAuthentication::TlsAuthenticated(identities),
                (true, false) => {
                    return Err(invalid(
                        "spec.client.meshTLS",
                        "unauthenticatedTLS cannot be set with identities or serviceAccounts",
                    ));
                }
                (false, true) => {
                    return Err(invalid(
                        "spec.client.meshTLS",
                        "set identities, serviceAccounts or unauthenticatedTLS: true",
                    ));
                }
            }
        }
    };
    Ok(ServerAuthorizationInfo {
        servers,
        authorization: super::ClientAuthorization {
            networks,
            authentication,
        },
    })
}

/// A CIDR, or a single address.
fn cidr(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not a CIDR (10.0.0.0/8) or an address"))
}
