//! The real helm the charts are tested with: v4.3.2, built once by
//! `scripts/setup.sh` from its Go module into the cache
//! (`$XDG_CACHE_HOME/mesh/helm-<version>/helm`, `~/.cache/…` when unset),
//! or wherever `$MESH_HELM` points.

use std::path::PathBuf;

/// The helm release `scripts/setup.sh` builds (a unit test keeps the two
/// equal).
pub const HELM_VERSION: &str = "v4.3.2";

/// The environment variable that names another helm binary.
pub const HELM_ENV: &str = "MESH_HELM";

/// The helm binary: `$MESH_HELM`, else the one `scripts/setup.sh` built;
/// an error that says how to get it when it is not there.
pub fn locate() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(HELM_ENV).filter(|p| !p.is_empty()) {
        return Ok(path.into());
    }
    let cache = crate::cache::dir()?
        .join(format!("helm-{HELM_VERSION}"))
        .join("helm");
    anyhow::ensure!(
        cache.is_file(),
        "helm {HELM_VERSION} is not built at {}: scripts/setup.sh builds it (or set {HELM_ENV})",
        cache.display()
    );
    Ok(cache)
}

#[cfg(test)]
mod tests {
    #[test]
    fn setup_builds_the_same_helm_release() {
        let setup =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/setup.sh"))
                .expect("scripts/setup.sh");
        assert!(
            setup.contains(&format!("HELM_VERSION=\"{}\"", super::HELM_VERSION)),
            "scripts/setup.sh builds another helm than {}",
            super::HELM_VERSION
        );
    }
}
