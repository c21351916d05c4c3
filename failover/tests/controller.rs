//! The controller against a real API server (the shared test cluster has
//! no nodes, so readiness drives it here; success rates are driven in the
//! decision tests and end to end): the docs' TrafficSplit is managed as
//! written, a primary whose endpoints go away is failed over at the next
//! round with an Event and a status that say why, its return is held, then
//! ramped back; a bad annotation leaves the weights alone and says why.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use mesh_api::crds::traffic_split::TrafficSplit;
use mesh_clusters::testing::{ensure_crds, shared_cluster};
use mesh_failover::controller::{Config, run};
use mesh_failover::metrics::FailoverMetrics;
use mesh_failover::status::SplitStatus;

/// The docs' split, held 2 s and ramped back a step a second.
fn docs_split() -> TrafficSplit {
    let mut split: TrafficSplit =
        serde_saphyr::from_str(mesh_failover::split::DOCS_EXAMPLE).expect("yaml");
    let annotations = split
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    annotations.insert("failover.mesh.dev/hold".into(), "2s".into());
    annotations.insert(
        "failover.mesh.dev/failback-step-interval".into(),
        "1s".into(),
    );
    split
}

fn endpoints(name: &str, ready: bool) -> Endpoints {
    let subsets = if ready {
        serde_json::json!([{"addresses": [{"ip": "10.10.0.5"}], "ports": [{"name": "http", "port": 9898}]}])
    } else {
        serde_json::json!([])
    };
    serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "subsets": subsets}))
        .expect("endpoints")
}

struct Split {
    api: Api<TrafficSplit>,
    events: Api<Event>,
}

impl Split {
    async fn weights(&self) -> Vec<u32> {
        let split = self.api.get("podinfo").await.expect("split");
        split
            .spec
            .backends
            .iter()
            .map(|b| b.weight_units().unwrap_or(u32::MAX) / 10_000)
            .collect()
    }

    async fn status(&self) -> Option<SplitStatus> {
        let split = self.api.get("podinfo").await.ok()?;
        let annotation = split
            .metadata
            .annotations?
            .get("failover.mesh.dev/status")?
            .clone();
        serde_json::from_str(&annotation).ok()
    }

    async fn event_reasons(&self) -> Vec<(String, String)> {
        let events = self.events.list(&Default::default()).await.expect("events");
        events
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("podinfo"))
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }

    /// Waits up to 30 s for `done` to hold of the status.
    async fn until(&self, what: &str, done: impl Fn(&SplitStatus, &[u32]) -> bool) -> SplitStatus {
        let mut last = None;
        for _ in 0..150 {
            if let Some(status) = self.status().await {
                let weights = self.weights().await;
                if done(&status, &weights) {
                    return status;
                }
                last = Some((status, weights));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("{what}: not within 30 s; last status and weights: {last:#?}");
    }
}

/// Services podinfo and podinfo-east in `ns`, each with a ready endpoint;
/// the Endpoints API of `ns`.
async fn backends(client: &kube::Client, ns: &str) -> Api<Endpoints> {
    let services = Api::<Service>::namespaced(client.clone(), ns);
    let endpoints_api = Api::<Endpoints>::namespaced(client.clone(), ns);
    for name in ["podinfo", "podinfo-east"] {
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"ports": [{"name": "http", "port": 9898}]},
        }))
        .expect("service");
        services
            .create(&PostParams::default(), &service)
            .await
            .expect("service");
        endpoints_api
            .create(&PostParams::default(), &endpoints(name, true))
            .await
            .expect("endpoints");
    }
    endpoints_api
}

/// Gives the primary's Endpoints a ready address, or none.
async fn set_primary_ready(endpoints_api: &Api<Endpoints>, ready: bool) {
    let mut replaced = endpoints("podinfo", ready);
    replaced.metadata.resource_version = endpoints_api
        .get("podinfo")
        .await
        .expect("get")
        .metadata
        .resource_version;
    endpoints_api
        .replace("podinfo", &PostParams::default(), &replaced)
        .await
        .expect("replacing the primary's endpoints");
}

/// Runs the controller (a round every 500 ms) until the sender is used.
fn start_controller(
    client: &kube::Client,
    instance: &str,
    readiness: &mesh_core::admin::Readiness,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), mesh_failover::error::Error>>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(run(
        client.clone(),
        Config {
            controlled_by: "linkerd-failover".into(),
            interval: Duration::from_millis(500),
            prometheus: None,
            scrape_timeout: Duration::from_millis(500),
            instance: Some(instance.into()),
        },
        FailoverMetrics::default(),
        readiness.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    (stop, controller)
}

#[tokio::test]
async fn readiness_fails_over_holds_ramps_back_and_bad_settings_change_nothing() {
    let cluster = shared_cluster().await;
    let client = cluster.client.clone();
    ensure_crds(&client, mesh_api::crds::all()).await;
    let ns = cluster.namespace("failover").await;
    let endpoints_api = backends(&client, &ns).await;
    let api = Api::<TrafficSplit>::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &docs_split())
        .await
        .expect("split");
    let split = Split {
        api,
        events: Api::namespaced(client.clone(), &ns),
    };

    let readiness = mesh_core::admin::Readiness::new();
    let (stop, controller) = start_controller(&client, "failover-test", &readiness);

    let status = split
        .until("managed in Primary", |s, _| s.state == "Primary")
        .await;
    assert_eq!(
        split.weights().await,
        [1, 0],
        "the docs' weights already say Primary"
    );
    assert!(status.backends[0].primary);
    assert!(
        readiness.is_ready(),
        "a controller that manages splits has listed what it watches, and says it is ready"
    );

    // The primary loses its endpoints.
    set_primary_ready(&endpoints_api, false).await;
    let status = split
        .until("failed over", |s, w| {
            s.state == "FailedOver" && w == [0, 100]
        })
        .await;
    let primary = &status.backends[0];
    assert_eq!(
        (primary.health.as_str(), primary.why.as_deref()),
        ("Down", Some("no ready endpoints"))
    );
    let transition = status.last_transition.expect("a transition");
    assert_eq!(
        (transition.from.as_str(), transition.to.as_str()),
        ("Primary", "FailedOver")
    );
    assert!(
        transition
            .reason
            .contains("primary podinfo is down: no ready endpoints")
    );
    let events = split.event_reasons().await;
    assert!(
        events
            .iter()
            .any(|(reason, note)| reason == "FailedOver"
                && note.contains("podinfo=0, podinfo-east=100")),
        "{events:?}"
    );

    // It comes back: held 2 s, then ramped back step by step.
    set_primary_ready(&endpoints_api, true).await;
    split
        .until("failing back", |s, w| {
            s.state == "FailingBack" && w[0] < 100
        })
        .await;
    split
        .until("back on the primary", |s, w| {
            s.state == "Primary" && w == [100, 0]
        })
        .await;
    let reasons: Vec<String> = split
        .event_reasons()
        .await
        .into_iter()
        .map(|e| e.0)
        .collect();
    for reason in ["FailedOver", "FailingBack", "Primary"] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{reason} in {reasons:?}"
        );
    }

    // A bad annotation: nothing moves, the status says why.
    split
        .api
        .patch(
            "podinfo",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"failover.mesh.dev/window": "soon"}}})),
        )
        .await
        .expect("annotate");
    let status = split.until("invalid", |s, _| s.state == "Invalid").await;
    assert!(
        status
            .errors
            .iter()
            .any(|e| e.contains("failover.mesh.dev/window: \"soon\" is not a duration")),
        "{:?}",
        status.errors
    );
    assert_eq!(split.weights().await, [100, 0]);
    let events: BTreeMap<String, String> = split.event_reasons().await.into_iter().collect();
    assert!(events.contains_key("InvalidFailoverSettings"), "{events:?}");

    let _ = stop.send(());
    controller
        .await
        .expect("joins")
        .expect("the controller stops cleanly");
}

/// An HTTPRoute whose `backendRefs` carry the primary and east is managed
/// like a TrafficSplit: its weights move in every rule (and nothing else
/// of the route changes) when the primary loses its endpoints; a route
/// whose rules name different backends is left alone, and its status says
/// which field.
#[tokio::test]
async fn an_httproute_split_fails_over_in_every_rule_and_keeps_the_rest() {
    use mesh_api::crds::http_route::HttpRoute;
    let cluster = shared_cluster().await;
    let client = cluster.client.clone();
    ensure_crds(&client, mesh_api::crds::all()).await;
    let ns = cluster.namespace("failover-route").await;
    let endpoints_api = backends(&client, &ns).await;
    let route = |name: &str, second: &str| -> HttpRoute {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name,
                "labels": {"failover.linkerd.io/controlled-by": "linkerd-failover"},
                "annotations": {"failover.linkerd.io/primary-service": "podinfo"}},
            "spec": {
                "parentRefs": [{"name": "podinfo", "kind": "Service", "group": "core", "port": 9898}],
                "rules": [
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                     "timeouts": {"request": "3s"},
                     "backendRefs": [{"name": "podinfo", "port": 9898}, {"name": "podinfo-east", "port": 9898, "weight": 0}]},
                    {"backendRefs": [{"name": "podinfo", "port": 9898, "weight": 1}, {"name": second, "port": 9898, "weight": 0}]}
                ]
            }
        }))
        .expect("route")
    };
    let routes = Api::<HttpRoute>::namespaced(client.clone(), &ns);
    routes
        .create(&PostParams::default(), &route("podinfo", "podinfo-east"))
        .await
        .expect("route");
    routes
        .create(&PostParams::default(), &route("mixed", "elsewhere"))
        .await
        .expect("route");
    let (stop, controller) = start_controller(
        &client,
        "failover-route-test",
        &mesh_core::admin::Readiness::new(),
    );
    let status_of = |route: &HttpRoute| -> Option<SplitStatus> {
        SplitStatus::of_annotations(route.metadata.annotations.as_ref()?)
    };
    let weights = |route: &HttpRoute| -> Vec<Vec<u64>> {
        route
            .spec
            .rules
            .iter()
            .map(|rule| {
                rule.backend_refs
                    .iter()
                    .map(|b| b["weight"].as_u64().unwrap_or(1))
                    .collect()
            })
            .collect()
    };
    // The primary loses its endpoints once the route is managed.
    let mut managed = false;
    let mut last = None;
    for _ in 0..150 {
        let current = routes.get("podinfo").await.expect("route");
        let status = status_of(&current);
        if !managed && status.as_ref().is_some_and(|s| s.state == "Primary") {
            managed = true;
            set_primary_ready(&endpoints_api, false).await;
        }
        if managed && weights(&current) == [vec![0, 100], vec![0, 100]] {
            assert_eq!(current.spec.rules[0].matches.len(), 1, "the matches stay");
            assert_eq!(
                current.spec.rules[0]
                    .timeouts
                    .as_ref()
                    .and_then(|t| t.request.as_deref()),
                Some("3s"),
                "the timeouts stay"
            );
            last = None;
            break;
        }
        last = Some((status, weights(&current)));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(last.is_none(), "not failed over in every rule: {last:?}");
    let mixed = routes.get("mixed").await.expect("route");
    let status = status_of(&mixed).expect("a status on the mixed route");
    assert_eq!(status.state, "Invalid");
    assert!(
        status
            .errors
            .iter()
            .any(|e| e.starts_with("spec.rules[1].backendRefs")),
        "{:?}",
        status.errors
    );
    assert_eq!(weights(&mixed), [vec![1, 0], vec![1, 0]], "left alone");
    let _ = stop.send(());
    let _ = controller.await;
}
