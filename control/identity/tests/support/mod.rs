//! Shared set-up for the identity integration tests: an identity service
//! started in-process on loopback against the shared kube-apiserver, its
//! issuer files in a temporary directory, ServiceAccount tokens, and mTLS
//! echo peers.
#![allow(dead_code, unreachable_pub)] // each test binary uses part of it

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use mesh_clusters::testing::TestCluster;
use mesh_core::tls::Credentials;
use mesh_identity::ca::IssuancePolicy;
use mesh_identity::generate::{self, CertAndKey};
use mesh_identity::issuer::IssuerFiles;
use mesh_identity::server::{self, Running, ServerConfig};
use rustls_pki_types::CertificateDer;
use tempfile::TempDir;

pub const DAY: Duration = Duration::from_secs(24 * 3600);

/// An identity service and the files it reads: the issuer Secret and the
/// trust-roots ConfigMap as kubelet projects them into the pod
/// (`issuer/` with `tls.crt`, `tls.key`, `ca.crt`; `roots/ca-bundle.crt`).
pub struct TestIdentity {
    pub running: Running,
    pub dir: TempDir,
    pub files: IssuerFiles,
    pub anchor: CertAndKey,
}

pub fn new_anchor() -> CertAndKey {
    generate::trust_anchor(
        "root.linkerd.cluster.local",
        SystemTime::now() - DAY,
        3650 * DAY,
    )
    .expect("anchor")
}

pub fn new_issuer(anchor: &CertAndKey) -> CertAndKey {
    generate::issuer(
        anchor,
        "identity.linkerd.cluster.local",
        SystemTime::now() - DAY,
        365 * DAY,
    )
    .expect("issuer")
}

/// Writes `files` (key, contents) into the volume at `dir` as kubelet
/// projects a Secret or ConfigMap, and as it does on every update: all
/// keys into a new timestamped directory, then one atomic rename of the
/// `..data` link to it; each key is a link through `..data`. A renewal by
/// cert-manager (a new `tls.crt`, `tls.key` and `ca.crt` in the issuer
/// Secret) reaches the identity service this way.
pub fn project(dir: &Path, files: &[(&str, &str)]) {
    use std::os::unix::fs::symlink;
    static VERSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    std::fs::create_dir_all(dir).expect("volume dir");
    let version = format!(
        "..2026_12_06_{}",
        VERSION.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    std::fs::create_dir(dir.join(&version)).expect("version dir");
    for (key, contents) in files {
        std::fs::write(dir.join(&version).join(key), contents).expect("write key");
    }
    let _ = std::fs::remove_file(dir.join("..data_tmp"));
    symlink(&version, dir.join("..data_tmp")).expect("..data_tmp");
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("swap ..data");
    for (key, _) in files {
        if std::fs::symlink_metadata(dir.join(key)).is_err() {
            symlink(Path::new("..data").join(key), dir.join(key)).expect("key link");
        }
    }
    for entry in std::fs::read_dir(dir).expect("volume") {
        let name = entry.expect("entry").file_name();
        let name = name.to_string_lossy();
        if name.starts_with("..2") && *name != version {
            std::fs::remove_dir_all(dir.join(&*name)).expect("old version");
        }
    }
}

/// Renews the issuer Secret in `svc`'s volume: certificate, key and the
/// CA that signed it, all at once.
pub fn renew_issuer(svc: &TestIdentity, issuer: &CertAndKey, anchor: &CertAndKey) {
    project(
        &svc.dir.path().join("issuer"),
        &[
            ("tls.crt", &issuer.cert_pem),
            ("tls.key", &issuer.key_pem),
            ("ca.crt", &anchor.cert_pem),
        ],
    );
}

/// Replaces the trust-roots ConfigMap's bundle in `svc`'s volume.
pub fn set_trust_roots(svc: &TestIdentity, bundle: &str) {
    project(&svc.dir.path().join("roots"), &[("ca-bundle.crt", bundle)]);
}

impl TestIdentity {
    pub async fn start(cluster: &TestCluster, lifetime: Duration) -> Self {
        Self::start_with(cluster, lifetime, false).await
    }

    /// [`Self::start`], keeping trust roots copies when `trust_copies`.
    pub async fn start_with(cluster: &TestCluster, lifetime: Duration, trust_copies: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let anchor = new_anchor();
        let issuer = new_issuer(&anchor);
        project(
            &dir.path().join("issuer"),
            &[
                ("tls.crt", &issuer.cert_pem),
                ("tls.key", &issuer.key_pem),
                ("ca.crt", &anchor.cert_pem),
            ],
        );
        project(
            &dir.path().join("roots"),
            &[("ca-bundle.crt", &anchor.cert_pem)],
        );
        let files = IssuerFiles::in_secret_dir(
            &dir.path().join("issuer"),
            dir.path().join("roots").join("ca-bundle.crt"),
        );
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            admin_listen: "127.0.0.1:0".parse().expect("addr"),
            files: files.clone(),
            policy: IssuancePolicy {
                lifetime,
                clock_skew: Duration::from_secs(20),
            },
            control_namespace: "linkerd".into(),
            trust_domain: "cluster.local".into(),
            reload_interval: Duration::from_millis(200),
            admission: mesh_identity::admission::Limits::default(),
            trust_copies,
        };
        let running = server::start(config, cluster.client.clone())
            .await
            .expect("identity service starts");
        Self {
            running,
            dir,
            files,
            anchor,
        }
    }

    pub fn anchors(&self) -> Vec<CertificateDer<'static>> {
        roots_of(&[&self.anchor])
    }

    pub fn addr(&self) -> String {
        self.running.addr.to_string()
    }

    pub async fn metrics(&self) -> String {
        http_get(self.running.admin_addr, "/metrics").await
    }
}

pub fn roots_of(anchors: &[&CertAndKey]) -> Vec<CertificateDer<'static>> {
    anchors
        .iter()
        .flat_map(|a| {
            mesh_identity::pem::certificates(a.cert_pem.as_bytes(), "anchor").expect("pem")
        })
        .collect()
}

/// A minimal HTTP/1 GET, returning the body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect admin");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

/// Waits (up to 30 s) for a ServiceAccount the controller-manager makes.
pub async fn wait_for_service_account(cluster: &TestCluster, ns: &str, name: &str) {
    let api = Api::<ServiceAccount>::namespaced(cluster.client.clone(), ns);
    for _ in 0..300 {
        if matches!(api.get_opt(name).await, Ok(Some(_))) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("ServiceAccount {ns}/{name} never appeared");
}

/// Creates ServiceAccount `name` in `ns` (or returns the existing one).
pub async fn service_account(cluster: &TestCluster, ns: &str, name: &str) -> ServiceAccount {
    mesh_clusters::testing::service_account(&cluster.client, ns, name).await
}

/// A token for `ns/sa` and `audience`, written to a file.
pub async fn token_file(
    cluster: &TestCluster,
    dir: &Path,
    ns: &str,
    sa: &str,
    audience: &str,
) -> PathBuf {
    let token = mesh_clusters::testing::request_token(&cluster.client, ns, sa, audience).await;
    let path = dir.join(format!("{ns}-{sa}-{audience}.token"));
    std::fs::write(&path, token).expect("write token");
    path
}

/// Credentials for `identity` trusting `roots`.
pub fn credentials(identity: &str, roots: &[CertificateDer<'static>]) -> Arc<Credentials> {
    Credentials::new(identity, roots).expect("credentials")
}

/// Waits until every workload presents a leaf issued by `issuer_pem`.
pub async fn wait_for_issuer(workloads: &[&Arc<Credentials>], issuer_pem: &str) {
    let issuer =
        mesh_identity::pem::certificates(issuer_pem.as_bytes(), "issuer").expect("pem")[0].clone();
    for _ in 0..150 {
        let done = workloads.iter().all(|w| {
            w.certificate_chain()
                .is_some_and(|chain| chain.get(1) == Some(&issuer))
        });
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the workloads did not renew onto the new issuer within 15 s");
}

/// A workload of ServiceAccount `sa` in `ns` kept certified by `svc` (fast
/// back-off) until `stop`, following `trust_dir` when given (with the
/// bundle it starts with), counting in `metrics`. Its credentials.
pub async fn spawn_workload(
    cluster: &TestCluster,
    svc: &TestIdentity,
    ns: &str,
    sa: &str,
    trust_dir: Option<(PathBuf, String)>,
    metrics: mesh_core::identity::IdentityMetrics,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Arc<Credentials> {
    let name = mesh_api::IdentityName::for_service_account(sa, ns).to_string();
    let creds = credentials(&name, &svc.anchors());
    let config = mesh_core::identity::IdentityConfig {
        addr: svc.addr(),
        server_identity: svc.running.server_identity.clone(),
        token_path: token_file(
            cluster,
            svc.dir.path(),
            ns,
            sa,
            mesh_api::labels::IDENTITY_TOKEN_AUDIENCE,
        )
        .await,
        backoff: mesh_core::identity::schedule::Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(1),
        },
        trust_dir,
    };
    tokio::spawn(mesh_core::identity::refresh::run(
        config,
        creds.clone(),
        metrics,
        stop,
    ));
    creds
}
