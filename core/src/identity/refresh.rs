//! Keeping this workload's certificate fresh: certify at start, renew at
//! 70 % of each certificate's lifetime, and on failure retry with jittered
//! back-off while the current certificate keeps serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rand::RngExt;
use tokio::sync::watch;

use super::client::{self, CertifyError};
use super::schedule::{self, Backoff};
use crate::tls::Credentials;

/// Where and how to obtain certificates.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// The identity service, `host:port`.
    pub addr: String,
    /// The identity the identity service presents.
    pub server_identity: String,
    /// The projected ServiceAccount token (re-read on every renewal).
    pub token_path: PathBuf,
    /// Back-off after failures.
    pub backoff: Backoff,
    /// A directory whose trust bundle and issuer fingerprint are followed
    /// without a restart ([`super::trust_dir`]), with the bundle the
    /// workload started with.
    pub trust_dir: Option<(PathBuf, String)>,
}

/// The client's metrics (Linkerd's names).
#[derive(Debug, Clone, Default)]
pub struct IdentityMetrics {
    expiration: Gauge<f64, std::sync::atomic::AtomicU64>,
    refreshes: Counter,
    failures: Counter,
    trust: super::trust_dir::TrustMetrics,
}

impl IdentityMetrics {
    /// Registers `identity_cert_expiration_timestamp_seconds`,
    /// `identity_cert_refresh_count` and `identity_cert_refresh_failures`,
    /// and the trust roots' ([`super::trust_dir::TrustMetrics`]).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            trust: super::trust_dir::TrustMetrics::register(registry),
            ..Self::default()
        };
        registry.register(
            "identity_cert_expiration_timestamp_seconds",
            "Time when this proxy's current certificate expires, in seconds since the Unix epoch",
            metrics.expiration.clone(),
        );
        registry.register(
            "identity_cert_refresh",
            "Certificates obtained from the identity service",
            metrics.refreshes.clone(),
        );
        registry.register(
            "identity_cert_refresh_failures",
            "Failed attempts to obtain a certificate",
            metrics.failures.clone(),
        );
        metrics
    }

    /// The trust roots' metrics.
    pub fn trust(&self) -> &super::trust_dir::TrustMetrics {
        &self.trust
    }
}

/// Obtains and renews the certificate of `credentials` until `shutdown`
/// turns true. Each new certificate is installed at once; a failure keeps
/// the previous one.
pub async fn run(
    config: IdentityConfig,
    credentials: Arc<Credentials>,
    metrics: IdentityMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let channel = match client::channel(&config.addr, &config.server_identity, &credentials) {
        Ok(channel) => channel,
        Err(e) => {
            tracing::error!("identity client cannot start: {e}");
            return;
        }
    };
    let recertify = Arc::new(tokio::sync::Notify::new());
    if let Some((dir, started_with)) = config.trust_dir.clone() {
        tokio::spawn(super::trust_dir::watch(
            dir,
            started_with,
            credentials.clone(),
            recertify.clone(),
            metrics.trust.clone(),
            shutdown.clone(),
        ));
    }
    let mut failures = 0u32;
    loop {
        let delay = match renew_once(&channel, &config, &credentials).await {
            Ok(valid_until) => {
                failures = 0;
                metrics.refreshes.inc();
                metrics.expiration.set(unix_seconds(valid_until));
                let left = valid_until
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                let delay = schedule::renew_after(left);
                tracing::info!(
                    identity = credentials.local_identity(),
                    "certified; renewing in {delay:?}"
                );
                delay
            }
            Err(e) => {
                metrics.failures.inc();
                let delay = config.backoff.delay(failures, rand::rng().random::<f64>());
                failures = failures.saturating_add(1);
                tracing::warn!(
                    identity = credentials.local_identity(),
                    "certification failed ({e}); retrying in {delay:?}"
                );
                delay
            }
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = recertify.notified() => {
                tracing::info!(
                    identity = credentials.local_identity(),
                    "the trust roots or the issuer changed: certifying again now"
                );
            }
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

async fn renew_once(
    channel: &tonic::transport::Channel,
    config: &IdentityConfig,
    credentials: &Credentials,
) -> Result<SystemTime, CertifyError> {
    let certified = client::certify(
        channel.clone(),
        credentials.local_identity(),
        &config.token_path,
    )
    .await?;
    credentials.set_certificate(certified.chain, certified.key.private_key())?;
    Ok(certified.valid_until)
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}
