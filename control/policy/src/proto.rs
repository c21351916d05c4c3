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
    InboundServer, PathMatch as IndexPath, Protocol, RouteMatch, RouteRef, ServerRef,
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
        Protocol::Grpc => proxy_protocol::Kind::Grpc(proxy_protocol::Grpc { routes: Vec::new() }),
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

fn http_route(
    reference: &RouteRef,
    route: &HttpRoute,
    cluster_networks: &[IpNet],
) -> api::HttpRoute {
    // A route without matches has no rules (it matches every request, as
    // Linkerd's default route); otherwise one rule with every match.
    let rules = if route.matches.is_empty() {
        Vec::new()
    } else {
        vec![api::http_route::Rule {
            matches: route.matches.iter().map(route_match).collect(),
            filters: Vec::new(),
        }]
    };
    let kind = match reference {
        RouteRef::Default(name) => metadata::Kind::Default((*name).to_owned()),
        RouteRef::HttpRoute(name) => metadata::Kind::Resource(Resource {
            group: "gateway.networking.k8s.io".into(),
            kind: "HTTPRoute".into(),
            name: name.clone(),
            ..Resource::default()
        }),
    };
    api::HttpRoute {
        metadata: Some(Metadata { kind: Some(kind) }),
        hosts: Vec::new(),
        authorizations: authorizations(&route.authorizations, cluster_networks),
        rules,
    }
}

fn route_match(m: &RouteMatch) -> HttpRouteMatch {
    let path = m.path.as_ref().map(|p| PathMatch {
        kind: Some(match p {
            IndexPath::Exact(v) => path_match::Kind::Exact(v.clone()),
            IndexPath::Prefix(v) => path_match::Kind::Prefix(v.clone()),
            IndexPath::Regex(v) => path_match::Kind::Regex(v.clone()),
        }),
    });
    HttpRouteMatch {
        path,
        headers: Vec::new(),
        query_params: Vec::new(),
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
        };
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
        assert!(
            detect.http_routes[0].rules.is_empty(),
            "the default route matches everything"
        );
    }
}
