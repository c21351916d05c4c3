//! Retries under Linkerd's retry budget: over a sliding window of `ttl`,
//! retries may add `ratio` × the requests of the window, plus
//! `min_per_second` × the window's seconds, and no more. Time is passed in.
//!
//! Only requests whose body is known and at most [`MAX_BUFFERED_BODY`] long
//! are retried: their body is buffered so it can be sent again; larger or
//! streaming bodies go out once.

use std::collections::VecDeque;

use tokio::time::Instant;

use crate::discover::profile::RetryBudget;

/// The largest request body kept for a retry.
pub const MAX_BUFFERED_BODY: u64 = 64 * 1024;

/// The state of one retry budget.
#[derive(Debug)]
pub struct Budget {
    config: RetryBudget,
    /// (when, is a retry) per event, oldest first.
    events: VecDeque<(Instant, bool)>,
    requests: u64,
    retries: u64,
}

impl Budget {
    /// An empty window under `config`.
    pub fn new(config: RetryBudget) -> Self {
        Self {
            config,
            events: VecDeque::new(),
            requests: 0,
            retries: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> RetryBudget {
        self.config
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, retry)) = self.events.front().copied() {
            if now.saturating_duration_since(at) < self.config.ttl {
                break;
            }
            self.events.pop_front();
            if retry {
                self.retries -= 1;
            } else {
                self.requests -= 1;
            }
        }
    }

    /// Counts a request (its first attempt).
    pub fn deposit(&mut self, now: Instant) {
        self.expire(now);
        self.events.push_back((now, false));
        self.requests += 1;
    }

    /// Takes one retry from the budget, if there is one left.
    pub fn withdraw(&mut self, now: Instant) -> bool {
        self.expire(now);
        let floor = f64::from(self.config.min_per_second) * self.config.ttl.as_secs_f64();
        let allowed = floor + f64::from(self.config.ratio) * self.requests as f64;
        if (self.retries as f64) + 1.0 > allowed {
            return false;
        }
        self.events.push_back((now, true));
        self.retries += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_stop_at_the_budget_and_come_back_with_time() {
        let mut budget = Budget::new(RetryBudget {
            ratio: 0.2,
            min_per_second: 1,
            ttl: Duration::from_secs(10),
        });
        let now = Instant::now();
        for _ in 0..100 {
            budget.deposit(now);
        }
        let granted = (0..100).filter(|_| budget.withdraw(now)).count();
        assert_eq!(granted, 30, "10 (1/s over 10 s) + 20 % of 100");
        assert!(!budget.withdraw(now + Duration::from_secs(9)));
        assert!(
            budget.withdraw(now + Duration::from_secs(10)),
            "the window slid past"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_minimum_no_traffic_means_no_retries() {
        let mut budget = Budget::new(RetryBudget {
            ratio: 0.5,
            min_per_second: 0,
            ttl: Duration::from_secs(10),
        });
        let now = Instant::now();
        assert!(!budget.withdraw(now));
        budget.deposit(now);
        budget.deposit(now);
        assert!(budget.withdraw(now));
        assert!(!budget.withdraw(now));
    }
}
