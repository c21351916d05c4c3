//! The Kubernetes binaries the local clusters run (etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler, kube-proxy, kubectl, CoreDNS):
//! which release, where they are cached, and how they are built from the
//! pinned Go module in `clusters/k8s/` with the machine's Go toolchain.
//!
//! The cache lives outside the repository, in
//! `$XDG_CACHE_HOME/mesh/k8s-<version>/bin` (`~/.cache/…` when unset), or in
//! `$MESH_K8S_BIN_DIR`. A build writes a stamp of the sources it used, so a
//! second build with the same sources does nothing.

use std::fmt;
use std::path::{Path, PathBuf};

use tokio::process::Command;

use crate::progress::Step;

/// The Kubernetes release every local cluster runs; `clusters/k8s/go.mod`
/// pins the same one (a unit test keeps them equal).
pub const KUBERNETES_VERSION: &str = "v1.34.4";

/// Where the pinned Go module lives in this repository.
pub const GO_MODULE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/k8s");

/// The environment variable that overrides the binary cache directory.
pub const BIN_DIR_ENV: &str = "MESH_K8S_BIN_DIR";

/// One of the binaries a local cluster runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Binary {
    /// The etcd server.
    Etcd,
    /// kube-apiserver.
    KubeApiserver,
    /// kube-controller-manager.
    KubeControllerManager,
    /// kube-scheduler.
    KubeScheduler,
    /// kube-proxy.
    KubeProxy,
    /// kubectl, matching the API server's version.
    Kubectl,
    /// CoreDNS, with the plugins a cluster DNS needs.
    Coredns,
}

impl Binary {
    /// Every binary, in build order (the small ones first).
    pub const ALL: [Binary; 7] = [
        Binary::Etcd,
        Binary::Coredns,
        Binary::Kubectl,
        Binary::KubeApiserver,
        Binary::KubeControllerManager,
        Binary::KubeScheduler,
        Binary::KubeProxy,
    ];

    /// The file name of the binary.
    pub fn file_name(self) -> &'static str {
        match self {
            Binary::Etcd => "etcd",
            Binary::KubeApiserver => "kube-apiserver",
            Binary::KubeControllerManager => "kube-controller-manager",
            Binary::KubeScheduler => "kube-scheduler",
            Binary::KubeProxy => "kube-proxy",
            Binary::Kubectl => "kubectl",
            Binary::Coredns => "coredns",
        }
    }

    /// The Go package `go build` builds it from, inside the pinned module.
    fn go_package(self) -> &'static str {
        match self {
            Binary::Etcd => "./cmd/etcd",
            Binary::Coredns => "./cmd/coredns",
            Binary::KubeApiserver => "k8s.io/kubernetes/cmd/kube-apiserver",
            Binary::KubeControllerManager => "k8s.io/kubernetes/cmd/kube-controller-manager",
            Binary::KubeScheduler => "k8s.io/kubernetes/cmd/kube-scheduler",
            Binary::KubeProxy => "k8s.io/kubernetes/cmd/kube-proxy",
            Binary::Kubectl => "k8s.io/kubernetes/cmd/kubectl",
        }
    }
}

impl fmt::Display for Binary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file_name())
    }
}

/// Why the binaries cannot be used or built.
#[derive(Debug, thiserror::Error)]
pub enum BinariesError {
    /// Some binaries are not in the cache.
    #[error(
        "Kubernetes {KUBERNETES_VERSION} binaries missing in {dir}: {missing}. Build them with `mesh k8s build` \
         (the README's set-up commands run it), or point {BIN_DIR_ENV} at a directory that has them"
    )]
    Missing {
        /// The cache directory.
        dir: PathBuf,
        /// The missing file names, comma-separated.
        missing: String,
    },
    /// Neither `$XDG_CACHE_HOME` nor a home directory is known.
    #[error("no cache directory: set XDG_CACHE_HOME, HOME or {BIN_DIR_ENV}")]
    NoCacheDir,
    /// No usable Go toolchain.
    #[error(
        "building Kubernetes {KUBERNETES_VERSION} needs Go {needed} or newer: {found}. Install a newer Go \
         (https://go.dev/doc/install) and put it first on PATH"
    )]
    Go {
        /// The version go.mod asks for.
        needed: String,
        /// What was found instead.
        found: String,
    },
    /// `go build` failed.
    #[error("building {binary} failed (exit {status}); the last lines of its output:\n{output}")]
    Build {
        /// Which binary.
        binary: Binary,
        /// The exit status.
        status: String,
        /// The end of go's output.
        output: String,
    },
    /// Reading sources or writing the cache failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BinariesError {
    let context = context.into();
    move |source| BinariesError::Io { context, source }
}

/// A directory holding every Kubernetes binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// The cache directory for this release: `$MESH_K8S_BIN_DIR`, else
    /// `$XDG_CACHE_HOME/mesh/k8s-<version>/bin`, else `~/.cache/…`.
    pub fn default_dir() -> Result<PathBuf, BinariesError> {
        if let Some(dir) = std::env::var_os(BIN_DIR_ENV).filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(dir));
        }
        let cache = dirs::cache_dir().ok_or(BinariesError::NoCacheDir)?;
        Ok(cache
            .join("mesh")
            .join(format!("k8s-{KUBERNETES_VERSION}"))
            .join("bin"))
    }

    /// The binaries in the default cache directory, if all are there.
    pub fn locate() -> Result<Self, BinariesError> {
        Self::in_dir(Self::default_dir()?)
    }

    /// The binaries in `dir`, if all are there.
    pub fn in_dir(dir: PathBuf) -> Result<Self, BinariesError> {
        let missing: Vec<&str> = Binary::ALL
            .iter()
            .filter(|b| !dir.join(b.file_name()).is_file())
            .map(|b| b.file_name())
            .collect();
        if missing.is_empty() {
            Ok(Self { dir })
        } else {
            Err(BinariesError::Missing {
                dir,
                missing: missing.join(", "),
            })
        }
    }

    /// The path of one binary.
    pub fn path(&self, binary: Binary) -> PathBuf {
        self.dir.join(binary.file_name())
    }

    /// The directory holding them.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Builds every binary into `out_dir` from the Go module in `source_dir`,
/// showing progress on stderr. Does nothing when `out_dir` already holds a
/// build of the same sources.
pub async fn build(source_dir: &Path, out_dir: &Path) -> Result<Binaries, BinariesError> {
    let stamp_path = out_dir.join(".stamp");
    let stamp = source_stamp(source_dir)?;
    if let Ok(binaries) = Binaries::in_dir(out_dir.to_owned())
        && std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str())
    {
        eprintln!(
            "{} Kubernetes {KUBERNETES_VERSION} binaries are up to date in {}",
            console::style("✔").green(),
            out_dir.display()
        );
        return Ok(binaries);
    }
    check_go(source_dir).await?;
    std::fs::create_dir_all(out_dir)
        .map_err(io_error(format!("creating {}", out_dir.display())))?;
    let total = Binary::ALL.len();
    for (i, binary) in Binary::ALL.into_iter().enumerate() {
        let step = Step::start(format!(
            "building {binary} ({}/{total}, Kubernetes {KUBERNETES_VERSION})",
            i + 1
        ));
        match go_build(source_dir, out_dir, binary).await {
            Ok(()) => step.done(),
            Err(e) => {
                step.fail();
                return Err(e);
            }
        }
    }
    std::fs::write(&stamp_path, stamp)
        .map_err(io_error(format!("writing {}", stamp_path.display())))?;
    Binaries::in_dir(out_dir.to_owned())
}

/// The linker flags that stamp the release into the binaries, as the
/// Kubernetes release build does (so `kubectl version` tells the truth).
fn ldflags() -> String {
    let minor = KUBERNETES_VERSION
        .trim_start_matches('v')
        .split('.')
        .nth(1)
        .unwrap_or_default();
    let mut flags = vec!["-s".to_owned(), "-w".to_owned()];
    for pkg in [
        "k8s.io/component-base/version",
        "k8s.io/client-go/pkg/version",
    ] {
        flags.push(format!("-X {pkg}.gitVersion={KUBERNETES_VERSION}"));
        flags.push(format!("-X {pkg}.gitMajor=1"));
        flags.push(format!("-X {pkg}.gitMinor={minor}"));
        flags.push(format!("-X {pkg}.gitTreeState=clean"));
    }
    flags.join(" ")
}

async fn go_build(source_dir: &Path, out_dir: &Path, binary: Binary) -> Result<(), BinariesError> {
    let out = out_dir.join(format!(".{}.partial", binary.file_name()));
    let output = Command::new("go")
        .current_dir(source_dir)
        .env("CGO_ENABLED", "0")
        .args(["build", "-trimpath", "-ldflags", &ldflags(), "-o"])
        .arg(&out)
        .arg(binary.go_package())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(io_error("running `go build`"))?;
    if !output.status.success() {
        let text = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = text.lines().collect();
        return Err(BinariesError::Build {
            binary,
            status: output.status.to_string(),
            output: lines[lines.len().saturating_sub(30)..].join("\n"),
        });
    }
    let dest = out_dir.join(binary.file_name());
    std::fs::rename(&out, &dest).map_err(io_error(format!("moving {} into place", dest.display())))
}

/// Checks `go` exists and is at least the version go.mod's `go` line asks for.
async fn check_go(source_dir: &Path) -> Result<(), BinariesError> {
    let go_mod = std::fs::read_to_string(source_dir.join("go.mod"))
        .map_err(io_error(format!("reading {}/go.mod", source_dir.display())))?;
    let needed = go_mod
        .lines()
        .find_map(|l| l.strip_prefix("go "))
        .unwrap_or("1.24")
        .trim()
        .to_owned();
    let found = match Command::new("go").args(["env", "GOVERSION"]).output().await {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Ok(out) => {
            return Err(BinariesError::Go {
                needed,
                found: format!(
                    "`go env GOVERSION` failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Err(_) => {
            return Err(BinariesError::Go {
                needed,
                found: "no `go` on PATH".into(),
            });
        }
    };
    if version_at_least(found.trim_start_matches("go"), &needed) {
        Ok(())
    } else {
        Err(BinariesError::Go {
            needed,
            found: format!("found {found}"),
        })
    }
}

/// Compares dotted versions numerically (`1.26.8` ≥ `1.24.0`).
fn version_at_least(found: &str, needed: &str) -> bool {
    let parse = |v: &str| -> [u64; 3] {
        let mut parts = [0; 3];
        for (slot, part) in parts.iter_mut().zip(v.split('.')) {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            *slot = digits.parse().unwrap_or(0);
        }
        parts
    };
    parse(found) >= parse(needed)
}

/// A digest of everything the build reads from the repository, plus the
/// linker flags, so that a changed pin rebuilds.
fn source_stamp(source_dir: &Path) -> Result<String, BinariesError> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(ldflags().as_bytes());
    for file in [
        "go.mod",
        "go.sum",
        "cmd/etcd/main.go",
        "cmd/coredns/main.go",
    ] {
        let path = source_dir.join(file);
        let bytes =
            std::fs::read(&path).map_err(io_error(format!("reading {}", path.display())))?;
        ctx.update(file.as_bytes());
        ctx.update(&bytes);
    }
    Ok(ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_mod_pins_the_same_release() {
        let go_mod =
            std::fs::read_to_string(Path::new(GO_MODULE_DIR).join("go.mod")).expect("go.mod");
        let pinned = go_mod
            .lines()
            .find_map(|l| l.trim().strip_prefix("k8s.io/kubernetes "))
            .and_then(|rest| rest.split_whitespace().next())
            .expect("go.mod requires k8s.io/kubernetes");
        assert_eq!(pinned, KUBERNETES_VERSION);
        let staging = format!("v0.{}", KUBERNETES_VERSION.trim_start_matches("v1."));
        let replaces: Vec<&str> = go_mod
            .lines()
            .filter(|l| l.contains("=> k8s.io/"))
            .collect();
        assert!(replaces.len() > 20, "staging replaces missing");
        for line in replaces {
            assert!(
                line.trim_end().ends_with(&staging),
                "{line} is not at {staging}"
            );
        }
    }

    #[test]
    fn version_comparison_is_numeric() {
        assert!(version_at_least("1.26.8", "1.24.0"));
        assert!(version_at_least("1.24", "1.24.0"));
        assert!(version_at_least("1.25rc1", "1.24.0"));
        assert!(version_at_least("1.24.0", "1.24.0"));
        assert!(!version_at_least("1.19.8", "1.24.0"));
        assert!(version_at_least("1.100", "1.24.0"));
    }

    #[test]
    fn missing_binaries_are_named() {
        let dir = std::env::temp_dir().join("mesh-no-such-bin-dir");
        let err = Binaries::in_dir(dir).expect_err("empty dir");
        let msg = err.to_string();
        assert!(
            msg.contains("kube-apiserver") && msg.contains("mesh k8s build"),
            "{msg}"
        );
    }

    #[test]
    fn ldflags_stamp_the_minor_version() {
        assert!(ldflags().contains("gitMinor=34"), "{}", ldflags());
    }
}
