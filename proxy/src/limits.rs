//! Bounds on the work one peer can make a listener do: a cap on the
//! connections a listener holds at once (a connection over it is closed
//! as soon as it is accepted, and counted), and the accept errors counted
//! when a bound bites (`tcp_accept_errors_total{direction, error}`). The
//! time bounds (detection, the TLS handshake, the transport header) are
//! the listener's detection timeout; HTTP/2 and QUIC stream caps are set
//! where those servers are built.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a connection was dropped before it was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AcceptError {
    /// The listener already held its maximum of connections.
    MaxConnections,
    /// The client did not finish its TLS handshake in time.
    TlsHandshakeTimeout,
    /// The client did not send its whole transport header in time.
    TransportHeaderTimeout,
}

impl AcceptError {
    fn label(self) -> &'static str {
        match self {
            Self::MaxConnections => "max_connections",
            Self::TlsHandshakeTimeout => "tls_handshake_timeout",
            Self::TransportHeaderTimeout => "transport_header_timeout",
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

#[cfg(test)]
mod tests {
    use super::*;

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
