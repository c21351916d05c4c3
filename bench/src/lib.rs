//! What the benchmarks share: percentiles of sorted latencies, what a
//! process costs (CPU seconds, resident memory) read from `/proc`, an
//! open-loop HTTP/1.1 load through the proxy harness ([`http_load`]), and a
//! real kube-apiserver to run controllers against ([`ApiServer`]), and the
//! heap allocations a process makes, counted from outside it
//! ([`allocations`]).

pub mod allocations;

use std::time::Duration;

/// The `p` (0–1) percentile of `sorted` latencies (nearest rank); zero
/// when there are none.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p.clamp(0.0, 1.0)).round() as usize;
    sorted[index]
}

/// GETs of `url` at `rate` per second for `duration` from the harness's
/// client pod, open loop (each request starts on schedule; its latency
/// counts from then): sorted latencies, and how many were not a 200.
pub async fn http_load(
    mesh: &mesh_test_util::Mesh,
    url: &'static str,
    rate: u32,
    duration: Duration,
) -> (Vec<Duration>, usize) {
    mesh.client
        .run(async move {
            let client = mesh_test_util::http_client();
            let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
            let start = tokio::time::Instant::now();
            let slow = slow_request_threshold();
            let mut tasks = tokio::task::JoinSet::new();
            let mut i = 0u32;
            while start.elapsed() < duration {
                let due = start + interval * i;
                tokio::time::sleep_until(due).await;
                let client = client.clone();
                tasks.spawn(async move {
                    let req = http::Request::get(url)
                        .body(Default::default())
                        .expect("request");
                    let ok = matches!(mesh_test_util::request(&client, req).await, Ok((200, _)));
                    let latency = due.elapsed();
                    if slow.is_some_and(|slow| latency > slow) {
                        eprintln!(
                            "slow request: sent at {:.3} s, {:.3} ms",
                            (due - start).as_secs_f64(),
                            ms(latency)
                        );
                    }
                    (latency, ok)
                });
                i += 1;
            }
            let mut latencies = Vec::new();
            let mut errors = 0;
            while let Some(Ok((latency, ok))) = tasks.join_next().await {
                latencies.push(latency);
                errors += usize::from(!ok);
            }
            latencies.sort();
            (latencies, errors)
        })
        .await
}

/// `MESH_BENCH_SLOW_MS`: the latency over which [`http_load`] prints a
/// request with the time it was sent, to see when the tail happens.
fn slow_request_threshold() -> Option<Duration> {
    let ms: f64 = std::env::var("MESH_BENCH_SLOW_MS").ok()?.parse().ok()?;
    Some(Duration::from_secs_f64(ms / 1000.0))
}

/// Opens a controller's watch (`what`, for errors), trying again for up
/// to 30 s while the controller has not yet taken in what it names.
pub async fn open_watch<T, F, Fut>(what: &str, mut open: F) -> anyhow::Result<tonic::Streaming<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match open().await {
            Ok(response) => return Ok(response.into_inner()),
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => anyhow::bail!("{what}: {status}"),
        }
    }
}

/// The next message of a watch, within 10 s.
pub async fn next_update<T>(stream: &mut tonic::Streaming<T>) -> anyhow::Result<T> {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .map_err(|_| anyhow::anyhow!("no update within 10 s"))??
        .ok_or_else(|| anyhow::anyhow!("the stream ended"))
}

/// `d` in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The CPU seconds (user and system) process `pid` has used.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The fields after the command name, which may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

pub use mesh_test_util::rss_mib;

/// A real kube-apiserver (with etcd) on this host, mesh's CRDs installed,
/// and a client for it; it stops when the value is dropped.
pub struct ApiServer {
    /// A client for it.
    pub client: kube::Client,
    plane: mesh_clusters::ControlPlane,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer").finish_non_exhaustive()
    }
}

impl ApiServer {
    /// Stops it, gracefully.
    pub async fn stop(self) {
        self.plane.stop().await;
    }

    /// Its kubeconfig.
    pub fn kubeconfig(&self) -> std::path::PathBuf {
        self.plane.kubeconfig().to_path_buf()
    }

    /// Starts one, with `namespaces` created.
    pub async fn start(namespaces: &[&str]) -> anyhow::Result<Self> {
        let binaries = mesh_clusters::Binaries::locate()?;
        let dir = tempfile::tempdir()?;
        let plane = mesh_clusters::ControlPlane::start(
            &binaries,
            &dir.path().join("c"),
            mesh_clusters::ControlPlaneConfig::default(),
        )
        .await?;
        let client = plane.client().await?;
        for ns in namespaces {
            mesh_clusters::testing::ensure_namespace(&client, ns).await;
        }
        mesh_clusters::testing::ensure_crds(&client, mesh_api::crds::all()).await;
        Ok(Self {
            client,
            plane,
            _dir: dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sorted, 0.5), Duration::from_millis(51));
        assert_eq!(percentile(&sorted, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&sorted, 1.0), Duration::from_millis(100));
        assert_eq!(percentile(&[], 0.99), Duration::ZERO);
    }

    #[test]
    fn this_process_uses_memory_and_cpu() {
        let pid = std::process::id();
        // Enough work to show up in the CPU counters (which tick at 10 ms).
        let mut sum = 0u64;
        for i in 0..200_000_000u64 {
            sum = std::hint::black_box(sum.wrapping_add(i));
        }
        assert!(rss_mib(pid) > 1.0);
        assert!(cpu_seconds(pid) > 0.0);
    }
}
