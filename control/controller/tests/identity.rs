//! `mesh-controller identity` run as a process outside the cluster, as in
//! development: it refuses an issuer that does not fit with a clear error,
//! and with a good one it becomes ready, certifies a workload, and stops
//! cleanly on SIGTERM.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use mesh_api::IdentityName;
use mesh_clusters::testing::shared_cluster;
use mesh_core::identity::client;
use mesh_core::tls::Credentials;
use mesh_identity::generate::{self, CertAndKey};
use support::{free_addr, stop_with_sigterm, wait_ready};

fn write_material(dir: &Path, anchor: &CertAndKey, issuer: &CertAndKey) {
    std::fs::write(dir.join("ca-bundle.crt"), &anchor.cert_pem).expect("write");
    std::fs::create_dir_all(dir.join("issuer")).expect("mkdir");
    std::fs::write(dir.join("issuer/tls.crt"), &issuer.cert_pem).expect("write");
    std::fs::write(dir.join("issuer/tls.key"), &issuer.key_pem).expect("write");
}

fn controller(dir: &Path, kubeconfig: &Path, listen: SocketAddr, admin: SocketAddr) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mesh-controller"));
    cmd.arg("identity")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg(format!("--listen={listen}"))
        .arg(format!("--admin-listen={admin}"))
        .arg(format!(
            "--trust-anchors-file={}",
            dir.join("ca-bundle.crt").display()
        ))
        .arg(format!("--issuer-dir={}", dir.join("issuer").display()))
        .stdin(Stdio::null());
    cmd
}

#[tokio::test]
async fn an_issuer_from_another_anchor_stops_start_up_with_the_reason() {
    let cluster = shared_cluster().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let now = SystemTime::now();
    let day = Duration::from_secs(86400);
    let anchor =
        generate::trust_anchor("root.linkerd.cluster.local", now, 10 * day).expect("anchor");
    let other = generate::trust_anchor("other-root", now, 10 * day).expect("anchor");
    let foreign =
        generate::issuer(&other, "identity.linkerd.cluster.local", now, day).expect("issuer");
    write_material(dir.path(), &anchor, &foreign);
    let out = controller(dir.path(), &cluster.kubeconfig(), free_addr(), free_addr())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not chain to any trust anchor") && err.contains("other-root"),
        "{err}"
    );
}

#[tokio::test]
async fn it_serves_certify_and_stops_on_sigterm() {
    let cluster = shared_cluster().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let now = SystemTime::now();
    let day = Duration::from_secs(86400);
    let anchor =
        generate::trust_anchor("root.linkerd.cluster.local", now, 10 * day).expect("anchor");
    let issuer = generate::issuer(&anchor, "identity.linkerd.cluster.local", now, 365 * day)
        .expect("issuer");
    write_material(dir.path(), &anchor, &issuer);
    let (listen, admin) = (free_addr(), free_addr());
    let mut child =
        tokio::process::Command::from(controller(dir.path(), &cluster.kubeconfig(), listen, admin))
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn");

    assert!(
        wait_ready(admin, Duration::from_secs(10)).await,
        "the admin endpoint never said ready"
    );

    let ns = cluster.namespace("ctl").await;
    mesh_clusters::testing::service_account(&cluster.client, &ns, "app").await;
    let token = mesh_clusters::testing::request_token(
        &cluster.client,
        &ns,
        "app",
        mesh_api::labels::IDENTITY_TOKEN_AUDIENCE,
    )
    .await;
    let token_path = dir.path().join("token");
    std::fs::write(&token_path, token).expect("write token");

    let identity = IdentityName::for_service_account("app", &ns).to_string();
    let roots =
        mesh_identity::pem::certificates(anchor.cert_pem.as_bytes(), "anchor").expect("pem");
    let creds = Credentials::new(&identity, &roots).expect("creds");
    let server_identity = "linkerd-identity.linkerd.serviceaccount.identity.linkerd.cluster.local";
    let channel = client::channel(&listen.to_string(), server_identity, &creds).expect("channel");
    let certified = client::certify(channel, &identity, &token_path)
        .await
        .expect("certified");
    assert_eq!(mesh_core::tls::dns_names(&certified.chain[0]), [identity]);

    stop_with_sigterm(&mut child).await;
}
