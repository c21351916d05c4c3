//! Default inbound policies, as Linkerd defines them: what a port no Server
//! selects allows, set for the cluster (`proxy.defaultInboundPolicy`), a
//! namespace or a pod (`config.linkerd.io/default-inbound-policy`), and what
//! a Server's `accessPolicy` adds.

use std::time::Duration;

use ipnet::IpNet;

use super::{
    AuthorizationRef, ClientAuthentication, ClientAuthorization, IdentityMatch, NetworkMatch,
};

/// A default inbound policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DefaultPolicy {
    /// Allow clients: from anywhere or only the cluster's networks, with or
    /// without a mesh identity.
    Allow {
        /// Only clients with a mesh identity.
        authenticated_only: bool,
        /// Only clients in the cluster's networks.
        cluster_only: bool,
    },
    /// Allow nothing.
    Deny,
    /// Allow everything, and have proxies log and count what a `deny` would
    /// have refused.
    Audit,
}

/// Not one of the six policy names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a default inbound policy ({names})",
    names = mesh_api::labels::DEFAULT_INBOUND_POLICIES.join(", ")
)]
pub struct UnknownPolicy(pub String);

impl std::str::FromStr for DefaultPolicy {
    type Err = UnknownPolicy;

    fn from_str(text: &str) -> Result<Self, UnknownPolicy> {
        let allow = |authenticated_only, cluster_only| Self::Allow {
            authenticated_only,
            cluster_only,
        };
        Ok(match text.trim() {
            "all-unauthenticated" => allow(false, false),
            "all-authenticated" => allow(true, false),
            "cluster-unauthenticated" => allow(false, true),
            "cluster-authenticated" => allow(true, true),
            "deny" => Self::Deny,
            "audit" => Self::Audit,
            other => return Err(UnknownPolicy(other.to_owned())),
        })
    }
}

impl DefaultPolicy {
    /// Its name, as written and as proxies' metrics label it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow {
                authenticated_only: false,
                cluster_only: false,
            } => "all-unauthenticated",
            Self::Allow {
                authenticated_only: true,
                cluster_only: false,
            } => "all-authenticated",
            Self::Allow {
                authenticated_only: false,
                cluster_only: true,
            } => "cluster-unauthenticated",
            Self::Allow {
                authenticated_only: true,
                cluster_only: true,
            } => "cluster-authenticated",
            Self::Deny => "deny",
            Self::Audit => "audit",
        }
    }

    /// The same policy with identities required (for a port listed in
    /// `config.linkerd.io/proxy-require-identity-inbound-ports`).
    pub fn requiring_identity(self) -> Self {
        match self {
            Self::Allow { cluster_only, .. } => Self::Allow {
                authenticated_only: true,
                cluster_only,
            },
            other => other,
        }
    }

    /// The authorizations it stands for.
    pub fn authorizations(
        self,
        cluster: &ClusterInfo,
    ) -> Vec<(AuthorizationRef, ClientAuthorization)> {
        let everywhere = || vec![NetworkMatch::from(all_v4()), NetworkMatch::from(all_v6())];
        let (networks, authentication) = match self {
            Self::Deny => return Vec::new(),
            Self::Audit => (everywhere(), ClientAuthentication::Unauthenticated),
            Self::Allow {
                authenticated_only,
                cluster_only,
            } => (
                if cluster_only {
                    cluster
                        .networks
                        .iter()
                        .copied()
                        .map(NetworkMatch::from)
                        .collect()
                } else {
                    everywhere()
                },
                if authenticated_only {
                    ClientAuthentication::TlsAuthenticated(vec![IdentityMatch::Suffix(Vec::new())])
                } else {
                    ClientAuthentication::Unauthenticated
                },
            ),
        };
        vec![(
            AuthorizationRef::Default(self.as_str()),
            ClientAuthorization {
                networks,
                authentication,
            },
        )]
    }
}

fn all_v4() -> IpNet {
    IpNet::V4(ipnet::Ipv4Net::default())
}

fn all_v6() -> IpNet {
    IpNet::V6(ipnet::Ipv6Net::default())
}

/// What the index knows of its cluster.
#[derive(Debug, Clone)]
pub struct ClusterInfo {
    /// The cluster's pod and node networks (`clusterNetworks`).
    pub networks: Vec<IpNet>,
    /// The cluster-wide default policy (`proxy.defaultInboundPolicy`).
    pub default_policy: DefaultPolicy,
    /// Networks kubelet probes come from (all, as Linkerd's default).
    pub probe_networks: Vec<IpNet>,
    /// The control plane's namespace, part of identities.
    pub control_namespace: String,
    /// The trust domain, part of identities.
    pub trust_domain: String,
    /// How long detection waits on a port no Server describes.
    pub detect_timeout: Duration,
    /// The cluster's DNS domain (Services are `<svc>.<ns>.svc.<domain>`).
    pub cluster_domain: String,
}

impl Default for ClusterInfo {
    fn default() -> Self {
        Self {
            networks: mesh_api::ports::DEFAULT_CLUSTER_NETWORKS
                .split(',')
                .filter_map(|n| n.parse().ok())
                .collect(),
            default_policy: DefaultPolicy::Allow {
                authenticated_only: false,
                cluster_only: false,
            },
            probe_networks: vec![all_v4(), all_v6()],
            control_namespace: mesh_api::labels::CONTROL_PLANE_NAMESPACE.into(),
            trust_domain: mesh_api::identity::DEFAULT_TRUST_DOMAIN.into(),
            detect_timeout: Duration::from_secs(10),
            cluster_domain: "cluster.local".into(),
        }
    }
}

impl ClusterInfo {
    /// The identity of ServiceAccount `name` in `namespace`.
    pub fn service_account_identity(&self, namespace: &str, name: &str) -> String {
        format!(
            "{name}.{namespace}.serviceaccount.identity.{}.{}",
            self.control_namespace, self.trust_domain
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_name_reads_back() {
        for name in mesh_api::labels::DEFAULT_INBOUND_POLICIES {
            let policy: DefaultPolicy = name.parse().expect(name);
            assert_eq!(policy.as_str(), name);
        }
        let error = "allow".parse::<DefaultPolicy>().expect_err("unknown");
        assert!(
            error.to_string().contains("cluster-authenticated"),
            "{error}"
        );
    }
}
