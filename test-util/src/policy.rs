//! Port policies in the shape Linkerd's policy controller sends them
//! (`inbound.Server`), for the mock controller to serve.

use linkerd2_proxy_api::http_route::{HttpRouteMatch, PathMatch, path_match};
use linkerd2_proxy_api::inbound::{self as api, authn, proxy_protocol};
use linkerd2_proxy_api::meta::{Metadata, Resource, metadata};

/// Every address, as an authorization's networks.
pub fn everywhere() -> Vec<api::Network> {
    ["0.0.0.0/0", "::/0"]
        .iter()
        .map(|n| api::Network {
            net: Some(n.parse::<ipnet::IpNet>().expect("net").into()),
            except: Vec::new(),
        })
        .collect()
}

/// An AuthorizationPolicy's authorization admitting exactly `identity`.
pub fn admits(policy: &str, identity: &str) -> api::Authz {
    api::Authz {
        networks: everywhere(),
        authentication: Some(api::Authn {
            permit: Some(authn::Permit::MeshTls(authn::PermitMeshTls {
                clients: Some(authn::permit_mesh_tls::Clients::Identities(
                    authn::permit_mesh_tls::PermitClientIdentities {
                        identities: vec![api::Identity {
                            name: identity.into(),
                        }],
                        suffixes: Vec::new(),
                    },
                )),
            })),
        }),
        labels: Default::default(),
        metadata: Some(Metadata {
            kind: Some(metadata::Kind::Resource(Resource {
                group: "policy.linkerd.io".into(),
                kind: "authorizationpolicy".into(),
                name: policy.into(),
                ..Resource::default()
            })),
        }),
    }
}

/// One of the controller's own routes (`default`, `probe`): GET on
/// `get_paths`, or (none) every request, as Linkerd sends it: one rule
/// matching the prefix `/`.
pub fn default_route(
    name: &str,
    get_paths: &[&str],
    authorizations: Vec<api::Authz>,
) -> api::HttpRoute {
    let matches = if get_paths.is_empty() {
        vec![HttpRouteMatch {
            path: Some(PathMatch {
                kind: Some(path_match::Kind::Prefix("/".into())),
            }),
            ..HttpRouteMatch::default()
        }]
    } else {
        get_paths
            .iter()
            .map(|p| HttpRouteMatch {
                path: Some(PathMatch {
                    kind: Some(path_match::Kind::Exact((*p).into())),
                }),
                method: Some(http::Method::GET.into()),
                ..HttpRouteMatch::default()
            })
            .collect()
    };
    let rules = vec![api::http_route::Rule {
        matches,
        filters: Vec::new(),
    }];
    api::HttpRoute {
        metadata: Some(Metadata {
            kind: Some(metadata::Kind::Default(name.into())),
        }),
        hosts: Vec::new(),
        authorizations,
        rules,
    }
}

/// A Server named `name` detecting HTTP with `authorizations`, a default
/// route and a probe route for `/ready`.
pub fn server(name: &str, authorizations: Vec<api::Authz>) -> api::Server {
    let probe = api::Authz {
        networks: everywhere(),
        authentication: Some(api::Authn {
            permit: Some(authn::Permit::Unauthenticated(
                authn::PermitUnauthenticated {},
            )),
        }),
        labels: Default::default(),
        metadata: Some(Metadata {
            kind: Some(metadata::Kind::Default("probe".into())),
        }),
    };
    api::Server {
        protocol: Some(api::ProxyProtocol {
            kind: Some(proxy_protocol::Kind::Detect(proxy_protocol::Detect {
                timeout: Some(prost_types::Duration {
                    seconds: 10,
                    nanos: 0,
                }),
                http_routes: vec![
                    default_route("default", &[], Vec::new()),
                    default_route("probe", &["/ready"], vec![probe]),
                ],
                http_local_rate_limit: None,
            })),
        }),
        server_ips: Vec::new(),
        authorizations,
        labels: [
            ("group", "policy.linkerd.io"),
            ("kind", "server"),
            ("name", name),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect(),
    }
}

/// A Server named `name` for opaque TCP with `authorizations`.
pub fn opaque(name: &str, authorizations: Vec<api::Authz>) -> api::Server {
    api::Server {
        protocol: Some(api::ProxyProtocol {
            kind: Some(proxy_protocol::Kind::Opaque(proxy_protocol::Opaque {})),
        }),
        ..server(name, authorizations)
    }
}

/// The policy of `port` of pod `namespace/pod` exactly as the policy
/// controller computes it from `objects` (Pods, Servers,
/// AuthorizationPolicies, HTTPRoutes and GRPCRoutes as a user writes them,
/// by their `kind`), with the cluster's default networks. Panics on an
/// object the controller would refuse: a test's objects are meant to be
/// valid.
pub fn from_controller(
    objects: &[serde_json::Value],
    namespace: &str,
    pod: &str,
    port: u16,
) -> api::Server {
    use mesh_policy::index::Index;
    use mesh_policy::index::defaults::ClusterInfo;
    let cluster = ClusterInfo::default();
    let networks = cluster.networks.clone();
    let mut index = Index::new(cluster);
    fn parse<T: serde::de::DeserializeOwned>(object: &serde_json::Value) -> T {
        serde_json::from_value(object.clone())
            .unwrap_or_else(|e| panic!("an invalid {}: {e}", object["kind"]))
    }
    for object in objects {
        let applied = match object["kind"].as_str() {
            Some("Pod") => {
                let refused = index.apply_pod(&parse(object));
                assert!(refused.is_empty(), "{refused:?}");
                Ok(())
            }
            Some("Server") => index.apply_server(&parse(object)),
            Some("AuthorizationPolicy") => index.apply_authorization_policy(&parse(object)),
            Some("HTTPRoute") => index.apply_http_route(&parse(object)),
            Some("GRPCRoute") => index.apply_grpc_route(&parse(object)),
            other => panic!("not a Pod, Server, AuthorizationPolicy or route: {other:?}"),
        };
        applied.expect("a valid object");
    }
    let server = index
        .inbound_server(namespace, pod, port)
        .expect("the pod is known");
    mesh_policy::proto::server(&server, &networks)
}
