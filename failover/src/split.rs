//! A managed TrafficSplit, or HTTPRoute whose `backendRefs` carry the
//! primary and its secondaries, read for the controller: its backends as
//! `(namespace, Service)` (a backend may be an FQDN or in another
//! namespace), which is the primary, its weights and its settings; or
//! every reason it cannot be managed, each naming the field.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use mesh_api::crds::http_route::HttpRoute;
use mesh_api::crds::traffic_split::TrafficSplit;
use mesh_api::labels::{FAILOVER_PRIMARY_SERVICE, FAILOVER_STATUS_ANNOTATION};

use crate::settings::{PREFIX, Settings};
use crate::signals::BackendKey;
use crate::status::SplitStatus;

/// The failover TrafficSplit of the Linkerd docs, verbatim (it names no
/// namespace): what users apply, so what tests start from.
pub const DOCS_EXAMPLE: &str = r#"apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata:
  name: podinfo
  annotations:
    failover.linkerd.io/primary-service: podinfo
  labels:
    failover.linkerd.io/controlled-by: linkerd-failover
spec:
  service: podinfo
  backends:
    - service: podinfo
      weight: 1
    - service: podinfo-east
      weight: 0
"#;

/// The rules of `route` that have backends, with their index and
/// `backendRefs`.
pub fn route_backends(route: &HttpRoute) -> Vec<(usize, Vec<&serde_json::Value>)> {
    route
        .spec
        .rules
        .iter()
        .enumerate()
        .filter(|(_, rule)| !rule.backend_refs.is_empty())
        .map(|(r, rule)| (r, rule.backend_refs.iter().collect()))
        .collect()
}

/// A `backendRef` as a service name of `namespace`'s view (`web`, or
/// `web.other` for another namespace's).
fn backend_ref_service(backend: &serde_json::Value, namespace: &str) -> String {
    let name = backend["name"].as_str().unwrap_or_default();
    match backend["namespace"].as_str() {
        Some(ns) if ns != namespace => format!("{name}.{ns}"),
        _ => name.to_owned(),
    }
}

/// A TrafficSplit or HTTPRoute the controller can act on.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedSplit {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Each backend as the split names it.
    pub services: Vec<String>,
    /// Each backend as `(namespace, Service)`.
    pub backends: Vec<BackendKey>,
    /// The primary's index.
    pub primary: usize,
    /// The weights it has now, in ten-thousandths.
    pub weights: Vec<u32>,
    /// Its settings.
    pub settings: Settings,
    /// The phase its status annotation last said.
    pub resumed_state: Option<String>,
}

/// One backend as the managed object names it.
struct NamedBackend {
    /// `web`, `web.other` or an FQDN.
    service: String,
    /// Its weight in ten-thousandths, or `None` when it is not a weight.
    units: Option<u32>,
    /// Its field (`spec.backends[1]`), for errors.
    field: String,
    /// Its weight as written, for errors.
    weight: String,
}

impl ManagedSplit {
    /// Reads `split`, or says every reason it cannot be managed.
    pub fn read(split: &TrafficSplit) -> Result<Self, Vec<String>> {
        let backends = split
            .spec
            .backends
            .iter()
            .enumerate()
            .map(|(i, backend)| NamedBackend {
                service: backend.service.clone(),
                units: backend.weight_units(),
                field: format!("spec.backends[{i}]"),
                weight: backend.weight.to_string(),
            })
            .collect();
        Self::from_parts(&split.metadata, backends, Vec::new())
    }

    /// Reads an HTTPRoute whose `backendRefs` carry the primary and the
    /// secondaries: every rule with backends must name the same ones, in
    /// the same order (the controller writes the same weights to each).
    pub fn read_route(route: &HttpRoute) -> Result<Self, Vec<String>> {
        let namespace = route.metadata.namespace.clone().unwrap_or_default();
        let mut errors = Vec::new();
        let ruled = route_backends(route);
        let Some((first, refs)) = ruled.first() else {
            return Err(vec![
                "spec.rules: a failover HTTPRoute needs a rule with backendRefs (the primary and its secondaries)"
                    .to_owned(),
            ]);
        };
        let names = |refs: &[&serde_json::Value]| -> Vec<String> {
            refs.iter()
                .map(|b| backend_ref_service(b, &namespace))
                .collect()
        };
        for (r, other) in &ruled[1..] {
            if names(other) != names(refs) {
                errors.push(format!(
                    "spec.rules[{r}].backendRefs: a failover HTTPRoute's rules must name the same backends as spec.rules[{first}]"
                ));
            }
        }
        let backends = refs
            .iter()
            .enumerate()
            .map(|(b, backend)| {
                let weight = backend
                    .get("weight")
                    .cloned()
                    .unwrap_or(serde_json::json!(1));
                NamedBackend {
                    service: backend_ref_service(backend, &namespace),
                    units: weight
                        .as_u64()
                        .map(|w| u32::try_from(w.saturating_mul(10_000)).unwrap_or(u32::MAX)),
                    field: format!("spec.rules[{first}].backendRefs[{b}]"),
                    weight: weight.to_string(),
                }
            })
            .collect();
        Self::from_parts(&route.metadata, backends, errors)
    }

    fn from_parts(
        meta: &ObjectMeta,
        backends: Vec<NamedBackend>,
        mut errors: Vec<String>,
    ) -> Result<Self, Vec<String>> {
        let namespace = meta.namespace.clone().unwrap_or_default();
        let name = meta.name.clone().unwrap_or_default();
        let annotations = meta.annotations.clone().unwrap_or_default();
        if backends.len() < 2 {
            errors.push(format!(
                "{}: a failover split needs a primary and at least one secondary, it has {}",
                backends.first().map_or("spec.backends".to_owned(), |b| b
                    .field
                    .rsplit_once('[')
                    .map_or(b.field.clone(), |(list, _)| list.to_owned())),
                backends.len()
            ));
        }
        let mut weights = Vec::new();
        let mut keys = Vec::new();
        for backend in &backends {
            match backend.units {
                Some(units) => weights.push(units),
                None => errors.push(format!(
                    "{}.weight: {} is not a weight ≥ 0",
                    backend.field, backend.weight
                )),
            }
            match backend_key(&backend.service, &namespace) {
                Some(key) => keys.push(key),
                None => errors.push(format!(
                    "{}.service: {:?} is not a Service name or <svc>.<ns>[.svc.<domain>]",
                    backend.field, backend.service
                )),
            }
        }
        let primary = match annotations.get(FAILOVER_PRIMARY_SERVICE) {
            None => Some(0),
            Some(wanted) => {
                let wanted_key = backend_key(wanted, &namespace);
                let found = backends
                    .iter()
                    .zip(&keys)
                    .position(|(b, key)| b.service == *wanted || Some(key) == wanted_key.as_ref());
                if found.is_none() {
                    errors.push(format!(
                        "annotation {FAILOVER_PRIMARY_SERVICE}: {wanted:?} is not one of the backends"
                    ));
                }
                found
            }
        };
        let settings = Settings::from_annotations(&annotations).unwrap_or_else(|invalid| {
            errors.extend(invalid.iter().map(ToString::to_string));
            Settings::default()
        });
        if !errors.is_empty() {
            return Err(errors);
        }
        let resumed_state = SplitStatus::of_annotations(&annotations).map(|s| s.state);
        Ok(Self {
            namespace,
            name,
            services: backends.into_iter().map(|b| b.service).collect(),
            backends: keys,
            primary: primary.unwrap_or(0),
            weights,
            settings,
            resumed_state,
        })
    }

    /// What, when it changes, makes the controller start the split's
    /// decisions afresh: its backends, primary and settings annotations.
    pub fn signature(meta: &ObjectMeta, services: &[String]) -> String {
        let annotations: BTreeMap<&String, &String> = meta
            .annotations
            .iter()
            .flatten()
            .filter(|(k, _)| k.starts_with(PREFIX) && k.as_str() != FAILOVER_STATUS_ANNOTATION)
            .collect();
        format!(
            "{services:?} {:?} {annotations:?}",
            meta.annotations
                .as_ref()
                .and_then(|a| a.get(FAILOVER_PRIMARY_SERVICE))
        )
    }

    /// The weights now, as percentages (what the controller writes).
    pub fn percentages(&self) -> Vec<u32> {
        mesh_api::crds::traffic_split::percentages(&self.weights)
    }

    /// Whether the split already has `weights` (in proportion: `1, 0` is
    /// `100, 0`).
    pub fn has_weights(&self, weights: &[u32]) -> bool {
        let total: u64 = self.weights.iter().map(|w| u64::from(*w)).sum();
        let wanted: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        total > 0
            && self.weights.len() == weights.len()
            && self
                .weights
                .iter()
                .zip(weights)
                .all(|(have, want)| u64::from(*have) * wanted == u64::from(*want) * total)
    }
}

/// `web` → `(namespace, web)`; `web.other` and `web.other.svc.<domain>` →
/// `(other, web)`.
pub fn backend_key(service: &str, namespace: &str) -> Option<BackendKey> {
    let labels: Vec<&str> = service.trim_end_matches('.').split('.').collect();
    let valid = |l: &str| !l.is_empty() && l.len() <= 63;
    match labels[..] {
        [name] if valid(name) => Some((namespace.to_owned(), name.to_owned())),
        [name, ns] | [name, ns, "svc", ..] if valid(name) && valid(ns) => {
            Some((ns.to_owned(), name.to_owned()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(yaml: &str) -> TrafficSplit {
        let mut split: TrafficSplit = serde_saphyr::from_str(yaml).expect("yaml");
        split.metadata.namespace = Some("test".into());
        split
    }

    const DOCS: &str = DOCS_EXAMPLE;

    #[test]
    fn the_docs_split_is_managed() {
        let managed = ManagedSplit::read(&split(DOCS)).expect("valid");
        assert_eq!(managed.primary, 0);
        assert_eq!(
            managed.backends,
            [
                ("test".to_owned(), "podinfo".to_owned()),
                ("test".to_owned(), "podinfo-east".to_owned())
            ]
        );
        assert!(managed.has_weights(&[100, 0]));
        assert!(!managed.has_weights(&[1, 99]));
        assert_eq!(managed.percentages(), [100, 0]);
    }

    #[test]
    fn fqdn_and_other_namespace_backends_are_resolved() {
        assert_eq!(
            backend_key("podinfo.other.svc.cluster.local", "test"),
            Some(("other".into(), "podinfo".into()))
        );
        assert_eq!(
            backend_key("podinfo.other", "test"),
            Some(("other".into(), "podinfo".into()))
        );
        assert_eq!(backend_key("a..b", "test"), None);
    }

    #[test]
    fn every_problem_is_named_by_its_field() {
        let bad = DOCS
            .replace("primary-service: podinfo", "primary-service: nowhere")
            .replace("weight: 0", "weight: lots")
            .replace("  labels:", "    failover.mesh.dev/window: soon\n  labels:");
        let errors = ManagedSplit::read(&split(&bad)).expect_err("invalid");
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("spec.backends[1].weight"));
        assert!(errors[1].contains("failover.linkerd.io/primary-service: \"nowhere\""));
        assert!(errors[2].contains("failover.mesh.dev/window"));
    }

    #[test]
    fn an_httproute_is_read_from_its_backend_refs() {
        let route = |rules: serde_json::Value| -> HttpRoute {
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": "test", "name": "podinfo",
                    "annotations": {"failover.linkerd.io/primary-service": "podinfo"}},
                "spec": {"parentRefs": [{"kind": "Service", "name": "podinfo"}], "rules": rules}
            }))
            .expect("route")
        };
        let managed = ManagedSplit::read_route(&route(serde_json::json!([
            {"matches": [{"path": {"value": "/api"}}], "backendRefs": [
                {"name": "podinfo", "port": 9898},
                {"name": "podinfo", "namespace": "east", "port": 9898, "weight": 0}
            ]},
            {"backendRefs": [
                {"name": "podinfo", "port": 9898, "weight": 3},
                {"name": "podinfo", "namespace": "east", "port": 9898, "weight": 1}
            ]}
        ])))
        .expect("valid");
        assert_eq!(managed.services, ["podinfo", "podinfo.east"]);
        assert_eq!(
            managed.backends,
            [
                ("test".to_owned(), "podinfo".to_owned()),
                ("east".to_owned(), "podinfo".to_owned())
            ]
        );
        assert_eq!(managed.percentages(), [100, 0], "the first rule's weights");

        let errors = ManagedSplit::read_route(&route(serde_json::json!([
            {"backendRefs": [{"name": "podinfo"}, {"name": "podinfo-east", "weight": 0}]},
            {"backendRefs": [{"name": "podinfo"}, {"name": "elsewhere"}]}
        ])))
        .expect_err("rules disagree");
        assert!(
            errors[0].starts_with("spec.rules[1].backendRefs"),
            "{errors:?}"
        );
        let errors = ManagedSplit::read_route(&route(serde_json::json!([
            {"matches": [{"path": {"value": "/"}}]}
        ])))
        .expect_err("no backends");
        assert!(errors[0].starts_with("spec.rules"), "{errors:?}");
        let errors = ManagedSplit::read_route(&route(serde_json::json!([
            {"backendRefs": [{"name": "podinfo"}]}
        ])))
        .expect_err("one backend");
        assert!(
            errors[0].starts_with("spec.rules[0].backendRefs: a failover split needs"),
            "{errors:?}"
        );
    }
}
