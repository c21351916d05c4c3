//! Deciding with a port's policy (pure): which authorization, if any,
//! admits a connection or a request, as linkerd2-proxy decides with what
//! the policy controller serves (`inbound.Server`).
//!
//! A connection is admitted by the Server's authorizations. A request goes
//! to the route with the most specific match for it ([`crate::route_match`]),
//! and is admitted by that route's authorizations or the Server's, as
//! linkerd2-proxy extends each route's list with the Server's: a policy
//! that targets an HTTPRoute admits only on that route, one that targets
//! the Server on all of them. No matching route is a 404.
//! An authorization admits a client whose address is in one of its networks
//! (and in none of their exceptions) and that presents what it requires:
//! nothing, mesh TLS, or one of its identities (exact, or ending in a
//! suffix; the empty suffix is any identity).

use std::net::IpAddr;

use ipnet::IpNet;
use linkerd2_proxy_api::inbound as api;
use linkerd2_proxy_api::meta::{Metadata, metadata};

use crate::route_match::{RequestView, RouteMatch, Specificity};

/// Which object a policy part comes from (`group`, `kind`, `name`), as
/// metrics label it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Meta {
    pub(crate) group: String,
    pub(crate) kind: String,
    pub(crate) name: String,
}

impl Meta {
    fn default_named(name: &str) -> Self {
        Self {
            group: String::new(),
            kind: "default".into(),
            name: name.into(),
        }
    }

    fn from_api(
        metadata: Option<&Metadata>,
        labels: &std::collections::HashMap<String, String>,
    ) -> Self {
        match metadata.and_then(|m| m.kind.as_ref()) {
            Some(metadata::Kind::Default(name)) => Self::default_named(name),
            Some(metadata::Kind::Resource(r)) => Self {
                group: r.group.clone(),
                kind: r.kind.clone(),
                name: r.name.clone(),
            },
            None => {
                let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
                Self {
                    group: label("group"),
                    kind: label("kind"),
                    name: label("name"),
                }
            }
        }
    }

    /// Whether it is one of the controller's own parts (`default`, `probe`).
    pub(crate) fn is_default(&self) -> bool {
        self.kind == "default"
    }
}

/// How a port's connections are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortProtocol {
    /// Detect HTTP.
    Detect,
    /// HTTP/1, without detection.
    Http1,
    /// HTTP/2, without detection.
    Http2,
    /// gRPC (HTTP/2), without detection.
    Grpc,
    /// Opaque TCP.
    Opaque,
    /// The application's own TLS (opaque to the proxy).
    Tls,
}

/// What a client must present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Authentication {
    /// Nothing.
    Unauthenticated,
    /// Mesh TLS, with or without an identity.
    MeshTls,
    /// Mesh TLS with one of these identities.
    Identities {
        exact: Vec<String>,
        suffixes: Vec<Vec<String>>,
    },
}

/// One way in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Authorization {
    pub(crate) meta: Meta,
    networks: Vec<(IpNet, Vec<IpNet>)>,
    authentication: Authentication,
}

/// An inbound HTTP or gRPC route.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) meta: Meta,
    /// Alternatives (any matches); none: every request.
    matches: Vec<RouteMatch>,
    /// Its own authorizations; the Server's admit its requests too, as
    /// linkerd2-proxy extends a route's list with the Server's.
    authorizations: Vec<Authorization>,
}

/// A port's policy.
#[derive(Debug, Clone)]
pub(crate) struct ServerPolicy {
    pub(crate) meta: Meta,
    pub(crate) protocol: PortProtocol,
    authorizations: Vec<Authorization>,
    routes: Vec<Route>,
}

/// The client of a connection, as policy sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Client<'a> {
    /// Its address.
    pub(crate) ip: IpAddr,
    /// Whether it came over mesh TLS (this proxy terminated it).
    pub(crate) mesh_tls: bool,
    /// Its proved identity.
    pub(crate) identity: Option<&'a str>,
}

/// Why a request was refused: no route matched, or its route's
/// authorizations admit no one like the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestDenied {
    /// No route matches the request.
    NoRoute,
    /// The route's (or Server's) authorizations do not admit the client.
    Unauthorized { route: Meta },
}

/// A policy message that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid inbound policy: {0}")]
pub(crate) struct InvalidPolicy(String);

impl Authorization {
    fn admits(&self, client: &Client<'_>) -> bool {
        let in_network = self.networks.iter().any(|(net, except)| {
            net.contains(&client.ip) && !except.iter().any(|e| e.contains(&client.ip))
        });
        in_network
            && match &self.authentication {
                Authentication::Unauthenticated => true,
                Authentication::MeshTls => client.mesh_tls,
                Authentication::Identities { exact, suffixes } => {
                    client.identity.is_some_and(|id| {
                        exact.iter().any(|e| e == id)
                            || suffixes.iter().any(|parts| identity_has_suffix(id, parts))
                    })
                }
            }
    }

    fn from_api(authz: &api::Authz) -> Result<Self, InvalidPolicy> {
        let meta = Meta::from_api(authz.metadata.as_ref(), &authz.labels);
        let net = |n: &linkerd2_proxy_api::net::IpNetwork| {
            IpNet::try_from(*n)
                .map_err(|e| InvalidPolicy(format!("authorization {}: {e}", meta.name)))
        };
        let networks = authz
            .networks
            .iter()
            .map(|n| {
                let network = n.net.as_ref().ok_or_else(|| {
                    InvalidPolicy(format!(
                        "authorization {}: a network without an address",
                        meta.name
                    ))
                })?;
                let except = n.except.iter().map(&net).collect::<Result<Vec<_>, _>>()?;
                Ok((net(network)?, except))
            })
            .collect::<Result<Vec<_>, InvalidPolicy>>()?;
        use api::authn::{Permit, permit_mesh_tls::Clients};
        let authentication = match authz
            .authentication
            .as_ref()
            .and_then(|a| a.permit.as_ref())
        {
            Some(Permit::Unauthenticated(_)) => Authentication::Unauthenticated,
            Some(Permit::MeshTls(tls)) => match &tls.clients {
                Some(Clients::Unauthenticated(_)) => Authentication::MeshTls,
                Some(Clients::Identities(ids)) => Authentication::Identities {
                    exact: ids.identities.iter().map(|i| i.name.clone()).collect(),
                    suffixes: ids.suffixes.iter().map(|s| s.parts.clone()).collect(),
                },
                None => {
                    return Err(InvalidPolicy(format!(
                        "authorization {}: mesh TLS without clients",
                        meta.name
                    )));
                }
            },
            None => {
                return Err(InvalidPolicy(format!(
                    "authorization {}: no authentication",
                    meta.name
                )));
            }
        };
        Ok(Self {
            meta,
            networks,
            authentication,
        })
    }
}

/// Whether `identity` ends in the DNS labels `parts` (none: any identity).
fn identity_has_suffix(identity: &str, parts: &[String]) -> bool {
    if parts.is_empty() {
        return true;
    }
    let suffix = parts.join(".");
    identity
        .strip_suffix(&suffix)
        .is_some_and(|rest| rest.ends_with('.'))
}

impl ServerPolicy {
    /// The policy a default policy name stands for, used until the policy
    /// controller answers (or without one), as linkerd2-proxy does with
    /// `LINKERD2_PROXY_INBOUND_DEFAULT_POLICY`.
    pub(crate) fn default_named(
        name: &str,
        cluster_networks: &[IpNet],
    ) -> Result<Self, InvalidPolicy> {
        let all: Vec<(IpNet, Vec<IpNet>)> = vec![
            (IpNet::V4(Default::default()), Vec::new()),
            (IpNet::V6(Default::default()), Vec::new()),
        ];
        let cluster: Vec<(IpNet, Vec<IpNet>)> =
            cluster_networks.iter().map(|n| (*n, Vec::new())).collect();
        let any_identity = || Authentication::Identities {
            exact: Vec::new(),
            suffixes: vec![Vec::new()],
        };
        let allow = |networks: Vec<(IpNet, Vec<IpNet>)>, authentication| {
            vec![Authorization {
                meta: Meta::default_named(name),
                networks,
                authentication,
            }]
        };
        let authorizations = match name {
            "all-unauthenticated" | "audit" => allow(all, Authentication::Unauthenticated),
            "all-authenticated" => allow(all, any_identity()),
            "cluster-unauthenticated" => allow(cluster, Authentication::Unauthenticated),
            "cluster-authenticated" => allow(cluster, any_identity()),
            "deny" => return Ok(Self::denied()),
            other => {
                return Err(InvalidPolicy(format!(
                    "{other:?} is not a default inbound policy"
                )));
            }
        };
        Ok(Self {
            meta: Meta::default_named(name),
            protocol: PortProtocol::Detect,
            authorizations,
            routes: Vec::new(),
        })
    }

    /// A policy that admits no one (for a port the proxy will not watch).
    pub(crate) fn denied() -> Self {
        Self {
            meta: Meta::default_named("deny"),
            protocol: PortProtocol::Detect,
            authorizations: Vec::new(),
            routes: Vec::new(),
        }
    }

    /// The policy the controller sent.
    pub(crate) fn from_api(server: &api::Server) -> Result<Self, InvalidPolicy> {
        use api::proxy_protocol::Kind;
        let meta = Meta::from_api(None, &server.labels);
        let http = |routes: &[api::HttpRoute]| routes.iter().map(http_route_from_api).collect();
        let (protocol, routes) = match server.protocol.as_ref().and_then(|p| p.kind.as_ref()) {
            Some(Kind::Detect(d)) => (PortProtocol::Detect, http(&d.http_routes)),
            Some(Kind::Http1(h)) => (PortProtocol::Http1, http(&h.routes)),
            Some(Kind::Http2(h)) => (PortProtocol::Http2, http(&h.routes)),
            Some(Kind::Grpc(g)) => (
                PortProtocol::Grpc,
                g.routes.iter().map(grpc_route_from_api).collect(),
            ),
            Some(Kind::Opaque(_)) => (PortProtocol::Opaque, Ok(Vec::new())),
            Some(Kind::Tls(_)) => (PortProtocol::Tls, Ok(Vec::new())),
            None => return Err(InvalidPolicy("no protocol".into())),
        };
        let authorizations = server
            .authorizations
            .iter()
            .map(Authorization::from_api)
            .collect::<Result<Vec<_>, _>>()?;
        let routes = routes?;
        Ok(Self {
            meta,
            protocol,
            authorizations,
            routes,
        })
    }

    /// The authorization admitting a connection from `client`, if any.
    pub(crate) fn authorize_connection(&self, client: &Client<'_>) -> Option<&Authorization> {
        self.authorizations.iter().find(|a| a.admits(client))
    }

    /// The route of a request and the authorization admitting it.
    pub(crate) fn authorize_request(
        &self,
        client: &Client<'_>,
        req: &RequestView<'_>,
    ) -> Result<(Option<&Route>, &Authorization), RequestDenied> {
        if self.routes.is_empty() {
            // No routes sent (a default policy): the Server's authorizations.
            return self.authorize_connection(client).map(|a| (None, a)).ok_or(
                RequestDenied::Unauthorized {
                    route: Meta::default_named("default"),
                },
            );
        }
        // The route with the most specific matching match (the first of
        // equals); a route without matches matches everything, least
        // specifically.
        let mut best: Option<(&Route, Specificity)> = None;
        for route in &self.routes {
            let score = if route.matches.is_empty() {
                Some(RouteMatch::default().specificity())
            } else {
                route
                    .matches
                    .iter()
                    .filter(|m| m.matches(req))
                    .map(RouteMatch::specificity)
                    .max()
            };
            if let Some(score) = score
                && best.is_none_or(|(_, b)| score > b)
            {
                best = Some((route, score));
            }
        }
        let (route, _) = best.ok_or(RequestDenied::NoRoute)?;
        route
            .authorizations
            .iter()
            .chain(&self.authorizations)
            .find(|a| a.admits(client))
            .map(|a| (Some(route), a))
            .ok_or_else(|| RequestDenied::Unauthorized {
                route: route.meta.clone(),
            })
    }
}

fn http_route_from_api(route: &api::HttpRoute) -> Result<Route, InvalidPolicy> {
    let name = route_name(route.metadata.as_ref());
    let rules = route.rules.iter().map(|rule| {
        (rule.matches.iter())
            .map(|m| RouteMatch::from_http(m, &name))
            .collect()
    });
    route_from_api(route.metadata.as_ref(), rules, &route.authorizations)
}

fn grpc_route_from_api(route: &api::GrpcRoute) -> Result<Route, InvalidPolicy> {
    let name = route_name(route.metadata.as_ref());
    let rules = route.rules.iter().map(|rule| {
        (rule.matches.iter())
            .map(|m| RouteMatch::from_grpc(m, &name))
            .collect()
    });
    route_from_api(route.metadata.as_ref(), rules, &route.authorizations)
}

fn route_name(metadata: Option<&Metadata>) -> String {
    Meta::from_api(metadata, &Default::default()).name
}

/// A route from its rules' matches: each rule's matches are alternatives,
/// and a rule without matches matches every request.
fn route_from_api(
    metadata: Option<&Metadata>,
    rules: impl Iterator<Item = Result<Vec<RouteMatch>, crate::route_match::InvalidMatch>>,
    authorizations: &[api::Authz],
) -> Result<Route, InvalidPolicy> {
    let meta = Meta::from_api(metadata, &Default::default());
    let mut matches = Vec::new();
    for rule in rules {
        let rule = rule.map_err(|e| InvalidPolicy(e.to_string()))?;
        if rule.is_empty() {
            matches.push(RouteMatch::default());
        }
        matches.extend(rule);
    }
    let authorizations = authorizations
        .iter()
        .map(Authorization::from_api)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Route {
        meta,
        matches,
        authorizations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROD: &str = "web.production.serviceaccount.identity.linkerd.cluster.local";

    fn client(ip: &str, identity: Option<&'static str>) -> Client<'static> {
        Client {
            ip: ip.parse().expect("ip"),
            mesh_tls: identity.is_some(),
            identity,
        }
    }

    fn authz(networks: &[(&str, &[&str])], authentication: Authentication) -> Authorization {
        Authorization {
            meta: Meta {
                group: "policy.linkerd.io".into(),
                kind: "authorizationpolicy".into(),
                name: "p".into(),
            },
            networks: networks
                .iter()
                .map(|(net, except)| {
                    (
                        net.parse().expect("net"),
                        except.iter().map(|e| e.parse().expect("except")).collect(),
                    )
                })
                .collect(),
            authentication,
        }
    }

    #[test]
    fn identities_match_exactly_or_by_whole_labels() {
        let suffix = |s: &str| s.split('.').map(str::to_owned).collect::<Vec<_>>();
        let authz = authz(
            &[("0.0.0.0/0", &[])],
            Authentication::Identities {
                exact: vec!["db.other.serviceaccount.identity.linkerd.cluster.local".into()],
                suffixes: vec![suffix(
                    "production.serviceaccount.identity.linkerd.cluster.local",
                )],
            },
        );
        assert!(authz.admits(&client("10.0.0.1", Some(PROD))));
        assert!(authz.admits(&client(
            "10.0.0.1",
            Some("db.other.serviceaccount.identity.linkerd.cluster.local")
        )));
        for other in [
            "web.other.serviceaccount.identity.linkerd.cluster.local",
            "web.xproduction.serviceaccount.identity.linkerd.cluster.local",
            "production.serviceaccount.identity.linkerd.cluster.local",
        ] {
            assert!(!authz.admits(&client("10.0.0.1", Some(other))), "{other}");
        }
        assert!(!authz.admits(&client("10.0.0.1", None)), "no identity");
    }

    #[test]
    fn networks_and_their_exceptions() {
        let authz = authz(
            &[("10.1.0.0/16", &["10.1.2.3/32"])],
            Authentication::Unauthenticated,
        );
        assert!(authz.admits(&client("10.1.9.9", None)));
        assert!(!authz.admits(&client("10.1.2.3", None)), "excepted");
        assert!(!authz.admits(&client("10.2.0.1", None)), "outside");
    }

    #[test]
    fn default_policies_admit_what_their_names_say() {
        let cluster: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let decide = |name: &str, ip: &str, identity| {
            ServerPolicy::default_named(name, &cluster)
                .expect("policy")
                .authorize_connection(&client(ip, identity))
                .is_some()
        };
        assert!(decide("all-unauthenticated", "192.0.2.1", None));
        assert!(decide("audit", "192.0.2.1", None));
        assert!(!decide("all-authenticated", "192.0.2.1", None));
        assert!(decide("all-authenticated", "192.0.2.1", Some(PROD)));
        assert!(!decide("cluster-unauthenticated", "192.0.2.1", None));
        assert!(decide("cluster-unauthenticated", "10.1.1.1", None));
        assert!(!decide("cluster-authenticated", "10.1.1.1", None));
        assert!(decide("cluster-authenticated", "10.1.1.1", Some(PROD)));
        assert!(!decide("deny", "10.1.1.1", Some(PROD)));
        assert!(ServerPolicy::default_named("open", &cluster).is_err());
    }

    #[test]
    fn the_most_specific_route_decides_and_the_servers_authorizations_admit_on_every_route() {
        use crate::route_match::PathMatch;
        let everyone = authz(&[("0.0.0.0/0", &[])], Authentication::Unauthenticated);
        let route = |kind: &str, name: &str, path: Option<PathMatch>, authorizations| Route {
            meta: Meta {
                group: if kind == "default" {
                    String::new()
                } else {
                    "gateway.networking.k8s.io".into()
                },
                kind: kind.into(),
                name: name.into(),
            },
            matches: path
                .map(|p| RouteMatch::path(p, Some(http::Method::GET)))
                .into_iter()
                .collect(),
            authorizations,
        };
        let mut policy = ServerPolicy {
            meta: Meta::default_named("deny"),
            protocol: PortProtocol::Detect,
            authorizations: Vec::new(),
            routes: vec![
                route("default", "default", None, Vec::new()),
                route(
                    "default",
                    "probe",
                    Some(PathMatch::Exact("/ready".into())),
                    vec![everyone.clone()],
                ),
                route(
                    "HTTPRoute",
                    "admin",
                    Some(PathMatch::Prefix("/admin".into())),
                    Vec::new(),
                ),
            ],
        };
        let request = |method: &str, path: &str| {
            http::Request::builder()
                .method(method)
                .uri(path)
                .body(())
                .expect("request")
        };
        let anyone = client("10.0.0.1", None);
        let meshed = client("10.0.0.1", Some(PROD));
        let ready = request("GET", "/ready");
        let (route, _) = policy
            .authorize_request(&anyone, &(&ready).into())
            .expect("the probe route");
        assert_eq!(route.map(|r| r.meta.name.as_str()), Some("probe"));
        assert_eq!(
            policy
                .authorize_request(&anyone, &(&request("POST", "/ready")).into())
                .expect_err("POST is not the probe"),
            RequestDenied::Unauthorized {
                route: Meta::default_named("default")
            }
        );
        let admin = request("GET", "/admin/users");
        let denied = policy
            .authorize_request(&meshed, &(&admin).into())
            .expect_err("neither the route nor the Server admits anyone");
        assert!(matches!(denied, RequestDenied::Unauthorized { route } if route.name == "admin"));
        // A Server-level authorization admits on every route, its own
        // HTTPRoutes included (linkerd2-proxy appends the Server's list to
        // each route's).
        policy.authorizations.push(authz(
            &[("0.0.0.0/0", &[])],
            Authentication::Identities {
                exact: vec![PROD.into()],
                suffixes: Vec::new(),
            },
        ));
        let (route, _) = policy
            .authorize_request(&meshed, &(&admin).into())
            .expect("the Server's authorization");
        assert_eq!(route.map(|r| r.meta.name.as_str()), Some("admin"));
        assert!(policy.authorize_request(&anyone, &(&admin).into()).is_err());
    }

    /// A GRPCRoute on a gRPC Server, as the policy controller sends it,
    /// admits only whom its AuthorizationPolicy names to the method it
    /// names. The attacks: another meshed identity calling that method, and
    /// calling a method no route names (which no route admits).
    #[test]
    fn a_grpcroute_admits_only_its_policys_clients_to_its_method() {
        const OPS: &str = "ops.prod.serviceaccount.identity.linkerd.cluster.local";
        let objects = [
            serde_json::json!({
                "kind": "Pod",
                "metadata": {"namespace": "prod", "name": "shop-1", "labels": {"app": "shop"}},
                "spec": {"containers": [{"name": "shop", "ports": [{"name": "grpc", "containerPort": 9090}]}]}
            }),
            serde_json::json!({
                "kind": "Server",
                "metadata": {"namespace": "prod", "name": "shop"},
                "spec": {"podSelector": {"matchLabels": {"app": "shop"}}, "port": 9090, "proxyProtocol": "gRPC"}
            }),
            serde_json::json!({
                "kind": "GRPCRoute",
                "metadata": {"namespace": "prod", "name": "admin"},
                "spec": {
                    "parentRefs": [{"group": "policy.linkerd.io", "kind": "Server", "name": "shop"}],
                    "rules": [{"matches": [{"method": {"service": "shop.Admin", "method": "Drop"}}]}]
                }
            }),
            serde_json::json!({
                "kind": "AuthorizationPolicy",
                "metadata": {"namespace": "prod", "name": "ops-only"},
                "spec": {
                    "targetRef": {"group": "gateway.networking.k8s.io", "kind": "GRPCRoute", "name": "admin"},
                    "requiredAuthenticationRefs": [{"kind": "ServiceAccount", "name": "ops"}]
                }
            }),
        ];
        let message = mesh_test_util::policy::from_controller(&objects, "prod", "shop-1", 9090);
        let policy = ServerPolicy::from_api(&message).expect("a valid policy");
        assert_eq!(policy.protocol, PortProtocol::Grpc);
        let call = |path: &str| {
            http::Request::builder()
                .method("POST")
                .uri(path)
                .header("content-type", "application/grpc")
                .body(())
                .expect("request")
        };
        let drop = call("/shop.Admin/Drop");
        let (route, _) = policy
            .authorize_request(&client("10.0.0.1", Some(OPS)), &(&drop).into())
            .expect("ops may drop");
        assert_eq!(route.map(|r| r.meta.name.as_str()), Some("admin"));
        let denied = policy
            .authorize_request(&client("10.0.0.2", Some(PROD)), &(&drop).into())
            .expect_err("another identity may not");
        assert!(
            matches!(&denied, RequestDenied::Unauthorized { route } if route.name == "admin"),
            "{denied:?}"
        );
        assert_eq!(
            policy
                .authorize_request(
                    &client("10.0.0.1", Some(OPS)),
                    &(&call("/shop.Admin/DropAll")).into()
                )
                .expect_err("a method no route names"),
            RequestDenied::NoRoute
        );
    }
}
