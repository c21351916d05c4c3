//! Tap end to end: the proxies in their pods serve `tap.Tap/Observe` on
//! 4190 over mutual TLS to the tap component's identity alone, and report
//! the requests they handle (inbound on the server, outbound on the
//! client) with their identities, status and size, up to the tap's limit.

use mesh_test_util as support;

use std::net::SocketAddr;
use std::time::Duration;

use linkerd2_proxy_api::destination::DestinationProfile;
use linkerd2_proxy_api::tap::observe_request::{Match, r#match};
use linkerd2_proxy_api::tap::tap_client::TapClient;
use linkerd2_proxy_api::tap::{ObserveRequest, TapEvent, tap_event};
use support::controller::Ca;
use support::*;
use tokio_stream::StreamExt;

const TAP_ID: &str = "tap.linkerd-viz.serviceaccount.identity.linkerd.cluster.local";

/// A tap client in the client pod, as `identity` (or without a
/// certificate), to the proxy at `proxy` whose identity is `proxy_id`.
async fn tap_client(
    ca: &Ca,
    identity: Option<&str>,
    proxy: SocketAddr,
    proxy_id: &str,
) -> Result<TapClient<tonic::transport::Channel>, tonic::transport::Error> {
    let connector = ca.connector(identity, mesh_core::tls::ALPN_H2);
    let name = mesh_core::tls::server_name(proxy_id).expect("name");
    let channel = tonic::transport::Endpoint::from_static("http://tap")
        .connect_with_connector(tower::service_fn(move |_| {
            let (connector, name) = (connector.clone(), name.clone());
            async move {
                let tcp = unmeshed_connect(proxy).await?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await?;
    Ok(TapClient::new(channel))
}

async fn tapped_mesh() -> Mesh {
    let mut mesh = Mesh::start().await;
    for side in [Side::Client, Side::Server] {
        mesh.set_proxy_env(side, "LINKERD2_PROXY_TAP_SVC_NAME", TAP_ID);
        mesh.restart_proxy(side).await;
    }
    mesh.web(DestinationProfile::default(), meshed(&[(8080, "web-1")]));
    mesh.app("web-1", 8080).await;
    mesh
}

/// A tap's events until its stream ends (its limit reached).
async fn until_the_end(mut stream: tonic::Streaming<TapEvent>) -> Vec<TapEvent> {
    let mut events = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("events, then the end of the stream")
    {
        events.push(event.expect("an event"));
    }
    events
}

fn http_event(event: &TapEvent) -> &tap_event::http::Event {
    match &event.event {
        Some(tap_event::Event::Http(http)) => http.event.as_ref().expect("an HTTP event"),
        None => panic!("an event without a kind: {event:?}"),
    }
}

fn label<'a>(meta: Option<&'a tap_event::EndpointMeta>, key: &str) -> Option<&'a str> {
    meta?.labels.get(key).map(String::as_str)
}

async fn requests(mesh: &Mesh, paths: &'static [&'static str]) {
    mesh.client
        .run(async move {
            for path in paths {
                let (status, body) = get(&format!("http://10.96.0.10{path}"))
                    .await
                    .expect("a response");
                assert_eq!(status, 200, "{body}");
            }
        })
        .await;
}

#[tokio::test]
async fn the_tap_identity_sees_each_request_with_its_caller_and_its_answer() {
    let mesh = tapped_mesh().await;
    let ca = mesh.ca.clone();
    // Tap the server's proxy for two requests.
    let events = mesh.client.spawn(async move {
        let mut client = tap_client(&ca, Some(TAP_ID), server(4190), WEB_ID)
            .await
            .expect("connected");
        let stream = client
            .observe(ObserveRequest {
                limit: 2,
                ..Default::default()
            })
            .await
            .expect("the tap identity may tap")
            .into_inner();
        // The stream ends by itself once its two requests are reported.
        until_the_end(stream).await
    });
    // The tap registers before the requests.
    tokio::time::sleep(Duration::from_millis(500)).await;
    requests(&mesh, &["/one", "/two", "/three"]).await;
    let events = events.await.expect("the tap task");

    assert_eq!(
        events.len(),
        6,
        "req, rsp and end for two requests: {events:#?}"
    );
    let mut paths = Vec::new();
    for event in &events {
        assert_eq!(
            event.proxy_direction,
            tap_event::ProxyDirection::Inbound as i32
        );
        let source = event.source_meta.as_ref();
        assert_eq!(label(source, "tls"), Some("true"), "{event:?}");
        assert_eq!(label(source, "client_id"), Some(CLIENT_ID), "{event:?}");
        let source: SocketAddr = event.source.expect("source").try_into().expect("addr");
        assert_eq!(source.ip().to_string(), CLIENT_IP);
        match http_event(event) {
            tap_event::http::Event::RequestInit(init) => {
                // The authority the client asked for, as it asked.
                assert_eq!(init.authority, "10.96.0.10");
                paths.push(init.path.clone());
            }
            tap_event::http::Event::ResponseInit(init) => assert_eq!(init.http_status, 200),
            tap_event::http::Event::ResponseEnd(end) => {
                assert!(end.response_bytes > 0, "{end:?}");
                assert!(
                    end.eos.is_none(),
                    "an HTTP/1 answer ends without a gRPC status or reset"
                );
            }
        }
    }
    assert_eq!(paths, ["/one", "/two"], "the limit of two requests held");
    let ids: std::collections::HashSet<_> = events
        .iter()
        .map(|e| match http_event(e) {
            tap_event::http::Event::RequestInit(e) => e.id,
            tap_event::http::Event::ResponseInit(e) => e.id,
            tap_event::http::Event::ResponseEnd(e) => e.id,
        })
        .collect();
    assert_eq!(ids.len(), 2, "one stream id per request");
}

#[tokio::test]
async fn an_outbound_tap_filters_by_destination_and_path() {
    let mesh = tapped_mesh().await;
    let ca = mesh.ca.clone();
    let label_match = |key: &str, value: &str| Match {
        r#match: Some(r#match::Match::DestinationLabel(r#match::Label {
            key: key.into(),
            value: value.into(),
        })),
    };
    let wanted = Match {
        r#match: Some(r#match::Match::All(r#match::Seq {
            matches: vec![
                label_match("pod", "web-1"),
                Match {
                    r#match: Some(r#match::Match::Http(r#match::Http {
                        r#match: Some(r#match::http::Match::Path(r#match::http::StringMatch {
                            r#match: Some(r#match::http::string_match::Match::Prefix(
                                "/api".into(),
                            )),
                        })),
                    })),
                },
            ],
        })),
    };
    let events = mesh.client.spawn(async move {
        let mut client = tap_client(
            &ca,
            Some(TAP_ID),
            addr(&format!("{CLIENT_IP}:4190")),
            CLIENT_ID,
        )
        .await
        .expect("connected");
        let stream = client
            .observe(ObserveRequest {
                limit: 1,
                r#match: Some(wanted),
                ..Default::default()
            })
            .await
            .expect("tap")
            .into_inner();
        until_the_end(stream).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    requests(&mesh, &["/healthz", "/api/users", "/api/other"]).await;
    let events = events.await.expect("the tap task");
    assert_eq!(events.len(), 3, "{events:#?}");
    let init = events
        .iter()
        .find_map(|e| match http_event(e) {
            tap_event::http::Event::RequestInit(init) => Some(init),
            _ => None,
        })
        .expect("a request");
    assert_eq!(init.path, "/api/users", "only the first /api request");
    let event = &events[0];
    assert_eq!(
        event.proxy_direction,
        tap_event::ProxyDirection::Outbound as i32
    );
    let destination = event.destination_meta.as_ref();
    assert_eq!(label(destination, "tls"), Some("true"));
    assert_eq!(label(destination, "server_id"), Some(WEB_ID));
    assert_eq!(label(destination, "pod"), Some("web-1"));
    let destination: SocketAddr = event.destination.expect("dst").try_into().expect("addr");
    assert_eq!(destination, server(8080), "the endpoint, not the Service");
}

#[tokio::test]
async fn no_one_but_the_tap_identity_may_tap() {
    let mesh = tapped_mesh().await;
    let ca = mesh.ca.clone();
    mesh.client
        .run(async move {
            // The attack: a meshed workload (a valid certificate from the
            // same CA) asks the server's proxy for its traffic.
            let mut client = tap_client(&ca, Some(CLIENT_ID), server(4190), WEB_ID)
                .await
                .expect("the handshake itself succeeds");
            let refused = client
                .observe(ObserveRequest {
                    limit: 10,
                    ..Default::default()
                })
                .await
                .expect_err("refused");
            assert_eq!(refused.code(), tonic::Code::PermissionDenied);
            assert!(refused.message().contains(TAP_ID), "{refused:?}");
            // Without a certificate, no connection at all.
            let anonymous = async {
                let mut client = tap_client(&ca, None, server(4190), WEB_ID).await?;
                client
                    .observe(ObserveRequest {
                        limit: 10,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            };
            assert!(
                anonymous.await.is_err(),
                "a client without a certificate is refused"
            );
            // And a tap that asks for nothing, or something malformed, is told why.
            let mut client = tap_client(&ca, Some(TAP_ID), server(4190), WEB_ID)
                .await
                .expect("connected");
            let e = client
                .observe(ObserveRequest::default())
                .await
                .expect_err("limit 0");
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert_eq!(e.message(), "limit: must be at least 1");
        })
        .await;
}

#[tokio::test]
async fn without_a_tap_identity_configured_nothing_listens_on_the_control_port() {
    let mesh = Mesh::start().await;
    let refused = mesh
        .client
        .run(async { unmeshed_connect(server(4190)).await })
        .await;
    assert!(
        refused.is_err(),
        "tap is off unless LINKERD2_PROXY_TAP_SVC_NAME is set"
    );
}
