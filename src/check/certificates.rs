//! Certificates the control plane depends on: the trust anchors, the
//! identity issuer (present, valid now and for 60 more days, signed by an
//! anchor, owning its key), where a trust anchor rotation stands (which of
//! its four steps comes next), and the injector webhook's serving
//! certificate (valid, and trusted by the caBundle the API server uses).

use std::time::{Duration, SystemTime};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use mesh_api::labels::{CONTROL_PLANE_NAMESPACE as NS, ISSUER_SECRET, TRUST_ROOTS_CONFIGMAP};
use mesh_identity::ca::{Ca, IssuancePolicy, TrustRoots};
use mesh_identity::inspect::{CertificateReport, inspect};

use super::control_plane::WEBHOOK_CONFIG;
use super::report::{Outcome, Problem, Report};

/// Certificates closer than this to their end get a warning.
const RENEW_WITHIN: Duration = Duration::from_secs(60 * 24 * 3600);
use crate::install::existing::INJECTOR_SECRET;

/// The certificate checks; the trust anchors (PEM) when they could be read.
pub async fn check(client: &kube::Client, report: &mut Report) -> Option<String> {
    report.category("linkerd-identity");
    let now = SystemTime::now();
    let anchors = match read_anchors(client).await {
        Ok(anchors) => anchors,
        Err(problem) => {
            report.record("trust anchors are readable", Err(problem));
            return None;
        }
    };
    report.record("trust anchors are readable", Ok(()));
    let reports = match inspect(anchors.text.as_bytes(), None, now) {
        Ok(r) => r.certificates,
        Err(e) => {
            report.record(
                "trust anchors are within their validity period",
                Err(Problem::error(format!("{}: {e}", anchors.origin), "")),
            );
            return None;
        }
    };
    report.record(
        "trust anchors are within their validity period",
        all_valid_now(&reports, "trust anchor", ANCHOR_HINT),
    );
    report.record(
        "trust anchors are valid for at least 60 days",
        all_valid_for(&reports, "trust anchor", ANCHOR_HINT),
    );
    let issuer_ok = report.record("issuer certificate exists", issuer_present(client).await);
    if issuer_ok && let Ok(issuer) = read_issuer(client).await {
        let roots = TrustRoots::from_pem(&anchors.text).ok();
        match inspect(issuer.0.as_bytes(), roots.as_ref(), now) {
            Ok(chain) => {
                let leaf = &chain.certificates[..1.min(chain.certificates.len())];
                report.record(
                    "issuer cert is within its validity period",
                    all_valid_now(leaf, "issuer certificate", ISSUER_HINT),
                );
                report.record(
                    "issuer cert is valid for at least 60 days",
                    all_valid_for(leaf, "issuer certificate", ISSUER_HINT),
                );
                let chain_trusted = chain.untrusted.is_none();
                let trusted = match chain.untrusted {
                    None => Ok(()),
                    Some(why) => Err(Problem::error(
                        format!(
                            "{why}\ntrust anchors in {NS}/{TRUST_ROOTS_CONFIGMAP}: {}",
                            subjects(&reports)
                        ),
                        "the anchors and the issuer must come from the same root: restore the anchors bundle, \
                         or add the issuer's root to it (keeping the old one while proxies still use it)",
                    )),
                };
                report.record("issuer cert is issued by the trust anchor", trusted);
                if chain_trusted {
                    // Which anchor, by position: a new root often carries the
                    // old one's name (the guides reuse it).
                    let signed_by = roots.as_ref().and_then(|roots| {
                        let der =
                            mesh_identity::pem::certificates(issuer.0.as_bytes(), "issuer").ok()?;
                        mesh_identity::ca::verify_chain(&der, roots).ok()
                    });
                    report.record(
                        "no trust anchor rotation is half done",
                        rotation_step(&reports, signed_by),
                    );
                }
                if let Some(roots) = roots {
                    let usable =
                        Ca::new(&issuer.0, &issuer.1, &roots, IssuancePolicy::default(), now)
                            .map(|_| ())
                            .map_err(|e| Problem::error(e.to_string(), ISSUER_HINT));
                    report.record("issuer key matches the issuer certificate", usable);
                }
            }
            Err(e) => {
                report.record(
                    "issuer cert is within its validity period",
                    Err(Problem::error(
                        format!("{NS}/{ISSUER_SECRET} tls.crt: {e}"),
                        ISSUER_HINT,
                    )),
                );
            }
        }
    }

    report.category("linkerd-webhooks-and-apisvc-tls");
    let webhook = injector_certificate(client, now).await;
    match webhook {
        Ok(leaf) => {
            report.record(
                "proxy-injector webhook has valid cert",
                all_valid_now(
                    std::slice::from_ref(&leaf),
                    "injector certificate",
                    WEBHOOK_HINT,
                ),
            );
            report.record(
                "proxy-injector cert is valid for at least 60 days",
                all_valid_for(
                    std::slice::from_ref(&leaf),
                    "injector certificate",
                    WEBHOOK_HINT,
                ),
            );
        }
        Err(problem) => {
            report.record("proxy-injector webhook has valid cert", Err(problem));
        }
    }
    Some(anchors.text)
}

const ANCHOR_HINT: &str = "rotate the trust anchors: add the new root to the bundle beside the old one, re-issue the issuer from it, \
     restart proxies, then drop the old root";
const ISSUER_HINT: &str = "issue a new issuer certificate from a trust anchor and update the \
     linkerd-identity-issuer Secret (tls.crt, tls.key); the identity service picks it up without a restart";
const WEBHOOK_HINT: &str = "for a new webhook certificate, `kubectl -n linkerd delete secret linkerd-proxy-injector-k8s-tls` \
     and re-apply `mesh install | kubectl apply -f -` (it renders a new one and keeps the trust anchors and issuer); \
     the injector serves it within a minute, without a restart";

/// A cluster's trust anchors bundle and where it was read.
pub(crate) struct Anchors {
    /// The PEM bundle.
    pub(crate) text: String,
    /// `ConfigMap <namespace>/linkerd-identity-trust-roots`.
    origin: String,
}

/// Where a trust anchor rotation stands, from the anchors bundle and the
/// anchor (`signed_by`, an index into `anchors`) the issuer chains to. The
/// rotation: (1) bundle the old and new anchors, (2) every proxy trusts
/// both (mesh's follow the bundle; others are restarted), (3) give the identity
/// service an issuer from the new anchor, (4) drop the old anchor. One
/// anchor: none under way. The newest anchor is the one that expires last.
fn rotation_step(anchors: &[CertificateReport], signed_by: Option<usize>) -> Outcome {
    let (Some(signed_by), true) = (signed_by, anchors.len() > 1) else {
        return Ok(());
    };
    let newest = anchors
        .iter()
        .enumerate()
        .max_by_key(|(_, a)| a.expires_in_seconds)
        .map_or(0, |(i, _)| i);
    let count = anchors.len();
    // Named with their end of validity: a new root often has the old name.
    let named = |a: &CertificateReport| format!("{}, until {}", a.subject, a.not_after);
    if signed_by == newest {
        let old: Vec<String> = anchors
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != newest)
            .map(|(_, a)| named(a))
            .collect();
        Err(Problem::warning(
            format!(
                "trust anchor rotation, step 3 of 4 done: the issuer is signed by the newest of {count} anchors ({}); \
                 the bundle still holds {}",
                named(&anchors[newest]),
                old.join("; ")
            ),
            "step 4: once every proxy holds a certificate from the new issuer (mesh's proxies are certified \
             again within seconds of the change; one that does not follow its namespace's \
             mesh-identity-trust-roots renews within a day, or at a restart), drop the old anchors: \
             `mesh upgrade --identity-trust-anchors-file new-anchor.crt | kubectl apply -f -`",
        ))
    } else {
        Err(Problem::warning(
            format!(
                "trust anchor rotation, step 1 of 4 done: the bundle holds {count} anchors and the issuer is still \
                 signed by an older one ({}); the newest is {}",
                named(&anchors[signed_by]),
                named(&anchors[newest])
            ),
            "step 2: wait until every proxy trusts the new anchor (`mesh check --proxy`: mesh's proxies follow \
             the bundle within seconds, without a restart; others need `kubectl rollout restart deploy -n \
             <namespace>`); step 3: give the identity service an issuer \
             signed by the new anchor: `mesh upgrade --identity-issuer-certificate-file new-issuer.crt \
             --identity-issuer-key-file new-issuer.key | kubectl apply -f -`",
        ))
    }
}

async fn read_anchors(client: &kube::Client) -> Result<Anchors, Problem> {
    read_anchors_in(client, NS).await
}

/// The trust anchors of the control plane in `namespace` (non-empty
/// `ca-bundle.crt` of its trust roots ConfigMap), or what is wrong.
pub(crate) async fn read_anchors_in(
    client: &kube::Client,
    namespace: &str,
) -> Result<Anchors, Problem> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let origin = format!("ConfigMap {namespace}/{TRUST_ROOTS_CONFIGMAP}");
    let map = maps
        .get_opt(TRUST_ROOTS_CONFIGMAP)
        .await
        .map_err(|e| Problem::error(format!("reading {origin}: {e}"), ""))?
        .ok_or_else(|| {
            Problem::error(
                format!("{origin} does not exist"),
                "restore it (key ca-bundle.crt, the PEM trust anchors) or reinstall",
            )
        })?;
    let text = map
        .data
        .and_then(|d| d.get("ca-bundle.crt").cloned())
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| {
            Problem::error(
                format!("{origin} has no ca-bundle.crt"),
                "put the PEM trust anchors under the key ca-bundle.crt",
            )
        })?;
    Ok(Anchors { text, origin })
}

async fn issuer_present(client: &kube::Client) -> Outcome {
    read_issuer(client).await.map(|_| ())
}

/// The issuer's certificate and key from its Secret.
async fn read_issuer(client: &kube::Client) -> Result<(String, String), Problem> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let secret = secrets
        .get_opt(ISSUER_SECRET)
        .await
        .map_err(|e| Problem::error(format!("reading Secret {NS}/{ISSUER_SECRET}: {e}"), ""))?
        .ok_or_else(|| {
            Problem::error(
                format!("Secret {NS}/{ISSUER_SECRET} does not exist: the identity service cannot start without it"),
                "restore the issuer certificate and key into it (type kubernetes.io/tls, keys tls.crt and tls.key), \
                 or reinstall with `mesh install --identity-trust-anchors-file … --identity-issuer-certificate-file … \
                 --identity-issuer-key-file …`",
            )
        })?;
    let field = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .ok_or_else(|| {
                Problem::error(
                    format!("Secret {NS}/{ISSUER_SECRET} has no {key}"),
                    "it needs tls.crt and tls.key (PEM)",
                )
            })
    };
    Ok((field("tls.crt")?, field("tls.key")?))
}

/// The injector's serving certificate, checked against the webhook's caBundle.
async fn injector_certificate(
    client: &kube::Client,
    now: SystemTime,
) -> Result<CertificateReport, Problem> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let origin = format!("Secret {NS}/{INJECTOR_SECRET}");
    let cert = secrets
        .get_opt(INJECTOR_SECRET)
        .await
        .map_err(|e| Problem::error(format!("reading {origin}: {e}"), ""))?
        .and_then(|s| s.data?.get("tls.crt").map(|b| b.0.clone()))
        .ok_or_else(|| Problem::error(format!("{origin} has no tls.crt"), WEBHOOK_HINT))?;
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let ca_bundle = configs
        .get_opt(WEBHOOK_CONFIG)
        .await
        .ok()
        .flatten()
        .and_then(|c| c.webhooks?.into_iter().next()?.client_config.ca_bundle)
        .and_then(|b| String::from_utf8(b.0).ok());
    let roots = ca_bundle
        .as_deref()
        .and_then(|b| TrustRoots::from_pem(b).ok());
    let chain = inspect(&cert, roots.as_ref(), now)
        .map_err(|e| Problem::error(format!("{origin} tls.crt: {e}"), WEBHOOK_HINT))?;
    if let Some(why) = chain.untrusted {
        return Err(Problem::error(
            format!("the API server would not trust the injector: {why}"),
            WEBHOOK_HINT,
        ));
    }
    chain.certificates.into_iter().next().ok_or_else(|| {
        Problem::error(
            format!("{origin} tls.crt holds no certificate"),
            WEBHOOK_HINT,
        )
    })
}

fn subjects(reports: &[CertificateReport]) -> String {
    reports
        .iter()
        .map(|r| r.subject.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn all_valid_now(reports: &[CertificateReport], what: &str, hint: &str) -> Outcome {
    let expired: Vec<String> = reports
        .iter()
        .filter(|r| r.expires_in_seconds <= 0)
        .map(|r| format!("{what} {} expired on {}", r.subject, r.not_after))
        .collect();
    if expired.is_empty() {
        Ok(())
    } else {
        Err(Problem::error(expired.join("\n"), hint))
    }
}

fn all_valid_for(reports: &[CertificateReport], what: &str, hint: &str) -> Outcome {
    let soon: Vec<String> = reports
        .iter()
        .filter(|r| {
            r.expires_in_seconds > 0 && r.expires_in_seconds < RENEW_WITHIN.as_secs() as i64
        })
        .map(|r| format!("{what} {} expires on {}", r.subject, r.not_after))
        .collect();
    if soon.is_empty() {
        Ok(())
    } else {
        Err(Problem::warning(soon.join("\n"), hint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor(subject: &str, expires_in_seconds: i64) -> CertificateReport {
        CertificateReport {
            subject: subject.into(),
            issuer: subject.into(),
            identities: Vec::new(),
            uris: Vec::new(),
            is_ca: true,
            not_before: String::new(),
            not_after: String::new(),
            expires_in_seconds,
            serial: String::new(),
        }
    }

    fn warning(outcome: Outcome) -> (String, String) {
        match outcome {
            Err(Problem::Warning { error, hint }) => (error, hint),
            other => panic!("expected a warning, got {other:?}"),
        }
    }

    #[test]
    fn each_step_of_a_trust_anchor_rotation_names_the_next() {
        let old = anchor("CN=old", 100);
        let new = anchor("CN=new", 1000);
        assert!(rotation_step(std::slice::from_ref(&old), Some(0)).is_ok());
        let (error, hint) = warning(rotation_step(&[old.clone(), new.clone()], Some(0)));
        assert!(
            error.contains("step 1 of 4") && error.contains("CN=old"),
            "{error}"
        );
        assert!(
            hint.contains("--identity-issuer-certificate-file"),
            "{hint}"
        );
        let (error, hint) = warning(rotation_step(&[new, old], Some(0)));
        assert!(
            error.contains("step 3 of 4") && error.contains("CN=old"),
            "{error}"
        );
        assert!(hint.contains("--identity-trust-anchors-file"), "{hint}");
    }
}
