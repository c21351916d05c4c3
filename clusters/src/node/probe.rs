//! Probes as the kubelet runs them: HTTP GET (2xx/3xx succeed), TCP connect
//! and exec (exit 0 succeeds), each with its timeout, period and
//! success/failure thresholds. [`ProbeState`] is the pure threshold logic;
//! [`check`] does one probe against a pod.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The outcome the thresholds give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not yet decided (before the first result, or between thresholds).
    Unknown,
    /// Succeeding.
    Success,
    /// Failing.
    Failure,
}

/// Consecutive results against a probe's thresholds.
#[derive(Debug, Clone)]
pub struct ProbeState {
    success_threshold: i32,
    failure_threshold: i32,
    successes: i32,
    failures: i32,
    verdict: Verdict,
}

impl ProbeState {
    /// For `probe`, starting at `initial`.
    pub fn new(probe: &Probe, initial: Verdict) -> Self {
        Self {
            success_threshold: probe.success_threshold.unwrap_or(1).max(1),
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1),
            successes: 0,
            failures: 0,
            verdict: initial,
        }
    }

    /// Records a result and returns the verdict.
    pub fn record(&mut self, ok: bool) -> Verdict {
        if ok {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= self.success_threshold {
                self.verdict = Verdict::Success;
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= self.failure_threshold {
                self.verdict = Verdict::Failure;
            }
        }
        self.verdict
    }

    /// The current verdict.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }
}

/// The probe's timing: initial delay, period and timeout.
pub fn timing(probe: &Probe) -> (Duration, Duration, Duration) {
    let secs = |v: Option<i32>, default: i32| {
        Duration::from_secs(u64::try_from(v.unwrap_or(default).max(0)).unwrap_or(0))
    };
    (
        secs(probe.initial_delay_seconds, 0),
        secs(probe.period_seconds, 10).max(Duration::from_secs(1)),
        secs(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
    )
}

/// A named or numbered container port.
pub fn port_number(port: &IntOrString, container: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// Runs one probe against a pod at `pod_ip`; `exec` runs a command inside
/// the container's namespaces and says whether it exited 0.
pub async fn check<F, Fut>(probe: &Probe, container: &Container, pod_ip: IpAddr, exec: F) -> bool
where
    F: FnOnce(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let (_, _, timeout) = timing(probe);
    let attempt = async {
        if let Some(http) = &probe.http_get {
            let Some(port) = port_number(&http.port, container) else {
                return false;
            };
            let path = http.path.clone().unwrap_or_else(|| "/".into());
            let host = http
                .host
                .as_deref()
                .and_then(|h| h.parse::<IpAddr>().ok())
                .unwrap_or(pod_ip);
            let headers: Vec<(String, String)> = http
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect();
            http_get(SocketAddr::new(host, port), &path, &headers).await
        } else if let Some(tcp) = &probe.tcp_socket {
            let Some(port) = port_number(&tcp.port, container) else {
                return false;
            };
            tokio::net::TcpStream::connect(SocketAddr::new(pod_ip, port))
                .await
                .is_ok()
        } else if let Some(command) = probe.exec.as_ref().and_then(|e| e.command.clone()) {
            exec(command).await
        } else {
            // gRPC probes are not supported: say "not ready" rather than lie.
            false
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or(false)
}

/// A minimal HTTP/1.1 GET: succeeds on a 2xx or 3xx status line.
async fn http_get(addr: SocketAddr, path: &str, headers: &[(String, String)]) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.34\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    let mut read = 0;
    while read < head.len() {
        match stream.read(&mut head[read..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    let line = String::from_utf8_lossy(&head[..read]);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .is_some_and(|code| (200..400).contains(&code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_need_consecutive_results() {
        let probe = Probe {
            success_threshold: Some(2),
            failure_threshold: Some(3),
            ..Probe::default()
        };
        let mut state = ProbeState::new(&probe, Verdict::Unknown);
        assert_eq!(state.record(true), Verdict::Unknown);
        assert_eq!(state.record(true), Verdict::Success);
        assert_eq!(state.record(false), Verdict::Success);
        assert_eq!(state.record(false), Verdict::Success);
        assert_eq!(
            state.record(true),
            Verdict::Success,
            "a success resets failures"
        );
        for _ in 0..2 {
            state.record(false);
        }
        assert_eq!(state.record(false), Verdict::Failure);
        assert_eq!(state.record(true), Verdict::Failure);
        assert_eq!(state.record(true), Verdict::Success);
    }

    #[tokio::test]
    async fn http_probes_accept_2xx_and_3xx_only() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                let status = if req.starts_with("GET /ok") {
                    "200 OK"
                } else {
                    "503 Unavailable"
                };
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        assert!(http_get(addr, "/ok", &[]).await);
        assert!(!http_get(addr, "/bad", &[]).await);
        let closed = SocketAddr::new(addr.ip(), 1);
        assert!(!http_get(closed, "/", &[]).await);
    }
}
