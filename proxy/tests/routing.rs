//! Routing through the proxy end to end (see `tests/mesh.rs` for the set-up):
//! retries under the budget, route timeouts, traffic splits and retries
//! across their backends, endpoint changes under load, and failure accrual.

use mesh_test_util as support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use linkerd2_proxy_api::destination::{self as api, DestinationProfile};
use support::*;

fn route(regex: &str, name: &str, retryable: bool, timeout: Option<Duration>) -> api::Route {
    api::Route {
        condition: Some(api::RequestMatch {
            r#match: Some(api::request_match::Match::Path(api::PathMatch {
                regex: regex.into(),
            })),
        }),
        metrics_labels: [("route".to_owned(), name.to_owned())].into(),
        is_retryable: retryable,
        timeout: timeout.map(|t| t.try_into().expect("duration")),
        ..Default::default()
    }
}

#[tokio::test]
async fn retries_stop_at_the_budget() {
    let mesh = Mesh::start().await;
    mesh.web(
        DestinationProfile {
            routes: vec![route("/.*", "all", true, None)],
            retry_budget: Some(api::RetryBudget {
                retry_ratio: 0.0,
                min_retries_per_second: 1,
                ttl: Some(Duration::from_secs(10).try_into().expect("ttl")),
            }),
            ..Default::default()
        },
        meshed(&[(8080, "web-1")]),
    );
    let app = mesh.app("web-1", 8080).await;
    app.failing.store(true, Ordering::SeqCst);
    let statuses = load(&mesh, "/", 20, 1).await;
    assert!(statuses.iter().all(|s| *s == 500), "{statuses:?}");
    assert_eq!(
        app.hits(),
        30,
        "20 requests and the 10 retries the budget allows (1/s over 10 s, no ratio)"
    );
    let metrics = mesh.client_metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "outbound_http_route_retry_requests_total",
            &["route=\"all\""]
        ),
        10.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "outbound_http_route_retry_limit_exceeded_total",
            &["route=\"all\""]
        ),
        20.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "route_actual_request_total", &["route=\"all\""]),
        30.0
    );
}

#[tokio::test]
async fn a_route_timeout_answers_504() {
    let mesh = Mesh::start().await;
    mesh.web(
        DestinationProfile {
            routes: vec![route(
                "/delay/.*",
                "slow",
                false,
                Some(Duration::from_millis(200)),
            )],
            ..Default::default()
        },
        meshed(&[(8080, "web-1")]),
    );
    mesh.app("web-1", 8080).await;
    let (slow, fast) = mesh
        .client
        .run(async {
            (
                get("http://10.96.0.10/delay/3000").await,
                get("http://10.96.0.10/delay/1").await,
            )
        })
        .await;
    let (status, body) = slow.expect("a response");
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("timed out"), "{body}");
    assert_eq!(fast.expect("a response").0, 200);
    let metrics = mesh.client_metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "response_total",
            &[
                "route=\"slow\"",
                "status_code=\"504\"",
                "classification=\"failure\""
            ]
        ),
        1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn a_90_10_split_lands_within_three_percent_over_2000_requests() {
    let mesh = Mesh::start().await;
    mesh.service(
        WEB_ADDR,
        WEB,
        DestinationProfile {
            dst_overrides: vec![
                api::WeightedDst {
                    authority: "web-a.test.svc.cluster.local:80".into(),
                    weight: 900_000,
                    ..Default::default()
                },
                api::WeightedDst {
                    authority: "web-b.test.svc.cluster.local:80".into(),
                    weight: 100_000,
                    ..Default::default()
                },
            ],
            ..Default::default()
        },
    );
    mesh.state
        .set_endpoints("web-a.test.svc.cluster.local:80", meshed(&[(8081, "a")]));
    mesh.state
        .set_endpoints("web-b.test.svc.cluster.local:80", meshed(&[(8082, "b")]));
    let a = mesh.app("a", 8081).await;
    let b = mesh.app("b", 8082).await;
    let statuses = load(&mesh, "/", 2000, 8).await;
    assert!(statuses.iter().all(|s| *s == 200));
    let share = a.hits() as f64 / 2000.0;
    assert_eq!(a.hits() + b.hits(), 2000);
    assert!(
        (0.87..=0.93).contains(&share),
        "a got {share:.3} of the requests"
    );
}

/// A failover split before the weights move: the primary (all the weight)
/// fails, the secondary has none.
fn failover_split(mesh: &Mesh) {
    mesh.service(
        WEB_ADDR,
        WEB,
        DestinationProfile {
            routes: vec![route("/.*", "all", true, None)],
            dst_overrides: vec![
                api::WeightedDst {
                    authority: "web-primary.test.svc.cluster.local:80".into(),
                    weight: 1_000_000,
                    ..Default::default()
                },
                api::WeightedDst {
                    authority: "web-east.test.svc.cluster.local:80".into(),
                    weight: 0,
                    ..Default::default()
                },
            ],
            ..Default::default()
        },
    );
    mesh.state.set_endpoints(
        "web-east.test.svc.cluster.local:80",
        meshed(&[(8082, "east")]),
    );
}

#[tokio::test]
async fn a_failing_primary_is_retried_on_the_secondary_of_its_split() {
    let mesh = Mesh::start().await;
    failover_split(&mesh);
    mesh.state.set_endpoints(
        "web-primary.test.svc.cluster.local:80",
        meshed(&[(8081, "primary")]),
    );
    let primary = mesh.app("primary", 8081).await;
    let east = mesh.app("east", 8082).await;
    primary.failing.store(true, Ordering::SeqCst);
    let statuses = load(&mesh, "/", 40, 4).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        primary.hits(),
        40,
        "every request went to the primary first"
    );
    assert_eq!(east.hits(), 40, "and was retried on the secondary");
    let metrics = mesh.client_metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "route_actual_response_total",
            &["dst_pod=\"primary\"", "classification=\"failure\""]
        ),
        40.0,
        "what the primary answered is counted, though retries hid it: {metrics}"
    );
}

#[tokio::test]
async fn a_primary_without_endpoints_is_skipped_at_once() {
    let mesh = Mesh::start().await;
    failover_split(&mesh);
    mesh.state
        .set_endpoints("web-primary.test.svc.cluster.local:80", meshed(&[]));
    let east = mesh.app("east", 8082).await;
    let statuses = load(&mesh, "/", 20, 2).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(east.hits(), 20);
}

#[tokio::test]
async fn an_attempt_given_up_before_its_answer_counts_as_a_failure() {
    let mesh = Mesh::start().await;
    mesh.web(DestinationProfile::default(), meshed(&[(8080, "web-1")]));
    mesh.app("web-1", 8080).await;
    let gave_up = mesh
        .client
        .run(async {
            tokio::time::timeout(
                Duration::from_millis(500),
                get("http://10.96.0.10/delay/5000"),
            )
            .await
        })
        .await;
    assert!(gave_up.is_err(), "the caller gave up before the answer");
    let mut failures = 0.0;
    for _ in 0..50 {
        let metrics = mesh.client_metrics().await;
        failures = sample(
            &metrics,
            "route_actual_response_total",
            &["dst_pod=\"web-1\"", "classification=\"failure\""],
        );
        if failures > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(failures, 1.0, "a hung backend shows in its failures");
}

#[tokio::test]
async fn an_endpoint_change_under_load_fails_no_request() {
    let mesh = Mesh::start().await;
    mesh.web(DestinationProfile::default(), meshed(&[(8081, "a")]));
    let a = mesh.app("a", 8081).await;
    let b = mesh.app("b", 8082).await;
    let state = mesh.state.clone();
    let (a_in, b_in) = (a.clone(), b.clone());
    let changes = tokio::spawn(async move {
        let wait_for = |app: Arc<app::App>, hits: usize| async move {
            while app.hits() < hits {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        wait_for(a_in.clone(), 200).await;
        state.set_endpoints(WEB, meshed(&[(8081, "a"), (8082, "b")]));
        wait_for(b_in.clone(), 200).await;
        state.set_endpoints(WEB, meshed(&[(8082, "b")]));
        a_in.hits()
    });
    let statuses = load(&mesh, "/", 1500, 8).await;
    let a_at_removal = changes.await.expect("changes");
    let failed = statuses.iter().filter(|s| **s != 200).count();
    assert_eq!(failed, 0, "{failed} of {} requests failed", statuses.len());
    assert!(b.hits() >= 200);
    assert!(
        a.hits() <= a_at_removal + 8,
        "a removed endpoint gets nothing new beyond what was in flight ({} then {})",
        a_at_removal,
        a.hits()
    );
}

#[tokio::test]
async fn a_failing_endpoint_is_ejected_and_comes_back() {
    let mesh = Mesh::start().await;
    mesh.web(
        DestinationProfile::default(),
        meshed(&[(8081, "a"), (8082, "b")]),
    );
    let a = mesh.app("a", 8081).await;
    let b = mesh.app("b", 8082).await;
    a.failing.store(true, Ordering::SeqCst);
    let statuses = load(&mesh, "/", 300, 1).await;
    let failures = statuses.iter().filter(|s| **s != 200).count();
    assert!(
        a.hits() <= 10 && failures == a.hits(),
        "after 7 failures in a row the endpoint is out, probed now and then: a got {} requests, {failures} failed",
        a.hits()
    );
    a.failing.store(false, Ordering::SeqCst);
    let before = a.hits();
    let mut back = false;
    for _ in 0..50 {
        load(&mesh, "/", 20, 1).await;
        if a.hits() > before + 5 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        back,
        "the recovered endpoint was probed back in (a: {}, b: {})",
        a.hits(),
        b.hits()
    );
}
