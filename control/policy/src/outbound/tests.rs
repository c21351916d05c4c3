//! Services and HTTPRoutes in, a Service port's outbound policy out, in the
//! style of the inbound index tests.

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use mesh_api::crds::http_route::HttpRoute;

use super::*;

fn object<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("a valid object")
}

fn service(ns: &str, name: &str, ip: &str, annotations: serde_json::Value) -> Service {
    object(serde_json::json!({
        "metadata": {"namespace": ns, "name": name, "annotations": annotations},
        "spec": {"clusterIP": ip, "ports": [
            {"name": "http", "port": 9898},
            {"name": "grpc", "port": 9999, "appProtocol": "kubernetes.io/h2c"}
        ]}
    }))
}

fn route(
    ns: &str,
    name: &str,
    created: &str,
    annotations: serde_json::Value,
    spec: serde_json::Value,
) -> HttpRoute {
    object(serde_json::json!({
        "metadata": {"namespace": ns, "name": name, "creationTimestamp": created, "annotations": annotations},
        "spec": spec
    }))
}

fn apply(index: &mut OutboundIndex, route: &HttpRoute) -> Result<(), Invalid> {
    let info = OutboundIndex::check_route(&route.metadata, &route.spec)?;
    index.put_route(
        route.metadata.namespace.as_deref().unwrap_or_default(),
        RouteKind::Http,
        RouteKey {
            group: "gateway.networking.k8s.io".into(),
            name: route.metadata.name.clone().unwrap_or_default(),
        },
        info,
    );
    Ok(())
}

fn index() -> OutboundIndex {
    let mut index = OutboundIndex::new("cluster.local");
    for (name, ip) in [("podinfo", "10.96.0.10"), ("podinfo-canary", "10.96.0.11")] {
        index
            .apply_service(&service("shop", name, ip, serde_json::json!({})))
            .expect("valid");
    }
    index
}

/// A Service without routes: one default route to itself, with its own
/// retries (a `500-504` range) and timeouts, and its failure accrual; an
/// opaque port is opaque; an `appProtocol` fixes HTTP/2.
#[test]
fn a_service_without_routes_routes_to_itself_with_its_annotations() {
    let mut index = index();
    index
        .apply_service(&service(
            "shop",
            "podinfo",
            "10.96.0.10",
            serde_json::json!({
                "retry.linkerd.io/http": "500-504",
                "timeout.linkerd.io/request": "2s",
                "balancer.linkerd.io/failure-accrual": "consecutive",
                "config.linkerd.io/opaque-ports": "5432"
            }),
        ))
        .expect("valid");
    let policy = index.policy("shop", "podinfo", 9898, None).expect("known");
    assert_eq!(policy.authority, "podinfo.shop.svc.cluster.local:9898");
    assert_eq!(policy.protocol, AppProtocol::Detect);
    assert!(policy.routes.is_empty());
    let retry = policy.retry.clone().expect("a retry");
    assert_eq!(
        retry.conditions,
        Some(vec![StatusRange {
            start: 500,
            end: 504
        }])
    );
    assert_eq!(policy.timeouts.request, Some(Duration::from_secs(2)));
    assert_eq!(policy.accrual.map(|a| a.max_failures), Some(7));
    assert_eq!(
        index
            .policy("shop", "podinfo", 9999, None)
            .map(|p| p.protocol),
        Some(AppProtocol::Http2)
    );
    assert_eq!(
        index.policy("shop", "podinfo", 1234, None),
        None,
        "not a port of it"
    );
    assert_eq!(
        index.service_by_ip("10.96.0.10".parse().expect("ip")),
        Some(("shop".into(), "podinfo".into()))
    );
    let message = proto::policy(&policy);
    assert_eq!(
        proto::backend_authorities(&message),
        ["podinfo.shop.svc.cluster.local:9898"]
    );
    let error = index
        .apply_service(&service(
            "shop",
            "podinfo",
            "10.96.0.10",
            serde_json::json!({"retry.linkerd.io/http": "sometimes"}),
        ))
        .expect_err("a bad condition");
    assert_eq!(error.field, "metadata.annotations[retry.linkerd.io/http]");
    assert_eq!(
        index
            .policy("shop", "podinfo", 9898, None)
            .map(|p| p.retry.is_some()),
        Some(true),
        "the last valid Service stays"
    );
}

/// The guide's canary: an HTTPRoute whose backendRefs weigh the Service
/// and its canary 90/10, with its own retries and timeout; a backend that
/// does not exist is kept (requests to it fail) and named; a route naming
/// another port does not attach; a watch sees a weight change.
#[test]
fn an_httproute_splits_by_weight_and_a_watch_follows_it() {
    let mut index = index();
    let canary = |primary: u32, canary: u32| {
        route(
            "shop",
            "podinfo-canary",
            "2026-12-01T00:00:00Z",
            serde_json::json!({"retry.linkerd.io/http": "5xx", "retry.linkerd.io/limit": "2", "timeout.linkerd.io/request": "2s"}),
            serde_json::json!({
                "parentRefs": [{"group": "core", "kind": "Service", "name": "podinfo", "port": 9898}],
                "rules": [{"backendRefs": [
                    {"name": "podinfo", "port": 9898, "weight": primary},
                    {"name": "podinfo-canary", "port": 9898, "weight": canary},
                    {"name": "podinfo-gone", "port": 9898, "weight": 0}
                ]}]
            }),
        )
    };
    let mut watch = index.watch("shop", "podinfo", 9898, None);
    apply(&mut index, &canary(90, 10)).expect("valid");
    assert!(watch.has_changed().expect("open"));
    let policy = watch.borrow_and_update().clone().expect("known");
    let ResolvedRoute { key, rules, .. } = &policy.routes[0];
    assert_eq!(key.name, "podinfo-canary");
    let weights: Vec<(String, u32, bool)> = rules[0]
        .backends
        .iter()
        .map(|b| {
            (
                b.backend.name.clone(),
                b.backend.weight,
                b.authority.is_some(),
            )
        })
        .collect();
    assert_eq!(
        weights,
        [
            ("podinfo".to_owned(), 90, true),
            ("podinfo-canary".to_owned(), 10, true),
            ("podinfo-gone".to_owned(), 0, false)
        ]
    );
    assert!(matches!(&rules[0].retry, Some(RouteRetry::Http(r)) if r.limit == 2));
    assert_eq!(rules[0].timeouts.request, Some(Duration::from_secs(2)));
    assert!(
        index
            .policy("shop", "podinfo", 9999, None)
            .expect("known")
            .routes
            .is_empty(),
        "the route names port 9898 only"
    );
    apply(&mut index, &canary(50, 50)).expect("valid");
    let moved = watch.borrow_and_update().clone().expect("known");
    assert_eq!(moved.routes[0].rules[0].backends[1].backend.weight, 50);
}

/// Routes are ordered oldest first; a filter the proxy cannot apply is
/// refused by field and the route's last valid version stays.
#[test]
fn routes_are_oldest_first_and_a_bad_filter_is_refused_by_field() {
    let mut index = index();
    let to_podinfo = |filters: serde_json::Value| {
        serde_json::json!({
            "parentRefs": [{"kind": "Service", "name": "podinfo"}],
            "rules": [{"matches": [{"path": {"value": "/api"}}], "filters": filters}]
        })
    };
    apply(
        &mut index,
        &route(
            "shop",
            "b-newer",
            "2026-12-02T00:00:00Z",
            serde_json::json!({}),
            to_podinfo(serde_json::json!([])),
        ),
    )
    .expect("valid");
    apply(
        &mut index,
        &route(
            "shop",
            "a-older",
            "2026-12-01T00:00:00Z",
            serde_json::json!({}),
            to_podinfo(serde_json::json!([{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "X-Canary", "value": "1"}]}}])),
        ),
    )
    .expect("valid");
    let policy = index.policy("shop", "podinfo", 9898, None).expect("known");
    let names: Vec<&str> = policy.routes.iter().map(|r| r.key.name.as_str()).collect();
    assert_eq!(names, ["a-older", "b-newer"]);
    let error = apply(
        &mut index,
        &route(
            "shop",
            "a-older",
            "2026-12-01T00:00:00Z",
            serde_json::json!({}),
            to_podinfo(serde_json::json!([{"type": "RequestMirror", "requestMirror": {}}])),
        ),
    )
    .expect_err("mirroring is not supported");
    assert_eq!(error.field, "spec.rules[0].filters[0].type");
    let kept = index.policy("shop", "podinfo", 9898, None).expect("known");
    assert_eq!(
        kept.routes[0].rules[0].filters,
        [Filter::RequestHeaders(model::HeaderModifier {
            set: vec![("x-canary".into(), "1".into())],
            ..model::HeaderModifier::default()
        })],
        "the last valid route stays"
    );
    // A backend's filters may modify headers, not redirect.
    let error = apply(
        &mut index,
        &route(
            "shop",
            "a-older",
            "2026-12-01T00:00:00Z",
            serde_json::json!({}),
            serde_json::json!({
                "parentRefs": [{"kind": "Service", "name": "podinfo"}],
                "rules": [{"backendRefs": [{"name": "podinfo", "port": 9898, "filters": [
                    {"type": "RequestRedirect", "requestRedirect": {"statusCode": 301}}
                ]}]}]
            }),
        ),
    )
    .expect_err("a redirect on a backend");
    assert_eq!(error.field, "spec.rules[0].backendRefs[0].filters[0].type");
}

fn apply_grpc(
    index: &mut OutboundIndex,
    name: &str,
    annotations: serde_json::Value,
    spec: serde_json::Value,
) -> Result<(), Invalid> {
    let route: mesh_api::crds::grpc_route::GrpcRoute = object(serde_json::json!({
        "metadata": {"namespace": "shop", "name": name, "creationTimestamp": "2026-12-01T00:00:00Z", "annotations": annotations},
        "spec": spec
    }));
    let info = OutboundIndex::check_grpc_route(&route.metadata, &route.spec)?;
    index.put_route(
        "shop",
        RouteKind::Grpc,
        RouteKey {
            group: "gateway.networking.k8s.io".into(),
            name: name.into(),
        },
        info,
    );
    Ok(())
}

/// A GRPCRoute replaces a port's HTTP routes (not on an HTTP/1-only
/// port), keeps its service/method matches and its gRPC retry codes, and
/// shares a name with an HTTPRoute without either replacing the other; a
/// regular expression on a method or a redirect filter is refused by field.
#[test]
fn a_grpcroute_routes_calls_and_retries_on_its_codes() {
    let mut index = index();
    let http = route(
        "shop",
        "podinfo",
        "2026-11-01T00:00:00Z",
        serde_json::json!({}),
        serde_json::json!({"parentRefs": [{"kind": "Service", "name": "podinfo"}]}),
    );
    apply(&mut index, &http).expect("valid");
    apply_grpc(
        &mut index,
        "podinfo",
        serde_json::json!({"retry.linkerd.io/grpc": "unavailable,internal", "retry.linkerd.io/limit": "3"}),
        serde_json::json!({
            "parentRefs": [{"kind": "Service", "name": "podinfo", "port": 9999}],
            "rules": [{
                "matches": [{"method": {"service": "grpc.health.v1.Health", "method": "Check"}, "headers": [{"name": "x-team", "value": "ops"}]}],
                "backendRefs": [{"name": "podinfo", "port": 9999, "weight": 3}, {"name": "podinfo-canary", "port": 9999, "weight": 1}]
            }]
        }),
    )
    .expect("valid");
    let grpc = index.policy("shop", "podinfo", 9999, None).expect("known");
    assert_eq!(grpc.routes.len(), 1, "the gRPC route replaces the HTTP one");
    let route = &grpc.routes[0];
    assert_eq!(route.kind, RouteKind::Grpc);
    assert_eq!(
        route.rules[0].matches,
        Matches::Grpc(vec![model::GrpcMatch {
            service: Some("grpc.health.v1.Health".into()),
            method: Some("Check".into()),
            headers: vec![(
                "x-team".into(),
                crate::routes::ValueMatch::Exact("ops".into())
            )],
        }])
    );
    assert!(matches!(
        &route.rules[0].retry,
        Some(RouteRetry::Grpc(r)) if r.limit == 3 && r.conditions.as_deref() == Some(&[
            GrpcRetryCondition::Unavailable, GrpcRetryCondition::Internal
        ][..])
    ));
    let weights: Vec<u32> = route.rules[0]
        .backends
        .iter()
        .map(|b| b.backend.weight)
        .collect();
    assert_eq!(weights, [3, 1]);
    // The message is the gRPC protocol, with Linkerd's retry conditions.
    let message = proto::policy(&grpc);
    let Some(api_kind) = message.protocol.and_then(|p| p.kind) else {
        panic!("a protocol");
    };
    let linkerd2_proxy_api::outbound::proxy_protocol::Kind::Grpc(g) = api_kind else {
        panic!("the gRPC protocol, not {api_kind:?}");
    };
    let conditions = g.routes[0].rules[0]
        .retry
        .as_ref()
        .and_then(|r| r.conditions)
        .expect("conditions");
    assert!(conditions.unavailable && conditions.internal && !conditions.cancelled);
    // Port 9898 keeps its HTTPRoute of the same name.
    let http_port = index.policy("shop", "podinfo", 9898, None).expect("known");
    assert_eq!(http_port.routes[0].kind, RouteKind::Http);

    for (spec, field) in [
        (
            serde_json::json!({"parentRefs": [{"kind": "Service", "name": "podinfo"}],
                "rules": [{"matches": [{"method": {"type": "RegularExpression", "service": "x.*"}}]}]}),
            "spec.rules[0].matches[0].method.type",
        ),
        (
            serde_json::json!({"parentRefs": [{"kind": "Service", "name": "podinfo"}],
                "rules": [{"filters": [{"type": "RequestRedirect", "requestRedirect": {"statusCode": 301}}]}]}),
            "spec.rules[0].filters[0].type",
        ),
    ] {
        let error =
            apply_grpc(&mut index, "podinfo", serde_json::json!({}), spec).expect_err("refused");
        assert_eq!(error.field, field);
    }
    assert_eq!(
        index
            .policy("shop", "podinfo", 9999, None)
            .expect("known")
            .routes[0]
            .rules[0]
            .backends
            .len(),
        2,
        "the last valid GRPCRoute stays"
    );
}

/// A route in another namespace whose parentRef names a Service (a
/// consumer route) applies only to clients of its own namespace, before the
/// Service's own routes; it cannot change what the Service's namespace or a
/// third namespace's clients get (the attack: a tenant redirecting everyone's
/// traffic to a Service it does not own), and its status names its parent's
/// namespace.
#[test]
fn a_consumer_route_applies_only_to_its_own_namespaces_clients() {
    let mut index = index();
    index
        .apply_service(&service(
            "mallory",
            "sink",
            "10.96.0.66",
            serde_json::json!({}),
        ))
        .expect("valid");
    let to = |ns: &str, name: &str, created: &str, backend_ns: &str, backend: &str| {
        route(
            ns,
            name,
            created,
            serde_json::json!({}),
            serde_json::json!({
                "parentRefs": [{"group": "core", "kind": "Service", "namespace": "shop", "name": "podinfo", "port": 9898}],
                "rules": [{"backendRefs": [{"namespace": backend_ns, "name": backend, "port": 9898}]}]
            }),
        )
    };
    let mut shop = index.watch("shop", "podinfo", 9898, Some("shop"));
    let mut third = index.watch("shop", "podinfo", 9898, Some("frontend"));
    let mut mallory = index.watch("shop", "podinfo", 9898, Some("mallory"));
    // The producer's canary is older than the consumer's route.
    apply(
        &mut index,
        &to(
            "shop",
            "canary",
            "2026-12-01T00:00:00Z",
            "shop",
            "podinfo-canary",
        ),
    )
    .expect("valid");
    let steal_route = to(
        "mallory",
        "steal",
        "2026-12-02T00:00:00Z",
        "mallory",
        "sink",
    );
    apply(&mut index, &steal_route).expect("valid");
    let names = |policy: &OutboundPolicy| -> Vec<(String, String, String)> {
        policy
            .routes
            .iter()
            .map(|r| {
                (
                    r.namespace.clone(),
                    r.key.name.clone(),
                    r.rules[0].backends[0].backend.name.clone(),
                )
            })
            .collect()
    };
    let canary = (
        "shop".to_owned(),
        "canary".to_owned(),
        "podinfo-canary".to_owned(),
    );
    let steal = ("mallory".to_owned(), "steal".to_owned(), "sink".to_owned());
    for (who, watch) in [("shop", &mut shop), ("frontend", &mut third)] {
        let policy = watch.borrow_and_update().clone().expect("known");
        assert_eq!(
            names(&policy),
            std::slice::from_ref(&canary),
            "{who} sees only the producer route"
        );
    }
    let policy = mallory.borrow_and_update().clone().expect("known");
    assert_eq!(
        names(&policy),
        [steal.clone(), canary.clone()],
        "mallory's clients get their own route first, then the producer's"
    );
    assert_eq!(
        index
            .policy("shop", "podinfo", 9898, None)
            .map(|p| names(&p)),
        Some(vec![canary.clone()]),
        "a client that names no namespace gets the producer's routes"
    );
    // Deleting the consumer route reaches its namespace's clients.
    index.put_route(
        "mallory",
        RouteKind::Http,
        RouteKey {
            group: "gateway.networking.k8s.io".into(),
            name: "steal".into(),
        },
        None,
    );
    assert!(mallory.has_changed().expect("open"));
    let policy = mallory.borrow_and_update().clone().expect("known");
    assert_eq!(names(&policy), [canary]);
    assert!(!shop.has_changed().expect("open"));

    // Status: a consumer route's parent is in another namespace, named so.
    apply(&mut index, &steal_route).expect("valid");
    let statuses = index.route_statuses();
    let (_, status) = statuses
        .iter()
        .find(|(r, _)| r.namespace == "mallory")
        .expect("the consumer route has a status");
    assert_eq!(status.parents[0].parent.namespace, "shop");
    assert_eq!(status.parents[0].conditions[0].reason, "Accepted");
    apply(
        &mut index,
        &to("mallory", "lost", "2026-12-03T00:00:00Z", "mallory", "sink"),
    )
    .expect("valid");
    index.delete_service("shop", "podinfo");
    let statuses = index.route_statuses();
    let lost = statuses
        .iter()
        .find(|(r, _)| r.key.name == "lost")
        .map(|(_, s)| &s.parents[0].conditions[0])
        .expect("a status");
    assert_eq!(
        (lost.reason, lost.message.as_str()),
        ("NoMatchingParent", "Service shop/podinfo not found")
    );
}
