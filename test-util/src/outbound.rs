//! Outbound policies exactly as the policy controller computes them:
//! Services, HTTPRoutes and GRPCRoutes (JSON objects, as a user writes them) through
//! `mesh-policy`'s pure outbound index and its message conversion, so a
//! proxy test sees what the real controller would send.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use linkerd2_proxy_api::outbound::OutboundPolicy;
use mesh_api::crds::grpc_route::GrpcRoute;
use mesh_api::crds::http_route::HttpRoute;
use mesh_policy::index::RouteKey;
use mesh_policy::outbound::OutboundIndex;
use mesh_policy::outbound::model::RouteKind;

/// A Service with one port at `cluster_ip`, as a user writes it, for
/// [`policy`].
pub fn service(namespace: &str, name: &str, cluster_ip: &str, port: u16) -> serde_json::Value {
    serde_json::json!({
        "kind": "Service",
        "metadata": {"namespace": namespace, "name": name},
        "spec": {"clusterIP": cluster_ip, "ports": [{"port": port}]}
    })
}

/// An HTTPRoute `name` in `namespace` for port 80 of Service `service`,
/// one rule splitting it over `backends` (Service, weight) on port 80, as
/// a user writes it, for [`policy`].
pub fn split_route(
    namespace: &str,
    name: &str,
    service: &str,
    backends: &[(&str, u32)],
) -> serde_json::Value {
    let backend_refs: Vec<serde_json::Value> = backends
        .iter()
        .map(|(backend, weight)| serde_json::json!({"name": backend, "port": 80, "weight": weight}))
        .collect();
    serde_json::json!({
        "kind": "HTTPRoute",
        "metadata": {"namespace": namespace, "name": name},
        "spec": {
            "parentRefs": [{"group": "core", "kind": "Service", "name": service, "port": 80}],
            "rules": [{"backendRefs": backend_refs}]
        }
    })
}

/// The policy of `namespace/service:port` given `objects` (Services and
/// `gateway.networking.k8s.io` HTTPRoutes and GRPCRoutes, by their `kind`), in a cluster
/// whose domain is `cluster.local`. Panics on an object the controller
/// would refuse: a test's objects are meant to be valid.
pub fn policy(
    objects: &[serde_json::Value],
    namespace: &str,
    service: &str,
    port: u16,
) -> OutboundPolicy {
    let mut index = OutboundIndex::new("cluster.local");
    for object in objects {
        match object["kind"].as_str() {
            Some("Service") => {
                let svc: Service = serde_json::from_value(object.clone()).expect("a Service");
                index.apply_service(&svc).expect("a valid Service");
            }
            Some(kind @ ("HTTPRoute" | "GRPCRoute")) => {
                let meta: ObjectMeta =
                    serde_json::from_value(object["metadata"].clone()).expect("metadata");
                let (kind, info) = if kind == "HTTPRoute" {
                    let route: HttpRoute =
                        serde_json::from_value(object.clone()).expect("an HTTPRoute");
                    let info = OutboundIndex::check_route(&meta, &route.spec);
                    (RouteKind::Http, info)
                } else {
                    let route: GrpcRoute =
                        serde_json::from_value(object.clone()).expect("a GRPCRoute");
                    let info = OutboundIndex::check_grpc_route(&meta, &route.spec);
                    (RouteKind::Grpc, info)
                };
                index.put_route(
                    meta.namespace.as_deref().unwrap_or(namespace),
                    kind,
                    RouteKey {
                        group: "gateway.networking.k8s.io".into(),
                        name: meta.name.clone().unwrap_or_default(),
                    },
                    info.expect("a valid route"),
                );
            }
            other => panic!("not a Service, an HTTPRoute or a GRPCRoute: {other:?}"),
        }
    }
    let policy = index
        .policy(namespace, service, port, None)
        .expect("the Service port is known");
    mesh_policy::outbound::proto::policy(&policy)
}
