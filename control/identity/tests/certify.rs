//! `Certify` against a real kube-apiserver: a ServiceAccount token gets a
//! certificate that rustls accepts for its identity, and every bad request
//! is refused with its own status.

mod support;

use std::time::{Duration, SystemTime};

use mesh_api::IdentityName;
use mesh_api::labels::IDENTITY_TOKEN_AUDIENCE;
use mesh_clusters::testing::shared_cluster;
use mesh_core::identity::client::{self, CertifyError};
use mesh_core::tls::{self, ALPN_H2, ClientAuth};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn identity(sa: &str, ns: &str) -> String {
    IdentityName::for_service_account(sa, ns).to_string()
}

#[tokio::test]
async fn a_token_gets_a_certificate_that_rustls_accepts_for_its_identity() {
    let cluster = shared_cluster().await;
    // The namespace `test` and its `default` ServiceAccount (made by the
    // controller-manager), as a user would first try it.
    let ns = "test".to_owned();
    mesh_clusters::testing::ensure_namespace(&cluster.client, &ns).await;
    wait_for_service_account(&cluster, &ns, "default").await;
    service_account(&cluster, &ns, "api").await;
    let identity_service = TestIdentity::start(&cluster, DAY).await;
    let dir = identity_service.dir.path();

    let mut peers = Vec::new();
    for sa in ["default", "api"] {
        let name = identity(sa, &ns);
        let creds = credentials(&name, &identity_service.anchors());
        let channel = client::channel(
            &identity_service.addr(),
            &identity_service.running.server_identity,
            &creds,
        )
        .expect("channel");
        let token = token_file(&cluster, dir, &ns, sa, IDENTITY_TOKEN_AUDIENCE).await;
        let certified = client::certify(channel, &name, &token)
            .await
            .expect("certified");
        let left = certified
            .valid_until
            .duration_since(SystemTime::now())
            .expect("in the future");
        assert!(
            left > DAY - Duration::from_secs(60) && left <= DAY,
            "lifetime {left:?}"
        );
        assert_eq!(
            tls::dns_names(&certified.chain[0]),
            std::slice::from_ref(&name)
        );
        creds
            .set_certificate(certified.chain, certified.key.private_key())
            .expect("installs");
        assert!(creds.has_certificate());
        peers.push((name, creds));
    }
    let (server_name, server_creds) = &peers[1];
    let (client_name, client_creds) = &peers[0];
    assert_eq!(
        client_name,
        "default.test.serviceaccount.identity.linkerd.cluster.local"
    );

    // mTLS between the two: each side sees the other's identity.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(
        server_creds
            .server_config(ClientAuth::Required, &[ALPN_H2])
            .expect("cfg"),
    );
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut tls = acceptor.accept(tcp).await.expect("server handshake");
        let peer = tls::peer_identity(tls.get_ref().1);
        tls.write_all(b"hello").await.expect("write");
        tls.shutdown().await.ok();
        peer
    });
    let connector =
        tokio_rustls::TlsConnector::from(client_creds.client_config(&[ALPN_H2]).expect("cfg"));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut tls = connector
        .connect(tls::server_name(server_name).expect("name"), tcp)
        .await
        .expect("client handshake: the server has the promised identity");
    assert_eq!(
        tls::peer_identity(tls.get_ref().1).as_deref(),
        Some(server_name.as_str())
    );
    let mut buf = Vec::new();
    tls.read_to_end(&mut buf).await.ok();
    assert_eq!(buf, b"hello");
    assert_eq!(
        server.await.expect("server").as_deref(),
        Some(client_name.as_str())
    );

    // A client expecting another identity refuses the same server.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(
        server_creds
            .server_config(ClientAuth::Required, &[])
            .expect("cfg"),
    );
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let _ = acceptor.accept(tcp).await;
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let err = connector
        .connect(tls::server_name(&identity("db", &ns)).expect("name"), tcp)
        .await
        .expect_err("wrong identity must fail");
    assert!(err.to_string().contains("certificate"), "{err}");

    let metrics = identity_service.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "identity_certificates_issued_total 2"),
        "{metrics}"
    );
    identity_service.running.shutdown().await;
}

/// Sends one Certify and returns the refusal.
async fn refusal(
    svc: &TestIdentity,
    identity: &str,
    token_path: &std::path::Path,
    csr: Option<Vec<u8>>,
) -> tonic::Status {
    use linkerd2_proxy_api::identity::CertifyRequest;
    use linkerd2_proxy_api::identity::identity_client::IdentityClient;
    let creds = credentials(identity, &svc.anchors());
    let channel =
        client::channel(&svc.addr(), &svc.running.server_identity, &creds).expect("channel");
    match csr {
        None => match client::certify(channel, identity, token_path).await {
            Err(CertifyError::Status(status)) => status,
            other => panic!("expected a refusal for {identity}, got {other:?}"),
        },
        Some(csr) => {
            let request = CertifyRequest {
                identity: identity.to_owned(),
                token: std::fs::read(token_path).expect("token"),
                certificate_signing_request: csr,
            };
            IdentityClient::new(channel)
                .certify(request)
                .await
                .expect_err("refused")
        }
    }
}

#[tokio::test]
async fn each_bad_request_is_refused_with_its_own_status() {
    let cluster = shared_cluster().await;
    let ns = cluster.namespace("refuse").await;
    let sa = service_account(&cluster, &ns, "web").await;
    service_account(&cluster, &ns, "db").await;
    let svc = TestIdentity::start(&cluster, DAY).await;
    let dir = svc.dir.path().to_owned();
    let web = identity("web", &ns);
    let good = token_file(&cluster, &dir, &ns, "web", IDENTITY_TOKEN_AUDIENCE).await;

    let garbage = dir.join("garbage.token");
    std::fs::write(&garbage, "not-a-jwt").expect("write");
    let status = refusal(&svc, &web, &garbage, None).await;
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("not valid"), "{status:?}");
    let forged = dir.join("forged.token");
    std::fs::write(&forged, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln").expect("write");
    let status = refusal(&svc, &web, &forged, None).await;
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("not valid"), "{status:?}");

    let other_audience = token_file(&cluster, &dir, &ns, "web", "some-api").await;
    let status = refusal(&svc, &web, &other_audience, None).await;
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("audience"), "{status:?}");

    let expired = dir.join("expired.token");
    std::fs::write(&expired, expired_token(&cluster, &ns, &sa)).expect("write");
    let status = refusal(&svc, &web, &expired, None).await;
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("expired"), "{status:?}");

    let status = refusal(&svc, &identity("db", &ns), &good, None).await;
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains(&format!("{ns}/web")),
        "{status:?}"
    );

    let empty = dir.join("empty.token");
    std::fs::write(&empty, "").expect("write");
    let status = refusal(&svc, &web, &empty, None).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    let status = refusal(&svc, "web.default.svc.cluster.local", &good, None).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    let status = refusal(&svc, &web, &good, Some(b"not a csr".to_vec())).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("CSR"), "{status:?}");

    let db_csr = mesh_core::identity::LocalKey::generate(&identity("db", &ns)).expect("key");
    let status = refusal(&svc, &web, &good, Some(db_csr.csr_der().to_vec())).await;
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");

    let metrics = svc.metrics().await;
    for reason in [
        "token_malformed",
        "token_invalid",
        "token_audience",
        "token_expired",
        "identity_mismatch",
        "token_missing",
        "identity_invalid",
        "csr_malformed",
        "csr_identity_mismatch",
    ] {
        let line = format!("identity_certificates_rejected_total{{reason=\"{reason}\"}} 1");
        assert!(
            metrics.lines().any(|l| l == line),
            "{reason} not counted:\n{metrics}"
        );
    }
    svc.running.shutdown().await;
}

/// A token for `ns/sa` signed with the cluster's ServiceAccount key, like
/// the API server's own but expired an hour ago (TokenRequest cannot make
/// one: it refuses lifetimes under ten minutes).
fn expired_token(
    cluster: &mesh_clusters::testing::TestCluster,
    ns: &str,
    sa: &k8s_openapi::api::core::v1::ServiceAccount,
) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    let key_pem = std::fs::read(cluster.info.dir.join("pki").join("sa.key")).expect("sa.key");
    let key_der = mesh_identity::pem::private_key_pkcs8(&key_pem, "sa.key").expect("pkcs8");
    let rng = ring::rand::SystemRandom::new();
    let key = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        key_der.secret_pkcs8_der(),
        &rng,
    )
    .expect("ES256 key");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let name = sa.metadata.name.clone().expect("name");
    let uid = sa.metadata.uid.clone().expect("uid");
    let header = serde_json::json!({"alg": "ES256", "typ": "JWT"});
    let claims = serde_json::json!({
        "iss": "https://kubernetes.default.svc.cluster.local",
        "sub": format!("system:serviceaccount:{ns}:{name}"),
        "aud": [IDENTITY_TOKEN_AUDIENCE],
        "iat": now - 7200,
        "nbf": now - 7200,
        "exp": now - 3600,
        "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": name, "uid": uid}},
    });
    let signing_input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let signature = key.sign(&rng, signing_input.as_bytes()).expect("sign");
    format!("{signing_input}.{}", B64.encode(signature.as_ref()))
}
