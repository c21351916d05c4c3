//! `mesh install` as an operator uses it: render, `kubectl apply -f -` to a
//! real API server, and the identity service's objects and permissions are
//! there; trust material the operator brings is checked before anything is
//! rendered.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use mesh_clusters::testing::shared_cluster;
use mesh_clusters::{Binaries, Binary};
use mesh_identity::generate;

fn mesh(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mesh"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("running mesh")
}

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(
        Binaries::locate()
            .expect("kubectl is built")
            .path(Binary::Kubectl),
    )
    .arg("--kubeconfig")
    .arg(kubeconfig)
    .args(args)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("running kubectl");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("kubectl output")
}

/// `mesh install` with the operator's anchors and issuer from `dir`, and
/// the injector's webhook certificate when `dir` has one.
fn install_with_files(dir: &Path) -> Output {
    let path = |name: &str| dir.join(name).display().to_string();
    let mut args = vec![
        "install".to_owned(),
        "--identity-trust-anchors-file".into(),
        path("ca.crt"),
        "--identity-issuer-certificate-file".into(),
        path("issuer.crt"),
        "--identity-issuer-key-file".into(),
        path("issuer.key"),
    ];
    if dir.join("webhook.crt").exists() {
        args.extend([
            "--proxy-injector-tls-cert-file".into(),
            path("webhook.crt"),
            "--proxy-injector-tls-key-file".into(),
            path("webhook.key"),
            "--proxy-injector-ca-file".into(),
            path("webhook-ca.crt"),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    mesh(&args)
}

/// Writes `ca.crt`, `issuer.crt` and `issuer.key` into `dir`.
fn write_material(dir: &Path, anchor: &generate::CertAndKey, issuer: &generate::CertAndKey) {
    for (name, pem) in [
        ("ca.crt", &anchor.cert_pem),
        ("issuer.crt", &issuer.cert_pem),
        ("issuer.key", &issuer.key_pem),
    ] {
        std::fs::write(dir.join(name), pem).expect("write");
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn the_rendered_identity_service_applies_with_its_permissions() {
    let cluster = shared_cluster().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let day = Duration::from_secs(86400);
    let anchor =
        generate::trust_anchor("root.linkerd.cluster.local", SystemTime::now(), 3650 * day)
            .expect("anchor");
    let issuer = generate::issuer(
        &anchor,
        "identity.linkerd.cluster.local",
        SystemTime::now(),
        365 * day,
    )
    .expect("issuer");
    write_material(dir.path(), &anchor, &issuer);
    let webhook_ca =
        generate::trust_anchor("webhook CA", SystemTime::now(), day).expect("webhook CA");
    let webhook = generate::issuer(
        &webhook_ca,
        "linkerd-proxy-injector.linkerd.svc",
        SystemTime::now(),
        day,
    )
    .expect("webhook certificate");
    for (name, pem) in [
        ("webhook-ca.crt", &webhook_ca.cert_pem),
        ("webhook.crt", &webhook.cert_pem),
        ("webhook.key", &webhook.key_pem),
    ] {
        std::fs::write(dir.path().join(name), pem).expect("write");
    }
    let rendered = install_with_files(dir.path());
    assert!(rendered.status.success(), "{}", text(&rendered.stderr));
    let again = install_with_files(dir.path());
    assert_eq!(
        rendered.stdout, again.stdout,
        "the same inputs render the same output"
    );

    let kubeconfig = cluster.kubeconfig();
    let applied = kubectl(&kubeconfig, &["apply", "-f", "-"], Some(&rendered.stdout));
    assert!(
        applied.status.success(),
        "kubectl apply: {}",
        text(&applied.stderr)
    );
    let out = text(&applied.stdout);
    for object in [
        "namespace/linkerd",
        "configmap/linkerd-identity-trust-roots",
        "secret/linkerd-identity-issuer",
        "serviceaccount/linkerd-identity",
        "deployment.apps/linkerd-identity",
        "service/linkerd-identity ",
        "service/linkerd-identity-headless",
        "deployment.apps/linkerd-destination",
        "service/linkerd-dst ",
        "service/linkerd-dst-headless",
        "secret/linkerd-proxy-injector-k8s-tls",
        "deployment.apps/linkerd-proxy-injector",
        "service/linkerd-proxy-injector",
        "mutatingwebhookconfiguration.admissionregistration.k8s.io/linkerd-proxy-injector-webhook-config",
    ] {
        assert!(out.contains(object), "{object} not applied:\n{out}");
    }

    let bundle = kubectl(
        &kubeconfig,
        &[
            "get",
            "configmap",
            "-n",
            "linkerd",
            "linkerd-identity-trust-roots",
            "-o",
            "jsonpath={.data.ca-bundle\\.crt}",
        ],
        None,
    );
    assert_eq!(text(&bundle.stdout).trim(), anchor.cert_pem.trim());
    let secret_type = kubectl(
        &kubeconfig,
        &[
            "get",
            "secret",
            "-n",
            "linkerd",
            "linkerd-identity-issuer",
            "-o",
            "jsonpath={.type}",
        ],
        None,
    );
    assert_eq!(text(&secret_type.stdout), "kubernetes.io/tls");
    let can = kubectl(
        &kubeconfig,
        &[
            "auth",
            "can-i",
            "create",
            "tokenreviews",
            "--as=system:serviceaccount:linkerd:linkerd-identity",
        ],
        None,
    );
    assert_eq!(text(&can.stdout).trim(), "yes", "{}", text(&can.stderr));
    let cannot = kubectl(
        &kubeconfig,
        &[
            "auth",
            "can-i",
            "list",
            "secrets",
            "--as=system:serviceaccount:linkerd:linkerd-identity",
        ],
        None,
    );
    assert_eq!(text(&cannot.stdout).trim(), "no");
    for (verb, resource, account, expected) in [
        (
            "watch",
            "endpointslices.discovery.k8s.io",
            "linkerd-destination",
            "yes",
        ),
        ("watch", "pods", "linkerd-destination", "yes"),
        ("list", "secrets", "linkerd-destination", "no"),
        ("get", "namespaces", "linkerd-proxy-injector", "yes"),
        ("list", "secrets", "linkerd-proxy-injector", "no"),
    ] {
        let can = kubectl(
            &kubeconfig,
            &[
                "auth",
                "can-i",
                verb,
                resource,
                &format!("--as=system:serviceaccount:linkerd:{account}"),
            ],
            None,
        );
        assert_eq!(
            text(&can.stdout).trim(),
            expected,
            "{account} {verb} {resource}: {}",
            text(&can.stderr)
        );
    }
    // The webhook has no pod to answer here (no nodes): leave the shared
    // API server as other tests expect it.
    let removed = kubectl(
        &kubeconfig,
        &[
            "delete",
            "mutatingwebhookconfiguration",
            "linkerd-proxy-injector-webhook-config",
        ],
        None,
    );
    assert!(removed.status.success(), "{}", text(&removed.stderr));
}

#[test]
fn trust_material_that_does_not_fit_is_refused_by_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let day = Duration::from_secs(86400);
    let now = SystemTime::now();
    let anchor =
        generate::trust_anchor("root.linkerd.cluster.local", now, 10 * day).expect("anchor");
    let other = generate::trust_anchor("someone-else", now, 10 * day).expect("other");
    let foreign =
        generate::issuer(&other, "identity.linkerd.cluster.local", now, day).expect("issuer");
    write_material(dir.path(), &anchor, &foreign);
    let path = |name: &str| dir.path().join(name).display().to_string();
    let out = install_with_files(dir.path());
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing is rendered");
    let err = text(&out.stderr);
    assert!(
        err.contains("--identity-issuer-certificate-file") && err.contains("does not chain"),
        "{err}"
    );

    let out = mesh(&["install", "--identity-trust-anchors-file", &path("ca.crt")]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("--identity-issuer-certificate-file"), "{err}");

    let out = mesh(&[
        "identity",
        "inspect",
        &path("issuer.crt"),
        "--trust-anchors-file",
        &path("ca.crt"),
    ]);
    assert!(!out.status.success(), "an untrusted chain fails inspect");
    assert!(
        text(&out.stdout).contains("does not chain"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn inspect_explains_a_chain_in_text_and_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let day = Duration::from_secs(86400);
    let now = SystemTime::now();
    let anchor =
        generate::trust_anchor("root.linkerd.cluster.local", now, 10 * day).expect("anchor");
    let issuer = generate::issuer(&anchor, "identity.linkerd.cluster.local", now, 365 * day)
        .expect("issuer");
    std::fs::write(dir.path().join("ca.crt"), &anchor.cert_pem).expect("write");
    std::fs::write(dir.path().join("issuer.crt"), &issuer.cert_pem).expect("write");
    let ca = dir.path().join("ca.crt").display().to_string();
    let crt = dir.path().join("issuer.crt").display().to_string();
    let out = mesh(&["identity", "inspect", &crt, "--trust-anchors-file", &ca]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("CN=identity.linkerd.cluster.local"),
        "{shown}"
    );
    assert!(
        shown.contains("chains to trust anchor CN=root.linkerd.cluster.local"),
        "{shown}"
    );
    let json = mesh(&[
        "identity",
        "inspect",
        &crt,
        "--trust-anchors-file",
        &ca,
        "-o",
        "json",
    ]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(value["anchor"], "CN=root.linkerd.cluster.local");
    assert_eq!(value["certificates"][0]["is_ca"], true);
}
