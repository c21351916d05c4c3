//! The Link's status as the mirror reports it: conditions `Valid`,
//! `RemoteReachable` and `GatewayAlive` (each with the time it last
//! changed), how many Services are mirrored and which remote Services were
//! not, with the reason, and the linked cluster's trust anchors (which
//! `mesh multicluster check` compares with this cluster's when it cannot
//! reach the linked API itself), and the linked API as the mirror itself
//! experiences it: `lastRemoteSync` (when its view of the linked cluster
//! last became complete and current) and `lastRemoteError` (the last
//! failure to reach it, kept after recovery). Written only when something
//! in it changed, so a steady Link costs no API writes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{Patch, PatchParams};
use mesh_api::crds::link::Link;
use serde::Serialize;

use crate::desired::FIELD_MANAGER;

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
    /// Local objects holding a mirror's name that the mirror did not
    /// write (left alone).
    pub conflicts: Vec<Rejected>,
    /// The linked cluster's trust anchors (PEM), or why they could not be
    /// read.
    pub remote_anchors: Option<Result<String, String>>,
    /// When the view of the linked cluster last became complete and current.
    pub last_sync: Option<Time>,
    /// The last error reaching the linked API, and when it happened.
    pub last_error: Option<(String, Time)>,
}

impl Report {
    /// Notes the time of a change of `remote` since `before`: a recovery
    /// (or first sync) sets `last_sync`, a new error `last_error`; returns
    /// whether this is a new error.
    pub fn note_remote(&mut self, before: Option<&Result<(), String>>, now: Time) -> bool {
        match &self.remote {
            Some(Ok(())) if !matches!(before, Some(Ok(()))) => {
                self.last_sync = Some(now);
                false
            }
            Some(Err(e)) if before != Some(&Err(e.clone())) => {
                let new_failure = !matches!(before, Some(Err(_)));
                self.last_error = Some((e.clone(), now));
                new_failure
            }
            _ => false,
        }
    }
}

/// How many rejected Services and conflicts the status lists at most.
pub const MAX_LISTED: usize = 100;

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
        // A linked cluster decides how many Services it rejects: the lists
        // are cut short (the counts stay whole) so the Link stays far from
        // the API server's object size limit.
        let listed = |list: &[Rejected]| list[..list.len().min(MAX_LISTED)].to_vec();
        let status = serde_json::json!({
            "status": {
                "conditions": conditions,
                "mirroredServices": report.mirrored,
                "rejectedServices": listed(&report.rejected),
                "rejectedServicesTotal": report.rejected.len(),
                "conflicts": listed(&report.conflicts),
                "remoteTrustAnchors": match &report.remote_anchors {
                    None => serde_json::Value::Null,
                    Some(Ok(pem)) => serde_json::json!({"pem": pem}),
                    Some(Err(error)) => serde_json::json!({"error": error}),
                },
                "lastRemoteSync": report.last_sync,
                "lastRemoteError": report.last_error.as_ref().map(|(message, time)| {
                    serde_json::json!({"message": message, "time": time})
                }),
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

/// Condition `type_` as a mirror wrote it on `link`'s status:
/// `(status, message)`, for the CLI that reads it back.
pub fn condition(link: &Link, type_: &str) -> Option<(String, String)> {
    let status = serde_json::to_value(link.status.as_ref()?).ok()?;
    let found = status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?;
    Some((
        found["status"].as_str()?.to_owned(),
        found["message"].as_str().unwrap_or_default().to_owned(),
    ))
}

/// `lastRemoteError` as a mirror wrote it on `link`'s status:
/// `(message, time)`.
pub fn last_remote_error(link: &Link) -> Option<(String, String)> {
    let status = serde_json::to_value(link.status.as_ref()?).ok()?;
    let error = &status["lastRemoteError"];
    Some((
        error["message"].as_str()?.to_owned(),
        error["time"].as_str().unwrap_or("?").to_owned(),
    ))
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
    fn a_sync_and_an_error_are_timed_when_they_change() {
        let mut report = Report {
            remote: Some(Err("connect refused".into())),
            ..Report::default()
        };
        assert!(report.note_remote(None, at(1)), "the first failure counts");
        assert_eq!(report.last_error, Some(("connect refused".into(), at(1))));
        let before = report.remote.clone();
        assert!(
            !report.note_remote(before.as_ref(), at(2)),
            "the same error again is not new"
        );
        assert_eq!(report.last_error.as_ref().map(|e| e.1.clone()), Some(at(1)));
        assert_eq!(report.last_sync, None, "never synced");
        report.remote = Some(Ok(()));
        assert!(!report.note_remote(before.as_ref(), at(3)));
        assert_eq!(report.last_sync, Some(at(3)));
        assert_eq!(
            report.last_error.as_ref().map(|e| e.0.as_str()),
            Some("connect refused"),
            "the last error stays on record after recovery"
        );
        let synced = report.remote.clone();
        assert!(!report.note_remote(synced.as_ref(), at(4)));
        assert_eq!(
            report.last_sync,
            Some(at(3)),
            "a steady view keeps its sync time"
        );
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
