//! The `linkerd-config` ConfigMap, as Linkerd keeps it: the values the
//! control plane was rendered from (`data.values`, YAML in Linkerd's Helm
//! value names), with the version that rendered them (`linkerdVersion`).
//! `mesh version` and `mesh check` read the control plane's version from
//! it; nothing secret goes in it (the issuer's key stays in its Secret).

use k8s_openapi::api::core::v1::ConfigMap;
use mesh_api::labels::{CONTROL_PLANE_COMPONENT, CONTROL_PLANE_NAMESPACE as NS};
use serde_json::json;

use super::TrustMaterial;
use super::component::meta;
use super::manifest::{Object, object};
use super::settings::{IssuerScheme, Settings};
use crate::images::{TAG, image, repository};

/// The ConfigMap's name.
pub const NAME: &str = "linkerd-config";
/// The key of its values document.
pub const VALUES_KEY: &str = "values";

/// The values `settings` stand for, in Linkerd's names. What follows
/// from others (an image named after the registry, the proxy version
/// after mesh's) is left out, so that rendering from these values with a
/// newer CLI moves it along as the first install would have.
pub fn values(settings: &Settings, material: &TrustMaterial) -> serde_json::Value {
    let duration = super::settings::duration_arg;
    let registry = settings.registry.as_deref();
    let mut values = json!({
        "linkerdVersion": TAG,
        "clusterDomain": settings.cluster_domain,
        "clusterNetworks": settings.cluster_networks,
        "identityTrustDomain": settings.identity_trust_domain,
        "identityTrustAnchorsPEM": material.anchors_pem,
        "identity": {
            "externalCA": settings.external_ca,
            "issuer": {
                "scheme": if settings.external_issuer {
                    IssuerScheme::Kubernetes
                } else {
                    IssuerScheme::Linkerd
                },
                "issuanceLifetime": duration(settings.issuance_lifetime),
                "clockSkewAllowance": duration(settings.clock_skew_allowance),
            },
        },
        "controllerReplicas": settings.replicas,
        "enablePodAntiAffinity": settings.anti_affinity,
        "enablePodDisruptionBudget": settings.disruption_budget,
        "webhookFailurePolicy": settings.webhook_failure_policy.as_str(),
        "proxy": {"defaultInboundPolicy": settings.default_inbound_policy},
    });
    if !settings.install_namespace {
        values["installNamespace"] = false.into();
    }
    let resources = &settings.resources;
    for (path, chosen) in [
        (&["controllerResources"][..], &resources.controller),
        (&["identityResources"], &resources.identity),
        (&["destinationResources"], &resources.destination),
        (&["proxyInjectorResources"], &resources.proxy_injector),
        (&["policyController", "resources"], &resources.policy),
        (&["proxy", "resources"], &resources.proxy),
    ] {
        if !chosen.is_empty() {
            let mut at = &mut values;
            for key in path {
                at = &mut at[*key];
            }
            *at = json!(chosen);
        }
    }
    if let Some(registry) = registry {
        values["imageRegistry"] = registry.into();
    }
    if settings.controller_image != image(registry, "controller") {
        values["controllerImage"] = settings.controller_image.clone().into();
    }
    let proxy_image = settings
        .proxy_image
        .as_ref()
        .filter(|name| **name != repository(registry, "proxy"));
    if let Some(name) = proxy_image {
        values["proxy"]["image"]["name"] = name.clone().into();
    }
    if let Some(version) = &settings.proxy_version {
        values["proxy"]["image"]["version"] = version.clone().into();
    }
    if let Some(level) = &settings.proxy_log_level {
        values["proxy"]["logLevel"] = level.clone().into();
    }
    if let Some(image) = &settings.proxy_init_image {
        let (name, version) = image.rsplit_once(':').unwrap_or((image, "latest"));
        values["proxyInit"] = json!({"image": {"name": name, "version": version}});
    }
    values
}

/// The ConfigMap.
pub fn object_for(settings: &Settings, material: &TrustMaterial) -> anyhow::Result<Object> {
    let values = serde_saphyr::to_string(&values(settings, material))?;
    object(&ConfigMap {
        metadata: meta(NAME, Some(NS), &[(CONTROL_PLANE_COMPONENT, "controller")]),
        data: Some([(VALUES_KEY.to_owned(), values)].into()),
        ..ConfigMap::default()
    })
}

/// The values stored where `client` points; `None` when mesh is not
/// installed there.
pub async fn installed_values(client: &kube::Client) -> anyhow::Result<Option<serde_json::Value>> {
    use anyhow::Context;
    let maps: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), NS);
    let Some(map) = maps
        .get_opt(NAME)
        .await
        .with_context(|| format!("reading ConfigMap {NS}/{NAME}"))?
    else {
        return Ok(None);
    };
    let text = map
        .data
        .as_ref()
        .and_then(|d| d.get(VALUES_KEY))
        .with_context(|| format!("ConfigMap {NS}/{NAME} has no {VALUES_KEY:?}"))?;
    let values = serde_saphyr::from_str(text)
        .with_context(|| format!("ConfigMap {NS}/{NAME}: {VALUES_KEY} is not YAML"))?;
    Ok(Some(values))
}

/// The version of the control plane installed where `client` points
/// (`linkerdVersion` in `linkerd-config`); `None` when there is none.
pub async fn installed_version(client: &kube::Client) -> anyhow::Result<Option<String>> {
    let Some(values) = installed_values(client).await? else {
        return Ok(None);
    };
    let version = values["linkerdVersion"].as_str().ok_or_else(|| {
        anyhow::anyhow!("ConfigMap {NS}/{NAME}: {VALUES_KEY} has no linkerdVersion")
    })?;
    Ok(Some(version.to_owned()))
}
