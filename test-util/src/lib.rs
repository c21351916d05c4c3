//! Two meshed "pods" in network namespaces joined by a veth, as in a
//! cluster: each has the iptables rules `mesh-init` installs and a
//! `mesh-proxy` process running as UID 2102; the mock control plane runs in
//! the client pod's namespace. The test talks from the client pod to
//! Service addresses (10.96.0.0/16, which exist only in discovery) and the
//! proxies carry the traffic, over mutual TLS, to the apps in the server
//! pod.
//!
//! The proxy's tests, the failover controller's Prometheus test and the
//! benchmarks depend on this crate (`mesh-test-util`); it starts the
//! `mesh-proxy` and `mesh-init` binaries that cargo built ([`bin`]), so it
//! does not link the proxy itself.

pub mod app;
pub mod attack;
pub mod controller;
pub mod netns;
pub mod outbound;
pub mod policy;
pub mod wan;

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub use controller::{Ca, State, endpoint};
pub use netns::Netns;

pub const CLIENT_IP: &str = "10.77.0.1";
pub const SERVER_IP: &str = "10.77.0.2";
pub const CLIENT_ID: &str = "client.test.serviceaccount.identity.linkerd.cluster.local";
pub const WEB_ID: &str = "web.test.serviceaccount.identity.linkerd.cluster.local";
pub const PROXY_UID: &str = "2102";
/// The web Service's address and name.
pub const WEB_ADDR: &str = "10.96.0.10:80";
pub const WEB: &str = "web.test.svc.cluster.local:80";
/// Ports iptables leaves alone both ways: baselines without the mesh.
pub const BYPASS_PORTS: &str = "9996,9997,9998,9999";
/// The inbound ports each proxy watches the policy of from its start (the
/// ports the policy tests use).
pub const WATCHED_PORTS: &str = "8080,7000,9090,4143";
/// Source ports the client pod's iptables leave alone: a process in the
/// client pod that talks past its proxy, as an attacker or a pod without
/// the mesh would ([`unmeshed_connect`]); below the kernel's ephemeral
/// ports (from 32768), so no other connection takes one.
pub const UNMESHED_SOURCE_PORTS: std::ops::RangeInclusive<u16> = 20000..=29999;

/// A program of the workspace: the path cargo gave the test, else where
/// mesh's programs are ([`mesh_clusters::programs`]).
pub fn bin(from_cargo: Option<&str>, name: &str) -> std::path::PathBuf {
    if let Some(path) = from_cargo {
        return path.into();
    }
    match mesh_clusters::programs::find(&[name], "build it first (cargo build --workspace --bins)")
    {
        Ok(dir) => dir.join(name),
        Err(e) => panic!("{e}"),
    }
}

/// A connection from the client pod to `to` that its proxy does not see
/// (run it in the client pod's namespace); each call takes the next of the
/// [`UNMESHED_SOURCE_PORTS`].
pub async fn unmeshed_connect(to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let span = UNMESHED_SOURCE_PORTS.end() - UNMESHED_SOURCE_PORTS.start() + 1;
    let port = UNMESHED_SOURCE_PORTS.start() + NEXT.fetch_add(1, Ordering::Relaxed) % span;
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    let ip: IpAddr = CLIENT_IP.parse().expect("the client pod's address");
    socket.bind(SocketAddr::new(ip, port))?;
    socket.connect(to).await
}

/// The resident memory of process `pid`, MiB.
pub fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
        })
        .unwrap_or(0.0)
        / 1024.0
}

pub fn addr(text: &str) -> SocketAddr {
    text.parse().expect("an address")
}

pub fn server(port: u16) -> SocketAddr {
    SocketAddr::new(SERVER_IP.parse().expect("ip"), port)
}

/// The two pods, their proxies and the mock control plane.
pub struct Mesh {
    pub client: Netns,
    pub server: Netns,
    pub state: Arc<State>,
    pub ca: Arc<Ca>,
    dir: tempfile::TempDir,
    proxies: Vec<(String, Child)>,
    /// The `mesh-proxy` program the pods run.
    proxy_program: std::path::PathBuf,
    /// Settings added to one pod's proxy from its next start on.
    proxy_env: Vec<(&'static str, String, String)>,
    controller: Option<netns::NsRuntime>,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("client", &self.client)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// Writes what Linkerd's proxy image makes before its proxy starts, in
/// `LINKERD2_PROXY_IDENTITY_DIR`: a P-256 key (`key.p8`, PKCS#8 DER) and a
/// CSR for `identity` (`csr.der`). A stock linkerd2-proxy certifies with
/// them; mesh-proxy makes its key in memory and ignores them.
fn write_identity_documents(dir: &std::path::Path, identity: &str) {
    let key = mesh_core::identity::LocalKey::generate(identity).expect("a key");
    std::fs::write(dir.join("key.p8"), key.private_key().secret_der()).expect("key.p8");
    std::fs::write(dir.join("csr.der"), key.csr_der()).expect("csr.der");
}

/// The policy the policy controller computes for `port` of a pod with
/// `annotations` that no Server selects.
fn pod_port_policy(
    annotations: serde_json::Value,
    port: u16,
) -> linkerd2_proxy_api::inbound::Server {
    let pod = serde_json::json!({
        "kind": "Pod",
        "metadata": {"namespace": "test", "name": "pod", "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "app"}]}
    });
    policy::from_controller(&[pod], "test", "pod", port)
}

/// Which pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

impl Side {
    /// The pod's proxy's name in the harness, and the identity it has.
    fn proxy(self) -> (&'static str, &'static str) {
        match self {
            Side::Client => ("client", CLIENT_ID),
            Side::Server => ("server", WEB_ID),
        }
    }
}

impl Mesh {
    /// Starts both pods with their proxies ready (certified).
    pub async fn start() -> Self {
        Self::start_with_cert_lifetime(Duration::from_secs(24 * 3600)).await
    }

    /// Starts both pods; workload certificates live `lifetime`.
    pub async fn start_with_cert_lifetime(lifetime: Duration) -> Self {
        let client = Netns::new("pc");
        let server = Netns::new("ps");
        client.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &server.name,
        ]);
        for (ns, ip) in [(&client, CLIENT_IP), (&server, SERVER_IP)] {
            ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
            ns.ip(&["link", "set", "eth0", "up"]);
            ns.ip(&["route", "add", "default", "dev", "eth0"]);
            let init = bin(option_env!("CARGO_BIN_EXE_mesh-init"), "mesh-init");
            ns.exec(
                &init.to_string_lossy(),
                &[
                    "--inbound-ports-to-ignore",
                    &format!("4190,4191,{BYPASS_PORTS}"),
                    "--outbound-ports-to-ignore",
                    BYPASS_PORTS,
                    "--proxy-uid",
                    PROXY_UID,
                ],
            );
        }
        let unmeshed = format!(
            "{}:{}",
            UNMESHED_SOURCE_PORTS.start(),
            UNMESHED_SOURCE_PORTS.end()
        );
        client.exec(
            "iptables",
            &[
                "-t", "nat", "-I", "OUTPUT", "1", "-p", "tcp", "--sport", &unmeshed, "-j", "RETURN",
            ],
        );
        let dir = tempfile::tempdir().expect("tempdir");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::fs::write(dir.path().join("token"), controller::TOKEN).expect("token");
        let state = Arc::new(State::default());
        let ca = Ca::new();
        let mut mesh = Self {
            client,
            server,
            state,
            ca,
            dir,
            proxies: Vec::new(),
            proxy_env: Vec::new(),
            proxy_program: bin(option_env!("CARGO_BIN_EXE_mesh-proxy"), "mesh-proxy"),
            controller: None,
        };
        mesh.start_controller().await;
        *mesh.ca.lifetime.lock().expect("lifetime") = lifetime;
        mesh.start_proxy("client", CLIENT_ID);
        mesh.start_proxy("server", WEB_ID);
        mesh.wait_ready().await;
        mesh
    }

    /// Starts the mock control plane (again), on a runtime of its own in
    /// the client pod.
    pub async fn start_controller(&mut self) {
        let runtime = self.client.new_runtime();
        let (state, ca) = (self.state.clone(), self.ca.clone());
        let ip: IpAddr = CLIENT_IP.parse().expect("ip");
        runtime
            .spawn(async move { controller::start(ip, state, ca).await })
            .await
            .expect("the controller starts");
        self.controller = Some(runtime);
    }

    /// Stops the mock control plane: its listeners and every open stream
    /// close, as when its pods restart.
    pub fn stop_controller(&mut self) {
        self.controller.take();
    }

    fn start_proxy(&mut self, which: &str, identity: &str) {
        let ns = if which == "client" {
            &self.client
        } else {
            &self.server
        };
        let log = std::fs::File::create(self.dir.path().join(format!("{which}.log"))).expect("log");
        let identity_dir = self.dir.path().join(which);
        std::fs::create_dir_all(&identity_dir).expect("the proxy's identity directory");
        write_identity_documents(&identity_dir, identity);
        let child = Command::new("nsenter")
            .arg(format!("--net={}", ns.path()))
            .args(["--setuid", PROXY_UID, "--setgid", PROXY_UID])
            .arg(&self.proxy_program)
            .env_clear()
            // The harness's own log level unless one is set (to debug a
            // run of a benchmark, say).
            .env(
                "LINKERD2_PROXY_LOG",
                std::env::var("LINKERD2_PROXY_LOG")
                    .unwrap_or_else(|_| "warn,mesh_proxy=debug".to_owned()),
            )
            // What the injector sets and the harness does not otherwise
            // need: a stock linkerd2-proxy refuses to start without them.
            .env("LINKERD2_PROXY_IDENTITY_DIR", &identity_dir)
            .env(
                "LINKERD2_PROXY_INBOUND_DEFAULT_POLICY",
                "all-unauthenticated",
            )
            .env("LINKERD2_PROXY_POLICY_CLUSTER_NETWORKS", "10.0.0.0/8")
            .env("LINKERD2_PROXY_DESTINATION_PROFILE_NETWORKS", "10.0.0.0/8")
            .env(
                "LINKERD2_PROXY_IDENTITY_SVC_ADDR",
                format!("{CLIENT_IP}:8080"),
            )
            .env("LINKERD2_PROXY_IDENTITY_SVC_NAME", controller::IDENTITY_ID)
            .env("LINKERD2_PROXY_IDENTITY_LOCAL_NAME", identity)
            .env("LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS", &self.ca.anchor_pem)
            .env(
                "LINKERD2_PROXY_IDENTITY_TOKEN_FILE",
                self.dir.path().join("token"),
            )
            .env(
                "LINKERD2_PROXY_DESTINATION_SVC_ADDR",
                format!("{CLIENT_IP}:8086"),
            )
            .env(
                "LINKERD2_PROXY_DESTINATION_SVC_NAME",
                controller::DESTINATION_ID,
            )
            .env(
                "LINKERD2_PROXY_DESTINATION_CONTEXT",
                format!(r#"{{"ns":"test","nodeName":"node","pod":"{which}"}}"#),
            )
            .env(
                "LINKERD2_PROXY_POLICY_SVC_ADDR",
                format!("{CLIENT_IP}:8090"),
            )
            .env("LINKERD2_PROXY_POLICY_SVC_NAME", controller::POLICY_ID)
            .env(
                "LINKERD2_PROXY_POLICY_WORKLOAD",
                format!(r#"{{"ns":"test","pod":"{which}"}}"#),
            )
            // The ports the policy tests use, watched from the start.
            .env("LINKERD2_PROXY_INBOUND_PORTS", WATCHED_PORTS)
            .env("LINKERD2_PROXY_SHUTDOWN_GRACE_PERIOD", "5s")
            // The server pod's proxy is also a multicluster gateway.
            .env(
                "MESH_PROXY_GATEWAY_SUFFIXES",
                if which == "server" {
                    "svc.cluster.local"
                } else {
                    ""
                },
            )
            // Both pods believe what the server pod's gateway says it
            // forwarded (the gateway test routes back to the client pod).
            .env("MESH_PROXY_TRUSTED_GATEWAYS", WEB_ID)
            .envs(
                self.proxy_env
                    .iter()
                    .filter(|(side, _, _)| *side == which)
                    .map(|(_, name, value)| (name, value)),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("nsenter mesh-proxy");
        self.proxies.push((which.to_owned(), child));
    }

    /// Replaces both pods' proxies with ones run from `program` (another
    /// build of `mesh-proxy`, to compare two in one run), ready again; the
    /// control plane and the pods' rules stay.
    pub async fn run_proxies_from(&mut self, program: &std::path::Path) {
        self.proxy_program = program.to_path_buf();
        for side in [Side::Client, Side::Server] {
            self.restart_proxy(side).await;
        }
    }

    /// Sets `name` to `value` in `side`'s proxy from its next start on
    /// ([`Self::restart_proxy`]).
    pub fn set_proxy_env(&mut self, side: Side, name: &str, value: &str) {
        let (which, _) = side.proxy();
        self.proxy_env
            .push((which, name.to_owned(), value.to_owned()));
    }

    /// Kills one pod's proxy and starts a new one in its place (a gateway
    /// pod replaced behind the same address, say), ready again.
    pub async fn restart_proxy(&mut self, side: Side) {
        let (which, identity) = side.proxy();
        if let Some(at) = self.proxies.iter().position(|(name, _)| name == which) {
            let (_, mut child) = self.proxies.remove(at);
            let _ = child.kill();
            let _ = child.wait();
        }
        self.start_proxy(which, identity);
        self.wait_ready().await;
    }

    /// The `mesh-proxy` program the pods run.
    pub fn proxy_program(&self) -> &std::path::Path {
        &self.proxy_program
    }

    async fn wait_ready(&self) {
        for ns in [&self.client, &self.server] {
            let mut ready = false;
            for _ in 0..100 {
                if let Ok((200, _)) = self.admin(ns, "/ready").await {
                    ready = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(
                ready,
                "the proxy in {} is not ready after 10 s:\n{}",
                ns.name,
                self.logs()
            );
        }
    }

    /// Serves, for every port that has no policy of its own, the policy
    /// Linkerd's (and mesh's) policy controller computes for a port no
    /// Server selects: the cluster's default, all-unauthenticated. Without
    /// it the mock answers NOT_FOUND, which mesh-proxy takes as the default
    /// policy and a stock linkerd2-proxy retries, never serving the port
    /// (its admin port and the ports the mock controller listens on
    /// included).
    pub fn serve_default_policies(&self) {
        self.state
            .set_default_port_policy(pod_port_policy(serde_json::json!({}), 8080));
    }

    /// Serves for inbound `port` the policy the policy controller computes
    /// for a pod that marks it opaque (`config.linkerd.io/opaque-ports`):
    /// TCP forwarded as it is, no protocol detection.
    pub fn serve_opaque_port_policy(&self, port: u16) {
        let annotations =
            serde_json::json!({ mesh_api::labels::OPAQUE_PORTS_ANNOTATION: port.to_string() });
        self.state
            .set_port_policy(port, pod_port_policy(annotations, port));
    }

    /// Serves, for the Service address `service` (`ip:port`) named `name`
    /// (`<svc>.<ns>.svc.cluster.local:<port>`), the outbound policy the
    /// policy controller computes for a Service without routes, as it does
    /// for every Service. Without it the mock answers NOT_FOUND ("not a
    /// Service"), which mesh-proxy takes as "follow the profile" and a
    /// stock linkerd2-proxy as "forward to the address as it is".
    pub fn serve_service_policy(&self, service: &str, name: &str, opaque: bool) {
        let (host, port) = name.rsplit_once(':').expect("name:port");
        let mut labels = host.split('.');
        let (svc, namespace) = (
            labels.next().expect("a Service name"),
            labels.next().expect("a namespace"),
        );
        let port: u16 = port.parse().expect("a port");
        let cluster_ip = service.rsplit_once(':').expect("ip:port").0;
        let mut object = outbound::service(namespace, svc, cluster_ip, port);
        if opaque {
            object["metadata"]["annotations"] =
                serde_json::json!({ mesh_api::labels::OPAQUE_PORTS_ANNOTATION: port.to_string() });
        }
        let policy = outbound::policy(&[object], namespace, svc, port);
        self.state.set_outbound_policy(service, policy);
    }

    /// Points the Service address 10.96.0.10:80 at
    /// `web.test.svc.cluster.local:80` with `profile` and `endpoints`.
    pub fn web(
        &self,
        profile: linkerd2_proxy_api::destination::DestinationProfile,
        endpoints: Vec<linkerd2_proxy_api::destination::WeightedAddr>,
    ) {
        self.service(WEB_ADDR, WEB, profile);
        self.state.set_endpoints(WEB, endpoints);
    }

    /// Serves an [`app::App`] named `name` on `port` in the server pod.
    pub async fn app(&self, name: &str, port: u16) -> Arc<app::App> {
        let name = name.to_owned();
        self.server
            .run(async move { app::App::serve(&name, server(port)).await })
            .await
    }

    /// The process id of a pod's proxy.
    pub fn proxy_pid(&self, side: Side) -> u32 {
        let (name, _) = side.proxy();
        self.proxies
            .iter()
            .find(|(which, _)| which == name)
            .map(|(_, child)| child.id())
            .expect("the proxy")
    }

    /// The client's and the server's proxy process ids.
    pub fn proxy_pids(&self) -> [u32; 2] {
        [self.proxy_pid(Side::Client), self.proxy_pid(Side::Server)]
    }

    /// Sends a signal to a pod's proxy.
    pub fn signal_proxy(&self, side: Side, signal: &str) {
        netns::run("kill", &["-s", signal, &self.proxy_pid(side).to_string()]);
    }

    /// Waits for a pod's proxy to exit; its exit status.
    pub fn wait_proxy(&mut self, side: Side) -> std::process::ExitStatus {
        let (name, _) = side.proxy();
        let (_, child) = self
            .proxies
            .iter_mut()
            .find(|(which, _)| which == name)
            .expect("the proxy");
        child.wait().expect("wait")
    }

    /// TCP connections established to `port` in the server pod, as `ss`
    /// lists them (a redirected connection shows the proxy's port).
    pub fn server_connections(&self, port: u16) -> usize {
        let filter = format!("( sport = :{port} )");
        let out = self
            .server
            .exec("ss", &["-Htn", "state", "established", &filter]);
        String::from_utf8_lossy(&out.stdout).lines().count()
    }

    /// The whole log of one pod's proxy.
    pub fn log(&self, side: Side) -> String {
        let (which, _) = side.proxy();
        std::fs::read_to_string(self.dir.path().join(format!("{which}.log"))).unwrap_or_default()
    }

    /// The last lines of each proxy's log.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for (which, _) in &self.proxies {
            let log = std::fs::read_to_string(self.dir.path().join(format!("{which}.log")))
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            text.push_str(&format!("--- {which} proxy (last lines) ---\n"));
            for line in tail.into_iter().rev() {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    /// GETs `path` from the admin server in `ns` (over its loopback).
    pub async fn admin(&self, ns: &Netns, path: &str) -> Result<(u16, String), String> {
        let url = format!("http://127.0.0.1:4191{path}");
        ns.run(async move { get(&url).await }).await
    }

    /// The client proxy's metrics.
    pub async fn client_metrics(&self) -> String {
        self.admin(&self.client, "/metrics")
            .await
            .expect("client metrics")
            .1
    }

    /// The server proxy's metrics.
    pub async fn server_metrics(&self) -> String {
        self.admin(&self.server, "/metrics")
            .await
            .expect("server metrics")
            .1
    }

    /// Points Service address `service` (`ip:port`) at `name` (`name:port`).
    pub fn service(
        &self,
        service: &str,
        name: &str,
        profile: linkerd2_proxy_api::destination::DestinationProfile,
    ) {
        let fqn = name.rsplit_once(':').map(|(n, _)| n).unwrap_or(name);
        self.state.set_profile(
            service,
            linkerd2_proxy_api::destination::DestinationProfile {
                fully_qualified_name: fqn.to_owned(),
                ..profile
            },
        );
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for (_, child) in &mut self.proxies {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One GET over a fresh connection: status and body.
pub async fn get(url: &str) -> Result<(u16, String), String> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    request(
        &client,
        http::Request::get(url)
            .body(Full::default())
            .expect("request"),
    )
    .await
}

/// Sends `req` with `client`: status and body.
pub async fn request<C>(
    client: &Client<C, Full<Bytes>>,
    req: http::Request<Full<Bytes>>,
) -> Result<(u16, String), String>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The value of the first sample of `metric` whose labels contain every one
/// of `labels` (`name="value"`), summed over matching series.
pub fn sample(metrics: &str, metric: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// An HTTP/1 client (pooled, kept alive).
pub fn http_client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Meshed endpoints in the server pod (identity `WEB_ID`): `(port, pod)`.
pub fn meshed(endpoints: &[(u16, &str)]) -> Vec<linkerd2_proxy_api::destination::WeightedAddr> {
    endpoints
        .iter()
        .map(|(port, pod)| endpoint(server(*port), Some(WEB_ID), pod))
        .collect()
}

/// Sends `count` GETs for `path` to 10.96.0.10 from the client pod,
/// `concurrency` at a time over kept-alive connections; returns the
/// statuses (0 for a transport error) in completion order.
pub async fn load(mesh: &Mesh, path: &str, count: usize, concurrency: usize) -> Vec<u16> {
    let url = format!("http://10.96.0.10{path}");
    mesh.client
        .run(async move {
            let client: Client<_, Full<Bytes>> = http_client();
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut workers = Vec::new();
            for _ in 0..concurrency {
                let (client, next, url) = (client.clone(), next.clone(), url.clone());
                workers.push(tokio::spawn(async move {
                    let mut statuses = Vec::new();
                    while next.fetch_add(1, Ordering::SeqCst) < count {
                        let req = http::Request::get(url.as_str())
                            .body(Full::default())
                            .expect("req");
                        statuses.push(request(&client, req).await.map(|(s, _)| s).unwrap_or(0));
                    }
                    statuses
                }));
            }
            let mut all = Vec::new();
            for worker in workers {
                all.extend(worker.await.expect("worker"));
            }
            all
        })
        .await
}

/// GETs / from the client pod every few milliseconds, `workers` at a time,
/// for `duration`; returns the statuses (0 for a transport error).
pub async fn steady_load(
    mesh: &Mesh,
    duration: Duration,
    workers: usize,
) -> tokio::task::JoinHandle<Vec<u16>> {
    mesh.client.spawn(async move {
        let end = tokio::time::Instant::now() + duration;
        let mut tasks = Vec::new();
        for _ in 0..workers {
            tasks.push(tokio::spawn(async move {
                let client: hyper_util::client::legacy::Client<
                    _,
                    http_body_util::Full<bytes::Bytes>,
                > = hyper_util::client::legacy::Client::builder(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .build_http();
                let mut statuses = Vec::new();
                while tokio::time::Instant::now() < end {
                    let req = http::Request::get("http://10.96.0.10/")
                        .body(Default::default())
                        .expect("req");
                    statuses.push(request(&client, req).await.map(|(s, _)| s).unwrap_or(0));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                statuses
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.expect("worker"));
        }
        all
    })
}
