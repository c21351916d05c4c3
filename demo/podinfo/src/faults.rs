//! Injected faults: a share of requests answered with 500 and added latency.
//!
//! The error share is spread evenly rather than drawn at random, so that
//! any run of requests sees it: with a rate of 0.25, exactly one request in
//! every four fails. Tests and the failover demo depend on that.

use std::sync::Mutex;
use std::time::Duration;

/// The faults applied to application requests (never to probes).
#[derive(Debug)]
pub struct Faults {
    error_rate: f64,
    delay: Duration,
    served: Mutex<u64>,
}

impl Faults {
    /// Faults with this error share (0–1) and added latency.
    pub fn new(error_rate: f64, delay: Duration) -> Self {
        Self {
            error_rate: error_rate.clamp(0.0, 1.0),
            delay,
            served: Mutex::new(0),
        }
    }

    /// The latency to add to a request.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Whether the next request should fail.
    pub fn next_fails(&self) -> bool {
        let mut served = self.served.lock().unwrap_or_else(|e| e.into_inner());
        let before = (*served as f64 * self.error_rate).floor();
        *served += 1;
        let after = (*served as f64 * self.error_rate).floor();
        after > before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failures(rate: f64, requests: usize) -> usize {
        let faults = Faults::new(rate, Duration::ZERO);
        (0..requests).filter(|_| faults.next_fails()).count()
    }

    #[test]
    fn the_share_of_failures_is_exact_over_any_run() {
        assert_eq!(failures(0.0, 1000), 0);
        assert_eq!(failures(1.0, 1000), 1000);
        assert_eq!(failures(0.25, 4), 1);
        assert_eq!(failures(0.25, 1000), 250);
        assert_eq!(failures(0.05, 100), 5);
    }
}
