//! `mesh-controller metrics-api` as a process: it says ready only once
//! viz's Prometheus has answered it (what `mesh viz check` reads as
//! "metrics-api is running and queries Prometheus"), answers
//! `linkerd2.viz.Api` on its gRPC port, and stops within its grace period
//! on SIGTERM.

mod support;

use std::process::Stdio;
use std::time::Duration;

use mesh_clusters::testing::shared_cluster;
use mesh_viz::metrics_api::grpc::Client;
use mesh_viz::metrics_api::proto::CheckStatus;
use support::{admin_get, first_ready_answer, free_addr, stop_with_sigterm, wait_ready};

#[tokio::test]
async fn the_metrics_api_is_ready_once_prometheus_answers_and_stops_on_sigterm() {
    let cluster = shared_cluster().await;
    let (admin, listen, prometheus_addr) = (free_addr(), free_addr(), free_addr());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mesh-controller"))
        .arg("metrics-api")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .arg(format!("--listen={listen}"))
        .arg(format!("--admin-listen={admin}"))
        .arg(format!("--prometheus-url=http://{prometheus_addr}"))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    // Alive, but not ready: nothing answers where Prometheus should be.
    let answered = first_ready_answer(admin).await;
    assert_eq!(
        answered.map(|(status, _)| status),
        Some(503),
        "ready without a Prometheus"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        admin_get(admin, "/ready").await.map(|(status, _)| status),
        Some(503),
        "still not ready while Prometheus is missing"
    );

    let prometheus = mesh_clusters::prometheus::Server::start(
        "global:\n  scrape_interval: 1h\n",
        prometheus_addr,
        None,
    )
    .unwrap_or_else(|e| panic!("this test needs a Prometheus server: {e:#}"));
    prometheus.wait_ready().await.expect("Prometheus ready");
    assert!(
        wait_ready(admin, Duration::from_secs(30)).await,
        "the metrics-api never said ready once Prometheus answered"
    );
    let mut api = Client::connect(&format!("http://{listen}"))
        .await
        .expect("connect to the metrics-api");
    let check = api.self_check().await.expect("SelfCheck");
    assert_eq!(
        check.results.first().map(|r| r.status),
        Some(CheckStatus::Ok as i32),
        "{check:?}"
    );
    stop_with_sigterm(&mut child).await;
}
