//! The UDP sockets QUIC runs on, with buffers sized for a fast path across
//! a WAN.
//!
//! The kernel's default receive buffer (`net.core.rmem_default`, 208 KiB
//! on most nodes) holds a few milliseconds of a 30 MiB/s transfer: a
//! proxy busy for that long loses what arrives next, and QUIC counts the
//! loss as congestion. Measured in `gateway-bench`: at 0 % loss on the
//! link, 41 % of a gateway's packets were dropped in the client's socket
//! with BBR (1 % with Cubic), and QUIC moved 0.45× what TCP moved. Each
//! socket asks for [`WANTED_BUFFER_BYTES`] each way; the kernel grants at
//! most `net.core.rmem_max` / `wmem_max` (node settings a pod cannot
//! change), so what it got is exported (`quic_socket_*_buffer_bytes`) and
//! a shortfall is logged once, naming the setting to raise.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::socket::{getsockopt, setsockopt, sockopt};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::DirectionLabels;

/// The buffer a QUIC socket wants each way, as the kernel reports it (it
/// doubles what it grants, for its own bookkeeping): a request of half
/// this, which a `net.core.rmem_max` of 4 MiB allows. About 250 ms of
/// 30 MiB/s.
pub const WANTED_BUFFER_BYTES: usize = mesh_api::ports::QUIC_SOCKET_BUFFER_BYTES;

/// Whether a shortfall was logged already (once per process).
static SHORTFALL_LOGGED: AtomicBool = AtomicBool::new(false);

/// The buffers the kernel granted QUIC's sockets.
#[derive(Debug, Clone, Default)]
pub struct SocketMetrics {
    receive: Family<DirectionLabels, Gauge>,
    send: Family<DirectionLabels, Gauge>,
}

impl SocketMetrics {
    /// Registers `quic_socket_receive_buffer_bytes` and
    /// `quic_socket_send_buffer_bytes`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "quic_socket_receive_buffer_bytes",
            "Receive buffer the kernel granted the newest QUIC socket (capped by net.core.rmem_max)",
            metrics.receive.clone(),
        );
        registry.register(
            "quic_socket_send_buffer_bytes",
            "Send buffer the kernel granted the newest QUIC socket (capped by net.core.wmem_max)",
            metrics.send.clone(),
        );
        metrics
    }

    /// A UDP socket on `addr` with the largest buffers the kernel grants
    /// up to [`WANTED_BUFFER_BYTES`], recorded under `direction`.
    pub fn bind(&self, addr: SocketAddr, direction: &'static str) -> io::Result<UdpSocket> {
        let socket = UdpSocket::bind(addr)?;
        // Refused or capped requests leave what the kernel allows; what it
        // granted is read back below.
        let _ = setsockopt(&socket, sockopt::RcvBuf, &(WANTED_BUFFER_BYTES / 2));
        let _ = setsockopt(&socket, sockopt::SndBuf, &(WANTED_BUFFER_BYTES / 2));
        let receive = getsockopt(&socket, sockopt::RcvBuf).unwrap_or(0);
        let send = getsockopt(&socket, sockopt::SndBuf).unwrap_or(0);
        let labels = DirectionLabels { direction };
        let gauge = |bytes: usize| i64::try_from(bytes).unwrap_or(i64::MAX);
        self.receive.get_or_create(&labels).set(gauge(receive));
        self.send.get_or_create(&labels).set(gauge(send));
        if (receive < WANTED_BUFFER_BYTES || send < WANTED_BUFFER_BYTES)
            && !SHORTFALL_LOGGED.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                receive_kib = receive / 1024,
                send_kib = send / 1024,
                wanted_kib = WANTED_BUFFER_BYTES / 1024,
                "QUIC's UDP buffers are smaller than wanted: a fast transfer from another cluster loses packets in them; raise net.core.rmem_max and net.core.wmem_max on the nodes to at least {}",
                WANTED_BUFFER_BYTES / 2
            );
        }
        Ok(socket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sysctl(name: &str) -> usize {
        let path = format!("/proc/sys/net/core/{name}");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {path}: {e}"))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// A QUIC socket gets as much buffer as the node allows up to what it
    /// wants, not the kernel's default (a few milliseconds of a fast
    /// transfer, lost whenever the proxy is busy that long), and exports
    /// what it got.
    #[test]
    fn a_quic_socket_gets_the_buffers_the_node_allows_and_says_so() {
        let mut registry = Registry::default();
        let metrics = SocketMetrics::register(&mut registry);
        let socket = metrics
            .bind("127.0.0.1:0".parse().expect("addr"), "outbound")
            .expect("bound");
        // The kernel doubles what it grants, up to twice its maximum.
        let expected = |max: usize| WANTED_BUFFER_BYTES.min(2 * max);
        let receive = getsockopt(&socket, sockopt::RcvBuf).expect("SO_RCVBUF");
        let send = getsockopt(&socket, sockopt::SndBuf).expect("SO_SNDBUF");
        assert_eq!(receive, expected(sysctl("rmem_max")));
        assert_eq!(send, expected(sysctl("wmem_max")));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains(&format!(
                "quic_socket_receive_buffer_bytes{{direction=\"outbound\"}} {receive}"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "quic_socket_send_buffer_bytes{{direction=\"outbound\"}} {send}"
            )),
            "{text}"
        );
    }
}
