//! What the controller serves for a pod port, as JSON, on its admin server
//! (`GET /policy?ns=<namespace>&pod=<name>&port=<port>`): what `mesh
//! diagnostics policy` and `mesh check` read through the API server's pod
//! proxy, so they show the controller's own answer.

use std::sync::{Arc, Mutex};

use http::StatusCode;
use serde_json::{Value, json};

use crate::index::{
    AuthorizationRef, ClientAuthentication, ClientAuthorization, IdentityMatch, InboundServer,
    Index, Protocol, RouteRef, ServerRef,
};

/// The admin path.
pub const PATH: &str = "/policy";

/// The value of `name` in a query string (`a=1&b=2`), which `expected`
/// lists when it is missing.
pub(crate) fn query_field(
    query: &str,
    name: &str,
    expected: &str,
) -> Result<String, (StatusCode, String)> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            (
                StatusCode::BAD_REQUEST,
                format!("missing query parameter {name:?} ({expected})"),
            )
        })
}

/// The `port` of a query string, 1 to 65535.
pub(crate) fn query_port(query: &str, expected: &str) -> Result<u16, (StatusCode, String)> {
    query_field(query, "port", expected)?
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            (
                StatusCode::BAD_REQUEST,
                "port: expected 1 to 65535".to_owned(),
            )
        })
}

/// Answers `query` (`ns`, `pod`, `port`) from `index`.
pub fn answer(index: &Arc<Mutex<Index>>, query: &str) -> Result<String, (StatusCode, String)> {
    const EXPECTED: &str = "ns, pod, port";
    let ns = query_field(query, "ns", EXPECTED)?;
    let pod = query_field(query, "pod", EXPECTED)?;
    let port = query_port(query, EXPECTED)?;
    let index = index.lock().map_err(|_| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the policy index is poisoned".to_owned(),
        )
    })?;
    let server = index.inbound_server(&ns, &pod, port).ok_or_else(|| {
        (
            StatusCode::NOT_FOUND,
            format!("pod {ns}/{pod} is not known"),
        )
    })?;
    Ok(to_json(&ns, &pod, port, &server).to_string())
}

/// `server` as JSON.
pub fn to_json(ns: &str, pod: &str, port: u16, server: &InboundServer) -> Value {
    let reference = match &server.reference {
        ServerRef::Default(name) => json!({"kind": "default", "name": name}),
        ServerRef::Server(name) => {
            json!({"group": "policy.linkerd.io", "kind": "Server", "name": name})
        }
    };
    let protocol = match &server.protocol {
        Protocol::Detect { timeout } => format!("detect (timeout {timeout:?})"),
        Protocol::Http1 => "HTTP/1".into(),
        Protocol::Http2 => "HTTP/2".into(),
        Protocol::Grpc => "gRPC".into(),
        Protocol::Opaque => "opaque".into(),
        Protocol::Tls => "TLS".into(),
    };
    let grpc_routes: Vec<Value> = server
        .grpc_routes
        .iter()
        .map(|(reference, route)| {
            let name = match reference {
                RouteRef::GrpcRoute(name) => name.clone(),
                other => format!("{other:?}"),
            };
            let matches: Vec<String> = route.matches.iter().map(ToString::to_string).collect();
            json!({
                "group": crate::index::GATEWAY_GROUP,
                "kind": "GRPCRoute",
                "name": name,
                "matches": matches,
                "authorizations": authorizations(&route.authorizations),
            })
        })
        .collect();
    let routes: Vec<Value> = server
        .http_routes
        .iter()
        .map(|(reference, route)| {
            let (group, kind, name) = match reference {
                RouteRef::Default(name) => ("", "default", (*name).to_owned()),
                RouteRef::HttpRoute(key) => (key.group.as_str(), "HTTPRoute", key.name.clone()),
                RouteRef::GrpcRoute(name) => {
                    (crate::index::GATEWAY_GROUP, "GRPCRoute", name.clone())
                }
            };
            let matches: Vec<String> = route.matches.iter().map(ToString::to_string).collect();
            json!({
                "group": group,
                "kind": kind,
                "name": name,
                "matches": matches,
                "authorizations": authorizations(&route.authorizations),
            })
        })
        .collect();
    json!({
        "namespace": ns,
        "pod": pod,
        "port": port,
        "server": reference,
        "protocol": protocol,
        "authorizations": authorizations(&server.authorizations),
        "httpRoutes": routes,
        "grpcRoutes": grpc_routes,
    })
}

fn authorizations(
    authorizations: &std::collections::BTreeMap<AuthorizationRef, ClientAuthorization>,
) -> Vec<Value> {
    authorizations
        .iter()
        .map(|(reference, authz)| {
            let (kind, name) = match reference {
                AuthorizationRef::Default(name) => ("default", (*name).to_owned()),
                AuthorizationRef::AuthorizationPolicy(name) => ("AuthorizationPolicy", name.clone()),
                AuthorizationRef::ServerAuthorization(name) => ("ServerAuthorization", name.clone()),
            };
            let networks: Vec<String> = if authz.networks.is_empty() {
                vec!["cluster networks".into()]
            } else {
                authz
                    .networks
                    .iter()
                    .map(|n| {
                        let except: Vec<String> = n.except.iter().map(ToString::to_string).collect();
                        if except.is_empty() {
                            n.net.to_string()
                        } else {
                            format!("{} except {}", n.net, except.join(", "))
                        }
                    })
                    .collect()
            };
            let authentication = match &authz.authentication {
                ClientAuthentication::Unauthenticated => json!("none"),
                ClientAuthentication::TlsUnauthenticated => json!("mesh TLS"),
                ClientAuthentication::TlsAuthenticated(identities) => json!({
                    "identities": identities.iter().map(|i| match i {
                        IdentityMatch::Exact(name) => name.clone(),
                        IdentityMatch::Suffix(parts) if parts.is_empty() => "*".to_owned(),
                        IdentityMatch::Suffix(parts) => format!("*.{}", parts.join(".")),
                    }).collect::<Vec<_>>()
                }),
            };
            json!({"kind": kind, "name": name, "networks": networks, "authentication": authentication})
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::defaults::ClusterInfo;

    #[test]
    fn the_query_names_a_pod_port_and_bad_ones_are_refused() {
        let index = Arc::new(Mutex::new(Index::new(ClusterInfo::default())));
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
            "metadata": {"namespace": "prod", "name": "web-1"},
            "spec": {"containers": [{"name": "app"}]}
        }))
        .expect("pod");
        index.lock().expect("index").apply_pod(&pod);
        let body = answer(&index, "ns=prod&pod=web-1&port=8080").expect("an answer");
        let value: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(value["server"]["name"], "all-unauthenticated");
        assert_eq!(value["authorizations"][0]["authentication"], "none");
        for (query, status) in [
            ("ns=prod&pod=web-1", StatusCode::BAD_REQUEST),
            ("ns=prod&pod=web-1&port=0", StatusCode::BAD_REQUEST),
            ("ns=prod&pod=web-2&port=8080", StatusCode::NOT_FOUND),
        ] {
            assert_eq!(answer(&index, query).expect_err(query).0, status, "{query}");
        }
    }
}
