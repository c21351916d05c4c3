//! `split.smi-spec.io/v1alpha2` TrafficSplit: requests to `spec.service`
//! are split between `spec.backends` by weight. The failover controller
//! rewrites these weights; the destination service turns them into
//! `dst_overrides`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The spec of a TrafficSplit.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "split.smi-spec.io",
    version = "v1alpha2",
    kind = "TrafficSplit",
    plural = "trafficsplits",
    shortname = "ts",
    namespaced,
    printcolumn = r#"{"name":"Service","type":"string","jsonPath":".spec.service"}"#
)]
pub struct TrafficSplitSpec {
    /// The apex service clients call.
    pub service: String,
    /// Where its requests go.
    pub backends: Vec<Backend>,
}

/// One backend and its weight.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct Backend {
    /// A Service name in the split's namespace (or an FQDN).
    pub service: String,
    /// Its weight, relative to the others; v1alpha2 weights are integers,
    /// and the quantity form of v1alpha1 (`500m`) is accepted too.
    #[schemars(schema_with = "super::service_profile::int_or_string")]
    pub weight: serde_json::Value,
}

impl TrafficSplitSpec {
    /// Each backend's share of the summed weights, in whole percent (`1, 0`
    /// is `100, 0`; a weight that is not one counts as 0; all zero when
    /// they sum to 0).
    pub fn percentages(&self) -> Vec<u32> {
        let units: Vec<u32> = self
            .backends
            .iter()
            .map(|b| b.weight_units().unwrap_or(0))
            .collect();
        percentages(&units)
    }
}

/// `units` as whole percentages of their sum (all zero when it is 0).
pub fn percentages(units: &[u32]) -> Vec<u32> {
    let total: u64 = units.iter().map(|u| u64::from(*u)).sum();
    if total == 0 {
        return vec![0; units.len()];
    }
    units
        .iter()
        .map(|u| (u64::from(*u) * 100 / total) as u32)
        .collect()
}

impl Backend {
    /// The weight in ten-thousandths (`1` → 10 000, `500m` → 5 000), as
    /// the destination service sends it; `None` when it is not a
    /// non-negative number or quantity.
    pub fn weight_units(&self) -> Option<u32> {
        let scaled = match &self.weight {
            serde_json::Value::Number(n) => n.as_f64()? * 10_000.0,
            serde_json::Value::String(s) => match s.strip_suffix('m') {
                Some(milli) => milli.parse::<f64>().ok()? * 10.0,
                None => s.parse::<f64>().ok()? * 10_000.0,
            },
            _ => return None,
        };
        (scaled.is_finite() && scaled >= 0.0 && scaled <= f64::from(u32::MAX))
            .then(|| scaled.round() as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_accept_integers_and_quantities() {
        let units = |weight: serde_json::Value| {
            Backend {
                service: "web".into(),
                weight,
            }
            .weight_units()
        };
        assert_eq!(units(serde_json::json!(1)), Some(10_000));
        assert_eq!(units(serde_json::json!(0)), Some(0));
        assert_eq!(units(serde_json::json!("500m")), Some(5_000));
        assert_eq!(units(serde_json::json!("1")), Some(10_000));
        assert_eq!(units(serde_json::json!(-1)), None);
        assert_eq!(units(serde_json::json!("lots")), None);
    }

    #[test]
    fn percentages_of_the_summed_weights() {
        assert_eq!(percentages(&[10_000, 0]), [100, 0]);
        assert_eq!(percentages(&[10_000, 990_000]), [1, 99]);
        assert_eq!(percentages(&[0, 0]), [0, 0]);
    }
}
