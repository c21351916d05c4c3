//! Server-side apply of multi-document YAML, as `kubectl apply
//! --server-side` does: used for the add-ons every cluster gets (CoreDNS)
//! and by tests that deploy manifests.

use std::collections::HashMap;

use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use kube::{Api, Client};
use serde_json::Value;

/// The field manager mesh applies with.
pub const FIELD_MANAGER: &str = "mesh";

/// Applies every document of `yaml`; returns `kind/name` of each, in order.
/// Namespaced objects without a namespace go to `default`.
pub async fn apply_yaml(client: &Client, yaml: &str) -> anyhow::Result<Vec<String>> {
    apply_yaml_in(client, "default", yaml).await
}

/// The same, with namespaced objects that name no namespace going to
/// `namespace` (as `kubectl apply -n`).
pub async fn apply_yaml_in(
    client: &Client,
    namespace: &str,
    yaml: &str,
) -> anyhow::Result<Vec<String>> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(yaml)
        .map_err(|e| anyhow::anyhow!("the manifest is not valid YAML: {e}"))?;
    let mut kinds: HashMap<GroupVersionKind, (ApiResource, Scope)> = HashMap::new();
    let mut applied = Vec::new();
    for (index, document) in documents.into_iter().enumerate() {
        if document.is_null() {
            continue;
        }
        let object: DynamicObject = serde_json::from_value(document)
            .map_err(|e| anyhow::anyhow!("document {}: not a Kubernetes object: {e}", index + 1))?;
        let types = object.types.clone().ok_or_else(|| {
            anyhow::anyhow!("document {}: apiVersion and kind are missing", index + 1)
        })?;
        let (group, version) = match types.api_version.split_once('/') {
            Some((group, version)) => (group.to_string(), version.to_string()),
            None => (String::new(), types.api_version.clone()),
        };
        let gvk = GroupVersionKind::gvk(&group, &version, &types.kind);
        let name = object.metadata.name.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "document {} ({}): metadata.name is missing",
                index + 1,
                types.kind
            )
        })?;
        if !kinds.contains_key(&gvk) {
            let (resource, capabilities) = discovery::pinned_kind(client, &gvk)
                .await
                .map_err(|e| anyhow::anyhow!("{} {name}: unknown kind {gvk:?}: {e}", types.kind))?;
            kinds.insert(gvk.clone(), (resource, capabilities.scope));
        }
        let (resource, scope) = &kinds[&gvk];
        let api: Api<DynamicObject> = match scope {
            Scope::Namespaced => Api::namespaced_with(
                client.clone(),
                object.metadata.namespace.as_deref().unwrap_or(namespace),
                resource,
            ),
            Scope::Cluster => Api::all_with(client.clone(), resource),
        };
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
        .map_err(|e| anyhow::anyhow!("applying {} {name}: {e}", types.kind))?;
        applied.push(format!("{}/{name}", types.kind.to_lowercase()));
    }
    Ok(applied)
}
