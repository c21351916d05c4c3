//! The Link's status as the mirror reports it: conditions `Valid`,
//! `RemoteReachable` and `GatewayAlive` (each with the time it last
//! changed), how many Services are mirrored and which remote Services were
//! not, with the reason, and the linked cluster's trust anchors (which
//! `mesh multicluster check` compares with this cluster's when it cannot
//! reach the linked API itself). Written only when something in it changed, so a
//! steady Link costs no API writes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{Patch, PatchParams};
use mesh_api::crds::link::Link;
use serde::Serialize;

use crate::sync::FIELD_MANAGER;

/// One condition, as Kubernetes writes them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    type_: &'static str,
    status: &'static str,
    reason: String,
    message: String,
    last_transition_time: Time,
}

/// A remote Service the mirror refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Why.
    pub reason: String,
}

/// What the mirror knows now; `None` where it has not found out yet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// The Link's own fields: `Err` names the bad one.
    pub valid: Option<Result<(), String>>,
    /// The linked API through the credentials: `Err` says why not.
    pub remote: Option<Result<(), String>>,
    /// The gateway: alive or not, with what was probed.
    pub gateway: Option<(bool, String)>,
    /// Mirrors that exist.
    pub mirrored: Option<usize>,
    /// Remote Services not mirrored.
    pub rejected: Vec<Rejected>,
    /// The linked cluster's trust anchors (PEM), or why they could not be
    /// read.
    pub remote_anchors: Option<Result<String, String>>,
}

/// The status last written, to write only changes.
#[derive(Debug, Default)]
pub struct StatusWriter {
    written: Option<(Report, Vec<Condition>)>,
}

impl StatusWriter {
    /// Writes `report` to Link `name` when it differs from the last one.
    pub async fn write(&mut self, links: &Api<Link>, name: &str, report: Report) {
        if self
            .written
            .as_ref()
            .is_some_and(|(last, _)| *last == report)
        {
            return;
        }
        let previous = self
            .written
            .as_ref()
            .map(|(_, c)| c.as_slice())
            .unwrap_or(&[]);
        let conditions = conditions(&report, previous, Time(k8s_openapi::jiff::Timestamp::now()));
        let status = serde_json::json!({
            "status": {
                "conditions": conditions,
                "mirroredServices": report.mirrored,
                "rejectedServices": report.rejected,
                "remoteTrustAnchors": match &report.remote_anchors {
                    None => serde_json::Value::Null,
                    Some(Ok(pem)) => serde_json::json!({"pem": pem}),
                    Some(Err(error)) => serde_json::json!({"error": error}),
                },
            }
        });
        match links
            .patch_status(
                name,
                &PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..PatchParams::default()
                },
                &Patch::Merge(&status),
            )
            .await
        {
            Ok(_) => self.written = Some((report, conditions)),
            Err(e) => tracing::warn!(link = %name, "writing the Link's status: {e}"),
        }
    }
}

/// The conditions of `report`, keeping each one's transition time from
/// `previous` while its status is unchanged.
fn conditions(report: &Report, previous: &[Condition], now: Time) -> Vec<Condition> {
    let mut out = Vec::new();
    let mut push = |type_: &'static str, ok: bool, reason: &str, message: String| {
        let status = if ok { "True" } else { "False" };
        let last_transition_time = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
        out.push(Condition {
            type_,
            status,
            reason: reason.to_owned(),
            message,
            last_transition_time,
        });
    };
    if let Some(valid) = &report.valid {
        match valid {
            Ok(()) => push(
                "Valid",
                true,
                "Valid",
                "the Link's fields are usable".into(),
            ),
            Err(e) => push("Valid", false, "InvalidLink", e.clone()),
        }
    }
    if let Some(remote) = &report.remote {
        match remote {
            Ok(()) => push(
                "RemoteReachable",
                true,
                "Listed",
                "the linked cluster's exported Services are watched".into(),
            ),
            Err(e) => push("RemoteReachable", false, "Unreachable", e.clone()),
        }
    }
    if let Some((alive, message)) = &report.gateway {
        let reason = if *alive {
            "ProbeSucceeded"
        } else {
            "ProbeFailed"
        };
        push("GatewayAlive", *alive, reason, message.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).expect("time"))
    }

    #[test]
    fn a_condition_keeps_its_transition_time_until_its_status_changes() {
        let mut report = Report {
            valid: Some(Ok(())),
            gateway: Some((true, "answers".into())),
            ..Report::default()
        };
        let first = conditions(&report, &[], at(10));
        assert_eq!(first.len(), 2, "nothing known about the remote API yet");
        let again = conditions(&report, &first, at(20));
        assert!(again.iter().all(|c| c.last_transition_time == at(10)));
        report.gateway = Some((false, "3 probes failed".into()));
        let down = conditions(&report, &again, at(30));
        let gateway = down
            .iter()
            .find(|c| c.type_ == "GatewayAlive")
            .expect("gateway");
        assert_eq!(
            (gateway.status, gateway.last_transition_time.clone()),
            ("False", at(30))
        );
        assert_eq!(gateway.reason, "ProbeFailed");
        let valid = down.iter().find(|c| c.type_ == "Valid").expect("valid");
        assert_eq!(valid.last_transition_time, at(10));
    }
}
