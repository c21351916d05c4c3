//! The attack: a pod floods the identity service with 10,000 Certify calls
//! carrying garbage tokens (half not even shaped like a token, half
//! shaped like one), from its own address, while real proxies on other
//! addresses renew. What must hold: every real renewal succeeds, the
//! attacker is told to slow down, and the TokenReviews the API server
//! receives (its own `apiserver_request_total`) stay bounded: what the
//! attacker's address is allowed, not 10,000.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use linkerd2_proxy_api::identity::CertifyRequest;
use linkerd2_proxy_api::identity::identity_client::IdentityClient;
use mesh_api::IdentityName;
use mesh_api::labels::IDENTITY_TOKEN_AUDIENCE;
use mesh_clusters::testing::shared_cluster;
use mesh_core::identity::client;
use support::*;
use tonic::transport::{Channel, Endpoint};

const GARBAGE_CALLS: usize = 10_000;
const ATTACKER: &str = "127.0.0.2";

/// A channel to the identity service whose connections come from
/// `source` (another address of the loopback network, as another pod).
fn channel_from(source: IpAddr, svc: &TestIdentity, identity: &str) -> Channel {
    let creds = credentials(identity, &svc.anchors());
    let connector = tokio_rustls::TlsConnector::from(
        creds
            .client_config(&[mesh_core::tls::ALPN_H2])
            .expect("client config"),
    );
    let name = mesh_core::tls::server_name(&svc.running.server_identity).expect("name");
    let target: SocketAddr = svc.running.addr;
    let connect = tower::service_fn(move |_uri: http::Uri| {
        let (connector, name) = (connector.clone(), name.clone());
        async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(source, 0))?;
            let tcp = socket.connect(target).await?;
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Endpoint::from_static("http://identity").connect_with_connector_lazy(connect)
}

/// The TokenReviews the API server has answered, by its own count.
async fn token_reviews(cluster: &mesh_clusters::testing::TestCluster) -> f64 {
    let text = cluster
        .client
        .request_text(
            http::Request::get("/metrics")
                .body(Vec::new())
                .expect("request"),
        )
        .await
        .expect("the API server's metrics");
    text.lines()
        .filter(|l| {
            l.starts_with("apiserver_request_total{")
                && l.contains("resource=\"tokenreviews\"")
                && l.contains("verb=\"POST\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_flood_of_garbage_tokens_does_not_reach_the_api_server_or_stop_renewals() {
    let cluster = shared_cluster().await;
    let ns = cluster.namespace("abuse").await;
    let svc = Arc::new(TestIdentity::start(&cluster, DAY).await);
    let dir = svc.dir.path().to_owned();
    let mut renewals = Vec::new();
    for n in 0..5 {
        let sa = format!("web-{n}");
        service_account(&cluster, &ns, &sa).await;
        let token = token_file(&cluster, &dir, &ns, &sa, IDENTITY_TOKEN_AUDIENCE).await;
        renewals.push((
            IdentityName::for_service_account(&sa, &ns).to_string(),
            token,
        ));
    }
    let before = token_reviews(&cluster).await;

    let attacker = channel_from(
        ATTACKER.parse().expect("ip"),
        &svc,
        &IdentityName::for_service_account("mallory", &ns).to_string(),
    );
    let flood = tokio::spawn({
        let ns = ns.clone();
        async move {
            let mut calls = tokio::task::JoinSet::new();
            let mut codes = std::collections::BTreeMap::<String, usize>::new();
            for n in 0..GARBAGE_CALLS {
                let token = if n % 2 == 0 {
                    format!("garbage-{n}").into_bytes()
                } else {
                    format!("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ{n}In0.c2lnbmF0dXJl").into_bytes()
                };
                let request = CertifyRequest {
                    identity: IdentityName::for_service_account("mallory", &ns).to_string(),
                    token,
                    certificate_signing_request: Vec::new(),
                };
                let mut client = IdentityClient::new(attacker.clone());
                calls.spawn(async move { client.certify(request).await });
                while calls.len() >= 200 {
                    if let Some(Ok(Err(status))) = calls.join_next().await {
                        *codes.entry(format!("{:?}", status.code())).or_default() += 1;
                    }
                }
            }
            while let Some(done) = calls.join_next().await {
                if let Ok(Err(status)) = done {
                    *codes.entry(format!("{:?}", status.code())).or_default() += 1;
                }
            }
            codes
        }
    });
    // Real proxies renew, from their own address, while the flood runs.
    let mut renewed = Vec::new();
    for (identity, token) in &renewals {
        let creds = credentials(identity, &svc.anchors());
        let channel =
            client::channel(&svc.addr(), &svc.running.server_identity, &creds).expect("channel");
        renewed.push(client::certify(channel, identity, token).await);
    }
    let codes = flood.await.expect("the flood");
    let after = token_reviews(&cluster).await;

    let failed: Vec<String> = renewed
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert!(
        failed.is_empty(),
        "every real renewal succeeded during the flood: {failed:?}"
    );
    let reviews = after - before;
    eprintln!("the API server reviewed {reviews} tokens; the attacker got {codes:?}");
    assert!(
        reviews < 200.0,
        "the API server reviewed {reviews} tokens for {GARBAGE_CALLS} garbage calls and {} renewals: {codes:?}",
        renewals.len()
    );
    assert!(
        codes.get("ResourceExhausted").copied().unwrap_or(0) > GARBAGE_CALLS / 2,
        "the attacker is told to slow down: {codes:?}"
    );
    let metrics = svc.metrics().await;
    assert!(
        metrics.contains("identity_certificates_rejected_total{reason=\"token_malformed\"}")
            && metrics.contains("identity_certificates_rejected_total{reason=\"rate_limited\"}"),
        "{metrics}"
    );
}
