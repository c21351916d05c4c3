//! What a Certify request passes before its token goes to the API server,
//! so that a flood of requests cannot become a flood of TokenReviews:
//!
//! - each source address gets a bucket of requests (a burst, refilled at a
//!   steady rate); a request over it is refused with `ResourceExhausted`
//!   at once. Proxies renew a day's certificate every ~17 hours, so an
//!   honest pod never comes near it;
//! - at most a fixed number of TokenReviews are in flight; a request waits
//!   a little for a place and is then refused with `Unavailable` (the
//!   proxy retries with backoff).
//!
//! The buckets are a small hand-written token bucket rather than a crate:
//! a map from address to (tokens, last refill), swept of full buckets
//! when it grows, is all that is needed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// TokenReviews in flight at most.
    pub max_concurrent_reviews: usize,
    /// How long a request waits for a place among them.
    pub review_wait: Duration,
    /// Requests one source may make at once.
    pub burst: u32,
    /// Requests per second one source may make over time.
    pub per_second: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_concurrent_reviews: 32,
            review_wait: Duration::from_secs(2),
            burst: 20,
            per_second: 5.0,
        }
    }
}

/// The most sources tracked at once; past it, full buckets are swept, and
/// if every one is in use the map starts afresh (the review limit still
/// holds).
const MAX_SOURCES: usize = 50_000;

/// Why a request is turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Its source has used up its requests for now.
    #[error("too many Certify requests from {0}; try again later")]
    RateLimited(IpAddr),
    /// Every place for a TokenReview stayed taken.
    #[error("the identity service is busy reviewing other tokens; try again")]
    Busy,
}

impl Refused {
    /// A short label for metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Refused::RateLimited(_) => "rate_limited",
            Refused::Busy => "busy",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// The admission state of one identity service.
#[derive(Debug, Clone)]
pub struct Admission {
    limits: Limits,
    buckets: Arc<Mutex<HashMap<IpAddr, Bucket>>>,
    reviews: Arc<Semaphore>,
}

impl Admission {
    /// Admission within `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            buckets: Arc::default(),
            reviews: Arc::new(Semaphore::new(limits.max_concurrent_reviews)),
        }
    }

    /// Takes one request from `source`'s bucket at `now`.
    pub fn admit(&self, source: IpAddr, now: Instant) -> Result<(), Refused> {
        let burst = f64::from(self.limits.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_SOURCES && !buckets.contains_key(&source) {
            let per_second = self.limits.per_second;
            buckets.retain(|_, b| refill(*b, now, per_second, burst).tokens < burst);
            if buckets.len() >= MAX_SOURCES {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(source).or_insert(Bucket {
            tokens: burst,
            refilled: now,
        });
        *bucket = refill(*bucket, now, self.limits.per_second, burst);
        if bucket.tokens < 1.0 {
            return Err(Refused::RateLimited(source));
        }
        bucket.tokens -= 1.0;
        Ok(())
    }

    /// A place for one TokenReview, held until the permit drops.
    pub async fn review(&self) -> Result<OwnedSemaphorePermit, Refused> {
        let waiting = self.reviews.clone().acquire_owned();
        match tokio::time::timeout(self.limits.review_wait, waiting).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Refused::Busy),
        }
    }
}

fn refill(bucket: Bucket, now: Instant, per_second: f64, burst: f64) -> Bucket {
    let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
    Bucket {
        tokens: (bucket.tokens + elapsed * per_second).min(burst),
        refilled: now.max(bucket.refilled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_concurrent_reviews: 2,
        review_wait: Duration::from_millis(50),
        burst: 3,
        per_second: 2.0,
    };

    #[test]
    fn a_source_gets_its_burst_then_its_rate_and_others_are_untouched() {
        let admission = Admission::new(LIMITS);
        let (a, b): (IpAddr, IpAddr) = (
            "10.0.0.1".parse().expect("ip"),
            "10.0.0.2".parse().expect("ip"),
        );
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(admission.admit(a, start), Ok(()));
        }
        assert_eq!(admission.admit(a, start), Err(Refused::RateLimited(a)));
        assert_eq!(admission.admit(b, start), Ok(()), "another source");
        let later = start + Duration::from_millis(500);
        assert_eq!(
            admission.admit(a, later),
            Ok(()),
            "one more after 0.5 s at 2/s"
        );
        assert_eq!(admission.admit(a, later), Err(Refused::RateLimited(a)));
        let much_later = start + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(admission.admit(a, much_later), Ok(()));
        }
        assert!(
            admission.admit(a, much_later).is_err(),
            "refilled to the burst, no more"
        );
    }

    #[test]
    fn the_sources_tracked_stay_bounded() {
        let admission = Admission::new(LIMITS);
        let now = Instant::now();
        for n in 0..(MAX_SOURCES as u32 + 10) {
            let _ = admission.admit(IpAddr::from(n.to_be_bytes()), now);
        }
        let tracked = admission.buckets.lock().expect("buckets").len();
        assert!(tracked <= MAX_SOURCES, "{tracked}");
    }

    #[tokio::test]
    async fn reviews_in_flight_are_capped_and_a_late_one_is_told_busy() {
        let admission = Admission::new(LIMITS);
        let first = admission.review().await.expect("first");
        let _second = admission.review().await.expect("second");
        assert_eq!(admission.review().await.err(), Some(Refused::Busy));
        drop(first);
        assert!(
            admission.review().await.is_ok(),
            "a finished review frees its place"
        );
    }
}
