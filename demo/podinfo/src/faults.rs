//! Injected faults: a share of requests answered with 500 and added latency.
//! The error share can be changed while the app runs (`POST
//! /chaos/errors/{share}`), so a benchmark breaks every pod at one instant.
//!
//! The error share is spread evenly rather than drawn at random, so that
//! any run of requests sees it: with a rate of 0.25, exactly one request in
//! every four fails. Tests and the failover demo depend on that.

use std::sync::Mutex;
use std::time::Duration;

/// The faults applied to application requests (never to probes).
#[derive(Debug)]
pub struct Faults {
    delay: Duration,
    /// The error share and the requests served since it was set.
    errors: Mutex<(f64, u64)>,
}

impl Faults {
    /// Faults with this error share (0–1) and added latency.
    pub fn new(error_rate: f64, delay: Duration) -> Self {
        Self {
            delay,
            errors: Mutex::new((error_rate.clamp(0.0, 1.0), 0)),
        }
    }

    /// Changes the error share (0–1) from the next request on.
    pub fn set_error_rate(&self, error_rate: f64) {
        *self.errors.lock().unwrap_or_else(|e| e.into_inner()) = (error_rate.clamp(0.0, 1.0), 0);
    }

    /// The latency to add to a request.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Whether the next request should fail.
    pub fn next_fails(&self) -> bool {
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        let (rate, served) = &mut *errors;
        let before = (*served as f64 * *rate).floor();
        *served += 1;
        let after = (*served as f64 * *rate).floor();
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

    #[test]
    fn the_share_changes_at_once() {
        let faults = Faults::new(0.0, Duration::ZERO);
        assert!(!faults.next_fails());
        faults.set_error_rate(1.0);
        assert!(faults.next_fails());
        faults.set_error_rate(0.3);
        assert_eq!((0..10).filter(|_| faults.next_fails()).count(), 3);
    }
}
