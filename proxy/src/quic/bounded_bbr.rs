//! quinn's BBR with its congestion window bounded by what the path
//! delivered.
//!
//! quinn 0.11's BBR never leaves STARTUP on a connection that is limited by
//! its application or by flow control (an HTTP/2 stream between a proxy
//! and a gateway usually is), and in STARTUP it adds every acknowledged
//! byte to its window (quinn-rs/quinn#2798): the window ends up the size of
//! everything sent so far (262 MB after a few seconds in `gateway-bench`),
//! pacing follows it, and the sender bursts far past what the path or the
//! receiver takes. Measured: 7 % of a gateway's packets lost at 0 % loss
//! on the link, 15 % at 2 %.
//!
//! [`BoundedBbr`] keeps BBR's model (a random loss does not shrink its
//! window) and caps its window at [`GAIN`] times the most the path
//! delivered in one minimum round trip over the last [`ROUNDS`] of them
//! (never below the initial window): in flight at most about two
//! bandwidth-delay products, as BBR's own steady state intends, and a
//! window that still doubles every round trip while the path keeps up.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::Arc;

use std::time::{Duration, Instant};

use quinn::congestion::{BbrConfig, Controller, ControllerFactory, ControllerMetrics};
use quinn_proto::RttEstimator;

/// The window's bound, in rounds' worth of delivered bytes.
pub const GAIN: u64 = 2;

/// How many round trips the most delivered in one is remembered for.
pub const ROUNDS: usize = 10;

/// Builds [`BoundedBbr`] controllers.
#[derive(Debug, Default)]
pub struct BoundedBbrConfig {
    bbr: Arc<BbrConfig>,
}

impl ControllerFactory for BoundedBbrConfig {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(BoundedBbr::around(self.bbr.clone().build(now, current_mtu)))
    }
}

/// quinn's BBR, its window capped by recent delivery.
pub struct BoundedBbr {
    inner: Box<dyn Controller>,
    initial: u64,
    /// When the round trip now being counted began.
    round_started: Option<Instant>,
    /// Bytes acknowledged in that round trip so far.
    round_delivered: u64,
    /// Bytes acknowledged in each of the last [`ROUNDS`] whole round trips.
    delivered: VecDeque<u64>,
}

impl BoundedBbr {
    /// `inner`, its window capped.
    fn around(inner: Box<dyn Controller>) -> Self {
        Self {
            initial: inner.initial_window(),
            inner,
            round_started: None,
            round_delivered: 0,
            delivered: VecDeque::with_capacity(ROUNDS),
        }
    }

    /// The cap: [`GAIN`] times the most delivered in one recent round trip
    /// (the one in progress included), at least the initial window.
    fn bound(&self) -> u64 {
        let most = self
            .delivered
            .iter()
            .copied()
            .chain([self.round_delivered])
            .max()
            .unwrap_or(0);
        (GAIN * most).max(self.initial)
    }

    /// Counts `bytes` acknowledged at `now`. A round lasts the path's
    /// minimum round trip, not the smoothed one: a queue that builds up
    /// lengthens the smoothed round trip, which would let more be delivered
    /// per round and raise the bound that let the queue build.
    fn count_delivered(&mut self, now: Instant, bytes: u64, round: Duration) {
        let started = *self.round_started.get_or_insert(now);
        if now.saturating_duration_since(started) >= round {
            if self.delivered.len() == ROUNDS {
                self.delivered.pop_front();
            }
            self.delivered.push_back(self.round_delivered);
            self.round_delivered = 0;
            self.round_started = Some(now);
        }
        self.round_delivered += bytes;
    }
}

impl Controller for BoundedBbr {
    fn on_sent(&mut self, now: Instant, bytes: u64, last_packet_number: u64) {
        self.inner.on_sent(now, bytes, last_packet_number);
    }

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &RttEstimator,
    ) {
        self.count_delivered(now, bytes, rtt.min());
        self.inner.on_ack(now, sent, bytes, app_limited, rtt);
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        in_flight: u64,
        app_limited: bool,
        largest_packet_num_acked: Option<u64>,
    ) {
        self.inner
            .on_end_acks(now, in_flight, app_limited, largest_packet_num_acked);
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        self.inner
            .on_congestion_event(now, sent, is_persistent_congestion, lost_bytes);
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.inner.on_mtu_update(new_mtu);
    }

    fn window(&self) -> u64 {
        self.inner.window().min(self.bound())
    }

    fn metrics(&self) -> ControllerMetrics {
        let mut metrics = self.inner.metrics();
        metrics.congestion_window = self.window();
        metrics
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(Self {
            inner: self.inner.clone_box(),
            initial: self.initial,
            round_started: self.round_started,
            round_delivered: self.round_delivered,
            delivered: self.delivered.clone(),
        })
    }

    fn initial_window(&self) -> u64 {
        self.initial
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stands for quinn's BBR after quinn-rs/quinn#2798: a window that
    /// grew with every byte acknowledged.
    struct RunawayWindow(u64);

    impl Controller for RunawayWindow {
        fn on_congestion_event(&mut self, _: Instant, _: Instant, _: bool, _: u64) {}
        fn on_mtu_update(&mut self, _: u16) {}
        fn window(&self) -> u64 {
            self.0
        }
        fn clone_box(&self) -> Box<dyn Controller> {
            Box::new(Self(self.0))
        }
        fn initial_window(&self) -> u64 {
            12_000
        }
        fn into_any(self: Box<Self>) -> Box<dyn Any> {
            self
        }
    }

    const ROUND: Duration = Duration::from_millis(40);

    /// Acknowledges `per_round` bytes in each of `rounds` round trips
    /// (ten acks a round) from `start`; returns when the next would be.
    fn deliver(bbr: &mut BoundedBbr, start: Instant, rounds: u32, per_round: u64) -> Instant {
        let mut now = start;
        for _ in 0..rounds * 10 {
            bbr.count_delivered(now, per_round / 10, ROUND);
            now += ROUND / 10;
        }
        now
    }

    /// Whatever the inner window says, at most [`GAIN`] times a round's
    /// delivery may be in flight: a 262 MB window (what quinn's reached in
    /// `gateway-bench`) over a path that delivers 5 MB a round trip is
    /// reported as 10 MB.
    #[test]
    fn a_runaway_window_is_capped_at_twice_a_rounds_delivery() {
        let mut bbr = BoundedBbr::around(Box::new(RunawayWindow(262_000_000)));
        assert_eq!(
            bbr.window(),
            12_000,
            "before any delivery: the initial window"
        );
        deliver(
            &mut bbr,
            tokio::time::Instant::now().into_std(),
            5,
            5_000_000,
        );
        assert_eq!(bbr.window(), GAIN * 5_000_000);
    }

    /// A window the inner controller keeps small stays small: the cap
    /// only ever lowers it.
    #[test]
    fn a_smaller_inner_window_is_kept() {
        let mut bbr = BoundedBbr::around(Box::new(RunawayWindow(300_000)));
        deliver(
            &mut bbr,
            tokio::time::Instant::now().into_std(),
            5,
            5_000_000,
        );
        assert_eq!(bbr.window(), 300_000);
    }

    /// The bound follows the path down: [`ROUNDS`] round trips after the
    /// path began to deliver less, a round of its old rate no longer
    /// counts.
    #[test]
    fn the_bound_forgets_rounds_older_than_its_memory() {
        let mut bbr = BoundedBbr::around(Box::new(RunawayWindow(262_000_000)));
        let now = deliver(
            &mut bbr,
            tokio::time::Instant::now().into_std(),
            3,
            5_000_000,
        );
        let now = deliver(&mut bbr, now, 3, 1_000_000);
        assert_eq!(bbr.window(), GAIN * 5_000_000, "the fast rounds are recent");
        deliver(&mut bbr, now, ROUNDS as u32, 1_000_000);
        assert_eq!(bbr.window(), GAIN * 1_000_000);
    }
}
