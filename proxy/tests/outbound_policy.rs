//! Outbound routing from the policy controller's `OutboundPolicies` (see
//! `tests/mesh.rs` for the set-up), with the messages the real controller
//! computes from a user's Service and HTTPRoute: a header match sends
//! requests to a canary, the rest go to the Service; a `500-504` retry
//! condition with `retry.linkerd.io/limit: "1"` retries a failure once;
//! Linkerd's `outbound_http_route_*` families count the route's requests,
//! each backend's attempts and the retries; a Service without routes is
//! counted under its default route; and a ServiceProfile, once there is one,
//! wins over the HTTPRoute.

use mesh_test_util as support;

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::Full;
use linkerd2_proxy_api::destination::{self as api, DestinationProfile};
use support::*;

const CANARY: &str = "web-canary.test.svc.cluster.local:80";

fn objects() -> Vec<serde_json::Value> {
    let service = |name: &str, ip: &str| support::outbound::service("test", name, ip, 80);
    vec![
        service("web", "10.96.0.10"),
        service("web-canary", "10.96.0.11"),
        serde_json::json!({
            "kind": "HTTPRoute",
            "metadata": {"namespace": "test", "name": "web-route", "annotations": {
                "retry.linkerd.io/http": "500-504",
                "retry.linkerd.io/limit": "1"
            }},
            "spec": {
                "parentRefs": [{"group": "core", "kind": "Service", "name": "web", "port": 80}],
                "rules": [
                    {
                        "matches": [{"headers": [{"name": "x-canary", "value": "1"}]}],
                        "backendRefs": [{"name": "web-canary", "port": 80}]
                    },
                    {"backendRefs": [{"name": "web", "port": 80, "weight": 1}]}
                ]
            }
        }),
    ]
}

/// A GET of the Service from the client pod, with `headers`.
async fn get_with(mesh: &Mesh, headers: &[(&str, &str)]) -> u16 {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    mesh.client
        .run(async move {
            let mut req = http::Request::get("http://10.96.0.10/");
            for (name, value) in &headers {
                req = req.header(name.as_str(), value.as_str());
            }
            let req = req.body(Full::<Bytes>::default()).expect("request");
            request(&http_client(), req).await.map_or(0, |(s, _)| s)
        })
        .await
}

#[tokio::test]
async fn an_httproute_from_the_policy_controller_routes_retries_and_yields_to_a_serviceprofile() {
    let mesh = Mesh::start().await;
    mesh.web(DestinationProfile::default(), meshed(&[(8080, "web-1")]));
    mesh.state
        .set_endpoints(CANARY, meshed(&[(8081, "canary")]));
    mesh.state.set_outbound_policy(
        WEB_ADDR,
        support::outbound::policy(&objects(), "test", "web", 80),
    );
    let web = mesh.app("web-1", 8080).await;
    let canary = mesh.app("canary", 8081).await;

    // The header match takes the canary from the first request on; the
    // rest go to the Service.
    assert_eq!(get_with(&mesh, &[("x-canary", "1")]).await, 200);
    assert_eq!(
        canary.hits(),
        1,
        "the first request took the route:\n{}",
        mesh.logs()
    );
    let before = (web.hits(), canary.hits());
    for _ in 0..10 {
        assert_eq!(get_with(&mesh, &[("x-canary", "1")]).await, 200);
        assert_eq!(get_with(&mesh, &[]).await, 200);
    }
    assert_eq!(
        (web.hits() - before.0, canary.hits() - before.1),
        (10, 10),
        "the header decides"
    );

    // A 500 is in the route's 500-504 range: retried once, its limit.
    web.failing.store(true, Ordering::SeqCst);
    let before = web.hits();
    assert_eq!(get_with(&mesh, &[]).await, 500);
    assert_eq!(web.hits() - before, 2, "one attempt and one retry");
    web.failing.store(false, Ordering::SeqCst);

    // Linkerd's per-route and per-backend families: 21 requests to the
    // route (one answered 500), 22 attempts (the retry too), each backend
    // named.
    let metrics = mesh.client_metrics().await;
    let route = [
        "parent_kind=\"Service\"",
        "parent_name=\"web\"",
        "parent_port=\"80\"",
        "route_kind=\"HTTPRoute\"",
        "route_name=\"web-route\"",
    ];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        route.iter().copied().chain(extra.iter().copied()).collect()
    };
    assert_eq!(
        sample(
            &metrics,
            "outbound_http_route_request_statuses_total",
            &with(&["http_status=\"200\""])
        ),
        21.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "outbound_http_route_request_statuses_total",
            &with(&["http_status=\"500\""])
        ),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            "outbound_http_route_request_duration_seconds_count",
            &route
        ),
        22.0
    );
    assert_eq!(
        sample(
            &metrics,
            "outbound_http_route_backend_requests_total",
            &with(&["backend_name=\"web-canary\""])
        ),
        11.0
    );
    assert_eq!(
        sample(
            &metrics,
            "outbound_http_route_backend_response_statuses_total",
            &with(&[
                "backend_name=\"web\"",
                "backend_port=\"80\"",
                "http_status=\"500\""
            ])
        ),
        2.0,
        "the attempt and its retry"
    );
    // The retry, under the route's labels: sent once, then past the
    // route's limit of one.
    for (family, expected) in [
        ("outbound_http_route_retry_requests_total", 1.0),
        ("outbound_http_route_retry_limit_exceeded_total", 1.0),
        ("outbound_http_route_retry_successes_total", 0.0),
    ] {
        assert_eq!(
            sample(&metrics, family, &with(&["hostname=\"10.96.0.10\""])),
            expected,
            "{family}\n{metrics}"
        );
    }

    // A ServiceProfile for the Service wins over its HTTPRoute.
    mesh.web(
        DestinationProfile {
            routes: vec![api::Route {
                condition: Some(api::RequestMatch {
                    r#match: Some(api::request_match::Match::Path(api::PathMatch {
                        regex: "/.*".into(),
                    })),
                }),
                metrics_labels: [("route".to_owned(), "all".to_owned())].into(),
                ..Default::default()
            }],
            ..Default::default()
        },
        meshed(&[(8080, "web-1")]),
    );
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let before = canary.hits();
        assert_eq!(get_with(&mesh, &[("x-canary", "1")]).await, 200);
        if canary.hits() == before {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ServiceProfile never took over"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A route backend whose Service does not exist keeps its share of the
/// split and answers it with the controller's failure (500, naming the
/// Service), as Linkerd's proxy does: the split never moves its share to
/// the other backends on its own.
#[tokio::test]
async fn a_route_backend_whose_service_is_gone_answers_its_share_with_500() {
    let mesh = Mesh::start().await;
    mesh.web(DestinationProfile::default(), meshed(&[(8080, "web-1")]));
    let objects = vec![
        support::outbound::service("test", "web", "10.96.0.10", 80),
        support::outbound::split_route("test", "web-route", "web", &[("web", 0), ("web-gone", 1)]),
    ];
    mesh.state.set_outbound_policy(
        WEB_ADDR,
        support::outbound::policy(&objects, "test", "web", 80),
    );
    let web = mesh.app("web-1", 8080).await;
    for _ in 0..5 {
        assert_eq!(get_with(&mesh, &[]).await, 500, "{}", mesh.logs());
    }
    assert_eq!(web.hits(), 0, "the missing backend's share is not moved");
}

/// A Service without any route resource still has Linkerd's route
/// families, under its default route (`route_kind="default"`), as a
/// dashboard built on them expects for every Service.
#[tokio::test]
async fn a_service_without_routes_is_counted_under_its_default_route() {
    let mesh = Mesh::start().await;
    mesh.web(DestinationProfile::default(), meshed(&[(8080, "web-1")]));
    mesh.state.set_outbound_policy(
        WEB_ADDR,
        support::outbound::policy(
            &[support::outbound::service("test", "web", "10.96.0.10", 80)],
            "test",
            "web",
            80,
        ),
    );
    let web = mesh.app("web-1", 8080).await;
    for _ in 0..5 {
        assert_eq!(get_with(&mesh, &[]).await, 200, "{}", mesh.logs());
    }
    assert_eq!(web.hits(), 5);
    let metrics = mesh.client_metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "outbound_http_route_request_statuses_total",
            &[
                "parent_name=\"web\"",
                "route_kind=\"default\"",
                "route_name=\"http\"",
                "http_status=\"200\""
            ]
        ),
        5.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "outbound_http_route_backend_requests_total",
            &["route_kind=\"default\"", "backend_name=\"web\""]
        ),
        5.0,
        "{metrics}"
    );
}
