//! What a certificate signing request must be before the CA signs it: a
//! valid self-signature, an ECDSA P-256 key, exactly one DNS SAN equal to the
//! requested identity and nothing else, and a common name that is empty or
//! the identity (the rules Linkerd's identity service applies).

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use x509_parser::prelude::FromDer;

/// Why a CSR is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    /// Not a DER PKCS#10 request.
    #[error("the CSR is not a DER-encoded PKCS#10 request: {0}")]
    Malformed(String),
    /// The self-signature does not verify.
    #[error("the CSR's signature does not verify with its own public key")]
    Signature,
    /// The key is not ECDSA P-256.
    #[error("the CSR's key is {0}; only ECDSA P-256 keys are accepted")]
    KeyAlgorithm(String),
    /// The SANs are not exactly the identity.
    #[error(
        "the CSR must carry exactly one DNS SAN equal to {identity:?} and no other SAN; it has [{found}]"
    )]
    SanMismatch {
        /// The requested identity.
        identity: String,
        /// The SANs found.
        found: String,
    },
    /// The common name is another name.
    #[error("the CSR's common name {found:?} is neither empty nor the identity {identity:?}")]
    CommonName {
        /// The requested identity.
        identity: String,
        /// The CN found.
        found: String,
    },
}

impl CsrError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            CsrError::Malformed(_) => "csr_malformed",
            CsrError::Signature => "csr_signature",
            CsrError::KeyAlgorithm(_) => "csr_key_algorithm",
            CsrError::SanMismatch { .. } | CsrError::CommonName { .. } => "csr_identity_mismatch",
        }
    }
}

/// Checks a CSR for `identity` and returns its SubjectPublicKeyInfo (DER).
pub fn check(der: &[u8], identity: &str) -> Result<Vec<u8>, CsrError> {
    let (rest, csr) =
        X509CertificationRequest::from_der(der).map_err(|e| CsrError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CsrError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    let spki = &csr.certification_request_info.subject_pki;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY
        || curve.as_ref() != Some(&OID_EC_P256)
    {
        let what = match curve {
            Some(curve) if spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY => {
                format!("EC on curve {curve}")
            }
            _ => format!("of algorithm {}", spki.algorithm.algorithm),
        };
        return Err(CsrError::KeyAlgorithm(what));
    }
    csr.verify_signature().map_err(|_| CsrError::Signature)?;

    let mut sans = Vec::new();
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            sans.extend(san.general_names.iter().map(describe));
        }
    }
    if sans != [format!("DNS:{identity}")] {
        return Err(CsrError::SanMismatch {
            identity: identity.to_owned(),
            found: sans.join(", "),
        });
    }
    for cn in csr.certification_request_info.subject.iter_common_name() {
        let cn = cn.as_str().unwrap_or("<not a string>");
        if !cn.is_empty() && cn != identity {
            return Err(CsrError::CommonName {
                identity: identity.to_owned(),
                found: cn.to_owned(),
            });
        }
    }
    Ok(spki.raw.to_vec())
}

fn describe(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::DNSName(dns) => format!("DNS:{dns}"),
        GeneralName::URI(uri) => format!("URI:{uri}"),
        GeneralName::RFC822Name(mail) => format!("email:{mail}"),
        GeneralName::IPAddress(ip) => format!("IP:{ip:?}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Any bytes sent as a CSR are refused with a reason (or, if
        /// they were one, accepted), never a panic.
        #[test]
        fn any_bytes_as_a_csr_are_refused_with_a_reason(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
            if let Err(e) = check(&bytes, "web.shop.serviceaccount.identity.linkerd.cluster.local") {
                prop_assert!(!e.to_string().is_empty());
            }
        }

        /// A real CSR with bytes flipped anywhere is refused, or still
        /// one for the identity: never a certificate for another name.
        #[test]
        fn a_tampered_csr_is_never_accepted_for_another_name(at in any::<prop::sample::Index>(), flip in 1..=255u8) {
            let identity = "web.shop.serviceaccount.identity.linkerd.cluster.local";
            let key = mesh_core::identity::LocalKey::generate(identity).expect("key");
            let mut der = key.csr_der().to_vec();
            let i = at.index(der.len());
            der[i] ^= flip;
            if let Ok(public_key) = check(&der, identity) {
                prop_assert!(!public_key.is_empty());
            }
        }
    }
}
