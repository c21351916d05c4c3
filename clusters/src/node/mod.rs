//! The node agent (`mesh-node agent`), ours in place of the kubelet: it
//! registers the Node, keeps its Lease and Ready condition fresh, and runs
//! every Pod bound to it (see [`pod`]) as processes in per-pod network
//! namespaces, with images mapped to local programs ([`images`]).
//!
//! - [`network`]: pod namespaces, veths and addresses.
//! - [`volumes`], [`env`]: what a container sees.
//! - [`container`], [`probe`]: running, probing, restarting.
//! - [`shim`]: entering a pod to run a command.
//! - [`dns`]: a pod's resolv.conf.
//! - [`loadbalancer`]: addresses for LoadBalancer Services.
//! - [`kubelet_api`]: the kubelet's HTTPS API, for `kubectl logs`.

pub mod container;
pub mod dns;
pub mod env;
pub mod images;
pub mod kubelet_api;
pub mod loadbalancer;
pub mod network;
pub mod pod;
pub mod probe;
pub mod shim;
pub mod volumes;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use tokio::sync::watch;

use crate::topology::Cidr;

use self::images::Images;
use self::network::Ipam;
use self::pod::PodContext;

/// How the agent is set up.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The Node's name.
    pub node_name: String,
    /// The node's address (InternalIP; pods' hostIP).
    pub node_ip: Ipv4Addr,
    /// Where pods keep their files.
    pub state_dir: PathBuf,
    /// Prefix of pod namespaces.
    pub pod_netns_prefix: String,
    /// The cluster DNS address.
    pub dns_ip: Ipv4Addr,
    /// The cluster domain.
    pub cluster_domain: String,
    /// The `kubernetes` Service address and port.
    pub kubernetes_service: (Ipv4Addr, u16),
    /// Where mesh's binaries are.
    pub mesh_bin_dir: PathBuf,
    /// Where the Kubernetes binaries are.
    pub k8s_bin_dir: PathBuf,
    /// The cluster's `pgids` file, so that teardown finds every process.
    pub pgids_file: Option<PathBuf>,
    /// The pool LoadBalancer Services get addresses from, and the interface
    /// those addresses go on (see [`loadbalancer`]).
    pub load_balancer: Option<(Cidr, String)>,
    /// Certificates for the kubelet API (none: it is not served).
    pub kubelet_tls: Option<kubelet_api::KubeletTls>,
}

/// The Lease renewal period (the kubelet's default).
pub const LEASE_RENEW: Duration = Duration::from_secs(10);

fn node_object(config: &AgentConfig) -> Node {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": config.node_name,
            "labels": {
                "kubernetes.io/hostname": config.node_name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
                "node-role.kubernetes.io/control-plane": "",
            },
        },
        "spec": {},
    }))
    .unwrap_or_default()
}

fn node_status(config: &AgentConfig) -> serde_json::Value {
    let now = jiff::Timestamp::now().to_string();
    let cpu = std::thread::available_parallelism().map_or(2, |n| n.get());
    serde_json::json!({
        "status": {
            "capacity": {"cpu": cpu.to_string(), "memory": "16Gi", "pods": "250", "ephemeral-storage": "100Gi"},
            "allocatable": {"cpu": cpu.to_string(), "memory": "16Gi", "pods": "250", "ephemeral-storage": "100Gi"},
            "addresses": [
                {"type": "InternalIP", "address": config.node_ip.to_string()},
                {"type": "Hostname", "address": config.node_name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "",
                "kernelVersion": "", "osImage": "mesh local cluster",
                "containerRuntimeVersion": "mesh-node://0.1",
                "kubeletVersion": crate::KUBERNETES_VERSION,
                "kubeProxyVersion": "", "operatingSystem": "linux",
                "architecture": std::env::consts::ARCH,
            },
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "message": "mesh-node is posting ready status",
                 "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
                 "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure",
                 "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID",
                 "lastHeartbeatTime": now, "lastTransitionTime": now},
            ],
        }
    })
}

/// Registers the Node (or finds it) and returns its pod CIDR once the
/// controller-manager has given one.
async fn register(client: &kube::Client, config: &AgentConfig) -> anyhow::Result<Cidr> {
    let nodes: Api<Node> = Api::all(client.clone());
    if nodes.get_opt(&config.node_name).await?.is_none() {
        nodes
            .create(&PostParams::default(), &node_object(config))
            .await
            .map_err(|e| anyhow::anyhow!("registering node {}: {e}", config.node_name))?;
    }
    nodes
        .patch_status(
            &config.node_name,
            &PatchParams::default(),
            &Patch::Merge(node_status(config)),
        )
        .await?;
    for _ in 0..600 {
        let node = nodes.get(&config.node_name).await?;
        if let Some(cidr) = node.spec.and_then(|s| s.pod_cidr) {
            return cidr
                .parse()
                .map_err(|e| anyhow::anyhow!("node {}: podCIDR: {e}", config.node_name));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!(
        "node {} got no podCIDR from the controller-manager within 60 s",
        config.node_name
    )
}

/// Keeps the Lease and the Ready condition fresh.
async fn heartbeat(client: kube::Client, config: AgentConfig) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(client);
    loop {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.node_name.clone()),
                namespace: Some("kube-node-lease".into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.node_name.clone()),
                lease_duration_seconds: Some(40),
                renew_time: Some(MicroTime(jiff::Timestamp::now())),
                ..LeaseSpec::default()
            }),
        };
        let apply = PatchParams::apply("mesh-node").force();
        if let Err(e) = leases
            .patch(&config.node_name, &apply, &Patch::Apply(&lease))
            .await
        {
            tracing::warn!("renewing the node lease: {e}");
        }
        if let Err(e) = nodes
            .patch_status(
                &config.node_name,
                &PatchParams::default(),
                &Patch::Merge(node_status(&config)),
            )
            .await
        {
            tracing::warn!("updating node status: {e}");
        }
        tokio::time::sleep(LEASE_RENEW).await;
    }
}

/// Runs the agent until the process ends.
pub async fn run(client: kube::Client, config: AgentConfig) -> anyhow::Result<()> {
    // Pods of an earlier agent on this node are gone with it.
    crate::netns::remove_all_with_prefix(&config.pod_netns_prefix).await;
    let pod_cidr = register(&client, &config).await?;
    tracing::info!(node = %config.node_name, %pod_cidr, "node registered");
    tokio::spawn(heartbeat(client.clone(), config.clone()));
    if let Some((pool, interface)) = config.load_balancer.clone() {
        tokio::spawn(loadbalancer::run(client.clone(), pool, interface));
    }
    if let Some(tls) = config.kubelet_tls.clone() {
        let address = std::net::SocketAddr::from((config.node_ip, kubelet_api::PORT));
        let (client, pods_dir) = (client.clone(), config.state_dir.join("pods"));
        tokio::spawn(async move {
            if let Err(e) = kubelet_api::serve(address, tls, client, pods_dir).await {
                tracing::error!("the kubelet API stopped: {e:#}");
            }
        });
    }
    let images = Images::parse(
        images::BUILTIN,
        config.mesh_bin_dir.clone(),
        config.k8s_bin_dir.clone(),
        crate::cache::dir()?,
    )?;
    let ctx = Arc::new(PodContext {
        client: client.clone(),
        node_name: config.node_name.clone(),
        node_ip: config.node_ip,
        images,
        shim: std::env::current_exe()?,
        pods_dir: config.state_dir.join("pods"),
        dns_ip: config.dns_ip,
        cluster_domain: config.cluster_domain.clone(),
        pod_netns_prefix: config.pod_netns_prefix.clone(),
        ipam: Mutex::new(Ipam::new(pod_cidr)),
        kubernetes_service: config.kubernetes_service,
        pgids_file: config.pgids_file.clone(),
    });
    let pods: Api<Pod> = Api::all(client);
    let watch_config =
        watcher::Config::default().fields(&format!("spec.nodeName={}", config.node_name));
    let mut events = watcher::watcher(pods, watch_config).boxed();
    let mut workers: HashMap<String, (watch::Sender<Pod>, tokio::task::JoinHandle<()>)> =
        HashMap::new();
    let mut seen_in_relist: Option<std::collections::HashSet<String>> = None;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!("watching pods: {e}");
                continue;
            }
        };
        let apply = |pod: Pod, workers: &mut HashMap<_, _>| {
            let Some(uid) = pod.metadata.uid.clone() else {
                return uid_less();
            };
            workers.retain(
                |_, (_, task): &mut (watch::Sender<Pod>, tokio::task::JoinHandle<()>)| {
                    !task.is_finished()
                },
            );
            match workers.get(&uid) {
                Some((tx, _)) => {
                    tx.send_replace(pod);
                }
                None => {
                    let (tx, rx) = watch::channel(pod);
                    let task = tokio::spawn(pod::run(ctx.clone(), rx));
                    workers.insert(uid.clone(), (tx, task));
                }
            }
            Some(uid)
        };
        match event {
            watcher::Event::Init => seen_in_relist = Some(Default::default()),
            watcher::Event::InitApply(pod) => {
                if let (Some(uid), Some(seen)) = (apply(pod, &mut workers), seen_in_relist.as_mut())
                {
                    seen.insert(uid);
                }
            }
            watcher::Event::InitDone => {
                if let Some(seen) = seen_in_relist.take() {
                    // Pods that vanished while we were not watching.
                    workers.retain(|uid, (_, task)| {
                        let keep = seen.contains(uid);
                        if !keep {
                            task.abort();
                        }
                        keep
                    });
                }
            }
            watcher::Event::Apply(pod) => {
                apply(pod, &mut workers);
            }
            watcher::Event::Delete(pod) => {
                // Force-deleted: the worker sees its channel close and stops.
                if let Some(uid) = pod.metadata.uid
                    && let Some((tx, _)) = workers.remove(&uid)
                {
                    drop(tx);
                }
            }
        }
    }
    Ok(())
}

fn uid_less() -> Option<String> {
    tracing::warn!("a pod without a uid was ignored");
    None
}
