//! Finding the pod template in a Kubernetes object of any workload kind
//! (Pod, Deployment, ReplicaSet, StatefulSet, DaemonSet, Job,
//! ReplicationController, CronJob, and Lists of them) and injecting it in
//! place, as JSON, so that everything else in the object stays as written.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use mesh_api::labels::INJECT_ANNOTATION;
use serde_json::Value;

use crate::inject::{self, Decision};
use crate::values::{Overrides, Values, ValuesError};

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `kind/name`.
    pub object: String,
    /// What was done.
    pub outcome: Outcome,
}

/// What was done to an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The proxy was added.
    Injected,
    /// Left as it was: why.
    Skipped(String),
    /// Not a kind that has pods.
    NotAWorkload,
}

/// Why an object could not be injected.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// A `config.linkerd.io/*` annotation is unusable.
    #[error(transparent)]
    Values(#[from] ValuesError),
    /// The pod template is not a valid one.
    #[error("{object}: the pod template is not valid: {reason}")]
    Template {
        /// `kind/name`.
        object: String,
        /// What is wrong.
        reason: String,
    },
}

/// Where the pod template of `kind` is.
fn template_pointer(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Pod" => "",
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "ReplicationController" => "/spec/template",
        "CronJob" => "/spec/jobTemplate/spec/template",
        _ => return None,
    })
}

/// Injects `object` (and each item of a List) offline, as `mesh inject`
/// does: every workload is injected unless its pod template says
/// `linkerd.io/inject: disabled`, and its template gets
/// `linkerd.io/inject: enabled` so the webhook agrees later.
pub fn inject_offline(object: &mut Value, values: &Values) -> Result<Vec<Report>, WorkloadError> {
    let kind = object["kind"].as_str().unwrap_or_default().to_owned();
    if kind == "List" || kind.ends_with("List") {
        let mut reports = Vec::new();
        if let Some(items) = object.get_mut("items").and_then(Value::as_array_mut) {
            for item in items {
                reports.extend(inject_offline(item, values)?);
            }
        }
        return Ok(reports);
    }
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or("<unnamed>")
        .to_owned();
    let label = format!("{}/{name}", kind.to_lowercase());
    let namespace = object["metadata"]["namespace"].as_str().map(str::to_owned);
    let Some(pointer) = template_pointer(&kind) else {
        return Ok(vec![Report {
            object: label,
            outcome: Outcome::NotAWorkload,
        }]);
    };
    let Some(template) = object.pointer_mut(pointer) else {
        return Err(WorkloadError::Template {
            object: label,
            reason: format!("no {pointer}"),
        });
    };
    let invalid = |e: serde_json::Error| WorkloadError::Template {
        object: label.clone(),
        reason: e.to_string(),
    };
    let mut parsed: PodTemplateSpec = serde_json::from_value(template.clone()).map_err(invalid)?;
    let meta = parsed.metadata.get_or_insert_with(ObjectMeta::default);
    let spec = parsed.spec.get_or_insert_with(PodSpec::default);
    let disabled = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(INJECT_ANNOTATION))
        .is_some_and(|v| v == "disabled");
    let outcome = if disabled {
        Outcome::Skipped(format!("{INJECT_ANNOTATION}: disabled"))
    } else {
        meta.annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(INJECT_ANNOTATION.into(), "enabled".into());
        match inject::decide(meta, spec, None) {
            Decision::Skip(why) => Outcome::Skipped(why),
            Decision::Inject => {
                let values = Overrides::default()
                    .layer(
                        meta.annotations.as_ref(),
                        format!("the pod template of {label}"),
                    )
                    .apply(values)?;
                inject::inject(meta, spec, &values, namespace.as_deref());
                if kind != "Pod" {
                    meta.labels
                        .get_or_insert_with(BTreeMap::new)
                        .insert(crate::owner::label(&kind), name.clone());
                }
                Outcome::Injected
            }
        }
    };
    if outcome == Outcome::Injected {
        let injected = serde_json::to_value(&parsed).map_err(invalid)?;
        merge_template(template, injected);
    }
    Ok(vec![Report {
        object: label,
        outcome,
    }])
}

/// Puts the injected template's metadata and spec in place (a Pod keeps
/// its apiVersion, kind and status).
fn merge_template(template: &mut Value, injected: Value) {
    if let (Some(target), Value::Object(fields)) = (template.as_object_mut(), injected) {
        for (key, value) in fields {
            target.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values {
        Values::new("PEM", "v0.1.0")
    }

    #[test]
    fn deployments_cronjobs_and_lists_are_injected_services_are_not() {
        let mut list = serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
                 "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                          "template": {"metadata": {"labels": {"app": "web"}},
                                       "spec": {"containers": [{"name": "web", "image": "podinfo"}]}}}},
                {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
                 "spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": {
                     "spec": {"restartPolicy": "Never", "containers": [{"name": "job", "image": "busybox"}]}}}}}},
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}},
                {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "legacy"},
                 "spec": {"template": {"metadata": {"annotations": {"linkerd.io/inject": "disabled"}},
                                       "spec": {"containers": [{"name": "legacy", "image": "x"}]}}}}
            ]
        });
        let reports = inject_offline(&mut list, &values()).expect("inject");
        let outcomes: Vec<(&str, &Outcome)> = reports
            .iter()
            .map(|r| (r.object.as_str(), &r.outcome))
            .collect();
        assert_eq!(outcomes[0], ("deployment/web", &Outcome::Injected));
        assert_eq!(outcomes[1], ("cronjob/nightly", &Outcome::Injected));
        assert_eq!(outcomes[2], ("service/web", &Outcome::NotAWorkload));
        assert!(matches!(outcomes[3].1, Outcome::Skipped(_)));
        let web = &list["items"][0];
        assert_eq!(web["spec"]["replicas"], 2, "the rest of the object stays");
        let template = &web["spec"]["template"];
        assert_eq!(
            template["metadata"]["annotations"]["linkerd.io/inject"],
            "enabled"
        );
        assert_eq!(
            template["metadata"]["labels"]["linkerd.io/workload-ns"],
            "shop"
        );
        assert_eq!(
            template["metadata"]["labels"]["linkerd.io/proxy-deployment"], "web",
            "Prometheus's `deployment` label comes from it"
        );
        assert_eq!(
            template["spec"]["initContainers"][1]["name"],
            "linkerd-proxy"
        );
        let job = &list["items"][1]["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        assert_eq!(job["initContainers"][1]["restartPolicy"], "Always");
        assert_eq!(
            list["items"][3]["spec"]["template"]["spec"].get("initContainers"),
            None
        );
    }

    #[test]
    fn a_bad_override_names_the_workload() {
        let mut pod = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "annotations": {"config.linkerd.io/proxy-cpu-limit": "fast"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}
        });
        let err = inject_offline(&mut pod, &values()).expect_err("bad annotation");
        assert!(err.to_string().contains("pod/p"), "{err}");
        assert!(
            err.to_string()
                .contains("config.linkerd.io/proxy-cpu-limit"),
            "{err}"
        );
        assert_eq!(pod["spec"].get("initContainers"), None, "nothing changed");
    }
}
