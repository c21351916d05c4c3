//! Making trust anchors and issuers, for `mesh install` (when the operator
//! brings none) and for tests: ECDSA P-256, an anchor valid for ten years and
//! an issuer named `identity.<control-ns>.<trust-domain>` valid for one, as
//! Linkerd's documentation has operators make them with `step`.

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
