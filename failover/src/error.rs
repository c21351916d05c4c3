//! What can go wrong in the failover controller's library, as typed errors
//! (the binary adds its own context).

/// A failure of the failover controller or of one of its reads and writes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A GET (a metrics page, a Prometheus query) failed or did not answer 200.
    #[error("GET http://{authority}{path}: {reason}")]
    Fetch {
        /// `host:port`.
        authority: String,
        /// The path and query.
        path: String,
        /// Why.
        reason: String,
    },
    /// A Prometheus URL is not usable.
    #[error("Prometheus URL {url:?}: {reason}")]
    PrometheusUrl {
        /// The URL as given.
        url: String,
        /// Why.
        reason: String,
    },
    /// Prometheus answered, but not with a result.
    #[error("Prometheus: {0}")]
    Prometheus(String),
    /// A watch stopped before it had listed its kind.
    #[error("watching {what}: {source}")]
    Watch {
        /// The kind.
        what: &'static str,
        /// The store's error.
        source: kube::runtime::reflector::store::WriterDropped,
    },
    /// The Kubernetes API refused a write.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// A status could not be encoded.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}
