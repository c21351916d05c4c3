//! `mesh inject` as a user runs it: manifests in, injected manifests out
//! that a real API server accepts (native sidecar and all), a report on
//! stderr, and clear errors for bad annotations and missing trust anchors.

mod support;

use std::io::Write;
use std::process::Output;

use mesh_clusters::testing::shared_cluster;
use support::{kubectl, run, text};

fn mesh(args: &[&str], stdin: &[u8]) -> Output {
    run(
        std::path::Path::new(env!("CARGO_BIN_EXE_mesh")),
        args,
        Some(stdin),
    )
}

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
      annotations:
        config.linkerd.io/proxy-cpu-limit: 1500m
        config.linkerd.io/skip-outbound-ports: "3306"
    spec:
      containers:
      - name: web
        image: ghcr.io/stefanprodan/podinfo:6.7.0
---
apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: migrate
        image: busybox
        command: ["true"]
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{port: 9898}]
"#;

fn anchors() -> tempfile::NamedTempFile {
    let anchor = mesh_identity::generate::trust_anchor(
        "root.linkerd.cluster.local",
        std::time::SystemTime::now(),
        std::time::Duration::from_secs(86400),
    )
    .expect("anchor");
    let mut file = tempfile::NamedTempFile::new().expect("tempfile");
    file.write_all(anchor.cert_pem.as_bytes()).expect("write");
    file
}

#[tokio::test]
async fn injected_workloads_are_accepted_by_the_api_server() {
    let cluster = shared_cluster().await;
    let ns = cluster.namespace("inject").await;
    let anchors = anchors();
    let path = anchors.path().display().to_string();
    let out = mesh(
        &["inject", "-", "--identity-trust-anchors-file", &path],
        APP.as_bytes(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stderr);
    for line in [
        "deployment/web",
        "injected",
        "job/migrate",
        "service/web",
        "not a workload",
    ] {
        assert!(report.contains(line), "{line} in the report:\n{report}");
    }
    let injected = text(&out.stdout);
    for needle in [
        "name: linkerd-init",
        "name: linkerd-proxy",
        "restartPolicy: Always",
        "--outbound-ports-to-ignore",
        "LINKERD2_PROXY_CORES",
        "linkerd.io/inject: enabled",
    ] {
        assert!(injected.contains(needle), "{needle} in\n{injected}");
    }
    let applied = kubectl(
        &cluster.kubeconfig(),
        &["-n", &ns, "apply", "--dry-run=server", "-f", "-"],
        Some(injected.as_bytes()),
    );
    assert!(
        applied.status.success(),
        "the API server refuses the injected manifests: {}",
        text(&applied.stderr)
    );
    let again = mesh(
        &["inject", "-", "--identity-trust-anchors-file", &path],
        injected.as_bytes(),
    );
    assert!(again.status.success());
    assert_eq!(again.stdout, out.stdout, "injecting twice changes nothing");
    assert!(text(&again.stderr).contains("already has a linkerd-proxy"));
}

#[test]
fn a_bad_annotation_is_named_and_nothing_is_printed() {
    let anchors = anchors();
    let bad = APP.replace("1500m", "fast");
    let out = mesh(
        &[
            "inject",
            "-",
            "--identity-trust-anchors-file",
            &anchors.path().display().to_string(),
        ],
        bad.as_bytes(),
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("config.linkerd.io/proxy-cpu-limit"), "{err}");
    assert!(err.contains("deployment/web"), "{err}");
    assert!(out.stdout.is_empty(), "nothing half-injected on stdout");
}

#[test]
fn without_anchors_or_a_cluster_the_error_says_what_to_give() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("missing");
    let out = mesh(
        &[
            "inject",
            "-",
            "--kubeconfig",
            &kubeconfig.display().to_string(),
        ],
        APP.as_bytes(),
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("--identity-trust-anchors-file"), "{err}");
}
