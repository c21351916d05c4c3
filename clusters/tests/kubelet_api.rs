//! The attack on the node agent's kubelet API (port 10250): a caller that
//! holds a certificate of the cluster CA but is not the API server (an
//! admin, a controller) is refused with 403, and a path that tries to
//! leave the pod's log directory (`..`) is refused with 400 before any
//! file is opened. Real TLS, the local clusters' own PKI.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mesh_clusters::node::kubelet_api::{self, KubeletTls};
use mesh_clusters::pki::{ControlPlanePki, ServingNames};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GETs `path` from the kubelet API at `addr` with the client certificate
/// `(cert, key)`; the status code and body.
async fn get(
    addr: SocketAddr,
    pki: &ControlPlanePki,
    cert: &str,
    key: &str,
    path: &str,
) -> (u16, String) {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_cert.as_bytes()).expect("ca"))
        .expect("root");
    let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).expect("cert")];
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .expect("client auth");
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake");
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut out = String::new();
    let _ = tls.read_to_string(&mut out).await;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out)
}

#[tokio::test]
async fn only_the_api_server_may_read_logs_and_only_inside_a_pod() {
    let pki = ControlPlanePki::generate(
        "test",
        &ServingNames {
            addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            service_ip: IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1)),
            cluster_domain: "cluster.local".into(),
        },
    )
    .expect("pki");
    let dir = tempfile::tempdir().expect("dir");
    let write = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).expect("write");
        path
    };
    let tls = KubeletTls {
        cert: write("kubelet.crt", &pki.kubelet_cert),
        key: write("kubelet.key", &pki.kubelet_key),
        client_ca: write("ca.crt", &pki.ca_cert),
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("addr")
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // No API server behind it: every request here is decided before one
    // would be asked.
    let client = kube::Client::try_from(kube::Config::new(
        "https://127.0.0.1:1".parse().expect("url"),
    ))
    .expect("client");
    tokio::spawn(kubelet_api::serve(
        addr,
        tls,
        client,
        dir.path().join("pods"),
    ));
    let mut ready = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the kubelet API listens");

    let api_server = (&pki.kubelet_client_cert, &pki.kubelet_client_key);
    let (status, body) = get(addr, &pki, api_server.0, api_server.1, "/healthz").await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = get(
        addr,
        &pki,
        &pki.admin_cert,
        &pki.admin_key,
        "/containerLogs/default/web/app",
    )
    .await;
    assert_eq!(status, 403, "an admin certificate of the same CA: {body}");
    assert!(body.contains("only the API server"), "{body}");

    for path in [
        "/containerLogs/default/web/..",
        "/containerLogs/../web/app",
        "/containerLogs/default/..%2f..%2fetc/app",
    ] {
        let (status, body) = get(addr, &pki, api_server.0, api_server.1, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains("is not a Kubernetes name"), "{path}: {body}");
    }
}
