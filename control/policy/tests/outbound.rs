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
