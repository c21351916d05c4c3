//! The workload's private key and its certificate signing request. The key
//! is made in memory with ring (ECDSA P-256) and never written anywhere or
//! sent anywhere: only the CSR, which carries the public half, leaves.

use rcgen::{CertificateParams, DistinguishedName, KeyPair};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// A fresh key and a CSR for one identity.
#[derive(Debug)]
pub struct LocalKey {
    key: KeyPair,
    csr_der: Vec<u8>,
}

impl LocalKey {
    /// Makes a P-256 key and a CSR whose only SAN is `identity` (as a DNS
    /// name) with an empty subject, as the identity service requires.
    pub fn generate(identity: &str) -> Result<Self, rcgen::Error> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(vec![identity.to_owned()])?;
        params.distinguished_name = DistinguishedName::new();
        let csr_der = params.serialize_request(&key)?.der().to_vec();
        Ok(Self { key, csr_der })
    }

    /// The CSR, DER-encoded.
    pub fn csr_der(&self) -> &[u8] {
        &self.csr_der
    }

    /// The private key, for rustls (stays in this process).
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }
}
