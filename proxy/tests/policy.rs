//! Inbound authorization end to end: the server pod's proxy gets each
//! port's policy from the (mock) policy controller over the real
//! `InboundServerPolicies` API, in the shape Linkerd's controller sends,
//! and enforces it: per request for HTTP (403 with `l5d-proxy-error`, the
//! change applying to the next request on an open connection; kubelet's
//! probe route allowed under a policy that allows nothing else), per
//! connection for opaque TCP (refused; closed when a change stops admitting
//! it), each decision counted with Linkerd's metric names, and the
//! admitted requests' golden metrics labelled with their Server, route and
//! authorization.

use mesh_test_util as support;

use std::time::Duration;

use linkerd2_proxy_api::destination::DestinationProfile;
use support::policy::{admits, opaque, server as server_detect};
use support::*;

async fn get_path(mesh: &Mesh, path: &str) -> (u16, String) {
    let url = format!("http://10.96.0.10{path}");
    mesh.client
        .run(async move { get(&url).await })
        .await
        .expect("an answer")
}

#[tokio::test]
async fn a_server_admits_the_identity_its_policy_names_and_a_change_applies_to_the_next_request() {
    let mesh = Mesh::start().await;
    mesh.web(DestinationProfile::default(), meshed(&[(8080, "web-1")]));
    let app = mesh.app("web-1", 8080).await;
    mesh.state.set_port_policy(
        8080,
        server_detect("web-http", vec![admits("web-clients", CLIENT_ID)]),
    );
    // The policy is watched from start-up: wait until it is in force.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sample(
        &mesh.server_metrics().await,
        "inbound_http_authz_allow_total",
        &["srv_name=\"web-http\""],
    ) < 1.0
    {
        get_path(&mesh, "/").await;
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Server's policy never applied\n{}",
            mesh.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = get_path(&mesh, "/").await;
    assert_eq!(status, 200);
    let metrics = mesh.server_metrics().await;
    assert!(
        sample(
            &metrics,
            "inbound_http_authz_allow_total",
            &[
                "srv_kind=\"server\"",
                "srv_name=\"web-http\"",
                "route_name=\"default\"",
                "authz_kind=\"authorizationpolicy\"",
                "authz_name=\"web-clients\"",
                "tls=\"true\"",
                &format!("client_id=\"{CLIENT_ID}\""),
            ]
        ) >= 1.0,
        "{metrics}"
    );
    // The request's own golden metrics carry the same Server, route and
    // authorization labels, as Linkerd's do (`viz stat httproute` selects
    // by them).
    for family in ["request_total", "response_total"] {
        assert!(
            sample(
                &metrics,
                family,
                &[
                    "direction=\"inbound\"",
                    "srv_kind=\"server\"",
                    "srv_name=\"web-http\"",
                    "route_name=\"default\"",
                    "authz_name=\"web-clients\"",
                    "tls=\"true\"",
                ]
            ) >= 1.0,
            "{family} carries the policy labels:\n{metrics}"
        );
    }
    let hits = app.hits();

    // Another identity only: the client's next request is refused.
    mesh.state.set_port_policy(
        8080,
        server_detect(
            "web-http",
            vec![admits(
                "web-clients",
                "someone-else.test.serviceaccount.identity.linkerd.cluster.local",
            )],
        ),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (status, body) = loop {
        let answer = get_path(&mesh, "/").await;
        if answer.0 != 200 || tokio::time::Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("not authorized"), "{body}");
    assert!(app.hits() >= hits);
    let app_hits = app.hits();
    let (status, _) = get_path(&mesh, "/").await;
    assert_eq!(status, 403);
    assert_eq!(
        app.hits(),
        app_hits,
        "a refused request never reaches the app"
    );
    let metrics = mesh.server_metrics().await;
    assert!(
        sample(
            &metrics,
            "inbound_http_authz_deny_total",
            &[
                "srv_name=\"web-http\"",
                "route_name=\"default\"",
                "tls=\"true\""
            ]
        ) >= 2.0,
        "{metrics}"
    );

    // The probe route stays open to anyone.
    let (status, _) = get_path(&mesh, "/ready").await;
    assert_eq!(status, 200, "GET /ready is the probe route's");
}

#[tokio::test]
async fn an_opaque_server_refuses_and_closes_connections_it_no_longer_admits() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mesh = Mesh::start().await;
    mesh.service(
        "10.96.0.10:7000",
        "db.test.svc.cluster.local:7000",
        DestinationProfile {
            opaque_protocol: true,
            ..Default::default()
        },
    );
    mesh.state
        .set_endpoints("db.test.svc.cluster.local:7000", meshed(&[(7000, "db-1")]));
    mesh.server.run(app::greeter("db-1", server(7000))).await;
    mesh.state
        .set_port_policy(7000, opaque("db", vec![admits("db-clients", CLIENT_ID)]));
    // Until the proxy has the Server's policy, the default admits: wait for
    // a connection the Server's policy admitted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        mesh.client
            .run(async {
                let stream = tokio::net::TcpStream::connect("10.96.0.10:7000")
                    .await
                    .expect("connect");
                let mut stream = tokio::io::BufReader::new(stream);
                let mut greeting = String::new();
                let _ = stream.read_line(&mut greeting).await;
            })
            .await;
        let metrics = mesh.server_metrics().await;
        if sample(
            &metrics,
            "inbound_tcp_authz_allow_total",
            &["srv_name=\"db\""],
        ) >= 1.0
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the db Server's policy never applied\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Admitted: a greeting, an echo; the connection stays open.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let held = mesh.client.spawn(async move {
        let stream = tokio::net::TcpStream::connect("10.96.0.10:7000")
            .await
            .expect("connect");
        let mut stream = tokio::io::BufReader::new(stream);
        let mut greeting = String::new();
        stream.read_line(&mut greeting).await.expect("greeting");
        let _ = tx.send(());
        // Then wait for the proxy to close it.
        let mut rest = String::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(10), stream.read_line(&mut rest)).await;
        (greeting, closed.map(|r| r.map(|n| n == 0).unwrap_or(true)))
    });
    rx.await.expect("greeted");

    // The policy now names another identity: the open connection is closed.
    mesh.state.set_port_policy(
        7000,
        opaque(
            "db",
            vec![admits(
                "db-clients",
                "someone-else.test.serviceaccount.identity.linkerd.cluster.local",
            )],
        ),
    );
    let (greeting, closed) = held.await.expect("task");
    assert_eq!(greeting, "hello from db-1\n");
    assert_eq!(
        closed,
        Ok(true),
        "the connection was closed by the proxy\n{}",
        mesh.logs()
    );

    // A new connection is refused.
    let refused = mesh
        .client
        .run(async {
            let stream = tokio::net::TcpStream::connect("10.96.0.10:7000")
                .await
                .expect("connect");
            let mut stream = tokio::io::BufReader::new(stream);
            let _ = stream.get_mut().write_all(b"ping\n").await;
            let mut line = String::new();
            tokio::time::timeout(Duration::from_secs(5), stream.read_line(&mut line))
                .await
                .map(|r| r.map(|n| (n, line)))
        })
        .await;
    assert!(
        matches!(refused, Ok(Ok((0, _))) | Ok(Err(_))),
        "a connection the policy does not admit gets nothing: {refused:?}"
    );
    let metrics = mesh.server_metrics().await;
    for (metric, expected) in [
        ("inbound_tcp_authz_allow_total", 1.0),
        ("inbound_tcp_authz_terminate_total", 1.0),
        ("inbound_tcp_authz_deny_total", 1.0),
    ] {
        assert!(
            sample(&metrics, metric, &["srv_name=\"db\"", "tls=\"true\""]) >= expected,
            "{metric}\n{metrics}"
        );
    }
}
