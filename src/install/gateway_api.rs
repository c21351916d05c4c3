//! The Gateway API CRDs in `mesh install --crds` and `mesh uninstall`, as
//! Linkerd handles them: mesh's copies (the project's own CRDs, see
//! `mesh_api::crds::gateway_api`) carry `linkerd.io/control-plane-ns`; a
//! cluster that already has HTTPRoute or GRPCRoute CRDs without that label
//! (installed by the user or another project) keeps them: mesh neither
//! renders nor deletes them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;

use crate::cli::GlobalArgs;

/// The label mesh's copies carry (Linkerd's).
const OWNER_LABEL: &str = "linkerd.io/control-plane-ns";

/// mesh's copies of the Gateway API CRDs, labelled as its own.
pub fn ours() -> Vec<CustomResourceDefinition> {
    mesh_api::crds::gateway_api()
        .into_iter()
        .map(|mut crd| {
            crd.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert(
                    OWNER_LABEL.into(),
                    mesh_api::labels::CONTROL_PLANE_NAMESPACE.into(),
                );
            crd
        })
        .collect()
}

/// Whether `crd` is a Gateway API CRD mesh ships.
pub fn is_gateway_api(crd: &CustomResourceDefinition) -> bool {
    crd.spec.group == GROUP
}

/// The Gateway API's API group.
pub const GROUP: &str = "gateway.networking.k8s.io";

/// Whether the Gateway API CRDs are mesh's to render (and delete): not
/// when the cluster of `global` has one that mesh did not install. A
/// cluster that cannot be read leaves them in, saying so on stderr.
pub async fn ours_to_manage(global: &GlobalArgs, command: &str) -> bool {
    let client = match mesh_api::kube_client::client(
        global.kubeconfig.as_deref(),
        global.context.as_deref(),
    )
    .await
    {
        Ok(client) => client,
        Err(e) => {
            eprintln!(
                "{command}: could not read the cluster ({e}); including the Gateway API CRDs"
            );
            return true;
        }
    };
    let api = Api::<CustomResourceDefinition>::all(client);
    for crd in ours() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        match api.get_opt(&name).await {
            Ok(Some(existing)) => {
                let mesh_owned = existing
                    .metadata
                    .labels
                    .as_ref()
                    .is_some_and(|l| l.contains_key(OWNER_LABEL));
                if !mesh_owned {
                    let version = existing
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get("gateway.networking.k8s.io/bundle-version"))
                        .cloned()
                        .unwrap_or_else(|| "unknown".into());
                    eprintln!(
                        "{command}: the cluster already has the Gateway API CRD {name} (version {version}, not installed by mesh); \
                         leaving the Gateway API CRDs to their owner (--ignore-cluster includes them)"
                    );
                    return false;
                }
            }
            Ok(None) => {}
            Err(e) => {
                eprintln!(
                    "{command}: could not read CRD {name} ({e}); including the Gateway API CRDs"
                );
                return true;
            }
        }
    }
    true
}
