//! Failure accrual: an endpoint that fails `max_failures` times in a row is
//! taken out of the balancer for a back-off that grows with each ejection;
//! once it has passed, one request probes it, and a success brings it back.
//! Time and randomness are passed in.

use std::time::Duration;

use tokio::time::Instant;

use mesh_core::identity::schedule::Backoff;

/// Linkerd's default: 7 consecutive failures.
pub const DEFAULT_MAX_FAILURES: u32 = 7;

/// Linkerd's default back-off: 1 s up to 60 s.
pub const DEFAULT_BACKOFF: Backoff = Backoff {
    min: Duration::from_secs(1),
    max: Duration::from_secs(60),
};

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Healthy { consecutive: u32 },
    Ejected { until: Instant, ejections: u32 },
    Probing { ejections: u32 },
}

/// The accrual state of one endpoint.
#[derive(Debug, Clone)]
pub struct Accrual {
    state: State,
    max_failures: u32,
    backoff: Backoff,
}

impl Default for Accrual {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FAILURES, DEFAULT_BACKOFF)
    }
}

impl Accrual {
    /// Ejects after `max_failures` consecutive failures, for `backoff`.
    pub fn new(max_failures: u32, backoff: Backoff) -> Self {
        Self {
            state: State::Healthy { consecutive: 0 },
            max_failures: max_failures.max(1),
            backoff,
        }
    }

    /// Whether a request may go to this endpoint now. An ejected endpoint
    /// whose back-off has passed admits exactly one probe.
    pub fn admit(&mut self, now: Instant) -> bool {
        match self.state {
            State::Healthy { .. } => true,
            State::Ejected { until, ejections } if now >= until => {
                self.state = State::Probing { ejections };
                true
            }
            State::Ejected { .. } | State::Probing { .. } => false,
        }
    }

    /// Whether a request could go to this endpoint now (without taking the
    /// probe slot of an ejected one: see [`Accrual::admit`]).
    pub fn available(&self, now: Instant) -> bool {
        match self.state {
            State::Healthy { .. } => true,
            State::Ejected { until, .. } => now >= until,
            State::Probing { .. } => false,
        }
    }

    /// Whether the endpoint is out of the balancer.
    #[cfg(test)]
    fn is_ejected(&self) -> bool {
        !matches!(self.state, State::Healthy { .. })
    }

    /// Records a request's outcome; `draw` in `[0, 1)` jitters the back-off.
    pub fn record(&mut self, success: bool, now: Instant, draw: f64) {
        self.state = match (self.state, success) {
            (_, true) => State::Healthy { consecutive: 0 },
            (State::Healthy { consecutive }, false) if consecutive + 1 < self.max_failures => {
                State::Healthy {
                    consecutive: consecutive + 1,
                }
            }
            (State::Healthy { .. }, false) => self.eject(0, now, draw),
            (State::Probing { ejections }, false) => self.eject(ejections, now, draw),
            // A late failure of a request sent before the ejection.
            (ejected @ State::Ejected { .. }, false) => ejected,
        };
    }

    fn eject(&self, ejections: u32, now: Instant, draw: f64) -> State {
        State::Ejected {
            until: now + self.backoff.delay(ejections, draw),
            ejections: ejections.saturating_add(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_eject_and_a_probe_brings_it_back() {
        let mut accrual = Accrual::new(
            3,
            Backoff {
                min: Duration::from_secs(1),
                max: Duration::from_secs(60),
            },
        );
        let now = Instant::now();
        accrual.record(false, now, 0.0);
        accrual.record(false, now, 0.0);
        accrual.record(true, now, 0.0);
        accrual.record(false, now, 0.0);
        accrual.record(false, now, 0.0);
        assert!(accrual.admit(now), "a success reset the count");
        accrual.record(false, now, 0.999);
        assert!(accrual.is_ejected() && !accrual.admit(now));
        let later = now + Duration::from_secs(2);
        assert!(accrual.available(later) && accrual.available(later));
        assert!(accrual.admit(later), "one probe after the back-off");
        assert!(!accrual.available(later));
        assert!(!accrual.admit(later), "and only one");
        accrual.record(false, later, 0.999);
        assert!(
            !accrual.admit(later + Duration::from_secs(1)),
            "the back-off grew"
        );
        let much_later = later + Duration::from_secs(5);
        assert!(accrual.admit(much_later));
        accrual.record(true, much_later, 0.0);
        assert!(!accrual.is_ejected() && accrual.admit(much_later));
    }
}
