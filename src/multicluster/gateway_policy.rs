//! Who may use this cluster's gateway: the `linkerd-gateway` Server (the
//! gateway pods' port 4143), and an AuthorizationPolicy requiring a mesh
//! identity (`--gateway-allowed-identity`, any under the shared trust
//! anchor by default) from any network (linked clusters reach the gateway
//! over the WAN, not from this cluster's networks). The gateway's proxy
//! enforces it on every TCP connection and QUIC stream before forwarding;
//! what the callers may then reach is decided by each target's own policy,
//! for the caller's identity.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use mesh_api::crds::policy::{
    AuthorizationPolicy, AuthorizationPolicySpec, MeshTLSAuthentication, MeshTlsAuthenticationSpec,
    Network, NetworkAuthentication, NetworkAuthenticationSpec, ObjectRef, Server, ServerSpec,
};
use mesh_api::labels::MULTICLUSTER_NAMESPACE as NS;

use super::install::GATEWAY;
use crate::install::manifest::{Object, object};

/// The names Linkerd's multicluster chart gives these objects, so a
/// Linkerd user finds (and edits) the same ones.
const CALLERS: &str = "any-meshed";
const ANYWHERE: &str = "source-cluster";

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NS.into()),
        labels: Some(
            [
                ("linkerd.io/extension".to_owned(), "multicluster".to_owned()),
                ("app".to_owned(), GATEWAY.to_owned()),
            ]
            .into(),
        ),
        ..ObjectMeta::default()
    }
}

fn policy_ref(kind: &str, name: &str) -> ObjectRef {
    ObjectRef {
        group: Some("policy.linkerd.io".into()),
        kind: kind.into(),
        name: name.into(),
        namespace: None,
    }
}

/// The gateway's Server, its AuthorizationPolicy and the authentications
/// it requires: `identities` (`*` for any mesh identity).
pub fn objects(identities: &[String]) -> anyhow::Result<Vec<Object>> {
    for identity in identities {
        anyhow::ensure!(
            super::allow::identity_ok(identity),
            "--gateway-allowed-identity {identity:?}: `*`, `*.<suffix>` or a name such as web.shop.serviceaccount.identity.linkerd.cluster.local"
        );
    }
    let server = Server {
        metadata: meta(GATEWAY),
        spec: ServerSpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some([("app".to_owned(), GATEWAY.to_owned())].into()),
                ..LabelSelector::default()
            }),
            port: serde_json::json!(mesh_api::ports::GATEWAY),
            ..ServerSpec::default()
        },
    };
    let callers = MeshTLSAuthentication {
        metadata: meta(CALLERS),
        spec: MeshTlsAuthenticationSpec {
            identities: Some(identities.to_vec()),
            identity_refs: None,
        },
    };
    let anywhere = NetworkAuthentication {
        metadata: meta(ANYWHERE),
        spec: NetworkAuthenticationSpec {
            networks: ["0.0.0.0/0", "::/0"]
                .iter()
                .map(|cidr| Network {
                    cidr: (*cidr).into(),
                    except: None,
                })
                .collect(),
        },
    };
    let policy = AuthorizationPolicy {
        metadata: meta(GATEWAY),
        spec: AuthorizationPolicySpec {
            target_ref: policy_ref("Server", GATEWAY),
            required_authentication_refs: vec![
                policy_ref("MeshTLSAuthentication", CALLERS),
                policy_ref("NetworkAuthentication", ANYWHERE),
            ],
        },
    };
    Ok(vec![
        object(&server)?,
        object(&callers)?,
        object(&anywhere)?,
        object(&policy)?,
    ])
}
