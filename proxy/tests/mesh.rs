//! The proxy end to end: a client pod and a server pod in network
//! namespaces, each with `mesh-init`'s iptables rules and a `mesh-proxy`
//! process, discovery and identity from a mock control plane speaking the
//! real gRPC API. Requests go to Service addresses that only discovery
//! knows, exactly as from a pod in a cluster.

use mesh_test_util as support;

use linkerd2_proxy_api::destination::DestinationProfile;
use support::*;

#[tokio::test]
async fn http1_goes_through_both_proxies_over_mtls_with_identities_on_both_sides() {
    let mesh = Mesh::start().await;
    mesh.web(DestinationProfile::default(), meshed(&[(8080, "web-1")]));
    let app = mesh.app("web-1", 8080).await;
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

#[tokio::test]
async fn http2_prior_knowledge_goes_through_as_http2() {
    let mesh = Mesh::start().await;
    mesh.web(DestinationProfile::default(), meshed(&[(8080, "web-1")]));
    mesh.app("web-1", 8080).await;
    let (status, body) = mesh
        .client
        .run(async {
            let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .http2_only(true)
                    .build_http();
            request(
                &client,
                http::Request::post("http://10.96.0.10/")
                    .body(http_body_util::Full::new(bytes::Bytes::from_static(
                        b"12345",
                    )))
                    .expect("request"),
            )
            .await
        })
        .await
        .expect("an HTTP/2 response");
    assert_eq!(status, 200);
    assert_eq!(body, format!("web-1 client-id={CLIENT_ID} body=5\n"));
    let server = mesh.server_metrics().await;
    assert_eq!(
        sample(
            &server,
            "request_total",
            &["direction=\"inbound\"", "tls=\"true\""]
        ),
        1.0,
        "{server}"
    );
}

#[tokio::test]
async fn grpc_goes_through_and_error_statuses_count_as_failures() {
    use linkerd2_proxy_api::identity::CertifyRequest;
    use linkerd2_proxy_api::identity::identity_client::IdentityClient;
    let mesh = Mesh::start().await;
    mesh.service(
        "10.96.0.10:9090",
        "grpc.test.svc.cluster.local:9090",
        DestinationProfile::default(),
    );
    mesh.state.set_endpoints(
        "grpc.test.svc.cluster.local:9090",
        meshed(&[(9090, "grpc-1")]),
    );
    mesh.server.run(app::Grpc::serve(server(9090))).await;
    let (ok, denied) = mesh
        .client
        .run(async {
            let channel = tonic::transport::Endpoint::from_static("http://10.96.0.10:9090")
                .connect()
                .await
                .expect("connect");
            let mut client = IdentityClient::new(channel);
            let ok = client
                .certify(CertifyRequest {
                    token: b"hello".to_vec(),
                    ..Default::default()
                })
                .await;
            let denied = client
                .certify(CertifyRequest {
                    token: b"deny".to_vec(),
                    ..Default::default()
                })
                .await;
            (ok, denied)
        })
        .await;
    assert_eq!(
        ok.expect("the call succeeds").into_inner().leaf_certificate,
        b"hello"
    );
    assert_eq!(
        denied.expect_err("denied").code(),
        tonic::Code::PermissionDenied
    );
    let client = mesh.client_metrics().await;
    let labels = ["direction=\"outbound\"", "server_id=\"web.test"];
    assert_eq!(
        sample(
            &client,
            "response_total",
            &[
                labels[0],
                labels[1],
                "classification=\"success\"",
                "grpc_status=\"0\""
            ]
        ),
        1.0,
        "{client}"
    );
    assert_eq!(
        sample(
            &client,
            "response_total",
            &[
                labels[0],
                labels[1],
                "classification=\"failure\"",
                "grpc_status=\"7\""
            ]
        ),
        1.0,
        "{client}"
    );
}

#[tokio::test]
async fn opaque_tcp_goes_through_with_a_transport_header() {
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
    let lines = mesh
        .client
        .run(async {
            let stream = tokio::net::TcpStream::connect("10.96.0.10:7000")
                .await
                .expect("connect");
            let mut stream = tokio::io::BufReader::new(stream);
            let mut greeting = String::new();
            stream.read_line(&mut greeting).await.expect("greeting");
            stream.get_mut().write_all(b"ping\n").await.expect("write");
            let mut echo = String::new();
            stream.read_line(&mut echo).await.expect("echo");
            (greeting, echo)
        })
        .await;
    assert_eq!(lines, ("hello from db-1\n".to_owned(), "ping\n".to_owned()));
    let server = mesh.server_metrics().await;
    let labels = [
        "direction=\"inbound\"",
        "tls=\"true\"",
        &format!("client_id=\"{CLIENT_ID}\""),
        "target_addr=\"10.77.0.2:7000\"",
    ];
    assert_eq!(sample(&server, "tcp_open_total", &labels), 1.0, "{server}");
    assert!(
        sample(&server, "tcp_read_bytes_total", &labels) >= 5.0,
        "{server}"
    );
    assert!(
        sample(&server, "tcp_write_bytes_total", &labels) >= 20.0,
        "{server}"
    );
    let client = mesh.client_metrics().await;
    assert_eq!(
        sample(
            &client,
            "tcp_open_total",
            &[
                "peer=\"dst\"",
                "tls=\"true\"",
                &format!("server_id=\"{WEB_ID}\"")
            ]
        ),
        1.0,
        "{client}"
    );
}

#[tokio::test]
async fn a_websocket_upgrade_goes_through_and_carries_bytes_both_ways() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mesh = Mesh::start().await;
    mesh.web(DestinationProfile::default(), meshed(&[(8080, "web-1")]));
    let app = mesh.app("web-1", 8080).await;
    let echoed = mesh
        .client
        .run(async {
            let mut stream = tokio::net::TcpStream::connect("10.96.0.10:80").await.expect("connect");
            stream
                .write_all(
                    b"GET /chat HTTP/1.1\r\nHost: web\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                )
                .await
                .expect("handshake");
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).await.expect("response head");
                head.push(byte[0]);
            }
            stream.write_all(b"frames in both directions").await.expect("write");
            let mut echo = [0u8; 25];
            stream.read_exact(&mut echo).await.expect("echo");
            (String::from_utf8_lossy(&head).into_owned(), echo.to_vec())
        })
        .await;
    assert!(echoed.0.starts_with("HTTP/1.1 101"), "{}", echoed.0);
    assert_eq!(echoed.1, b"frames in both directions");
    assert_eq!(app.client_ids.lock().expect("ids").as_slice(), [CLIENT_ID]);
}

#[tokio::test]
async fn a_connection_straight_to_the_inbound_port_without_mtls_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mesh = Mesh::start().await;
    let app = mesh.app("web-1", 8080).await;
    let read = mesh
        .client
        .run(async {
            let mut stream = tokio::net::TcpStream::connect("10.77.0.2:4143")
                .await
                .expect("connect");
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
                .await
                .expect("write");
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer).await;
            answer
        })
        .await;
    // The client's own proxy carries the attempt; the server proxy closes
    // it, so the client gets the proxy's 502, never the application.
    let answer = String::from_utf8_lossy(&read);
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    assert!(answer.contains("l5d-proxy-error"), "{answer}");
    assert_eq!(app.hits(), 0, "nothing reached the application");
    let server = mesh.server_metrics().await;
    assert_eq!(
        sample(&server, "request_total", &["direction=\"inbound\""]),
        0.0,
        "the server proxy served nothing (no loop back into itself):\n{server}"
    );
}
