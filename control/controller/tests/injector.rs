//! `mesh-controller injector` as the API server meets it: it loads its
//! serving certificate, becomes ready, answers AdmissionReviews over HTTPS
//! (a patch for a pod of an annotated namespace, none otherwise) and stops
//! on SIGTERM.

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use mesh_clusters::testing::shared_cluster;
use support::{free_addr, stop_with_sigterm, wait_ready};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Writes a CA and a serving certificate for 127.0.0.1; returns the CA.
fn write_tls(dir: &std::path::Path) -> rustls_pki_types::CertificateDer<'static> {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca = rcgen::CertificateParams::default();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    leaf.subject_alt_names = vec![rcgen::SanType::IpAddress("127.0.0.1".parse().expect("ip"))];
    let cert = leaf.signed_by(&key, &issuer).expect("leaf");
    std::fs::write(dir.join("tls.crt"), cert.pem()).expect("write");
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).expect("write");
    ca_cert.der().clone()
}

/// POSTs `body` to `https://addr/inject`; the response body.
async fn post(
    addr: SocketAddr,
    ca: &rustls_pki_types::CertificateDer<'static>,
    body: &str,
) -> String {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name"),
            tcp,
        )
        .await
        .expect("TLS to the webhook");
    let request = format!(
        "POST /inject HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response).into_owned();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

fn review(uid: &str, namespace: &str) -> String {
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "test"},
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web", "namespace": namespace},
                "spec": {"containers": [{"name": "web", "image": "busybox"}]}
            },
            "dryRun": false
        }
    })
    .to_string()
}

#[tokio::test]
async fn it_answers_admission_reviews_over_tls_and_stops_on_sigterm() {
    let cluster = shared_cluster().await;
    let plain = cluster.namespace("injector-plain").await;
    let meshed = cluster.namespace("injector-meshed").await;
    Api::<Namespace>::all(cluster.client.clone())
        .patch(
            &meshed,
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"metadata": {"annotations": {"linkerd.io/inject": "enabled"}}}),
            ),
        )
        .await
        .expect("annotate");
    let roots: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "linkerd-identity-trust-roots"},
        "data": {"ca-bundle.crt": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"},
    }))
    .expect("configmap");
    Api::<ConfigMap>::namespaced(cluster.client.clone(), &meshed)
        .create(&PostParams::default(), &roots)
        .await
        .expect("trust roots");

    let dir = tempfile::tempdir().expect("tempdir");
    let ca = write_tls(dir.path());
    let (listen, admin) = (free_addr(), free_addr());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mesh-controller"))
        .arg("injector")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .arg(format!("--listen={listen}"))
        .arg(format!("--admin-listen={admin}"))
        .arg(format!(
            "--tls-cert-file={}",
            dir.path().join("tls.crt").display()
        ))
        .arg(format!(
            "--tls-key-file={}",
            dir.path().join("tls.key").display()
        ))
        .arg(format!("--controller-namespace={meshed}"))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    assert!(
        wait_ready(admin, Duration::from_secs(10)).await,
        "the admin endpoint never said ready"
    );

    let untouched: serde_json::Value =
        serde_json::from_str(&post(listen, &ca, &review("one", &plain)).await).expect("JSON");
    assert_eq!(untouched["response"]["uid"], "one");
    assert_eq!(untouched["response"]["allowed"], true);
    assert!(untouched["response"].get("patch").is_none(), "{untouched}");

    let injected: serde_json::Value =
        serde_json::from_str(&post(listen, &ca, &review("two", &meshed)).await).expect("JSON");
    assert_eq!(injected["response"]["patchType"], "JSONPatch");
    // kube-rs writes the patch's bytes as a JSON array, which the API
    // server's decoder takes as readily as base64 (webhook.rs in
    // mesh-injector's tests goes through a real API server).
    let patch: Vec<u8> =
        serde_json::from_value(injected["response"]["patch"].clone()).expect("a patch");
    let patch = String::from_utf8(patch).expect("utf-8");
    assert!(
        patch.contains("linkerd-proxy") && patch.contains("linkerd-init"),
        "{patch}"
    );

    stop_with_sigterm(&mut child).await;
}
