//! One pass of mirroring: list the linked cluster's Services that the
//! Link's selector exports, compute their mirrors ([`crate::desired`]) and
//! apply the plan to this cluster (server-side apply as `mesh-mirror`,
//! Endpoints always rewritten so the gateway's current addresses and
//! liveness show). Mirrors of other Links and other local Services are
//! never touched; a remote Service that cannot be mirrored is reported,
//! not fatal.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use mesh_api::labels::{
    MIRROR_CLUSTER_NAME, MIRROR_EXPORTED, MIRROR_MIRRORED_SERVICE, MIRROR_REMOTE_RESOURCE_VERSION,
};

use crate::desired::{self, Gateway, Key, Plan};

/// The field manager of everything the mirror writes.
pub const FIELD_MANAGER: &str = "mesh-mirror";

/// What one pass did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The plan it applied.
    pub plan: Plan,
    /// Remote Services it could not mirror, with the reason.
    pub invalid: Vec<(Key, desired::Invalid)>,
    /// Mirrors the API server refused to write or delete, with its answer
    /// (the other mirrors are still written).
    pub failed: Vec<(Key, String)>,
}

/// The label selector a Link's `selector` stands for (Linkerd's default:
/// `mirror.linkerd.io/exported=true`).
pub fn selector_string(selector: Option<&LabelSelector>) -> String {
    let Some(selector) = selector else {
        return format!("{MIRROR_EXPORTED}=true");
    };
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for requirement in selector.match_expressions.iter().flatten() {
        let values = requirement.values.clone().unwrap_or_default().join(",");
        parts.push(match requirement.operator.as_str() {
            "In" => format!("{} in ({values})", requirement.key),
            "NotIn" => format!("{} notin ({values})", requirement.key),
            "Exists" => requirement.key.clone(),
            _ => format!("!{}", requirement.key),
        });
    }
    parts.join(",")
}

/// Mirrors what `remote` exports under `selector` into `local`.
pub async fn sync(
    remote: &kube::Client,
    local: &kube::Client,
    selector: &str,
    gateway: &Gateway,
) -> Result<Outcome, kube::Error> {
    let remote_services = Api::<Service>::all(remote.clone())
        .list(&ListParams::default().labels(selector))
        .await?;
    let mut outcome = Outcome::default();
    let mut desired_services: BTreeMap<Key, Service> = BTreeMap::new();
    let mut desired_endpoints: Vec<Endpoints> = Vec::new();
    for service in &remote_services.items {
        let key = (
            service.metadata.namespace.clone().unwrap_or_default(),
            service.metadata.name.clone().unwrap_or_default(),
        );
        let ready = has_ready_endpoints(remote, &key).await?;
        match (
            desired::mirror_service(service, gateway),
            desired::mirror_endpoints(service, ready, gateway),
        ) {
            (Ok(mirror), Ok(endpoints)) => {
                let mirror_key = (
                    key.0.clone(),
                    mirror.metadata.name.clone().unwrap_or_default(),
                );
                desired_services.insert(mirror_key, mirror);
                desired_endpoints.push(endpoints);
            }
            (Err(invalid), _) | (_, Err(invalid)) => outcome.invalid.push((key, invalid)),
        }
    }
    let existing: BTreeMap<Key, Option<String>> = Api::<Service>::all(local.clone())
        .list(&ListParams::default().labels(&format!(
            "{MIRROR_MIRRORED_SERVICE}=true,{MIRROR_CLUSTER_NAME}={}",
            gateway.cluster
        )))
        .await?
        .items
        .into_iter()
        .map(|s| {
            let version = s
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(MIRROR_REMOTE_RESOURCE_VERSION))
                .cloned();
            (
                (
                    s.metadata.namespace.unwrap_or_default(),
                    s.metadata.name.unwrap_or_default(),
                ),
                version,
            )
        })
        .collect();
    let plan = desired::plan(&desired_services, &existing, true);
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    for service in plan.create.iter().chain(&plan.update) {
        let key = key_of(&service.metadata);
        if let Err(e) = Api::<Service>::namespaced(local.clone(), &key.0)
            .patch(&key.1, &apply, &Patch::Apply(with_kind(service, "Service")))
            .await
        {
            outcome.failed.push((key, e.to_string()));
        }
    }
    for endpoints in &desired_endpoints {
        let key = key_of(&endpoints.metadata);
        if let Err(e) = Api::<Endpoints>::namespaced(local.clone(), &key.0)
            .patch(
                &key.1,
                &apply,
                &Patch::Apply(with_kind(endpoints, "Endpoints")),
            )
            .await
        {
            outcome.failed.push((key, e.to_string()));
        }
    }
    for (namespace, name) in &plan.delete {
        // The Endpoints go with the Service (same name, no selector: the
        // API server keeps them otherwise), so both are deleted.
        let _ = Api::<Endpoints>::namespaced(local.clone(), namespace)
            .delete(name, &DeleteParams::default())
            .await;
        if let Err(e) = Api::<Service>::namespaced(local.clone(), namespace)
            .delete(name, &DeleteParams::default())
            .await
        {
            outcome
                .failed
                .push(((namespace.clone(), name.clone()), e.to_string()));
        }
    }
    outcome.plan = plan;
    Ok(outcome)
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Key {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// The object as JSON with its apiVersion and kind, as server-side apply wants.
fn with_kind<T: serde::Serialize>(object: &T, kind: &str) -> serde_json::Value {
    let mut value = serde_json::to_value(object).unwrap_or_default();
    value["apiVersion"] = "v1".into();
    value["kind"] = kind.into();
    value
}

/// Whether the remote Service has a ready endpoint (its Endpoints object).
async fn has_ready_endpoints(
    remote: &kube::Client,
    (namespace, name): &Key,
) -> Result<bool, kube::Error> {
    let endpoints = Api::<Endpoints>::namespaced(remote.clone(), namespace)
        .get_opt(name)
        .await?;
    Ok(endpoints
        .and_then(|e| e.subsets)
        .unwrap_or_default()
        .iter()
        .any(|s| s.addresses.as_ref().is_some_and(|a| !a.is_empty())))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    #[test]
    fn link_selectors_become_label_selectors() {
        assert_eq!(selector_string(None), "mirror.linkerd.io/exported=true");
        let selector = LabelSelector {
            match_labels: Some([("tier".to_owned(), "web".to_owned())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: "In".into(),
                values: Some(vec!["prod".into(), "staging".into()]),
            }]),
        };
        assert_eq!(
            selector_string(Some(&selector)),
            "tier=web,env in (prod,staging)"
        );
    }
}
