//! What each route's status should say, per Service parent, as Linkerd's
//! policy controller writes it (pure: computed from the outbound index).
//!
//! - `Accepted`: `True` (`Accepted`) when the parent Service (and the
//!   port the parentRef names) exists and the route is valid; `False` with
//!   `NoMatchingParent` when it does not, or `UnsupportedValue` when the
//!   route was refused (the message names the field; the route's last
//!   valid version, if any, stays in effect).
//! - `ResolvedRefs`: `True` (`ResolvedRefs`) when every backend Service
//!   exists with its port, else `False` (`BackendNotFound`, naming it).

use std::collections::BTreeMap;

use super::OutboundIndex;
use super::model::{OutboundRouteInfo, Parent, RouteKind};
use crate::index::{Invalid, RouteKey};

/// The controller name on the status entries mesh writes (Linkerd's).
pub const CONTROLLER_NAME: &str = "linkerd.io/policy-controller";

/// A route object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteRef {
    /// Its namespace.
    pub namespace: String,
    /// Its kind.
    pub kind: RouteKind,
    /// Its group and name.
    pub key: RouteKey,
}

/// One condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// `Accepted` or `ResolvedRefs`.
    pub type_: &'static str,
    /// Whether it holds.
    pub status: bool,
    /// Why, in one CamelCase word.
    pub reason: &'static str,
    /// Why, for a person.
    pub message: String,
}

/// What a route's status should say: per parent, as of a generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConditions {
    /// The `metadata.generation` the conditions are about.
    pub generation: Option<i64>,
    /// Per parent.
    pub parents: Vec<ParentStatus>,
}

/// The status of a route for one parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentStatus {
    /// The parent.
    pub parent: Parent,
    /// Its conditions.
    pub conditions: Vec<Condition>,
}

fn condition(
    type_: &'static str,
    status: bool,
    reason: &'static str,
    message: String,
) -> Condition {
    Condition {
        type_,
        status,
        reason,
        message,
    }
}

impl OutboundIndex {
    /// What every route attached to a Service should say, by route.
    pub fn route_statuses(&self) -> BTreeMap<RouteRef, RouteConditions> {
        let mut statuses = BTreeMap::new();
        let namespaces = self.routes.keys().chain(self.refused.keys());
        for namespace in namespaces {
            let valid = self.routes.get(namespace);
            let refused = self.refused.get(namespace);
            let keys = valid
                .into_iter()
                .flat_map(BTreeMap::keys)
                .chain(refused.into_iter().flat_map(BTreeMap::keys));
            for (kind, key) in keys {
                let reference = RouteRef {
                    namespace: namespace.clone(),
                    kind: *kind,
                    key: key.clone(),
                };
                if statuses.contains_key(&reference) {
                    continue;
                }
                let route = valid.and_then(|v| v.get(&(*kind, key.clone())));
                let refusal = refused.and_then(|r| r.get(&(*kind, key.clone())));
                let (parents, generation) = match (refusal, route) {
                    (Some(refusal), _) => (&refusal.parents, refusal.generation),
                    (None, Some(route)) => (&route.parents, route.generation),
                    (None, None) => continue,
                };
                let per_parent = parents
                    .iter()
                    .map(|parent| ParentStatus {
                        parent: parent.clone(),
                        conditions: self.conditions(parent, route, refusal.map(|r| &r.reason)),
                    })
                    .collect();
                statuses.insert(
                    reference,
                    RouteConditions {
                        generation,
                        parents: per_parent,
                    },
                );
            }
        }
        statuses
    }

    fn conditions(
        &self,
        parent: &Parent,
        route: Option<&OutboundRouteInfo>,
        refusal: Option<&Invalid>,
    ) -> Vec<Condition> {
        let namespace = &parent.namespace;
        let service = self
            .services
            .get(&(namespace.clone(), parent.service.clone()));
        let accepted = match (service, refusal) {
            (None, _) => condition(
                "Accepted",
                false,
                "NoMatchingParent",
                format!("Service {namespace}/{} not found", parent.service),
            ),
            (Some(svc), _) if parent.port.is_some_and(|p| !svc.ports.contains_key(&p)) => {
                condition(
                    "Accepted",
                    false,
                    "NoMatchingParent",
                    format!(
                        "Service {namespace}/{} has no port {}",
                        parent.service,
                        parent.port.unwrap_or_default()
                    ),
                )
            }
            (Some(_), Some(refusal)) => condition(
                "Accepted",
                false,
                "UnsupportedValue",
                format!(
                    "{refusal}; {}",
                    if route.is_some() {
                        "the route's last valid version stays in effect"
                    } else {
                        "the route is not in effect"
                    }
                ),
            ),
            (Some(_), None) => condition(
                "Accepted",
                true,
                "Accepted",
                "the route applies to the Service".into(),
            ),
        };
        let mut conditions = vec![accepted];
        if let Some(route) = route {
            let missing: Vec<String> = route
                .rules
                .iter()
                .flat_map(|rule| &rule.backends)
                .filter(|backend| {
                    let port = backend.port.or(parent.port);
                    !self
                        .services
                        .get(&(backend.namespace.clone(), backend.name.clone()))
                        .is_some_and(|svc| port.is_none_or(|p| svc.ports.contains_key(&p)))
                })
                .map(|backend| match backend.port.or(parent.port) {
                    Some(port) => format!("{}/{} (port {port})", backend.namespace, backend.name),
                    None => format!("{}/{}", backend.namespace, backend.name),
                })
                .collect();
            conditions.push(if missing.is_empty() {
                condition(
                    "ResolvedRefs",
                    true,
                    "ResolvedRefs",
                    "every backend Service exists".into(),
                )
            } else {
                condition(
                    "ResolvedRefs",
                    false,
                    "BackendNotFound",
                    format!("Service not found: {}", missing.join(", ")),
                )
            });
        }
        conditions
    }
}
