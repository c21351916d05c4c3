//! What the policy controller's tests against the real kube-apiserver
//! share: starting the controller, and creating objects from YAML as
//! kubectl would.

use kube::Api;
use kube::api::{Patch, PatchParams};
use mesh_clusters::testing::TestCluster;
use mesh_policy::index::defaults::ClusterInfo;
use mesh_policy::server::{self, Running, ServerConfig};

/// Starts a policy controller (plain gRPC) against `cluster`, with mesh's
/// CRDs installed.
pub async fn start(cluster: &TestCluster) -> Running {
    mesh_clusters::testing::ensure_crds(&cluster.client, mesh_api::crds::all()).await;
    server::start(
        ServerConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            admin_listen: "127.0.0.1:0".parse().expect("addr"),
            cluster: ClusterInfo::default(),
            tls: None,
        },
        cluster.client.clone(),
    )
    .await
    .expect("policy controller starts")
}

/// Creates or updates the object `yaml` describes at the version it names
/// (found by discovery, as kubectl finds it), as `kubectl apply
/// --server-side` does.
pub async fn apply(client: &kube::Client, ns: &str, yaml: &str) {
    use kube::core::{DynamicObject, GroupVersionKind};
    let object: DynamicObject = serde_saphyr::from_str(yaml).expect("yaml");
    let types = object.types.clone().expect("apiVersion and kind");
    let gvk = GroupVersionKind::try_from(&types).expect("a group, version and kind");
    let (resource, _) = kube::discovery::oneshot::pinned_kind(client, &gvk)
        .await
        .unwrap_or_else(|e| panic!("{}/{} is not served: {e}", types.api_version, types.kind));
    let name = object.metadata.name.clone().expect("a name");
    Api::<DynamicObject>::namespaced_with(client.clone(), ns, &resource)
        .patch(
            &name,
            &PatchParams::apply("mesh-policy-test").force(),
            &Patch::Apply(&object),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {} {}: {e}", types.api_version, types.kind));
}
