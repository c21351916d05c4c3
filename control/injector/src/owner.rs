//! The workload a pod belongs to, as Linkerd labels it: the injector adds
//! `linkerd.io/proxy-<kind>: <name>` for the pod's top-level owner (a
//! ReplicaSet's Deployment, a Job's CronJob), so Prometheus's scrape
//! configuration turns it into the `deployment`, `statefulset`, … label
//! that `mesh viz stat` and users' dashboards group by.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The label that names a pod's workload of `kind` (`Deployment` →
/// `linkerd.io/proxy-deployment`).
pub fn label(kind: &str) -> String {
    format!("linkerd.io/proxy-{}", kind.to_lowercase())
}

/// The owner that controls `meta` (kind and name), if any.
pub fn controller(meta: &ObjectMeta) -> Option<(String, String)> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| (r.kind.clone(), r.name.clone()))
}

/// The pod's top-level workload: its controller, or the controller's own
/// controller for a ReplicaSet (a Deployment) or a Job (a CronJob). When
/// the intermediate object cannot be read the direct owner is kept, so the
/// pod is still labelled with what is known.
pub async fn workload(
    client: &kube::Client,
    namespace: &str,
    meta: &ObjectMeta,
) -> Option<(String, String)> {
    let (kind, name) = controller(meta)?;
    let parent = match kind.as_str() {
        "ReplicaSet" => kube::Api::<ReplicaSet>::namespaced(client.clone(), namespace)
            .get(&name)
            .await
            .map(|rs| controller(&rs.metadata)),
        "Job" => kube::Api::<Job>::namespaced(client.clone(), namespace)
            .get(&name)
            .await
            .map(|job| controller(&job.metadata)),
        _ => return Some((kind, name)),
    };
    match parent {
        Ok(Some(parent)) => Some(parent),
        Ok(None) => Some((kind, name)),
        Err(e) => {
            tracing::warn!(namespace, "reading {kind} {name}, the pod's owner: {e}");
            Some((kind, name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn owned_by(refs: &[(&str, &str, bool)]) -> ObjectMeta {
        ObjectMeta {
            owner_references: Some(
                refs.iter()
                    .map(|(kind, name, controller)| OwnerReference {
                        kind: (*kind).into(),
                        name: (*name).into(),
                        controller: Some(*controller),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn only_the_controlling_owner_counts() {
        let meta = owned_by(&[("ConfigMap", "x", false), ("ReplicaSet", "web-5d9c", true)]);
        assert_eq!(
            controller(&meta),
            Some(("ReplicaSet".into(), "web-5d9c".into()))
        );
        assert_eq!(controller(&owned_by(&[("ConfigMap", "x", false)])), None);
        assert_eq!(controller(&ObjectMeta::default()), None);
    }

    #[test]
    fn labels_are_linkerds() {
        assert_eq!(label("Deployment"), "linkerd.io/proxy-deployment");
        assert_eq!(label("StatefulSet"), "linkerd.io/proxy-statefulset");
    }
}
