//! `failover-bench`: how fast traffic leaves a broken primary and what the
//! client sees, on the clusters `mesh demo` leaves up (west linked to east,
//! podinfo in both, the failover controller, the docs' TrafficSplit and a
//! client sending 50 GET/s in west, 20 ms WAN):
//!
//! 1. hard failure — every west podinfo pod answers 500 from one instant
//!    (`POST /chaos/errors/1` through the API server's pod proxy): time
//!    until east has at least 99 % of the weight, over `--runs` runs
//!    (min / median / max), and the client's failed GETs from the break
//!    until 5 s after the failover;
//! 2. brown-out — 30 % of answers are 500: the same;
//! 3. the hard failure without cross-backend retries (podinfo's
//!    ServiceProfile removed, so no GET is retryable): the client's errors;
//! 4. the baseline, Linkerd's rule (`failover.mesh.dev/use-success-rate:
//!    "false"`: readiness only): the same hard failure, watched for 30 s.
//!
//! Between runs the primary is healed and the bench waits until the split
//! is back on it. The split's hold and failback steps are shortened for
//! the run and put back at the end.
//!
//! Run: `target/release/mesh demo`, then `target/release/failover-bench
//! [--runs 20]` (`MESH_STATE_DIR` as for `mesh`).

use std::collections::BTreeMap;
use std::time::Duration;

use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use mesh_api::crds::traffic_split::TrafficSplit;
use mesh_podinfo::drive;
use mesh_podinfo::report::LoadSecond;
use tokio::time::Instant;

const NS: &str = "demo";
const RETRIES: &str = include_str!("../../../demo/podinfo-retries.yaml");

/// The split's annotations during the bench: back on the primary quickly.
const FAST_FAILBACK: [(&str, &str); 3] = [
    ("failover.mesh.dev/hold", "5s"),
    ("failover.mesh.dev/failback-steps", "100%"),
    ("failover.mesh.dev/failback-step-interval", "1s"),
];

struct Bench {
    west: kube::Client,
}

/// One run: how long the weights took to move, and the client's errors.
#[derive(Debug, Clone, Copy)]
struct Run {
    failover: Option<Duration>,
    requests: u64,
    failed: u64,
}

impl Bench {
    /// Sets the error share of every west podinfo pod, at once.
    async fn errors(&self, share: f64) -> anyhow::Result<()> {
        drive::break_pods(&self.west, NS, "app=podinfo", share).await
    }

    async fn weights(&self) -> anyhow::Result<Vec<u32>> {
        drive::split_weights(&self.west, NS, "podinfo").await
    }

    async fn annotate(&self, annotations: &[(&str, Option<&str>)]) -> anyhow::Result<()> {
        let map: serde_json::Map<String, serde_json::Value> = annotations
            .iter()
            .map(|(k, v)| {
                (
                    (*k).to_owned(),
                    v.map_or(serde_json::Value::Null, Into::into),
                )
            })
            .collect();
        Api::<TrafficSplit>::namespaced(self.west.clone(), NS)
            .patch(
                "podinfo",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"metadata": {"annotations": map}})),
            )
            .await?;
        Ok(())
    }

    /// The client's per-second lines so far.
    async fn client_seconds(&self) -> Vec<LoadSecond> {
        drive::load_seconds(&self.west, NS, "client", "main").await
    }

    /// Waits (up to `limit`) for the split to be back on the primary, and
    /// 3 more seconds so the client's lines are settled.
    async fn back_on_primary(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        while self.weights().await?.first() != Some(&100) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the split did not come back to the primary"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok(())
    }

    /// Breaks the primary with `share` errors, measures, heals it.
    async fn run(&self, share: f64, watch: Duration) -> anyhow::Result<Run> {
        let before = self.client_seconds().await.len();
        let broke = Instant::now();
        self.errors(share).await?;
        let mut failover = None;
        while broke.elapsed() < watch {
            if self.weights().await?.get(1).is_some_and(|w| *w >= 99) {
                failover = Some(broke.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let seconds = self.client_seconds().await;
        let after = seconds.get(before..).unwrap_or_default();
        let ok: u64 = after.iter().map(|s| s.ok).sum();
        let failed: u64 = after.iter().map(|s| s.failed).sum();
        self.errors(0.0).await?;
        self.back_on_primary(Duration::from_secs(120)).await?;
        Ok(Run {
            failover,
            requests: ok + failed,
            failed,
        })
    }

    async fn series(
        &self,
        what: &str,
        share: f64,
        runs: usize,
        watch: Duration,
    ) -> anyhow::Result<Vec<Run>> {
        let mut all = Vec::new();
        for i in 1..=runs {
            let run = self.run(share, watch).await?;
            eprintln!(
                "  {what} {i}/{runs}: failover {}, client {} failed of {}",
                run.failover
                    .map_or("never".into(), |d| format!("{:.2}s", d.as_secs_f64())),
                run.failed,
                run.requests
            );
            all.push(run);
        }
        Ok(all)
    }
}

fn summary(what: &str, runs: &[Run]) {
    let mut times: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.failover.map(|d| d.as_secs_f64()))
        .collect();
    times.sort_by(f64::total_cmp);
    let failed: u64 = runs.iter().map(|r| r.failed).sum();
    let requests: u64 = runs.iter().map(|r| r.requests).sum();
    let times = if times.is_empty() {
        "never failed over".to_owned()
    } else {
        format!(
            "failover min {:.2}s, median {:.2}s, max {:.2}s ({} of {} runs)",
            times[0],
            times[times.len() / 2],
            times[times.len() - 1],
            times.len(),
            runs.len()
        )
    };
    println!("{what:<44} {times}; client errors {failed} of {requests} requests");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let kubeconfig = mesh_clusters::local::pair_dir(&mesh_clusters::local::default_state_dir()?)
        .join("kubeconfig");
    let west = mesh_api::kube_client::client(Some(&kubeconfig), Some("west"))
        .await
        .map_err(|e| anyhow::anyhow!("{e}: run `mesh demo` first"))?;
    let bench = Bench { west };
    anyhow::ensure!(
        bench
            .weights()
            .await
            .map(|w| w.first() == Some(&100))
            .unwrap_or(false),
        "the demo's TrafficSplit demo/podinfo is not on its primary: run `mesh demo` first"
    );
    let fast: Vec<(&str, Option<&str>)> =
        FAST_FAILBACK.iter().map(|(k, v)| (*k, Some(*v))).collect();
    bench.annotate(&fast).await?;
    tokio::time::sleep(Duration::from_secs(12)).await;

    let mut results: BTreeMap<&str, Vec<Run>> = BTreeMap::new();
    let watch = Duration::from_secs(30);
    results.insert(
        "1 hard failure (100 % 500s)",
        bench.series("hard", 1.0, runs, watch).await?,
    );
    results.insert(
        "2 brown-out (30 % 500s)",
        bench.series("brown-out", 0.3, runs, watch).await?,
    );

    let profiles = Api::<kube::api::DynamicObject>::namespaced_with(
        bench.west.clone(),
        NS,
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "linkerd.io",
            "v1alpha2",
            "ServiceProfile",
        )),
    );
    let profile_name = format!("podinfo.{NS}.svc.cluster.local");
    profiles
        .delete(&profile_name, &DeleteParams::default())
        .await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let without = bench
        .series("hard, no retries", 1.0, runs.min(5), watch)
        .await;
    let profile: kube::api::DynamicObject =
        serde_saphyr::from_str(&RETRIES.replace("NAMESPACE", NS))?;
    profiles
        .patch(
            &profile_name,
            &PatchParams::apply("failover-bench").force(),
            &Patch::Apply(profile),
        )
        .await?;
    results.insert("3 hard failure, no cross-backend retries", without?);

    bench
        .annotate(&[("failover.mesh.dev/use-success-rate", Some("false"))])
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let baseline = bench.series("readiness only", 1.0, 1, watch).await;
    bench
        .annotate(&[("failover.mesh.dev/use-success-rate", None)])
        .await?;
    results.insert("4 baseline: readiness only (Linkerd's rule)", baseline?);

    let restore: Vec<(&str, Option<&str>)> =
        FAST_FAILBACK.iter().map(|(k, _)| (*k, None)).collect();
    bench.annotate(&restore).await?;
    println!();
    for (what, runs) in &results {
        summary(what, runs);
    }
    Ok(())
}
