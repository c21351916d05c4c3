//! The policy category: the policy controller answers (asked for its own
//! pod, through its admin server: its own answer, not the CLI's reading of
//! the objects); Servers that select no pod; AuthorizationPolicies whose
//! target or authentications do not exist; objects the controller refused
//! (its Events); and objects written at a version only mesh serves.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::ListParams;
use kube::core::{Selector, SelectorExt};
use mesh_api::crds::MESH_ONLY_VERSIONS;
use mesh_api::crds::policy::{
    AuthorizationPolicy, MeshTLSAuthentication, NetworkAuthentication, Server,
};
use mesh_api::labels::{CONTROL_PLANE_COMPONENT, CONTROL_PLANE_NAMESPACE as NS};

use super::report::{Outcome, Problem, Report};

/// The policy checks.
pub async fn check(client: &kube::Client, report: &mut Report) {
    report.category("linkerd-policy");
    report.record(
        "the policy controller serves policies",
        serves(client).await,
    );
    let servers = Api::<Server>::all(client.clone())
        .list(&ListParams::default())
        .await;
    let policies = Api::<AuthorizationPolicy>::all(client.clone())
        .list(&ListParams::default())
        .await;
    let (servers, policies) = match (servers, policies) {
        (Ok(s), Ok(p)) => (s.items, p.items),
        (Err(e), _) | (_, Err(e)) => {
            report.record(
                "policy objects can be read",
                Err(Problem::error(
                    format!("listing Servers and AuthorizationPolicies: {e}"),
                    "",
                )),
            );
            return;
        }
    };
    report.record(
        "every Server selects a pod",
        servers_select(client, &servers).await,
    );
    report.record(
        "authorization policies refer to objects that exist",
        references_exist(client, &servers, &policies).await,
    );
    report.record(
        "the policy controller accepted every policy object",
        refused(client).await,
    );
    report.record(
        "policy objects use versions Linkerd serves",
        versions(client, &policies).await,
    );
}

async fn serves(client: &kube::Client) -> Outcome {
    let pods = Api::<Pod>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels(&format!("{CONTROL_PLANE_COMPONENT}=policy")))
        .await
        .map_err(|e| Problem::error(format!("listing the policy controller's pods: {e}"), ""))?;
    let pod = pods
        .items
        .iter()
        .find(|p| mesh_api::pod::is_ready(p))
        .and_then(|p| p.metadata.name.clone())
        .ok_or_else(|| {
            Problem::error(
                "no ready policy controller pod",
                "see `kubectl -n linkerd describe deploy/linkerd-policy`",
            )
        })?;
    let answer =
        crate::commands::policy::served_policy(client, NS, &pod, mesh_api::ports::POLICY).await;
    match answer {
        Ok(policy) if policy["server"]["name"].is_string() => Ok(()),
        Ok(policy) => Err(Problem::error(
            format!("{NS}/{pod} answered without a server: {policy}"),
            "",
        )),
        Err(e) => Err(Problem::error(
            format!("{e:#}"),
            "check its logs: `kubectl -n linkerd logs deploy/linkerd-policy`",
        )),
    }
}

fn object_name<K: kube::ResourceExt>(object: &K) -> String {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

async fn servers_select(client: &kube::Client, servers: &[Server]) -> Outcome {
    let mut empty = Vec::new();
    for server in servers {
        let ns = server.metadata.namespace.clone().unwrap_or_default();
        let Some(selector) = server
            .spec
            .pod_selector
            .clone()
            .and_then(|s| Selector::try_from(s).ok())
        else {
            continue;
        };
        let pods = Api::<Pod>::namespaced(client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .map_err(|e| Problem::error(format!("listing pods in {ns}: {e}"), ""))?;
        let selects = pods
            .items
            .iter()
            .any(|p| selector.matches(p.metadata.labels.as_ref().unwrap_or(&Default::default())));
        if !selects {
            empty.push(object_name(server));
        }
    }
    if empty.is_empty() {
        Ok(())
    } else {
        Err(Problem::warning(
            format!("Servers selecting no pod: {}", empty.join(", ")),
            "check each Server's podSelector against its pods' labels",
        ))
    }
}

async fn references_exist(
    client: &kube::Client,
    servers: &[Server],
    policies: &[AuthorizationPolicy],
) -> Outcome {
    let servers: BTreeSet<String> = servers.iter().map(object_name).collect();
    let names = |list: Vec<String>| list.into_iter().collect::<BTreeSet<String>>();
    let mesh_tls = names(
        Api::<MeshTLSAuthentication>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map(|l| l.items.iter().map(object_name).collect())
            .unwrap_or_default(),
    );
    let networks = names(
        Api::<NetworkAuthentication>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map(|l| l.items.iter().map(object_name).collect())
            .unwrap_or_default(),
    );
    let mut missing = Vec::new();
    for policy in policies {
        let ns = policy.metadata.namespace.clone().unwrap_or_default();
        let target = &policy.spec.target_ref;
        if target.kind.eq_ignore_ascii_case("server")
            && !servers.contains(&format!("{ns}/{}", target.name))
        {
            missing.push(format!(
                "{} targets Server {} that does not exist",
                object_name(policy),
                target.name
            ));
        }
        for reference in &policy.spec.required_authentication_refs {
            let at = format!(
                "{}/{}",
                reference.namespace.clone().unwrap_or_else(|| ns.clone()),
                reference.name
            );
            let known = match reference.kind.to_ascii_lowercase().as_str() {
                "meshtlsauthentication" => &mesh_tls,
                "networkauthentication" => &networks,
                _ => continue,
            };
            if !known.contains(&at) {
                missing.push(format!(
                    "{} requires {} {at} that does not exist (it admits no one)",
                    object_name(policy),
                    reference.kind
                ));
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Problem::warning(
            missing.join("; "),
            "create what they refer to, or fix the names",
        ))
    }
}

async fn refused(client: &kube::Client) -> Outcome {
    let events = Api::<Event>::all(client.clone())
        .list(&ListParams::default().fields("reason=Invalid"))
        .await
        .map_err(|e| Problem::error(format!("listing Events: {e}"), ""))?;
    let refused: Vec<String> = events
        .items
        .iter()
        .filter(|e| e.reporting_component.as_deref() == Some("linkerd-policy"))
        .map(|e| {
            format!(
                "{} {}/{}: {}",
                e.involved_object.kind.clone().unwrap_or_default(),
                e.involved_object.namespace.clone().unwrap_or_default(),
                e.involved_object.name.clone().unwrap_or_default(),
                e.message.clone().unwrap_or_default()
            )
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(Problem::warning(
            format!(
                "refused (the last valid version, if any, stays in force): {}",
                refused.join("; ")
            ),
            "fix the field named and apply again",
        ))
    }
}

async fn versions(client: &kube::Client, policies: &[AuthorizationPolicy]) -> Outcome {
    let mesh_tls = Api::<MeshTLSAuthentication>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let written_at = |kind: &str,
                      meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta|
     -> Option<String> {
        let mesh_only = MESH_ONLY_VERSIONS
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, v)| format!("policy.linkerd.io/{v}"))
            .collect::<Vec<_>>();
        meta.managed_fields
            .iter()
            .flatten()
            .filter_map(|f| f.api_version.clone())
            .find(|v| mesh_only.contains(v))
            .map(|v| {
                format!(
                    "{kind} {}/{} ({v})",
                    meta.namespace.clone().unwrap_or_default(),
                    meta.name.clone().unwrap_or_default()
                )
            })
    };
    let mesh_only: Vec<String> = policies
        .iter()
        .filter_map(|p| written_at("AuthorizationPolicy", &p.metadata))
        .chain(
            mesh_tls
                .iter()
                .filter_map(|m| written_at("MeshTLSAuthentication", &m.metadata)),
        )
        .collect();
    if mesh_only.is_empty() {
        Ok(())
    } else {
        Err(Problem::warning(
            format!(
                "written at a version only mesh serves: {}",
                mesh_only.join(", ")
            ),
            "Linkerd serves these kinds as policy.linkerd.io/v1alpha1: write that to keep the manifests portable",
        ))
    }
}
