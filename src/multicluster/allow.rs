//! `mesh --context=east multicluster allow --namespace test`: what lets a
//! linked cluster's workloads into a namespace of this cluster, for
//! `kubectl --context=east apply -f -`. A request from west reaches east's
//! pods through east's gateway, and east's proxies decide for the west
//! caller's own identity (the gateway vouches for it), so a policy names
//! west's workloads, not the gateway: a `MeshTLSAuthentication` listing the
//! linked workloads' identities, and an `AuthorizationPolicy` that requires
//! it for a `Server` (`--server`) or for the whole namespace. The gateway's
//! own identity is not listed: it admits nothing by itself.

use clap::Args;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use mesh_api::crds::policy::{
    AuthorizationPolicy, AuthorizationPolicySpec, MeshTLSAuthentication, MeshTlsAuthenticationSpec,
    ObjectRef,
};

use super::link::names_a_dns_label;
use crate::install::manifest::{self, object};

/// The objects' names.
const AUTHENTICATION: &str = "linked-clusters";
const POLICY: &str = "allow-linked-clusters";

/// Flags of `mesh multicluster allow`.
#[derive(Debug, Args)]
pub struct AllowArgs {
    /// The namespace whose workloads the linked clusters may call.
    #[arg(long, short = 'n', env = "MESH_NAMESPACE", value_name = "NAMESPACE")]
    pub namespace: String,
    /// Only this Server (`policy.linkerd.io`) of the namespace [default:
    /// every workload of the namespace].
    #[arg(long, env = "MESH_ALLOW_SERVER", value_name = "NAME")]
    pub server: Option<String>,
    /// A namespace of the linked cluster whose workloads may call in (any
    /// ServiceAccount of it); repeatable [default: the same namespace, as
    /// the multicluster guide lays applications out].
    #[arg(
        long = "from-namespace",
        env = "MESH_ALLOW_FROM_NAMESPACES",
        value_delimiter = ',',
        value_name = "NAMESPACE"
    )]
    pub from_namespaces: Vec<String>,
    /// A workload identity of the linked cluster that may call in
    /// (`web.shop.serviceaccount.identity.linkerd.cluster.local`, or `*`
    /// for any); repeatable, added to the namespaces'.
    #[arg(
        long = "identity",
        env = "MESH_ALLOW_IDENTITIES",
        value_delimiter = ',',
        value_name = "IDENTITY"
    )]
    pub identities: Vec<String>,
    /// The trust domain both clusters share.
    #[arg(long, env = "MESH_TRUST_DOMAIN", default_value = "cluster.local")]
    pub trust_domain: String,
}

/// Whether `identity` is usable in a MeshTLSAuthentication: `*`, or DNS
/// labels separated by dots with at most a leading `*.`.
pub(crate) fn identity_ok(identity: &str) -> bool {
    let rest = identity.strip_prefix("*.").unwrap_or(identity);
    identity == "*"
        || (!rest.is_empty()
            && rest.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            }))
}

/// The identities the authentication lists: each linked namespace's
/// workloads, then those given (never the gateway's: callers behind it are
/// decided for by their own identity).
pub fn identities(args: &AllowArgs) -> anyhow::Result<Vec<String>> {
    anyhow::ensure!(
        names_a_dns_label(&args.namespace),
        "--namespace {:?}: lower-case letters, digits and '-', at most 63",
        args.namespace
    );
    let from: Vec<&String> = if args.from_namespaces.is_empty() {
        vec![&args.namespace]
    } else {
        args.from_namespaces.iter().collect()
    };
    let mut identities = Vec::new();
    for namespace in from {
        anyhow::ensure!(
            names_a_dns_label(namespace),
            "--from-namespace {namespace:?}: lower-case letters, digits and '-', at most 63"
        );
        identities.push(format!(
            "*.{namespace}.serviceaccount.identity.linkerd.{}",
            args.trust_domain
        ));
    }
    for identity in &args.identities {
        anyhow::ensure!(
            identity_ok(identity),
            "--identity {identity:?}: `*` or a DNS-like name such as web.shop.serviceaccount.identity.linkerd.cluster.local"
        );
        identities.push(identity.clone());
    }
    identities.dedup();
    Ok(identities)
}

/// The YAML to apply.
pub fn render(args: &AllowArgs) -> anyhow::Result<String> {
    if let Some(server) = &args.server {
        anyhow::ensure!(
            names_a_dns_label(server),
            "--server {server:?}: lower-case letters, digits and '-', at most 63"
        );
    }
    let meta = |name: &str| ObjectMeta {
        name: Some(name.into()),
        namespace: Some(args.namespace.clone()),
        labels: Some([("linkerd.io/extension".to_owned(), "multicluster".to_owned())].into()),
        ..ObjectMeta::default()
    };
    let authentication = MeshTLSAuthentication {
        metadata: meta(AUTHENTICATION),
        spec: MeshTlsAuthenticationSpec {
            identities: Some(identities(args)?),
            identity_refs: None,
        },
    };
    let target = match &args.server {
        Some(server) => ObjectRef {
            group: Some("policy.linkerd.io".into()),
            kind: "Server".into(),
            name: server.clone(),
            namespace: None,
        },
        None => ObjectRef {
            group: Some(String::new()),
            kind: "Namespace".into(),
            name: args.namespace.clone(),
            namespace: None,
        },
    };
    let policy = AuthorizationPolicy {
        metadata: meta(POLICY),
        spec: AuthorizationPolicySpec {
            target_ref: target,
            required_authentication_refs: vec![ObjectRef {
                group: Some("policy.linkerd.io".into()),
                kind: "MeshTLSAuthentication".into(),
                name: AUTHENTICATION.into(),
                namespace: None,
            }],
        },
    };
    manifest::to_yaml(&[object(&authentication)?, object(&policy)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(namespace: &str) -> AllowArgs {
        AllowArgs {
            namespace: namespace.into(),
            server: None,
            from_namespaces: Vec::new(),
            identities: Vec::new(),
            trust_domain: "cluster.local".into(),
        }
    }

    #[test]
    fn the_linked_namespace_is_let_in_by_default_and_the_gateway_is_not() {
        assert_eq!(
            identities(&args("test")).expect("valid"),
            ["*.test.serviceaccount.identity.linkerd.cluster.local"]
        );
    }

    #[test]
    fn bad_names_and_identities_are_named() {
        let error = identities(&args("Test")).expect_err("upper case");
        assert!(
            error.to_string().starts_with("--namespace \"Test\""),
            "{error}"
        );
        let mut bad = args("test");
        bad.identities = vec!["web..shop".into()];
        let error = identities(&bad).expect_err("empty label");
        assert!(
            error.to_string().starts_with("--identity \"web..shop\""),
            "{error}"
        );
        bad.identities = vec!["*".into()];
        assert!(identities(&bad).is_ok(), "any identity");
    }
}
