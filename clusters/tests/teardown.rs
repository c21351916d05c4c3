//! A control plane leaves nothing behind (no process, port or directory)
//! however its owner ends: a clean stop, a dropped handle (an error or a
//! panic unwinding), a failed start, or the owner killed outright.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use mesh_clusters::process::live_processes_mentioning;
use mesh_clusters::{Binaries, ControlPlane, ControlPlaneConfig, ControlPlaneInfo};

fn binaries() -> Binaries {
    Binaries::locate().unwrap_or_else(|e| panic!("these tests need the Kubernetes binaries: {e}"))
}

fn config(name: &str) -> ControlPlaneConfig {
    ControlPlaneConfig {
        name: name.into(),
        ..ControlPlaneConfig::default()
    }
}

fn api_address(info: &ControlPlaneInfo) -> SocketAddr {
    info.server
        .trim_start_matches("https://")
        .parse()
        .unwrap_or_else(|e| panic!("API server URL {}: {e}", info.server))
}

/// Waits (up to 30 s, polling) until nothing of the cluster in `dir` is left.
async fn assert_gone(dir: &Path, api: SocketAddr) {
    let mut left = String::new();
    for _ in 0..300 {
        let processes = live_processes_mentioning(dir);
        let port_open = tokio::net::TcpStream::connect(api).await.is_ok();
        if processes.is_empty() && !port_open && !dir.exists() {
            return;
        }
        left = format!(
            "processes {processes:?}, API port open: {port_open}, directory exists: {}",
            dir.exists()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the cluster in {} left something behind: {left}",
        dir.display()
    );
}

#[tokio::test]
async fn stop_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("stop");
    let plane = ControlPlane::start(&binaries(), &dir, config("stop"))
        .await
        .expect("start");
    assert!(plane.rss_bytes() > 0);
    let api = api_address(plane.info());
    let dir = plane.info().dir.clone();
    assert!(!live_processes_mentioning(&dir).is_empty());
    plane.stop().await;
    assert_gone(&dir, api).await;
}

#[tokio::test]
async fn a_dropped_handle_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("drop");
    let plane = ControlPlane::start(&binaries(), &dir, config("drop"))
        .await
        .expect("start");
    let api = api_address(plane.info());
    let dir = plane.info().dir.clone();
    // A panic while holding the handle unwinds through this same destructor.
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _plane = plane;
        panic!("a test failing while it holds a control plane");
    }));
    assert!(unwound.is_err());
    assert_gone(&dir, api).await;
}

#[tokio::test]
async fn a_failed_start_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("bad");
    let bad = ControlPlaneConfig {
        service_cidr: "not-a-cidr".into(),
        ..config("bad")
    };
    let err = ControlPlane::start(&binaries(), &dir, bad)
        .await
        .expect_err("a bad CIDR cannot start");
    assert!(
        err.to_string().contains("not-a-cidr"),
        "the error names the field: {err}"
    );
    assert!(!dir.exists(), "{} was left behind", dir.display());
}

#[tokio::test]
async fn a_killed_owner_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("owned");
    // The owner stands in for a test runner that dies without any cleanup.
    let mut owner = tokio::process::Command::new("sleep")
        .arg("600")
        .kill_on_drop(true)
        .spawn()
        .expect("spawning an owner process");
    let owner_pid = owner.id().expect("owner pid");
    let plane = ControlPlane::start(&binaries(), &dir, config("owned"))
        .await
        .expect("start");
    let info = plane.hand_over(owner_pid).expect("hand over");
    let api = api_address(&info);
    // This process no longer owns it: it keeps running…
    assert!(mesh_clusters::control_plane::is_ready(&info.kubeconfig).await);
    // …until its owner is killed with no chance to clean up.
    owner.start_kill().expect("SIGKILL the owner");
    owner.wait().await.expect("reaping the owner");
    assert_gone(&info.dir, api).await;
}
