//! One Kubernetes control plane on this host: etcd, kube-apiserver (with
//! ServiceAccount token signing, so TokenRequest and TokenReview work) and
//! kube-controller-manager, all from the pinned binaries, in one directory
//! that holds their certificates, data, logs and a kubeconfig.
//!
//! A [`ControlPlane`] is owned by the process that started it: dropping it,
//! or that process dying in any way, stops every component and removes the
//! directory (see [`crate::process`]). [`ControlPlane::detach`] gives it up to
//! `mesh down`, and [`ControlPlane::hand_over`] to another process's lifetime
//! (a test run).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::binaries::{Binaries, Binary};
use crate::kubeconfig::{self, KubeconfigEntry};
use crate::pki::{ControlPlanePki, ServingNames};
use crate::process::{self, Component, Janitor};

/// What a control plane looks like.
#[derive(Debug, Clone)]
pub struct ControlPlaneConfig {
    /// Cluster name, used as kubeconfig context name (`local`, `west`, …).
    pub name: String,
    /// The address the API server and etcd listen on.
    pub bind_address: IpAddr,
    /// The service CIDR; its first address is the `kubernetes` Service.
    pub service_cidr: String,
    /// The cluster DNS domain.
    pub cluster_domain: String,
    /// How long to wait for every component to be ready.
    pub ready_timeout: Duration,
    /// Where the components run; `None` runs etcd, the API server and the
    /// controller-manager on the host (a control plane without nodes, as
    /// tests of the control plane use).
    pub node: Option<NodePlacement>,
}

/// A control plane that runs inside a node's network namespace, with a
/// scheduler and kube-proxy, ready for a node agent.
#[derive(Debug, Clone)]
pub struct NodePlacement {
    /// The node's network namespace.
    pub netns: String,
    /// More addresses the API server is reached at (the WAN address).
    pub extra_addresses: Vec<IpAddr>,
    /// The pod CIDR (the controller-manager gives the node a /24 of it).
    pub pod_cidr: String,
    /// The node's name (kube-proxy's hostname).
    pub node_name: String,
}

/// The API server's port inside a node namespace.
pub const NODE_APISERVER_PORT: u16 = 6443;

/// The node agent's kubelet-API serving certificate, under `<dir>/pki/`.
pub const KUBELET_CERT: &str = "kubelet.crt";
/// Its key.
pub const KUBELET_KEY: &str = "kubelet.key";
/// The cluster CA, under `<dir>/pki/`.
pub const CA_CERT: &str = "ca.crt";

impl Default for ControlPlaneConfig {
    fn default() -> Self {
        Self {
            name: "local".into(),
            bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            service_cidr: "10.96.0.0/16".into(),
            cluster_domain: "cluster.local".into(),
            ready_timeout: Duration::from_secs(120),
            node: None,
        }
    }
}

/// Where a running control plane is and what runs it; written to
/// `<dir>/cluster.json` when it is detached.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ControlPlaneInfo {
    /// Cluster name.
    pub name: String,
    /// Its directory (certificates, data, logs, kubeconfig).
    pub dir: PathBuf,
    /// The kubeconfig for its admin user.
    pub kubeconfig: PathBuf,
    /// The API server URL.
    pub server: String,
    /// Each component's name and process id.
    pub components: Vec<(String, i32)>,
}

/// How long components get to exit on SIGTERM before SIGKILL. Short on
/// purpose: a local cluster's data is deleted with it, so a graceful API
/// server drain (which waits up to a minute for watches to end) buys nothing.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// The file in a detached control plane's directory that describes it.
pub const INFO_FILE: &str = "cluster.json";

/// Why a control plane did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// Certificates could not be made.
    #[error("generating the cluster certificates: {0}")]
    Pki(#[from] rcgen::Error),
    /// A component exited during start-up.
    #[error(
        "{component} exited during start-up ({status}); the end of its log ({log_path}):\n{log}"
    )]
    Exited {
        /// Which component.
        component: &'static str,
        /// Its exit status.
        status: String,
        /// Where its full log is (removed with the directory).
        log_path: String,
        /// The end of its log.
        log: String,
    },
    /// A component did not become ready in time.
    #[error("{what} not ready after {waited:?}; the end of the {component} log:\n{log}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// How long.
        waited: Duration,
        /// The component most likely at fault.
        component: &'static str,
        /// The end of its log.
        log: String,
    },
    /// The kubeconfig could not be turned into a client.
    #[error("building a client from {path}: {source}")]
    Client {
        /// The kubeconfig.
        path: PathBuf,
        /// The error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StartError {
    fn is_port_clash(&self) -> bool {
        matches!(self, StartError::Exited { log, .. } if log.contains("address already in use"))
    }
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let context = context.into();
    move |source| StartError::Io { context, source }
}

/// A running control plane owned by this process.
#[derive(Debug)]
pub struct ControlPlane {
    info: ControlPlaneInfo,
    config: ControlPlaneConfig,
    components: Vec<Component>,
    janitor: Option<Janitor>,
}

impl ControlPlane {
    /// Starts a control plane in `dir` (created if needed; it must be empty) and
    /// waits until the API server is ready and the controller-manager has
    /// created the `default` ServiceAccount. On failure nothing is left.
    pub async fn start(
        binaries: &Binaries,
        dir: &Path,
        config: ControlPlaneConfig,
    ) -> Result<Self, StartError> {
        const ATTEMPTS: usize = 3;
        let mut attempt = 1;
        loop {
            match Self::start_once(binaries, dir, config.clone()).await {
                Err(e) if e.is_port_clash() && attempt < ATTEMPTS => {
                    tracing::warn!(attempt, "a port was taken while starting; retrying: {e}");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn start_once(
        binaries: &Binaries,
        dir: &Path,
        config: ControlPlaneConfig,
    ) -> Result<Self, StartError> {
        let in_use = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
        if in_use {
            return Err(StartError::Io {
                context: format!("creating {}", dir.display()),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "the directory is not empty (is a cluster running there? `mesh down` removes it)",
                ),
            });
        }
        std::fs::create_dir_all(dir).map_err(io_error(format!("creating {}", dir.display())))?;
        let dir =
            std::fs::canonicalize(dir).map_err(io_error(format!("resolving {}", dir.display())))?;
        // From here on, `Drop` cleans up whatever went wrong.
        let janitor = Janitor::watch(std::process::id(), &dir)
            .map_err(io_error("starting the janitor process"))?;
        let mut plane = Self {
            info: ControlPlaneInfo {
                name: config.name.clone(),
                kubeconfig: dir.join("kubeconfig"),
                dir,
                server: String::new(),
                components: Vec::new(),
            },
            config,
            components: Vec::new(),
            janitor: Some(janitor),
        };
        plane.boot(binaries).await?;
        Ok(plane)
    }

    async fn boot(&mut self, binaries: &Binaries) -> Result<(), StartError> {
        let ip = self.config.bind_address;
        let dir = self.info.dir.clone();
        let pki_dir = dir.join("pki");
        std::fs::create_dir_all(&pki_dir).map_err(io_error("creating the pki directory"))?;
        let pki = ControlPlanePki::generate(
            &self.config.name,
            &ServingNames {
                addresses: std::iter::once(ip)
                    .chain(
                        self.config
                            .node
                            .iter()
                            .flat_map(|n| n.extra_addresses.clone()),
                    )
                    .chain(std::iter::once(IpAddr::V4(Ipv4Addr::LOCALHOST)))
                    .collect(),
                service_ip: first_service_ip(&self.config.service_cidr)?,
                cluster_domain: self.config.cluster_domain.clone(),
            },
        )?;
        let write = |name: &str, contents: &str| -> Result<String, StartError> {
            let path = pki_dir.join(name);
            std::fs::write(&path, contents)
                .map_err(io_error(format!("writing {}", path.display())))?;
            Ok(path.display().to_string())
        };
        let ca_crt = write(CA_CERT, &pki.ca_cert)?;
        let ca_key = write("ca.key", &pki.ca_key)?;
        let serving_crt = write("apiserver.crt", &pki.serving_cert)?;
        let serving_key = write("apiserver.key", &pki.serving_key)?;
        write(KUBELET_CERT, &pki.kubelet_cert)?;
        write(KUBELET_KEY, &pki.kubelet_key)?;
        let kubelet_client_crt = write("apiserver-kubelet-client.crt", &pki.kubelet_client_cert)?;
        let kubelet_client_key = write("apiserver-kubelet-client.key", &pki.kubelet_client_key)?;
        let front_proxy_ca = write("front-proxy-ca.crt", &pki.front_proxy_ca_cert)?;
        let front_proxy_crt = write("front-proxy-client.crt", &pki.front_proxy_client_cert)?;
        let front_proxy_key = write("front-proxy-client.key", &pki.front_proxy_client_key)?;
        let sa_key = write("sa.key", &pki.service_account_key)?;
        let sa_pub = write("sa.pub", &pki.service_account_public_key)?;

        // In a node namespace every port is free; on the host, find some.
        let in_node = self.config.node.is_some();
        let (etcd_client, etcd_peer, apiserver_port) = if in_node {
            (2379, 2380, NODE_APISERVER_PORT)
        } else {
            (free_port(ip)?, free_port(ip)?, free_port(ip)?)
        };
        let host = url_host(ip);
        self.info.server = format!("https://{host}:{apiserver_port}");
        let kubeconfig = kubeconfig::render(
            &[KubeconfigEntry {
                name: self.config.name.clone(),
                server: self.info.server.clone(),
                ca_cert: pki.ca_cert.clone(),
                client_cert: pki.admin_cert.clone(),
                client_key: pki.admin_key.clone(),
            }],
            &self.config.name,
        );
        std::fs::write(&self.info.kubeconfig, kubeconfig)
            .map_err(io_error("writing the kubeconfig"))?;
        let kubeconfig_path = self.info.kubeconfig.display().to_string();

        let etcd_client_url = format!("http://{host}:{etcd_client}");
        let etcd_peer_url = format!("http://{host}:{etcd_peer}");
        self.spawn(
            binaries,
            Binary::Etcd,
            vec![
                format!("--name={}", self.config.name),
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls={etcd_client_url}"),
                format!("--advertise-client-urls={etcd_client_url}"),
                format!("--listen-peer-urls={etcd_peer_url}"),
                format!("--initial-advertise-peer-urls={etcd_peer_url}"),
                format!("--initial-cluster={}={etcd_peer_url}", self.config.name),
                "--unsafe-no-fsync".into(),
                "--log-level=warn".into(),
            ],
        )?;
        self.wait_for("etcd", "etcd", || async {
            tokio::net::TcpStream::connect(SocketAddr::new(ip, etcd_client))
                .await
                .is_ok()
        })
        .await?;

        let issuer = format!(
            "https://kubernetes.default.svc.{}",
            self.config.cluster_domain
        );
        self.spawn(
            binaries,
            Binary::KubeApiserver,
            vec![
                format!("--etcd-servers={etcd_client_url}"),
                format!(
                    "--bind-address={}",
                    if in_node {
                        "0.0.0.0".to_owned()
                    } else {
                        ip.to_string()
                    }
                ),
                format!("--advertise-address={ip}"),
                format!("--secure-port={apiserver_port}"),
                format!("--cert-dir={}", dir.join("apiserver").display()),
                format!("--tls-cert-file={serving_crt}"),
                format!("--tls-private-key-file={serving_key}"),
                format!("--client-ca-file={ca_crt}"),
                format!("--kubelet-certificate-authority={ca_crt}"),
                format!("--kubelet-client-certificate={kubelet_client_crt}"),
                format!("--kubelet-client-key={kubelet_client_key}"),
                "--kubelet-preferred-address-types=InternalIP".into(),
                format!("--service-account-issuer={issuer}"),
                format!("--service-account-key-file={sa_pub}"),
                format!("--service-account-signing-key-file={sa_key}"),
                format!("--service-cluster-ip-range={}", self.config.service_cidr),
                "--authorization-mode=Node,RBAC".into(),
                // The aggregation layer, for extension API servers such as
                // viz's tap (APIService v1alpha1.tap.linkerd.io): the API
                // server authenticates the user and forwards the request
                // with its front-proxy client certificate and the user in
                // X-Remote-* headers, straight to the Service's endpoints.
                format!("--requestheader-client-ca-file={front_proxy_ca}"),
                format!(
                    "--requestheader-allowed-names={}",
                    crate::pki::FRONT_PROXY_CLIENT_NAME
                ),
                "--requestheader-username-headers=X-Remote-User".into(),
                "--requestheader-group-headers=X-Remote-Group".into(),
                "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
                format!("--proxy-client-cert-file={front_proxy_crt}"),
                format!("--proxy-client-key-file={front_proxy_key}"),
                "--enable-aggregator-routing=true".into(),
                "--allow-privileged=true".into(),
                "--profiling=false".into(),
                "--v=1".into(),
            ],
        )?;
        let client = self.client().await?;
        self.wait_for("the API server", "kube-apiserver", || {
            let client = client.clone();
            async move {
                // Connect first, so that the client does not log every refusal.
                if tokio::net::TcpStream::connect(SocketAddr::new(ip, apiserver_port))
                    .await
                    .is_err()
                {
                    return false;
                }
                let request = http::Request::get("/readyz").body(Vec::new());
                match request {
                    Ok(request) => client.request_text(request).await.is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await?;

        self.spawn(
            binaries,
            Binary::KubeControllerManager,
            vec![
                format!("--kubeconfig={kubeconfig_path}"),
                "--secure-port=0".into(),
                "--leader-elect=false".into(),
                format!("--cluster-name={}", self.config.name),
                format!("--root-ca-file={ca_crt}"),
                format!("--service-account-private-key-file={sa_key}"),
                format!("--cluster-signing-cert-file={ca_crt}"),
                format!("--cluster-signing-key-file={ca_key}"),
                "--use-service-account-credentials=true".into(),
                format!("--service-cluster-ip-range={}", self.config.service_cidr),
                "--v=1".into(),
            ]
            .into_iter()
            .chain(self.config.node.iter().flat_map(|n| {
                [
                    format!("--cluster-cidr={}", n.pod_cidr),
                    "--allocate-node-cidrs=true".to_owned(),
                    "--node-cidr-mask-size=24".to_owned(),
                ]
            }))
            .collect(),
        )?;
        let accounts: Api<ServiceAccount> = Api::namespaced(client, "default");
        self.wait_for(
            "the controller-manager (default ServiceAccount)",
            "kube-controller-manager",
            || {
                let accounts = accounts.clone();
                async move { matches!(accounts.get_opt("default").await, Ok(Some(_))) }
            },
        )
        .await?;
        if let Some(node) = self.config.node.clone() {
            self.spawn(
                binaries,
                Binary::KubeScheduler,
                vec![
                    format!("--kubeconfig={kubeconfig_path}"),
                    format!("--authentication-kubeconfig={kubeconfig_path}"),
                    format!("--authorization-kubeconfig={kubeconfig_path}"),
                    "--leader-elect=false".into(),
                    "--bind-address=127.0.0.1".into(),
                    "--v=1".into(),
                ],
            )?;
            self.spawn(
                binaries,
                Binary::KubeProxy,
                vec![
                    format!("--kubeconfig={kubeconfig_path}"),
                    format!("--hostname-override={}", node.node_name),
                    format!("--cluster-cidr={}", node.pod_cidr),
                    "--proxy-mode=iptables".into(),
                    // The node namespace cannot change host-wide conntrack
                    // limits; the host's are fine.
                    "--conntrack-max-per-core=0".into(),
                    "--conntrack-tcp-timeout-established=0".into(),
                    "--conntrack-tcp-timeout-close-wait=0".into(),
                    "--metrics-bind-address=127.0.0.1:10249".into(),
                    "--healthz-bind-address=127.0.0.1:10256".into(),
                    "--v=1".into(),
                ],
            )?;
        }
        Ok(())
    }

    /// Starts one more process as part of this control plane (inside its
    /// node namespace when it has one): stopped, logged and cleaned up with
    /// the rest. The node agent runs this way.
    pub fn spawn_component(
        &mut self,
        name: &'static str,
        program: &Path,
        args: Vec<String>,
    ) -> Result<(), StartError> {
        let (program, args) = self.wrapped(program, args);
        let component = Component::spawn(name, &program, &args, &self.info.dir)
            .map_err(io_error(format!("starting {name}")))?;
        self.info
            .components
            .push((name.to_owned(), component.pid()));
        self.components.push(component);
        Ok(())
    }

    /// The program and arguments that run `program` where the components
    /// run: in a node namespace, `nsenter --net=…`, which joins only the
    /// network namespace. (`ip netns exec` would also give the process a
    /// mount namespace of its own, and the pod namespaces the node agent
    /// creates would then be invisible to the host's teardown.)
    fn wrapped(&self, program: &Path, args: Vec<String>) -> (PathBuf, Vec<String>) {
        match &self.config.node {
            Some(node) => (
                PathBuf::from("nsenter"),
                [format!("--net={}/{}", crate::netns::NETNS_DIR, node.netns)]
                    .into_iter()
                    .chain(std::iter::once(program.display().to_string()))
                    .chain(args)
                    .collect(),
            ),
            None => (program.to_owned(), args),
        }
    }

    fn spawn(
        &mut self,
        binaries: &Binaries,
        binary: Binary,
        args: Vec<String>,
    ) -> Result<(), StartError> {
        let (program, args) = self.wrapped(&binaries.path(binary), args);
        let component = Component::spawn(binary.file_name(), &program, &args, &self.info.dir)
            .map_err(io_error(format!("starting {binary}")))?;
        self.info
            .components
            .push((binary.file_name().to_owned(), component.pid()));
        self.components.push(component);
        Ok(())
    }

    /// Polls `ready` every 100 ms until it holds, a component exits, or the
    /// configured timeout passes.
    async fn wait_for<F, Fut>(
        &mut self,
        what: &'static str,
        suspect: &'static str,
        mut ready: F,
    ) -> Result<(), StartError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let started = Instant::now();
        loop {
            for component in &mut self.components {
                if let Some(status) = component.exited() {
                    return Err(StartError::Exited {
                        component: component.name(),
                        status: status.to_string(),
                        log_path: self
                            .info
                            .dir
                            .join("logs")
                            .join(format!("{}.log", component.name()))
                            .display()
                            .to_string(),
                        log: component.log_tail(25),
                    });
                }
            }
            if ready().await {
                return Ok(());
            }
            if started.elapsed() > self.config.ready_timeout {
                let log = self
                    .components
                    .iter()
                    .find(|c| c.name() == suspect)
                    .map(|c| c.log_tail(25))
                    .unwrap_or_default();
                return Err(StartError::Timeout {
                    what,
                    waited: started.elapsed(),
                    component: suspect,
                    log,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Where it is and what runs it.
    pub fn info(&self) -> &ControlPlaneInfo {
        &self.info
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.info.kubeconfig
    }

    /// A kube client for the admin user.
    pub async fn client(&self) -> Result<kube::Client, StartError> {
        client_for(&self.info.kubeconfig).await
    }

    /// Resident memory of every component together.
    pub fn rss_bytes(&self) -> u64 {
        self.components
            .iter()
            .filter_map(Component::rss_bytes)
            .sum()
    }

    /// Stops every component gracefully and removes the directory.
    pub async fn stop(mut self) {
        for component in self.components.iter_mut().rev() {
            component.stop(STOP_GRACE).await;
        }
        self.components.clear();
        let _ = std::fs::remove_dir_all(&self.info.dir);
        if let Some(janitor) = self.janitor.take() {
            janitor.dismiss();
        }
    }

    /// Leaves the control plane running after this process exits; `mesh
    /// down` (see [`stop_detached`]) stops it. Writes `cluster.json`.
    pub fn detach(mut self) -> Result<ControlPlaneInfo, StartError> {
        let path = self.info.dir.join(INFO_FILE);
        let json = serde_json::to_vec_pretty(&self.info).map_err(|e| StartError::Io {
            context: "encoding cluster.json".into(),
            source: e.into(),
        })?;
        std::fs::write(&path, json).map_err(io_error(format!("writing {}", path.display())))?;
        if let Some(janitor) = self.janitor.take() {
            janitor.dismiss();
        }
        self.components.clear();
        Ok(self.info.clone())
    }

    /// Ties the control plane's life to process `owner` instead of this one:
    /// it keeps running after this process exits and is cleaned up when
    /// `owner` exits.
    pub fn hand_over(self, owner: u32) -> Result<ControlPlaneInfo, StartError> {
        // The new janitor is left running on purpose: it owns the cleanup now.
        Janitor::watch(owner, &self.info.dir).map_err(io_error("starting the janitor process"))?;
        self.detach()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if self.components.is_empty() && self.janitor.is_none() {
            return;
        }
        for component in &self.components {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(component.pid()),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // Reap them, so that nothing (not even a zombie) outlives the handle.
        for component in &mut self.components {
            while component.exited().is_none() {
                #[allow(clippy::disallowed_methods)] // a destructor cannot await
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = std::fs::remove_dir_all(&self.info.dir);
        if let Some(janitor) = self.janitor.take() {
            janitor.dismiss();
        }
    }
}

/// A kube client for the kubeconfig at `path`.
pub async fn client_for(path: &Path) -> Result<kube::Client, StartError> {
    let boxed = |e: Box<dyn std::error::Error + Send + Sync>| StartError::Client {
        path: path.to_owned(),
        source: e,
    };
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| boxed(e.into()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| boxed(e.into()))?;
    kube::Client::try_from(config).map_err(|e| boxed(e.into()))
}

/// Reads a detached control plane's description from its directory.
pub fn read_detached(dir: &Path) -> Option<ControlPlaneInfo> {
    let bytes = std::fs::read(dir.join(INFO_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Stops a detached control plane: SIGTERM to every component, SIGKILL to
/// what is left after `grace`, then removes its directory.
pub async fn stop_detached(dir: &Path, grace: Duration) -> std::io::Result<()> {
    process::kill_recorded_groups(dir, grace).await;
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether the API server of a detached control plane answers `/readyz`.
pub async fn is_ready(kubeconfig: &Path) -> bool {
    let Ok(client) = client_for(kubeconfig).await else {
        return false;
    };
    let Ok(request) = http::Request::get("/readyz").body(Vec::new()) else {
        return false;
    };
    tokio::time::timeout(Duration::from_secs(5), client.request_text(request))
        .await
        .is_ok_and(|r| r.is_ok())
}

/// A port that is free on `ip` right now.
fn free_port(ip: IpAddr) -> Result<u16, StartError> {
    TcpListener::bind(SocketAddr::new(ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io_error(format!("finding a free port on {ip}")))
}

fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The first usable address of a CIDR (`10.96.0.0/16` → `10.96.0.1`).
fn first_service_ip(cidr: &str) -> Result<IpAddr, StartError> {
    let invalid = || StartError::Io {
        context: format!("service CIDR {cidr:?}"),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "expected <address>/<prefix>",
        ),
    };
    let (addr, _prefix) = cidr.split_once('/').ok_or_else(invalid)?;
    match addr.parse::<IpAddr>().map_err(|_| invalid())? {
        IpAddr::V4(v4) => Ok(IpAddr::V4(Ipv4Addr::from(u32::from(v4) + 1))),
        IpAddr::V6(v6) => Ok(IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) + 1))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_service_ip_is_the_network_plus_one() {
        assert_eq!(
            first_service_ip("10.96.0.0/16").expect("v4").to_string(),
            "10.96.0.1"
        );
        assert_eq!(
            first_service_ip("fd00:10:96::/112")
                .expect("v6")
                .to_string(),
            "fd00:10:96::1"
        );
        let err = first_service_ip("10.96.0.0").expect_err("no prefix");
        assert!(
            err.to_string().contains("service CIDR \"10.96.0.0\""),
            "{err}"
        );
    }
}
