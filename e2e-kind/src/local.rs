//! The local west/east pair (see `mesh-clusters`), shared by every test of
//! a run: started by the first test that asks and removed when the test
//! runner exits.

use std::path::PathBuf;

use mesh_clusters::pair::PairInfo;
use mesh_clusters::{Binaries, Binary, control_plane, testing, wan};

use crate::provider::{Cluster, Provider};

/// The local clusters.
#[derive(Clone)]
pub struct LocalProvider {
    info: PairInfo,
    west: kube::Client,
    east: kube::Client,
    kubectl: PathBuf,
}

impl std::fmt::Debug for LocalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalProvider")
            .field("dir", &self.info.dir)
            .finish_non_exhaustive()
    }
}

impl LocalProvider {
    /// The pair shared by this test run.
    ///
    /// # Panics
    ///
    /// When the clusters cannot be started or reached, with the reason.
    pub async fn shared() -> Self {
        let info = testing::shared_pair().await;
        let client = |i: usize| {
            let kubeconfig = info.clusters[i].kubeconfig.clone();
            async move {
                control_plane::client_for(&kubeconfig)
                    .await
                    .unwrap_or_else(|e| panic!("a client for {}: {e}", kubeconfig.display()))
            }
        };
        let kubectl = Binaries::locate()
            .unwrap_or_else(|e| panic!("the Kubernetes binaries: {e}"))
            .path(Binary::Kubectl);
        Self {
            west: client(0).await,
            east: client(1).await,
            info,
            kubectl,
        }
    }
}

impl Provider for LocalProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    fn client(&self, cluster: Cluster) -> kube::Client {
        match cluster {
            Cluster::West => self.west.clone(),
            Cluster::East => self.east.clone(),
        }
    }

    fn kubeconfig(&self) -> PathBuf {
        self.info.kubeconfig.clone()
    }

    fn context(&self, cluster: Cluster) -> String {
        cluster.name().to_owned()
    }

    fn kubectl(&self) -> PathBuf {
        self.kubectl.clone()
    }

    fn api_server_address(&self, cluster: Cluster) -> String {
        // The API server listens on every node address, and its
        // certificate names the node's WAN address, which the other
        // cluster's pods reach.
        let side = match cluster {
            Cluster::West => mesh_clusters::topology::Side::West,
            Cluster::East => mesh_clusters::topology::Side::East,
        };
        format!(
            "https://{}:{}",
            self.info.plan().cluster(side).wan_ip,
            mesh_clusters::control_plane::NODE_APISERVER_PORT
        )
    }

    async fn cut_wan(&self) -> anyhow::Result<()> {
        wan::control(&self.info.wan_socket, "cut").await?;
        Ok(())
    }

    async fn restore_wan(&self) -> anyhow::Result<()> {
        wan::control(&self.info.wan_socket, "restore").await?;
        Ok(())
    }

    async fn set_wan(&self, settings: &str) -> anyhow::Result<()> {
        let answer = wan::control(&self.info.wan_socket, &format!("set {settings}")).await?;
        anyhow::ensure!(
            !answer.starts_with("error"),
            "mesh wan set {settings}: {answer}"
        );
        Ok(())
    }
}
