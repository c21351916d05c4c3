//! The webhook's serving certificate, kept in step with its files.
//!
//! The API server trusts the injector through the webhook's `caBundle`;
//! when the certificate Secret changes (a re-install, a rotation, cert-manager
//! renewing it) the kubelet rewrites the mounted files, and a webhook that
//! kept serving the old certificate would fail every admission call. So
//! the files are read again every [`RELOAD_PERIOD`], and a new pair is used
//! from the next handshake on; a pair that does not load (half-written,
//! key and certificate from different rotations) is logged and the last
//! good one stays.
//!
//! What is served is also published as metrics, so that `mesh check` can
//! compare the certificate the injector actually serves with the one the
//! API server is told to trust: `injector_serving_certificate_info{sha256}`
//! and `injector_serving_certificate_expiration_timestamp_seconds`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// How often the certificate files are read again.
pub const RELOAD_PERIOD: Duration = Duration::from_secs(5);

/// Why a certificate and key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    /// A file could not be read or parsed.
    #[error("{path}: {reason}")]
    File {
        /// Which file.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// The key does not fit the certificate, or is of a kind rustls cannot use.
    #[error("{cert} with {key}: {reason}")]
    Mismatch {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
        /// What was wrong.
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Fingerprint {
    sha256: String,
}

/// The certificate and key being served, reloaded from their files.
#[derive(Debug)]
pub struct ServingCertificate {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<Loaded>,
    info: Family<Fingerprint, Gauge>,
    expiry: Gauge,
    reloads: Counter,
}

#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    files: (Vec<u8>, Vec<u8>),
    sha256: String,
}

impl Loaded {
    /// When the leaf expires (Unix seconds).
    fn not_after(&self) -> Option<i64> {
        let leaf = self.key.cert.first()?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
        Some(cert.validity().not_after.timestamp())
    }
}

impl ServingCertificate {
    /// Loads the pair at `cert_path` and `key_path`, registering its
    /// metrics in `registry`.
    pub fn load(
        cert_path: &Path,
        key_path: &Path,
        registry: &mut Registry,
    ) -> Result<Arc<Self>, ServingError> {
        let files = read_pair(cert_path, key_path)?;
        let loaded = parse(cert_path, key_path, files)?;
        let serving = Arc::new(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: ArcSwap::from_pointee(loaded),
            info: Family::default(),
            expiry: Gauge::default(),
            reloads: Counter::default(),
        });
        registry.register(
            "injector_serving_certificate_info",
            "The certificate the webhook serves, by SHA-256 of its DER",
            serving.info.clone(),
        );
        registry.register(
            "injector_serving_certificate_expiration_timestamp_seconds",
            "When the served certificate expires",
            serving.expiry.clone(),
        );
        registry.register(
            "injector_serving_certificate_reloads",
            "How many times a changed certificate was loaded from its files",
            serving.reloads.clone(),
        );
        serving.publish();
        Ok(serving)
    }

    /// The SHA-256 of the served leaf certificate (lower-case hex).
    pub fn sha256(&self) -> String {
        self.current.load().sha256.clone()
    }

    /// Reads the files again and serves them when they changed and load;
    /// whether a new certificate is now served.
    pub fn reload(&self) -> Result<bool, ServingError> {
        let files = read_pair(&self.cert_path, &self.key_path)?;
        if self.current.load().files == files {
            return Ok(false);
        }
        let loaded = parse(&self.cert_path, &self.key_path, files)?;
        self.current.store(Arc::new(loaded));
        self.reloads.inc();
        self.publish();
        Ok(true)
    }

    /// Reloads every [`RELOAD_PERIOD`] until `stop` completes.
    pub async fn keep_fresh(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(RELOAD_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = &mut stop => return,
            }
            match self.reload() {
                Ok(true) => {
                    tracing::info!(sha256 = %self.sha256(), "serving the new webhook certificate")
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    "the webhook certificate files changed but do not load: {e}; still serving sha256 {}",
                    self.sha256()
                ),
            }
        }
    }

    fn publish(&self) {
        let current = self.current.load();
        self.info.clear();
        self.info
            .get_or_create(&Fingerprint {
                sha256: current.sha256.clone(),
            })
            .set(1);
        if let Some(not_after) = current.not_after() {
            self.expiry.set(not_after);
        }
    }

    /// Whether the certificate being served is valid now (not expired).
    pub fn is_current(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.current
            .load()
            .not_after()
            .is_some_and(|not_after| i64::try_from(now).is_ok_and(|now| now < not_after))
    }

    /// A rustls server configuration serving this certificate (HTTP/2 and
    /// HTTP/1.1, as the API server speaks either).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for ServingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().key.clone())
    }
}

fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), ServingError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| ServingError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    };
    Ok((read(cert)?, read(key)?))
}

fn parse(
    cert_path: &Path,
    key_path: &Path,
    files: (Vec<u8>, Vec<u8>),
) -> Result<Loaded, ServingError> {
    let file_error = |path: &Path, reason: String| ServingError::File {
        path: path.display().to_string(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&files.0)
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(cert_path, e.to_string()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| file_error(cert_path, "no PEM certificate in it".into()))?;
    let sha256 = mesh_core::tls::sha256_hex(leaf);
    let key =
        PrivateKeyDer::from_pem_slice(&files.1).map_err(|e| file_error(key_path, e.to_string()))?;
    let mismatch = |reason: String| ServingError::Mismatch {
        cert: cert_path.display().to_string(),
        key: key_path.display().to_string(),
        reason,
    };
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| mismatch(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| mismatch(e.to_string()))?;
    Ok(Loaded {
        key: Arc::new(certified),
        files,
        sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_changed_pair_is_served_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let first = pair("first.linkerd.svc");
        std::fs::write(&cert, &first.0).expect("write");
        std::fs::write(&key, &first.1).expect("write");
        let mut registry = Registry::default();
        let serving = ServingCertificate::load(&cert, &key, &mut registry).expect("loads");
        let before = serving.sha256();
        assert!(
            !serving.reload().expect("reads"),
            "unchanged files: nothing to do"
        );

        // A certificate from one rotation with the key of another is refused.
        let second = pair("second.linkerd.svc");
        std::fs::write(&cert, &second.0).expect("write");
        assert!(matches!(
            serving.reload(),
            Err(ServingError::Mismatch { .. })
        ));
        assert_eq!(serving.sha256(), before, "the last good pair stays");

        std::fs::write(&key, &second.1).expect("write");
        assert!(serving.reload().expect("loads"), "the new pair is served");
        assert_ne!(serving.sha256(), before);
        let mut page = String::new();
        prometheus_client::encoding::text::encode(&mut page, &registry).expect("encode");
        assert!(
            page.contains(&format!(
                "injector_serving_certificate_info{{sha256=\"{}\"}} 1",
                serving.sha256()
            )),
            "{page}"
        );
        assert!(
            !page.contains(&before),
            "the old certificate is no longer published: {page}"
        );
    }

    #[test]
    fn an_expired_certificate_is_not_current() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let (fresh_cert, fresh_key) = pair("fresh.linkerd.svc");
        std::fs::write(&cert, &fresh_cert).expect("write");
        std::fs::write(&key, &fresh_key).expect("write");
        let serving =
            ServingCertificate::load(&cert, &key, &mut Registry::default()).expect("loads");
        assert!(serving.is_current());

        let expired_key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["old.linkerd.svc".to_owned()]).expect("params");
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let expired = params.self_signed(&expired_key).expect("cert");
        std::fs::write(&cert, expired.pem()).expect("write");
        std::fs::write(&key, expired_key.serialize_pem()).expect("write");
        assert!(serving.reload().expect("loads"));
        assert!(
            !serving.is_current(),
            "an injector serving an expired certificate is not ready"
        );
    }
}
