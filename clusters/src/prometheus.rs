//! The real Prometheus viz runs and the failover controller's Prometheus
//! path is tested against: v3.16.0, built once by `scripts/setup.sh` from
//! its Go module (module version v0.316.0) into the cache
//! (`$XDG_CACHE_HOME/mesh/prometheus-<version>/prometheus`), or wherever
//! `$MESH_PROMETHEUS` points. (Debian's package cannot serve: it is built
//! without Kubernetes service discovery, which Linkerd's scrape
//! configuration needs.)

use std::path::PathBuf;

/// The Prometheus release `scripts/setup.sh` builds (a unit test keeps the
/// two, and `clusters/images.toml`, equal).
pub const PROMETHEUS_VERSION: &str = "v3.16.0";

/// The environment variable that names another Prometheus binary.
pub const PROMETHEUS_ENV: &str = "MESH_PROMETHEUS";

/// The binary's path under the cache directory.
pub fn cached_path() -> String {
    format!("prometheus-{PROMETHEUS_VERSION}/prometheus")
}

/// The Prometheus binary: `$MESH_PROMETHEUS`, else the one
/// `scripts/setup.sh` built; an error that says how to get it otherwise.
pub fn locate() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(PROMETHEUS_ENV).filter(|p| !p.is_empty()) {
        return Ok(path.into());
    }
    let path = crate::cache::dir()?.join(cached_path());
    anyhow::ensure!(
        path.is_file(),
        "Prometheus {PROMETHEUS_VERSION} is not built at {}: scripts/setup.sh builds it (or set {PROMETHEUS_ENV})",
        path.display()
    );
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_builds_the_release_the_clusters_run() {
        let setup =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/setup.sh"))
                .expect("scripts/setup.sh");
        assert!(
            setup.contains(&format!("PROMETHEUS_VERSION=\"{PROMETHEUS_VERSION}\"")),
            "scripts/setup.sh builds another Prometheus than {PROMETHEUS_VERSION}"
        );
        assert!(
            crate::node::images::BUILTIN.contains(&format!("cached = \"{}\"", cached_path())),
            "clusters/images.toml runs another Prometheus than {PROMETHEUS_VERSION}"
        );
    }
}
