//! Two clusters, `west` and `east`, on one host: the network of
//! [`crate::topology`], the WAN forwarder, and in each node namespace a
//! control plane (with scheduler and kube-proxy) and the node agent.
//!
//! A [`Pair`] is owned like a [`ControlPlane`]: dropping it or its owner
//! dying removes every process, namespace and file (a janitor runs the
//! network teardown when no Rust code can).

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use serde::{Deserialize, Serialize};

use crate::addons;
use crate::binaries::Binaries;
use crate::control_plane::{
    self, CA_CERT, ControlPlane, ControlPlaneConfig, ControlPlaneInfo, KUBELET_CERT, KUBELET_KEY,
    NodePlacement, STOP_GRACE,
};
use crate::process::{Component, Janitor};
use crate::topology::{self, ClusterNet, PairNet, Side};

/// Options for a pair.
#[derive(Debug, Clone)]
pub struct PairOptions {
    /// The cluster domain of both clusters.
    pub cluster_domain: String,
    /// Route pod CIDRs across the WAN.
    pub flat: bool,
    /// Initial WAN settings (`delay=20ms loss=0.01`).
    pub wan_settings: String,
    /// Where mesh's binaries (`mesh-node`, `mesh-podinfo`, …) are.
    pub mesh_bin_dir: PathBuf,
}

/// The file in a detached pair's directory that describes it.
pub const PAIR_INFO_FILE: &str = "pair.json";

/// Where a running pair is; written to `<dir>/pair.json` when detached.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PairInfo {
    /// The network slot (see [`topology::PairNet::plan`]).
    pub slot: u8,
    /// Whether pod CIDRs are routed across the WAN.
    pub flat: bool,
    /// The pair's directory.
    pub dir: PathBuf,
    /// One kubeconfig with contexts `west` and `east`.
    pub kubeconfig: PathBuf,
    /// The WAN forwarder's control socket.
    pub wan_socket: PathBuf,
    /// West, then east.
    pub clusters: Vec<ControlPlaneInfo>,
}

impl PairInfo {
    /// The network plan.
    pub fn plan(&self) -> PairNet {
        PairNet::plan(self.slot, self.flat)
    }
}

/// A running pair of clusters.
#[derive(Debug)]
pub struct Pair {
    /// The network plan.
    pub plan: PairNet,
    /// The pair's directory.
    pub dir: PathBuf,
    /// West, then east.
    pub clusters: Vec<ControlPlane>,
    forwarder: Option<Component>,
    janitor: Option<Janitor>,
}

impl Pair {
    /// Starts both clusters in `dir` and waits for their nodes to be Ready.
    pub async fn start(
        binaries: &Binaries,
        dir: &Path,
        options: PairOptions,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let dir = std::fs::canonicalize(dir)?;
        let plan = topology::claim_slot(options.flat).await?;
        let janitor =
            Janitor::watch_with(std::process::id(), &dir, &topology::shell_teardown(&plan))?;
        let mut pair = Self {
            plan,
            dir,
            clusters: Vec::new(),
            forwarder: None,
            janitor: Some(janitor),
        };
        pair.boot(binaries, &options).await?;
        Ok(pair)
    }

    async fn boot(&mut self, binaries: &Binaries, options: &PairOptions) -> anyhow::Result<()> {
        topology::build(&self.plan).await?;
        let node_bin = options.mesh_bin_dir.join("mesh-node");
        anyhow::ensure!(
            node_bin.exists(),
            "{} is missing: build it with `cargo build --bin mesh-node`",
            node_bin.display()
        );
        let forwarder = Component::spawn(
            "mesh-wan",
            &node_bin,
            &[
                "wan".into(),
                "--west-netns".into(),
                self.plan.cluster(Side::West).netns.clone(),
                "--east-netns".into(),
                self.plan.cluster(Side::East).netns.clone(),
                "--control".into(),
                self.wan_socket().display().to_string(),
                "--settings".into(),
                options.wan_settings.clone(),
            ],
            &self.dir,
        )?;
        self.forwarder = Some(forwarder);
        for _ in 0..100 {
            if self.wan_socket().exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::ensure!(
            self.wan_socket().exists(),
            "the WAN forwarder did not start; its log: {}",
            self.forwarder
                .as_ref()
                .map(|f| f.log_tail(10))
                .unwrap_or_default()
        );
        topology::configure_wan(&self.plan).await?;
        let (west, east) = tokio::join!(
            start_cluster(binaries, &self.dir, self.plan.cluster(Side::West), options),
            start_cluster(binaries, &self.dir, self.plan.cluster(Side::East), options),
        );
        self.clusters.push(west?);
        self.clusters.push(east?);
        let kubeconfig = crate::kubeconfig::merge(
            &self
                .clusters
                .iter()
                .map(|c| c.kubeconfig().to_path_buf())
                .collect::<Vec<_>>(),
            Side::West.name(),
        )?;
        std::fs::write(self.kubeconfig(), kubeconfig)?;
        Ok(())
    }

    /// One kubeconfig with contexts `west` and `east` (current: west).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// Where the pair is.
    pub fn info(&self) -> PairInfo {
        PairInfo {
            slot: self.plan.slot,
            flat: self.plan.flat,
            dir: self.dir.clone(),
            kubeconfig: self.kubeconfig(),
            wan_socket: self.wan_socket(),
            clusters: self.clusters.iter().map(|c| c.info().clone()).collect(),
        }
    }

    /// Leaves the pair running after this process exits; [`stop_detached`]
    /// stops it. Writes `pair.json`.
    pub fn detach(mut self) -> anyhow::Result<PairInfo> {
        let mut info = self.info();
        info.clusters = self
            .clusters
            .drain(..)
            .map(ControlPlane::detach)
            .collect::<Result<_, _>>()?;
        std::fs::write(
            self.dir.join(PAIR_INFO_FILE),
            serde_json::to_vec_pretty(&info)?,
        )?;
        // The forwarder keeps running: its process group is recorded.
        self.forwarder.take();
        if let Some(janitor) = self.janitor.take() {
            janitor.dismiss();
        }
        Ok(info)
    }

    /// Ties the pair's life to process `owner` instead of this one: it keeps
    /// running after this process exits and is removed when `owner` exits.
    pub fn hand_over(self, owner: u32) -> anyhow::Result<PairInfo> {
        // Left running on purpose: the new janitor owns the cleanup now.
        Janitor::watch_with(owner, &self.dir, &topology::shell_teardown(&self.plan))?;
        self.detach()
    }

    /// The WAN forwarder's control socket (see [`crate::wan::control`]).
    pub fn wan_socket(&self) -> PathBuf {
        self.dir.join("wan.sock")
    }

    /// One cluster's control plane.
    pub fn cluster(&self, side: Side) -> &ControlPlane {
        &self.clusters[match side {
            Side::West => 0,
            Side::East => 1,
        }]
    }

    /// Stops everything and removes the namespaces and the directory.
    pub async fn stop(mut self) {
        for plane in self.clusters.drain(..) {
            plane.stop().await;
        }
        if let Some(mut f) = self.forwarder.take() {
            f.stop(Duration::from_secs(1)).await;
        }
        topology::teardown(&self.plan).await;
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(j) = self.janitor.take() {
            j.dismiss();
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        // The janitor watches this process, not this value: when the value
        // goes without `stop`, let the control planes' own destructors run
        // and leave the network to the janitor at process exit.
        self.clusters.clear();
        if let Some(f) = self.forwarder.as_ref() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(f.pid()),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Reads a detached pair's description from its directory.
pub fn read_detached(dir: &Path) -> Option<PairInfo> {
    let bytes = std::fs::read(dir.join(PAIR_INFO_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether both API servers of a detached pair answer.
pub async fn is_ready(info: &PairInfo) -> bool {
    for cluster in &info.clusters {
        if !control_plane::is_ready(&cluster.kubeconfig).await {
            return false;
        }
    }
    !info.clusters.is_empty()
}

/// Stops a detached pair (or what is left of one, after a crash): every
/// process, the network namespaces and host links, then the directory.
pub async fn stop_detached(dir: &Path) -> std::io::Result<()> {
    let info = read_detached(dir);
    for side in [Side::West, Side::East] {
        let cluster_dir = dir.join(side.name());
        if cluster_dir.exists() {
            control_plane::stop_detached(&cluster_dir, STOP_GRACE).await?;
        }
    }
    crate::process::kill_recorded_groups(dir, STOP_GRACE).await;
    if let Some(info) = info {
        topology::teardown(&info.plan()).await;
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

async fn start_cluster(
    binaries: &Binaries,
    dir: &Path,
    net: &ClusterNet,
    options: &PairOptions,
) -> anyhow::Result<ControlPlane> {
    let name = net.side.name();
    let config = ControlPlaneConfig {
        name: name.into(),
        bind_address: net.node_ip.into(),
        service_cidr: net.service_cidr.to_string(),
        cluster_domain: options.cluster_domain.clone(),
        ready_timeout: Duration::from_secs(120),
        node: Some(NodePlacement {
            netns: net.netns.clone(),
            extra_addresses: vec![net.wan_ip.into()],
            pod_cidr: net.pod_cidr.to_string(),
            node_name: name.into(),
        }),
    };
    let mut plane = ControlPlane::start(binaries, &dir.join(name), config).await?;
    let cp_dir = plane.info().dir.clone();
    let pki = cp_dir.join("pki");
    let kubeconfig = plane.kubeconfig().display().to_string();
    plane.spawn_component(
        "mesh-node-agent",
        &options.mesh_bin_dir.join("mesh-node"),
        vec![
            "agent".into(),
            format!("--kubeconfig={kubeconfig}"),
            format!("--node-name={name}"),
            format!("--node-ip={}", net.node_ip),
            format!("--state-dir={}", cp_dir.join("node").display()),
            format!("--pod-netns-prefix={}", net.pod_netns_prefix),
            format!("--dns-ip={}", net.dns_ip),
            format!("--cluster-domain={}", options.cluster_domain),
            format!("--kubernetes-service-ip={}", net.service_cidr.nth(1)),
            format!("--k8s-bin-dir={}", binaries.dir().display()),
            format!("--lb-pool={}", net.lb_pool),
            format!("--lb-interface={}", topology::WAN_IF),
            format!("--tls-cert-file={}", pki.join(KUBELET_CERT).display()),
            format!("--tls-private-key-file={}", pki.join(KUBELET_KEY).display()),
            format!("--client-ca-file={}", pki.join(CA_CERT).display()),
        ],
    )?;
    let nodes: Api<Node> = Api::all(plane.client().await?);
    for _ in 0..600 {
        let ready = nodes.get_opt(name).await.ok().flatten().is_some_and(|n| {
            n.status
                .and_then(|s| s.conditions)
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        });
        if ready {
            let client = plane.client().await?;
            addons::install_dns(
                &client,
                &options.cluster_domain,
                net.dns_ip,
                Duration::from_secs(60),
            )
            .await
            .map_err(|e| anyhow::anyhow!("cluster {name}: {e:#}"))?;
            let ca = std::fs::read_to_string(pki.join(CA_CERT))?;
            let wan_server = format!(
                "https://{}:{}",
                net.wan_ip,
                crate::control_plane::NODE_APISERVER_PORT
            );
            addons::publish_cluster_info(&client, &wan_server, &ca)
                .await
                .map_err(|e| {
                    anyhow::anyhow!("cluster {name}: publishing kube-public/cluster-info: {e:#}")
                })?;
            return Ok(plane);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("node {name} did not become Ready within 60 s")
}
