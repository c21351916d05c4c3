//! The controller against a real API server (the shared test cluster has
//! no nodes, so readiness drives it here; success rates are driven in the
//! decision tests and end to end): the docs' TrafficSplit is managed as
//! written, a primary whose endpoints go away is failed over at the next
//! round with an Event and a status that say why, its return is held, then
//! ramped back; a bad annotation leaves the weights alone and says why.
//! Pods whose metrics pages lie cannot steer it: a "client" in another
//! namespace claiming the primary fails, and pages of NaN, infinities and
//! negative counts, change nothing (while the same claim from a client in
//! the split's namespace does fail it over, so the attack is real). A
//! user who takes a split over by hand while the controller cannot reach
//! the API server keeps it when the API is back: the controller holds its
//! phase on data older than a window, and writes only over what it read.

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
    replace_primary_endpoints(endpoints_api, endpoints("podinfo", ready)).await;
}

/// Replaces the primary's Endpoints with `replaced`.
async fn replace_primary_endpoints(endpoints_api: &Api<Endpoints>, mut replaced: Endpoints) {
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
    controlled_by: &str,
    instance: &str,
    readiness: &mesh_core::admin::Readiness,
    metrics: FailoverMetrics,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), mesh_failover::error::Error>>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(run(
        client.clone(),
        Config {
            controlled_by: controlled_by.into(),
            interval: Duration::from_millis(500),
            prometheus: None,
            scrape_timeout: Duration::from_millis(500),
            instance: Some(instance.into()),
        },
        metrics,
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
    let (stop, controller) = start_controller(
        &client,
        "linkerd-failover",
        "failover-test",
        &readiness,
        FailoverMetrics::default(),
    );

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
        events.iter().any(|(reason, note)| reason == "Failover"
            && note.starts_with("FailedOver: ")
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
    let events = split.event_reasons().await;
    for phase in ["FailedOver", "FailingBack", "Primary"] {
        assert!(
            events
                .iter()
                .any(|(reason, note)| reason == "Failover"
                    && note.starts_with(&format!("{phase}: "))),
            "a Failover Event into {phase} in {events:?}"
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
        "linkerd-failover",
        "failover-route-test",
        &mesh_core::admin::Readiness::new(),
        FailoverMetrics::default(),
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

/// A namespace `prefix-*` with the backends and the docs' split in it,
/// labelled for the controller `controlled_by` (a test's own: the other
/// tests' controllers, in other processes, manage `linkerd-failover`
/// splits and would judge this one by their own rounds), with `annotations`
/// added.
async fn split_of_its_own(
    cluster: &mesh_clusters::testing::TestCluster,
    prefix: &str,
    controlled_by: &str,
    annotations: &[(&str, &str)],
) -> (String, Split) {
    let client = cluster.client.clone();
    ensure_crds(&client, mesh_api::crds::all()).await;
    let ns = cluster.namespace(prefix).await;
    backends(&client, &ns).await;
    let mut split = docs_split();
    split
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(
            "failover.linkerd.io/controlled-by".into(),
            controlled_by.into(),
        );
    let own = split
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    for (key, value) in annotations {
        own.insert((*key).into(), (*value).into());
    }
    let api = Api::<TrafficSplit>::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &split)
        .await
        .expect("split");
    let split = Split {
        api,
        events: Api::namespaced(client, &ns),
    };
    (ns, split)
}

/// A metrics page served at `ip`:4191 (a pod's proxy admin port), the
/// `n`th answer being `page(n)`.
async fn metrics_page(ip: &str, mut page: impl FnMut(u64) -> String + Send + 'static) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind((ip, mesh_api::ports::PROXY_ADMIN))
        .await
        .unwrap_or_else(|e| panic!("binding {ip}:4191: {e}"));
    tokio::spawn(async move {
        let mut served = 0u64;
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            served += 1;
            let body = page(served);
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            let _ = stream
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
        }
    });
}

/// A meshed pod `name` in `ns`, Running at `ip` (as a kubelet reports it:
/// the shared test cluster has no nodes).
async fn running_meshed_pod(client: &kube::Client, ns: &str, name: &str, ip: &str) {
    running_meshed_pod_as(client, ns, name, ip, None).await;
}

/// [`running_meshed_pod`], running as ServiceAccount `account` when given.
async fn running_meshed_pod_as(
    client: &kube::Client,
    ns: &str,
    name: &str,
    ip: &str,
    account: Option<&str>,
) {
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns);
    let mut spec = serde_json::json!({"containers": [
        {"name": "app", "image": "app"},
        {"name": "linkerd-proxy", "image": "proxy"},
    ]});
    if let Some(account) = account {
        spec["serviceAccountName"] = account.into();
    }
    let pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
        })),
    )
    .await
    .expect("the pod's status");
}

/// `route_actual_response_total` toward `ns`/podinfo: `success` and
/// `failure` as given (any text: a lie need not be a number).
fn outcomes_page(ns: &str, success: &str, failure: &str) -> String {
    let series = |classification: &str, value: &str| {
        format!(
            "route_actual_response_total{{direction=\"outbound\",dst_namespace=\"{ns}\",\
             dst_service=\"podinfo\",classification=\"{classification}\"}} {value}\n"
        )
    };
    series("success", success) + &series("failure", failure)
}

/// Starts a controller for `controlled_by` (its metrics in the returned
/// registry), waits until `split` is managed on its primary, and checks it
/// is still there ten rounds later (a counted claim of the attacks' size
/// fails over in two): `what` did not move it.
async fn stays_on_the_primary(
    client: &kube::Client,
    split: &Split,
    controlled_by: &str,
    what: &str,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), mesh_failover::error::Error>>,
    prometheus_client::registry::Registry,
) {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = FailoverMetrics::register(&mut registry);
    let (stop, controller) = start_controller(
        client,
        controlled_by,
        controlled_by,
        &mesh_core::admin::Readiness::new(),
        metrics,
    );
    split
        .until("managed", |s, w| s.state == "Primary" && w[1] == 0)
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let status = split.status().await.expect("status");
    assert_eq!(
        (status.state.as_str(), split.weights().await[1]),
        ("Primary", 0),
        "{what} moved the split: {status:#?}"
    );
    (stop, controller, registry)
}

/// `failover_ignored_samples_total{reason}` in `registry`.
fn ignored_samples(registry: &prometheus_client::registry::Registry, reason: &str) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
    text.lines()
        .find(|l| {
            l.starts_with(&format!(
                "failover_ignored_samples_total{{reason=\"{reason}\"}}"
            ))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// The `controlled-by` value of the lying-pages test's split and controller.
const ROGUE_TEST: &str = "failover-rogue-test";

#[tokio::test]
async fn pods_whose_metrics_pages_lie_cannot_steer_the_split() {
    let cluster = shared_cluster().await;
    let client = cluster.client.clone();
    let (ns, split) = split_of_its_own(&cluster, "failover-rogue", ROGUE_TEST, &[]).await;
    let elsewhere = cluster.namespace("failover-rogue-other").await;
    // Addresses of this test's own in 127/8 (the API server takes them as
    // pod IPs), from the namespace's random suffix.
    let octet = u8::from_str_radix(&ns[ns.len() - 2..], 36).unwrap_or(7) % 200 + 20;
    let ip = |host: u8| format!("127.{octet}.3.{host}");
    // Failures rising by 1,000 a scrape: the primary failing hard.
    let failing = {
        let ns = ns.clone();
        move |n: u64| outcomes_page(&ns, "0", &(n * 1000).to_string())
    };
    metrics_page(&ip(1), failing.clone()).await;
    running_meshed_pod(&client, &elsewhere, "rogue", &ip(1)).await;
    let garbage = {
        let ns = ns.clone();
        move |n: u64| {
            let lie = ["NaN", "+Inf", "-Inf", "-1e9"][(n % 4) as usize];
            outcomes_page(&ns, "0", lie)
        }
    };
    metrics_page(&ip(2), garbage).await;
    running_meshed_pod(&client, &ns, "garbage", &ip(2)).await;

    let (stop, controller, registry) =
        stays_on_the_primary(&client, &split, ROGUE_TEST, "lying pages").await;
    assert!(
        ignored_samples(&registry, "not_finite") > 0.0
            && ignored_samples(&registry, "negative") > 0.0,
        "the garbage samples are counted as ignored"
    );

    // The same claim from a client of the split's own namespace counts.
    metrics_page(&ip(3), failing).await;
    running_meshed_pod(&client, &ns, "client", &ip(3)).await;
    split
        .until("failed over on a client's word", |s, _| {
            s.state != "Primary"
        })
        .await;
    let _ = stop.send(());
    controller
        .await
        .expect("joins")
        .expect("the controller stops cleanly");
}

/// A client of the shared cluster through `forwarder`.
async fn client_via(
    cluster: &mesh_clusters::testing::TestCluster,
    forwarder: &mesh_clusters::testing::ApiForwarder,
) -> kube::Client {
    let text = cluster.kubeconfig_via(&forwarder.url());
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&text).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("config");
    kube::Client::try_from(config).expect("client")
}

#[tokio::test]
async fn a_split_taken_over_by_hand_during_an_api_outage_stays_as_the_user_left_it() {
    const OUTAGE_TEST: &str = "failover-outage-test";
    let cluster = shared_cluster().await;
    let client = cluster.client.clone();
    let (ns, split) = split_of_its_own(
        &cluster,
        "failover-outage",
        OUTAGE_TEST,
        &[("failover.mesh.dev/window", "2s")],
    )
    .await;
    // A client of the split that answers healthy now, failing later.
    let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let octet = u8::from_str_radix(&ns[ns.len() - 2..], 36).unwrap_or(9) % 200 + 20;
    let ip = format!("127.{octet}.4.1");
    {
        let (ns, failing) = (ns.clone(), failing.clone());
        metrics_page(&ip, move |n| {
            let count = (n * 1000).to_string();
            if failing.load(std::sync::atomic::Ordering::SeqCst) {
                outcomes_page(&ns, "0", &count)
            } else {
                outcomes_page(&ns, &count, "0")
            }
        })
        .await;
    }
    running_meshed_pod(&client, &ns, "client", &ip).await;

    let mut forwarder = mesh_clusters::testing::ApiForwarder::start(cluster.api_address()).await;
    let (stop, controller) = start_controller(
        &client_via(&cluster, &forwarder).await,
        OUTAGE_TEST,
        "failover-outage-test",
        &mesh_core::admin::Readiness::new(),
        FailoverMetrics::default(),
    );
    split
        .until("managed", |s, w| s.state == "Primary" && w[1] == 0)
        .await;

    // The controller loses the API; the user takes the split over by hand
    // (no longer controlled, weights of their own), and the client starts
    // failing: fresh numbers, but the split as the controller last saw it
    // is stale.
    forwarder.cut();
    let mut edited = split.api.get("podinfo").await.expect("split");
    if let Some(labels) = edited.metadata.labels.as_mut() {
        labels.remove("failover.linkerd.io/controlled-by");
    }
    edited.spec.backends[0].weight = 30.into();
    edited.spec.backends[1].weight = 70.into();
    split
        .api
        .replace("podinfo", &PostParams::default(), &edited)
        .await
        .expect("the user's edit");
    failing.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(4)).await;
    forwarder.restore().await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    let now = split.api.get("podinfo").await.expect("split");
    assert_eq!(
        now.spec
            .backends
            .iter()
            .map(|b| b.weight.clone())
            .collect::<Vec<_>>(),
        [serde_json::json!(30), serde_json::json!(70)],
        "the user's weights were overwritten: {:?}",
        now.metadata.managed_fields
    );
    let events = split.event_reasons().await;
    assert!(
        !events.iter().any(|(reason, _)| reason == "Failover"),
        "no failover of a split the user took over: {events:?}"
    );
    let _ = stop.send(());
    controller
        .await
        .expect("joins")
        .expect("the controller stops cleanly");
}

/// A standby replica taking over a split its killed predecessor left
/// mid-ramp (the status says `FailingOver`, the weights are at the 50 %
/// step) carries the ramp on while the primary browns out: the primary's
/// share never goes back above 50 %, the ramp ends in `FailedOver`, and
/// that is the one Failover Event (the takeover itself is no transition).
#[tokio::test]
async fn a_replica_taking_over_mid_ramp_never_moves_weight_back() {
    const TAKEOVER_TEST: &str = "failover-takeover-test";
    let cluster = shared_cluster().await;
    let client = cluster.client.clone();
    let (ns, split) = split_of_its_own(
        &cluster,
        "failover-takeover",
        TAKEOVER_TEST,
        &[("failover.mesh.dev/status", r#"{"state":"FailingOver"}"#)],
    )
    .await;
    split
        .api
        .patch(
            "podinfo",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"backends": [
                {"service": "podinfo", "weight": 50},
                {"service": "podinfo-east", "weight": 50},
            ]}})),
        )
        .await
        .expect("the weights the killed replica left");
    // A client of the split seeing the primary answer 80 % of its requests.
    let octet = u8::from_str_radix(&ns[ns.len() - 2..], 36).unwrap_or(11) % 200 + 20;
    let ip = format!("127.{octet}.5.1");
    {
        let ns = ns.clone();
        metrics_page(&ip, move |n| {
            outcomes_page(&ns, &(n * 80).to_string(), &(n * 20).to_string())
        })
        .await;
    }
    running_meshed_pod(&client, &ns, "client", &ip).await;

    let (stop, controller) = start_controller(
        &client,
        TAKEOVER_TEST,
        "failover-takeover-test",
        &mesh_core::admin::Readiness::new(),
        FailoverMetrics::default(),
    );
    let mut shares = Vec::new();
    for _ in 0..300 {
        let weights = split.weights().await;
        shares.push(weights[0]);
        if split
            .status()
            .await
            .is_some_and(|s| s.state == "FailedOver")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = split.status().await.expect("status");
    assert_eq!(
        status.state, "FailedOver",
        "the ramp never ended: {status:#?}"
    );
    assert!(
        shares.iter().all(|share| *share <= 50),
        "the primary's share went back up during the takeover: {shares:?}"
    );
    let events: Vec<String> = split
        .event_reasons()
        .await
        .into_iter()
        .filter(|(reason, _)| reason == "Failover")
        .map(|(_, note)| note)
        .collect();
    assert!(
        events.len() == 1 && events[0].starts_with("FailedOver: "),
        "one Failover Event, into FailedOver: {events:?}"
    );
    let _ = stop.send(());
    controller
        .await
        .expect("joins")
        .expect("the controller stops cleanly");
}

/// `response_total` a backend's proxy served `client_id` over mutual TLS.
fn served_page(client_id: &str, success: u64, failure: u64) -> String {
    let series = |classification: &str, value: u64| {
        format!(
            "response_total{{direction=\"inbound\",tls=\"true\",client_id=\"{client_id}\",\
             status_code=\"200\",classification=\"{classification}\"}} {value}\n"
        )
    };
    series("success", success) + &series("failure", failure)
}

/// Cumulative (successes, failures) at the `n`th scrape: 100 requests a
/// scrape, succeeding until `failing` is set and failing from then on.
fn healthy_then_failing(
    failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> impl FnMut(u64) -> (u64, u64) + Send + 'static {
    let mut failing_since = None;
    move |n| {
        if failing_since.is_none() && failing.load(std::sync::atomic::Ordering::SeqCst) {
            failing_since = Some(n);
        }
        match failing_since {
            None => (n * 100, 0),
            Some(since) => (since * 100, (n - since) * 100),
        }
    }
}

/// The primary's pod is meshed and says what it served: a client of the
/// split's own namespace, even one running as the honest client's
/// ServiceAccount, counts no more than the primary served its identity.
/// Its claim of a thousand failures a scrape moves nothing (and is
/// counted as unconfirmed); when the primary really fails, the honest
/// client's failures, confirmed by the primary's proxy, fail it over.
#[tokio::test]
async fn a_client_counts_no_more_than_the_backend_served_it() {
    const CONFIRM_TEST: &str = "failover-confirm-test";
    let cluster = shared_cluster().await;
    let client = cluster.client.clone();
    let (ns, split) = split_of_its_own(&cluster, "failover-confirm", CONFIRM_TEST, &[]).await;
    let accounts =
        Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), &ns);
    accounts
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "web"}})).expect("sa"),
        )
        .await
        .expect("the clients' ServiceAccount");
    let octet = u8::from_str_radix(&ns[ns.len() - 2..], 36).unwrap_or(13) % 200 + 20;
    let ip = |host: u8| format!("127.{octet}.6.{host}");
    let web_id = format!("web.{ns}.serviceaccount.identity.cluster.local");
    let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));

    // The primary's pod (its Endpoints name it, as the endpoints
    // controller does: Endpoints refuse the loopback address it has here):
    // it served the web identity 100 requests a scrape
    // (all failing once `failing` is set).
    {
        let (web_id, mut outcomes) = (web_id.clone(), healthy_then_failing(failing.clone()));
        metrics_page(&ip(1), move |n| {
            let (success, failure) = outcomes(n);
            served_page(&web_id, success, failure)
        })
        .await;
    }
    running_meshed_pod(&client, &ns, "podinfo-0", &ip(1)).await;
    let primary: Endpoints = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "podinfo"},
        "subsets": [{
            "addresses": [{"ip": "10.10.0.5", "targetRef": {"kind": "Pod", "name": "podinfo-0", "namespace": ns}}],
            "ports": [{"name": "http", "port": 9898}],
        }],
    }))
    .expect("endpoints");
    replace_primary_endpoints(&Api::namespaced(client.clone(), &ns), primary).await;

    // The honest client says what the primary served it.
    {
        let (ns, mut outcomes) = (ns.clone(), healthy_then_failing(failing.clone()));
        metrics_page(&ip(2), move |n| {
            let (success, failure) = outcomes(n);
            outcomes_page(&ns, &success.to_string(), &failure.to_string())
        })
        .await;
    }
    running_meshed_pod_as(&client, &ns, "web-0", &ip(2), Some("web")).await;
    // The rogue runs as the same ServiceAccount and claims the primary
    // fails a thousand requests a scrape, none of which it sent.
    {
        let ns = ns.clone();
        metrics_page(&ip(3), move |n| {
            outcomes_page(&ns, "0", &(n * 1000).to_string())
        })
        .await;
    }
    running_meshed_pod_as(&client, &ns, "web-rogue", &ip(3), Some("web")).await;

    let (stop, controller, registry) = stays_on_the_primary(
        &client,
        &split,
        CONFIRM_TEST,
        "a claim the primary's proxy never served",
    )
    .await;
    assert!(
        ignored_samples(&registry, "unconfirmed") > 0.0,
        "the rogue's cut claims are counted"
    );

    // The primary really fails: what its proxy served confirms it.
    failing.store(true, std::sync::atomic::Ordering::SeqCst);
    split
        .until("failed over on confirmed failures", |s, w| {
            s.state != "Primary" && w[1] > 0
        })
        .await;
    let _ = stop.send(());
    controller
        .await
        .expect("joins")
        .expect("the controller stops cleanly");
}
