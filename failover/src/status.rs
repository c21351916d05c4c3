//! What the controller says of each split it manages, in the TrafficSplit's
//! `failover.mesh.dev/status` annotation (JSON, read by `mesh failover
//! status`): its phase, each backend's weight and health with the numbers,
//! the last transition and why, and the errors that keep it from acting.

use mesh_api::crds::traffic_split::TrafficSplit;
use mesh_api::labels::FAILOVER_STATUS_ANNOTATION;
use serde::{Deserialize, Serialize};

use crate::decision::{BackendHealth, Health};

/// The status of one managed split.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SplitStatus {
    /// `Primary`, `FailingOver`, `FailedOver`, `FailingBack`, or `Invalid`.
    pub state: String,
    /// Each backend.
    #[serde(default)]
    pub backends: Vec<BackendStatus>,
    /// The last change of phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition: Option<TransitionStatus>,
    /// What holds the split where it is (no healthy secondary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Why the controller does not act on the split (bad annotations).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// When this was written (RFC 3339).
    #[serde(default)]
    pub updated: String,
}

/// One backend as the controller last saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendStatus {
    /// As the split names it.
    pub service: String,
    /// Whether it is the primary.
    pub primary: bool,
    /// The weight it has.
    pub weight: u32,
    /// `Healthy`, `Idle`, `BrownOut`, `Failing` or `Down`.
    pub health: String,
    /// Why, when it is failing or down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// Its success rate over the window, when it had requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<f64>,
    /// Its requests per second over the window.
    pub rps: f64,
}

/// A change of phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransitionStatus {
    /// The phase left.
    pub from: String,
    /// The phase entered.
    pub to: String,
    /// When (RFC 3339).
    pub at: String,
    /// Why, with the numbers.
    pub reason: String,
}

impl BackendStatus {
    /// A backend's status from its health.
    pub fn new(service: &str, primary: bool, weight: u32, health: &BackendHealth) -> Self {
        let (name, why) = match &health.health {
            Health::Healthy => ("Healthy", None),
            Health::Idle => ("Idle", None),
            Health::BrownOut => ("BrownOut", None),
            Health::Failing(why) => ("Failing", Some(why.clone())),
            Health::Down(why) => ("Down", Some(why.clone())),
        };
        Self {
            service: service.to_owned(),
            primary,
            weight,
            health: name.to_owned(),
            why,
            success_rate: health.success_rate.map(|r| (r * 10000.0).round() / 10000.0),
            rps: (health.rps * 10.0).round() / 10.0,
        }
    }
}

impl SplitStatus {
    /// What the controller last wrote on `split`, when it wrote something
    /// readable.
    pub fn of(split: &TrafficSplit) -> Option<Self> {
        Self::of_annotations(split.metadata.annotations.as_ref()?)
    }

    /// The status in a managed object's annotations, if there is one.
    pub fn of_annotations(
        annotations: &std::collections::BTreeMap<String, String>,
    ) -> Option<Self> {
        serde_json::from_str(annotations.get(FAILOVER_STATUS_ANNOTATION)?).ok()
    }

    /// What changed since `other` that is worth writing at once: the
    /// state, weights, verdicts, transition, note or errors (not the
    /// numbers, which are written at most every few seconds).
    pub fn differs_in_substance(&self, other: &Self) -> bool {
        let verdicts = |s: &Self| -> Vec<(String, u32, String)> {
            s.backends
                .iter()
                .map(|b| (b.service.clone(), b.weight, b.health.clone()))
                .collect()
        };
        self.state != other.state
            || verdicts(self) != verdicts(other)
            || self.last_transition != other.last_transition
            || self.note != other.note
            || self.errors != other.errors
    }
}
