//! Reading certificates and keys from PEM, in the shapes operators bring:
//! certificate bundles (several trust anchors, or an issuer followed by its
//! chain) and EC private keys in PKCS#8 or SEC1 (`EC PRIVATE KEY`, what
//! `step certificate create` writes).

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Why PEM input could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    /// No certificate in the input.
    #[error("{what}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate {
        /// Which input.
        what: String,
    },
    /// A PEM section could not be decoded.
    #[error("{what}: invalid PEM: {reason}")]
    Invalid {
        /// Which input.
        what: String,
        /// The decoder's reason.
        reason: String,
    },
    /// The key is of a kind we do not sign with.
    #[error(
        "{what}: unsupported private key ({kind}); the issuer key must be ECDSA P-256 in PKCS#8 or SEC1 PEM"
    )]
    UnsupportedKey {
        /// Which input.
        what: String,
        /// What was found.
        kind: &'static str,
    },
}

/// Every certificate in a PEM bundle, in order.
pub fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::Invalid {
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(PemError::NoCertificate {
            what: what.to_owned(),
        });
    }
    Ok(certs)
}

/// The private key in a PEM file as PKCS#8 DER (SEC1 EC keys are wrapped).
pub fn private_key_pkcs8(pem: &[u8], what: &str) -> Result<PrivatePkcs8KeyDer<'static>, PemError> {
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| PemError::Invalid {
        what: what.to_owned(),
        reason: e.to_string(),
    })?;
    match key {
        PrivateKeyDer::Pkcs8(der) => Ok(der.clone_key()),
        PrivateKeyDer::Sec1(der) => Ok(PrivatePkcs8KeyDer::from(sec1_p256_to_pkcs8(
            der.secret_sec1_der(),
        ))),
        PrivateKeyDer::Pkcs1(_) => Err(PemError::UnsupportedKey {
            what: what.to_owned(),
            kind: "RSA",
        }),
        _ => Err(PemError::UnsupportedKey {
            what: what.to_owned(),
            kind: "unknown format",
        }),
    }
}

/// Wraps a SEC1 `ECPrivateKey` in a PKCS#8 `PrivateKeyInfo` naming P-256.
fn sec1_p256_to_pkcs8(sec1: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { id-ecPublicKey, prime256v1 }
    const ALGORITHM: &[u8] = &[
        0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
        0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ];
    let mut body = vec![0x02, 0x01, 0x00]; // version 0
    body.extend_from_slice(ALGORITHM);
    body.push(0x04); // OCTET STRING
    body.extend(der_length(sec1.len()));
    body.extend_from_slice(sec1);
    let mut out = vec![0x30];
    out.extend(der_length(body.len()));
    out.extend(body);
    out
}

fn der_length(len: usize) -> Vec<u8> {
    match len {
        0..=0x7f => vec![len as u8],
        0x80..=0xff => vec![0x81, len as u8],
        _ => vec![0x82, (len >> 8) as u8, len as u8],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A P-256 key as `openssl ecparam -genkey -name prime256v1 -noout`
    /// (and `step`) write it: SEC1, with the curve and public key included.
    const SEC1_KEY: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIFMun5+HoV3X80WzKRBww+PQ64TF9gFx2IrBHneY6kXDoAoGCCqGSM49
AwEHoUQDQgAEG03sgrfV2xHsVR6v5iznuxXAPD4iFPABCc2j157z+gSGwZMJ/piS
bzJL7vak9PEmh9cOhnzpmSbbdBOadZdagA==
-----END EC PRIVATE KEY-----
";

    #[test]
    fn a_sec1_key_is_usable_after_wrapping() {
        let wrapped = private_key_pkcs8(SEC1_KEY.as_bytes(), "test key").expect("sec1 accepted");
        let key = rcgen::KeyPair::try_from(wrapped.secret_pkcs8_der()).expect("ring accepts it");
        assert_eq!(
            key.public_key_raw().len(),
            65,
            "an uncompressed P-256 point"
        );
        assert_eq!(key.public_key_raw()[..3], [0x04, 0x1b, 0x4d]);
    }

    #[test]
    fn an_rsa_key_is_refused_by_name() {
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMAA=\n-----END RSA PRIVATE KEY-----\n";
        let err = private_key_pkcs8(pem.as_bytes(), "issuer key").expect_err("RSA");
        assert!(
            err.to_string().contains("issuer key") && err.to_string().contains("RSA"),
            "{err}"
        );
    }

    #[test]
    fn a_bundle_without_certificates_is_refused() {
        let err = certificates(b"nothing here", "trust anchors").expect_err("empty");
        assert!(err.to_string().contains("trust anchors"), "{err}");
    }
}
