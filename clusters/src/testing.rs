//! Test fixtures: one real control plane, and one `west`/`east` pair,
//! shared by every test of a test run.
//!
//! The first test that asks starts it, under a lock, in
//! `$TMPDIR/mesh-tests-<runner pid>/`, and hands it over to the test runner
//! (the parent of the test process: cargo-nextest or cargo); every other test
//! of the run, in whichever process, finds it there. A janitor removes it
//! when the runner exits. Tests isolate themselves with namespaces.
//!
//! When the control plane cannot start (no binaries, no permission) every
//! test that needs it fails with the reason; none passes by skipping.
//!
//! Helpers for what many tests set up ([`service_account`],
//! [`request_token`], [`ensure_namespace`]) panic with what failed: they are
//! for tests and benchmarks only. [`ApiForwarder`] puts the API server
//! behind a connection a test can cut, for outages.

use std::fs::File;
use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

use crate::binaries::Binaries;
use crate::control_plane::{self, ControlPlane, ControlPlaneConfig, ControlPlaneInfo};
use crate::pair::{self, Pair, PairInfo, PairOptions};

/// A control plane a test can use.
#[derive(Clone)]
pub struct TestCluster {
    /// Where it is.
    pub info: ControlPlaneInfo,
    /// An admin client.
    pub client: kube::Client,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// The control plane shared by this test run, started on first use.
///
/// # Panics
///
/// When it cannot be started or reached, with the reason: a test that needs
/// a cluster must fail loudly, not skip.
pub async fn shared_cluster() -> TestCluster {
    match try_shared_cluster().await {
        Ok(cluster) => cluster,
        Err(e) => panic!(
            "this test needs a local Kubernetes control plane and none could be started: {e:#}"
        ),
    }
}

async fn try_shared_cluster() -> anyhow::Result<TestCluster> {
    let owner = nix::unistd::getppid().as_raw().unsigned_abs();
    let dir = std::env::temp_dir().join(format!("mesh-tests-{owner}"));
    let info = loop {
        std::fs::create_dir_all(&dir)?;
        let lock = lock_dir(&dir).await?;
        if !dir.exists() {
            // A failed start removed it while we waited: try again.
            continue;
        }
        let info = match control_plane::read_detached(&dir) {
            Some(info) if control_plane::is_ready(&info.kubeconfig).await => info,
            Some(info) => anyhow::bail!(
                "the shared control plane in {} stopped answering; its logs are in {}/logs",
                dir.display(),
                info.dir.display()
            ),
            None => {
                let binaries = Binaries::locate()?;
                let config = ControlPlaneConfig {
                    name: "test".into(),
                    ..ControlPlaneConfig::default()
                };
                let plane = ControlPlane::start(&binaries, &dir, config).await?;
                plane.hand_over(owner)?
            }
        };
        drop(lock);
        break info;
    };
    let client = control_plane::client_for(&info.kubeconfig).await?;
    Ok(TestCluster { info, client })
}

/// The `west`/`east` pair shared by this test run, started on first use the
/// way [`shared_cluster`] is (in `$TMPDIR/mesh-pair-tests-<runner pid>/`,
/// removed with every process and namespace when the runner exits), with
/// 20 ms of one-way delay on its WAN. Tests isolate themselves with
/// namespaces; tests that impair the WAN must
/// not run beside others that use it (see `.config/nextest.toml`).
///
/// # Panics
///
/// When the pair cannot be started, with the reason.
pub async fn shared_pair() -> PairInfo {
    match try_shared_pair().await {
        Ok(info) => info,
        Err(e) => panic!(
            "this test needs the local west/east clusters and they could not be started: {e:#}"
        ),
    }
}

async fn try_shared_pair() -> anyhow::Result<PairInfo> {
    let owner = nix::unistd::getppid().as_raw().unsigned_abs();
    let dir = std::env::temp_dir().join(format!("mesh-pair-tests-{owner}"));
    loop {
        std::fs::create_dir_all(&dir)?;
        let lock = lock_dir(&dir).await?;
        if !dir.exists() {
            continue;
        }
        let info = match pair::read_detached(&dir) {
            Some(info) if pair::is_ready(&info).await => info,
            Some(_) => anyhow::bail!(
                "the shared clusters in {} stopped answering; see their logs there",
                dir.display()
            ),
            None => {
                let binaries = Binaries::locate()?;
                let options = PairOptions {
                    cluster_domain: "cluster.local".into(),
                    flat: false,
                    // The multicluster scenarios' stated conditions: a
                    // 20 ms WAN between the clusters.
                    wan_settings: "delay=20ms".into(),
                    mesh_bin_dir: mesh_bin_dir()?,
                };
                let started = Pair::start(&binaries, &dir, options).await;
                match started {
                    Ok(pair) => pair.hand_over(owner)?,
                    Err(e) => {
                        let _ = std::fs::remove_dir_all(&dir);
                        return Err(e);
                    }
                }
            }
        };
        drop(lock);
        return Ok(info);
    }
}

/// Where mesh's binaries (`mesh-node`, `mesh-podinfo`, …) are for a test
/// ([`crate::programs`]), once they are built.
pub fn mesh_bin_dir() -> anyhow::Result<PathBuf> {
    crate::programs::find(
        &["mesh-node", "mesh-podinfo"],
        "build the workspace's programs first (`cargo build --workspace --bins`; `scripts/test.sh` does)",
    )
}

/// Takes an exclusive lock on a directory, waiting for it off the runtime.
async fn lock_dir(dir: &Path) -> std::io::Result<File> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        let file = File::open(&dir)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(std::io::Error::other)?
}

impl TestCluster {
    /// Creates a namespace named `<prefix>-<unique suffix>` for one test.
    pub async fn namespace(&self, prefix: &str) -> String {
        let ns = Namespace {
            metadata: ObjectMeta {
                generate_name: Some(format!("{prefix}-")),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let created = Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating a test namespace {prefix}-*: {e}"));
        created
            .metadata
            .name
            .unwrap_or_else(|| panic!("the API server named no namespace for {prefix}-*"))
    }

    /// The kubeconfig path, for tools (kubectl) a test runs.
    pub fn kubeconfig(&self) -> PathBuf {
        self.info.kubeconfig.clone()
    }

    /// The kubeconfig's text with its server replaced by `server`.
    pub fn kubeconfig_via(&self, server: &str) -> String {
        let kubeconfig = std::fs::read_to_string(self.kubeconfig())
            .unwrap_or_else(|e| panic!("reading the shared kubeconfig: {e}"));
        kubeconfig
            .lines()
            .map(|line| match line.trim_start().strip_prefix("server: ") {
                Some(_) => format!("    server: {server}"),
                None => line.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The API server's address, as the kubeconfig names it.
    pub fn api_address(&self) -> std::net::SocketAddr {
        let kubeconfig = std::fs::read_to_string(self.kubeconfig())
            .unwrap_or_else(|e| panic!("reading the shared kubeconfig: {e}"));
        kubeconfig
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("server: https://"))
            .and_then(|server| server.trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("the shared kubeconfig names no https://ip:port server"))
    }
}

/// The API server behind a TCP forwarder on loopback that a test can cut
/// (every connection closed, new ones refused) and restore on the same
/// port: an outage of the API as its clients see it.
#[derive(Debug)]
pub struct ApiForwarder {
    /// The port it listens on.
    pub port: u16,
    upstream: std::net::SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ApiForwarder {
    /// Forwards to `upstream`.
    pub async fn start(upstream: std::net::SocketAddr) -> Self {
        let mut forwarder = Self {
            port: 0,
            upstream,
            task: None,
        };
        forwarder.restore().await;
        forwarder
    }

    /// `https://127.0.0.1:<port>`, for a kubeconfig.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Listens again (on the same port after the first time).
    pub async fn restore(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap_or_else(|e| panic!("binding the API forwarder: {e}"));
        self.port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("the forwarder's address: {e}"))
            .port();
        let upstream = self.upstream;
        self.task = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    /// Closes the listener and every connection through it.
    pub fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Creates ServiceAccount `ns/name`, or returns it when it exists.
pub async fn service_account(client: &kube::Client, ns: &str, name: &str) -> ServiceAccount {
    let api = Api::<ServiceAccount>::namespaced(client.clone(), ns);
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    match api.create(&PostParams::default(), &sa).await {
        Ok(sa) => sa,
        Err(kube::Error::Api(status)) if status.code == 409 => api
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("reading ServiceAccount {ns}/{name}: {e}")),
        Err(e) => panic!("creating ServiceAccount {ns}/{name}: {e}"),
    }
}

/// Creates namespace `name` unless it exists.
pub async fn ensure_namespace(client: &kube::Client, name: &str) {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => panic!("creating namespace {name}: {e}"),
    }
}

/// A token for ServiceAccount `ns/sa` and `audience` (TokenRequest), valid
/// for an hour, as a projected token volume would hold it.
pub async fn request_token(client: &kube::Client, ns: &str, sa: &str, audience: &str) -> String {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![audience.to_owned()],
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(sa, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {ns}/{sa} ({audience}): {e}"))
        .status
        .unwrap_or_else(|| panic!("TokenRequest for {ns}/{sa} has no status"))
        .token
}

/// Creates `crds` unless present and waits until each is established.
pub async fn ensure_crds(
    client: &kube::Client,
    crds: Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>,
) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        match api.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {
                // Already there, perhaps from an older build: bring it up
                // to this one (versions added since).
                let params = kube::api::PatchParams::apply("mesh-tests").force();
                if let Err(e) = api
                    .patch(&name, &params, &kube::api::Patch::Apply(&crd))
                    .await
                {
                    panic!("updating CRD {name}: {e}");
                }
            }
            Err(e) => panic!("creating CRD {name}: {e}"),
        }
        let mut established = false;
        for _ in 0..100 {
            established = api
                .get(&name)
                .await
                .ok()
                .and_then(|c| c.status?.conditions)
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                });
            if established {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(established, "CRD {name} is not established within 10 s");
    }
}
