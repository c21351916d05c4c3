//! Bounds on the work one peer can make a listener do: a cap on the
//! connections a listener holds at once (a connection over it is closed
//! as soon as it is accepted, and counted), a pace for the mesh TLS
//! handshakes a listener starts (each costs a signature and a key
//! exchange before the client is known), and the accept errors counted
//! when a bound bites (`tcp_accept_errors_total{direction, error}`). The
//! time bounds (detection, the TLS handshake, the transport header) are
//! the listener's detection timeout; HTTP/2 and QUIC stream caps are set
//! where those servers are built.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Why a connection was dropped before it was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AcceptError {
    /// The listener already held its maximum of connections.
    MaxConnections,
    /// The client did not finish its TLS handshake in time.
    TlsHandshakeTimeout,
    /// The client did not send its whole transport header in time.
    TransportHeaderTimeout,
    /// TLS handshakes arrived so much faster than the listener's pace
    /// that this one's turn would have come after its deadline.
    HandshakeRate,
}

impl AcceptError {
    fn label(self) -> &'static str {
        match self {
            Self::MaxConnections => "max_connections",
            Self::TlsHandshakeTimeout => "tls_handshake_timeout",
            Self::TransportHeaderTimeout => "transport_header_timeout",
            Self::HandshakeRate => "handshake_rate",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AcceptErrorLabels {
    direction: &'static str,
    error: &'static str,
}

/// The `tcp_accept_errors_total` family.
#[derive(Debug, Clone, Default)]
pub struct AcceptErrors(Family<AcceptErrorLabels, Counter>);

impl AcceptErrors {
    /// Registers the family in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let errors = Self::default();
        registry.register(
            "tcp_accept_errors",
            "Connections dropped before they were served, by why",
            errors.0.clone(),
        );
        errors
    }

    /// Counts one `error` on the `direction` listener.
    pub fn count(&self, direction: &'static str, error: AcceptError) {
        self.0
            .get_or_create(&AcceptErrorLabels {
                direction,
                error: error.label(),
            })
            .inc();
    }
}

/// The cap on one listener's connections.
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    permits: Arc<Semaphore>,
    direction: &'static str,
    errors: AcceptErrors,
}

impl ConnectionLimit {
    /// At most `max` connections at once on the `direction` listener.
    pub fn new(max: usize, direction: &'static str, errors: AcceptErrors) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            direction,
            errors,
        }
    }

    /// A place for one more connection, held until the permit drops; none
    /// (counted, and logged at debug) when the listener is full.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.permits.clone().try_acquire_owned().ok();
        if permit.is_none() {
            self.errors
                .count(self.direction, AcceptError::MaxConnections);
            tracing::debug!(
                direction = self.direction,
                "the listener holds its maximum of connections: a new one is closed"
            );
        }
        permit
    }
}

/// The pace at which one listener starts mesh TLS handshakes. Each costs
/// the proxy a signature and a key exchange before it knows who the
/// client is, in one go on the thread that also serves requests: a burst
/// of a hundred ClientHellos run back to back holds every request on that
/// thread for tens of milliseconds. Handshakes are therefore started one
/// after another at a steady rate (a small burst at once), each in its
/// turn, leaving the thread free between them; a handshake whose turn
/// would come after its deadline is closed at once, before any work, and
/// counted. Connections already established are not affected. This is a
/// pace for all rather than a quota per address: before it has been
/// answered, no client can be told from another (a rogue container shares
/// its pod's address with the pod's proxy).
#[derive(Debug, Clone)]
pub struct HandshakePace {
    /// Time between two handshakes at the steady rate.
    interval: Duration,
    /// How far ahead of the steady rate a burst may run.
    tolerance: Duration,
    /// When the next handshake would start at the steady rate (the
    /// generic cell rate algorithm's theoretical arrival time).
    next: Arc<Mutex<Option<Instant>>>,
    direction: &'static str,
    errors: AcceptErrors,
}

impl HandshakePace {
    /// `per_second` handshakes on the `direction` listener, `burst` of
    /// them at once (at least one of each).
    pub fn new(per_second: u32, burst: u32, direction: &'static str, errors: AcceptErrors) -> Self {
        let interval = Duration::from_secs(1) / per_second.max(1);
        Self {
            interval,
            tolerance: interval * burst.max(1).saturating_sub(1),
            next: Arc::default(),
            direction,
            errors,
        }
    }

    /// When the next handshake may start (now, or its turn); none (counted,
    /// and logged at debug) when its turn would come after `deadline`.
    pub fn turn(&self, deadline: Instant) -> Option<Instant> {
        let now = Instant::now();
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let theoretical = next.map_or(now, |next| next.max(now));
        let at = theoretical
            .checked_sub(self.tolerance)
            .map_or(now, |at| at.max(now));
        if at > deadline {
            drop(next);
            self.errors
                .count(self.direction, AcceptError::HandshakeRate);
            tracing::debug!(
                direction = self.direction,
                "TLS handshakes are arriving faster than the listener's pace: a new one is closed"
            );
            return None;
        }
        *next = Some(theoretical + self.interval);
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn handshakes_start_at_the_pace_a_burst_at_once_and_none_past_its_deadline() {
        let mut registry = Registry::default();
        let pace = HandshakePace::new(10, 3, "inbound", AcceptErrors::register(&mut registry));
        let start = Instant::now();
        let deadline = start + Duration::from_millis(350);
        let turns: Vec<Option<Duration>> = (0..8)
            .map(|_| pace.turn(deadline).map(|at| at - start))
            .collect();
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(
            turns,
            [ms(0), ms(0), ms(0), ms(100), ms(200), ms(300), None, None],
            "a burst of three, then one every 100 ms until the deadline"
        );
        // Time passes: the pace has room again.
        tokio::time::advance(Duration::from_secs(2)).await;
        let now = Instant::now();
        assert_eq!(pace.turn(now + Duration::from_secs(1)), Some(now));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains(
                r#"tcp_accept_errors_total{direction="inbound",error="handshake_rate"} 2"#
            ),
            "{text}"
        );
    }

    #[test]
    fn connections_over_the_cap_are_refused_and_counted_until_one_closes() {
        let mut registry = Registry::default();
        let limit = ConnectionLimit::new(2, "inbound", AcceptErrors::register(&mut registry));
        let first = limit.admit().expect("first");
        let _second = limit.admit().expect("second");
        assert!(limit.admit().is_none(), "the third is over the cap");
        drop(first);
        assert!(
            limit.admit().is_some(),
            "a closed connection frees its place"
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains(
                r#"tcp_accept_errors_total{direction="inbound",error="max_connections"} 1"#
            ),
            "{text}"
        );
    }
}
