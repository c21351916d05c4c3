//! The service mirror of one Link, as a loop. Every probe period it reads
//! the Link (a malformed one is reported on its status and changes
//! nothing), hands the gateway to the prober, and (re)starts the watches:
//! this cluster's mirrors, and the linked cluster's exports through the
//! credentials Secret (restarted when the Secret or the selector changes,
//! so a rotated kubeconfig needs no restart). A mirroring pass runs after
//! every refresh and whenever a watch or the prober reports a change, so a
//! new export is mirrored within moments. While the linked API cannot be
//! reached the watches keep their last view: mirrors stay, and the pass
//! after the reconnect deletes only what really went away.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use mesh_api::crds::link::Link;
use mesh_core::admin::Readiness;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::desired::{Gateway, Key};
use crate::events::LinkEvents;
use crate::link::LinkSettings;
use crate::metrics::MirrorMetrics;
use crate::probe::{GatewayHealth, spawn_prober};
use crate::status::{Rejected, Report, StatusWriter};
use crate::sync::{LocalViews, RemoteViews, pass};
use mesh_api::labels::GATEWAY_SERVICE_ANNOTATION;

pub use crate::metrics::metrics;

/// The data key of the credentials Secret.
pub const KUBECONFIG_KEY: &str = "kubeconfig";

/// How long to wait before reading a Link again after a failure.
const RETRY: Duration = Duration::from_secs(3);

/// How long a burst of changes is gathered into one pass.
const GATHER: Duration = Duration::from_millis(20);

/// The linked cluster's watches and what they were started from.
struct Remote {
    secret_version: String,
    source: RemoteSource,
    views: RemoteViews,
}

/// What the linked cluster's watches are started from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RemoteSource {
    secret: String,
    selector: String,
    linkerd_namespace: String,
    gateway_service: Option<(String, String)>,
}

/// What the loop keeps between rounds.
struct Mirror {
    local: kube::Client,
    namespace: String,
    name: String,
    changed: Arc<Notify>,
    settings: watch::Sender<Option<LinkSettings>>,
    health: watch::Receiver<Option<GatewayHealth>>,
    mirrors: Option<(String, LocalViews)>,
    remote: Option<Remote>,
    report: Report,
    /// The linked API's reachability as last noted in `report`.
    noted_remote: Option<Result<(), String>>,
    metrics: MirrorMetrics,
    status: StatusWriter,
    /// Set once the Link was read and this cluster's mirrors listed.
    readiness: Readiness,
    /// How many remote Services this Link mirrors at most.
    max_services: usize,
    /// How many were past it at the last pass (warned when it changes).
    over_cap: usize,
    events: LinkEvents,
}

/// Runs the mirror of Link `name` (in `namespace` of `local`) until `stop`;
/// `readiness` turns true once the Link has been read and this cluster's
/// mirrors listed (a linked cluster out of reach does not hold it back:
/// the mirror keeps what it has and reports it on the Link).
pub async fn run(
    local: kube::Client,
    namespace: String,
    name: String,
    max_services: usize,
    metrics: MirrorMetrics,
    readiness: Readiness,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let changed = Arc::new(Notify::new());
    let (settings, settings_rx) = watch::channel(None);
    let health = spawn_prober(settings_rx, metrics.clone(), changed.clone());
    let mut mirror = Mirror {
        events: LinkEvents::new(&local),
        local,
        namespace,
        name,
        changed: changed.clone(),
        settings,
        health,
        mirrors: None,
        remote: None,
        report: Report::default(),
        noted_remote: None,
        metrics,
        status: StatusWriter::default(),
        readiness,
        max_services,
        over_cap: 0,
    };
    let mut next_refresh = Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next_refresh) => {
                next_refresh = Instant::now() + mirror.refresh().await;
            }
            () = changed.notified() => tokio::time::sleep(GATHER).await,
            () = &mut stop => return,
        }
        mirror.pass().await;
    }
}

impl Mirror {
    /// Reads the Link and the credentials and (re)starts what changed;
    /// returns when to do it again.
    async fn refresh(&mut self) -> Duration {
        let links = Api::<Link>::namespaced(self.local.clone(), &self.namespace);
        let link = match links.get(&self.name).await {
            Ok(link) => link,
            Err(e) => {
                tracing::warn!(link = %self.name, "reading the Link: {e}");
                return RETRY;
            }
        };
        let settings = match LinkSettings::from_link(&link) {
            Ok(settings) => settings,
            Err(e) => {
                tracing::warn!("{e}; the mirrors stay as they are");
                self.report.valid = Some(Err(e.to_string()));
                self.write_status(&links).await;
                return RETRY;
            }
        };
        self.report.valid = Some(Ok(()));
        let mut settings = settings;
        if self
            .mirrors
            .as_ref()
            .is_none_or(|(c, _)| *c != settings.cluster)
        {
            let views = LocalViews::start(&self.local, &settings.cluster, &self.changed);
            self.mirrors = Some((settings.cluster.clone(), views));
        }
        let watched = RemoteSource {
            secret: settings.credentials_secret.clone(),
            selector: settings.selector.clone(),
            linkerd_namespace: settings.linkerd_namespace.clone(),
            gateway_service: link
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(GATEWAY_SERVICE_ANNOTATION))
                .and_then(|v| v.split_once('/'))
                .map(|(ns, name)| (ns.to_owned(), name.to_owned())),
        };
        if let Err(e) = self.watch_remote(watched).await {
            tracing::warn!(link = %self.name, "the linked cluster's credentials: {e:#}");
            self.report.remote = Some(Err(format!("{e:#}")));
        }
        if let Some(remote) = &self.remote {
            if let Some(anchors) = remote.views.anchors() {
                self.report.remote_anchors = Some(anchors);
            }
            if let Some(advertised) = remote.views.advertised_gateway()
                && advertised != settings.gateway_hosts
            {
                let previous = self
                    .settings
                    .borrow()
                    .as_ref()
                    .map(|s| s.gateway_hosts.clone());
                if previous.as_ref() != Some(&advertised) {
                    tracing::info!(
                        link = %self.name,
                        link_says = %settings.gateway_hosts.join(","),
                        now = %advertised.join(","),
                        "following the linked cluster's gateway Service to its current address"
                    );
                }
                settings.gateway_hosts = advertised;
            }
        }
        let period = settings.probe_period;
        self.settings.send_if_modified(|current| {
            let modified = current.as_ref() != Some(&settings);
            *current = Some(settings);
            modified
        });
        period
    }

    /// (Re)starts the linked cluster's watches when the credentials Secret
    /// or the selector changed.
    async fn watch_remote(&mut self, watched: RemoteSource) -> anyhow::Result<()> {
        let secret_name = &watched.secret;
        let namespace = &self.namespace;
        let secret = Api::<Secret>::namespaced(self.local.clone(), namespace)
            .get(secret_name)
            .await
            .map_err(|e| anyhow::anyhow!("Secret {namespace}/{secret_name}: {e}"))?;
        let version = secret.metadata.resource_version.clone().unwrap_or_default();
        let current = self
            .remote
            .as_ref()
            .is_some_and(|r| r.secret_version == version && r.source == watched);
        if current {
            return Ok(());
        }
        let client = client_from_secret(&secret)
            .await
            .map_err(|e| anyhow::anyhow!("Secret {namespace}/{secret_name}: {e}"))?;
        tracing::info!(link = %self.name, secret = %secret_name, selector = %watched.selector, "watching the linked cluster");
        self.remote = Some(Remote {
            views: RemoteViews::start(
                &client,
                &watched.selector,
                &watched.linkerd_namespace,
                watched.gateway_service.as_ref(),
                &self.changed,
            ),
            secret_version: version,
            source: watched,
        });
        Ok(())
    }

    /// One mirroring pass, and the Link's status after it.
    async fn pass(&mut self) {
        let links = Api::<Link>::namespaced(self.local.clone(), &self.namespace);
        if self.mirrors.as_ref().is_some_and(|(_, m)| m.is_listed()) {
            self.readiness.set_ready();
        }
        let settings = self.settings.borrow().clone();
        let health = self.health.borrow().clone();
        let (Some(settings), Some(health), Some((_, mirrors)), Some(remote)) =
            (settings, health, &self.mirrors, &self.remote)
        else {
            self.write_status(&links).await;
            return;
        };
        self.report.gateway = Some((health.alive, gateway_message(&settings, &health)));
        let gateway = Gateway {
            cluster: settings.cluster.clone(),
            cluster_domain: settings.cluster_domain.clone(),
            addresses: health.addresses,
            port: settings.gateway_port,
            identity: settings.gateway_identity.clone(),
            alive: health.alive,
            transport: settings.transport.clone(),
        };
        match pass(
            &remote.views,
            mirrors,
            &self.local,
            &gateway,
            self.max_services,
        )
        .await
        {
            Ok(outcome) => {
                self.report.remote = Some(match remote.views.error() {
                    None => Ok(()),
                    Some(e) => Err(format!("watching the linked cluster: {e}; mirrors kept")),
                });
                for (key, invalid) in &outcome.invalid {
                    tracing::warn!(service = %format!("{}/{}", key.0, key.1), "not mirrored: {invalid}");
                }
                for (key, error) in &outcome.failed {
                    tracing::warn!(mirror = %format!("{}/{}", key.0, key.1), "not written: {error}");
                }
                let plan = &outcome.plan;
                if !(plan.create.is_empty() && plan.update.is_empty() && plan.delete.is_empty()) {
                    tracing::info!(
                        created = plan.create.len(),
                        updated = plan.update.len(),
                        deleted = plan.delete.len(),
                        link = %self.name,
                        "mirrors changed"
                    );
                }
                self.report.mirrored = Some(outcome.mirrors);
                let rejected = |(namespace, name): &Key, reason: String| Rejected {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    reason,
                };
                let cap = self.max_services;
                self.report.rejected = outcome
                    .invalid
                    .iter()
                    .map(|(key, invalid)| rejected(key, invalid.to_string()))
                    .chain(outcome.over_cap.iter().map(|key| {
                        rejected(
                            key,
                            format!("over this Link's cap of {cap} mirrored Services"),
                        )
                    }))
                    .collect();
                let over = outcome.over_cap.len();
                if over != self.over_cap {
                    tracing::warn!(link = %self.name, cap, over, "exported Services past the cap are not mirrored");
                    self.over_cap = over;
                }
                let conflicts: Vec<Rejected> = outcome
                    .conflicts
                    .iter()
                    .map(|(key, message)| rejected(key, message.clone()))
                    .collect();
                for conflict in &conflicts {
                    if !self.report.conflicts.contains(conflict) {
                        self.events.conflict(&links, &self.name, conflict).await;
                    }
                }
                self.report.conflicts = conflicts;
            }
            // Not listed yet (or never, while the linked API is down): the
            // mirrors stay as they are.
            Err(not_listed) => {
                tracing::debug!(link = %self.name, "no pass: {not_listed}");
                if not_listed.error.is_some() {
                    self.report.remote = Some(Err(not_listed.to_string()));
                }
            }
        }
        self.write_status(&links).await;
    }

    /// Writes the Link's status, first timing any change in how the linked
    /// API is reached (and counting it in the metrics).
    async fn write_status(&mut self, links: &Api<Link>) {
        if self.report.remote != self.noted_remote {
            let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            );
            let newly_failed = self.report.note_remote(self.noted_remote.as_ref(), now);
            if let Some((cluster, _)) = &self.mirrors {
                let reachable = matches!(self.report.remote, Some(Ok(())));
                self.metrics.record_remote(cluster, reachable, newly_failed);
            }
            self.noted_remote = self.report.remote.clone();
        }
        self.status
            .write(links, &self.name, self.report.clone())
            .await;
    }
}

fn gateway_message(settings: &LinkSettings, health: &GatewayHealth) -> String {
    let probed = match health.addresses.first() {
        Some(ip) => format!("{}", std::net::SocketAddr::new(*ip, settings.probe_port)),
        None => format!("{} (not resolved)", settings.gateway_hosts.join(",")),
    };
    if health.alive {
        format!("{probed}{} answers", settings.probe_path)
    } else {
        format!(
            "{probed}{} failed {} probes in a row",
            settings.probe_path, settings.failure_threshold
        )
    }
}

/// Why a credentials Secret gives no client for the linked cluster.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The Secret has no `kubeconfig` key.
    #[error("no {KUBECONFIG_KEY} key")]
    Missing,
    /// The kubeconfig is not UTF-8.
    #[error("{KUBECONFIG_KEY} is not text")]
    NotText,
    /// The kubeconfig is unusable.
    #[error("{KUBECONFIG_KEY}: {0}")]
    Kubeconfig(String),
}

/// A client for the linked cluster from the kubeconfig in a credentials
/// Secret.
pub async fn client_from_secret(secret: &Secret) -> Result<kube::Client, CredentialsError> {
    let kubeconfig = secret
        .data
        .as_ref()
        .and_then(|d| d.get(KUBECONFIG_KEY))
        .ok_or(CredentialsError::Missing)?;
    let text = String::from_utf8(kubeconfig.0.clone()).map_err(|_| CredentialsError::NotText)?;
    let unusable = |e: &dyn std::fmt::Display| CredentialsError::Kubeconfig(e.to_string());
    let config = kube::config::Kubeconfig::from_yaml(&text).map_err(|e| unusable(&e))?;
    let config =
        kube::Config::from_custom_kubeconfig(config, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| unusable(&e))?;
    kube::Client::try_from(config).map_err(|e| unusable(&e))
}
