//! The demo app as a client sees it: a real process on a real port.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

struct Demo {
    _child: Child,
    port: u16,
}

async fn start(env: &[(&str, &str)], args: &[&str]) -> Demo {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_mesh-podinfo"))
        .arg(format!("--port={port}"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("mesh-podinfo starts");
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Demo {
                _child: child,
                port,
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("mesh-podinfo did not listen on port {port} within 5 s");
}

/// One HTTP/1.1 request; returns the status and the body.
async fn get(demo: &Demo, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", demo.port))
        .await
        .expect("connect");
    stream
        .write_all(
            format!("{method} {path} HTTP/1.1\r\nhost: podinfo\r\nx-probe: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{body:?} is not JSON: {e}"))
}

#[tokio::test]
async fn answers_like_podinfo() {
    let demo = start(
        &[("PODINFO_UI_MESSAGE", "hello from west")],
        &["--level=info", "--port-metrics=9797"],
    )
    .await;
    let (status, body) = get(&demo, "GET", "/").await;
    assert_eq!(status, 200);
    let info = json(&body);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert_eq!(info["hostname"], hostname.trim());
    assert_eq!(info["message"], "hello from west");
    assert!(info["version"].is_string());

    assert_eq!(
        get(&demo, "GET", "/healthz").await,
        (200, "{\"status\":\"OK\"}\n".into())
    );
    assert_eq!(get(&demo, "GET", "/readyz").await.0, 200);
    let (status, body) = get(&demo, "GET", "/status/418").await;
    assert_eq!((status, json(&body)["status"].as_u64()), (418, Some(418)));
    assert_eq!(get(&demo, "GET", "/status/abc").await.0, 400);
    let (status, body) = get(&demo, "GET", "/delay/1").await;
    assert_eq!((status, json(&body)["delay"].as_u64()), (200, Some(1)));
    let (_, body) = get(&demo, "GET", "/env").await;
    assert!(
        json(&body)
            .as_array()
            .expect("a list")
            .iter()
            .any(|v| v == "PODINFO_UI_MESSAGE=hello from west"),
        "{body}"
    );
    let (_, body) = get(&demo, "GET", "/headers").await;
    assert_eq!(json(&body)["x-probe"][0], "1");
    assert_eq!(get(&demo, "GET", "/nowhere").await.0, 404);

    assert_eq!(get(&demo, "POST", "/readyz/disable").await.0, 202);
    assert_eq!(get(&demo, "GET", "/readyz").await.0, 503);
    assert_eq!(get(&demo, "POST", "/readyz/enable").await.0, 202);
    assert_eq!(get(&demo, "GET", "/readyz").await.0, 200);
}

#[tokio::test]
async fn an_error_rate_fails_that_share_of_requests_but_not_probes() {
    let demo = start(&[("MESH_DEMO_ERROR_RATE", "0.25")], &[]).await;
    let mut failed = 0;
    for _ in 0..40 {
        let (status, _) = get(&demo, "GET", "/").await;
        assert!(status == 200 || status == 500, "{status}");
        failed += usize::from(status == 500);
        assert_eq!(
            get(&demo, "GET", "/readyz").await.0,
            200,
            "probes never fail"
        );
    }
    assert_eq!(failed, 10, "a quarter of 40 requests");
}

#[tokio::test]
async fn a_delay_slows_every_answer() {
    let demo = start(&[("MESH_DEMO_DELAY", "300ms")], &[]).await;
    let started = tokio::time::Instant::now();
    assert_eq!(get(&demo, "GET", "/").await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn serves_http2_with_prior_knowledge() {
    let demo = start(&[], &[]).await;
    let stream = TcpStream::connect(("127.0.0.1", demo.port))
        .await
        .expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    let request = http::Request::get("http://podinfo/status/503")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), 503);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(json(&String::from_utf8_lossy(&body))["status"], 503);
}

/// gRPC health checks on the HTTP port, through the faults: with an error
/// rate of 0.5, the load generator's `--grpc` mode sees half `UNAVAILABLE`
/// (14) and half `OK` (0), each with its code.
#[tokio::test]
async fn grpc_health_checks_fail_with_unavailable_at_the_error_rate() {
    let demo = start(&[("MESH_DEMO_ERROR_RATE", "0.5")], &[]).await;
    let load = Command::new(env!("CARGO_BIN_EXE_mesh-podinfo"))
        .args(["load", "--grpc", "--rps", "20"])
        .arg(format!("http://127.0.0.1:{}/", demo.port))
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the load starts");
    let mut lines = tokio::io::BufReader::new(load.stdout.expect("stdout")).lines();
    let mut output = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(3500);
    while let Ok(Ok(Some(line))) = tokio::time::timeout_at(deadline, lines.next_line()).await {
        output.push_str(&line);
        output.push('\n');
    }
    let seconds = mesh_podinfo::report::LoadSecond::parse_lines(&output);
    assert!(seconds.len() >= 2, "load lines: {output}");
    let count = |code: &str| -> u64 {
        seconds
            .iter()
            .map(|s| s.codes.get(code).copied().unwrap_or(0))
            .sum()
    };
    let (ok, unavailable) = (count("grpc-0"), count("grpc-14"));
    assert!(ok >= 10 && ok.abs_diff(unavailable) <= 1, "{output}");
    let failed: u64 = seconds.iter().map(|s| s.failed).sum();
    assert_eq!(
        failed, unavailable,
        "UNAVAILABLE counts as failed: {output}"
    );
}

#[tokio::test]
async fn bad_settings_exit_with_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_mesh-podinfo"))
        .env("MESH_DEMO_ERROR_RATE", "lots")
        .output()
        .await
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("MESH_DEMO_ERROR_RATE=\"lots\""), "{stderr}");
}

#[tokio::test]
async fn podcli_checks_like_podinfos_probes() {
    let demo = start(&[], &[]).await;
    let podcli = |target: String| async move {
        Command::new(env!("CARGO_BIN_EXE_mesh-podinfo"))
            .args(["podcli", "check", "http", &target])
            .stderr(Stdio::null())
            .status()
            .await
            .expect("podcli runs")
            .code()
    };
    assert_eq!(
        podcli(format!("localhost:{}/readyz", demo.port)).await,
        Some(0)
    );
    assert_eq!(get(&demo, "POST", "/readyz/disable").await.0, 202);
    assert_eq!(
        podcli(format!("localhost:{}/readyz", demo.port)).await,
        Some(1)
    );
    assert_eq!(
        podcli("localhost:1/readyz".into()).await,
        Some(1),
        "nothing listens"
    );
}
