//! The attack: a client in the client pod that talks past its own proxy
//! sends a forged `l5d-client-id` to the server pod over every way in that
//! can carry HTTP (plain, mesh TLS with and without a certificate, a
//! transport header with and without a session protocol, straight to the
//! inbound port, silent until detection gives up, stalled half-way through
//! a request line). The application never sees the forged identity: it
//! sees the client's real one (or none), or the connection is closed
//! before any byte reaches it.

use std::net::SocketAddr;
use std::time::Duration;

use mesh_proxy::transport_header::{self, Empty, Kind, SessionProtocol, TransportHeader};
use mesh_test_util as support;
use rustls_pki_types::ServerName;
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const FORGED: &str = "admin.prod.serviceaccount.identity.linkerd.cluster.local";
const MALLORY: &str = "mallory.test.serviceaccount.identity.linkerd.cluster.local";
const DETECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What the attacker's connection got back.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// The response's status line and body.
    Answered(String),
    /// Closed with nothing written back.
    Closed,
}

fn forged_request(case: &str) -> Vec<u8> {
    format!(
        "GET /{case} HTTP/1.1\r\nhost: web\r\nl5d-client-id: {FORGED}\r\nconnection: close\r\n\r\n"
    )
    .into_bytes()
}

async fn read_all<I: AsyncRead + Unpin>(io: &mut I) -> Outcome {
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), io.read_to_end(&mut out)).await;
    let _ = read.expect("the proxy answers or closes within 20 s");
    if out.is_empty() {
        return Outcome::Closed;
    }
    let text = String::from_utf8_lossy(&out);
    let status = text.lines().next().unwrap_or_default().to_owned();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
    Outcome::Answered(format!("{status} | {body}"))
}

/// Writes `parts` with `pause` between them, then reads what comes back.
async fn exchange<I: AsyncRead + AsyncWrite + Unpin>(
    mut io: I,
    parts: &[&[u8]],
    pause: Duration,
) -> Outcome {
    for (at, part) in parts.iter().enumerate() {
        if at > 0 || parts.len() == 1 && !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        if io.write_all(part).await.is_err() {
            return read_all(&mut io).await;
        }
    }
    read_all(&mut io).await
}

fn tls_client(ca: &Ca, identity: Option<&str>, alpn: &[u8]) -> tokio_rustls::TlsConnector {
    ca.connector(identity, alpn)
}

fn header(port: u16, session: Option<Kind>) -> Vec<u8> {
    transport_header::encode(&TransportHeader {
        port: i32::from(port),
        name: String::new(),
        session_protocol: session.map(|kind| SessionProtocol { kind: Some(kind) }),
        client_id: String::new(),
    })
    .to_vec()
}

struct Attack {
    connector: Option<tokio_rustls::TlsConnector>,
    to: SocketAddr,
    parts: Vec<Vec<u8>>,
    pause: Duration,
}

impl Attack {
    async fn run(self) -> Outcome {
        let tcp = unmeshed_connect(self.to).await.expect("connect");
        let parts: Vec<&[u8]> = self.parts.iter().map(Vec::as_slice).collect();
        match self.connector {
            None => exchange(tcp, &parts, self.pause).await,
            Some(connector) => {
                let name = ServerName::try_from(WEB_ID.to_owned()).expect("name");
                match connector.connect(name, tcp).await {
                    Ok(tls) => exchange(tls, &parts, self.pause).await,
                    Err(_) => Outcome::Closed,
                }
            }
        }
    }
}

#[tokio::test]
async fn a_forged_client_identity_never_reaches_the_application() {
    let mut mesh = Mesh::start().await;
    mesh.set_proxy_env(
        Side::Server,
        "LINKERD2_PROXY_INBOUND_DETECT_TIMEOUT",
        &format!("{}ms", DETECT_TIMEOUT.as_millis()),
    );
    mesh.restart_proxy(Side::Server).await;
    let app = mesh.app("web-1", 8080).await;
    let app_addr = addr(&format!("{SERVER_IP}:8080"));
    let inbound = addr(&format!("{SERVER_IP}:4143"));
    let ca = mesh.ca.clone();
    let h1 = b"http/1.1".as_slice();
    let th = mesh_core::tls::ALPN_TRANSPORT_HEADER;
    let quick = Duration::ZERO;
    let late = DETECT_TIMEOUT * 2;
    let http1 = || Some(Kind::Http1(Empty {}));

    let ok = |id: &str| Some(id.to_owned());
    // (case, attack, the identity the app must see, or None: never reached)
    let cases: Vec<(&str, Attack, Option<String>)> = vec![
        (
            "plain",
            Attack {
                connector: None,
                to: app_addr,
                parts: vec![forged_request("plain")],
                pause: quick,
            },
            ok("-"),
        ),
        (
            "mtls",
            Attack {
                connector: Some(tls_client(&ca, Some(MALLORY), h1)),
                to: app_addr,
                parts: vec![forged_request("mtls")],
                pause: quick,
            },
            ok(MALLORY),
        ),
        (
            "tls-without-certificate",
            Attack {
                connector: Some(tls_client(&ca, None, h1)),
                to: app_addr,
                parts: vec![forged_request("tls-without-certificate")],
                pause: quick,
            },
            ok("-"),
        ),
        (
            "header-http1",
            Attack {
                connector: Some(tls_client(&ca, Some(MALLORY), th)),
                to: app_addr,
                parts: vec![header(8080, http1()), forged_request("header-http1")],
                pause: quick,
            },
            ok(MALLORY),
        ),
        (
            "header-opaque",
            Attack {
                connector: Some(tls_client(&ca, Some(MALLORY), th)),
                to: app_addr,
                parts: vec![header(8080, None), forged_request("header-opaque")],
                pause: quick,
            },
            ok(MALLORY),
        ),
        (
            "header-direct",
            Attack {
                connector: Some(tls_client(&ca, Some(MALLORY), th)),
                to: inbound,
                parts: vec![header(8080, None), forged_request("header-direct")],
                pause: quick,
            },
            ok(MALLORY),
        ),
        (
            "header-without-certificate",
            Attack {
                connector: Some(tls_client(&ca, None, th)),
                to: app_addr,
                parts: vec![
                    header(8080, http1()),
                    forged_request("header-without-certificate"),
                ],
                pause: quick,
            },
            None,
        ),
        (
            "plain-after-detection-gave-up",
            Attack {
                connector: None,
                to: app_addr,
                parts: vec![forged_request("plain-after-detection-gave-up")],
                pause: late,
            },
            ok("-"),
        ),
        (
            "mtls-after-detection-gave-up",
            Attack {
                connector: Some(tls_client(&ca, Some(MALLORY), h1)),
                to: app_addr,
                parts: vec![forged_request("mtls-after-detection-gave-up")],
                pause: late,
            },
            ok(MALLORY),
        ),
        (
            "stalled-request-line",
            Attack {
                connector: None,
                to: app_addr,
                parts: vec![
                    b"GET /stalled".to_vec(),
                    forged_request("-request-line")[4..].to_vec(),
                ],
                pause: late,
            },
            None,
        ),
        (
            "request-line-too-long",
            Attack {
                connector: None,
                to: app_addr,
                parts: vec![forged_request(&format!(
                    "request-line-too-long-{}",
                    "a".repeat(9000)
                ))],
                pause: quick,
            },
            None,
        ),
    ];

    let mut failures = Vec::new();
    for (case, attack, expected) in cases {
        let hits = app.hits();
        let outcome = mesh.client.run(attack.run()).await;
        let seen: Vec<String> = app.client_ids.lock().expect("ids")[hits..].to_vec();
        match &expected {
            Some(identity) => {
                let answered =
                    matches!(&outcome, Outcome::Answered(text) if text.starts_with("HTTP/1.1 200"));
                if !answered || seen != [identity.clone()] {
                    failures.push(format!(
                        "{case}: expected a 200 with the app seeing {identity}, got {outcome:?}, the app saw {seen:?}"
                    ));
                }
            }
            None => {
                if !seen.is_empty() || outcome != Outcome::Closed {
                    failures.push(format!(
                        "{case}: expected the connection closed before the app, got {outcome:?}, the app saw {seen:?}"
                    ));
                }
            }
        }
    }
    let all_seen = app.client_ids.lock().expect("ids").clone();
    let forged_seen = all_seen.iter().any(|id| id == FORGED);
    assert!(
        !forged_seen && failures.is_empty(),
        "the application saw the forged identity: {forged_seen}\n{}\n{}",
        failures.join("\n"),
        mesh.logs()
    );
}

#[tokio::test]
async fn an_application_that_speaks_first_still_greets_a_silent_client() {
    let mut mesh = Mesh::start().await;
    mesh.set_proxy_env(
        Side::Server,
        "LINKERD2_PROXY_INBOUND_DETECT_TIMEOUT",
        &format!("{}ms", DETECT_TIMEOUT.as_millis()),
    );
    mesh.restart_proxy(Side::Server).await;
    mesh.server.run(app::greeter("db-1", server(7000))).await;
    let greeting = mesh
        .client
        .run(async {
            let mut io = unmeshed_connect(addr(&format!("{SERVER_IP}:7000")))
                .await
                .expect("connect");
            let mut greeting = vec![0u8; 64];
            let n = tokio::time::timeout(Duration::from_secs(20), io.read(&mut greeting))
                .await
                .expect("a greeting within 20 s")
                .expect("read");
            greeting.truncate(n);
            String::from_utf8_lossy(&greeting).into_owned()
        })
        .await;
    assert!(
        greeting.contains("db-1"),
        "the server-first application's greeting reached the client: {greeting:?}\n{}",
        mesh.logs()
    );
}
