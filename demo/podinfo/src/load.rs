//! `mesh-podinfo load [--rps N] [--timeout D] [--grpc] URL`: a steady load
//! generator for the failover demo and tests. It starts `--rps` GETs a
//! second (each on its own connection, `connection: close`, so every
//! request is balanced afresh), and prints one JSON line per second: how
//! many answered, how many failed (a 5xx, an error or a timeout), the
//! status codes, and which podinfo pod answered (`hostname` of its JSON).
//! With `--grpc` each request is instead a gRPC health check over HTTP/2
//! (its own connection too), counted by its gRPC status (`grpc-0`,
//! `grpc-14`, …): anything but 0 fails.

use std::time::Duration;

use mesh_podinfo::report::LoadSecond;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Runs `load <args>`; returns the exit code.
pub async fn run(args: &[String]) -> i32 {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let rps = crate::podcli::flag(&words, "--rps")
        .and_then(|r| r.parse::<u32>().ok())
        .unwrap_or(50)
        .max(1);
    let timeout = crate::podcli::flag(&words, "--timeout")
        .and_then(|t| humantime::parse_duration(t).ok())
        .unwrap_or(Duration::from_secs(5));
    let Some(url) = words.iter().rev().find(|w| w.starts_with("http://")) else {
        eprintln!("usage: load [--rps N] [--timeout 5s] [--grpc] http://host:port/path");
        return 2;
    };
    let target = url.trim_start_matches("http://");
    let (authority, path) = match target.find('/') {
        Some(slash) => (target[..slash].to_owned(), target[slash..].to_owned()),
        None => (target.to_owned(), "/".to_owned()),
    };
    let grpc = words.contains(&"--grpc");
    let (tx, mut rx) = mpsc::unbounded_channel::<(Option<Answer>, Option<String>)>();
    let started = tokio::time::Instant::now();
    let generator = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(1) / rps);
        loop {
            ticks.tick().await;
            let (tx, authority, path) = (tx.clone(), authority.clone(), path.clone());
            tokio::spawn(async move {
                let outcome = if grpc {
                    tokio::time::timeout(timeout, grpc_check(&authority))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .map(|code| (Answer::Grpc(code), None))
                } else {
                    tokio::time::timeout(timeout, get(&authority, &path))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .map(|(status, hostname)| (Answer::Http(status), hostname))
                };
                let _ = match outcome {
                    Some((answer, hostname)) => tx.send((Some(answer), hostname)),
                    None => tx.send((None, None)),
                };
            });
        }
    });
    let mut second = LoadSecond::default();
    let mut report =
        tokio::time::interval_at(started + Duration::from_secs(1), Duration::from_secs(1));
    loop {
        tokio::select! {
            outcome = rx.recv() => {
                let Some((status, hostname)) = outcome else { break };
                let code = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
                if status.is_some_and(|s| s.ok()) {
                    second.ok += 1;
                } else {
                    second.failed += 1;
                }
                *second.codes.entry(code).or_default() += 1;
                if let Some(host) = hostname {
                    *second.answered_by.entry(host).or_default() += 1;
                }
            }
            _ = report.tick() => {
                second.second = started.elapsed().as_secs();
                println!("{}", serde_json::to_string(&second).unwrap_or_default());
                second = LoadSecond::default();
            }
        }
    }
    generator.abort();
    0
}

/// How a request was answered.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// An HTTP status.
    Http(u16),
    /// A gRPC status.
    Grpc(u32),
}

impl Answer {
    fn ok(self) -> bool {
        match self {
            Self::Http(status) => status < 500,
            Self::Grpc(code) => code == 0,
        }
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http(status) => write!(f, "{status}"),
            Self::Grpc(code) => write!(f, "grpc-{code}"),
        }
    }
}

/// One gRPC health check on its own HTTP/2 connection: its gRPC status
/// (from the trailers, or the headers of a trailers-only answer).
async fn grpc_check(authority: &str) -> anyhow::Result<u32> {
    use http_body_util::BodyExt;
    let stream = TcpStream::connect(authority).await?;
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await?;
    tokio::spawn(connection);
    // An empty HealthCheckRequest, framed.
    let request = http::Request::post(format!("http://{authority}{}", crate::grpc::HEALTH_CHECK))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(&[
            0, 0, 0, 0, 0,
        ])))?;
    let response = sender.send_request(request).await?;
    let status = |headers: &http::HeaderMap| {
        headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok())
    };
    if let Some(code) = status(response.headers()) {
        return Ok(code);
    }
    if !response.status().is_success() {
        anyhow::bail!("HTTP {}", response.status());
    }
    let collected = response.into_body().collect().await?;
    collected
        .trailers()
        .and_then(status)
        .ok_or_else(|| anyhow::anyhow!("no grpc-status"))
}

/// One GET: the status and the answering podinfo's hostname.
async fn get(authority: &str, path: &str) -> std::io::Result<(u16, Option<String>)> {
    let mut stream = TcpStream::connect(authority).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: {authority}\r\nuser-agent: mesh-load\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP answer"))?;
    let hostname = text
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(body).ok())
        .and_then(|json| json["hostname"].as_str().map(str::to_owned));
    Ok((status, hostname))
}
