//! Load balancing over a Service's endpoints: power of two choices over
//! peak-EWMA cost (latency estimate × requests in flight), for HTTP
//! requests and TCP connections alike, with failure accrual taking failing
//! endpoints out and probing them back in.
//!
//! The endpoint set comes from a discovery watch; members (with their
//! connection pools and estimates) survive set changes for as long as their
//! address stays, so a change under load disturbs nothing that still exists.
//! A request that finds no endpoint waits for one, up to a deadline.

pub mod accrual;
pub mod ewma;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rand::RngExt;
use tokio::time::Instant;

use crate::discover::{Endpoint, EndpointSet, EndpointsWatch};
use crate::endpoint::EndpointClient;
use crate::metrics::Labels;
use accrual::Accrual;
use ewma::PeakEwma;

/// Linkerd's default latency estimate for a new endpoint.
pub const DEFAULT_RTT: Duration = Duration::from_millis(30);
/// Linkerd's default EWMA decay.
pub const DECAY: Duration = Duration::from_secs(10);

/// A balancer's members for one endpoint set, shared by the picks made
/// from it (a clone is a reference count, not a copy).
type Members = Arc<[Arc<Member>]>;

/// One endpoint in a balancer.
#[derive(Debug)]
pub struct Member {
    /// The endpoint's client.
    pub client: EndpointClient,
    ewma: Mutex<PeakEwma>,
    accrual: Mutex<Accrual>,
    pending: AtomicUsize,
    /// Its metric labels, made once.
    labels: OnceLock<Arc<Labels>>,
}

impl Member {
    /// A member for `client`.
    pub fn new(client: EndpointClient) -> Arc<Self> {
        Arc::new(Self {
            client,
            ewma: Mutex::new(PeakEwma::new(DEFAULT_RTT, DECAY, Instant::now())),
            accrual: Mutex::new(Accrual::default()),
            pending: AtomicUsize::new(0),
            labels: OnceLock::new(),
        })
    }

    /// The labels of traffic to this endpoint: `tls` and `server_id` (or
    /// `tls="no_identity"` when the connection is not mesh TLS), and its
    /// `dst_*` labels.
    pub fn labels(&self) -> &Arc<Labels> {
        self.labels.get_or_init(|| {
            let endpoint = self.endpoint();
            let mut labels = Vec::new();
            match (&endpoint.identity, self.client.meshed()) {
                (Some(id), true) => {
                    labels.push(("tls", "true".to_owned()));
                    labels.push(("server_id", id.clone()));
                }
                _ => labels.push(("tls", "no_identity".to_owned())),
            }
            labels.extend(endpoint.labels.iter().cloned());
            Arc::new(labels)
        })
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        self.client.endpoint()
    }

    fn cost(&self, now: Instant) -> f64 {
        lock(&self.ewma).cost(self.pending.load(Ordering::Relaxed), now)
    }

    fn available(&self, now: Instant) -> bool {
        lock(&self.accrual).available(now)
    }

    fn admit(&self, now: Instant) {
        lock(&self.accrual).admit(now);
    }

    /// Starts a request (or a connection); finish it with the returned
    /// guard.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.pending.fetch_add(1, Ordering::Relaxed);
        InFlight {
            member: self.clone(),
            started: Instant::now(),
            finished: false,
        }
    }
}

/// A request (or connection) in flight to a member.
#[derive(Debug)]
pub struct InFlight {
    member: Arc<Member>,
    started: Instant,
    finished: bool,
}

impl InFlight {
    /// Records the outcome: the latency feeds the estimate, the success or
    /// failure the accrual.
    pub fn finish(mut self, success: bool) {
        let now = Instant::now();
        lock(&self.member.ewma).observe(now - self.started, now);
        lock(&self.member.accrual).record(success, now, rand::rng().random::<f64>());
        self.finished = true;
    }

    /// The latency so far is known good (a TCP connection was established)
    /// but the work goes on: record the latency and success now, keep
    /// counting it as pending until the guard drops.
    pub fn established(&mut self) {
        let now = Instant::now();
        lock(&self.member.ewma).observe(now - self.started, now);
        lock(&self.member.accrual).record(true, now, rand::rng().random::<f64>());
        self.finished = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.member.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why no endpoint could be picked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickError {
    /// The Service does not exist.
    #[error("the destination service does not know {0}")]
    NotFound(String),
    /// The Service has no endpoints (within the deadline).
    #[error("{0} has no endpoints")]
    NoEndpoints(String),
    /// Discovery did not answer within the deadline.
    #[error("discovery did not answer for {0}")]
    Unresolved(String),
}

/// Builds the client of a new endpoint.
pub type MakeClient = Arc<dyn Fn(&Endpoint) -> Option<EndpointClient> + Send + Sync>;

/// The balancer of one Service (one `name:port`).
pub struct Balancer {
    authority: String,
    watch: Mutex<EndpointsWatch>,
    members: Mutex<(Arc<EndpointSet>, Members)>,
    make: MakeClient,
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer")
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

impl Balancer {
    /// A balancer over the endpoints `watch` publishes.
    pub fn new(authority: String, watch: EndpointsWatch, make: MakeClient) -> Arc<Self> {
        Arc::new(Self {
            authority,
            watch: Mutex::new(watch),
            members: Mutex::new((Arc::default(), Arc::new([]))),
            make,
        })
    }

    /// The Service's `name:port`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Whether discovery has said the Service has no endpoint now.
    pub fn known_empty(&self) -> bool {
        let set = lock(&self.watch).borrow().clone();
        set.resolved && set.endpoints.is_empty()
    }

    /// Picks an endpoint, waiting up to `wait` for one to exist; with
    /// `fail_fast`, a resolved set with no
    /// endpoint fails at once instead of waiting for one (a split has
    /// another backend to try).
    pub async fn pick_within(
        &self,
        wait: Duration,
        fail_fast: bool,
    ) -> Result<Arc<Member>, PickError> {
        let deadline = Instant::now() + wait;
        let mut watch = lock(&self.watch).clone();
        loop {
            let set = watch.borrow_and_update().clone();
            if let Some(member) = self.pick_from(&set) {
                return Ok(member);
            }
            if set.resolved && !set.exists {
                return Err(PickError::NotFound(self.authority.clone()));
            }
            if set.resolved && fail_fast {
                return Err(PickError::NoEndpoints(self.authority.clone()));
            }
            match tokio::time::timeout_at(deadline, watch.changed()).await {
                Ok(Ok(())) => {}
                _ if set.resolved => return Err(PickError::NoEndpoints(self.authority.clone())),
                _ => return Err(PickError::Unresolved(self.authority.clone())),
            }
        }
    }

    fn pick_from(&self, set: &Arc<EndpointSet>) -> Option<Arc<Member>> {
        let members = self.members_for(set);
        p2c(&members, Instant::now())
    }

    /// The members for `set`, rebuilt when the set changed: members whose
    /// endpoint is unchanged are kept.
    fn members_for(&self, set: &Arc<EndpointSet>) -> Members {
        let mut current = lock(&self.members);
        if !Arc::ptr_eq(&current.0, set) {
            let old = std::mem::replace(&mut current.1, Arc::new([]));
            let members = set
                .endpoints
                .values()
                .filter_map(|endpoint| {
                    old.iter()
                        .find(|m| m.endpoint() == endpoint)
                        .cloned()
                        .or_else(|| (self.make)(endpoint).map(Member::new))
                })
                .collect();
            *current = (set.clone(), members);
        }
        current.1.clone()
    }
}

/// Power of two choices: two distinct members drawn at random among those
/// available, the cheaper wins. When every member is ejected, all of them
/// are candidates (sending somewhere beats failing outright).
pub fn p2c(members: &[Arc<Member>], now: Instant) -> Option<Arc<Member>> {
    let mut rng = rand::rng();
    let drawn = match two_at_random(members.iter().filter(|m| m.available(now)), &mut rng) {
        [None, _] => two_at_random(members.iter(), &mut rng),
        drawn => drawn,
    };
    let chosen = match drawn {
        [Some(a), Some(b)] => Some(if a.cost(now) <= b.cost(now) { a } else { b }.clone()),
        [Some(only), None] => Some(only.clone()),
        _ => None,
    };
    if let Some(member) = &chosen {
        member.admit(now);
    }
    chosen
}

/// Two distinct members drawn uniformly from `candidates` in one pass (a
/// reservoir of two), without collecting them: one fewer allocation per
/// request. In random order, so that a tie in cost goes either way. Fewer
/// than two candidates leave the rest `None`.
fn two_at_random<'a>(
    candidates: impl Iterator<Item = &'a Arc<Member>>,
    rng: &mut impl rand::Rng,
) -> [Option<&'a Arc<Member>>; 2] {
    let mut drawn = [None, None];
    for (seen, candidate) in candidates.enumerate() {
        if seen < 2 {
            drawn[seen] = Some(candidate);
        } else {
            let slot = rng.random_range(0..=seen);
            if slot < 2 {
                drawn[slot] = Some(candidate);
            }
        }
    }
    if drawn[1].is_some() && rng.random_bool(0.5) {
        drawn.swap(0, 1);
    }
    drawn
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(count: u16) -> Vec<Arc<Member>> {
        (0..count)
            .map(|i| {
                let addr = std::net::SocketAddr::from(([10, 0, 0, 1], 8000 + i));
                Member::new(EndpointClient::plain(
                    Endpoint::unmeshed(addr),
                    Duration::from_secs(1),
                ))
            })
            .collect()
    }

    /// Equal members (the same estimate, made at the same instant, nothing
    /// in flight) share the requests: neither the draw nor a tie favours
    /// one.
    #[tokio::test(start_paused = true)]
    async fn equal_members_are_picked_evenly() {
        for count in [2u16, 3, 5] {
            let members = members(count);
            let now = Instant::now();
            let mut picked = vec![0usize; members.len()];
            let draws = 3_000 * usize::from(count);
            for _ in 0..draws {
                let member = p2c(&members, now).expect("a member");
                let index = members
                    .iter()
                    .position(|m| Arc::ptr_eq(m, &member))
                    .expect("one of them");
                picked[index] += 1;
            }
            for (index, times) in picked.iter().enumerate() {
                assert!(
                    (2_500..=3_500).contains(times),
                    "member {index} of {count} picked {times} times of {draws}: {picked:?}"
                );
            }
        }
    }
}
