//! Kubernetes Events the mirror publishes on its Link, for what a user must
//! act on: a local object holding a mirror's name (`MirrorConflict`).

use kube::Api;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use mesh_api::crds::link::Link;

use crate::desired::FIELD_MANAGER;
use crate::status::Rejected;

/// The reason of the Event a conflict raises.
pub const CONFLICT_REASON: &str = "MirrorConflict";

/// Publishes the mirror's Events, each as an Event of its own (kube's
/// `Recorder` would fold conflicts on one Link into a series that keeps
/// the first one's note).
pub struct LinkEvents {
    client: kube::Client,
    reporter: Reporter,
}

impl std::fmt::Debug for LinkEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkEvents").finish_non_exhaustive()
    }
}

impl LinkEvents {
    /// Events reported by `mesh-mirror` through `client`.
    pub fn new(client: &kube::Client) -> Self {
        Self {
            client: client.clone(),
            reporter: Reporter {
                controller: FIELD_MANAGER.into(),
                instance: std::env::var("HOSTNAME").ok(),
            },
        }
    }

    /// A Warning on Link `name` (in `links`) that `conflict` keeps a
    /// mirror from being written.
    pub async fn conflict(&self, links: &Api<Link>, name: &str, conflict: &Rejected) {
        let link = match links.get(name).await {
            Ok(link) => link,
            Err(e) => {
                tracing::warn!(link = %name, "reading the Link for an Event: {e}");
                return;
            }
        };
        let event = Event {
            type_: EventType::Warning,
            reason: CONFLICT_REASON.into(),
            note: Some(conflict.reason.clone()),
            action: "Mirror".into(),
            secondary: None,
        };
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        if let Err(e) = recorder.publish(&event, &link.object_ref(&())).await {
            tracing::warn!(link = %name, "publishing an Event: {e}");
        }
    }
}
