//! Making trust anchors and issuers, for `mesh install` (when the operator
//! brings none) and for tests: ECDSA P-256, an anchor valid for ten years and
//! an issuer named `identity.<control-ns>.<trust-domain>` valid for one, as
//! Linkerd's documentation has operators make them with `step`.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate and its key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct CertAndKey {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

fn ca_params(
    common_name: &str,
    not_before: SystemTime,
    lifetime: Duration,
    path_len: Option<u8>,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = not_before.into();
    params.not_after = (not_before + lifetime).into();
    params
}

/// A self-signed root named `common_name`, valid from `not_before`.
pub fn trust_anchor(
    common_name: &str,
    not_before: SystemTime,
    lifetime: Duration,
) -> Result<CertAndKey, rcgen::Error> {
    let key = KeyPair::generate()?;
    let cert = ca_params(common_name, not_before, lifetime, Some(1)).self_signed(&key)?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// An intermediate CA named `common_name` signed by `anchor`.
pub fn issuer(
    anchor: &CertAndKey,
    common_name: &str,
    not_before: SystemTime,
    lifetime: Duration,
) -> Result<CertAndKey, rcgen::Error> {
    let anchor_key = KeyPair::from_pem(&anchor.key_pem)?;
    let anchor_issuer = Issuer::from_ca_cert_pem(&anchor.cert_pem, anchor_key)?;
    let key = KeyPair::generate()?;
    let cert =
        ca_params(common_name, not_before, lifetime, Some(0)).signed_by(&key, &anchor_issuer)?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Ten years, the anchor lifetime Linkerd's docs use.
pub const ANCHOR_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// One year, the issuer lifetime Linkerd's docs use.
pub const ISSUER_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// Why shared trust material could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SharedTrustError {
    /// Generating a certificate failed.
    #[error("generating the trust material: {0}")]
    Generate(#[from] rcgen::Error),
    /// Writing it failed.
    #[error("writing the trust material to {dir}: {source}")]
    Write {
        /// The directory.
        dir: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// One trust anchor (`ca.crt`) and an issuer per cluster
/// (`<cluster>.crt`, `<cluster>.key`) in `dir`, as the multicluster guides
/// set clusters up; made once (kept when `dir/ca.crt` exists) and written
/// whole or not at all (built beside `dir`, then renamed).
pub fn shared_trust(dir: &Path, clusters: &[&str]) -> Result<(), SharedTrustError> {
    if dir.join("ca.crt").exists() {
        return Ok(());
    }
    let failed = |source: std::io::Error| SharedTrustError::Write {
        dir: dir.display().to_string(),
        source,
    };
    let tmp = dir.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(failed)?;
    let now = SystemTime::now();
    let anchor = trust_anchor("root.linkerd.cluster.local", now, ANCHOR_LIFETIME)?;
    for cluster in clusters {
        let issuer = issuer(
            &anchor,
            "identity.linkerd.cluster.local",
            now,
            ISSUER_LIFETIME,
        )?;
        std::fs::write(tmp.join(format!("{cluster}.crt")), &issuer.cert_pem).map_err(failed)?;
        std::fs::write(tmp.join(format!("{cluster}.key")), &issuer.key_pem).map_err(failed)?;
    }
    std::fs::write(tmp.join("ca.crt"), &anchor.cert_pem).map_err(failed)?;
    std::fs::rename(&tmp, dir).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_trust_is_made_once_with_an_issuer_per_cluster_under_one_anchor() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("trust");
        shared_trust(&dir, &["west", "east"]).expect("made");
        let anchor = std::fs::read_to_string(dir.join("ca.crt")).expect("anchor");
        for cluster in ["west", "east"] {
            let issuer =
                std::fs::read_to_string(dir.join(format!("{cluster}.crt"))).expect("issuer");
            let key = std::fs::read_to_string(dir.join(format!("{cluster}.key"))).expect("key");
            let roots = crate::ca::TrustRoots::from_pem(&anchor).expect("anchor");
            crate::ca::Ca::new(
                &issuer,
                &key,
                &roots,
                crate::ca::IssuancePolicy::default(),
                SystemTime::now(),
            )
            .expect("each issuer chains to the one anchor");
        }
        shared_trust(&dir, &["west", "east"]).expect("kept");
        assert_eq!(
            std::fs::read_to_string(dir.join("ca.crt")).expect("anchor"),
            anchor,
            "a second call keeps what the first made"
        );
        assert!(!dir.with_extension("tmp").exists());
    }
}
