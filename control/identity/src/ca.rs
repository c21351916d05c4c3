//! The certificate authority: trust roots, the issuer (a CA certificate and
//! key that chain to a root), and signing workload certificates from CSRs.
//!
//! Everything here is pure: no files, no clock (the caller passes `now`), so
//! a rotation or an expiry is a unit test, and the signing rate can be
//! benchmarked alone.

use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use rustls_pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::csr::{self, CsrError};
use crate::pem::{self, PemError};

/// The trust anchors: every root a peer certificate may chain to. Several at
/// once during a rotation.
#[derive(Debug, Clone)]
pub struct TrustRoots {
    certs: Vec<CertificateDer<'static>>,
    pem: String,
}

impl TrustRoots {
    /// Parses a PEM bundle of one or more root certificates.
    pub fn from_pem(pem: &str) -> Result<Self, CaError> {
        let certs = pem::certificates(pem.as_bytes(), "trust anchors")?;
        for (i, cert) in certs.iter().enumerate() {
            let parsed = parse(cert, &format!("trust anchor #{}", i + 1))?;
            if !parsed.is_ca() {
                return Err(CaError::NotCa {
                    what: format!("trust anchor #{} ({})", i + 1, parsed.subject()),
                });
            }
        }
        Ok(Self {
            certs,
            pem: pem.to_owned(),
        })
    }

    /// The roots, DER-encoded.
    pub fn certs(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }

    /// The bundle as it was given.
    pub fn pem(&self) -> &str {
        &self.pem
    }
}

/// How leaf certificates are issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssuancePolicy {
    /// How long a leaf is valid (Linkerd: 24 h).
    pub lifetime: Duration,
    /// How far `not_before` is back-dated, for peers whose clocks run behind
    /// (Linkerd's chart: 20 s).
    pub clock_skew: Duration,
}

/// The longest leaf lifetime accepted: a workload certificate is meant to
/// be short-lived, and X.509 times end in 9999.
pub const MAX_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

impl IssuancePolicy {
    /// Whether the policy can be used: a lifetime that is not zero and at
    /// most [`MAX_LIFETIME`], and a back-dating no longer than that. Checked
    /// at start, so that a setting that would overflow a clock is refused
    /// with the setting's name rather than met with a panic.
    pub fn check(&self) -> Result<(), String> {
        if self.lifetime.is_zero() || self.lifetime > MAX_LIFETIME {
            return Err(format!(
                "the issuance lifetime {} must be more than zero and at most {} (--identity-issuance-lifetime)",
                humantime::format_duration(self.lifetime),
                humantime::format_duration(MAX_LIFETIME)
            ));
        }
        if self.clock_skew > MAX_LIFETIME {
            return Err(format!(
                "the clock skew allowance {} must be at most {} (--identity-clock-skew-allowance)",
                humantime::format_duration(self.clock_skew),
                humantime::format_duration(MAX_LIFETIME)
            ));
        }
        Ok(())
    }
}

impl Default for IssuancePolicy {
    fn default() -> Self {
        Self {
            lifetime: Duration::from_secs(24 * 3600),
            clock_skew: Duration::from_secs(20),
        }
    }
}

/// Why a certificate was not issued.
#[derive(Debug, thiserror::Error)]
pub enum CertifyError {
    /// The request is refused.
    #[error(transparent)]
    Csr(#[from] CsrError),
    /// The system's random source failed, so no serial number.
    #[error("no random serial number: the system's random source failed")]
    Serial,
    /// Signing failed.
    #[error("signing the certificate failed: {0}")]
    Sign(String),
}

impl CertifyError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            CertifyError::Csr(e) => e.reason(),
            CertifyError::Serial => "serial_unavailable",
            CertifyError::Sign(_) => "signing_failed",
        }
    }
}

/// Why the issuer cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// PEM input is unusable.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// A certificate could not be parsed.
    #[error("{what}: not a valid X.509 certificate: {reason}")]
    Parse {
        /// Which certificate.
        what: String,
        /// The parser's reason.
        reason: String,
    },
    /// A certificate that must be a CA is not one.
    #[error("{what} is not a CA certificate (basicConstraints CA:TRUE is required)")]
    NotCa {
        /// Which certificate.
        what: String,
    },
    /// The issuer is not valid at this moment.
    #[error(
        "the issuer certificate ({subject}) is not valid now: valid from {not_before} until {not_after}"
    )]
    NotValidNow {
        /// The issuer's subject.
        subject: String,
        /// Start of validity.
        not_before: String,
        /// End of validity.
        not_after: String,
    },
    /// The issuer does not chain to any trust anchor.
    #[error(
        "the issuer certificate ({subject}, issued by {issuer}) does not chain to any trust anchor ({anchors}); \
         issue it from one of them or add its root to the trust anchors"
    )]
    Untrusted {
        /// The issuer's subject.
        subject: String,
        /// Who signed it.
        issuer: String,
        /// The anchors' subjects.
        anchors: String,
    },
    /// The issuer key does not belong to the issuer certificate.
    #[error("the issuer key does not match the issuer certificate ({subject})")]
    KeyMismatch {
        /// The issuer's subject.
        subject: String,
    },
    /// rcgen refused the key or certificate.
    #[error("the issuer key or certificate cannot sign: {0}")]
    Signer(#[from] rcgen::Error),
}

/// A certificate issued to a workload.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The leaf.
    pub leaf: CertificateDer<'static>,
    /// The issuer and anything between it and the root.
    pub intermediates: Vec<CertificateDer<'static>>,
    /// The leaf's `not_after`.
    pub valid_until: SystemTime,
}

/// The issuer: signs workload certificates.
#[derive(Debug)]
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    chain: Vec<CertificateDer<'static>>,
    subject: String,
    not_after: SystemTime,
    policy: IssuancePolicy,
}

impl Ca {
    /// Loads the issuer from its certificate chain and key (PEM), checking
    /// that it is a CA, valid at `now`, owns the key, and chains to `roots`.
    pub fn new(
        chain_pem: &str,
        key_pem: &str,
        roots: &TrustRoots,
        policy: IssuancePolicy,
        now: SystemTime,
    ) -> Result<Self, CaError> {
        let chain = pem::certificates(chain_pem.as_bytes(), "issuer certificate")?;
        let key_der = pem::private_key_pkcs8(key_pem.as_bytes(), "issuer key")?;
        let key = KeyPair::try_from(key_der.secret_pkcs8_der())?;

        let issuer_cert = parse(&chain[0], "issuer certificate")?;
        let subject = issuer_cert.subject().to_string();
        if !issuer_cert.is_ca() {
            return Err(CaError::NotCa {
                what: format!("the issuer certificate ({subject})"),
            });
        }
        let validity = issuer_cert.validity();
        let now_secs = unix_seconds(now);
        if now_secs < validity.not_before.timestamp() || now_secs > validity.not_after.timestamp() {
            return Err(CaError::NotValidNow {
                subject,
                not_before: validity.not_before.to_string(),
                not_after: validity.not_after.to_string(),
            });
        }
        if issuer_cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CaError::KeyMismatch { subject });
        }
        verify_chain(&chain, roots)?;
        let not_after = SystemTime::UNIX_EPOCH
            + Duration::from_secs(u64::try_from(validity.not_after.timestamp()).unwrap_or(0));
        let issuer = Issuer::from_ca_cert_der(&chain[0], key)?;
        Ok(Self {
            issuer,
            chain,
            subject,
            not_after,
            policy,
        })
    }

    /// The issuer certificate's subject.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// When the issuer certificate expires.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The issuer certificate and its chain, as sent to workloads.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// Checks a DER CSR for `identity` and signs a leaf for it: the identity
    /// as DNS SAN and common name, `spiffe_id` as URI SAN, valid from
    /// `now - clock_skew` for the policy's lifetime (never past the issuer's
    /// own expiry).
    pub fn certify(
        &self,
        identity: &str,
        spiffe_id: &str,
        csr_der: &[u8],
        now: SystemTime,
    ) -> Result<Issued, CertifyError> {
        let spki = csr::check(csr_der, identity)?;
        let public_key = SubjectPublicKeyInfo::from_der(&spki)
            .map_err(|e| CsrError::Malformed(e.to_string()))?;

        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, identity);
        params.subject_alt_names = vec![
            SanType::DnsName(
                identity
                    .try_into()
                    .map_err(|e: rcgen::Error| CsrError::Malformed(e.to_string()))?,
            ),
            SanType::URI(
                spiffe_id
                    .try_into()
                    .map_err(|e: rcgen::Error| CsrError::Malformed(e.to_string()))?,
            ),
        ];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.serial_number = Some(random_serial(|bytes| {
            use ring::rand::SecureRandom;
            ring::rand::SystemRandom::new().fill(bytes)
        })?);
        let not_before = now.checked_sub(self.policy.clock_skew).unwrap_or(now);
        let valid_until = now
            .checked_add(self.policy.lifetime)
            .map_or(self.not_after, |until| until.min(self.not_after));
        params.not_before = not_before.into();
        params.not_after = valid_until.into();
        let leaf = params
            .signed_by(&public_key, &self.issuer)
            .map_err(|e| CertifyError::Sign(e.to_string()))?;
        Ok(Issued {
            leaf: leaf.der().clone(),
            intermediates: self.chain.clone(),
            // X.509 times have whole seconds.
            valid_until: SystemTime::UNIX_EPOCH
                + Duration::from_secs(u64::try_from(unix_seconds(valid_until)).unwrap_or(0)),
        })
    }
}

/// Checks that each certificate of `chain` is signed by the next, and the
/// last by one of the roots (or is itself a root); returns that root's index.
pub fn verify_chain(chain: &[CertificateDer<'_>], roots: &TrustRoots) -> Result<usize, CaError> {
    let parsed: Vec<X509Certificate<'_>> = chain
        .iter()
        .enumerate()
        .map(|(i, der)| parse(der, &format!("issuer chain certificate #{}", i + 1)))
        .collect::<Result<_, _>>()?;
    let untrusted = || {
        let anchors: Vec<String> = roots
            .certs()
            .iter()
            .filter_map(|r| {
                X509Certificate::from_der(r)
                    .ok()
                    .map(|(_, c)| c.subject().to_string())
            })
            .collect();
        CaError::Untrusted {
            subject: parsed[0].subject().to_string(),
            issuer: parsed[0].issuer().to_string(),
            anchors: anchors.join("; "),
        }
    };
    for pair in parsed.windows(2) {
        pair[0]
            .verify_signature(Some(pair[1].public_key()))
            .map_err(|_| untrusted())?;
    }
    let last = parsed.last().ok_or_else(untrusted)?;
    roots
        .certs()
        .iter()
        .position(|root| {
            root.as_ref() == chain[chain.len() - 1].as_ref()
                || X509Certificate::from_der(root).is_ok_and(|(_, root)| {
                    root.subject() == last.issuer()
                        && last.verify_signature(Some(root.public_key())).is_ok()
                })
        })
        .ok_or_else(untrusted)
}

pub(crate) fn parse<'a>(
    der: &'a CertificateDer<'_>,
    what: &str,
) -> Result<X509Certificate<'a>, CaError> {
    X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|e| CaError::Parse {
            what: what.to_owned(),
            reason: e.to_string(),
        })
}

pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// A positive 128-bit random serial number from `fill`. A failed fill is
/// an error: every certificate would otherwise carry the same serial, and
/// revocation and audit tell certificates apart by it.
fn random_serial(
    fill: impl FnOnce(&mut [u8]) -> Result<(), ring::error::Unspecified>,
) -> Result<SerialNumber, CertifyError> {
    let mut bytes = [0u8; 16];
    fill(&mut bytes).map_err(|_| CertifyError::Serial)?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lifetime_that_would_overflow_is_refused_naming_the_setting() {
        let policy = |lifetime: Duration, clock_skew: Duration| IssuancePolicy {
            lifetime,
            clock_skew,
        };
        assert_eq!(IssuancePolicy::default().check(), Ok(()));
        let huge = policy(Duration::from_secs(u64::MAX), Duration::ZERO)
            .check()
            .expect_err("overflows a clock");
        assert!(huge.contains("--identity-issuance-lifetime"), "{huge}");
        assert!(policy(Duration::ZERO, Duration::ZERO).check().is_err());
        let skew = policy(Duration::from_secs(60), Duration::from_secs(u64::MAX))
            .check()
            .expect_err("back-dated before the epoch");
        assert!(skew.contains("--identity-clock-skew-allowance"), "{skew}");
    }

    #[test]
    fn a_failed_random_source_issues_no_certificate() {
        let err = random_serial(|_| Err(ring::error::Unspecified)).expect_err("no serial");
        assert!(matches!(err, CertifyError::Serial), "{err}");
        assert_eq!(err.reason(), "serial_unavailable");
        let one = random_serial(|b| {
            b.fill(0xff);
            Ok(())
        })
        .expect("serial");
        assert_eq!(
            one.as_ref()[0],
            0x7f,
            "the serial is positive (top bit cleared)"
        );
    }
    use crate::generate::{self, CertAndKey};
    use mesh_core::identity::LocalKey;

    const DAY: Duration = Duration::from_secs(24 * 3600);
    const ID: &str = "web.shop.serviceaccount.identity.linkerd.cluster.local";
    const SPIFFE: &str = "spiffe://cluster.local/ns/shop/sa/web";

    fn anchor_and_issuer(now: SystemTime) -> (CertAndKey, CertAndKey) {
        let anchor = generate::trust_anchor("root.linkerd.cluster.local", now - DAY, 3650 * DAY)
            .expect("anchor");
        let issuer = generate::issuer(
            &anchor,
            "identity.linkerd.cluster.local",
            now - DAY,
            365 * DAY,
        )
        .expect("issuer");
        (anchor, issuer)
    }

    fn ca(now: SystemTime) -> (Ca, TrustRoots) {
        let (anchor, issuer) = anchor_and_issuer(now);
        let roots = TrustRoots::from_pem(&anchor.cert_pem).expect("roots");
        let ca = Ca::new(
            &issuer.cert_pem,
            &issuer.key_pem,
            &roots,
            IssuancePolicy::default(),
            now,
        )
        .expect("ca");
        (ca, roots)
    }

    #[test]
    fn a_leaf_carries_the_identity_and_lives_24h_back_dated_20s() {
        let now = SystemTime::now();
        let (ca, _) = ca(now);
        let key = LocalKey::generate(ID).expect("key");
        let issued = ca.certify(ID, SPIFFE, key.csr_der(), now).expect("issued");
        let (_, leaf) = X509Certificate::from_der(&issued.leaf).expect("leaf parses");
        let validity = leaf.validity();
        let now_s = unix_seconds(now);
        assert_eq!(validity.not_before.timestamp(), now_s - 20);
        assert_eq!(validity.not_after.timestamp(), now_s + 24 * 3600);
        assert_eq!(unix_seconds(issued.valid_until), now_s + 24 * 3600);
        let san = leaf
            .subject_alternative_name()
            .expect("san")
            .expect("present");
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect();
        assert_eq!(
            names,
            [format!("DNSName({ID:?})"), format!("URI({SPIFFE:?})")]
        );
        assert!(!leaf.is_ca());
        assert_eq!(issued.intermediates.len(), 1);
        let (_, issuer) = X509Certificate::from_der(&issued.intermediates[0]).expect("issuer");
        leaf.verify_signature(Some(issuer.public_key()))
            .expect("signed by the issuer");
    }

    #[test]
    fn a_leaf_never_outlives_its_issuer() {
        let now = SystemTime::now();
        let anchor = generate::trust_anchor("root", now - DAY, 3650 * DAY).expect("anchor");
        let issuer = generate::issuer(
            &anchor,
            "identity.linkerd.cluster.local",
            now - DAY,
            2 * DAY,
        )
        .expect("issuer");
        let roots = TrustRoots::from_pem(&anchor.cert_pem).expect("roots");
        let policy = IssuancePolicy {
            lifetime: 30 * DAY,
            ..IssuancePolicy::default()
        };
        let ca = Ca::new(&issuer.cert_pem, &issuer.key_pem, &roots, policy, now).expect("ca");
        let key = LocalKey::generate(ID).expect("key");
        let issued = ca.certify(ID, SPIFFE, key.csr_der(), now).expect("issued");
        assert_eq!(issued.valid_until, ca.not_after());
    }

    #[test]
    fn each_bad_csr_is_refused_with_its_own_reason() {
        let now = SystemTime::now();
        let (ca, _) = ca(now);
        let other = LocalKey::generate("other.shop.serviceaccount.identity.linkerd.cluster.local")
            .expect("key");
        let err = ca
            .certify(ID, SPIFFE, other.csr_der(), now)
            .expect_err("another identity");
        assert!(
            matches!(err, CertifyError::Csr(CsrError::SanMismatch { .. })),
            "{err}"
        );

        let mut forged = LocalKey::generate(ID).expect("key").csr_der().to_vec();
        let last = forged.len() - 1;
        forged[last] ^= 0xff;
        let err = ca
            .certify(ID, SPIFFE, &forged, now)
            .expect_err("bad signature");
        assert!(
            matches!(
                err,
                CertifyError::Csr(CsrError::Signature | CsrError::Malformed(_))
            ),
            "{err}"
        );

        let err = ca
            .certify(ID, SPIFFE, b"not a csr", now)
            .expect_err("garbage");
        assert!(
            matches!(err, CertifyError::Csr(CsrError::Malformed(_))),
            "{err}"
        );

        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("p384");
        let mut params = CertificateParams::new(vec![ID.to_owned()]).expect("params");
        params.distinguished_name = DistinguishedName::new();
        let csr = params.serialize_request(&p384).expect("csr");
        let err = ca.certify(ID, SPIFFE, csr.der(), now).expect_err("P-384");
        assert!(
            matches!(err, CertifyError::Csr(CsrError::KeyAlgorithm(_))),
            "{err}"
        );

        let p256 = rcgen::KeyPair::generate().expect("p256");
        let mut two = CertificateParams::new(vec![ID.to_owned(), "evil.example.com".to_owned()])
            .expect("params");
        two.distinguished_name = DistinguishedName::new();
        let csr = two.serialize_request(&p256).expect("csr");
        let err = ca
            .certify(ID, SPIFFE, csr.der(), now)
            .expect_err("two SANs");
        assert!(err.to_string().contains("evil.example.com"), "{err}");

        let mut cn = CertificateParams::new(vec![ID.to_owned()]).expect("params");
        cn.distinguished_name.push(DnType::CommonName, "admin");
        let csr = cn.serialize_request(&p256).expect("csr");
        let err = ca
            .certify(ID, SPIFFE, csr.der(), now)
            .expect_err("other CN");
        assert!(
            matches!(err, CertifyError::Csr(CsrError::CommonName { .. })),
            "{err}"
        );
    }

    #[test]
    fn an_issuer_from_another_root_is_refused_by_name() {
        let now = SystemTime::now();
        let (anchor, _) = anchor_and_issuer(now);
        let (_, foreign) = anchor_and_issuer(now);
        let roots = TrustRoots::from_pem(&anchor.cert_pem).expect("roots");
        let err = Ca::new(
            &foreign.cert_pem,
            &foreign.key_pem,
            &roots,
            IssuancePolicy::default(),
            now,
        )
        .expect_err("foreign issuer");
        assert!(matches!(err, CaError::Untrusted { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("does not chain to any trust anchor"),
            "{err}"
        );
    }

    #[test]
    fn an_expired_or_mismatched_issuer_is_refused() {
        let now = SystemTime::now();
        let (anchor, issuer) = anchor_and_issuer(now);
        let roots = TrustRoots::from_pem(&anchor.cert_pem).expect("roots");
        let later = now + 400 * DAY;
        let err = Ca::new(
            &issuer.cert_pem,
            &issuer.key_pem,
            &roots,
            IssuancePolicy::default(),
            later,
        )
        .expect_err("expired");
        assert!(matches!(err, CaError::NotValidNow { .. }), "{err}");
        let err = Ca::new(
            &issuer.cert_pem,
            &anchor.key_pem,
            &roots,
            IssuancePolicy::default(),
            now,
        )
        .expect_err("wrong key");
        assert!(matches!(err, CaError::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn two_anchors_accept_issuers_from_either() {
        let now = SystemTime::now();
        let (old_anchor, old_issuer) = anchor_and_issuer(now);
        let (new_anchor, new_issuer) = anchor_and_issuer(now);
        let bundle = format!("{}{}", old_anchor.cert_pem, new_anchor.cert_pem);
        let roots = TrustRoots::from_pem(&bundle).expect("two roots");
        assert_eq!(roots.certs().len(), 2);
        for issuer in [old_issuer, new_issuer] {
            Ca::new(
                &issuer.cert_pem,
                &issuer.key_pem,
                &roots,
                IssuancePolicy::default(),
                now,
            )
            .expect("accepted");
        }
    }
}
