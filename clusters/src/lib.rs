//! Local Kubernetes clusters on one Linux host, for `mesh up` and for tests:
//! real etcd, kube-apiserver and kube-controller-manager built from pinned
//! upstream sources (see `clusters/k8s/`), started in seconds and torn down
//! without leaving a process, port or file behind.
//!
//! - [`addons`]: CoreDNS in every cluster of a pair.
//! - [`apply`]: server-side apply of YAML manifests.
//! - [`binaries`]: which Kubernetes release, where it is cached, building it.
//! - [`cache`]: mesh's cache directory; [`helm`]: the helm the charts are
//!   tested with; [`prometheus`]: the Prometheus viz runs.
//! - [`control_plane`]: starting, detaching and stopping one control plane.
//! - [`process`]: components in process groups, and the janitor that cleans
//!   up when their owner dies.
//! - [`programs`]: where mesh's own programs are.
//! - [`pki`], [`kubeconfig`]: the certificates and the kubeconfig.
//! - [`local`]: the cluster behind `mesh up` / `mesh down`.
//! - [`testing`]: one control plane shared by every test of a run.
//! - [`progress`]: progress lines for long operations.
//! - [`topology`], [`netns`]: the network of a `west`/`east` pair.
//! - [`wan`]: the impaired link between the two clusters.
//! - [`node`]: the node agent that runs pods.
//! - [`pair`]: the `west` and `east` clusters together.

pub mod addons;
pub mod apply;
pub mod binaries;
pub mod cache;
pub mod control_plane;
pub mod helm;
pub mod kubeconfig;
pub mod local;
pub mod netns;
pub mod node;
pub mod pair;
pub mod pki;
pub mod process;
pub mod programs;
pub mod progress;
pub mod prometheus;
pub mod testing;
pub mod topology;
pub mod wan;

pub use binaries::{Binaries, Binary, KUBERNETES_VERSION};
pub use control_plane::{ControlPlane, ControlPlaneConfig, ControlPlaneInfo};
