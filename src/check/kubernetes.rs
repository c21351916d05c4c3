//! The Kubernetes API: a client from the kubeconfig, a query that answers,
//! a version with native sidecars; before install, the permissions
//! `mesh install | kubectl apply -f -` needs and an unused namespace.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::PostParams;
use mesh_api::labels::CONTROL_PLANE_NAMESPACE as NS;

use super::report::{Outcome, Problem, Report};
use crate::cli::GlobalArgs;

/// Native sidecars (restartable init containers) are on by default from 1.29.
const MIN_MINOR: u32 = 29;

/// The API checks; the client when later checks can use it.
pub async fn check(global: &GlobalArgs, report: &mut Report) -> Option<kube::Client> {
    report.category("kubernetes-api");
    let client = match mesh_api::kube_client::client(
        global.kubeconfig.as_deref(),
        global.context.as_deref(),
    )
    .await
    {
        Ok(client) => client,
        Err(e) => {
            report.record(
                "can initialize the client",
                Err(Problem::error(
                    format!("{e:#}"),
                    "give --kubeconfig and --context (or KUBECONFIG) for a cluster you can reach",
                )),
            );
            return None;
        }
    };
    report.record("can initialize the client", Ok(()));
    let version = match client.apiserver_version().await {
        Ok(version) => version,
        Err(e) => {
            report.record(
                "can query the Kubernetes API",
                Err(Problem::error(
                    format!("{e}"),
                    "is the API server running and the kubeconfig's server address right? `kubectl version` tells",
                )),
            );
            return None;
        }
    };
    report.record("can query the Kubernetes API", Ok(()));
    report.category("kubernetes-version");
    report.record(
        "is running the minimum Kubernetes API version",
        minimum_version(&version.major, &version.minor),
    );
    Some(client)
}

fn minimum_version(major: &str, minor: &str) -> Outcome {
    let number = |s: &str| {
        s.trim_end_matches(|c: char| !c.is_ascii_digit())
            .parse::<u32>()
            .ok()
    };
    match (number(major), number(minor)) {
        (Some(1), Some(minor)) if minor >= MIN_MINOR => Ok(()),
        (Some(major), _) if major > 1 => Ok(()),
        _ => Err(Problem::error(
            format!(
                "the API server is Kubernetes {major}.{minor}; mesh needs 1.{MIN_MINOR} or later"
            ),
            "proxies run as native sidecars (restartable init containers), on by default from Kubernetes 1.29",
        )),
    }
}

/// What `--pre` checks.
pub async fn pre(client: &kube::Client, report: &mut Report) {
    report.category("pre-kubernetes-setup");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let exists = match namespaces.get_opt(NS).await {
        Ok(found) => found
            .is_some()
            .then(|| {
                Problem::error(
                    format!("the {NS:?} namespace already exists"),
                    "mesh is installed (or was): `mesh check` checks it; `mesh uninstall | kubectl delete -f -` removes it",
                )
            })
            .map_or(Ok(()), Err),
        Err(e) => Err(Problem::error(format!("reading namespace {NS}: {e}"), "")),
    };
    report.record("control plane namespace does not already exist", exists);
    let cluster_wide = [
        ("", "namespaces"),
        ("rbac.authorization.k8s.io", "clusterroles"),
        ("rbac.authorization.k8s.io", "clusterrolebindings"),
        ("apiextensions.k8s.io", "customresourcedefinitions"),
        (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
        ),
    ];
    report.record(
        "can create non-namespaced resources",
        can_create(client, None, &cluster_wide).await,
    );
    let namespaced = [
        ("", "serviceaccounts"),
        ("", "services"),
        ("", "secrets"),
        ("", "configmaps"),
        ("apps", "deployments"),
        ("policy", "poddisruptionbudgets"),
    ];
    report.record(
        "can create namespaced resources",
        can_create(client, Some(NS), &namespaced).await,
    );
}

/// Whether the current user may create each of `resources`.
async fn can_create(
    client: &kube::Client,
    namespace: Option<&str>,
    resources: &[(&str, &str)],
) -> Outcome {
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut denied = Vec::new();
    for (group, resource) in resources {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    group: Some((*group).to_owned()),
                    resource: Some((*resource).to_owned()),
                    namespace: namespace.map(str::to_owned),
                    verb: Some("create".into()),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let answer = reviews
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| {
                Problem::error(format!("asking whether I may create {resource}: {e}"), "")
            })?;
        if !answer.status.is_some_and(|s| s.allowed) {
            denied.push(*resource);
        }
    }
    if denied.is_empty() {
        Ok(())
    } else {
        Err(Problem::error(
            format!("not allowed to create {}", denied.join(", ")),
            "install with a cluster-admin identity (`kubectl auth can-i create <resource>` tells which you have)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_with_native_sidecars_pass() {
        assert!(minimum_version("1", "34").is_ok());
        assert!(minimum_version("1", "29+").is_ok());
        assert!(minimum_version("1", "28").is_err());
        assert!(minimum_version("", "").is_err());
    }
}
