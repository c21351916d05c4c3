//! Who is asking: the tap server is an extension API server, so the only
//! client it talks to is the Kubernetes API server, which proves itself
//! with its front-proxy client certificate and names the user it
//! authenticated in request headers. The certificate authority, the
//! allowed certificate names and the header names come from the
//! `kube-system/extension-apiserver-authentication` ConfigMap the API
//! server publishes. A connection without such a certificate never
//! reaches a handler, so the headers cannot be forged by anyone else.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The ConfigMap the API server publishes its request-header settings in.
pub const CONFIGMAP: (&str, &str) = ("kube-system", "extension-apiserver-authentication");

/// How the API server vouches for a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    /// The CA of the API server's front-proxy client certificate (PEM).
    pub client_ca: String,
    /// The common names that certificate may have (empty: any).
    pub allowed_names: Vec<String>,
    /// The headers that name the user.
    pub username_headers: Vec<String>,
    /// The headers that name its groups.
    pub group_headers: Vec<String>,
    /// The prefix of headers carrying its extra attributes.
    pub extra_headers_prefix: Vec<String>,
}

/// Why the request-header settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    /// A key is missing.
    #[error(
        "{0}/{1}: no {2}; is the API server's aggregation layer configured (--requestheader-client-ca-file)?"
    )]
    Missing(&'static str, &'static str, &'static str),
    /// A list is not a JSON list of strings.
    #[error("{0}/{1}: {2} is not a JSON list of strings: {3}")]
    List(&'static str, &'static str, &'static str, String),
    /// The CA is unusable.
    #[error("{0}/{1}: requestheader-client-ca-file: {2}")]
    Ca(&'static str, &'static str, String),
}

impl RequestHeader {
    /// Reads the ConfigMap's data.
    pub fn from_data(data: &BTreeMap<String, String>) -> Result<Self, AuthnError> {
        let (ns, name) = CONFIGMAP;
        let client_ca = data
            .get("requestheader-client-ca-file")
            .filter(|v| !v.trim().is_empty())
            .ok_or(AuthnError::Missing(
                ns,
                name,
                "requestheader-client-ca-file",
            ))?
            .clone();
        let list = |key: &'static str| -> Result<Vec<String>, AuthnError> {
            match data.get(key) {
                None => Ok(Vec::new()),
                Some(text) => serde_json::from_str(text)
                    .map_err(|e| AuthnError::List(ns, name, key, e.to_string())),
            }
        };
        Ok(Self {
            client_ca,
            allowed_names: list("requestheader-allowed-names")?,
            username_headers: list("requestheader-username-headers")?,
            group_headers: list("requestheader-group-headers")?,
            extra_headers_prefix: list("requestheader-extra-headers-prefix")?,
        })
    }

    /// The TLS server configuration: serving `chain` with `key`, requiring
    /// a client certificate from the front-proxy CA.
    pub fn server_config(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: rustls_pki_types::PrivateKeyDer<'static>,
    ) -> Result<Arc<rustls::ServerConfig>, AuthnError> {
        let (ns, name) = CONFIGMAP;
        let provider = mesh_core::tls::provider();
        let mut roots = rustls::RootCertStore::empty();
        let certs: Vec<_> = CertificateDer::pem_slice_iter(self.client_ca.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| AuthnError::Ca(ns, name, e.to_string()))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(AuthnError::Ca(ns, name, "no usable certificate".into()));
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| AuthnError::Ca(ns, name, e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| {
                b.with_client_cert_verifier(verifier)
                    .with_single_cert(chain, key)
            })
            .map_err(|e: rustls::Error| AuthnError::Ca(ns, name, e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Whether a verified client certificate is the API server's.
    pub fn allows(&self, client: &CertificateDer<'_>) -> bool {
        if self.allowed_names.is_empty() {
            return true;
        }
        common_name(client).is_some_and(|cn| self.allowed_names.contains(&cn))
    }

    /// The user the API server authenticated, from a request's headers.
    pub fn user(&self, headers: &http::HeaderMap) -> Option<User> {
        let first = |names: &[String]| {
            names.iter().find_map(|n| {
                headers
                    .get(n.as_str())
                    .and_then(|v| v.to_str().ok())
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
            })
        };
        let name = first(&self.username_headers)?;
        let groups = self
            .group_headers
            .iter()
            .flat_map(|n| headers.get_all(n.as_str()).iter())
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect();
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (key, value) in headers {
            let key = key.as_str();
            let Some(attr) = self.extra_headers_prefix.iter().find_map(|p| {
                key.get(..p.len())
                    .filter(|h| h.eq_ignore_ascii_case(p))
                    .map(|_| &key[p.len()..])
            }) else {
                continue;
            };
            if let Ok(value) = value.to_str() {
                extra
                    .entry(attr.to_ascii_lowercase())
                    .or_default()
                    .push(value.to_owned());
            }
        }
        Some(User {
            name,
            groups,
            extra,
        })
    }
}

/// A user as the API server authenticated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Its name.
    pub name: String,
    /// Its groups.
    pub groups: Vec<String>,
    /// Its extra attributes.
    pub extra: BTreeMap<String, Vec<String>>,
}

fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert).ok()?;
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RequestHeader {
        let data: BTreeMap<String, String> = [
            (
                "requestheader-client-ca-file",
                "-----BEGIN CERTIFICATE-----",
            ),
            ("requestheader-allowed-names", r#"["front-proxy-client"]"#),
            ("requestheader-username-headers", r#"["X-Remote-User"]"#),
            ("requestheader-group-headers", r#"["X-Remote-Group"]"#),
            (
                "requestheader-extra-headers-prefix",
                r#"["X-Remote-Extra-"]"#,
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        RequestHeader::from_data(&data).expect("valid")
    }

    #[test]
    fn the_user_comes_from_the_headers_the_api_server_names() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-remote-user", "alice".parse().expect("value"));
        headers.append("x-remote-group", "dev".parse().expect("value"));
        headers.append(
            "x-remote-group",
            "system:authenticated".parse().expect("value"),
        );
        headers.insert("x-remote-extra-scopes", "view".parse().expect("value"));
        let user = settings().user(&headers).expect("a user");
        assert_eq!(user.name, "alice");
        assert_eq!(user.groups, ["dev", "system:authenticated"]);
        assert_eq!(user.extra["scopes"], ["view"]);
        assert_eq!(settings().user(&http::HeaderMap::new()), None);
    }

    #[test]
    fn a_cluster_without_the_aggregation_layer_is_named() {
        let e = RequestHeader::from_data(&BTreeMap::new()).expect_err("missing");
        assert!(
            e.to_string().contains("--requestheader-client-ca-file"),
            "{e}"
        );
        let data: BTreeMap<String, String> = [
            ("requestheader-client-ca-file".to_owned(), "pem".to_owned()),
            (
                "requestheader-allowed-names".to_owned(),
                "front-proxy-client".to_owned(),
            ),
        ]
        .into();
        let e = RequestHeader::from_data(&data).expect_err("not JSON");
        assert!(e.to_string().contains("requestheader-allowed-names"), "{e}");
    }
}
