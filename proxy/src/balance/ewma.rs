//! Peak-EWMA latency: an estimate that jumps up to any slower observation at
//! once and decays towards faster ones over time, so one slow endpoint is
//! avoided immediately and forgiven gradually. Time is passed in.

use std::time::Duration;

use tokio::time::Instant;

/// The estimate of one endpoint.
#[derive(Debug, Clone)]
pub struct PeakEwma {
    rtt_ns: f64,
    stamp: Instant,
    decay_ns: f64,
}

impl PeakEwma {
    /// Starts at `default_rtt` (Linkerd: 30 ms) and decays over `decay`
    /// (Linkerd: 10 s).
    pub fn new(default_rtt: Duration, decay: Duration, now: Instant) -> Self {
        Self {
            rtt_ns: default_rtt.as_nanos() as f64,
            stamp: now,
            decay_ns: decay.as_nanos().max(1) as f64,
        }
    }

    /// Records one observed latency.
    pub fn observe(&mut self, rtt: Duration, now: Instant) {
        let rtt = rtt.as_nanos() as f64;
        if rtt > self.rtt_ns {
            self.rtt_ns = rtt;
        } else {
            let elapsed = now.saturating_duration_since(self.stamp).as_nanos() as f64;
            let weight = (-elapsed / self.decay_ns).exp();
            self.rtt_ns = self.rtt_ns * weight + rtt * (1.0 - weight);
        }
        self.stamp = now;
    }

    /// The cost of sending one more request: the estimate times the
    /// requests in flight plus one.
    pub fn cost(&self, pending: usize) -> f64 {
        self.rtt_ns * (pending as f64 + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_slow_answer_counts_at_once_and_fades_with_time() {
        let start = Instant::now();
        let mut ewma = PeakEwma::new(Duration::from_millis(30), Duration::from_secs(10), start);
        ewma.observe(Duration::from_millis(500), start);
        assert_eq!(ewma.cost(0), 500e6, "the peak is taken at once");
        ewma.observe(Duration::from_millis(1), start + Duration::from_millis(10));
        assert!(ewma.cost(0) > 490e6, "barely forgiven after 10 ms");
        ewma.observe(Duration::from_millis(1), start + Duration::from_secs(60));
        assert!(
            ewma.cost(0) < 5e6,
            "forgiven after a minute: {}",
            ewma.cost(0)
        );
        assert_eq!(ewma.cost(3), ewma.cost(0) * 4.0, "load multiplies the cost");
    }
}
