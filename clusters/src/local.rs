//! The local cluster behind `mesh up` and `mesh down`: where its state lives
//! and how it is brought up (building the binaries if needed) and torn down.
//! One control plane for now; the two-cluster `west`/`east` setup grows here.

use std::path::{Path, PathBuf};

use crate::binaries::{self, Binaries};
use crate::control_plane::{self, ControlPlane, ControlPlaneConfig, ControlPlaneInfo, STOP_GRACE};
use crate::progress::Step;

/// The environment variable that overrides where `mesh up` keeps its state.
pub const STATE_DIR_ENV: &str = "MESH_STATE_DIR";

/// The name of the cluster `mesh up` starts.
pub const LOCAL_CLUSTER: &str = "local";

/// `$MESH_STATE_DIR`, else `$XDG_STATE_HOME/mesh`, else `~/.local/state/mesh`.
pub fn default_state_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(STATE_DIR_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let base = dirs::state_dir()
        .or_else(|| dirs::home_dir().map(|h| h.join(".local").join("state")))
        .ok_or_else(|| anyhow::anyhow!("no state directory: set {STATE_DIR_ENV} or HOME"))?;
    Ok(base.join("mesh"))
}

fn cluster_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("clusters").join(LOCAL_CLUSTER)
}

/// What `mesh up` did.
#[derive(Debug, Clone)]
pub struct UpOutcome {
    /// The running cluster.
    pub cluster: ControlPlaneInfo,
    /// The directory with kubectl and the other binaries.
    pub bin_dir: PathBuf,
    /// False when it was already up.
    pub started: bool,
}

/// Brings the local cluster up, or finds it already up.
pub async fn up(state_dir: &Path) -> anyhow::Result<UpOutcome> {
    let dir = cluster_dir(state_dir);
    let bin_dir = Binaries::default_dir()?;
    if let Some(info) = control_plane::read_detached(&dir) {
        if control_plane::is_ready(&info.kubeconfig).await {
            return Ok(UpOutcome {
                cluster: info,
                bin_dir,
                started: false,
            });
        }
        let step = Step::start(format!("removing the stopped cluster {LOCAL_CLUSTER:?}"));
        control_plane::stop_detached(&dir, STOP_GRACE).await?;
        step.done();
    }
    let binaries = binaries::build(Path::new(binaries::GO_MODULE_DIR), &bin_dir).await?;
    let step = Step::start(format!(
        "starting the control plane of cluster {LOCAL_CLUSTER:?}"
    ));
    let config = ControlPlaneConfig {
        name: LOCAL_CLUSTER.into(),
        ..ControlPlaneConfig::default()
    };
    let plane = match ControlPlane::start(&binaries, &dir, config).await {
        Ok(plane) => plane,
        Err(e) => {
            step.fail();
            return Err(e.into());
        }
    };
    step.done();
    Ok(UpOutcome {
        cluster: plane.detach()?,
        bin_dir,
        started: true,
    })
}

/// Tears the local cluster down; returns whether there was one.
pub async fn down(state_dir: &Path) -> anyhow::Result<bool> {
    let dir = cluster_dir(state_dir);
    if !dir.exists() {
        return Ok(false);
    }
    let step = Step::start(format!("stopping cluster {LOCAL_CLUSTER:?}"));
    control_plane::stop_detached(&dir, STOP_GRACE).await?;
    step.done();
    Ok(true)
}
