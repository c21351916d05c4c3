//! What an earlier `mesh install` left in the cluster and a new one must
//! keep: the trust anchors, the identity issuer and the proxy injector's
//! webhook certificate. Re-applying `mesh install` (to change one flag, or
//! on every GitOps sync) must not mint new ones: new anchors would cut
//! every running proxy off from every new one, and a new webhook
//! certificate would leave the running injector serving a certificate the
//! API server no longer trusts.
//!
//! Reading is best effort and bounded: with no cluster to read (no
//! kubeconfig, an API server that does not answer within
//! [`READ_TIMEOUT`]) the install renders fresh material and says so; with
//! `--ignore-cluster` it does not look.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use mesh_api::labels::{CONTROL_PLANE_NAMESPACE as NS, ISSUER_SECRET, TRUST_ROOTS_CONFIGMAP};

use super::settings::{Pem, Settings};
use crate::cli::GlobalArgs;

/// How long the install waits for the cluster before rendering fresh material.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The injector's serving certificate Secret.
pub const INJECTOR_SECRET: &str = "linkerd-proxy-injector-k8s-tls";

/// The material found in the cluster, each part when present and whole.
#[derive(Debug, Default)]
pub struct Existing {
    /// Anchors, issuer certificate and issuer key.
    pub trust: Option<(Pem, Pem, Pem)>,
    /// The anchors alone: the trust-roots ConfigMap's, else the issuer
    /// Secret's `ca.crt` (what cert-manager writes beside an external
    /// issuer).
    pub anchors: Option<Pem>,
    /// The webhook's certificate, key and CA.
    pub injector_tls: Option<(Pem, Pem, Pem)>,
}

impl Existing {
    /// Reads the cluster of `global`; `Err` says why it could not.
    pub async fn read(global: &GlobalArgs) -> anyhow::Result<Self> {
        let read = async {
            let client = mesh_api::kube_client::client(
                global.kubeconfig.as_deref(),
                global.context.as_deref(),
            )
            .await?;
            Self::read_with(&client).await
        };
        tokio::time::timeout(READ_TIMEOUT, read)
            .await
            .map_err(|_| anyhow::anyhow!("the API server did not answer within {READ_TIMEOUT:?}"))?
    }

    /// Reads what `client`'s cluster holds.
    pub async fn read_with(client: &kube::Client) -> anyhow::Result<Self> {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
        let anchors = maps
            .get_opt(TRUST_ROOTS_CONFIGMAP)
            .await?
            .and_then(|m| m.data?.get("ca-bundle.crt").cloned())
            .filter(|pem| pem.contains("BEGIN CERTIFICATE"));
        let issuer = secrets.get_opt(ISSUER_SECRET).await?;
        let injector = secrets.get_opt(INJECTOR_SECRET).await?;
        let anchors_alone = anchors
            .clone()
            .map(|text| pem(text, format!("ConfigMap {NS}/{TRUST_ROOTS_CONFIGMAP}")))
            .or_else(|| {
                let (text, key) = key_of(issuer.as_ref()?, &["ca.crt"])?;
                Some(pem(text, format!("Secret {NS}/{ISSUER_SECRET}: {key}")))
            });
        let trust = match (anchors, issuer) {
            (Some(anchors), Some(issuer)) => {
                // Both of the issuer Secret's schemes, as the identity service reads them.
                let cert = key_of(&issuer, &["tls.crt", "crt.pem"]);
                let key = key_of(&issuer, &["tls.key", "key.pem"]);
                cert.zip(key).map(|((cert, cert_key), (key, key_key))| {
                    (
                        pem(anchors, format!("ConfigMap {NS}/{TRUST_ROOTS_CONFIGMAP}")),
                        pem(cert, format!("Secret {NS}/{ISSUER_SECRET}: {cert_key}")),
                        pem(key, format!("Secret {NS}/{ISSUER_SECRET}: {key_key}")),
                    )
                })
            }
            _ => None,
        };
        let injector_tls = injector.and_then(|secret| {
            let field = |k: &str| key_of(&secret, &[k]).map(|(t, k)| (t, k.to_owned()));
            let ((cert, _), (key, _), (ca, _)) =
                (field("tls.crt")?, field("tls.key")?, field("ca.crt")?);
            let origin = |k: &str| format!("Secret {NS}/{INJECTOR_SECRET}: {k}");
            Some((
                pem(cert, origin("tls.crt")),
                pem(key, origin("tls.key")),
                pem(ca, origin("ca.crt")),
            ))
        });
        Ok(Self {
            trust,
            anchors: anchors_alone,
            injector_tls,
        })
    }

    /// For `mesh upgrade`: each part of the trust material the operator
    /// did not bring (the anchors; the issuer certificate with its key) and
    /// the webhook certificate come from the cluster, so that a new issuer
    /// or a new anchors bundle is given alone, as the rotation guides do;
    /// returns what was kept.
    pub fn keep_parts_in(self, settings: &mut Settings) -> Vec<&'static str> {
        if settings.external_issuer {
            return self.keep_for_external_issuer(settings);
        }
        let mut kept = Vec::new();
        if let Some((anchors, cert, key)) = self.trust {
            if settings.trust_anchors.is_none() {
                settings.trust_anchors = Some(anchors);
                kept.push("trust anchors");
            }
            if settings.issuer_cert.is_none() && settings.issuer_key.is_none() {
                settings.issuer_cert = Some(cert);
                settings.issuer_key = Some(key);
                kept.push("issuer");
            }
        }
        keep_webhook(self.injector_tls, settings, &mut kept);
        kept
    }

    /// Fills in what the operator did not bring with what the cluster has;
    /// returns what was kept, for the operator to read.
    pub fn keep_in(self, settings: &mut Settings) -> Vec<&'static str> {
        if settings.external_issuer {
            return self.keep_for_external_issuer(settings);
        }
        let mut kept = Vec::new();
        let brought_trust = settings.trust_anchors.is_some()
            || settings.issuer_cert.is_some()
            || settings.issuer_key.is_some();
        if !brought_trust && let Some((anchors, cert, key)) = self.trust {
            settings.trust_anchors = Some(anchors);
            settings.issuer_cert = Some(cert);
            settings.issuer_key = Some(key);
            kept.push("trust anchors and issuer");
        }
        keep_webhook(self.injector_tls, settings, &mut kept);
        kept
    }

    /// With an external issuer: the anchors unless brought (the issuer is
    /// not mesh's to keep), and the webhook certificate.
    fn keep_for_external_issuer(self, settings: &mut Settings) -> Vec<&'static str> {
        let mut kept = Vec::new();
        if settings.trust_anchors.is_none()
            && let Some(anchors) = self.anchors
        {
            settings.trust_anchors = Some(anchors);
            kept.push("trust anchors");
        }
        keep_webhook(self.injector_tls, settings, &mut kept);
        kept
    }
}

/// The cluster's webhook certificate unless one was brought.
fn keep_webhook(
    found: Option<(Pem, Pem, Pem)>,
    settings: &mut Settings,
    kept: &mut Vec<&'static str>,
) {
    if settings.injector_tls.is_none() && found.is_some() {
        settings.injector_tls = found;
        kept.push("proxy injector webhook certificate");
    }
}

fn pem(text: String, origin: String) -> Pem {
    Pem { text, origin }
}

/// The first of `keys` present in `secret` as UTF-8 text, with its key.
fn key_of<'k>(secret: &Secret, keys: &[&'k str]) -> Option<(String, &'k str)> {
    let data = secret.data.as_ref()?;
    keys.iter().find_map(|k| {
        let text = String::from_utf8(data.get(*k)?.0.clone()).ok()?;
        (!text.trim().is_empty()).then_some((text, *k))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn either_issuer_scheme_is_read_and_empty_keys_are_not() {
        let tls = secret(&[("tls.crt", "A"), ("tls.key", "B")]);
        assert_eq!(
            key_of(&tls, &["tls.crt", "crt.pem"]),
            Some(("A".into(), "tls.crt"))
        );
        let linkerd = secret(&[("crt.pem", "C"), ("tls.crt", " ")]);
        assert_eq!(
            key_of(&linkerd, &["tls.crt", "crt.pem"]),
            Some(("C".into(), "crt.pem"))
        );
        assert_eq!(key_of(&linkerd, &["tls.key"]), None);
    }
}
