//! Writing route status conditions back to the API server: every second,
//! what [`OutboundIndex::route_statuses`](crate::outbound::OutboundIndex::route_statuses)
//! says each HTTPRoute and GRPCRoute attached to a Service should show,
//! patched onto its `status.parents` where it differs from what is there.
//!
//! Entries of other controllers are kept; ours are replaced. Each
//! condition's `observedGeneration` is the generation the index read (a
//! refused edit's own), so a reader can tell a stale status. A condition's
//! `lastTransitionTime` moves only when its status does, and nothing is
//! written when the object already says the same, so the controller's
//! replicas (each computing the same answer) converge instead of taking
//! turns.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use crate::index::Index;
use crate::outbound::model::RouteKind;
use crate::outbound::status::{CONTROLLER_NAME, ParentStatus, RouteConditions, RouteRef};

/// How often the statuses are compared.
const PERIOD: Duration = Duration::from_secs(1);

/// The API resource of a route.
fn resource(route: &RouteRef) -> ApiResource {
    let (version, kind, plural) = match (route.key.group.as_str(), route.kind) {
        ("policy.linkerd.io", _) => ("v1beta3", "HTTPRoute", "httproutes"),
        (_, RouteKind::Http) => ("v1", "HTTPRoute", "httproutes"),
        (_, RouteKind::Grpc) => ("v1", "GRPCRoute", "grpcroutes"),
    };
    ApiResource {
        group: route.key.group.clone(),
        version: version.into(),
        api_version: format!("{}/{version}", route.key.group),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// Our entries for `statuses`, keeping the transition times of
/// `current`'s conditions whose status has not changed.
fn our_entries(
    route_namespace: &str,
    statuses: &[ParentStatus],
    current: &[Value],
    generation: Option<i64>,
) -> Vec<Value> {
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    statuses
        .iter()
        .map(|status| {
            let mut parent_ref = json!({
                "group": "core",
                "kind": "Service",
                "name": status.parent.service,
            });
            if status.parent.namespace != route_namespace {
                parent_ref["namespace"] = json!(status.parent.namespace);
            }
            if let Some(port) = status.parent.port {
                parent_ref["port"] = json!(port);
            }
            let previous = current.iter().find(|entry| {
                entry["controllerName"] == CONTROLLER_NAME && entry["parentRef"] == parent_ref
            });
            let conditions: Vec<Value> = status
                .conditions
                .iter()
                .map(|c| {
                    let status = if c.status { "True" } else { "False" };
                    let since = previous
                        .and_then(|p| p["conditions"].as_array())
                        .into_iter()
                        .flatten()
                        .find(|old| old["type"] == c.type_ && old["status"] == status)
                        .and_then(|old| old["lastTransitionTime"].as_str())
                        .unwrap_or(&now);
                    let mut condition = json!({
                        "type": c.type_,
                        "status": status,
                        "reason": c.reason,
                        "message": c.message,
                        "lastTransitionTime": since,
                    });
                    if let Some(generation) = generation {
                        condition["observedGeneration"] = json!(generation);
                    }
                    condition
                })
                .collect();
            json!({
                "parentRef": parent_ref,
                "controllerName": CONTROLLER_NAME,
                "conditions": conditions,
            })
        })
        .collect()
}

/// Brings one route's status in line; `Ok(true)` when it had to be
/// written.
async fn reconcile(
    client: &kube::Client,
    route: &RouteRef,
    conditions: &RouteConditions,
) -> kube::Result<bool> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &route.namespace, &resource(route));
    let object = api.get_status(&route.key.name).await?;
    let current: Vec<Value> = object
        .data
        .pointer("/status/parents")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut parents: Vec<Value> = current
        .iter()
        .filter(|entry| entry["controllerName"] != CONTROLLER_NAME)
        .cloned()
        .collect();
    // The generation the index read (the object's own, for an object read
    // before generations were kept).
    let generation = conditions.generation.or(object.metadata.generation);
    parents.extend(our_entries(
        &route.namespace,
        &conditions.parents,
        &current,
        generation,
    ));
    if parents == current {
        return Ok(false);
    }
    api.patch_status(
        &route.key.name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"parents": parents}})),
    )
    .await?;
    Ok(true)
}

/// Keeps route statuses in line with the index until the task is dropped.
pub async fn run(client: kube::Client, index: Arc<Mutex<Index>>) {
    // What was last found or written, so an unchanged route costs nothing.
    let mut settled: BTreeMap<RouteRef, RouteConditions> = BTreeMap::new();
    let mut ticks = tokio::time::interval(PERIOD);
    loop {
        ticks.tick().await;
        let desired = match index.lock() {
            Ok(index) => index.outbound.route_statuses(),
            Err(_) => return,
        };
        settled.retain(|route, _| desired.contains_key(route));
        for (route, statuses) in desired {
            if settled.get(&route) == Some(&statuses) {
                continue;
            }
            match reconcile(&client, &route, &statuses).await {
                Ok(written) => {
                    if written {
                        tracing::info!(
                            namespace = %route.namespace,
                            route = %route.key.name,
                            kind = route.kind.as_str(),
                            "route status written"
                        );
                    }
                    settled.insert(route, statuses);
                }
                // Gone since, or not allowed: tried again next time.
                Err(e) => tracing::debug!(route = %route.key.name, "route status: {e}"),
            }
        }
    }
}
