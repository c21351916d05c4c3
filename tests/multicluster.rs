//! `mesh multicluster install`, `link` and `unlink` against a real API
//! server (the shared test cluster plays the cluster being linked to): the
//! Link carries the gateway's port, identity and probe from its Service;
//! the credentials are a kubeconfig that may read Services and nothing
//! secret; what link renders applies, and unlink's output deletes it.
//! `mesh multicluster check` reaches the linked API with the Link's
//! credentials, reviews the mirror's permissions (and names the one taken
//! away), and says the mirror is not running (no node runs pods here).

mod support;

use std::path::Path;
use std::time::Duration;

use mesh_clusters::testing::shared_cluster;
use support::{kubectl, kubectl_path, run, text};

/// Applies mesh's CRDs to the shared cluster (both tests of this file do,
/// side by side: one's create may meet the other's, so it tries again).
async fn apply_crds(kubeconfig: &Path, mesh: &Path) {
    let crds = run(mesh, &["install", "--crds"], None);
    assert!(crds.status.success(), "{}", text(&crds.stderr));
    let mut applied = kubectl(kubeconfig, &["apply", "-f", "-"], Some(&crds.stdout));
    for _ in 0..10 {
        if applied.status.success() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        applied = kubectl(kubeconfig, &["apply", "-f", "-"], Some(&crds.stdout));
    }
    panic!("the CRDs: {}", text(&applied.stderr));
}

#[tokio::test]
async fn link_renders_what_the_other_cluster_needs_and_unlink_removes_it() {
    let cluster = shared_cluster().await;
    let kubeconfig = cluster.kubeconfig().display().to_string();
    let kubectl_bin = kubectl_path();
    let mesh = Path::new(env!("CARGO_BIN_EXE_mesh"));
    let k = |args: &[&str], stdin: Option<&[u8]>| kubectl(&cluster.kubeconfig(), args, stdin);
    // The extension's gateway policy needs the policy CRDs, whichever test
    // of this file runs first.
    apply_crds(&cluster.kubeconfig(), mesh).await;
    let extension = run(mesh, &["multicluster", "install"], None);
    assert!(extension.status.success(), "{}", text(&extension.stderr));
    let mut applied = k(&["apply", "-f", "-"], Some(&extension.stdout));
    for _ in 0..20 {
        // The CRDs may take a moment to be served.
        if applied.status.success() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        applied = k(&["apply", "-f", "-"], Some(&extension.stdout));
    }
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    // The highly available gateway (replicas, spread, disruption budget,
    // surge-first rolling updates) is accepted by the API server too.
    let ha = run(mesh, &["multicluster", "install", "--ha"], None);
    assert!(ha.status.success(), "{}", text(&ha.stderr));
    let ha_text = text(&ha.stdout);
    for expected in [
        "kind: PodDisruptionBudget",
        "replicas: 3",
        "maxUnavailable: 0",
        "podAntiAffinity",
        "config.alpha.linkerd.io/proxy-wait-before-exit-seconds: \"10\"",
        "terminationGracePeriodSeconds: 40",
        "mesh.dev/gateway-reset-key-secret: linkerd-gateway-quic",
        "name: linkerd-gateway-quic",
    ] {
        assert!(
            ha_text.contains(expected),
            "--ha renders {expected:?}:\n{ha_text}"
        );
    }
    let dry_run = k(&["apply", "--dry-run=server", "-f", "-"], Some(&ha.stdout));
    assert!(dry_run.status.success(), "{}", text(&dry_run.stderr));

    // This cluster's kubeconfig names a loopback address, which a mirror
    // in another cluster could never reach, and it publishes no other.
    let link_args = [
        "--kubeconfig",
        &kubeconfig,
        "multicluster",
        "link",
        "--cluster-name",
        "east",
        "--gateway-addresses",
        "172.31.0.129",
    ];
    let refused = run(mesh, &link_args, None);
    assert!(
        !refused.status.success() && text(&refused.stderr).contains("is a loopback address"),
        "link refuses a loopback API server address: {}",
        text(&refused.stderr)
    );
    let server = std::fs::read_to_string(cluster.kubeconfig())
        .expect("kubeconfig")
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("server:")
                .map(|s| s.trim().to_owned())
        })
        .expect("the kubeconfig names a server");

    // The token controller fills the read-only account's token in.
    let mut linked = None;
    for _ in 0..40 {
        let mut args = link_args.to_vec();
        args.extend(["--api-server-address", &server]);
        let out = run(mesh, &args, None);
        if out.status.success() {
            linked = Some(out);
            break;
        }
        assert!(text(&out.stderr).contains("token"), "{}", text(&out.stderr));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let linked = linked.expect("mesh multicluster link succeeds once the token exists");
    let objects: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&text(&linked.stdout)).expect("YAML documents");
    let find = |kind: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    assert_eq!(
        find("Link")["metadata"]["annotations"]["mesh.dev/transport"],
        "auto",
        "QUIC with TCP fallback unless the link says otherwise"
    );
    let link = &find("Link")["spec"];
    assert_eq!(link["targetClusterName"], "east");
    assert_eq!(link["gatewayAddress"], "172.31.0.129");
    assert_eq!(link["gatewayPort"], "4143");
    assert_eq!(
        link["gatewayIdentity"],
        "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"
    );
    assert_eq!(link["probeSpec"]["port"], "4191");
    assert_eq!(link["probeSpec"]["period"], "3s");
    assert_eq!(link["clusterCredentialsSecret"], "cluster-credentials-east");
    let secret = find("Secret");
    assert_eq!(secret["type"], "mirror.linkerd.io/remote-kubeconfig");
    let remote = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(
        remote.path(),
        secret["stringData"]["kubeconfig"]
            .as_str()
            .expect("kubeconfig"),
    )
    .expect("write");
    let remote_path = remote.path().display().to_string();
    let read = run(
        &kubectl_bin,
        &["--kubeconfig", &remote_path, "get", "services", "-A"],
        None,
    );
    assert!(
        read.status.success(),
        "the credentials read Services: {}",
        text(&read.stderr)
    );
    let secrets = run(
        &kubectl_bin,
        &["--kubeconfig", &remote_path, "get", "secrets", "-A"],
        None,
    );
    assert!(!secrets.status.success(), "and no Secrets");
    let mirror = find("Deployment");
    assert_eq!(mirror["metadata"]["name"], "linkerd-service-mirror-east");
    assert_eq!(
        mirror["spec"]["template"]["spec"]["containers"][0]["args"][1],
        "--link=east"
    );

    let applied = k(&["apply", "-f", "-"], Some(&linked.stdout));
    assert!(applied.status.success(), "{}", text(&applied.stderr));

    let check = || {
        let out = run(
            mesh,
            &[
                "--kubeconfig",
                &kubeconfig,
                "multicluster",
                "check",
                "--wait",
                "1s",
                "-o",
                "json",
            ],
            None,
        );
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("mesh multicluster check -o json");
        (out.status.success(), report)
    };
    let result = |report: &serde_json::Value, description: &str| -> (String, String) {
        report["categories"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["checks"].as_array().into_iter().flatten())
            .find(|c| c["description"] == description)
            .map(|c| {
                (
                    c["result"].as_str().unwrap_or_default().to_owned(),
                    c["error"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .unwrap_or_else(|| panic!("no check {description:?} in {report}"))
    };
    let (passed, report) = check();
    assert!(!passed, "the mirror cannot run on a cluster without nodes");
    for description in [
        "Link CRD exists",
        "Link resources are valid",
        "remote cluster access credentials are valid",
        "service mirror controller has required permissions",
    ] {
        assert_eq!(
            result(&report, description).0,
            "success",
            "{description}: {report}"
        );
    }
    let (level, error) = result(&report, "service mirror controllers are running");
    assert_eq!(level, "error");
    assert!(
        error.contains("linkerd-multicluster/linkerd-service-mirror-east"),
        "{error}"
    );
    let (level, error) = result(&report, "all gateways are alive");
    assert_eq!(level, "error");
    assert!(error.contains("Link east"), "{error}");
    // This machine reaches the linked API, but what counts is the mirror,
    // which has never run here.
    let (level, error) = result(&report, "service mirrors reach the linked clusters");
    assert_eq!(level, "error");
    assert!(
        error.contains("Link east")
            && error.contains("has not reported reaching the linked API server"),
        "{error}"
    );

    // What the mirror reports of a local Service holding a mirror's name
    // is a warning naming it.
    assert_eq!(
        result(&report, "no local object holds a mirror's name").0,
        "success"
    );
    let conflict = serde_json::json!({"status": {"conflicts": [{
        "namespace": "shop", "name": "web-east",
        "reason": "Service shop/web-east exists and was not written by the mirror",
    }]}});
    let reported = k(
        &[
            "patch",
            "link",
            "east",
            "-n",
            "linkerd-multicluster",
            "--subresource=status",
            "--type=merge",
            "-p",
            &conflict.to_string(),
        ],
        None,
    );
    assert!(reported.status.success(), "{}", text(&reported.stderr));
    let (_, report) = check();
    let (level, error) = result(&report, "no local object holds a mirror's name");
    assert_eq!(level, "warning", "{report}");
    assert!(error.contains("shop/web-east (Link east)"), "{error}");

    let taken = k(
        &[
            "delete",
            "rolebinding",
            "-n",
            "linkerd-multicluster",
            "linkerd-service-mirror-east-read-link",
        ],
        None,
    );
    assert!(taken.status.success(), "{}", text(&taken.stderr));
    let (_, report) = check();
    let (level, error) = result(
        &report,
        "service mirror controller has required permissions",
    );
    assert_eq!(level, "error");
    assert!(
        error
            .contains("linkerd-service-mirror-east may not get links east in linkerd-multicluster"),
        "{error}"
    );
    let restored = k(&["apply", "-f", "-"], Some(&linked.stdout));
    assert!(restored.status.success(), "{}", text(&restored.stderr));
    let unlink = run(
        mesh,
        &[
            "--kubeconfig",
            &kubeconfig,
            "multicluster",
            "unlink",
            "--cluster-name",
            "east",
        ],
        None,
    );
    assert!(unlink.status.success(), "{}", text(&unlink.stderr));
    let deleted = k(&["delete", "-f", "-"], Some(&unlink.stdout));
    assert!(deleted.status.success(), "{}", text(&deleted.stderr));
    let gone = k(&["get", "link", "-n", "linkerd-multicluster", "east"], None);
    assert!(!gone.status.success(), "the Link is gone");
}

#[tokio::test]
async fn allow_renders_a_policy_the_api_server_accepts_and_names_bad_flags() {
    let cluster = shared_cluster().await;
    let mesh = Path::new(env!("CARGO_BIN_EXE_mesh"));
    let k = |args: &[&str], stdin: Option<&[u8]>| kubectl(&cluster.kubeconfig(), args, stdin);
    apply_crds(&cluster.kubeconfig(), mesh).await;
    let ns = cluster.namespace("allow").await;

    let allow = run(
        mesh,
        &[
            "multicluster",
            "allow",
            "--namespace",
            &ns,
            "--from-namespace",
            "shop,web",
        ],
        None,
    );
    assert!(allow.status.success(), "{}", text(&allow.stderr));
    let objects: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&text(&allow.stdout)).expect("YAML documents");
    let authentication = objects
        .iter()
        .find(|o| o["kind"] == "MeshTLSAuthentication")
        .expect("a MeshTLSAuthentication");
    assert_eq!(
        authentication["spec"]["identities"],
        serde_json::json!([
            "*.shop.serviceaccount.identity.linkerd.cluster.local",
            "*.web.serviceaccount.identity.linkerd.cluster.local",
        ])
    );
    let policy = objects
        .iter()
        .find(|o| o["kind"] == "AuthorizationPolicy")
        .expect("an AuthorizationPolicy");
    assert_eq!(policy["spec"]["targetRef"]["kind"], "Namespace");
    assert_eq!(policy["spec"]["targetRef"]["name"], ns.as_str());

    // The CRDs may take a moment to be served.
    let mut accepted = None;
    for _ in 0..40 {
        let out = k(
            &["apply", "--dry-run=server", "-f", "-"],
            Some(&allow.stdout),
        );
        if out.status.success() {
            accepted = Some(out);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(accepted.is_some(), "the API server accepts the policy");

    let bad = run(
        mesh,
        &[
            "multicluster",
            "allow",
            "--namespace",
            &ns,
            "--identity",
            "Web.shop",
        ],
        None,
    );
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("--identity \"Web.shop\""),
        "{}",
        text(&bad.stderr)
    );
}
