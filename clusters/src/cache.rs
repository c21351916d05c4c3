//! mesh's cache directory, where `scripts/setup.sh` leaves what it builds
//! or fetches once per machine (the Kubernetes binaries, helm, Debian's
//! Prometheus): `$XDG_CACHE_HOME/mesh`, else `~/.cache/mesh`.

use std::path::PathBuf;

/// The cache directory; an error when there is no home to put it in.
pub fn dir() -> anyhow::Result<PathBuf> {
    Ok(dirs::cache_dir()
        .ok_or_else(|| anyhow::anyhow!("no cache directory: set XDG_CACHE_HOME or HOME"))?
        .join("mesh"))
}
