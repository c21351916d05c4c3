//! Workload identity names: `<sa>.<ns>.serviceaccount.identity.<control-ns>.<trust-domain>`,
//! the DNS-like name that a proxy's certificate carries and that discovery
//! promises to clients.

use std::fmt;

/// The trust domain Linkerd uses unless told otherwise.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// A parsed workload identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdentityName {
    /// The ServiceAccount the workload runs as.
    pub service_account: String,
    /// The namespace of that ServiceAccount.
    pub namespace: String,
    /// The control plane's namespace (`linkerd`).
    pub control_namespace: String,
    /// The trust domain (`cluster.local`).
    pub trust_domain: String,
}

/// Why a string is not a workload identity.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidIdentity {
    /// The name lacks the `.serviceaccount.identity.` infix.
    #[error(
        "{0:?} is not a workload identity: expected <serviceaccount>.<namespace>.serviceaccount.identity.<control-namespace>.<trust-domain>"
    )]
    Shape(String),
    /// One of the parts is not a DNS label.
    #[error("{name:?} is not a workload identity: {part} {label:?} is not a valid DNS label")]
    Label {
        /// The whole name.
        name: String,
        /// Which part is wrong.
        part: &'static str,
        /// The offending label.
        label: String,
    },
}

impl IdentityName {
    /// The identity of ServiceAccount `sa` in `namespace` under the default
    /// control plane (`linkerd`, `cluster.local`).
    pub fn for_service_account(sa: &str, namespace: &str) -> Self {
        Self {
            service_account: sa.to_owned(),
            namespace: namespace.to_owned(),
            control_namespace: crate::labels::CONTROL_PLANE_NAMESPACE.to_owned(),
            trust_domain: DEFAULT_TRUST_DOMAIN.to_owned(),
        }
    }

    /// Parses a name, checking each part is a DNS label.
    pub fn parse(name: &str) -> Result<Self, InvalidIdentity> {
        let shape = || InvalidIdentity::Shape(name.to_owned());
        let (workload, control) = name
            .split_once(".serviceaccount.identity.")
            .ok_or_else(shape)?;
        let (service_account, namespace) = workload.split_once('.').ok_or_else(shape)?;
        let (control_namespace, trust_domain) = control.split_once('.').ok_or_else(shape)?;
        let check = |part: &'static str, label: &str| {
            if is_dns_label(label) {
                Ok(())
            } else {
                Err(InvalidIdentity::Label {
                    name: name.to_owned(),
                    part,
                    label: label.to_owned(),
                })
            }
        };
        check("serviceaccount", service_account)?;
        check("namespace", namespace)?;
        check("control namespace", control_namespace)?;
        for label in trust_domain.split('.') {
            check("trust domain label", label)?;
        }
        Ok(Self {
            service_account: service_account.to_owned(),
            namespace: namespace.to_owned(),
            control_namespace: control_namespace.to_owned(),
            trust_domain: trust_domain.to_owned(),
        })
    }
}

impl IdentityName {
    /// The SPIFFE ID of the same workload:
    /// `spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>`.
    pub fn spiffe_id(&self) -> String {
        format!(
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

/// The name an issuer certificate must carry for a control plane:
/// `identity.<control-namespace>.<trust-domain>`.
pub fn issuer_name(control_namespace: &str, trust_domain: &str) -> String {
    format!("identity.{control_namespace}.{trust_domain}")
}

impl fmt::Display for IdentityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.serviceaccount.identity.{}.{}",
            self.service_account, self.namespace, self.control_namespace, self.trust_domain
        )
    }
}

/// RFC 1123 label: 1–63 lowercase alphanumerics or '-', not starting or
/// ending with '-'.
fn is_dns_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_identity_matches_linkerd() {
        let id = IdentityName::for_service_account("default", "test");
        assert_eq!(
            id.to_string(),
            "default.test.serviceaccount.identity.linkerd.cluster.local"
        );
    }

    #[test]
    fn spiffe_and_issuer_names() {
        let id = IdentityName::for_service_account("web", "shop");
        assert_eq!(id.spiffe_id(), "spiffe://cluster.local/ns/shop/sa/web");
        assert_eq!(
            issuer_name("linkerd", "cluster.local"),
            "identity.linkerd.cluster.local"
        );
    }

    #[test]
    fn parse_round_trips() {
        let name =
            "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local";
        let id = IdentityName::parse(name).expect("valid identity");
        assert_eq!(id.service_account, "linkerd-gateway");
        assert_eq!(id.namespace, "linkerd-multicluster");
        assert_eq!(id.trust_domain, "cluster.local");
        assert_eq!(id.to_string(), name);
    }

    #[test]
    fn parse_rejects_other_shapes() {
        assert_eq!(
            IdentityName::parse("podinfo.test.svc.cluster.local"),
            Err(InvalidIdentity::Shape(
                "podinfo.test.svc.cluster.local".into()
            ))
        );
        let err = IdentityName::parse("Web.test.serviceaccount.identity.linkerd.cluster.local")
            .expect_err("uppercase is not a DNS label");
        assert!(err.to_string().contains("serviceaccount \"Web\""), "{err}");
        assert!(IdentityName::parse("a.b.serviceaccount.identity.linkerd.cluster..local").is_err());
    }
}
