//! What the controller manages: a TrafficSplit, or an HTTPRoute whose
//! `backendRefs` carry the primary and its secondaries (labelled and
//! annotated the same way), so users on the Gateway API get failover
//! without SMI. Each kind is read, identified and written here; the
//! decisions do not know which one they move.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use mesh_api::crds::http_route::HttpRoute;
use mesh_api::crds::traffic_split::TrafficSplit;
use mesh_api::labels::FAILOVER_STATUS_ANNOTATION;

use crate::error::Error;
use crate::split::{ManagedSplit, route_backends};
use crate::status::SplitStatus;

/// A managed object.
#[derive(Debug, Clone)]
pub enum Target {
    /// An SMI TrafficSplit.
    Split(Arc<TrafficSplit>),
    /// A `gateway.networking.k8s.io` HTTPRoute.
    Route(Arc<HttpRoute>),
}

/// A managed object's kind, namespace and name.
pub type TargetKey = (&'static str, String, String);

impl Target {
    /// Its kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Split(_) => "TrafficSplit",
            Self::Route(_) => "HTTPRoute",
        }
    }

    /// Its metadata.
    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Self::Split(split) => &split.metadata,
            Self::Route(route) => &route.metadata,
        }
    }

    /// Its kind, namespace and name.
    pub fn key(&self) -> TargetKey {
        let meta = self.meta();
        (
            self.kind(),
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    }

    /// The split it describes, or every reason it cannot be managed.
    pub fn read(&self) -> Result<ManagedSplit, Vec<String>> {
        match self {
            Self::Split(split) => ManagedSplit::read(split),
            Self::Route(route) => ManagedSplit::read_route(route),
        }
    }

    /// What, when it changes, restarts its decisions.
    pub fn signature(&self, managed: &ManagedSplit) -> String {
        ManagedSplit::signature(self.meta(), &managed.services)
    }

    /// A reference for the Events about it.
    pub fn object_ref(&self) -> ObjectReference {
        match self {
            Self::Split(split) => split.object_ref(&()),
            Self::Route(route) => route.object_ref(&()),
        }
    }

    /// Gives its backends `weights`, in order.
    pub async fn write_weights(&self, client: &kube::Client, weights: &[u32]) -> kube::Result<()> {
        let namespace = self.meta().namespace.clone().unwrap_or_default();
        match self {
            Self::Split(split) => {
                let backends: Vec<serde_json::Value> = split
                    .spec
                    .backends
                    .iter()
                    .zip(weights)
                    .map(|(b, w)| serde_json::json!({"service": b.service, "weight": w}))
                    .collect();
                // Written only over the split as read (its resourceVersion
                // is the precondition): a user's edit in between fails the
                // write, and the next round reads the split again instead
                // of silently reverting the edit.
                let patch = serde_json::json!({
                    "metadata": {"resourceVersion": split.metadata.resource_version},
                    "spec": {"backends": backends},
                });
                Api::<TrafficSplit>::namespaced(client.clone(), &namespace)
                    .patch(&split.name_any(), &writer(), &Patch::Merge(patch))
                    .await
                    .map(drop)
            }
            Self::Route(route) => {
                let patch = route_weight_patch(route, weights)?;
                Api::<HttpRoute>::namespaced(client.clone(), &namespace)
                    .patch(&route.name_any(), &writer(), &Patch::<()>::Json(patch))
                    .await
                    .map(drop)
            }
        }
    }

    /// Writes `status` to its `failover.mesh.dev/status` annotation.
    pub async fn write_status(
        &self,
        client: &kube::Client,
        status: &SplitStatus,
    ) -> Result<(), Error> {
        let namespace = self.meta().namespace.clone().unwrap_or_default();
        let name = self.meta().name.clone().unwrap_or_default();
        let value = serde_json::to_string(status)?;
        let patch = Patch::Merge(
            serde_json::json!({"metadata": {"annotations": {FAILOVER_STATUS_ANNOTATION: value}}}),
        );
        match self {
            Self::Split(_) => {
                Api::<TrafficSplit>::namespaced(client.clone(), &namespace)
                    .patch(&name, &writer(), &patch)
                    .await?;
            }
            Self::Route(_) => {
                Api::<HttpRoute>::namespaced(client.clone(), &namespace)
                    .patch(&name, &writer(), &patch)
                    .await?;
            }
        }
        Ok(())
    }
}

/// The field manager of every write, linkerd-failover's: `kubectl get
/// --show-managed-fields` names who moved the weights.
pub const FIELD_MANAGER: &str = "failover.linkerd.io";

fn writer() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}

/// The JSON patch that gives `route`'s backends `weights`, in order, in
/// every rule. Only the weights change: every other field of the rules
/// (including ones mesh does not read) stays as written. Each weight is
/// written only if its backend is still the one read: an edit in between
/// fails the patch, and the next round reads the route again.
fn route_weight_patch(route: &HttpRoute, weights: &[u32]) -> kube::Result<json_patch::Patch> {
    let operations: Vec<serde_json::Value> = route_backends(route)
        .into_iter()
        .flat_map(|(r, refs)| {
            refs.into_iter()
                .zip(weights)
                .enumerate()
                .flat_map(move |(b, (backend, w))| {
                    let at = format!("/spec/rules/{r}/backendRefs/{b}");
                    [
                        serde_json::json!({
                            "op": "test",
                            "path": format!("{at}/name"),
                            "value": backend["name"],
                        }),
                        serde_json::json!({
                            "op": "add",
                            "path": format!("{at}/weight"),
                            "value": w,
                        }),
                    ]
                })
        })
        .collect();
    serde_json::from_value(operations.into()).map_err(kube::Error::SerdeError)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(backends: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"namespace": "shop", "name": "web"},
            "spec": {
                "parentRefs": [{"group": "core", "kind": "Service", "name": "web"}],
                "rules": [{"backendRefs": backends, "timeouts": {"request": "2s"}}]
            }
        })
    }

    /// The race the guard stops: the controller read the route, a user
    /// swapped its backends, then the controller wrote. Without the name
    /// checks the primary's weight would land on the secondary (sending
    /// everything to the degraded cluster); with them the write fails and
    /// the next round reads again. On the route as read, only the weights
    /// change.
    #[test]
    fn a_weight_patch_fails_on_a_route_edited_since_it_was_read() {
        let as_read = route(serde_json::json!([
            {"name": "web", "port": 80, "weight": 100},
            {"name": "web-east", "port": 80, "weight": 0}
        ]));
        let read: HttpRoute = serde_json::from_value(as_read.clone()).expect("a route");
        let patch = route_weight_patch(&read, &[0, 100]).expect("a patch");

        let mut unchanged = as_read.clone();
        json_patch::patch(&mut unchanged, &patch).expect("applies to the route as read");
        assert_eq!(
            unchanged,
            route(serde_json::json!([
                {"name": "web", "port": 80, "weight": 0},
                {"name": "web-east", "port": 80, "weight": 100}
            ]))
        );

        let mut swapped = route(serde_json::json!([
            {"name": "web-east", "port": 80, "weight": 0},
            {"name": "web", "port": 80, "weight": 100}
        ]));
        let before = swapped.clone();
        json_patch::patch(&mut swapped, &patch).expect_err("the backends moved since the read");
        assert_eq!(swapped, before, "nothing is written");
    }
}
