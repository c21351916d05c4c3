//! Which pods a tap request names: a pod, a namespace's pods, or a
//! workload's pods (by its selector), kept to those whose proxy serves tap
//! (running, meshed, with a tap identity, not opted out), and why the
//! others were left out.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Api;
use kube::api::ListParams;

use crate::tap_api::Resource;

/// A pod to tap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its address.
    pub ip: String,
    /// Its ServiceAccount.
    pub service_account: String,
}

/// Why a request names no pod to tap.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Not a type tap serves.
    #[error(
        "tap does not serve {0:?}; it taps pods, namespaces, deployments, replicasets, statefulsets, daemonsets, jobs, cronjobs and replicationcontrollers"
    )]
    Type(String),
    /// The resource does not exist or cannot be read.
    #[error("{kind} {namespace}/{name}: {error}")]
    Lookup {
        /// Its type.
        kind: String,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// What went wrong.
        error: String,
    },
    /// None of its pods can be tapped.
    #[error("{0}")]
    NoPods(String),
}

/// The pods of `resource` whose proxies serve tap.
pub async fn resolve(
    client: &kube::Client,
    resource: &Resource,
) -> Result<Vec<Target>, TargetError> {
    let pods = pods(client, resource).await?;
    let mut targets = Vec::new();
    let (mut unmeshed, mut disabled, mut not_enabled) = (Vec::new(), Vec::new(), Vec::new());
    for pod in &pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.as_ref();
        let proxy = spec.and_then(mesh_api::pod::proxy_container);
        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
        let (Some(proxy), true, Some(ip)) = (proxy, running, ip) else {
            unmeshed.push(name);
            continue;
        };
        let annotations = pod.metadata.annotations.as_ref();
        let opted_out = [
            mesh_api::labels::VIZ_DISABLE_TAP_ANNOTATION,
            "config.linkerd.io/disable-tap",
        ]
        .iter()
        .any(|a| annotations.and_then(|m| m.get(*a)).map(String::as_str) == Some("true"));
        if opted_out {
            disabled.push(name);
            continue;
        }
        let tap_enabled = proxy
            .env
            .iter()
            .flatten()
            .any(|e| e.name == "LINKERD2_PROXY_TAP_SVC_NAME");
        if !tap_enabled {
            not_enabled.push(name);
            continue;
        }
        targets.push(Target {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name,
            ip,
            service_account: spec
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".into()),
        });
    }
    if targets.is_empty() {
        let mut why = format!(
            "no pods to tap for type={:?} name={:?}",
            resource.r#type, resource.name
        );
        for (pods, what) in [
            (&unmeshed, "not running with a proxy"),
            (&disabled, "with tap disabled by viz.linkerd.io/disable-tap"),
            (
                &not_enabled,
                "whose proxy started without tap; restart them",
            ),
        ] {
            if !pods.is_empty() {
                why.push_str(&format!(
                    "\n{} pods {what}: {}",
                    pods.len(),
                    pods.join(", ")
                ));
            }
        }
        return Err(TargetError::NoPods(why));
    }
    Ok(targets)
}

async fn pods(client: &kube::Client, resource: &Resource) -> Result<Vec<Pod>, TargetError> {
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
    use k8s_openapi::api::batch::v1::{CronJob, Job};
    use k8s_openapi::api::core::v1::ReplicationController;
    let ns = resource.namespace.as_str();
    let lookup = |error: kube::Error| TargetError::Lookup {
        kind: resource.r#type.clone(),
        namespace: ns.to_owned(),
        name: resource.name.clone(),
        error: error.to_string(),
    };
    let name = resource.name.as_str();
    let selector: LabelSelector = match resource.r#type.as_str() {
        "pod" => {
            let pod = Api::<Pod>::namespaced(client.clone(), ns)
                .get(name)
                .await
                .map_err(lookup)?;
            return Ok(vec![pod]);
        }
        "namespace" => {
            return list(client, name, "").await.map_err(lookup);
        }
        "deployment" => selector::<Deployment>(client, ns, name, |d| d.spec.map(|s| s.selector))
            .await
            .map_err(lookup)?,
        "replicaset" => selector::<ReplicaSet>(client, ns, name, |r| r.spec.map(|s| s.selector))
            .await
            .map_err(lookup)?,
        "statefulset" => selector::<StatefulSet>(client, ns, name, |s| s.spec.map(|s| s.selector))
            .await
            .map_err(lookup)?,
        "daemonset" => selector::<DaemonSet>(client, ns, name, |d| d.spec.map(|s| s.selector))
            .await
            .map_err(lookup)?,
        "job" => selector::<Job>(client, ns, name, |j| j.spec.and_then(|s| s.selector))
            .await
            .map_err(lookup)?,
        // A CronJob's pods carry its jobs' names; tap them by the
        // template's labels.
        "cronjob" => selector::<CronJob>(client, ns, name, |c| {
            let labels = c.spec?.job_template.spec?.template.metadata?.labels;
            Some(LabelSelector {
                match_labels: labels,
                ..LabelSelector::default()
            })
        })
        .await
        .map_err(lookup)?,
        "replicationcontroller" => selector::<ReplicationController>(client, ns, name, |r| {
            Some(LabelSelector {
                match_labels: r.spec?.selector,
                ..LabelSelector::default()
            })
        })
        .await
        .map_err(lookup)?,
        other => return Err(TargetError::Type(other.to_owned())),
    };
    let selector = selector_string(&selector).map_err(|e| TargetError::Lookup {
        kind: resource.r#type.clone(),
        namespace: ns.to_owned(),
        name: name.to_owned(),
        error: e,
    })?;
    list(client, ns, &selector).await.map_err(lookup)
}

/// The pod selector of workload `name` of kind `K`, read by `of`.
async fn selector<K>(
    client: &kube::Client,
    ns: &str,
    name: &str,
    of: impl FnOnce(K) -> Option<LabelSelector>,
) -> Result<LabelSelector, kube::Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    let object = Api::<K>::namespaced(client.clone(), ns).get(name).await?;
    Ok(of(object).unwrap_or_default())
}

async fn list(client: &kube::Client, ns: &str, selector: &str) -> Result<Vec<Pod>, kube::Error> {
    let params = ListParams::default().labels(selector);
    Ok(Api::<Pod>::namespaced(client.clone(), ns)
        .list(&params)
        .await?
        .items)
}

/// A label selector as the API's `labelSelector` parameter takes it; an
/// empty selector is refused (it would select every pod).
pub fn selector_string(selector: &LabelSelector) -> Result<String, String> {
    let query = mesh_api::selector::query(selector).map_err(|e| format!("its selector's {e}"))?;
    if query.is_empty() {
        return Err("its selector is empty".into());
    }
    Ok(query)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    #[test]
    fn a_workload_selector_becomes_the_lists_label_selector() {
        let selector = LabelSelector {
            match_labels: Some([("app".to_owned(), "web".to_owned())].into()),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["a".into(), "b".into()]),
                },
                LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        assert_eq!(
            selector_string(&selector).expect("valid"),
            "app=web,tier in (a,b),!canary"
        );
        assert!(
            selector_string(&LabelSelector::default()).is_err(),
            "never every pod"
        );
    }
}
