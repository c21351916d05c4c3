//! Two pods in different "clusters": the [`Mesh`] pods joined by the local
//! clusters' own WAN forwarder (`mesh-node wan`: one-way delay and loss on
//! every packet, TCP and UDP alike), with the server pod's proxy as the
//! multicluster gateway and mirror Services in the client's cluster that
//! reach it over TCP and over QUIC. Shared by the gateway tests and
//! `gateway-bench`.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use linkerd2_proxy_api::destination::{AuthorityOverride, DestinationProfile, WeightedAddr};
use tokio::time::Instant;

use crate::{Mesh, WEB, WEB_ID, app, controller, server};

/// The client pod's address on the WAN.
pub const CLIENT_WAN: &str = "172.31.9.1";
/// The server pod's (the gateway's) address on the WAN.
pub const SERVER_WAN: &str = "172.31.9.2";

/// What the client pod calls: the application straight across the WAN (a
/// port iptables leaves alone), and its mirror Services through the
/// gateway, over TCP and over QUIC.
pub const DIRECT_URL: &str = "http://172.31.9.2:9999/";
/// The mirror Service whose gateway endpoint says `gateway_transport: tcp`.
pub const TCP_URL: &str = "http://10.96.0.21/";
/// The mirror Service whose gateway endpoint says `gateway_transport: quic`.
pub const QUIC_URL: &str = "http://10.96.0.22/";

/// The mirror Services in the client's cluster, one per transport.
const MIRRORS: [(&str, &str, &str); 2] = [
    ("tcp", "10.96.0.21:80", "web-tcp.test.svc.cluster.local:80"),
    (
        "quic",
        "10.96.0.22:80",
        "web-quic.test.svc.cluster.local:80",
    ),
];

/// The WAN forwarder between the two pods, with its control socket.
#[derive(Debug)]
pub struct Wan {
    child: Child,
    control: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Wan {
    /// Joins `mesh`'s pods across a WAN, the server pod's proxy the
    /// gateway for the mirror Services, the application `web-1` behind it
    /// (and `direct` on the WAN's port 9999). No delay or loss until
    /// [`Self::set`].
    pub async fn join(mesh: &Mesh) -> Self {
        let wan = Self::start(mesh).await;
        for (transport, addr, name) in MIRRORS {
            mesh.service(addr, name, DestinationProfile::default());
            mesh.state
                .set_endpoints(name, vec![gateway_endpoint(transport)]);
        }
        mesh.service(WEB, WEB, DestinationProfile::default());
        mesh.state
            .set_endpoints(WEB, vec![controller::endpoint(server(8080), None, "web-1")]);
        mesh.server
            .run(async { app::App::serve("web-1", server(8080)).await })
            .await;
        mesh.server
            .run(async { app::App::serve("direct", SocketAddr::from(([0, 0, 0, 0], 9999))).await })
            .await;
        wan
    }

    async fn start(mesh: &Mesh) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let control = dir.path().join("wan.sock");
        let node = crate::bin(None, "mesh-node");
        let child = Command::new(node)
            .args(["wan", "--west-netns", &mesh.client.name])
            .args(["--east-netns", &mesh.server.name])
            .arg("--control")
            .arg(&control)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("mesh-node wan");
        for _ in 0..100 {
            if control.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(control.exists(), "mesh-node wan made no control socket");
        for (ns, ip) in [(&mesh.client, CLIENT_WAN), (&mesh.server, SERVER_WAN)] {
            ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "wan0"]);
            ns.ip(&["link", "set", "wan0", "up"]);
        }
        Self {
            child,
            control,
            _dir: dir,
        }
    }

    /// Sets the link: `delay=20ms loss=2%` (the forwarder's `set` command).
    pub async fn set(&self, settings: &str) {
        let answer = mesh_clusters::wan::control(&self.control, &format!("set {settings}"))
            .await
            .expect("WAN control");
        assert!(!answer.starts_with("error"), "{answer}");
    }
}

impl Drop for Wan {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gateway_endpoint(transport: &str) -> WeightedAddr {
    let gateway: SocketAddr = format!("{SERVER_WAN}:4143").parse().expect("addr");
    let mut endpoint = controller::endpoint(gateway, Some(WEB_ID), "gateway");
    endpoint.authority_override = Some(AuthorityOverride {
        authority_override: WEB.to_owned(),
    });
    endpoint
        .metric_labels
        .insert("gateway_transport".into(), transport.into());
    endpoint
}

/// `base` (one of the URLs above) with `path`.
pub fn url(base: &str, path: &str) -> &'static str {
    format!("{}{path}", base.trim_end_matches('/')).leak()
}

/// The latencies of one closed-loop run, sorted, its failures and how long
/// it ran.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Each answered request's latency, sorted.
    pub latencies: Vec<Duration>,
    /// Requests that failed or were not answered 200.
    pub errors: usize,
    /// What the first few of those failures were (a status and body, or
    /// the client's error), so a failed run says why.
    pub failures: Vec<String>,
    /// How long the run took.
    pub elapsed: Duration,
}

impl Run {
    /// How many failures a run describes (the rest are only counted).
    const DESCRIBED: usize = 5;

    fn failed(&mut self, answer: Result<(u16, String), String>, took: Duration) {
        self.errors += 1;
        if self.failures.len() < Self::DESCRIBED {
            let what = match answer {
                Ok((status, body)) => format!("answered {status}: {}", body.trim()),
                Err(error) => error,
            };
            self.failures.push(format!("after {took:?}: {what}"));
        }
    }

    /// Answered requests per second.
    pub fn rps(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// `workers` clients sending GETs to `url` back to back from the client
/// pod for `duration`.
pub async fn load(mesh: &Mesh, url: &'static str, workers: usize, duration: Duration) -> Run {
    mesh.client
        .run(async move {
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(workers)
                .build_http();
            let results = Arc::new(Mutex::new(Run::default()));
            let started = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..workers {
                let client = client.clone();
                let results = results.clone();
                tasks.push(tokio::spawn(async move {
                    while started.elapsed() < duration {
                        let t0 = Instant::now();
                        let req = http::Request::get(url)
                            .body(Full::default())
                            .expect("request");
                        let answer = crate::request(&client, req).await;
                        let took = t0.elapsed();
                        let mut results = results.lock().expect("results");
                        match answer {
                            Ok((200, _)) => results.latencies.push(took),
                            failed => results.failed(failed, took),
                        }
                    }
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
            let mut run = std::mem::take(&mut *results.lock().expect("results"));
            run.latencies.sort();
            run.elapsed = started.elapsed();
            run
        })
        .await
}
