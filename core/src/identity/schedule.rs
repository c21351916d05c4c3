//! When to renew a certificate and how long to wait after a failure. Pure
//! functions of durations and a random draw, so they are tested without a
//! clock.

use std::time::Duration;

/// The share of a certificate's lifetime after which it is renewed.
pub const RENEW_AT: f64 = 0.7;

/// How long to wait before renewing a certificate that has `lifetime` left
/// now: 70 % of it.
pub fn renew_after(lifetime: Duration) -> Duration {
    lifetime.mul_f64(RENEW_AT)
}

/// Exponential back-off with full jitter between `min` and `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay's upper bound.
    pub min: Duration,
    /// The largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            min: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based), given a uniform
    /// random `draw` in [0, 1): somewhere between `min / 2` and the capped
    /// exponential bound, so that many proxies failing together spread out.
    pub fn delay(&self, attempt: u32, draw: f64) -> Duration {
        let bound = self
            .min
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(self.max);
        let floor = self.min / 2;
        floor + bound.saturating_sub(floor).mul_f64(draw.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_at_seventy_percent() {
        assert_eq!(
            renew_after(Duration::from_secs(24 * 3600)),
            Duration::from_secs(60480)
        );
        assert_eq!(renew_after(Duration::from_secs(10)), Duration::from_secs(7));
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let b = Backoff::default();
        assert_eq!(b.delay(0, 0.0), Duration::from_millis(250));
        assert_eq!(b.delay(0, 1.0), Duration::from_millis(500));
        assert_eq!(b.delay(3, 1.0), Duration::from_secs(4));
        assert_eq!(b.delay(30, 1.0), Duration::from_secs(30));
        assert!(b.delay(30, 0.5) < Duration::from_secs(30));
        assert!(b.delay(2, 0.3) != b.delay(2, 0.7));
    }
}
