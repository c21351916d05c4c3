//! What QUIC's own view of each path to or from a gateway says, as
//! metrics: the round trip it measures, the congestion window it allows
//! itself, the packets it sent and lost and the congestion events it
//! reacted to. These are what explain a slow cross-cluster transfer (a
//! loss-based controller shrinking its window at every random loss, a
//! window sized for a round trip the path no longer has), and neither
//! end's TCP counters nor the request metrics show them.
//!
//! Each connection is sampled every [`SAMPLE_EVERY`] and once more when it
//! closes; the labels are only `direction` (`outbound`: a proxy's
//! connections to gateways, `inbound`: a gateway's from proxies), so a
//! gateway with thousands of clients exports a handful of series.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::DirectionLabels;

/// How often an open connection's path is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Round-trip buckets (seconds): loopback to a far-away region.
const RTT_BUCKETS: [f64; 12] = [
    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0,
];

/// The path metrics of a proxy's QUIC connections.
#[derive(Debug, Clone)]
pub struct PathMetrics {
    rtt: Family<DirectionLabels, Histogram>,
    congestion_window: Family<DirectionLabels, Gauge>,
    sent_packets: Family<DirectionLabels, Counter>,
    lost_packets: Family<DirectionLabels, Counter>,
    lost_bytes: Family<DirectionLabels, Counter>,
    congestion_events: Family<DirectionLabels, Counter>,
}

impl Default for PathMetrics {
    fn default() -> Self {
        Self {
            rtt: Family::new_with_constructor(|| Histogram::new(RTT_BUCKETS)),
            congestion_window: Family::default(),
            sent_packets: Family::default(),
            lost_packets: Family::default(),
            lost_bytes: Family::default(),
            congestion_events: Family::default(),
        }
    }
}

impl PathMetrics {
    /// Registers the `quic_path_*` metrics.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "quic_path_rtt_seconds",
            "Smoothed round trip of each QUIC connection, sampled every second",
            metrics.rtt.clone(),
        );
        registry.register(
            "quic_path_congestion_window_bytes",
            "Congestion windows of the open QUIC connections, summed",
            metrics.congestion_window.clone(),
        );
        registry.register(
            "quic_path_sent_packets",
            "Packets sent on QUIC connections",
            metrics.sent_packets.clone(),
        );
        registry.register(
            "quic_path_lost_packets",
            "Packets QUIC declared lost",
            metrics.lost_packets.clone(),
        );
        registry.register(
            "quic_path_lost_bytes",
            "Bytes in packets QUIC declared lost",
            metrics.lost_bytes.clone(),
        );
        registry.register(
            "quic_path_congestion_events",
            "Times a QUIC connection's congestion controller reacted to loss or congestion marks",
            metrics.congestion_events.clone(),
        );
        metrics
    }

    /// Samples `connection` every [`SAMPLE_EVERY`] until it closes, on its
    /// own task.
    pub fn follow(&self, connection: quinn::Connection, direction: &'static str) {
        tokio::spawn(self.clone().sample_until_closed(connection, direction));
    }

    async fn sample_until_closed(self, connection: quinn::Connection, direction: &'static str) {
        let labels = DirectionLabels { direction };
        let mut last = quinn::PathStats::default();
        let mut every = tokio::time::interval(SAMPLE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let closed = tokio::select! {
                _ = every.tick() => false,
                _ = connection.closed() => true,
            };
            let now = connection.stats().path;
            self.add(&labels, &last, &now, closed);
            if closed {
                return;
            }
            last = now;
        }
    }

    /// Adds what changed from `last` to `now`; the window leaves the sum
    /// when the connection has `closed`.
    fn add(
        &self,
        labels: &DirectionLabels,
        last: &quinn::PathStats,
        now: &quinn::PathStats,
        closed: bool,
    ) {
        let delta = |now: u64, last: u64| now.saturating_sub(last);
        self.sent_packets
            .get_or_create(labels)
            .inc_by(delta(now.sent_packets, last.sent_packets));
        self.lost_packets
            .get_or_create(labels)
            .inc_by(delta(now.lost_packets, last.lost_packets));
        self.lost_bytes
            .get_or_create(labels)
            .inc_by(delta(now.lost_bytes, last.lost_bytes));
        self.congestion_events
            .get_or_create(labels)
            .inc_by(delta(now.congestion_events, last.congestion_events));
        let window = |stats: &quinn::PathStats| i64::try_from(stats.cwnd).unwrap_or(i64::MAX);
        let held = if closed { 0 } else { window(now) };
        self.congestion_window
            .get_or_create(labels)
            .inc_by(held - window(last));
        if !closed {
            self.rtt
                .get_or_create(labels)
                .observe(now.rtt.as_secs_f64());
        }
    }
}
