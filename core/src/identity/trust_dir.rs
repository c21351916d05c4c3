//! Trust roots that change without a restart: a directory Kubernetes keeps
//! current (a mounted ConfigMap: the control plane's own, or the copy the
//! identity service keeps in each workload's namespace) holding the bundle
//! (`ca-bundle.crt`) and the SHA-256 of the issuer in force
//! (`issuer.sha256`). Polled every [`POLL`]: a new bundle is trusted from
//! the next handshake on, and a new bundle or issuer has the certificate
//! renewed at once, so that after an issuer rotation every workload holds
//! a certificate from the new issuer before anyone stops trusting the old
//! root. A bundle that does not parse, or trusts nothing, is refused and
//! the current roots are kept.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mesh_api::labels::{ISSUER_FINGERPRINT_KEY, TRUST_BUNDLE_KEY};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::sync::{Notify, watch};

use crate::tls::Credentials;

/// How often the directory is read.
pub const POLL: Duration = Duration::from_secs(2);

/// What the directory held when last read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Seen {
    bundle: Option<String>,
    issuer: Option<String>,
}

/// The trust roots' metrics.
#[derive(Debug, Clone, Default)]
pub struct TrustMetrics {
    reloads: Counter,
    refused: Counter,
    anchors: Gauge,
    anchor_info: Family<Vec<(String, String)>, Gauge>,
}

impl TrustMetrics {
    /// Registers `identity_trust_roots_reloads_total`,
    /// `identity_trust_roots_refused_total`, `identity_trust_anchors` and
    /// `identity_trust_anchor_info{sha256}` (what `mesh check --proxy`
    /// compares with the cluster's anchors).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "identity_trust_roots_reloads",
            "Trust bundles or issuers taken from the trust roots directory without a restart",
            metrics.reloads.clone(),
        );
        registry.register(
            "identity_trust_roots_refused",
            "Trust bundles refused (not PEM certificates, or none usable); the previous roots stay",
            metrics.refused.clone(),
        );
        registry.register(
            "identity_trust_anchors",
            "Trust anchors this workload trusts now",
            metrics.anchors.clone(),
        );
        registry.register(
            "identity_trust_anchor_info",
            "Each trust anchor this workload trusts now, by SHA-256 of its DER",
            metrics.anchor_info.clone(),
        );
        metrics
    }

    /// Records the anchors trusted now.
    pub fn set_anchors(&self, roots: &[CertificateDer<'_>]) {
        self.anchors
            .set(i64::try_from(roots.len()).unwrap_or(i64::MAX));
        self.anchor_info.clear();
        for root in roots {
            self.anchor_info
                .get_or_create(&vec![("sha256".to_owned(), crate::tls::sha256_hex(root))])
                .set(1);
        }
    }
}

fn read(dir: &std::path::Path) -> Seen {
    let file = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .ok()
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty())
    };
    Seen {
        bundle: file(TRUST_BUNDLE_KEY),
        issuer: file(ISSUER_FINGERPRINT_KEY),
    }
}

/// Parses a bundle: every certificate in it, or why not.
pub fn parse_bundle(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no certificate in it".into());
    }
    Ok(certs)
}

/// Watches `dir` until `shutdown`: a changed bundle becomes `credentials`'
/// roots, and a changed bundle or issuer wakes `recertify`. `started_with`
/// is the bundle the workload started with (a directory that already holds
/// another one is taken at once).
pub async fn watch(
    dir: PathBuf,
    started_with: String,
    credentials: Arc<Credentials>,
    recertify: Arc<Notify>,
    metrics: TrustMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    if let Ok(roots) = parse_bundle(&started_with) {
        metrics.set_anchors(&roots);
    }
    let mut seen = Seen {
        bundle: Some(started_with.trim().to_owned()),
        issuer: None,
    };
    let mut first = true;
    loop {
        let now = read(&dir);
        // A file not there (yet) is not a change: the copy may not exist.
        let bundle_changed = now.bundle.is_some() && now.bundle != seen.bundle;
        let issuer_changed = now.issuer.is_some() && now.issuer != seen.issuer && !first;
        if bundle_changed && let Some(pem) = &now.bundle {
            match parse_bundle(pem).and_then(|roots| {
                credentials
                    .set_roots(&roots)
                    .map(|()| roots)
                    .map_err(|e| e.to_string())
            }) {
                Ok(roots) => {
                    let count = roots.len();
                    metrics.set_anchors(&roots);
                    metrics.reloads.inc();
                    tracing::info!(dir = %dir.display(), anchors = count, "trusting a new bundle");
                    seen.bundle = now.bundle.clone();
                }
                Err(e) => {
                    metrics.refused.inc();
                    tracing::warn!(dir = %dir.display(), "keeping the current trust roots: the new bundle is unusable: {e}");
                }
            }
        }
        if issuer_changed {
            metrics.reloads.inc();
            tracing::info!(dir = %dir.display(), "the issuer changed");
        }
        if now.issuer.is_some() {
            seen.issuer = now.issuer.clone();
        }
        if (bundle_changed && seen.bundle == now.bundle) || issuer_changed {
            recertify.notify_one();
        }
        first = false;
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}
