//! Probing a gateway as Linkerd's service mirror does: an HTTP GET of the
//! probe path on the probe port, bounded by the probe timeout; alive until
//! `failureThreshold` probes in a row fail, alive again at the first one
//! that succeeds. [`spawn_prober`] runs it every probe period on its own
//! task (a slow probe never holds up mirroring), resolving the gateway's
//! host names afresh each time so a moved gateway is followed.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::link::LinkSettings;
use crate::metrics::MirrorMetrics;

/// What the probes found out about the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayHealth {
    /// The gateway's addresses at the last probe, sorted.
    pub addresses: Vec<IpAddr>,
    /// Whether it counts as alive.
    pub alive: bool,
}

/// Probes the gateway `settings` names, every probe period and at once
/// when the settings change; each change of [`GatewayHealth`] is published
/// on the returned channel and pokes `changed`. Stops when `settings`'
/// sender is dropped.
pub fn spawn_prober(
    mut settings: watch::Receiver<Option<LinkSettings>>,
    metrics: MirrorMetrics,
    changed: Arc<Notify>,
) -> watch::Receiver<Option<GatewayHealth>> {
    let (health_tx, health_rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut liveness: Option<Liveness> = None;
        loop {
            let Some(link) = settings.borrow_and_update().clone() else {
                if settings.changed().await.is_err() {
                    return;
                }
                continue;
            };
            let liveness = liveness.get_or_insert_with(|| Liveness::new(link.failure_threshold));
            liveness.set_threshold(link.failure_threshold);
            let addresses = link.resolve_gateway().await;
            let (ok, took) = match addresses.first() {
                Some(ip) => probe(*ip, link.probe_port, &link.probe_path, link.probe_timeout).await,
                None => (false, Duration::ZERO),
            };
            let alive = liveness.record(ok);
            metrics.record_probe(&link.cluster, ok, took, alive);
            let health = GatewayHealth { addresses, alive };
            let moved = health_tx.send_if_modified(|current| {
                let modified = current.as_ref() != Some(&health);
                *current = Some(health);
                modified
            });
            if moved {
                changed.notify_one();
            }
            tokio::select! {
                () = tokio::time::sleep(link.probe_period) => {}
                result = settings.changed() => if result.is_err() { return },
            }
        }
    });
    health_rx
}

/// One probe: whether `http://<ip>:<port><path>` answered 200 within
/// `timeout`, and how long it took.
pub async fn probe(ip: IpAddr, port: u16, path: &str, timeout: Duration) -> (bool, Duration) {
    let started = Instant::now();
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(SocketAddr::new(ip, port)).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {ip}:{port}\r\n\r\n").as_bytes())
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        Ok::<_, std::io::Error>(head.starts_with(b"HTTP/1.") && &head[9..12] == b"200")
    };
    let ok = matches!(tokio::time::timeout(timeout, attempt).await, Ok(Ok(true)));
    (ok, started.elapsed())
}

/// Consecutive failures against the threshold.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    failures: u32,
    threshold: u32,
}

impl Liveness {
    /// Alive until `threshold` failures in a row.
    pub fn new(threshold: u32) -> Self {
        Self {
            failures: 0,
            threshold: threshold.max(1),
        }
    }

    /// Records a probe; returns whether the gateway counts as alive.
    pub fn record(&mut self, ok: bool) -> bool {
        self.failures = if ok {
            0
        } else {
            self.failures.saturating_add(1)
        };
        self.alive()
    }

    /// Whether the gateway counts as alive.
    pub fn alive(&self) -> bool {
        self.failures < self.threshold
    }

    /// Changes the threshold (a Link edit) without forgetting failures.
    pub fn set_threshold(&mut self, threshold: u32) {
        self.threshold = threshold.max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_is_down_after_the_threshold_and_up_at_the_first_success() {
        let mut liveness = Liveness::new(3);
        assert!(liveness.record(false) && liveness.record(false));
        assert!(!liveness.record(false), "third failure in a row");
        assert!(liveness.record(true));
    }

    #[tokio::test]
    async fn probes_get_the_path_and_want_200() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut stream, _) = listener.accept().await.expect("accept");
                let mut buf = [0u8; 256];
                let n = stream.read(&mut buf).await.expect("read");
                assert!(buf[..n].starts_with(b"GET /ready HTTP/1.0\r\n"));
                let _ = stream
                    .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        assert!(probe(ip, port, "/ready", Duration::from_secs(2)).await.0);
        assert!(!probe(ip, port, "/ready", Duration::from_secs(2)).await.0);
        assert!(
            !probe(ip, 1, "/ready", Duration::from_secs(2)).await.0,
            "nothing listens"
        );
    }
}
