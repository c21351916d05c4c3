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

impl Default for IssuancePolicy {
    fn default() -> Self {
        Self {
            lifetime: Duration::from_secs(24 * 3600),
            clock_skew: Duration::from_secs(20),
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
    #[error("the issuer certificate ({subject}) is not valid now: valid from {not_before} until {not_after}")]
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
    ) -> Result<Issued, CsrError> {
        let spki = csr::check(csr_der, identity)?;
        let public_key = SubjectPublicKeyInfo::from_der(&spki).map_err(|e| CsrError::Malformed(e.to_string()))?;

        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, identity);
        params.subject_alt_names = vec![
            SanType::DnsName(identity.try_into().map_err(|e: rcgen::Error| CsrError::Malformed(e.to_string()))?),
            SanType::URI(spiffe_id.try_into().map_err(|e: rcgen::Error| CsrError::Malformed(e.to_string()))?),
        ];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.serial_number = Some(random_serial());
        let not_before = now.checked_sub(self.policy.clock_skew).unwrap_or(now);
        let valid_until = (now + self.policy.lifetime).min(self.not_after);
        params.not_before = not_before.into();
        params.not_after = valid_until.into();
        let leaf = params
            .signed_by(&public_key, &self.issuer)
            .map_err(|e| CsrError::Malformed(e.to_string()))?;
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
/// last by one of the roots (or is itself a root).
fn verify_chain(chain: &[CertificateDer<'static>], roots: &TrustRoots) -> Result<(), CaError> {
    let parsed: Vec<X509Certificate<'_>> = chain
        .iter()
        .enumerate()
        .map(|(i, der)| parse(der, &format!("issuer chain certificate #{}", i + 1)))
        .collect::<Result<_, _>>()?;
    let untrusted = || {
        let anchors: Vec<String> = roots
            .certs()
            .iter()
            .filter_map(|r| X509Certificate::from_der(r).ok().map(|(_, c)| c.subject().to_string()))
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
    let anchored = roots.certs().iter().any(|root| {
        root.as_ref() == chain[chain.len() - 1].as_ref()
            || X509Certificate::from_der(root).is_ok_and(|(_, root)| {
                root.subject() == last.issuer() && last.verify_signature(Some(root.public_key())).is_ok()
            })
    });
    if anchored { Ok(()) } else { Err(untrusted()) }
}

fn parse<'a>(der: &'a CertificateDer<'_>, what: &str) -> Result<X509Certificate<'a>, CaError> {
    X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|e| CaError::Parse {
            what: what.to_owned(),
            reason: e.to_string(),
        })
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// A positive 128-bit random serial number.
fn random_serial() -> SerialNumber {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    // The system RNG does not fail on Linux; a zero serial would still be a
    // valid (if unhelpful) serial, so a failure is not fatal.
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}
