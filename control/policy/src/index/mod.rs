//! The policy index: Kubernetes objects in through `apply_*` / `delete_*`,
//! the policy of each pod port out through watch channels, as Linkerd's
//! policy controller computes it. Pure: no I/O, no clock, so tests feed
//! objects and read answers.
//!
//! A port's policy comes from the oldest Server in the pod's namespace that
//! selects the pod and port: its protocol, the authorizations of the
//! AuthorizationPolicies that target it (or the whole namespace), and what
//! its `accessPolicy` adds, and of the legacy ServerAuthorizations that
//! name or select it. A port no Server selects gets the default
//! policy: the pod's `config.linkerd.io/default-inbound-policy`, else its
//! namespace's, else the cluster's, with identities required on the pod's
//! `config.linkerd.io/proxy-require-identity-inbound-ports`. Either way,
//! without HTTPRoutes of its own a port has a `default` route and, when the
//! pod has HTTP probes on it, a `probe` route that lets kubelet's probes in.
//!
//! An object that fails validation is refused with an [`Invalid`] (the
//! caller records it as a Kubernetes Event) and the last valid version of
//! it stays in force.

pub mod defaults;
pub mod model;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use mesh_api::crds::policy::{
    AuthorizationPolicy, MeshTLSAuthentication, NetworkAuthentication, Server, ServerAuthorization,
};
use tokio::sync::watch;

use self::defaults::{ClusterInfo, DefaultPolicy};
pub use self::model::Invalid;
use self::model::{
    AuthenticationRef, InboundGrpcRouteInfo, InboundRouteInfo, PodInfo, PolicyInfo, PolicyTarget,
    ServerAuthorizationInfo, ServerInfo,
};
use crate::outbound::model::{GrpcMatch, RouteKind};
pub use crate::routes::{PathMatch, RouteMatch, ValueMatch};

/// `(namespace, name)`.
pub type Key = (String, String);

/// The Gateway API's group.
pub(crate) const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
/// Linkerd's policy group.
const POLICY_GROUP: &str = "policy.linkerd.io";

/// How a port's connections are handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// Detect HTTP, waiting at most `timeout` for the first bytes.
    Detect {
        /// How long detection waits.
        timeout: Duration,
    },
    /// HTTP/1.
    Http1,
    /// HTTP/2.
    Http2,
    /// gRPC.
    Grpc,
    /// Opaque TCP.
    Opaque,
    /// The application's own TLS.
    Tls,
}

/// Where a port's policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerRef {
    /// A default policy, by name.
    Default(&'static str),
    /// A Server, by name.
    Server(String),
}

/// What an authorization comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AuthorizationRef {
    /// A default policy (or `probe`), by name.
    Default(&'static str),
    /// An AuthorizationPolicy, by name.
    AuthorizationPolicy(String),
    /// A legacy ServerAuthorization, by name.
    ServerAuthorization(String),
}

/// Clients by identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IdentityMatch {
    /// Exactly this identity.
    Exact(String),
    /// Any identity ending in these DNS labels (none: any identity).
    Suffix(Vec<String>),
}

/// Clients by source network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkMatch {
    /// The network.
    pub net: IpNet,
    /// Parts of it that do not match.
    pub except: Vec<IpNet>,
}

impl From<IpNet> for NetworkMatch {
    fn from(net: IpNet) -> Self {
        Self {
            net,
            except: Vec::new(),
        }
    }
}

/// What a client must present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuthentication {
    /// Nothing.
    Unauthenticated,
    /// Mesh TLS, with any identity or none.
    TlsUnauthenticated,
    /// Mesh TLS with one of these identities.
    TlsAuthenticated(Vec<IdentityMatch>),
}

/// One way in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuthorization {
    /// Where clients may come from (empty: the cluster's networks).
    pub networks: Vec<NetworkMatch>,
    /// What they must present.
    pub authentication: ClientAuthentication,
}

/// Where a route comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum RouteRef {
    /// The controller's own (`default`, `probe`).
    Default(&'static str),
    /// An HTTPRoute, by API group and name.
    HttpRoute(RouteKey),
    /// A GRPCRoute (`gateway.networking.k8s.io`), by name.
    GrpcRoute(String),
}

/// An HTTPRoute's API group (`gateway.networking.k8s.io` or
/// `policy.linkerd.io`: two kinds that may share a name) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteKey {
    /// Its API group.
    pub group: String,
    /// Its name.
    pub name: String,
}

/// An inbound route and who may use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRoute<M> {
    /// The requests it matches, any of them (an HTTP route without any:
    /// every request).
    pub matches: Vec<M>,
    /// Who may use it (a default route without any: the Server's
    /// authorizations decide; a route resource without any admits no one
    /// but whom the Server's authorizations admit).
    pub authorizations: BTreeMap<AuthorizationRef, ClientAuthorization>,
}

/// An inbound HTTP route (a default route, or an HTTPRoute attached to a
/// Server).
pub type HttpRoute = InboundRoute<RouteMatch>;

/// An inbound gRPC route (a GRPCRoute attached to a gRPC Server).
pub type GrpcRoute = InboundRoute<GrpcMatch>;

/// The policy of one pod port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundServer {
    /// Where it comes from.
    pub reference: ServerRef,
    /// How connections are handled.
    pub protocol: Protocol,
    /// Who may connect.
    pub authorizations: BTreeMap<AuthorizationRef, ClientAuthorization>,
    /// Its HTTP routes: the HTTPRoutes attached to its Server, else
    /// `default`; and `probe` for kubelet's probes.
    pub http_routes: BTreeMap<RouteRef, HttpRoute>,
    /// Its gRPC routes, for a gRPC Server: the GRPCRoutes attached to it
    /// (none: Linkerd's default gRPC route, every call).
    pub grpc_routes: BTreeMap<RouteRef, GrpcRoute>,
}

/// Objects of one kind, by namespace then name: a port's policy only ever
/// involves its own namespace's, so an event recomputes one namespace.
type ByNamespace<T, K = String> = HashMap<String, BTreeMap<K, T>>;

/// What an open watch of a pod port is fed through.
type PortWatch = watch::Sender<Option<InboundServer>>;

/// The index.
#[derive(Debug, Default)]
pub struct Index {
    cluster: ClusterInfo,
    /// The outbound side (Services and their routes), fed by the same
    /// watchers.
    pub outbound: crate::outbound::OutboundIndex,
    namespace_policies: HashMap<String, DefaultPolicy>,
    pods: HashMap<Key, PodInfo>,
    servers: ByNamespace<ServerInfo>,
    policies: ByNamespace<PolicyInfo>,
    mesh_tls: HashMap<Key, Vec<IdentityMatch>>,
    networks: HashMap<Key, Vec<NetworkMatch>>,
    server_authorizations: ByNamespace<ServerAuthorizationInfo>,
    http_routes: ByNamespace<InboundRouteInfo, RouteKey>,
    grpc_routes: ByNamespace<InboundGrpcRouteInfo>,
    /// Open watches, by namespace, then pod and port.
    watches: HashMap<String, HashMap<(String, u16), PortWatch>>,
}

fn put<T, K: Ord>(map: &mut ByNamespace<T, K>, namespace: String, name: K, value: T) {
    map.entry(namespace).or_default().insert(name, value);
}

fn remove<T, K: Ord + std::borrow::Borrow<Q>, Q: Ord + ?Sized>(
    map: &mut ByNamespace<T, K>,
    namespace: &str,
    name: &Q,
) {
    if let Some(objects) = map.get_mut(namespace) {
        objects.remove(name);
        if objects.is_empty() {
            map.remove(namespace);
        }
    }
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Key> {
    Some((meta.namespace.clone()?, meta.name.clone()?))
}

/// An object without a namespace or a name.
fn unnamed() -> Invalid {
    Invalid {
        field: "metadata".into(),
        reason: "a namespaced object needs a namespace and a name".into(),
    }
}

impl Index {
    /// An empty index for `cluster`.
    pub fn new(cluster: ClusterInfo) -> Self {
        Self {
            outbound: crate::outbound::OutboundIndex::new(&cluster.cluster_domain),
            cluster,
            ..Self::default()
        }
    }

    /// A Service was created or changed (outbound routing).
    pub fn apply_service(
        &mut self,
        svc: &k8s_openapi::api::core::v1::Service,
    ) -> Result<(), Invalid> {
        self.outbound.apply_service(svc)
    }

    /// A Service was deleted.
    pub fn delete_service(&mut self, namespace: &str, name: &str) {
        self.outbound.delete_service(namespace, name);
    }

    /// A Namespace was created or changed (its default policy annotation).
    pub fn apply_namespace(&mut self, ns: &Namespace) -> Result<(), Invalid> {
        let name = ns.metadata.name.clone().ok_or_else(unnamed)?;
        let annotation = ns
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(model::DEFAULT_POLICY_ANNOTATION));
        let result = match annotation.map(|v| v.parse::<DefaultPolicy>()) {
            Some(Ok(policy)) => {
                self.namespace_policies.insert(name.clone(), policy);
                Ok(())
            }
            Some(Err(e)) => Err(Invalid {
                field: format!("metadata.annotations[{}]", model::DEFAULT_POLICY_ANNOTATION),
                reason: e.to_string(),
            }),
            None => {
                self.namespace_policies.remove(&name);
                Ok(())
            }
        };
        self.publish(&name);
        result
    }

    /// A Namespace was deleted.
    pub fn delete_namespace(&mut self, name: &str) {
        self.namespace_policies.remove(name);
        self.publish(name);
    }

    /// A Pod was created or changed; what was wrong with its annotations
    /// (the rest of it is used).
    pub fn apply_pod(&mut self, pod: &Pod) -> Vec<Invalid> {
        let Some(key) = key_of(&pod.metadata) else {
            return vec![unnamed()];
        };
        let (info, problems) = model::pod(pod);
        self.pods.insert(key.clone(), info);
        self.publish(&key.0);
        problems
    }

    /// A Pod was deleted.
    pub fn delete_pod(&mut self, namespace: &str, name: &str) {
        self.pods.remove(&(namespace.to_owned(), name.to_owned()));
        self.publish(namespace);
    }

    /// A Server was created or changed.
    pub fn apply_server(&mut self, server: &Server) -> Result<(), Invalid> {
        let key = key_of(&server.metadata).ok_or_else(unnamed)?;
        let info = model::server(
            &server.spec,
            server.metadata.labels.clone().unwrap_or_default(),
            server
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string()),
            &self.cluster,
        )?;
        let namespace = key.0.clone();
        put(&mut self.servers, key.0, key.1, info);
        self.publish(&namespace);
        Ok(())
    }

    /// A Server was deleted.
    pub fn delete_server(&mut self, namespace: &str, name: &str) {
        remove(&mut self.servers, namespace, name);
        self.publish(namespace);
    }

    /// An AuthorizationPolicy was created or changed.
    pub fn apply_authorization_policy(
        &mut self,
        policy: &AuthorizationPolicy,
    ) -> Result<(), Invalid> {
        let key = key_of(&policy.metadata).ok_or_else(unnamed)?;
        let info = model::authorization_policy(&policy.spec, &key.0)?;
        let namespace = key.0.clone();
        put(&mut self.policies, key.0, key.1, info);
        self.publish(&namespace);
        Ok(())
    }

    /// An AuthorizationPolicy was deleted.
    pub fn delete_authorization_policy(&mut self, namespace: &str, name: &str) {
        remove(&mut self.policies, namespace, name);
        self.publish(namespace);
    }

    /// A MeshTLSAuthentication was created or changed.
    pub fn apply_mesh_tls_authentication(
        &mut self,
        authn: &MeshTLSAuthentication,
    ) -> Result<(), Invalid> {
        let key = key_of(&authn.metadata).ok_or_else(unnamed)?;
        let identities = model::mesh_tls_authentication(&authn.spec, &key.0, &self.cluster)?;
        self.mesh_tls.insert(key.clone(), identities);
        self.publish_referrers(&key);
        Ok(())
    }

    /// A MeshTLSAuthentication was deleted.
    pub fn delete_mesh_tls_authentication(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        self.mesh_tls.remove(&key);
        self.publish_referrers(&key);
    }

    /// A NetworkAuthentication was created or changed.
    pub fn apply_network_authentication(
        &mut self,
        authn: &NetworkAuthentication,
    ) -> Result<(), Invalid> {
        let key = key_of(&authn.metadata).ok_or_else(unnamed)?;
        let networks = model::network_authentication(&authn.spec)?;
        self.networks.insert(key.clone(), networks);
        self.publish_referrers(&key);
        Ok(())
    }

    /// A NetworkAuthentication was deleted.
    pub fn delete_network_authentication(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        self.networks.remove(&key);
        self.publish_referrers(&key);
    }

    /// A ServerAuthorization (the legacy kind) was created or changed.
    pub fn apply_server_authorization(
        &mut self,
        authorization: &ServerAuthorization,
    ) -> Result<(), Invalid> {
        let key = key_of(&authorization.metadata).ok_or_else(unnamed)?;
        let info = model::server_authorization(&authorization.spec, &key.0, &self.cluster)?;
        let namespace = key.0.clone();
        put(&mut self.server_authorizations, key.0, key.1, info);
        self.publish(&namespace);
        Ok(())
    }

    /// A ServerAuthorization was deleted.
    pub fn delete_server_authorization(&mut self, namespace: &str, name: &str) {
        remove(&mut self.server_authorizations, namespace, name);
        self.publish(namespace);
    }

    /// An HTTPRoute (`gateway.networking.k8s.io`) was created or changed:
    /// it is an inbound route of the Servers its `parentRefs` name.
    pub fn apply_http_route(
        &mut self,
        route: &mesh_api::crds::http_route::HttpRoute,
    ) -> Result<(), Invalid> {
        self.apply_route(GATEWAY_GROUP, &route.metadata, &route.spec)
    }

    /// A `policy.linkerd.io` HTTPRoute was created or changed.
    pub fn apply_policy_http_route(
        &mut self,
        route: &mesh_api::crds::http_route::PolicyHttpRoute,
    ) -> Result<(), Invalid> {
        self.apply_route(POLICY_GROUP, &route.metadata, &route.spec.route)
    }

    fn apply_route(
        &mut self,
        group: &str,
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        spec: &mesh_api::crds::http_route::HttpRouteSpec,
    ) -> Result<(), Invalid> {
        let (namespace, name) = key_of(meta).ok_or_else(unnamed)?;
        let key = RouteKey {
            group: group.into(),
            name,
        };
        // Both sides validate before either changes: a route refused on one
        // side keeps its last valid version on both.
        let checked = model::inbound_route(spec, &namespace).and_then(|inbound| {
            Ok((
                inbound,
                crate::outbound::OutboundIndex::check_route(meta, spec)?,
            ))
        });
        let (inbound, outbound) = match checked {
            Ok(checked) => checked,
            Err(e) => {
                self.outbound.refuse_route(
                    &namespace,
                    RouteKind::Http,
                    key,
                    &spec.parent_refs,
                    meta.generation,
                    e.clone(),
                );
                return Err(e);
            }
        };
        self.outbound
            .put_route(&namespace, RouteKind::Http, key.clone(), outbound);
        match inbound {
            Some(info) => put(&mut self.http_routes, namespace.clone(), key, info),
            // Not attached to a Server.
            None => remove(&mut self.http_routes, &namespace, &key),
        }
        self.publish(&namespace);
        Ok(())
    }

    /// An HTTPRoute (`gateway.networking.k8s.io`) was deleted.
    pub fn delete_http_route(&mut self, namespace: &str, name: &str) {
        self.delete_route(GATEWAY_GROUP, namespace, name);
    }

    /// A `policy.linkerd.io` HTTPRoute was deleted.
    pub fn delete_policy_http_route(&mut self, namespace: &str, name: &str) {
        self.delete_route(POLICY_GROUP, namespace, name);
    }

    fn delete_route(&mut self, group: &str, namespace: &str, name: &str) {
        let key = RouteKey {
            group: group.into(),
            name: name.into(),
        };
        remove(&mut self.http_routes, namespace, &key);
        self.outbound
            .put_route(namespace, RouteKind::Http, key, None);
        self.publish(namespace);
    }

    /// A GRPCRoute was created or changed: the outbound routes of the
    /// Services its `parentRefs` name, and an inbound route of the
    /// (gRPC) Servers they name.
    pub fn apply_grpc_route(
        &mut self,
        route: &mesh_api::crds::grpc_route::GrpcRoute,
    ) -> Result<(), Invalid> {
        let (namespace, name) = key_of(&route.metadata).ok_or_else(unnamed)?;
        let key = RouteKey {
            group: GATEWAY_GROUP.into(),
            name: name.clone(),
        };
        // Both sides validate before either changes.
        let checked = model::inbound_grpc_route(&route.spec, &namespace).and_then(|inbound| {
            Ok((
                inbound,
                crate::outbound::OutboundIndex::check_grpc_route(&route.metadata, &route.spec)?,
            ))
        });
        let (inbound, outbound) = match checked {
            Ok(checked) => checked,
            Err(e) => {
                self.outbound.refuse_route(
                    &namespace,
                    RouteKind::Grpc,
                    key,
                    &route.spec.parent_refs,
                    route.metadata.generation,
                    e.clone(),
                );
                return Err(e);
            }
        };
        self.outbound
            .put_route(&namespace, RouteKind::Grpc, key, outbound);
        match inbound {
            Some(info) => put(&mut self.grpc_routes, namespace.clone(), name, info),
            None => remove(&mut self.grpc_routes, &namespace, &name),
        }
        self.publish(&namespace);
        Ok(())
    }

    /// A GRPCRoute was deleted.
    pub fn delete_grpc_route(&mut self, namespace: &str, name: &str) {
        let key = RouteKey {
            group: GATEWAY_GROUP.into(),
            name: name.into(),
        };
        self.outbound
            .put_route(namespace, RouteKind::Grpc, key, None);
        remove(&mut self.grpc_routes, namespace, name);
        self.publish(namespace);
    }

    // ----- answers ------------------------------------------------------

    /// Follows the policy of `port` of pod `name` in `namespace`: `None`
    /// while the pod is not known.
    pub fn watch_port(
        &mut self,
        namespace: &str,
        name: &str,
        port: u16,
    ) -> watch::Receiver<Option<InboundServer>> {
        let key = (name.to_owned(), port);
        if let Some(tx) = self.watches.get(namespace).and_then(|w| w.get(&key)) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(self.inbound_server(namespace, name, port));
        self.watches
            .entry(namespace.to_owned())
            .or_default()
            .insert(key, tx);
        rx
    }

    /// Drops watches nobody reads any more.
    pub fn forget_unwatched(&mut self) {
        for watches in self.watches.values_mut() {
            watches.retain(|_, tx| tx.receiver_count() > 0);
        }
        self.watches.retain(|_, watches| !watches.is_empty());
    }

    /// Recomputes the open watches of `namespace`.
    fn publish(&self, namespace: &str) {
        for ((name, port), tx) in self.watches.get(namespace).into_iter().flatten() {
            let current = self.inbound_server(namespace, name, *port);
            tx.send_if_modified(|held| {
                let changed = *held != current;
                if changed {
                    held.clone_from(&current);
                }
                changed
            });
        }
    }

    /// Recomputes the namespaces whose AuthorizationPolicies refer to the
    /// authentication `key` (its own and any other).
    fn publish_referrers(&self, key: &Key) {
        let namespaces: Vec<&String> = self
            .policies
            .iter()
            .filter(|(_, policies)| {
                policies.values().any(|p| {
                    p.authentications.iter().any(|a| match a {
                        AuthenticationRef::MeshTls(ns, name)
                        | AuthenticationRef::Network(ns, name) => (ns, name) == (&key.0, &key.1),
                        AuthenticationRef::ServiceAccount(..) => false,
                    })
                })
            })
            .map(|(namespace, _)| namespace)
            .collect();
        for namespace in namespaces {
            self.publish(namespace);
        }
    }

    /// The policy of `port` of pod `name` in `namespace` now.
    pub fn inbound_server(&self, namespace: &str, name: &str, port: u16) -> Option<InboundServer> {
        let pod = self.pods.get(&(namespace.to_owned(), name.to_owned()))?;
        let routes = self.default_routes(pod, port);
        let selected = self
            .servers
            .get(namespace)
            .into_iter()
            .flatten()
            .filter(|(_, server)| server.selects(pod, port))
            .min_by(|(a_name, a), (b_name, b)| {
                (a.created.is_none(), &a.created, a_name).cmp(&(
                    b.created.is_none(),
                    &b.created,
                    b_name,
                ))
            });
        let Some((server_name, server)) = selected else {
            let mut policy = pod
                .default_policy
                .or_else(|| self.namespace_policies.get(namespace).copied())
                .unwrap_or(self.cluster.default_policy);
            if pod.require_identity.contains(port) {
                policy = policy.requiring_identity();
            }
            let protocol = if pod.opaque.contains(port) {
                Protocol::Opaque
            } else {
                Protocol::Detect {
                    timeout: self.cluster.detect_timeout,
                }
            };
            return Some(InboundServer {
                reference: ServerRef::Default(policy.as_str()),
                protocol,
                authorizations: policy.authorizations(&self.cluster).into_iter().collect(),
                http_routes: routes,
                grpc_routes: BTreeMap::new(),
            });
        };
        let mut authorizations: BTreeMap<AuthorizationRef, ClientAuthorization> = self
            .policies
            .get(namespace)
            .into_iter()
            .flatten()
            .filter(|(_, policy)| match &policy.target {
                PolicyTarget::Server(target) => target == server_name,
                PolicyTarget::Namespace => true,
                PolicyTarget::HttpRoute { .. } | PolicyTarget::GrpcRoute(_) => false,
            })
            .filter_map(|(policy_name, policy)| {
                Some((
                    AuthorizationRef::AuthorizationPolicy(policy_name.clone()),
                    self.client_authorization(policy)?,
                ))
            })
            .collect();
        authorizations.extend(
            self.server_authorizations
                .get(namespace)
                .into_iter()
                .flatten()
                .filter(|(_, saz)| saz.servers.selects(server_name, &server.labels))
                .map(|(name, saz)| {
                    (
                        AuthorizationRef::ServerAuthorization(name.clone()),
                        saz.authorization.clone(),
                    )
                }),
        );
        if let Some(access) = server.access_policy {
            authorizations.extend(access.authorizations(&self.cluster));
        }
        let attached = self.attached_routes(namespace, server_name);
        let routes = if attached.is_empty() {
            routes
        } else {
            // The HTTPRoutes replace the default route; probes stay.
            let mut routes = routes;
            routes.remove(&RouteRef::Default("default"));
            routes.extend(attached);
            routes
        };
        Some(InboundServer {
            reference: ServerRef::Server(server_name.clone()),
            protocol: server.protocol.clone(),
            authorizations,
            http_routes: routes,
            // As in Linkerd, only a gRPC Server reads its GRPCRoutes.
            grpc_routes: if server.protocol == Protocol::Grpc {
                self.attached_grpc_routes(namespace, server_name)
            } else {
                BTreeMap::new()
            },
        })
    }

    /// The HTTPRoutes of `namespace` attached to the Server `server`, each
    /// with the authorizations of the policies that target it.
    fn attached_routes(&self, namespace: &str, server: &str) -> BTreeMap<RouteRef, HttpRoute> {
        self.attached(
            &self.http_routes,
            namespace,
            server,
            |key, target| matches!(target, PolicyTarget::HttpRoute { group, name } if *group == key.group && *name == key.name),
            |key| RouteRef::HttpRoute(key.clone()),
        )
    }

    /// The GRPCRoutes of `namespace` attached to the Server `server`, each
    /// with the authorizations of the policies that target it.
    fn attached_grpc_routes(&self, namespace: &str, server: &str) -> BTreeMap<RouteRef, GrpcRoute> {
        self.attached(
            &self.grpc_routes,
            namespace,
            server,
            |name, target| matches!(target, PolicyTarget::GrpcRoute(target) if target == name),
            |name| RouteRef::GrpcRoute(name.clone()),
        )
    }

    /// The routes of `routes` in `namespace` attached to the Server
    /// `server`, each with the authorizations of the policies whose target
    /// `targets` it, named by `reference`.
    fn attached<K, M: Clone>(
        &self,
        routes: &ByNamespace<InboundRouteInfo<M>, K>,
        namespace: &str,
        server: &str,
        targets: impl Fn(&K, &PolicyTarget) -> bool,
        reference: impl Fn(&K) -> RouteRef,
    ) -> BTreeMap<RouteRef, InboundRoute<M>> {
        routes
            .get(namespace)
            .into_iter()
            .flatten()
            .filter(|(_, route)| route.servers.iter().any(|s| s == server))
            .map(|(key, route)| {
                let authorizations =
                    self.route_authorizations(namespace, |target| targets(key, target));
                (
                    reference(key),
                    InboundRoute {
                        matches: route.matches.clone(),
                        authorizations,
                    },
                )
            })
            .collect()
    }

    /// What the policies of `namespace` whose target `targets` accepts
    /// admit, by policy.
    fn route_authorizations(
        &self,
        namespace: &str,
        targets: impl Fn(&PolicyTarget) -> bool,
    ) -> BTreeMap<AuthorizationRef, ClientAuthorization> {
        self.policies
            .get(namespace)
            .into_iter()
            .flatten()
            .filter(|(_, policy)| targets(&policy.target))
            .filter_map(|(policy_name, policy)| {
                Some((
                    AuthorizationRef::AuthorizationPolicy(policy_name.clone()),
                    self.client_authorization(policy)?,
                ))
            })
            .collect()
    }

    /// What a policy admits: `None` while an authentication it requires
    /// does not exist (it admits no one then, as in Linkerd).
    fn client_authorization(&self, policy: &PolicyInfo) -> Option<ClientAuthorization> {
        let mut networks = Vec::new();
        let mut identities = Vec::new();
        for authentication in &policy.authentications {
            match authentication {
                AuthenticationRef::MeshTls(ns, name) => {
                    identities.extend(
                        self.mesh_tls
                            .get(&(ns.clone(), name.clone()))?
                            .iter()
                            .cloned(),
                    );
                }
                AuthenticationRef::Network(ns, name) => {
                    networks.extend(
                        self.networks
                            .get(&(ns.clone(), name.clone()))?
                            .iter()
                            .cloned(),
                    );
                }
                AuthenticationRef::ServiceAccount(ns, name) => {
                    identities.push(IdentityMatch::Exact(
                        self.cluster.service_account_identity(ns, name),
                    ));
                }
            }
        }
        let authentication = if identities.is_empty() {
            ClientAuthentication::Unauthenticated
        } else {
            ClientAuthentication::TlsAuthenticated(identities)
        };
        Some(ClientAuthorization {
            networks,
            authentication,
        })
    }

    /// A port's routes when no HTTPRoute names it: `default` (every
    /// request, the Server's authorizations) and, for HTTP probes on it,
    /// `probe` (their paths with GET, from the probe networks, without
    /// authentication).
    fn default_routes(&self, pod: &PodInfo, port: u16) -> BTreeMap<RouteRef, HttpRoute> {
        let mut routes = BTreeMap::new();
        routes.insert(
            RouteRef::Default("default"),
            HttpRoute {
                matches: vec![RouteMatch {
                    path: Some(PathMatch::Prefix("/".into())),
                    ..RouteMatch::default()
                }],
                authorizations: BTreeMap::new(),
            },
        );
        let paths = pod.probes.get(&port);
        if let Some(paths) =
            paths.filter(|p| !p.is_empty() && !self.cluster.probe_networks.is_empty())
        {
            routes.insert(
                RouteRef::Default("probe"),
                HttpRoute {
                    matches: paths
                        .iter()
                        .map(|path| RouteMatch {
                            path: Some(PathMatch::Exact(path.clone())),
                            method: Some("GET".into()),
                            ..RouteMatch::default()
                        })
                        .collect(),
                    authorizations: [(
                        AuthorizationRef::Default("probe"),
                        ClientAuthorization {
                            networks: self
                                .cluster
                                .probe_networks
                                .iter()
                                .copied()
                                .map(NetworkMatch::from)
                                .collect(),
                            authentication: ClientAuthentication::Unauthenticated,
                        },
                    )]
                    .into(),
                },
            );
        }
        routes
    }
}
