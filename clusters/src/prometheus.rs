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

/// A Prometheus server of the tests and benchmarks: the binary
/// [`locate`] finds, with `config` as its configuration and a throw-away
/// data directory, listening on `listen`, in network namespace `netns`
/// when one is named (entered with `nsenter`); stopped when dropped.
#[derive(Debug)]
pub struct Server {
    child: std::process::Child,
    /// `http://ADDRESS:PORT`.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts one; it answers at [`Server::url`] shortly after (see
    /// [`Server::wait_ready`]).
    pub fn start(
        config: &str,
        listen: std::net::SocketAddr,
        netns: Option<&str>,
    ) -> anyhow::Result<Self> {
        let binary = locate()?;
        let dir = tempfile::tempdir()?;
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config)?;
        let mut command = match netns {
            Some(path) => {
                let mut command = std::process::Command::new("nsenter");
                command.arg(format!("--net={path}")).arg(&binary);
                command
            }
            None => std::process::Command::new(&binary),
        };
        let child = command
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {}: {e}", binary.display()))?;
        Ok(Self {
            child,
            url: format!("http://{listen}"),
            _dir: dir,
        })
    }

    /// Waits until it says it is ready (`/-/ready`), for at most a minute;
    /// only for a server on this network namespace.
    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let authority = self.url.trim_start_matches("http://").to_owned();
        let ready = || async {
            let mut stream = tokio::net::TcpStream::connect(&authority).await.ok()?;
            stream
                .write_all(b"GET /-/ready HTTP/1.0\r\n\r\n")
                .await
                .ok()?;
            let mut head = [0; 12];
            stream.read_exact(&mut head).await.ok()?;
            head.ends_with(b" 200").then_some(())
        };
        for _ in 0..600 {
            if ready().await.is_some() {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        anyhow::bail!("Prometheus at {} was not ready within a minute", self.url)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
