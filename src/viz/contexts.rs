//! Which clusters a viz command reads: the current context (or the global
//! `--context`), the `--contexts` listed, or every context of the
//! kubeconfig (`--all-contexts`), so one table covers an application that
//! runs in several clusters.

use clap::Args;

use crate::cli::GlobalArgs;

/// Flags that choose several clusters.
#[derive(Debug, Args)]
pub struct ContextsArgs {
    /// Read these kubeconfig contexts (`west,east`) and add a CLUSTER column.
    #[arg(
        long,
        env = "MESH_VIZ_CONTEXTS",
        value_delimiter = ',',
        conflicts_with = "all_contexts"
    )]
    pub contexts: Vec<String>,
    /// Read every context of the kubeconfig, with a CLUSTER column.
    #[arg(long, env = "MESH_VIZ_ALL_CONTEXTS")]
    pub all_contexts: bool,
}

/// The contexts to read: `[None]` for the current one alone, else each
/// named one (checked against the kubeconfig, so a typo names itself).
pub fn chosen(
    global: &GlobalArgs,
    contexts: &[String],
    all: bool,
) -> anyhow::Result<Vec<Option<String>>> {
    if contexts.is_empty() && !all {
        return Ok(vec![None]);
    }
    let kubeconfig = match &global.kubeconfig {
        Some(path) => kube::config::Kubeconfig::read_from(path)
            .map_err(|e| anyhow::anyhow!("reading kubeconfig {}: {e}", path.display()))?,
        None => kube::config::Kubeconfig::read()
            .map_err(|e| anyhow::anyhow!("reading the kubeconfig: {e}"))?,
    };
    let known: Vec<String> = kubeconfig.contexts.iter().map(|c| c.name.clone()).collect();
    if all {
        anyhow::ensure!(!known.is_empty(), "the kubeconfig has no contexts");
        return Ok(known.into_iter().map(Some).collect());
    }
    for context in contexts {
        anyhow::ensure!(
            known.contains(context),
            "--contexts: the kubeconfig has no context {context:?} (it has {})",
            known.join(", ")
        );
    }
    Ok(contexts.iter().cloned().map(Some).collect())
}
