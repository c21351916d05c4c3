//! The proxy end to end: a client pod and a server pod in network
//! namespaces, each with `mesh-init`'s iptables rules and a `mesh-proxy`
//! process, discovery and identity from a mock control plane speaking the
//! real gRPC API. Requests go to Service addresses that only discovery
//! knows, exactly as from a pod in a cluster.

mod support;

use linkerd2_proxy_api::destination::DestinationProfile;
use support::*;

#[tokio::test]
async fn http1_goes_through_both_proxies_over_mtls_with_identities_on_both_sides() {
    let mesh = Mesh::start().await;
    mesh.service(
        "10.96.0.10:80",
        "web.test.svc.cluster.local:80",
        DestinationProfile::default(),
    );
    mesh.state.set_endpoints(
        "web.test.svc.cluster.local:80",
        vec![endpoint(server(8080), Some(WEB_ID), "web-1")],
    );
    let app = mesh
        .server
        .run(async { app::App::serve("web-1", server(8080)).await })
        .await;
    let (status, body) = mesh
        .client
        .run(async { get("http://10.96.0.10/").await })
        .await
        .expect("a response through the mesh");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        format!("web-1 client-id={CLIENT_ID} body=0\n"),
        "the app saw the client's identity"
    );
    assert_eq!(app.hits(), 1);

    let client = mesh.client_metrics().await;
    let outbound = [
        "direction=\"outbound\"",
        "authority=\"web.test.svc.cluster.local:80\"",
        "tls=\"true\"",
        &format!("server_id=\"{WEB_ID}\""),
        "dst_pod=\"web-1\"",
        "dst_service=\"web\"",
        "classification=\"success\"",
        "status_code=\"200\"",
    ];
    assert_eq!(
        sample(&client, "response_total", &outbound),
        1.0,
        "{client}"
    );
    let server = mesh.server_metrics().await;
    let inbound = [
        "direction=\"inbound\"",
        "tls=\"true\"",
        &format!("client_id=\"{CLIENT_ID}\""),
        "status_code=\"200\"",
    ];
    assert_eq!(sample(&server, "response_total", &inbound), 1.0, "{server}");
    assert!(
        sample(
            &server,
            "tcp_open_total",
            &["direction=\"inbound\"", "tls=\"true\""]
        ) >= 1.0
    );
}
