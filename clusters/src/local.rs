//! The clusters behind `mesh up` and `mesh down`: a `west`/`east`
//! [`Pair`] kept in the state directory, started once (building the
//! Kubernetes binaries if needed) and left running until `mesh down`.

use std::path::{Path, PathBuf};

use crate::binaries::{self, Binaries};
use crate::pair::{self, Pair, PairInfo, PairOptions};
use crate::progress::Step;
use crate::wan;

/// The environment variable that overrides where `mesh up` keeps its state.
pub const STATE_DIR_ENV: &str = "MESH_STATE_DIR";

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

/// Where the pair lives under the state directory.
pub fn pair_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("clusters")
}

/// How `mesh up` sets the clusters up.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// WAN settings (`delay=20ms jitter=2ms loss=0.01 rate=100mbit`);
    /// applied live when the clusters are already up.
    pub wan_settings: String,
    /// Route pod CIDRs between the clusters.
    pub flat: bool,
    /// The clusters' domain.
    pub cluster_domain: String,
    /// Where `mesh-node` and the other mesh binaries are.
    pub mesh_bin_dir: PathBuf,
}

/// What `mesh up` did.
#[derive(Debug, Clone)]
pub struct UpOutcome {
    /// The running pair.
    pub pair: PairInfo,
    /// The directory with kubectl and the other Kubernetes binaries.
    pub bin_dir: PathBuf,
    /// False when it was already up.
    pub started: bool,
    /// The WAN's settings now.
    pub wan: String,
}

/// Brings both clusters up, or finds them already up.
pub async fn up(state_dir: &Path, options: &UpOptions) -> anyhow::Result<UpOutcome> {
    let dir = pair_dir(state_dir);
    let bin_dir = Binaries::default_dir()?;
    if let Some(info) = pair::read_detached(&dir)
        && pair::is_ready(&info).await
    {
        let wan = configure_wan(&info, &options.wan_settings).await?;
        return Ok(UpOutcome {
            pair: info,
            bin_dir,
            started: false,
            wan,
        });
    }
    if dir.exists() {
        let step = Step::start("removing clusters that stopped");
        pair::stop_detached(&dir).await?;
        step.done();
    }
    let binaries = binaries::build(Path::new(binaries::GO_MODULE_DIR), &bin_dir).await?;
    let step = Step::start(
        "starting clusters west and east (network, control planes, node agents, CoreDNS)",
    );
    let started = Pair::start(
        &binaries,
        &dir,
        PairOptions {
            cluster_domain: options.cluster_domain.clone(),
            flat: options.flat,
            wan_settings: options.wan_settings.clone(),
            mesh_bin_dir: options.mesh_bin_dir.clone(),
        },
    )
    .await;
    let pair = match started {
        Ok(pair) => pair,
        Err(e) => {
            step.fail();
            return Err(e);
        }
    };
    step.done();
    let info = pair.detach()?;
    let wan = wan::control(&info.wan_socket, "show").await?;
    Ok(UpOutcome {
        pair: info,
        bin_dir,
        started: true,
        wan,
    })
}

/// Applies WAN settings to running clusters; returns the settings now.
async fn configure_wan(info: &PairInfo, settings: &str) -> anyhow::Result<String> {
    if !settings.trim().is_empty() {
        wan::control(&info.wan_socket, &format!("set {settings}"))
            .await
            .map_err(|e| anyhow::anyhow!("WAN settings {settings:?}: {e}"))?;
    }
    Ok(wan::control(&info.wan_socket, "show").await?)
}

/// Sends a command (`show`, `cut`, `restore`, `set delay=20ms`, `clear`) to
/// the WAN of the clusters `mesh up` started; returns its settings after.
pub async fn wan_command(state_dir: &Path, command: &str) -> anyhow::Result<String> {
    let dir = pair_dir(state_dir);
    let info = pair::read_detached(&dir)
        .ok_or_else(|| anyhow::anyhow!("no local clusters in {}: run `mesh up`", dir.display()))?;
    Ok(wan::control(&info.wan_socket, command).await?)
}

/// Tears both clusters down; returns whether there were any.
pub async fn down(state_dir: &Path) -> anyhow::Result<bool> {
    let dir = pair_dir(state_dir);
    if !dir.exists() {
        return Ok(false);
    }
    let step = Step::start("stopping clusters west and east");
    pair::stop_detached(&dir).await?;
    step.done();
    Ok(true)
}
