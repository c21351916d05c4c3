//! A port's policy as linkerd2-proxy-api's `inbound.Server`, spelled as
//! Linkerd's policy controller spells it, so that a stock linkerd2-proxy
//! reads it as it reads Linkerd's: the Server's labels (`group`, `kind`,
//! `name`), each authorization's metadata and labels, an authorization
//! without networks given the cluster's, and the default and probe routes.

use std::collections::{BTreeMap, HashMap};

use ipnet::IpNet;
use linkerd2_proxy_api::http_route::{HttpRouteMatch, PathMatch, path_match};
use linkerd2_proxy_api::inbound::{self as api, authn, proxy_protocol};
use linkerd2_proxy_api::meta::{Metadata, Resource, metadata};

use crate::index::{
    AuthorizationRef, ClientAuthentication, ClientAuthorization, HttpRoute, IdentityMatch,
    InboundServer, PathMatch as IndexPath, Protocol, RouteMatch, RouteRef, ServerRef, ValueMatch,
};

/// `server` as the API's message; `cluster_networks` stand for an
/// authorization that names no network.
pub fn server(server: &InboundServer, cluster_networks: &[IpNet]) -> api::Server {
    let routes = || -> Vec<api::HttpRoute> {
        server
            .http_routes
            .iter()
            .map(|(reference, route)| http_route(reference, route, cluster_networks))
            .collect()
    };
    let kind = match &server.protocol {
        Protocol::Detect { timeout } => proxy_protocol::Kind::Detect(proxy_protocol::Detect {
            timeout: prost_types::Duration::try_from(*timeout).ok(),
            http_routes: routes(),
            http_local_rate_limit: None,
        }),
        Protocol::Http1 => proxy_protocol::Kind::Http1(proxy_protocol::Http1 {
            routes: routes(),
            local_rate_limit: None,
        }),
        Protocol::Http2 => proxy_protocol::Kind::Http2(proxy_protocol::Http2 {
            routes: routes(),
            local_rate_limit: None,
        }),
        // A gRPC Server's GRPCRoutes, else Linkerd's default gRPC route.
        Protocol::Grpc if !server.grpc_routes.is_empty() => {
            proxy_protocol::Kind::Grpc(proxy_protocol::Grpc {
                routes: server
                    .grpc_routes
                    .iter()
                    .map(|(reference, route)| grpc_route(reference, route, cluster_networks))
                    .collect(),
            })
        }
        Protocol::Grpc => proxy_protocol::Kind::Grpc(proxy_protocol::Grpc {
            routes: vec![default_grpc_route(&server.http_routes, cluster_networks)],
        }),
        Protocol::Opaque => proxy_protocol::Kind::Opaque(proxy_protocol::Opaque {}),
        Protocol::Tls => proxy_protocol::Kind::Tls(proxy_protocol::Tls {}),
    };
    let labels = match &server.reference {
        ServerRef::Default(name) => labels("", "default", name),
        ServerRef::Server(name) => labels("policy.linkerd.io", "server", name),
    };
    api::Server {
        protocol: Some(api::ProxyProtocol { kind: Some(kind) }),
        server_ips: Vec::new(),
        authorizations: authorizations(&server.authorizations, cluster_networks),
        labels,
    }
}

fn labels(group: &str, kind: &str, name: &str) -> HashMap<String, String> {
    [("group", group), ("kind", kind), ("name", name)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn authorizations(
    authorizations: &BTreeMap<AuthorizationRef, ClientAuthorization>,
    cluster_networks: &[IpNet],
) -> Vec<api::Authz> {
    authorizations
        .iter()
        .map(|(reference, authz)| authorization(reference, authz, cluster_networks))
        .collect()
}

fn authorization(
    reference: &AuthorizationRef,
    authz: &ClientAuthorization,
    cluster_networks: &[IpNet],
) -> api::Authz {
    let (kind, labels) = match reference {
        AuthorizationRef::Default(name) => (
            metadata::Kind::Default((*name).to_owned()),
            labels("", "default", name),
        ),
        AuthorizationRef::AuthorizationPolicy(name) => (
            resource("authorizationpolicy", name),
            labels("policy.linkerd.io", "authorizationpolicy", name),
        ),
        AuthorizationRef::ServerAuthorization(name) => (
            resource("serverauthorization", name),
            labels("policy.linkerd.io", "serverauthorization", name),
        ),
    };
    let networks = if authz.networks.is_empty() {
        cluster_networks
            .iter()
            .map(|net| api::Network {
                net: Some((*net).into()),
                except: Vec::new(),
            })
            .collect()
    } else {
        authz
            .networks
            .iter()
            .map(|n| api::Network {
                net: Some(n.net.into()),
                except: n.except.iter().map(|e| (*e).into()).collect(),
            })
            .collect()
    };
    let permit = match &authz.authentication {
        ClientAuthentication::Unauthenticated => {
            authn::Permit::Unauthenticated(authn::PermitUnauthenticated {})
        }
        ClientAuthentication::TlsUnauthenticated => authn::Permit::MeshTls(authn::PermitMeshTls {
            clients: Some(authn::permit_mesh_tls::Clients::Unauthenticated(
                authn::PermitUnauthenticated {},
            )),
        }),
        ClientAuthentication::TlsAuthenticated(identities) => {
            let mut exact = Vec::new();
            let mut suffixes = Vec::new();
            for identity in identities {
                match identity {
                    IdentityMatch::Exact(name) => exact.push(api::Identity { name: name.clone() }),
                    IdentityMatch::Suffix(parts) => suffixes.push(api::IdentitySuffix {
                        parts: parts.clone(),
                    }),
                }
            }
            authn::Permit::MeshTls(authn::PermitMeshTls {
                clients: Some(authn::permit_mesh_tls::Clients::Identities(
                    authn::permit_mesh_tls::PermitClientIdentities {
                        identities: exact,
                        suffixes,
                    },
                )),
            })
        }
    };
    api::Authz {
        networks,
        authentication: Some(api::Authn {
            permit: Some(permit),
        }),
        labels,
        metadata: Some(Metadata { kind: Some(kind) }),
    }
}

fn resource(kind: &str, name: &str) -> metadata::Kind {
    metadata::Kind::Resource(Resource {
        group: "policy.linkerd.io".into(),
        kind: kind.into(),
        name: name.into(),
        ..Resource::default()
    })
}

fn route_metadata(reference: &RouteRef) -> Metadata {
    let kind = match reference {
        RouteRef::Default(name) => metadata::Kind::Default((*name).to_owned()),
        RouteRef::HttpRoute(key) => metadata::Kind::Resource(Resource {
            group: key.group.clone(),
            kind: "HTTPRoute".into(),
            name: key.name.clone(),
            ..Resource::default()
        }),
        RouteRef::GrpcRoute(name) => metadata::Kind::Resource(Resource {
            group: "gateway.networking.k8s.io".into(),
            kind: "GRPCRoute".into(),
            name: name.clone(),
            ..Resource::default()
        }),
    };
    Metadata { kind: Some(kind) }
}

fn http_route(
    reference: &RouteRef,
    route: &HttpRoute,
    cluster_networks: &[IpNet],
) -> api::HttpRoute {
    // One rule with every match; a route without matches matches every
    // request, which Linkerd writes as the prefix `/` (a route without
    // rules would match nothing in linkerd2-proxy).
    let matches = if route.matches.is_empty() {
        vec![route_match(&RouteMatch {
            path: Some(IndexPath::Prefix("/".into())),
            ..RouteMatch::default()
        })]
    } else {
        route.matches.iter().map(route_match).collect()
    };
    api::HttpRoute {
        metadata: Some(route_metadata(reference)),
        hosts: Vec::new(),
        authorizations: authorizations(&route.authorizations, cluster_networks),
        rules: vec![api::http_route::Rule {
            matches,
            filters: Vec::new(),
        }],
    }
}

/// A GRPCRoute on a gRPC Server: one rule with every match.
fn grpc_route(
    reference: &RouteRef,
    route: &crate::index::GrpcRoute,
    cluster_networks: &[IpNet],
) -> api::GrpcRoute {
    api::GrpcRoute {
        metadata: Some(route_metadata(reference)),
        hosts: Vec::new(),
        authorizations: authorizations(&route.authorizations, cluster_networks),
        rules: vec![api::grpc_route::Rule {
            matches: route.matches.iter().map(grpc_route_match).collect(),
            filters: Vec::new(),
        }],
    }
}

/// A gRPC match as the API's `GrpcRouteMatch` (an empty service or method:
/// any).
pub(crate) fn grpc_route_match(
    m: &crate::outbound::model::GrpcMatch,
) -> linkerd2_proxy_api::grpc_route::GrpcRouteMatch {
    linkerd2_proxy_api::grpc_route::GrpcRouteMatch {
        rpc: Some(linkerd2_proxy_api::grpc_route::GrpcRpcMatch {
            service: m.service.clone().unwrap_or_default(),
            method: m.method.clone().unwrap_or_default(),
        }),
        headers: header_matches(&m.headers),
    }
}

/// A gRPC Server's route: every call (Linkerd's `default` gRPC route),
/// with the authorizations of the port's `default` route.
fn default_grpc_route(
    routes: &BTreeMap<RouteRef, HttpRoute>,
    cluster_networks: &[IpNet],
) -> api::GrpcRoute {
    use linkerd2_proxy_api::grpc_route::{GrpcRouteMatch, GrpcRpcMatch};
    let default = routes
        .get(&RouteRef::Default("default"))
        .map(|route| authorizations(&route.authorizations, cluster_networks))
        .unwrap_or_default();
    api::GrpcRoute {
        metadata: Some(route_metadata(&RouteRef::Default("default"))),
        hosts: Vec::new(),
        authorizations: default,
        rules: vec![api::grpc_route::Rule {
            matches: vec![GrpcRouteMatch {
                rpc: Some(GrpcRpcMatch::default()),
                headers: Vec::new(),
            }],
            filters: Vec::new(),
        }],
    }
}

/// Header matches as the API writes them (names in lower case).
pub(crate) fn header_matches(
    headers: &[(String, ValueMatch)],
) -> Vec<linkerd2_proxy_api::http_route::HeaderMatch> {
    use linkerd2_proxy_api::http_route::{HeaderMatch, header_match};
    headers
        .iter()
        .map(|(name, value)| HeaderMatch {
            name: name.to_ascii_lowercase(),
            value: Some(match value {
                ValueMatch::Exact(v) => header_match::Value::Exact(v.clone().into_bytes()),
                ValueMatch::Regex(r) => header_match::Value::Regex(r.clone()),
            }),
        })
        .collect()
}

/// A route match as the API's `HttpRouteMatch`.
pub(crate) fn route_match(m: &RouteMatch) -> HttpRouteMatch {
    use linkerd2_proxy_api::http_route::{QueryParamMatch, query_param_match};
    let path = m.path.as_ref().map(|p| PathMatch {
        kind: Some(match p {
            IndexPath::Exact(v) => path_match::Kind::Exact(v.clone()),
            IndexPath::Prefix(v) => path_match::Kind::Prefix(v.clone()),
            IndexPath::Regex(v) => path_match::Kind::Regex(v.clone()),
        }),
    });
    HttpRouteMatch {
        path,
        headers: header_matches(&m.headers),
        query_params: m
            .query_params
            .iter()
            .map(|(name, value)| QueryParamMatch {
                name: name.clone(),
                value: Some(match value {
                    ValueMatch::Exact(v) => query_param_match::Value::Exact(v.clone()),
                    ValueMatch::Regex(r) => query_param_match::Value::Regex(r.clone()),
                }),
            })
            .collect(),
        method: m
            .method
            .as_deref()
            .and_then(|method| http::Method::from_bytes(method.as_bytes()).ok())
            .map(Into::into),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::defaults::{ClusterInfo, DefaultPolicy};
    use std::time::Duration;

    #[test]
    fn a_default_policy_reads_as_linkerds() {
        let cluster = ClusterInfo::default();
        let policy: DefaultPolicy = "cluster-authenticated".parse().expect("policy");
        let inbound = InboundServer {
            reference: ServerRef::Default(policy.as_str()),
            protocol: Protocol::Detect {
                timeout: Duration::from_secs(10),
            },
            authorizations: policy.authorizations(&cluster).into_iter().collect(),
            http_routes: [(
                RouteRef::Default("default"),
                HttpRoute {
                    matches: Vec::new(),
                    authorizations: BTreeMap::new(),
                },
            )]
            .into(),
            grpc_routes: BTreeMap::new(),
        };
        let grpc = server(
            &InboundServer {
                protocol: Protocol::Grpc,
                ..inbound.clone()
            },
            &cluster.networks,
        );
        let Some(proxy_protocol::Kind::Grpc(grpc)) = grpc.protocol.and_then(|p| p.kind) else {
            panic!("gRPC");
        };
        assert_eq!(grpc.routes.len(), 1, "a gRPC Server has a default route");
        assert_eq!(grpc.routes[0].rules[0].matches.len(), 1, "every call");
        let message = server(&inbound, &cluster.networks);
        assert_eq!(message.labels["kind"], "default");
        assert_eq!(message.labels["name"], "cluster-authenticated");
        let authz = &message.authorizations[0];
        assert_eq!(authz.networks.len(), cluster.networks.len());
        assert_eq!(
            authz.metadata,
            Some(Metadata {
                kind: Some(metadata::Kind::Default("cluster-authenticated".into()))
            })
        );
        let Some(authn::Permit::MeshTls(tls)) =
            authz.authentication.as_ref().and_then(|a| a.permit.clone())
        else {
            panic!("mesh TLS required: {authz:?}");
        };
        let Some(authn::permit_mesh_tls::Clients::Identities(ids)) = tls.clients else {
            panic!("identities: {tls:?}");
        };
        assert_eq!(
            ids.suffixes,
            [api::IdentitySuffix { parts: Vec::new() }],
            "any identity"
        );
        let Some(api::ProxyProtocol {
            kind: Some(proxy_protocol::Kind::Detect(detect)),
        }) = message.protocol
        else {
            panic!("detect");
        };
        assert_eq!(detect.timeout.map(|t| t.seconds), Some(10));
        assert_eq!(detect.http_routes.len(), 1);
        let rules = &detect.http_routes[0].rules;
        assert_eq!(
            rules[0].matches[0].path,
            Some(PathMatch {
                kind: Some(path_match::Kind::Prefix("/".into()))
            }),
            "the default route matches everything, as Linkerd writes it"
        );
    }
}
