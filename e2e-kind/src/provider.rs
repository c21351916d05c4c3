//! What a scenario needs from the clusters it runs on.

use std::future::Future;
use std::path::PathBuf;

/// One of the two clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cluster {
    /// The cluster clients start in.
    West,
    /// The other one.
    East,
}

impl Cluster {
    /// `west` or `east`.
    pub fn name(self) -> &'static str {
        match self {
            Self::West => "west",
            Self::East => "east",
        }
    }
}

/// Two clusters linked by a WAN that tests may cut.
pub trait Provider: Sync {
    /// What runs the clusters, for messages (`local`, `kind`).
    fn name(&self) -> &'static str;
    /// An admin client for a cluster.
    fn client(&self, cluster: Cluster) -> kube::Client;
    /// A kubeconfig with a context for each cluster.
    fn kubeconfig(&self) -> PathBuf;
    /// The context of a cluster in [`Provider::kubeconfig`].
    fn context(&self, cluster: Cluster) -> String;
    /// The kubectl that matches the clusters.
    fn kubectl(&self) -> PathBuf;
    /// The URL at which the other cluster's pods reach this cluster's API
    /// server (what `mesh multicluster link --api-server-address` takes).
    fn api_server_address(&self, cluster: Cluster) -> String;
    /// Drops every packet between the clusters.
    fn cut_wan(&self) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Undoes [`Provider::cut_wan`].
    fn restore_wan(&self) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Changes the WAN's impairments (`delay=20ms loss=1% udp=drop`, as
    /// `mesh wan set` takes them).
    fn set_wan(&self, settings: &str) -> impl Future<Output = anyhow::Result<()>> + Send;
}
