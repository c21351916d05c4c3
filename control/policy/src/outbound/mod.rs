//! The outbound side of the policy controller: how a client proxy should
//! route to each Service port, from the Service and the HTTPRoutes
//! attached to it, served through Linkerd's `OutboundPolicies` API.
//!
//! - [`model`]: an HTTPRoute as outbound routing, validated by field;
//!   [`grpc_route`]: what a GRPCRoute adds.
//! - [`OutboundIndex`] (here): pure; Services and routes in, each watched
//!   Service port's [`OutboundPolicy`] out.
//! - [`proto`]: a policy as the API's `OutboundPolicy`, in Linkerd's shape.
//! - [`grpc`]: the `OutboundPolicies` service (`Get`, `Watch`).
//! - [`diagnostics`]: a Service port's policy as JSON on the admin server.
//! - [`status`]: what each route's status conditions should say.
//!
//! A Service port's routes are the HTTPRoutes whose `parentRefs` name it
//! (and its port, or no port), oldest first; without any it has a default
//! route to itself. As the Gateway API's mesh binding says, a route in the
//! Service's namespace (a producer route) applies to every client, and a
//! route in another namespace (a consumer route) only to clients in that
//! namespace, which see their consumer routes first (so a consumer route
//! wins a tie with a producer route) and then the producer routes. Who the
//! client is comes from the `source_workload` its proxy sends. When GRPCRoutes attach to a port
//! that is not HTTP/1-only, they are its routes instead (as in Linkerd,
//! where a port's gRPC routes replace its HTTP routes). Its annotations give the default
//! retries and timeouts (a route's own annotations win) and failure
//! accrual; `config.linkerd.io/opaque-ports` or an `appProtocol` make the
//! port opaque or fix its HTTP version.

pub mod diagnostics;
pub mod grpc;
pub mod grpc_route;
pub mod model;
pub mod proto;
pub mod status;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use mesh_api::crds::grpc_route::GrpcRouteSpec;
use mesh_api::crds::http_route::HttpRouteSpec;
use mesh_api::route_policy::{
    self, ConsecutiveFailures, GrpcRetryCondition, Retry, StatusRange, Timeouts,
};
use tokio::sync::watch;

use self::model::{
    BackendRef, Filter, Matches, OutboundRouteInfo, RouteKind, RouteRetry, bad_annotation,
};
use crate::index::model::invalid;
use crate::index::{Invalid, Key, RouteKey};
use crate::routes::RouteMatch;

/// How a Service port's traffic is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppProtocol {
    /// Detect HTTP.
    Detect,
    /// HTTP/1 (`appProtocol: http`).
    Http1,
    /// HTTP/2 (`appProtocol: kubernetes.io/h2c`).
    Http2,
    /// Opaque TCP (`config.linkerd.io/opaque-ports`).
    Opaque,
}

/// A Service as the outbound index sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceInfo {
    /// Its cluster IPs.
    pub cluster_ips: Vec<IpAddr>,
    /// Its ports and their protocol.
    pub ports: BTreeMap<u16, AppProtocol>,
    /// Default retries of its HTTP routes.
    pub retry: Option<Retry<StatusRange>>,
    /// Default retries of its gRPC routes.
    pub grpc_retry: Option<Retry<GrpcRetryCondition>>,
    /// Default timeouts of its routes.
    pub timeouts: Timeouts,
    /// Failure accrual for its endpoints.
    pub accrual: Option<ConsecutiveFailures>,
}

/// A backend as a client resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedBackend {
    /// The Service it names.
    pub backend: BackendRef,
    /// Its port.
    pub port: u16,
    /// `<name>.<ns>.svc.<domain>:<port>`, or `None` when the Service does
    /// not exist (requests to it fail with 500, as in Linkerd).
    pub authority: Option<String>,
}

/// One rule, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedRule {
    /// Its matches.
    pub matches: Matches,
    /// Its filters.
    pub filters: Vec<Filter>,
    /// Its backends (none: the parent Service).
    pub backends: Vec<ResolvedBackend>,
    /// Its timeouts (the Service's when it sets none).
    pub timeouts: Timeouts,
    /// Its retries (the Service's when it sets none).
    pub retry: Option<RouteRetry>,
}

/// A route of a Service port, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedRoute {
    /// Its namespace (the Service's, or a consumer's).
    pub namespace: String,
    /// Its group and name.
    pub key: RouteKey,
    /// Its kind.
    pub kind: RouteKind,
    /// Its rules, in order.
    pub rules: Vec<ResolvedRule>,
}

/// What a client proxy is told about one Service port.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundPolicy {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// The port.
    pub port: u16,
    /// The Service's authority, `<name>.<ns>.svc.<domain>:<port>`.
    pub authority: String,
    /// How its traffic is carried.
    pub protocol: AppProtocol,
    /// Failure accrual.
    pub accrual: Option<ConsecutiveFailures>,
    /// Retries of the default route.
    pub retry: Option<Retry<StatusRange>>,
    /// Timeouts of the default route.
    pub timeouts: Timeouts,
    /// Its routes, oldest first, all of one kind (none: the default
    /// route).
    pub routes: Vec<ResolvedRoute>,
}

impl OutboundPolicy {
    /// The rule of the route a Service without HTTPRoutes has: every
    /// request to itself, with the Service's own retries and timeouts.
    pub fn default_rule(&self) -> ResolvedRule {
        ResolvedRule {
            matches: Matches::Http(vec![RouteMatch {
                path: Some(crate::routes::PathMatch::Prefix("/".into())),
                ..RouteMatch::default()
            }]),
            filters: Vec::new(),
            backends: Vec::new(),
            timeouts: self.timeouts,
            retry: self.retry.clone().map(RouteRetry::Http),
        }
    }
}

/// Why a route's current version is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The Services it names.
    pub parents: Vec<model::Parent>,
    /// The field at fault.
    pub reason: Invalid,
    /// The `metadata.generation` refused.
    pub generation: Option<i64>,
}

type PolicyWatch = watch::Sender<Option<OutboundPolicy>>;

/// A route attached to a Service port: its namespace, kind and key.
type AttachedRoute<'a> = (&'a str, &'a (RouteKind, RouteKey), &'a OutboundRouteInfo);

/// A watched Service port, as seen from a client namespace: `None` for the
/// Service's own namespace (and clients that name none), which sees only
/// producer routes.
type WatchKey = (Key, u16, Option<String>);

/// The outbound index.
#[derive(Debug, Default)]
pub struct OutboundIndex {
    cluster_domain: String,
    services: HashMap<Key, ServiceInfo>,
    by_ip: HashMap<IpAddr, Key>,
    /// Routes by namespace, then kind and key.
    routes: HashMap<String, BTreeMap<(RouteKind, RouteKey), OutboundRouteInfo>>,
    /// Routes whose current version was refused, by namespace, then kind
    /// and key (their last valid version, if any, stays in `routes`).
    refused: HashMap<String, BTreeMap<(RouteKind, RouteKey), Refusal>>,
    watches: HashMap<WatchKey, PolicyWatch>,
}

fn key_of(meta: &ObjectMeta) -> Option<Key> {
    Some((meta.namespace.clone()?, meta.name.clone()?))
}

/// The index's view of a Service, its annotations validated.
pub fn service_info(svc: &Service) -> Result<ServiceInfo, Invalid> {
    let annotations = svc.metadata.annotations.clone().unwrap_or_default();
    // Without the annotation, Linkerd's default opaque ports.
    let opaque: mesh_api::ports::PortSet = annotations
        .get(mesh_api::labels::OPAQUE_PORTS_ANNOTATION)
        .map(|v| {
            v.parse().map_err(|e: String| {
                invalid(
                    &format!(
                        "metadata.annotations[{}]",
                        mesh_api::labels::OPAQUE_PORTS_ANNOTATION
                    ),
                    e,
                )
            })
        })
        .transpose()?
        .unwrap_or_else(mesh_api::ports::PortSet::default_opaque);
    let spec = svc.spec.clone().unwrap_or_default();
    let cluster_ips = mesh_api::service::cluster_ips(svc);
    let ports = spec
        .ports
        .unwrap_or_default()
        .iter()
        .filter_map(|p| {
            let port = u16::try_from(p.port).ok()?;
            let protocol = if opaque.contains(port) {
                AppProtocol::Opaque
            } else {
                match p.app_protocol.as_deref() {
                    Some("http") => AppProtocol::Http1,
                    Some("kubernetes.io/h2c") => AppProtocol::Http2,
                    Some("linkerd.io/opaque") => AppProtocol::Opaque,
                    _ => AppProtocol::Detect,
                }
            };
            Some((port, protocol))
        })
        .collect();
    Ok(ServiceInfo {
        cluster_ips,
        ports,
        retry: route_policy::http_retry(&annotations).map_err(bad_annotation)?,
        grpc_retry: route_policy::grpc_retry(&annotations).map_err(bad_annotation)?,
        timeouts: route_policy::timeouts(&annotations).map_err(bad_annotation)?,
        accrual: route_policy::failure_accrual(&annotations).map_err(bad_annotation)?,
    })
}

impl OutboundIndex {
    /// An empty index for a cluster whose DNS domain is `cluster_domain`.
    pub fn new(cluster_domain: &str) -> Self {
        Self {
            cluster_domain: cluster_domain.trim_matches('.').to_owned(),
            ..Self::default()
        }
    }

    fn authority(&self, namespace: &str, name: &str, port: u16) -> String {
        format!("{name}.{namespace}.svc.{}:{port}", self.cluster_domain)
    }

    /// A Service was created or changed. With bad annotations it is
    /// refused and its last valid version stays.
    pub fn apply_service(&mut self, svc: &Service) -> Result<(), Invalid> {
        let Some(key) = key_of(&svc.metadata) else {
            return Ok(());
        };
        let info = service_info(svc)?;
        if self.services.get(&key) == Some(&info) {
            return Ok(());
        }
        if let Some(old) = self.services.remove(&key) {
            for ip in &old.cluster_ips {
                self.by_ip.remove(ip);
            }
        }
        for ip in &info.cluster_ips {
            self.by_ip.insert(*ip, key.clone());
        }
        self.services.insert(key, info);
        // Backends may name it from any namespace.
        self.publish(None);
        Ok(())
    }

    /// A Service was deleted.
    pub fn delete_service(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(old) = self.services.remove(&key) {
            for ip in &old.cluster_ips {
                self.by_ip.remove(ip);
            }
            self.publish(None);
        }
    }

    /// Validates an HTTPRoute as outbound routing (without keeping it):
    /// `None` when it names no Service.
    pub fn check_route(
        meta: &ObjectMeta,
        spec: &HttpRouteSpec,
    ) -> Result<Option<OutboundRouteInfo>, Invalid> {
        let namespace = meta.namespace.clone().unwrap_or_default();
        let annotations = meta.annotations.clone().unwrap_or_default();
        let created = meta.creation_timestamp.as_ref().map(|t| t.0.to_string());
        let route = model::outbound_route(spec, &namespace, &annotations, created)?;
        Ok(route.map(|route| OutboundRouteInfo {
            generation: meta.generation,
            ..route
        }))
    }

    /// Validates a GRPCRoute as outbound routing (without keeping it):
    /// `None` when it names no Service.
    pub fn check_grpc_route(
        meta: &ObjectMeta,
        spec: &GrpcRouteSpec,
    ) -> Result<Option<OutboundRouteInfo>, Invalid> {
        let namespace = meta.namespace.clone().unwrap_or_default();
        let annotations = meta.annotations.clone().unwrap_or_default();
        let created = meta.creation_timestamp.as_ref().map(|t| t.0.to_string());
        let route = grpc_route::outbound_grpc_route(spec, &namespace, &annotations, created)?;
        Ok(route.map(|route| OutboundRouteInfo {
            generation: meta.generation,
            ..route
        }))
    }

    /// Keeps a validated route of `kind` (`None`: it names no Service).
    pub fn put_route(
        &mut self,
        namespace: &str,
        kind: RouteKind,
        key: RouteKey,
        route: Option<OutboundRouteInfo>,
    ) {
        let key = (kind, key);
        if let Some(refused) = self.refused.get_mut(namespace) {
            refused.remove(&key);
            if refused.is_empty() {
                self.refused.remove(namespace);
            }
        }
        let routes = self.routes.entry(namespace.to_owned()).or_default();
        let changed = match route {
            Some(route) => routes.insert(key, route.clone()).as_ref() != Some(&route),
            None => routes.remove(&key).is_some(),
        };
        if routes.is_empty() {
            self.routes.remove(namespace);
        }
        if changed {
            self.publish(Some(namespace));
        }
    }

    /// Records that a route's current version was refused (its last valid
    /// version, if any, stays in effect), for its status.
    pub fn refuse_route(
        &mut self,
        namespace: &str,
        kind: RouteKind,
        key: RouteKey,
        parent_refs: &[mesh_api::crds::http_route::ParentRef],
        generation: Option<i64>,
        reason: Invalid,
    ) {
        let parents = model::service_parents(parent_refs, namespace);
        let refused = self.refused.entry(namespace.to_owned()).or_default();
        if parents.is_empty() {
            refused.remove(&(kind, key));
        } else {
            refused.insert(
                (kind, key),
                Refusal {
                    parents,
                    reason,
                    generation,
                },
            );
        }
        if refused.is_empty() {
            self.refused.remove(namespace);
        }
    }

    /// The Service behind a cluster IP.
    pub fn service_by_ip(&self, ip: IpAddr) -> Option<Key> {
        self.by_ip.get(&ip).cloned()
    }

    /// The policy of `port` of Service `namespace/name` for a client in
    /// namespace `client` (`None`: the Service's own clients, who see only
    /// producer routes): `None` while the Service (or that port of it) is
    /// unknown.
    pub fn policy(
        &self,
        namespace: &str,
        name: &str,
        port: u16,
        client: Option<&str>,
    ) -> Option<OutboundPolicy> {
        let service = self
            .services
            .get(&(namespace.to_owned(), name.to_owned()))?;
        let protocol = *service.ports.get(&port)?;
        let consumer = client.filter(|c| *c != namespace);
        let mut routes: Vec<AttachedRoute<'_>> = consumer
            .map(|c| self.attached_routes(c, namespace, name, port))
            .unwrap_or_default();
        routes.extend(self.attached_routes(namespace, namespace, name, port));
        // gRPC routes replace HTTP routes on a port that may carry HTTP/2.
        let kind = if protocol != AppProtocol::Http1
            && routes
                .iter()
                .any(|(_, (kind, _), _)| *kind == RouteKind::Grpc)
        {
            RouteKind::Grpc
        } else {
            RouteKind::Http
        };
        routes.retain(|(_, (k, _), _)| *k == kind);
        let default_retry = match kind {
            RouteKind::Http => service.retry.clone().map(RouteRetry::Http),
            RouteKind::Grpc => service.grpc_retry.clone().map(RouteRetry::Grpc),
        };
        let routes = routes
            .into_iter()
            .map(|(route_namespace, (kind, key), route)| {
                let rules = route
                    .rules
                    .iter()
                    .map(|rule| ResolvedRule {
                        matches: rule.matches.clone(),
                        filters: rule.filters.clone(),
                        backends: rule
                            .backends
                            .iter()
                            .map(|backend| self.resolve_backend(backend, port))
                            .collect(),
                        timeouts: if rule.timeouts == Timeouts::default() {
                            service.timeouts
                        } else {
                            rule.timeouts
                        },
                        retry: rule.retry.clone().or_else(|| default_retry.clone()),
                    })
                    .collect();
                ResolvedRoute {
                    namespace: route_namespace.to_owned(),
                    key: key.clone(),
                    kind: *kind,
                    rules,
                }
            })
            .collect();
        Some(OutboundPolicy {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            port,
            authority: self.authority(namespace, name, port),
            protocol,
            accrual: service.accrual,
            retry: service.retry.clone(),
            timeouts: service.timeouts,
            routes,
        })
    }

    /// The routes of `route_namespace` attached to `port` of Service
    /// `namespace/name`, oldest first (a route without a timestamp last),
    /// then by name.
    fn attached_routes<'a>(
        &'a self,
        route_namespace: &'a str,
        namespace: &str,
        name: &str,
        port: u16,
    ) -> Vec<AttachedRoute<'a>> {
        let mut routes: Vec<AttachedRoute<'a>> = self
            .routes
            .get(route_namespace)
            .into_iter()
            .flatten()
            .filter(|(_, route)| {
                route.parents.iter().any(|p| {
                    p.namespace == namespace
                        && p.service == name
                        && p.port.is_none_or(|p| p == port)
                })
            })
            .map(|(key, route)| (route_namespace, key, route))
            .collect();
        routes.sort_by(|(_, (_, ka), a), (_, (_, kb), b)| {
            let created = |r: &OutboundRouteInfo| (r.created.is_none(), r.created.clone());
            created(a)
                .cmp(&created(b))
                .then_with(|| ka.name.cmp(&kb.name))
        });
        routes
    }

    fn resolve_backend(&self, backend: &BackendRef, parent_port: u16) -> ResolvedBackend {
        let port = backend.port.unwrap_or(parent_port);
        let exists = self
            .services
            .get(&(backend.namespace.clone(), backend.name.clone()))
            .is_some_and(|svc| svc.ports.contains_key(&port));
        ResolvedBackend {
            backend: backend.clone(),
            port,
            authority: exists.then(|| self.authority(&backend.namespace, &backend.name, port)),
        }
    }

    /// Follows the policy of a Service port for a client in namespace
    /// `client` (see [`Self::policy`]).
    pub fn watch(
        &mut self,
        namespace: &str,
        name: &str,
        port: u16,
        client: Option<&str>,
    ) -> watch::Receiver<Option<OutboundPolicy>> {
        let consumer = client.filter(|c| *c != namespace).map(str::to_owned);
        let key = ((namespace.to_owned(), name.to_owned()), port, consumer);
        if let Some(tx) = self.watches.get(&key) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(self.policy(namespace, name, port, key.2.as_deref()));
        self.watches.insert(key, tx);
        rx
    }

    /// Drops watches no one follows any more.
    pub fn forget_unwatched(&mut self) {
        self.watches.retain(|_, tx| tx.receiver_count() > 0);
    }

    /// Sends each watch its policy if it changed: all of them, or those a
    /// route of `namespace` may change (of its Services, or of its clients).
    fn publish(&self, namespace: Option<&str>) {
        for (((ns, name), port, consumer), tx) in &self.watches {
            if namespace.is_some_and(|n| n != ns && consumer.as_deref() != Some(n)) {
                continue;
            }
            let next = self.policy(ns, name, *port, consumer.as_deref());
            tx.send_if_modified(|current| {
                let changed = *current != next;
                if changed {
                    *current = next;
                }
                changed
            });
        }
    }
}
