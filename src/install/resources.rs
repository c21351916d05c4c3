//! Resource requests and limits, in Linkerd's value shape
//! (`identityResources: {cpu: {request: 100m}, memory: {limit: 250Mi}}`),
//! for each control-plane container and for the injected proxies, and
//! the ones `--ha` sets, as Linkerd's `values-ha.yaml` does: every
//! container asks for CPU and memory and is capped in memory, so that a
//! node under pressure neither starves nor kills the mesh first.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::{Deserialize, Serialize};

/// A request and a limit of one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Quantities {
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub request: Option<String>,
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub limit: Option<String>,
}

/// A quantity as YAML writes it: text, or a bare number (`cpu: {limit:
/// 1}`); empty (`request: ""`, as the chart's values leave it) means none.
fn empty_as_none<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Text(String),
        Whole(u64),
        Decimal(f64),
    }
    let value: Option<Written> = Option::deserialize(deserializer)?;
    Ok(value
        .map(|written| match written {
            Written::Text(text) => text,
            Written::Whole(n) => n.to_string(),
            Written::Decimal(n) => n.to_string(),
        })
        .filter(|v| !v.is_empty()))
}

/// `{cpu, memory, ephemeral-storage}`, each with a request and a limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantities>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantities>,
    #[serde(rename = "ephemeral-storage", skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<Quantities>,
}

impl Resources {
    fn named(&self) -> [(&'static str, Option<&Quantities>); 3] {
        [
            ("cpu", self.cpu.as_ref()),
            ("ephemeral-storage", self.ephemeral_storage.as_ref()),
            ("memory", self.memory.as_ref()),
        ]
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.named()
            .iter()
            .all(|(_, q)| q.is_none_or(|q| q.request.is_none() && q.limit.is_none()))
    }

    /// As a container's `resources`; `None` when nothing is set.
    pub fn requirements(&self) -> Option<ResourceRequirements> {
        let pick = |limit: bool| {
            let map: BTreeMap<String, Quantity> = self
                .named()
                .into_iter()
                .filter_map(|(name, q)| {
                    let q = q?;
                    let value = if limit { &q.limit } else { &q.request };
                    Some((name.to_owned(), Quantity(value.clone()?)))
                })
                .collect();
            (!map.is_empty()).then_some(map)
        };
        let requirements = ResourceRequirements {
            limits: pick(true),
            requests: pick(false),
            ..ResourceRequirements::default()
        };
        (requirements.limits.is_some() || requirements.requests.is_some()).then_some(requirements)
    }

    /// Each quantity parses as Kubernetes writes quantities; `key` names
    /// the value for the error.
    pub fn validate(&self, key: &str) -> anyhow::Result<()> {
        for (name, q) in self.named() {
            let Some(q) = q else { continue };
            for (which, value) in [("request", &q.request), ("limit", &q.limit)] {
                if let Some(value) = value {
                    anyhow::ensure!(
                        is_quantity(value),
                        "{key}.{name}.{which}: {value:?} is not a quantity such as 100m or 250Mi"
                    );
                }
            }
        }
        Ok(())
    }
}

/// A Kubernetes quantity: a decimal number with an optional suffix.
fn is_quantity(text: &str) -> bool {
    const SUFFIXES: [&str; 14] = [
        "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
    ];
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &text[digits.len()..];
    !digits.is_empty()
        && digits.parse::<f64>().is_ok_and(|n| n >= 0.0)
        && SUFFIXES.contains(&suffix)
}

fn quantities(request: Option<&str>, limit: Option<&str>) -> Option<Quantities> {
    Some(Quantities {
        request: request.map(str::to_owned),
        limit: limit.map(str::to_owned),
    })
}

/// `--ha`'s resources for a controller (destination, policy, injector).
pub fn ha_controller() -> Resources {
    Resources {
        cpu: quantities(Some("100m"), None),
        memory: quantities(Some("50Mi"), Some("250Mi")),
        ephemeral_storage: None,
    }
}

/// `--ha`'s resources for the identity service.
pub fn ha_identity() -> Resources {
    Resources {
        cpu: quantities(Some("100m"), None),
        memory: quantities(Some("10Mi"), Some("250Mi")),
        ephemeral_storage: None,
    }
}

/// `--ha`'s resources for every injected proxy.
pub fn ha_proxy() -> Resources {
    Resources {
        cpu: quantities(Some("100m"), None),
        memory: quantities(Some("20Mi"), Some("250Mi")),
        ephemeral_storage: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_limits_go_where_kubernetes_wants_them() {
        let requirements = ha_controller().requirements().expect("some");
        let get = |map: &Option<BTreeMap<String, Quantity>>, k: &str| {
            map.as_ref().and_then(|m| m.get(k)).map(|q| q.0.clone())
        };
        assert_eq!(get(&requirements.requests, "cpu").as_deref(), Some("100m"));
        assert_eq!(
            get(&requirements.requests, "memory").as_deref(),
            Some("50Mi")
        );
        assert_eq!(
            get(&requirements.limits, "memory").as_deref(),
            Some("250Mi")
        );
        assert_eq!(get(&requirements.limits, "cpu"), None);
        assert!(Resources::default().requirements().is_none());
        assert!(Resources::default().is_empty());
    }

    #[test]
    fn a_quantity_that_is_not_one_is_named() {
        let mut bad = ha_identity();
        bad.memory = quantities(Some("lots"), None);
        let error = bad
            .validate("identityResources")
            .expect_err("refused")
            .to_string();
        assert!(
            error.contains("identityResources.memory.request"),
            "{error}"
        );
        for good in ["1", "0.5", "100m", "250Mi", "1Gi", "2k"] {
            assert!(is_quantity(good), "{good}");
        }
        for bad in ["", "m", "-1", "1mi", "1 Gi"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }
}
