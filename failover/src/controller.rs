//! The controller's loop: it watches the TrafficSplits and HTTPRoutes
//! labelled `failover.linkerd.io/controlled-by=<name>` (see [`Target`])
//! and, once per interval, for each one reads its backends' readiness (Endpoints), their gateways'
//! liveness (mirrored backends) and what the clients saw (their proxies'
//! metrics pages, or Prometheus), runs the decision core, writes the
//! weights when they change, and reports every transition as an Event, a
//! metric and the status annotation. A split it cannot manage is left as
//! it is, with the reason in its status and an Event.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use mesh_api::crds::http_route::HttpRoute;
use mesh_api::crds::traffic_split::TrafficSplit;
use mesh_api::labels::{FAILOVER_CONTROLLED_BY, MIRROR_CLUSTER_NAME};
use tokio::time::Instant;

use crate::corroborate::{self, Claim, Served};
use crate::decision::{Failover, Phase, Readiness, Tick};
use crate::error::Error;
use crate::metrics::FailoverMetrics;
use crate::prometheus::Prometheus;
use crate::signals::{self, BackendKey, ClientCounts, Deltas, Ignored, ServedCounts};
use crate::split::ManagedSplit;
use crate::status::{BackendStatus, SplitStatus, TransitionStatus};
use crate::target::{Target, TargetKey};
use crate::window::Counts;

/// How often the status annotation's numbers are refreshed when nothing
/// else changed.
const STATUS_REFRESH: Duration = Duration::from_secs(10);
/// Metrics pages fetched at once.
const SCRAPES_IN_FLIGHT: usize = 16;

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `failover.linkerd.io/controlled-by` value it manages.
    pub controlled_by: String,
    /// Time between decisions (and samples).
    pub interval: Duration,
    /// Where to read what clients saw; their metrics pages when unset.
    pub prometheus: Option<Prometheus>,
    /// How long a metrics page may take.
    pub scrape_timeout: Duration,
    /// This controller's name in the Events it publishes (its pod's name).
    pub instance: Option<String>,
}

/// The reason and action of the Events a change of weights publishes, as
/// linkerd-failover's.
pub const FAILOVER_EVENT: &str = "Failover";

/// One split under management.
#[derive(Debug)]
struct Managed {
    signature: String,
    failover: Failover,
    status: Option<SplitStatus>,
    status_written: Option<Instant>,
    last_transition: Option<TransitionStatus>,
}

/// The watched cluster.
struct Views {
    splits: Store<TrafficSplit>,
    routes: Store<HttpRoute>,
    endpoints: Store<Endpoints>,
    services: Store<Service>,
    pods: Store<Pod>,
    /// Whether the watches behind the stores are connected.
    freshness: Freshness,
}

/// Since when each failing watch has been failing (a watch that is
/// connected has no entry): its store then holds what the API server said
/// before, not what is true now.
#[derive(Debug, Clone, Default)]
struct Freshness(std::sync::Arc<std::sync::Mutex<BTreeMap<&'static str, Instant>>>);

impl Freshness {
    fn note(&self, what: &'static str, ok: bool) {
        let mut failing = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if ok {
            failing.remove(what);
        } else {
            failing.entry(what).or_insert_with(Instant::now);
        }
    }

    /// How long the longest-failing watch has been failing.
    fn stale_for(&self) -> Option<Duration> {
        let failing = self.0.lock().unwrap_or_else(|e| e.into_inner());
        failing.values().map(|since| since.elapsed()).max()
    }
}

fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    (freshness, what): (&Freshness, &'static str),
) -> Store<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + serde::de::DeserializeOwned
        + 'static,
{
    let (reader, writer) = reflector::store();
    let freshness = freshness.clone();
    let stream = reflector::reflector(writer, watcher(api, config).default_backoff()).for_each(
        move |event| {
            freshness.note(what, event.is_ok());
            std::future::ready(())
        },
    );
    tokio::spawn(stream);
    reader
}

/// Runs the controller until `shutdown` completes.
pub async fn run(
    client: kube::Client,
    config: Config,
    metrics: FailoverMetrics,
    readiness: mesh_core::admin::Readiness,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let freshness = Freshness::default();
    let views = Views {
        freshness: freshness.clone(),
        splits: watch(
            Api::<TrafficSplit>::all(client.clone()),
            watcher::Config::default().labels(&format!(
                "{FAILOVER_CONTROLLED_BY}={}",
                config.controlled_by
            )),
            (&freshness, "TrafficSplits"),
        ),
        routes: watch(
            Api::<HttpRoute>::all(client.clone()),
            watcher::Config::default().labels(&format!(
                "{FAILOVER_CONTROLLED_BY}={}",
                config.controlled_by
            )),
            (&freshness, "HTTPRoutes"),
        ),
        endpoints: watch(
            Api::all(client.clone()),
            watcher::Config::default(),
            (&freshness, "Endpoints"),
        ),
        services: watch(
            Api::all(client.clone()),
            watcher::Config::default(),
            (&freshness, "Services"),
        ),
        pods: watch(
            Api::all(client.clone()),
            watcher::Config::default(),
            (&freshness, "Pods"),
        ),
    };
    for (what, ready) in [
        ("TrafficSplits", views.splits.wait_until_ready().boxed()),
        ("HTTPRoutes", views.routes.wait_until_ready().boxed()),
        ("Endpoints", views.endpoints.wait_until_ready().boxed()),
        ("Services", views.services.wait_until_ready().boxed()),
        ("Pods", views.pods.wait_until_ready().boxed()),
    ] {
        ready
            .await
            .map_err(|source| Error::Watch { what, source })?;
    }
    readiness.set_ready();
    tracing::info!(controlled_by = %config.controlled_by, "failover controller started");
    let reporter = Reporter {
        controller: "linkerd-failover".into(),
        instance: config.instance.clone(),
    };
    let mut controller = Controller {
        client,
        config,
        metrics,
        reporter,
        managed: BTreeMap::new(),
        invalid: BTreeMap::new(),
        deltas: Deltas::default(),
        served: Deltas::default(),
        started: Instant::now(),
    };
    let mut ticks = tokio::time::interval(controller.config.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = ticks.tick() => controller.round(&views).await,
            () = &mut shutdown => return Ok(()),
        }
    }
}

struct Controller {
    client: kube::Client,
    config: Config,
    metrics: FailoverMetrics,
    reporter: Reporter,
    managed: BTreeMap<TargetKey, Managed>,
    /// Splits that cannot be managed, with the errors last reported.
    invalid: BTreeMap<TargetKey, Vec<String>>,
    /// Each proxy's last claims as a client.
    deltas: Deltas,
    /// Each proxy's last counts of what it served, per client identity.
    served: Deltas<String>,
    started: Instant,
}

impl Controller {
    async fn round(&mut self, views: &Views) {
        let now = self.started.elapsed();
        let targets = views
            .splits
            .state()
            .into_iter()
            .map(Target::Split)
            .chain(views.routes.state().into_iter().map(Target::Route));
        let mut valid = Vec::new();
        let mut seen = BTreeSet::new();
        for target in targets {
            let key = target.key();
            seen.insert(key.clone());
            match target.read() {
                Ok(managed) => {
                    self.invalid.remove(&key);
                    valid.push((target, managed));
                }
                Err(errors) => {
                    self.managed.remove(&key);
                    self.report_invalid(&target, &key, errors).await;
                }
            }
        }
        self.managed.retain(|key, _| seen.contains(key));
        self.invalid.retain(|key, _| seen.contains(key));
        if valid.is_empty() {
            return;
        }
        let namespaces: BTreeSet<String> = valid
            .iter()
            .flat_map(|(_, m)| m.backends.iter().map(|(ns, _)| ns.clone()))
            .collect();
        let backends: BTreeSet<BackendKey> = valid
            .iter()
            .flat_map(|(_, m)| m.backends.iter().cloned())
            .collect();
        let seen_by_clients = self.sample(views, &namespaces, &backends).await;
        let alive = self.gateways(views, &valid).await;
        let stale_for = views.freshness.stale_for();
        for (target, managed) in valid {
            // What the API server said more than a window ago (its splits,
            // endpoints, the user's edits) is no ground for a new phase:
            // hold until the watches are back.
            if let Some(stale) = stale_for.filter(|s| *s >= managed.settings.window) {
                let (_, namespace, name) = target.key();
                tracing::warn!(%namespace, %name, "the API server has not answered for {stale:?}: holding the phase");
                continue;
            }
            self.decide(now, views, &target, managed, &seen_by_clients, &alive)
                .await;
        }
    }

    /// What clients saw since the last round, per backend, each client's
    /// word bounded by what the backends' own proxies served it (see
    /// [`corroborate`]).
    async fn sample(
        &mut self,
        views: &Views,
        namespaces: &BTreeSet<String>,
        backends: &BTreeSet<BackendKey>,
    ) -> BTreeMap<BackendKey, Counts> {
        let mut ignored = Ignored::default();
        let pod_at = pods_by_ip(views, namespaces);
        let reports = match &self.config.prometheus {
            Some(prometheus) => {
                prometheus_reports(prometheus, &pod_at, namespaces, &mut ignored).await
            }
            None => self.scrape(views, namespaces, &mut ignored).await,
        };
        let proxies: BTreeSet<String> = reports.iter().map(|r| r.proxy.clone()).collect();
        let mut claims = Vec::new();
        let mut served_by_pod: BTreeMap<String, ServedCounts> = BTreeMap::new();
        for report in reports {
            let claimed = self
                .deltas
                .update(&report.proxy, report.claims, &mut ignored);
            let served = self
                .served
                .update(&report.proxy, report.served, &mut ignored);
            if let Some(pod) = report.pod {
                served_by_pod.insert(pod, served);
            }
            claims.push(Claim {
                identity: report.identity,
                counts: claimed,
            });
        }
        self.deltas.retain(&proxies);
        self.served.retain(&proxies);
        // A backend can be read when one of its endpoints is a pod whose
        // proxy was read this round.
        let mut served: BTreeMap<BackendKey, Served> = BTreeMap::new();
        for backend in backends {
            for pod in endpoint_pods(views, backend, &pod_at) {
                if let Some(counts) = served_by_pod.get(&pod) {
                    let sum = served.entry(backend.clone()).or_default();
                    for (client, n) in counts {
                        *sum.entry(client.clone()).or_default() += *n;
                    }
                }
            }
        }
        let (seen, unconfirmed) = corroborate::bound(&claims, &served);
        ignored.unconfirmed += unconfirmed;
        if ignored != Ignored::default() {
            tracing::debug!(?ignored, "client samples ignored");
        }
        self.metrics.ignored(&ignored);
        seen
    }

    /// Each meshed pod of `namespaces`, read from its metrics page: a
    /// split's clients are the meshed pods of its own namespace (a pod
    /// elsewhere, whatever its page says, does not steer it), and its
    /// backends' pods say what they served.
    async fn scrape(
        &self,
        views: &Views,
        namespaces: &BTreeSet<String>,
        ignored: &mut Ignored,
    ) -> Vec<Report> {
        let timeout = self.config.scrape_timeout;
        let scrapes: Vec<_> = views
            .pods
            .state()
            .iter()
            .filter(|pod| is_meshed_and_running(pod))
            .filter_map(|pod| {
                let namespace = pod.namespace().filter(|ns| namespaces.contains(ns))?;
                let ip = pod.status.as_ref()?.pod_ip.clone()?;
                let proxy = format!("{namespace}/{}", pod.name_any());
                let identity = pod_identity(pod);
                Some(async move {
                    let authority = format!("{ip}:{}", mesh_api::ports::PROXY_ADMIN);
                    let page = crate::fetch::get(&authority, "/metrics", timeout).await;
                    (proxy, namespace, identity, page)
                })
            })
            .collect();
        let pages: Vec<_> = futures::stream::iter(scrapes)
            .buffer_unordered(SCRAPES_IN_FLIGHT)
            .collect()
            .await;
        let mut reports = Vec::new();
        for (proxy, namespace, identity, page) in pages {
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    tracing::debug!(%proxy, "scraping: {e}");
                    continue;
                }
            };
            let (claims, claims_ignored) = signals::from_metrics_page(&page);
            let (served, served_ignored) = signals::served_from_metrics_page(&page);
            ignored.add(claims_ignored);
            ignored.add(served_ignored);
            reports.push(Report {
                pod: Some(proxy.clone()),
                proxy,
                // Toward its own namespace's backends only.
                claims: claims
                    .into_iter()
                    .filter(|((ns, _), _)| *ns == namespace)
                    .collect(),
                served,
                identity,
            });
        }
        reports
    }

    /// The liveness of the gateways of the clusters the splits' backends
    /// are mirrored from.
    async fn gateways(
        &self,
        views: &Views,
        valid: &[(Target, ManagedSplit)],
    ) -> BTreeMap<String, bool> {
        let clusters: BTreeSet<String> = valid
            .iter()
            .flat_map(|(_, m)| m.backends.iter())
            .filter_map(|key| mirrored_from(views, key))
            .collect();
        if clusters.is_empty() {
            return BTreeMap::new();
        }
        if let Some(prometheus) = &self.config.prometheus {
            return prometheus.gateways_alive().await.unwrap_or_else(|e| {
                tracing::warn!("reading gateway liveness from Prometheus: {e}");
                BTreeMap::new()
            });
        }
        let mut alive = BTreeMap::new();
        for pod in views.pods.state() {
            // Only the mirrors the multicluster extension runs: a pod
            // elsewhere with the same labels says nothing about a gateway.
            if pod.namespace().as_deref() != Some(mesh_api::labels::MULTICLUSTER_NAMESPACE) {
                continue;
            }
            let labels = pod.labels();
            let Some(cluster) = labels.get(MIRROR_CLUSTER_NAME) else {
                continue;
            };
            if labels.get("component").map(String::as_str) != Some("linkerd-service-mirror")
                || !clusters.contains(cluster)
                || pod.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Running")
            {
                continue;
            }
            let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
                continue;
            };
            let authority = format!("{ip}:{}", mesh_api::ports::MIRROR_ADMIN);
            match crate::fetch::get(&authority, "/metrics", self.config.scrape_timeout).await {
                Ok(page) => alive.extend(signals::gateways_alive(&page)),
                Err(e) => tracing::debug!(%cluster, "reading the service mirror's metrics: {e}"),
            }
        }
        alive
    }

    async fn decide(
        &mut self,
        now: Duration,
        views: &Views,
        target: &Target,
        spec: ManagedSplit,
        seen: &BTreeMap<BackendKey, Counts>,
        alive: &BTreeMap<String, bool>,
    ) {
        let key = target.key();
        let signature = target.signature(&spec);
        let restart = self
            .managed
            .get(&key)
            .is_none_or(|m| m.signature != signature);
        if restart {
            let resumed = self
                .managed
                .get(&key)
                .map(|m| m.failover.phase().name().to_owned())
                .or(spec.resumed_state.clone())
                .and_then(|name| {
                    let percentages = spec.percentages();
                    let primary_share = percentages.get(spec.primary).copied().unwrap_or(0);
                    Phase::resume(&name, now, primary_share, &spec.settings)
                });
            self.managed.insert(
                key.clone(),
                Managed {
                    signature,
                    failover: Failover::new(
                        spec.settings.clone(),
                        spec.services.clone(),
                        spec.primary,
                        spec.percentages(),
                        resumed,
                    ),
                    status: None,
                    status_written: None,
                    last_transition: None,
                },
            );
        }
        let Some(managed) = self.managed.get_mut(&key) else {
            return;
        };
        let mut readiness = Vec::new();
        for (index, backend) in spec.backends.iter().enumerate() {
            if let Some(counts) = seen.get(backend) {
                managed.failover.record(now, index, *counts);
            } else {
                managed.failover.record(now, index, Counts::default());
            }
            readiness.push(Readiness {
                ready_endpoints: ready_endpoints(views, backend),
                gateway_alive: mirrored_from(views, backend).map(|cluster| {
                    // A mirror whose gateway's liveness cannot be read is
                    // judged on its Endpoints (the mirror marks them not
                    // ready while the gateway is down).
                    alive.get(&cluster).copied().unwrap_or(true)
                }),
            });
        }
        let tick = managed.failover.tick(now, &readiness);
        let (_, namespace, name) = &key;
        self.metrics
            .set_state(namespace, name, managed.failover.phase().gauge());
        for ((service, weight), health) in spec.services.iter().zip(&tick.weights).zip(&tick.health)
        {
            self.metrics.set_backend(
                namespace,
                name,
                service,
                *weight,
                health.success_rate,
                health.rps,
            );
        }
        if !spec.has_weights(&tick.weights)
            && let Err(e) = target.write_weights(&self.client, &tick.weights).await
        {
            tracing::warn!(%namespace, %name, "writing weights: {e}");
        }
        if let Some(transition) = &tick.transition {
            tracing::info!(%namespace, %name, from = transition.from, to = transition.to, weights = ?tick.weights, "{}", transition.reason);
            self.metrics.transition(namespace, name, transition.to);
            managed.last_transition = Some(TransitionStatus {
                from: transition.from.into(),
                to: transition.to.into(),
                at: jiff::Timestamp::now().to_string(),
                reason: transition.reason.clone(),
            });
            // linkerd-failover's reason and action, so users' alerts on
            // them keep working; the phase entered leads the note.
            let event = Event {
                type_: EventType::Normal,
                reason: FAILOVER_EVENT.into(),
                note: Some(format!(
                    "{}: {} (weights {})",
                    transition.to,
                    transition.reason,
                    weights_text(&spec.services, &tick.weights)
                )),
                action: FAILOVER_EVENT.into(),
                secondary: None,
            };
            publish(&self.client, &self.reporter, target, &event).await;
        }
        let status = status_of(&spec, managed, &tick);
        let due = managed
            .status_written
            .is_none_or(|at| at.elapsed() >= STATUS_REFRESH);
        let substantial = managed
            .status
            .as_ref()
            .is_none_or(|old| status.differs_in_substance(old));
        if substantial || (due && managed.status.as_ref() != Some(&status)) {
            match target.write_status(&self.client, &status).await {
                Ok(()) => {
                    managed.status = Some(status);
                    managed.status_written = Some(Instant::now());
                }
                Err(e) => tracing::warn!(%namespace, %name, "writing the status: {e}"),
            }
        }
    }

    async fn report_invalid(&mut self, target: &Target, key: &TargetKey, errors: Vec<String>) {
        if self.invalid.get(key) == Some(&errors) {
            return;
        }
        let (kind, namespace, name) = key;
        tracing::warn!(%kind, %namespace, %name, "not managed: {}", errors.join("; "));
        self.metrics
            .set_state(namespace, name, mesh_api::failover_state::value("Invalid"));
        let event = Event {
            type_: EventType::Warning,
            reason: "InvalidFailoverSettings".into(),
            note: Some(format!("weights left as they are: {}", errors.join("; "))),
            action: "Validate".into(),
            secondary: None,
        };
        publish(&self.client, &self.reporter, target, &event).await;
        let status = SplitStatus {
            state: "Invalid".into(),
            errors: errors.clone(),
            updated: jiff::Timestamp::now().to_string(),
            ..SplitStatus::default()
        };
        if let Err(e) = target.write_status(&self.client, &status).await {
            tracing::warn!(%kind, %namespace, %name, "writing the status: {e}");
        }
        self.invalid.insert(key.clone(), errors);
    }
}

fn status_of(spec: &ManagedSplit, managed: &Managed, tick: &Tick) -> SplitStatus {
    SplitStatus {
        state: managed.failover.phase().name().into(),
        backends: spec
            .services
            .iter()
            .enumerate()
            .map(|(i, service)| {
                BackendStatus::new(service, i == spec.primary, tick.weights[i], &tick.health[i])
            })
            .collect(),
        last_transition: managed.last_transition.clone(),
        note: tick.note.clone(),
        errors: Vec::new(),
        updated: jiff::Timestamp::now().to_string(),
    }
}

fn weights_text(services: &[String], weights: &[u32]) -> String {
    services
        .iter()
        .zip(weights)
        .map(|(s, w)| format!("{s}={w}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_meshed_and_running(pod: &Pod) -> bool {
    let meshed = pod.spec.as_ref().is_some_and(mesh_api::pod::has_proxy);
    meshed && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// The linked cluster a backend is a mirror of, if it is one.
fn mirrored_from(views: &Views, (namespace, name): &BackendKey) -> Option<String> {
    let service = views
        .services
        .get(&reflector::ObjectRef::new(name).within(namespace))?;
    service.labels().get(MIRROR_CLUSTER_NAME).cloned()
}

/// Ready addresses of a backend's Endpoints; `None` when the Service does
/// not exist.
fn ready_endpoints(views: &Views, (namespace, name): &BackendKey) -> Option<usize> {
    views
        .services
        .get(&reflector::ObjectRef::new(name).within(namespace))?;
    let endpoints = views
        .endpoints
        .get(&reflector::ObjectRef::new(name).within(namespace));
    Some(
        endpoints
            .iter()
            .flat_map(|e| e.subsets.iter().flatten())
            .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
            .sum(),
    )
}

/// One proxy's counters of a round, before deltas.
struct Report {
    /// `namespace/pod` (metrics pages) or the scraped instance
    /// (Prometheus): whose deltas these are.
    proxy: String,
    /// Its pod (`namespace/name`), when known.
    pod: Option<String>,
    /// The start of its mesh identity, when its pod is known.
    identity: Option<String>,
    /// What it says, as a client, each backend answered.
    claims: ClientCounts,
    /// What it served, as a backend, per client identity.
    served: ServedCounts,
}

/// Each proxy of `namespaces` as a Prometheus server has it, its pod
/// found by IP in `pods` ([`pods_by_ip`]); the namespaces it could not
/// answer for are left out, with a warning.
async fn prometheus_reports(
    prometheus: &Prometheus,
    pods: &BTreeMap<String, (String, Option<String>)>,
    namespaces: &BTreeSet<String>,
    ignored: &mut Ignored,
) -> Vec<Report> {
    let mut reports = Vec::new();
    for namespace in namespaces {
        let read = async {
            let claims = prometheus.client_counts(namespace, ignored).await?;
            let served = prometheus.served_counts(namespace, ignored).await?;
            let scraped = prometheus.scraped(namespace).await?;
            Ok::<_, Error>((claims, served, scraped))
        };
        let (mut claims, mut served, scraped) = match read.await {
            Ok(read) => read,
            Err(e) => {
                tracing::warn!("reading Prometheus: {e}");
                continue;
            }
        };
        let instances: BTreeSet<String> = scraped
            .into_iter()
            .chain(claims.keys().cloned())
            .chain(served.keys().cloned())
            .collect();
        for instance in instances {
            let pod = instance
                .rsplit_once(':')
                .and_then(|(host, _)| pods.get(host.trim_matches(['[', ']'])));
            reports.push(Report {
                claims: claims.remove(&instance).unwrap_or_default(),
                served: served.remove(&instance).unwrap_or_default(),
                proxy: instance,
                pod: pod.map(|(name, _)| name.clone()),
                identity: pod.and_then(|(_, identity)| identity.clone()),
            });
        }
    }
    reports
}

/// The start of a pod's mesh identity (its ServiceAccount's).
fn pod_identity(pod: &Pod) -> Option<String> {
    let account = pod
        .spec
        .as_ref()?
        .service_account_name
        .as_deref()
        .filter(|sa| !sa.is_empty())?;
    Some(corroborate::identity_prefix(account, &pod.namespace()?))
}

/// The pods of `namespaces` by IP: `namespace/name` and the start of its
/// mesh identity.
fn pods_by_ip(
    views: &Views,
    namespaces: &BTreeSet<String>,
) -> BTreeMap<String, (String, Option<String>)> {
    views
        .pods
        .state()
        .iter()
        .filter_map(|pod| {
            let namespace = pod.namespace().filter(|ns| namespaces.contains(ns))?;
            let ip = pod.status.as_ref()?.pod_ip.clone()?;
            Some((
                ip,
                (format!("{namespace}/{}", pod.name_any()), pod_identity(pod)),
            ))
        })
        .collect()
}

/// The pods (`namespace/name`) behind a backend's Endpoints, ready or
/// not: each address's `targetRef` (as the endpoints controller writes
/// it), else the pod at its IP.
fn endpoint_pods(
    views: &Views,
    (namespace, name): &BackendKey,
    pod_at: &BTreeMap<String, (String, Option<String>)>,
) -> Vec<String> {
    views
        .endpoints
        .get(&reflector::ObjectRef::new(name).within(namespace))
        .iter()
        .flat_map(|e| e.subsets.iter().flatten())
        .flat_map(|s| {
            s.addresses
                .iter()
                .chain(s.not_ready_addresses.iter())
                .flatten()
        })
        .filter_map(|address| match &address.target_ref {
            Some(target) if target.kind.as_deref().is_none_or(|k| k == "Pod") => {
                let pod_namespace = target.namespace.as_deref().unwrap_or(namespace);
                Some(format!("{pod_namespace}/{}", target.name.as_deref()?))
            }
            Some(_) => None,
            None => pod_at.get(&address.ip).map(|(pod, _)| pod.clone()),
        })
        .collect()
}

/// Publishes `event` about `target` as an Event of its own: kube's
/// `Recorder` folds Events of one reason and action on an object into a
/// series that keeps the first note, and each of ours says something new
/// (the phase entered, the weights).
async fn publish(client: &kube::Client, reporter: &Reporter, target: &Target, event: &Event) {
    let recorder = Recorder::new(client.clone(), reporter.clone());
    if let Err(e) = recorder.publish(event, &target.object_ref()).await {
        let (kind, namespace, name) = target.key();
        tracing::warn!("publishing an Event on {kind} {namespace}/{name}: {e}");
    }
}
