//! Describing certificates for people: what identity a certificate carries,
//! who issued it, how long it is valid, and which trust anchor the chain
//! leads to (`mesh identity inspect`).

use std::time::SystemTime;

use serde::Serialize;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::ca::{self, CaError, TrustRoots};
use crate::pem::{self, PemError};

/// One certificate, described.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CertificateReport {
    /// The subject DN.
    pub subject: String,
    /// The issuer DN.
    pub issuer: String,
    /// DNS SANs: the workload identity, for a mesh leaf.
    pub identities: Vec<String>,
    /// URI SANs (the SPIFFE ID).
    pub uris: Vec<String>,
    /// Whether it is a CA.
    pub is_ca: bool,
    /// Start of validity (RFC 2822-like, UTC).
    pub not_before: String,
    /// End of validity.
    pub not_after: String,
    /// Seconds until it expires (negative once expired).
    pub expires_in_seconds: i64,
    /// The serial number, hex.
    pub serial: String,
}

/// A chain, described, and its anchor when trust anchors were given.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChainReport {
    /// Each certificate, in file order.
    pub certificates: Vec<CertificateReport>,
    /// The subject of the anchor the chain leads to.
    pub anchor: Option<String>,
    /// Why the chain does not lead to any anchor.
    pub untrusted: Option<String>,
}

/// Describes the certificates in `pem_bytes`; checks them against `roots`.
pub fn inspect(
    pem_bytes: &[u8],
    roots: Option<&TrustRoots>,
    now: SystemTime,
) -> Result<ChainReport, PemError> {
    let chain = pem::certificates(pem_bytes, "the certificate file")?;
    let mut certificates = Vec::new();
    for (i, der) in chain.iter().enumerate() {
        let cert =
            ca::parse(der, &format!("certificate #{}", i + 1)).map_err(|e| PemError::Invalid {
                what: format!("certificate #{}", i + 1),
                reason: e.to_string(),
            })?;
        certificates.push(describe(&cert, now));
    }
    let (anchor, untrusted) = match roots {
        None => (None, None),
        Some(roots) => match ca::verify_chain(&chain, roots) {
            Ok(index) => (
                roots
                    .certs()
                    .get(index)
                    .and_then(|r| ca::parse(r, "anchor").ok())
                    .map(|r| r.subject().to_string()),
                None,
            ),
            Err(e @ CaError::Untrusted { .. }) => (None, Some(e.to_string())),
            Err(e) => (None, Some(e.to_string())),
        },
    };
    Ok(ChainReport {
        certificates,
        anchor,
        untrusted,
    })
}

fn describe(cert: &X509Certificate<'_>, now: SystemTime) -> CertificateReport {
    let mut identities = Vec::new();
    let mut uris = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => identities.push((*dns).to_owned()),
                GeneralName::URI(uri) => uris.push((*uri).to_owned()),
                _ => {}
            }
        }
    }
    let validity = cert.validity();
    CertificateReport {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        identities,
        uris,
        is_ca: cert.is_ca(),
        not_before: validity.not_before.to_string(),
        not_after: validity.not_after.to_string(),
        expires_in_seconds: validity.not_after.timestamp() - ca::unix_seconds(now),
        serial: cert.raw_serial_as_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::generate;

    #[test]
    fn an_issuer_is_traced_to_its_anchor() {
        let now = SystemTime::now();
        let day = Duration::from_secs(86400);
        let anchor =
            generate::trust_anchor("root.linkerd.cluster.local", now, 10 * day).expect("anchor");
        let issuer = generate::issuer(&anchor, "identity.linkerd.cluster.local", now, 2 * day)
            .expect("issuer");
        let other = generate::trust_anchor("other-root", now, day).expect("other");
        let bundle =
            TrustRoots::from_pem(&format!("{}{}", other.cert_pem, anchor.cert_pem)).expect("roots");
        let report = inspect(issuer.cert_pem.as_bytes(), Some(&bundle), now).expect("report");
        assert_eq!(
            report.anchor.as_deref(),
            Some("CN=root.linkerd.cluster.local")
        );
        assert!(report.certificates[0].is_ca);
        assert!((2 * 86400 - 5..=2 * 86400).contains(&report.certificates[0].expires_in_seconds));

        let only_other = TrustRoots::from_pem(&other.cert_pem).expect("roots");
        let report = inspect(issuer.cert_pem.as_bytes(), Some(&only_other), now).expect("report");
        assert_eq!(report.anchor, None);
        assert!(report.untrusted.expect("reason").contains("other-root"));
    }
}
