//! Mutual TLS between workloads, on rustls with the ring provider and TLS 1.3
//! only.
//!
//! [`Credentials`] holds what can change while connections are open: this
//! workload's certificate and key (renewed every few hours) and the trust
//! roots (rotated by operators). The server and client configurations it
//! builds read the current values on every handshake, so a renewal or a
//! rotation applies to the next connection and never disturbs an open one.
//!
//! - A client names the identity that discovery promised as the TLS server
//!   name; the handshake fails unless the server's certificate carries it.
//! - A server learns the client's identity with [`peer_identity`].
//! - [`incoming`] feeds TLS connections to tonic servers (the control plane).

mod dynamic;
pub mod incoming;

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// The ALPN protocol of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// The ALPN protocol that announces Linkerd's transport header.
pub const ALPN_TRANSPORT_HEADER: &[u8] = b"transport.l5d.io/v1";

/// Why TLS material is unusable.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// No usable trust root.
    #[error("trust roots: {0}")]
    Roots(String),
    /// The certificate or key is unusable.
    #[error("certificate: {0}")]
    Certificate(String),
    /// rustls refused a configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Whether a server asks clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// The handshake fails without a client certificate (the gateway,
    /// identity-required ports).
    Required,
    /// A client certificate is verified when offered; a client without one
    /// is accepted without an identity.
    Optional,
}

/// What the verifiers and resolvers read on each handshake.
#[derive(Debug)]
struct Current {
    certified: Option<Arc<CertifiedKey>>,
    server_verifier: Arc<WebPkiServerVerifier>,
    client_verifier_required: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    client_verifier_optional: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

/// This workload's TLS credentials and trust roots, shared by every
/// configuration built from them.
#[derive(Debug)]
pub struct Credentials {
    local_identity: String,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<Current>,
}

/// The SHA-256 of a DER certificate, lower-case hex: how a certificate is
/// named in metrics (`injector_serving_certificate_info`,
/// `identity_trust_anchor_info`) and in `issuer.sha256`.
pub fn sha256_hex(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The crypto provider every configuration uses: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Credentials {
    /// Credentials for `local_identity` trusting `roots`, with no
    /// certificate yet.
    pub fn new(
        local_identity: impl Into<String>,
        roots: &[CertificateDer<'static>],
    ) -> Result<Arc<Self>, TlsError> {
        let provider = provider();
        let current = build_current(&provider, roots, None)?;
        Ok(Arc::new(Self {
            local_identity: local_identity.into(),
            provider,
            current: ArcSwap::from_pointee(current),
        }))
    }

    /// The identity this workload presents.
    pub fn local_identity(&self) -> &str {
        &self.local_identity
    }

    /// Whether a certificate is held (the proxy is not ready before).
    pub fn has_certificate(&self) -> bool {
        self.current.load().certified.is_some()
    }

    /// The certificate chain presented now (leaf first), if any.
    pub fn certificate_chain(&self) -> Option<Vec<CertificateDer<'static>>> {
        self.current
            .load()
            .certified
            .as_ref()
            .map(|c| c.cert.clone())
    }

    /// Presents `chain` (leaf first) with `key` from the next handshake on.
    pub fn set_certificate(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<(), TlsError> {
        let leaf = chain
            .first()
            .ok_or_else(|| TlsError::Certificate("empty certificate chain".into()))?;
        let names = dns_names(leaf);
        if !names.iter().any(|n| n == &self.local_identity) {
            return Err(TlsError::Certificate(format!(
                "the certificate is for [{}], not for the local identity {}",
                names.join(", "),
                self.local_identity
            )));
        }
        let key = self
            .provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::Certificate(format!("private key: {e}")))?;
        let certified = Arc::new(CertifiedKey::new(chain, key));
        self.current.rcu(|current| Current {
            certified: Some(certified.clone()),
            server_verifier: current.server_verifier.clone(),
            client_verifier_required: current.client_verifier_required.clone(),
            client_verifier_optional: current.client_verifier_optional.clone(),
        });
        Ok(())
    }

    /// Trusts `roots` (replacing the previous set) from the next handshake on.
    pub fn set_roots(&self, roots: &[CertificateDer<'static>]) -> Result<(), TlsError> {
        let certified = self.current.load().certified.clone();
        let next = build_current(&self.provider, roots, certified)?;
        self.current.store(Arc::new(next));
        Ok(())
    }

    /// A server configuration presenting the current certificate.
    pub fn server_config(
        self: &Arc<Self>,
        client_auth: ClientAuth,
        alpn: &[&[u8]],
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(dynamic::ClientVerifier {
                credentials: self.clone(),
                auth: client_auth,
            }))
            .with_cert_resolver(Arc::new(dynamic::Resolver(self.clone())));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// A client configuration that presents the current certificate (when
    /// there is one) and verifies servers against the current roots.
    pub fn client_config(self: &Arc<Self>, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, TlsError> {
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(dynamic::ServerVerifier(self.clone())))
            .with_client_cert_resolver(Arc::new(dynamic::Resolver(self.clone())));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    fn load(&self) -> arc_swap::Guard<Arc<Current>> {
        self.current.load()
    }
}

fn build_current(
    provider: &Arc<CryptoProvider>,
    roots: &[CertificateDer<'static>],
    certified: Option<Arc<CertifiedKey>>,
) -> Result<Current, TlsError> {
    let mut store = RootCertStore::empty();
    let (added, ignored) = store.add_parsable_certificates(roots.iter().cloned());
    if added == 0 {
        return Err(TlsError::Roots(format!(
            "no usable trust root ({ignored} unparsable)"
        )));
    }
    let store = Arc::new(store);
    let server_verifier =
        WebPkiServerVerifier::builder_with_provider(store.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError::Roots(e.to_string()))?;
    let required = WebPkiClientVerifier::builder_with_provider(store.clone(), provider.clone())
        .build()
        .map_err(|e| TlsError::Roots(e.to_string()))?;
    let optional = WebPkiClientVerifier::builder_with_provider(store, provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Roots(e.to_string()))?;
    Ok(Current {
        certified,
        server_verifier,
        client_verifier_required: required,
        client_verifier_optional: optional,
    })
}

/// The TLS server name a client uses to reach `identity`.
pub fn server_name(identity: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(identity.to_owned())
        .map_err(|e| TlsError::Certificate(format!("{identity:?} is not a DNS-like identity: {e}")))
}

/// The identity of the peer of an established connection: the first DNS
/// SAN of its verified certificate.
pub fn peer_identity(conn: &rustls::CommonState) -> Option<String> {
    dns_names(conn.peer_certificates()?.first()?)
        .into_iter()
        .next()
}

/// The DNS SANs of a certificate.
pub fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(cert) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(name) => Some((*name).to_owned()),
            _ => None,
        })
        .collect()
}
