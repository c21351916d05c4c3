//! A workload follows its trust roots directory without a restart: a new
//! issuer named in `issuer.sha256` has it certified again at once (its
//! certificate would otherwise live on for an hour), a new bundle is
//! trusted, and a bundle that is not PEM is refused with the current roots
//! kept. Without the directory the workload keeps its certificate from the
//! old issuer (the control case).

mod support;

use std::time::Duration;

use mesh_api::labels::{ISSUER_FINGERPRINT_KEY, TRUST_BUNDLE_KEY};
use mesh_clusters::testing::shared_cluster;
use mesh_core::identity::refresh::IdentityMetrics;
use support::*;
use tokio::sync::watch;

/// Long enough that no scheduled renewal happens during the test.
const LIFETIME: Duration = Duration::from_secs(3600);

fn sample(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

#[tokio::test]
async fn a_new_issuer_or_bundle_in_the_trust_directory_is_followed_without_a_restart() {
    let cluster = shared_cluster().await;
    let ns = cluster.namespace("trust-dir").await;
    service_account(&cluster, &ns, "followed").await;
    service_account(&cluster, &ns, "unfollowed").await;
    let svc = TestIdentity::start(&cluster, LIFETIME).await;
    let dir = svc.dir.path().to_owned();
    let trust_dir = dir.join("workload-trust-roots");
    project(
        &trust_dir,
        &[
            (TRUST_BUNDLE_KEY, &svc.anchor.cert_pem),
            (ISSUER_FINGERPRINT_KEY, "first"),
        ],
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = IdentityMetrics::register(&mut registry);
    let mut workloads = Vec::new();
    for sa in ["followed", "unfollowed"] {
        let (follows, metrics) = if sa == "followed" {
            (
                Some((trust_dir.clone(), svc.anchor.cert_pem.clone())),
                metrics.clone(),
            )
        } else {
            (None, IdentityMetrics::default())
        };
        let creds =
            spawn_workload(&cluster, &svc, &ns, sa, follows, metrics, stop_rx.clone()).await;
        workloads.push(creds);
    }
    let issuer = new_issuer(&svc.anchor);
    renew_issuer(&svc, &issuer, &svc.anchor);
    // Let the identity service load it, then name it in the directory.
    tokio::time::sleep(Duration::from_secs(1)).await;
    project(
        &trust_dir,
        &[
            (TRUST_BUNDLE_KEY, &svc.anchor.cert_pem),
            (ISSUER_FINGERPRINT_KEY, "second"),
        ],
    );
    wait_for_issuer(&[&workloads[0]], &issuer.cert_pem).await;
    let issuer_der =
        mesh_identity::pem::certificates(issuer.cert_pem.as_bytes(), "issuer").expect("pem");
    assert!(
        workloads[1]
            .certificate_chain()
            .is_some_and(|chain| chain.get(1) != Some(&issuer_der[0])),
        "without the directory the workload keeps its certificate until it is due"
    );

    let exposed = |registry: &prometheus_client::registry::Registry| {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
        text
    };
    assert_eq!(sample(&exposed(&registry), "identity_trust_anchors"), 1.0);
    let anchor2 = new_anchor();
    let bundle = format!("{}{}", svc.anchor.cert_pem, anchor2.cert_pem);
    project(
        &trust_dir,
        &[
            (TRUST_BUNDLE_KEY, &bundle),
            (ISSUER_FINGERPRINT_KEY, "second"),
        ],
    );
    let mut seen = f64::NAN;
    for _ in 0..100 {
        seen = sample(&exposed(&registry), "identity_trust_anchors");
        if seen == 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, 2.0, "the two-anchor bundle is trusted within 10 s");

    project(
        &trust_dir,
        &[
            (TRUST_BUNDLE_KEY, "not a certificate"),
            (ISSUER_FINGERPRINT_KEY, "second"),
        ],
    );
    let mut refused = 0.0;
    for _ in 0..100 {
        refused = sample(&exposed(&registry), "identity_trust_roots_refused_total");
        if refused >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(refused, 1.0, "the unusable bundle is refused");
    assert_eq!(
        sample(&exposed(&registry), "identity_trust_anchors"),
        2.0,
        "the current roots are kept"
    );
    assert!(workloads[0].has_certificate());
    let _ = stop_tx.send(true);
    svc.running.shutdown().await;
}

/// The copies the identity service keeps: one in each namespace it
/// certifies a workload of, with the bundle and the issuer in force, moved
/// along when the issuer changes; a ConfigMap of that name it did not make
/// (a namespace owner's, or an attacker's trying to be overwritten with
/// something else) is never touched.
#[tokio::test]
async fn copies_follow_the_issuer_and_never_take_over_a_configmap_they_did_not_make() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::Api;
    use mesh_api::labels::TRUST_ROOTS_COPY_CONFIGMAP;

    let cluster = shared_cluster().await;
    let copied = cluster.namespace("trust-copy").await;
    let owned = cluster.namespace("trust-owned").await;
    let theirs: ConfigMap = serde_json::from_value(serde_json::json!({
        // Labelled as a copy, as an attacker would: the label proves nothing.
        "metadata": {"name": TRUST_ROOTS_COPY_CONFIGMAP, "labels": {mesh_api::labels::TRUST_ROOTS_COPY_LABEL: "true"}},
        "data": {TRUST_BUNDLE_KEY: "the namespace owner's own"},
    }))
    .expect("configmap");
    Api::<ConfigMap>::namespaced(cluster.client.clone(), &owned)
        .create(&kube::api::PostParams::default(), &theirs)
        .await
        .expect("create");
    let svc = TestIdentity::start_with(&cluster, LIFETIME, true).await;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut workloads = Vec::new();
    for ns in [&copied, &owned] {
        service_account(&cluster, ns, "app").await;
        let metrics = IdentityMetrics::default();
        let creds = spawn_workload(&cluster, &svc, ns, "app", None, metrics, stop_rx.clone()).await;
        workloads.push(creds);
    }
    let copy = |ns: &str| {
        let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), ns);
        async move {
            api.get_opt(TRUST_ROOTS_COPY_CONFIGMAP)
                .await
                .expect("get")
                .and_then(|c| c.data)
                .unwrap_or_default()
        }
    };
    let fingerprint = |pem: &str| {
        let der = mesh_identity::pem::certificates(pem.as_bytes(), "issuer").expect("pem");
        mesh_core::tls::sha256_hex(&der[0])
    };
    let first_issuer = std::fs::read_to_string(&svc.files.certificate).expect("issuer");
    let mut data = Default::default();
    for _ in 0..100 {
        data = copy(&copied).await;
        if data.get(ISSUER_FINGERPRINT_KEY) == Some(&fingerprint(&first_issuer)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        data.get(TRUST_BUNDLE_KEY).map(|b| b.trim()),
        Some(svc.anchor.cert_pem.trim()),
        "the copy holds the bundle: {data:?}"
    );
    assert_eq!(
        data.get(ISSUER_FINGERPRINT_KEY),
        Some(&fingerprint(&first_issuer)),
        "and the issuer in force"
    );

    let issuer = new_issuer(&svc.anchor);
    renew_issuer(&svc, &issuer, &svc.anchor);
    for _ in 0..100 {
        data = copy(&copied).await;
        if data.get(ISSUER_FINGERPRINT_KEY) == Some(&fingerprint(&issuer.cert_pem)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        data.get(ISSUER_FINGERPRINT_KEY),
        Some(&fingerprint(&issuer.cert_pem)),
        "the copy names the new issuer within 10 s"
    );
    let untouched = copy(&owned).await;
    assert_eq!(
        untouched.get(TRUST_BUNDLE_KEY).map(String::as_str),
        Some("the namespace owner's own"),
        "a ConfigMap the identity service did not make is left alone: {untouched:?}"
    );
    assert!(!untouched.contains_key(ISSUER_FINGERPRINT_KEY));
    let _ = stop_tx.send(true);
    svc.running.shutdown().await;
}
