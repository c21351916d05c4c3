//! Peak-EWMA latency: an estimate that jumps up to any slower observation at
//! once and decays towards faster ones over time, so one slow endpoint is
//! avoided immediately and forgiven gradually. Without observations the
//! estimate decays towards zero, so an endpoint that has been passed over
//! (new, or back from an ejection) soon looks cheap enough to get traffic
//! and be measured again. Time is passed in.

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

    fn weight(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.stamp).as_nanos() as f64;
        (-elapsed / self.decay_ns).exp()
    }

    /// Records one observed latency.
    pub fn observe(&mut self, rtt: Duration, now: Instant) {
        let rtt = rtt.as_nanos() as f64;
        if rtt > self.rtt_ns {
            self.rtt_ns = rtt;
        } else {
            let weight = self.weight(now);
            self.rtt_ns = self.rtt_ns * weight + rtt * (1.0 - weight);
        }
        self.stamp = now;
    }

    /// The cost of sending one more request now: the estimate, decayed
    /// since the last observation, times the requests in flight plus one.
    pub fn cost(&self, pending: usize, now: Instant) -> f64 {
        self.rtt_ns * self.weight(now) * (pending as f64 + 1.0)
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
        assert_eq!(ewma.cost(0, start), 500e6, "the peak is taken at once");
        let soon = start + Duration::from_millis(10);
        ewma.observe(Duration::from_millis(1), soon);
        assert!(ewma.cost(0, soon) > 490e6, "barely forgiven after 10 ms");
        let later = start + Duration::from_secs(60);
        ewma.observe(Duration::from_millis(1), later);
        assert!(ewma.cost(0, later) < 5e6, "forgiven after a minute");
        assert_eq!(
            ewma.cost(3, later),
            ewma.cost(0, later) * 4.0,
            "load multiplies the cost"
        );
        let idle = later + Duration::from_secs(30);
        assert!(
            ewma.cost(0, idle) < ewma.cost(0, later) / 10.0,
            "an endpoint nobody measured for a while looks cheap again"
        );
    }
}
