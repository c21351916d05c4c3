//! Shared set-up for the destination integration tests: the CRDs on the
//! shared kube-apiserver, a destination service started in-process, a gRPC
//! client, and a stand-in for the scheduler and kubelet (there is no node
//! agent in these tests): it binds pending pods to a Node object and
//! reports them running and ready with an IP, so the controller-manager's
//! EndpointSlice controller does the rest as in a real cluster.
#![allow(dead_code, unreachable_pub)] // each test binary uses part of it

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use linkerd2_proxy_api::destination::destination_client::DestinationClient;
use linkerd2_proxy_api::destination::{GetDestination, Update, update};
use mesh_clusters::testing::TestCluster;
use mesh_destination::index::IndexConfig;
use mesh_destination::server::{self, Running, ServerConfig};
use tonic::transport::Channel;

/// Creates mesh's CRDs unless present, and waits until they are served.
pub async fn ensure_crds(client: &kube::Client) {
    mesh_clusters::testing::ensure_crds(client, mesh_api::crds::all()).await;
}

/// A destination service on loopback, watching the shared cluster.
pub async fn start_destination(cluster: &TestCluster) -> Running {
    ensure_crds(&cluster.client).await;
    server::start(
        ServerConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            admin_listen: "127.0.0.1:0".parse().expect("addr"),
            index: IndexConfig::default(),
            tls: None,
        },
        cluster.client.clone(),
    )
    .await
    .expect("destination starts")
}

pub async fn client(running: &Running) -> DestinationClient<Channel> {
    DestinationClient::connect(format!("http://{}", running.addr))
        .await
        .expect("connect")
}

/// What a Get stream has said so far, folded.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Folded {
    pub endpoints: BTreeMap<SocketAddr, linkerd2_proxy_api::destination::WeightedAddr>,
    pub no_endpoints: Option<bool>,
    pub adds: usize,
    pub removes: usize,
    /// The metric labels of the last Add's set.
    pub set_labels: std::collections::HashMap<String, String>,
}

impl Folded {
    pub fn apply(&mut self, update: Update) {
        match update.update {
            Some(update::Update::Add(set)) => {
                self.adds += 1;
                self.no_endpoints = None;
                self.set_labels = set.metric_labels;
                for addr in set.addrs {
                    let sa: SocketAddr = addr.addr.expect("addr").try_into().expect("socket addr");
                    self.endpoints.insert(sa, addr);
                }
            }
            Some(update::Update::Remove(set)) => {
                self.removes += 1;
                for addr in set.addrs {
                    let sa: SocketAddr = addr.try_into().expect("socket addr");
                    self.endpoints.remove(&sa);
                }
            }
            Some(update::Update::NoEndpoints(n)) => {
                self.endpoints.clear();
                self.no_endpoints = Some(n.exists);
            }
            None => {}
        }
    }
}

/// The DNS-like TLS identity discovery gives an endpoint, if any.
pub fn dns_identity(addr: &linkerd2_proxy_api::destination::WeightedAddr) -> Option<&str> {
    match addr.tls_identity.as_ref()?.strategy.as_ref()? {
        linkerd2_proxy_api::destination::tls_identity::Strategy::DnsLikeIdentity(d) => {
            Some(d.name.as_str())
        }
        _ => None,
    }
}

/// A Get stream and its folded state.
pub struct GetWatch {
    pub stream: tonic::Streaming<Update>,
    pub state: Folded,
}

impl GetWatch {
    pub async fn open(client: &mut DestinationClient<Channel>, path: &str) -> Self {
        let stream = client
            .get(GetDestination {
                scheme: "k8s".into(),
                path: path.into(),
                context_token: String::new(),
            })
            .await
            .expect("Get")
            .into_inner();
        Self {
            stream,
            state: Folded::default(),
        }
    }

    /// Reads updates until `done` holds (30 s at most).
    pub async fn until(&mut self, what: &str, done: impl Fn(&Folded) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !done(&self.state) {
            let next = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .unwrap_or_else(|_| {
                    panic!("timed out waiting for {what}; state: {:?}", self.state)
                });
            let update = next.expect("stream open").expect("update");
            self.state.apply(update);
        }
    }
}

static NEXT_IP: AtomicU32 = AtomicU32::new(1);

/// Binds and readies the pods of `namespace` until the task is aborted.
pub fn fake_kubelet(
    client: kube::Client,
    namespace: String,
    node: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let nodes = Api::<Node>::all(client.clone());
        let node_obj = Node {
            metadata: kube::api::ObjectMeta {
                name: Some(node.clone()),
                ..Default::default()
            },
            ..Node::default()
        };
        let _ = nodes.create(&PostParams::default(), &node_obj).await;
        let pods = Api::<Pod>::namespaced(client.clone(), &namespace);
        loop {
            if let Ok(list) = pods.list(&ListParams::default()).await {
                for pod in list.items {
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    if pod.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    let spec = pod.spec.clone().unwrap_or_default();
                    if spec.node_name.is_none() {
                        let binding = Binding {
                            metadata: kube::api::ObjectMeta {
                                name: Some(name.clone()),
                                namespace: Some(namespace.clone()),
                                ..Default::default()
                            },
                            target: ObjectReference {
                                kind: Some("Node".into()),
                                name: Some(node.clone()),
                                ..ObjectReference::default()
                            },
                        };
                        let _ = pods
                            .create_subresource::<Binding, Binding>(
                                "binding",
                                &name,
                                &PostParams::default(),
                                &binding,
                            )
                            .await;
                        continue;
                    }
                    let has_ip = pod
                        .status
                        .as_ref()
                        .and_then(|s| s.pod_ip.as_ref())
                        .is_some();
                    if !has_ip {
                        let n = NEXT_IP.fetch_add(1, Ordering::Relaxed);
                        let ip = format!("10.244.{}.{}", (n >> 8) & 0xff, n & 0xff);
                        let status = serde_json::json!({"status": {
                            "phase": "Running",
                            "podIP": ip,
                            "podIPs": [{"ip": ip}],
                            "conditions": [
                                {"type": "Ready", "status": "True"},
                                {"type": "ContainersReady", "status": "True"},
                                {"type": "PodScheduled", "status": "True"}
                            ]
                        }});
                        let _ = pods
                            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                            .await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}
