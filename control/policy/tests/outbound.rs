//! The policy controller's `OutboundPolicies` against the real
//! kube-apiserver, as a proxy asks: the guide's HTTPRoute, written at
//! `gateway.networking.k8s.io/v1beta1` with Linkerd's retry and timeout
//! annotations, splits a Service between itself and a canary; the answer
//! is the same by authority and by cluster IP; an open watch sees the
//! weights move.

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use linkerd2_proxy_api::outbound::outbound_policies_client::OutboundPoliciesClient;
use linkerd2_proxy_api::outbound::{
    OutboundPolicy, TrafficSpec, http_route, proxy_protocol, traffic_spec,
};
use mesh_clusters::testing::shared_cluster;
use tokio_stream::StreamExt;

mod support;
use support::{apply, start};

fn by_authority(authority: &str) -> TrafficSpec {
    TrafficSpec {
        source_workload: "test:client".into(),
        target: Some(traffic_spec::Target::Authority(authority.into())),
    }
}

/// Applies the Service `podinfo` with `ports` (YAML flow) in `ns`.
async fn apply_podinfo_service(client: &kube::Client, ns: &str, ports: &str) {
    apply(
        client,
        ns,
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: podinfo, namespace: {ns}}}\n\
             spec: {{ports: {ports}, selector: {{app: podinfo}}}}\n"
        ),
    )
    .await;
}

/// The weights of the first rule of the first HTTP/1 route.
fn weights(policy: &OutboundPolicy) -> Vec<(String, u32)> {
    let Some(proxy_protocol::Kind::Detect(detect)) =
        policy.protocol.as_ref().and_then(|p| p.kind.clone())
    else {
        panic!("a detecting port: {policy:?}");
    };
    let rule = &detect.http1.expect("HTTP/1").routes[0].rules[0];
    let Some(http_route::distribution::Kind::RandomAvailable(random)) =
        rule.backends.as_ref().and_then(|b| b.kind.clone())
    else {
        panic!("weighted backends: {rule:?}");
    };
    random
        .backends
        .iter()
        .map(|b| {
            let backend = b.backend.as_ref().and_then(|b| b.backend.as_ref());
            let name = match backend
                .and_then(|b| b.metadata.as_ref())
                .and_then(|m| m.kind.clone())
            {
                Some(linkerd2_proxy_api::meta::metadata::Kind::Resource(r)) => r.name,
                other => panic!("a Service backend: {other:?}"),
            };
            (name, b.weight)
        })
        .collect()
}

fn guide_route(ns: &str, primary: u32, canary: u32) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: HTTPRoute\n\
         metadata:\n  name: podinfo-route\n  namespace: {ns}\n  annotations:\n    \
         retry.linkerd.io/http: 500-504\n    retry.linkerd.io/limit: \"2\"\n    timeout.linkerd.io/request: 2s\n\
         spec:\n  parentRefs: [{{name: podinfo, kind: Service, group: core, port: 9898}}]\n  \
         rules: [{{backendRefs: [{{name: podinfo, port: 9898, weight: {primary}}}, {{name: podinfo-canary, port: 9898, weight: {canary}}}]}}]\n"
    )
}

#[tokio::test]
async fn an_httproute_canary_is_served_by_authority_and_ip_and_its_weights_follow() {
    let cluster = shared_cluster().await;
    let ns = cluster.namespace("outbound").await;
    let running = start(&cluster).await;
    for name in ["podinfo", "podinfo-canary"] {
        apply(
            &cluster.client,
            &ns,
            &format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\n\
                 spec: {{ports: [{{name: http, port: 9898}}], selector: {{app: {name}}}}}\n"
            ),
        )
        .await;
    }
    apply(&cluster.client, &ns, &guide_route(&ns, 90, 10)).await;
    let mut grpc = OutboundPoliciesClient::connect(format!("http://{}", running.addr))
        .await
        .expect("connect");
    let authority = format!("podinfo.{ns}.svc.cluster.local:9898");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let served = loop {
        match grpc.get(by_authority(&authority)).await {
            Ok(policy) if weights_or_none(policy.get_ref()).is_some() => break policy.into_inner(),
            Ok(_) | Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => panic!("the route never served: {other:?}"),
        }
    };
    assert_eq!(
        weights(&served),
        [
            ("podinfo".to_owned(), 90),
            ("podinfo-canary".to_owned(), 10)
        ]
    );
    let Some(proxy_protocol::Kind::Detect(detect)) =
        served.protocol.as_ref().and_then(|p| p.kind.clone())
    else {
        panic!("detect");
    };
    let rule = &detect.http1.expect("HTTP/1").routes[0].rules[0];
    let retry = rule.retry.as_ref().expect("the route's retries");
    assert_eq!(retry.max_retries, 2);
    let ranges = &retry.conditions.as_ref().expect("conditions").status_ranges;
    assert_eq!((ranges[0].start, ranges[0].end), (500, 504));
    assert_eq!(
        rule.timeouts.as_ref().and_then(|t| t.request),
        Some(prost_types::Duration {
            seconds: 2,
            nanos: 0
        })
    );

    // The same answer by cluster IP, as a proxy asks for an address.
    let ip: std::net::IpAddr = Api::<Service>::namespaced(cluster.client.clone(), &ns)
        .get("podinfo")
        .await
        .expect("Service")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("a cluster IP")
        .parse()
        .expect("an IP");
    let by_ip = grpc
        .get(TrafficSpec {
            source_workload: "test:client".into(),
            target: Some(traffic_spec::Target::Addr(
                std::net::SocketAddr::new(ip, 9898).into(),
            )),
        })
        .await
        .expect("Get by IP")
        .into_inner();
    assert_eq!(weights(&by_ip), weights(&served));

    // An open watch follows a weight change.
    let mut stream = grpc
        .watch(by_authority(&authority))
        .await
        .expect("Watch")
        .into_inner();
    apply(&cluster.client, &ns, &guide_route(&ns, 0, 100)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("the new weights within 30 s")
            .expect("stream open")
            .expect("a policy");
        if weights(&next)
            == [
                ("podinfo".to_owned(), 0),
                ("podinfo-canary".to_owned(), 100),
            ]
        {
            break;
        }
    }
}

/// The weighted backends, or `None` while the route is not yet served.
fn weights_or_none(policy: &OutboundPolicy) -> Option<Vec<(String, u32)>> {
    let Some(proxy_protocol::Kind::Detect(detect)) =
        policy.protocol.as_ref().and_then(|p| p.kind.clone())
    else {
        return None;
    };
    let rule = detect.http1?.routes.first()?.rules.first()?.clone();
    matches!(
        rule.backends.and_then(|b| b.kind),
        Some(http_route::distribution::Kind::RandomAvailable(_))
    )
    .then(|| weights(policy))
}

/// The `status.parents` conditions of our controller on a route, as
/// `(type, status, reason, message)`, once they satisfy `done`.
async fn conditions_when(
    client: &kube::Client,
    ns: &str,
    resource: &str,
    name: &str,
    done: impl Fn(&[(String, String, String, String)]) -> bool,
) -> Vec<(String, String, String, String)> {
    use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
    let kind = if resource == "grpcroutes" {
        "GRPCRoute"
    } else {
        "HTTPRoute"
    };
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", kind);
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, resource),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while tokio::time::Instant::now() < deadline {
        let object = api.get(name).await.expect("the route");
        seen = object
            .data
            .pointer("/status/parents")
            .and_then(|p| p.as_array())
            .into_iter()
            .flatten()
            .filter(|p| p["controllerName"] == "linkerd.io/policy-controller")
            .flat_map(|p| p["conditions"].as_array().cloned().unwrap_or_default())
            .map(|c| {
                let text = |key: &str| c[key].as_str().unwrap_or_default().to_owned();
                (
                    text("type"),
                    text("status"),
                    text("reason"),
                    text("message"),
                )
            })
            .collect();
        if done(&seen) {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{resource}/{name}'s status never got there; last seen: {seen:?}");
}

fn has(seen: &[(String, String, String, String)], type_: &str, status: &str, reason: &str) -> bool {
    seen.iter()
        .any(|(t, s, r, _)| t == type_ && s == status && r == reason)
}

/// What `kubectl get httproute -o yaml` tells a user: an accepted route
/// says so; a route naming a missing backend says which; a route to a
/// Service that does not exist says `NoMatchingParent`; a GRPCRoute
/// written at `v1alpha2` is accepted too; an edit the controller refuses
/// (a filter the proxy cannot apply) shows `Accepted=False` naming the
/// field, while proxies keep the previous routing.
#[tokio::test]
async fn route_status_says_whether_a_route_is_in_effect_and_why_not() {
    let cluster = shared_cluster().await;
    let ns = cluster.namespace("route-status").await;
    let running = start(&cluster).await;
    apply_podinfo_service(
        &cluster.client,
        &ns,
        "[{name: http, port: 9898}, {name: grpc, port: 9999}]",
    )
    .await;
    let route = |filters: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
             metadata: {{name: podinfo, namespace: {ns}}}\n\
             spec:\n  parentRefs: [{{name: podinfo, kind: Service, group: core, port: 9898}}]\n  \
             rules: [{{filters: {filters}, backendRefs: [{{name: podinfo, port: 9898, weight: 1}}, {{name: podinfo-gone, port: 9898, weight: 1}}]}}]\n"
        )
    };
    apply(&cluster.client, &ns, &route("[]")).await;
    let seen = conditions_when(&cluster.client, &ns, "httproutes", "podinfo", |c| {
        has(c, "Accepted", "True", "Accepted") && has(c, "ResolvedRefs", "False", "BackendNotFound")
    })
    .await;
    assert!(
        seen.iter().any(|(_, _, _, m)| m.contains("podinfo-gone")),
        "the missing backend is named: {seen:?}"
    );

    // An edit that cannot be applied: refused by field, the last valid
    // version still served.
    apply(
        &cluster.client,
        &ns,
        &route("[{type: URLRewrite, urlRewrite: {hostname: elsewhere}}]"),
    )
    .await;
    let seen = conditions_when(&cluster.client, &ns, "httproutes", "podinfo", |c| {
        has(c, "Accepted", "False", "UnsupportedValue")
    })
    .await;
    let message = &seen
        .iter()
        .find(|(t, ..)| t == "Accepted")
        .expect("Accepted")
        .3;
    assert!(
        message.contains("spec.rules[0].filters[0].type") && message.contains("last valid version"),
        "{message}"
    );
    // The conditions are about the refused edit's generation.
    let object =
        Api::<mesh_api::crds::http_route::HttpRoute>::namespaced(cluster.client.clone(), &ns)
            .get("podinfo")
            .await
            .expect("the route");
    let observed: Vec<Option<i64>> = object
        .status
        .iter()
        .flat_map(|s| &s.parents)
        .flat_map(|p| p["conditions"].as_array().cloned().unwrap_or_default())
        .map(|c| c["observedGeneration"].as_i64())
        .collect();
    assert!(
        !observed.is_empty() && observed.iter().all(|g| *g == object.metadata.generation),
        "observedGeneration {observed:?} is the route's generation {:?}",
        object.metadata.generation
    );
    let mut grpc = OutboundPoliciesClient::connect(format!("http://{}", running.addr))
        .await
        .expect("connect");
    let served = grpc
        .get(by_authority(&format!(
            "podinfo.{ns}.svc.cluster.local:9898"
        )))
        .await
        .expect("Get")
        .into_inner();
    assert_eq!(
        weights(&served).len(),
        2,
        "the previous routing stays in force"
    );

    // A route to a Service that does not exist; a GRPCRoute at v1alpha2.
    apply(
        &cluster.client,
        &ns,
        &format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
             metadata: {{name: nowhere, namespace: {ns}}}\n\
             spec: {{parentRefs: [{{name: nowhere, kind: Service, group: core}}]}}\n"
        ),
    )
    .await;
    conditions_when(&cluster.client, &ns, "httproutes", "nowhere", |c| {
        has(c, "Accepted", "False", "NoMatchingParent")
    })
    .await;
    apply(
        &cluster.client,
        &ns,
        &format!(
            "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: GRPCRoute\n\
             metadata: {{name: podinfo-grpc, namespace: {ns}}}\n\
             spec:\n  parentRefs: [{{name: podinfo, kind: Service, group: core, port: 9999}}]\n  \
             rules: [{{matches: [{{method: {{service: grpc.health.v1.Health, method: Check}}}}]}}]\n"
        ),
    )
    .await;
    conditions_when(&cluster.client, &ns, "grpcroutes", "podinfo-grpc", |c| {
        has(c, "Accepted", "True", "Accepted") && has(c, "ResolvedRefs", "True", "ResolvedRefs")
    })
    .await;
}

/// The route names of the HTTP/1 routes served.
fn route_names(policy: &OutboundPolicy) -> Vec<String> {
    let Some(proxy_protocol::Kind::Detect(detect)) =
        policy.protocol.as_ref().and_then(|p| p.kind.clone())
    else {
        return Vec::new();
    };
    detect
        .http1
        .map(|h| h.routes)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| match r.metadata.as_ref().and_then(|m| m.kind.clone()) {
            Some(linkerd2_proxy_api::meta::metadata::Kind::Resource(r)) => {
                Some(format!("{}/{}", r.namespace, r.name))
            }
            _ => None,
        })
        .collect()
}

/// A consumer route (an HTTPRoute in the client's namespace naming a
/// Service of another) is served to that namespace's proxies only, as they
/// name themselves in `source_workload`; the Service's own clients and a
/// third namespace's do not get it; its status names the parent with its
/// namespace; a malformed `source_workload` is refused, not served as
/// someone else.
#[tokio::test]
async fn a_consumer_route_is_served_only_to_its_namespace() {
    let cluster = shared_cluster().await;
    let ns = cluster.namespace("producer").await;
    let consumer = cluster.namespace("consumer").await;
    let running = start(&cluster).await;
    apply_podinfo_service(&cluster.client, &ns, "[{name: http, port: 9898}]").await;
    apply(
        &cluster.client,
        &consumer,
        &format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
             metadata: {{name: mine, namespace: {consumer}}}\n\
             spec:\n  parentRefs: [{{name: podinfo, namespace: {ns}, kind: Service, group: core, port: 9898}}]\n  \
             rules: [{{backendRefs: [{{name: podinfo, namespace: {ns}, port: 9898}}]}}]\n"
        ),
    )
    .await;
    let mut grpc = OutboundPoliciesClient::connect(format!("http://{}", running.addr))
        .await
        .expect("connect");
    let authority = format!("podinfo.{ns}.svc.cluster.local:9898");
    let from = |workload: String| TrafficSpec {
        source_workload: workload,
        target: Some(traffic_spec::Target::Authority(authority.clone())),
    };
    // The controller answers NOT_FOUND until it has indexed the Service.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut stream = loop {
        match grpc
            .watch(from(format!(r#"{{"ns":"{consumer}","pod":"client"}}"#)))
            .await
        {
            Ok(stream) => break stream.into_inner(),
            Err(status)
                if status.code() == tonic::Code::NotFound
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => panic!("Watch: {status:?}"),
        }
    };
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("the consumer route within 30 s")
            .expect("stream open")
            .expect("a policy");
        if route_names(&next) == [format!("{consumer}/mine")] {
            break;
        }
    }
    for workload in [format!("{ns}:client"), "elsewhere:client".to_owned()] {
        let served = grpc
            .get(from(workload.clone()))
            .await
            .expect("Get")
            .into_inner();
        assert!(
            route_names(&served).is_empty(),
            "{workload} gets the default route only: {served:?}"
        );
    }
    let refused = grpc
        .get(from(r#"{"pod":"no-namespace"}"#.into()))
        .await
        .expect_err("a workload without a namespace");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");

    let seen = conditions_when(&cluster.client, &consumer, "httproutes", "mine", |c| {
        has(c, "Accepted", "True", "Accepted")
    })
    .await;
    assert!(
        has(&seen, "ResolvedRefs", "True", "ResolvedRefs"),
        "{seen:?}"
    );
    let object =
        Api::<mesh_api::crds::http_route::HttpRoute>::namespaced(cluster.client.clone(), &consumer)
            .get("mine")
            .await
            .expect("the route");
    let parent_refs: Vec<serde_json::Value> = object
        .status
        .iter()
        .flat_map(|s| &s.parents)
        .map(|p| p["parentRef"].clone())
        .collect();
    assert_eq!(
        parent_refs,
        [
            serde_json::json!({"group": "core", "kind": "Service", "namespace": ns, "name": "podinfo", "port": 9898})
        ]
    );
}
