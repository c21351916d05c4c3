//! A backend's requests over a sliding window: the successes and failures
//! each sample added, at the time (passed in) it was taken, summed over the
//! last `window` or `fast_window`.

use std::collections::VecDeque;
use std::time::Duration;

/// Successes and failures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    /// Responses classified as successes.
    pub success: f64,
    /// Responses classified as failures (errors included).
    pub failure: f64,
}

impl Counts {
    /// All responses.
    pub fn total(&self) -> f64 {
        self.success + self.failure
    }

    /// The success rate, when there was a response.
    pub fn success_rate(&self) -> Option<f64> {
        (self.total() > 0.0).then(|| self.success / self.total())
    }

    /// Whether the success rate is under `threshold` with 90 % confidence
    /// (the upper Wilson score bound is under it): at 50 requests per
    /// second over 10 s, 97 % never reads as under 95 %, 70 % always does.
    pub fn surely_under(&self, threshold: f64) -> bool {
        let n = self.total();
        if n <= 0.0 {
            return false;
        }
        const Z: f64 = 1.2816;
        let p = self.success / n;
        let z2 = Z * Z;
        let upper = (p + z2 / (2.0 * n) + Z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt())
            / (1.0 + z2 / n);
        upper < threshold
    }
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Self) {
        self.success += other.success;
        self.failure += other.failure;
    }
}

/// The samples of one backend.
#[derive(Debug, Clone, Default)]
pub struct Window {
    samples: VecDeque<(Duration, Counts)>,
    /// When the first sample came: rates over a window not yet full are
    /// taken over the time seen.
    started: Option<Duration>,
}

impl Window {
    /// Adds what happened since the last sample, at `now`, and forgets
    /// what is older than `keep`.
    pub fn record(&mut self, now: Duration, counts: Counts, keep: Duration) {
        self.started.get_or_insert(now);
        self.samples.push_back((now, counts));
        while self
            .samples
            .front()
            .is_some_and(|(at, _)| now.saturating_sub(*at) > keep)
        {
            self.samples.pop_front();
        }
    }

    /// What the samples of the last `span` add up to.
    pub fn over(&self, now: Duration, span: Duration) -> Counts {
        let mut sum = Counts::default();
        for (at, counts) in &self.samples {
            if now.saturating_sub(*at) < span {
                sum += *counts;
            }
        }
        sum
    }

    /// Requests per second over the last `span` (or the time seen, when
    /// shorter; at least one second).
    pub fn rps(&self, now: Duration, span: Duration) -> f64 {
        let seen = self
            .started
            .map_or(Duration::ZERO, |s| now.saturating_sub(s));
        let over = span.min(seen).max(Duration::from_secs(1));
        self.over(now, span).total() / over.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(success: f64, failure: f64) -> Counts {
        Counts { success, failure }
    }

    #[test]
    fn only_the_samples_of_the_span_count() {
        let mut window = Window::default();
        let keep = Duration::from_secs(10);
        for second in 0..20u64 {
            let failure = if second >= 18 { 50.0 } else { 0.0 };
            window.record(
                Duration::from_secs(second),
                counts(50.0 - failure, failure),
                keep,
            );
        }
        let now = Duration::from_secs(19);
        assert_eq!(window.over(now, Duration::from_secs(2)), counts(0.0, 100.0));
        assert_eq!(window.over(now, keep), counts(400.0, 100.0));
        assert_eq!(window.rps(now, keep), 50.0);
    }

    #[test]
    fn confidence_keeps_noise_from_reading_as_a_brown_out() {
        // 10 s at 50 rps.
        assert!(!counts(485.0, 15.0).surely_under(0.95), "97 %");
        assert!(
            !counts(472.0, 28.0).surely_under(0.95),
            "94.4 %: not sure yet"
        );
        assert!(counts(350.0, 150.0).surely_under(0.95), "70 %");
        assert!(!counts(0.0, 0.0).surely_under(0.95));
        assert!(counts(0.0, 20.0).surely_under(0.5));
    }
}
