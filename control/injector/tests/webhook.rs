//! The injector webhook against a real API server: registered as a
//! MutatingWebhookConfiguration (scoped to the test's namespace), it
//! injects pods of an annotated namespace, leaves opted-out pods alone, and
//! admits a pod with a bad annotation uninjected.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use mesh_clusters::testing::shared_cluster;
use mesh_injector::Values;
use mesh_injector::webhook::{PATH, Settings, Webhook};

/// A CA and a serving certificate for 127.0.0.1.
fn webhook_tls() -> (String, Arc<rustls::ServerConfig>) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::default();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "webhook test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.subject_alt_names = vec![rcgen::SanType::IpAddress("127.0.0.1".parse().expect("ip"))];
    let cert = params.signed_by(&key, &issuer).expect("cert");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .expect("server config");
    (ca_cert.pem(), Arc::new(config))
}

fn pod(name: &str, annotations: &[(&str, &str)]) -> Pod {
    let annotations: BTreeMap<String, String> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}
    }))
    .expect("pod")
}

fn init_containers(pod: &Pod) -> Vec<(String, Option<String>)> {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.name, c.restart_policy))
        .collect()
}

#[tokio::test]
async fn pods_of_an_annotated_namespace_get_the_proxy() {
    let cluster = shared_cluster().await;
    let client = cluster.client.clone();
    let ns = cluster.namespace("webhook").await;
    // The namespace opts in; it also serves as this test's control-plane
    // namespace (the trust roots live there), so no other test is touched.
    Api::<Namespace>::all(client.clone())
        .patch(
            &ns,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "metadata": {
                    "labels": {"mesh-test-webhook": ns},
                    "annotations": {"linkerd.io/inject": "enabled"},
                }
            })),
        )
        .await
        .expect("annotate the namespace");
    let anchors = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let roots: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "linkerd-identity-trust-roots"},
        "data": {"ca-bundle.crt": anchors},
    }))
    .expect("configmap");
    Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &roots)
        .await
        .expect("trust roots");

    let (ca_pem, tls) = webhook_tls();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut values = Values::new(String::new(), "v0.1.0");
    values.control_plane_namespace = ns.clone();
    let webhook = Webhook::new(client.clone(), Settings { values });
    let mut drain = mesh_core::drain::Drain::new();
    drain.spawn(webhook.serve(listener, tls, drain.signal()));

    let config_name = format!("mesh-test-{ns}");
    let config: MutatingWebhookConfiguration = serde_json::from_value(serde_json::json!({
        "metadata": {"name": config_name},
        "webhooks": [{
            "name": "linkerd-proxy-injector.linkerd.io",
            "clientConfig": {
                "url": format!("https://127.0.0.1:{port}{PATH}"),
                "caBundle": base64::engine::general_purpose::STANDARD.encode(&ca_pem),
            },
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "namespaceSelector": {"matchLabels": {"mesh-test-webhook": ns}},
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        }]
    }))
    .expect("webhook configuration");
    let configs = Api::<MutatingWebhookConfiguration>::all(client.clone());
    configs
        .create(&PostParams::default(), &config)
        .await
        .expect("register the webhook");

    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let created = pods
        .create(&PostParams::default(), &pod("meshed", &[]))
        .await;
    let opted_out = pods
        .create(
            &PostParams::default(),
            &pod("opted-out", &[("linkerd.io/inject", "disabled")]),
        )
        .await;
    let bad = pods
        .create(
            &PostParams::default(),
            &pod("bad", &[("config.linkerd.io/proxy-memory-limit", "plenty")]),
        )
        .await;
    let _ = configs.delete(&config_name, &DeleteParams::default()).await;
    drain.shutdown(std::time::Duration::from_secs(5)).await;

    let created = created.expect("the pod is admitted");
    assert_eq!(
        init_containers(&created),
        [
            ("linkerd-init".to_owned(), None),
            ("linkerd-proxy".to_owned(), Some("Always".to_owned()))
        ]
    );
    let labels = created.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("linkerd.io/workload-ns"), Some(&ns));
    let proxy = &created
        .spec
        .as_ref()
        .expect("spec")
        .init_containers
        .as_ref()
        .expect("inits")[1];
    let anchors_env = proxy
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS")
        .and_then(|e| e.value.clone());
    assert_eq!(
        anchors_env.as_deref(),
        Some(anchors),
        "the cluster's trust roots"
    );
    assert!(init_containers(&opted_out.expect("admitted")).is_empty());
    assert!(
        init_containers(&bad.expect("a bad annotation never blocks a pod")).is_empty(),
        "and it is not injected"
    );
}

/// The attack: a caller that sends an AdmissionReview larger than any the
/// API server sends. It is refused with 413 once the limit is passed,
/// without the rest being read.
#[tokio::test]
async fn an_oversized_review_is_refused_without_being_kept() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (ca_pem, tls) = webhook_tls();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    // No API server behind it: the body is refused before one is asked.
    let client = kube::Client::try_from(kube::Config::new(
        "https://127.0.0.1:1".parse().expect("url"),
    ))
    .expect("client");
    let webhook = Webhook::new(
        client,
        Settings {
            values: Values::new(String::new(), "v0.1.0"),
        },
    );
    let mut drain = mesh_core::drain::Drain::new();
    drain.spawn(webhook.serve(listener, tls, drain.signal()));

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(
            <rustls_pki_types::CertificateDer<'_> as rustls_pki_types::pem::PemObject>::from_pem_slice(
                ca_pem.as_bytes(),
            )
            .expect("ca"),
        )
        .expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut io = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls_pki_types::ServerName::IpAddress(addr.ip().into()),
            tcp,
        )
        .await
        .expect("handshake");
    let size = mesh_injector::webhook::MAX_REVIEW_BYTES * 4;
    let head = format!(
        "POST {PATH} HTTP/1.1\r\nhost: webhook\r\ncontent-type: application/json\r\ncontent-length: {size}\r\n\r\n"
    );
    io.write_all(head.as_bytes()).await.expect("headers");
    let chunk = vec![b' '; 64 * 1024];
    let mut sent = 0;
    while sent < size {
        if io.write_all(&chunk).await.is_err() {
            break;
        }
        sent += chunk.len();
    }
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), io.read(&mut answer))
        .await
        .expect("an answer within 10 s")
        .unwrap_or(0);
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "refused as too large after {sent} of {size} bytes: {answer:?}"
    );
}
