//! Where mesh's own programs (`mesh-node`, `mesh-podinfo`, `mesh-proxy`,
//! …) are, for the CLI, tests and benchmarks: `$MESH_BIN_DIR`, else the
//! directory of the running program (a test binary in
//! `target/<profile>/deps` looks in `target/<profile>`).

use std::path::{Path, PathBuf};

/// The directory mesh's programs are looked for in.
pub fn dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("MESH_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow::anyhow!("{} has no directory", exe.display()))?;
    Ok(if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir).to_path_buf()
    } else {
        dir.to_path_buf()
    })
}

/// [`dir`], once every one of `programs` is in it; otherwise an error
/// that names the missing one and says how to build it (`build`).
pub fn find(programs: &[&str], build: &str) -> anyhow::Result<PathBuf> {
    let dir = dir()?;
    require(&dir, programs, build)?;
    Ok(dir)
}

fn require(dir: &Path, programs: &[&str], build: &str) -> anyhow::Result<()> {
    for program in programs {
        anyhow::ensure!(
            dir.join(program).exists(),
            "{program} is not in {}: {build}",
            dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_is_named_with_how_to_build_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("mesh-node"), "").expect("write");
        assert!(require(dir.path(), &["mesh-node"], "build it").is_ok());
        let err = require(
            dir.path(),
            &["mesh-node", "mesh-podinfo"],
            "cargo build --workspace --bins",
        )
        .expect_err("missing");
        let text = err.to_string();
        assert!(
            text.contains("mesh-podinfo is not in")
                && text.contains("cargo build --workspace --bins"),
            "{text}"
        );
    }
}
