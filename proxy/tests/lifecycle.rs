//! The proxy's lifecycle end to end (see `tests/mesh.rs` for the set-up):
//! SIGTERM and `POST /shutdown` drain in-flight requests before the proxy
//! exits, and `mesh-init` can run twice.

use mesh_test_util as support;

use std::time::Duration;

use linkerd2_proxy_api::destination::DestinationProfile;
use support::*;

async fn web_mesh() -> Mesh {
    let mesh = Mesh::start().await;
    mesh.web(DestinationProfile::default(), meshed(&[(8080, "web-1")]));
    mesh.app("web-1", 8080).await;
    mesh
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_then_exits() {
    let mut mesh = web_mesh().await;
    let in_flight = mesh
        .client
        .spawn(async { get("http://10.96.0.10/delay/1500").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    mesh.signal_proxy(Side::Server, "TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = mesh
        .client
        .run(async { get("http://10.96.0.10/").await })
        .await;
    let (status, body) = in_flight
        .await
        .expect("task")
        .expect("the in-flight request completes");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("web-1"), "{body}");
    assert!(
        after.as_ref().map(|(s, _)| *s != 200).unwrap_or(true),
        "a draining proxy accepts no new connection: {after:?}"
    );
    let exit = mesh.wait_proxy(Side::Server);
    assert!(
        exit.success(),
        "the proxy exits cleanly after draining: {exit}"
    );
}

#[tokio::test]
async fn post_shutdown_from_the_pod_stops_the_proxy() {
    let mut mesh = web_mesh().await;
    let (status, _) = mesh
        .server
        .run(async {
            let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http();
            request(
                &client,
                http::Request::post("http://127.0.0.1:4191/shutdown")
                    .body(Default::default())
                    .expect("request"),
            )
            .await
        })
        .await
        .expect("an answer");
    assert_eq!(status, 200);
    assert!(mesh.wait_proxy(Side::Server).success());
}

#[test]
fn mesh_init_twice_leaves_one_copy_of_each_rule() {
    let ns = Netns::new("init");
    let init = bin(option_env!("CARGO_BIN_EXE_mesh-init"), "mesh-init");
    let init = init.to_string_lossy();
    let args = [
        "--inbound-ports-to-ignore",
        "4190,4191",
        "--outbound-ports-to-ignore",
        "443",
    ];
    ns.exec(&init, &args);
    let first =
        String::from_utf8_lossy(&ns.exec("iptables-save", &["-t", "nat"]).stdout).into_owned();
    ns.exec(&init, &args);
    let second =
        String::from_utf8_lossy(&ns.exec("iptables-save", &["-t", "nat"]).stdout).into_owned();
    let rules = |save: &str| {
        let mut rules: Vec<String> = save
            .lines()
            .filter(|l| l.starts_with("-A"))
            .map(str::to_owned)
            .collect();
        rules.sort();
        rules
    };
    assert_eq!(
        rules(&first),
        rules(&second),
        "the second run changed nothing"
    );
    for expected in [
        "-A PREROUTING -j PROXY_INIT_REDIRECT",
        "-A OUTPUT -j PROXY_INIT_OUTPUT",
        "--uid-owner 2102",
        "--to-ports 4143",
        "--to-ports 4140",
    ] {
        assert_eq!(
            rules(&second)
                .iter()
                .filter(|r| r.contains(expected))
                .count(),
            1,
            "{expected} once in\n{second}"
        );
    }
    let dry = ns.exec(&init, &["--dry-run"]);
    assert!(String::from_utf8_lossy(&dry.stdout).contains("-j REDIRECT --to-ports 4140"));
}

#[tokio::test]
async fn certificate_renewals_under_load_fail_no_request() {
    let mesh = Mesh::start_with_cert_lifetime(Duration::from_secs(3)).await;
    mesh.web(DestinationProfile::default(), meshed(&[(8080, "web-1")]));
    mesh.app("web-1", 8080).await;
    let load = steady_load(&mesh, Duration::from_secs(7), 4).await;
    let statuses = load.await.expect("load");
    let failed = statuses.iter().filter(|s| **s != 200).count();
    assert_eq!(failed, 0, "{failed} of {} requests failed", statuses.len());
    let certified = mesh.state.certified.lock().expect("certified").clone();
    for identity in [CLIENT_ID, WEB_ID] {
        let count = certified.iter().filter(|i| *i == identity).count();
        assert!(
            count >= 3,
            "{identity} certified {count} times in 7 s with 3 s certificates"
        );
    }
}

#[tokio::test]
async fn a_control_plane_restart_under_load_fails_no_request_and_changes_catch_up() {
    let mut mesh = Mesh::start().await;
    mesh.web(DestinationProfile::default(), meshed(&[(8081, "a")]));
    let a = mesh.app("a", 8081).await;
    let b = mesh.app("b", 8082).await;
    let load = steady_load(&mesh, Duration::from_secs(8), 4).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    mesh.stop_controller();
    tokio::time::sleep(Duration::from_millis(500)).await;
    mesh.state
        .set_endpoints("web.test.svc.cluster.local:80", meshed(&[(8082, "b")]));
    let a_during_outage = a.hits();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        a.hits() > a_during_outage,
        "the last answer keeps serving while discovery is down"
    );
    assert_eq!(b.hits(), 0, "nothing new is known while discovery is down");
    mesh.start_controller().await;
    let mut statuses = load.await.expect("load");
    // The proxy reconnects with jittered backoff (at most 3.2 s apart after
    // a two-second outage): keep the load on until the change arrives,
    // within a bound no backoff reaches.
    for _ in 0..15 {
        if b.hits() > 0 {
            break;
        }
        let more = steady_load(&mesh, Duration::from_secs(1), 2).await;
        statuses.extend(more.await.expect("load"));
    }
    let failed = statuses.iter().filter(|s| **s != 200).count();
    assert_eq!(failed, 0, "{failed} of {} requests failed", statuses.len());
    assert!(
        b.hits() > 0,
        "within 15 s of the restart the watch caught up with the change"
    );
}
