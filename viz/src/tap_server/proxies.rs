//! Tapping the pods' proxies: one `tap.Tap/Observe` stream per pod, over
//! mutual TLS as the tap component's identity, checking that each proxy is
//! the pod's own identity. Each pod is asked for a second's share of the
//! request's rate at a time (its limit), again every second, so the rate a
//! user asked for holds across all the pods however busy they are.

use std::sync::Arc;
use std::time::Duration;

use linkerd2_proxy_api::tap::observe_request::{Match as ProxyMatch, r#match as pm};
use linkerd2_proxy_api::tap::tap_client::TapClient;
use linkerd2_proxy_api::tap::{ObserveRequest, TapEvent};
use mesh_core::tls::Credentials;
use tokio::sync::mpsc;

use super::targets::Target;
use crate::tap_api::{HttpMatchKind, Match, MatchKind, ResourceSelection};

/// How often each pod's tap is renewed with a new limit.
const INTERVAL: Duration = Duration::from_secs(1);

/// How deep a request's match may nest.
const MAX_DEPTH: usize = 16;

/// The default rate, requests a second in all (Linkerd's).
pub const DEFAULT_MAX_RPS: f32 = 100.0;

/// Where the proxies are and who they are.
#[derive(Debug, Clone)]
pub struct Proxies {
    /// The tap component's credentials.
    pub credentials: Arc<Credentials>,
    /// The control plane's namespace (in identities).
    pub controller_namespace: String,
    /// The trust domain (in identities).
    pub trust_domain: String,
    /// The proxies' tap port.
    pub port: u16,
}

impl Proxies {
    /// The identity `target`'s proxy must present.
    pub fn identity(&self, target: &Target) -> String {
        format!(
            "{}.{}.serviceaccount.identity.{}.{}",
            target.service_account, target.namespace, self.controller_namespace, self.trust_domain
        )
    }

    /// Taps `targets` with `observe`'s match at `max_rps` in all, sending
    /// their events to `events` until it closes.
    pub fn tap(
        &self,
        targets: &[Target],
        matcher: Option<ProxyMatch>,
        max_rps: f32,
        peers: Arc<Peers>,
        events: mpsc::Sender<TapEvent>,
    ) {
        let per_pod = per_pod_limit(max_rps, targets.len());
        for target in targets {
            let identity = self.identity(target);
            let addr = format!("{}:{}", target.ip, self.port);
            let channel =
                match mesh_core::control::channel(&addr, Some((&identity, &self.credentials))) {
                    Ok(channel) => channel,
                    Err(e) => {
                        tracing::warn!(pod = %target.name, "tap: {e}");
                        continue;
                    }
                };
            let request = ObserveRequest {
                limit: per_pod,
                r#match: matcher.clone(),
                extract: None,
            };
            let events = events.clone();
            let peers = peers.clone();
            let pod = format!("{}/{}", target.namespace, target.name);
            let own = [
                ("pod".to_owned(), target.name.clone()),
                ("namespace".to_owned(), target.namespace.clone()),
            ];
            tokio::spawn(async move {
                let mut client = TapClient::new(channel);
                while !events.is_closed() {
                    let round = tokio::time::Instant::now();
                    match client.observe(request.clone()).await {
                        Ok(stream) => {
                            let mut stream = stream.into_inner();
                            loop {
                                tokio::select! {
                                    message = stream.message() => match message {
                                        Ok(Some(event)) => {
                                            let event = with_pods(event, &own, &peers);
                                            if events.send(event).await.is_err() {
                                                return;
                                            }
                                        }
                                        Ok(None) => break,
                                        Err(e) => {
                                            tracing::info!(%pod, "tap stream: {e}");
                                            break;
                                        }
                                    },
                                    () = events.closed() => return,
                                }
                            }
                        }
                        Err(e) => tracing::info!(%pod, "tap: {e}"),
                    }
                    tokio::select! {
                        () = tokio::time::sleep_until(round + INTERVAL) => {}
                        () = events.closed() => return,
                    }
                }
            });
        }
    }
}

/// Pods by address: `(namespace, name)`.
pub type PodIndex = std::collections::HashMap<std::net::IpAddr, (String, String)>;

/// How long an index of the pods is used before an address missing from
/// it makes it be rebuilt.
const PEERS_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// The cluster's pods by address, to name the other side of a tap's
/// events: an index of the watched pods ([`pod_index`]), rebuilt when an
/// address is not in it (a pod that started after the tap did) at most
/// once every [`PEERS_REFRESH`], so that addresses outside the cluster
/// cannot make every event rebuild it.
#[derive(Debug)]
pub struct Peers {
    store: Option<kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Pod>>,
    index: std::sync::Mutex<(tokio::time::Instant, Arc<PodIndex>)>,
}

impl Peers {
    /// The pods of `store` (none without one).
    pub fn new(
        store: Option<kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Pod>>,
    ) -> Self {
        let index = store.as_ref().map(pod_index).unwrap_or_default();
        Self {
            store,
            index: std::sync::Mutex::new((tokio::time::Instant::now(), Arc::new(index))),
        }
    }

    /// The pod at `ip`: `(namespace, name)`.
    pub fn name(&self, ip: std::net::IpAddr) -> Option<(String, String)> {
        let mut index = self
            .index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(found) = index.1.get(&ip) {
            return Some(found.clone());
        }
        let store = self.store.as_ref()?;
        if index.0.elapsed() < PEERS_REFRESH {
            return None;
        }
        *index = (tokio::time::Instant::now(), Arc::new(pod_index(store)));
        index.1.get(&ip).cloned()
    }
}

/// The pods of `store` by address (pods on the host's network share the
/// node's and are left out).
fn pod_index(store: &kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Pod>) -> PodIndex {
    store
        .state()
        .iter()
        .filter(|pod| {
            !pod.spec
                .as_ref()
                .and_then(|s| s.host_network)
                .unwrap_or(false)
        })
        .filter_map(|pod| {
            let ip = pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
            Some((
                ip,
                (
                    pod.metadata.namespace.clone().unwrap_or_default(),
                    pod.metadata.name.clone().unwrap_or_default(),
                ),
            ))
        })
        .collect()
}

/// `event` with both sides named: the tapped pod on its side (the server
/// of an inbound request, the client of an outbound one), which the proxy
/// knows only by address, and the other side by its address in `peers`
/// where the proxy did not name it.
fn with_pods(mut event: TapEvent, own: &[(String, String); 2], peers: &Peers) -> TapEvent {
    use linkerd2_proxy_api::tap::tap_event::{EndpointMeta, ProxyDirection};
    let inbound = event.proxy_direction == ProxyDirection::Inbound as i32;
    let other_addr = if inbound {
        event.source
    } else {
        event.destination
    };
    let other = other_addr
        .and_then(|a| std::net::SocketAddr::try_from(a).ok())
        .and_then(|a| peers.name(a.ip()));
    let (mine, theirs) = if inbound {
        (&mut event.destination_meta, &mut event.source_meta)
    } else {
        (&mut event.source_meta, &mut event.destination_meta)
    };
    let labels = &mut mine.get_or_insert_with(EndpointMeta::default).labels;
    for (k, v) in own {
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if let Some((namespace, name)) = other {
        let labels = &mut theirs.get_or_insert_with(EndpointMeta::default).labels;
        labels.entry("pod".into()).or_insert(name);
        labels.entry("namespace".into()).or_insert(namespace);
    }
    event
}

/// Each pod's share of `max_rps` for one interval (at least one request).
pub fn per_pod_limit(max_rps: f32, pods: usize) -> u32 {
    let rps = if max_rps.is_finite() && max_rps > 0.0 {
        max_rps
    } else {
        DEFAULT_MAX_RPS
    };
    let share = rps * INTERVAL.as_secs_f32() / pods.max(1) as f32;
    (share as u32).clamp(1, 10_000)
}

/// Why a request's match cannot be given to proxies.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("match: {0}")]
pub struct MatchError(String);

/// The proxies' match for a tap request's match.
pub fn proxy_match(m: &Match) -> Result<ProxyMatch, MatchError> {
    convert(m, 0)
}

fn convert(m: &Match, depth: usize) -> Result<ProxyMatch, MatchError> {
    if depth > MAX_DEPTH {
        return Err(MatchError(format!("nested deeper than {MAX_DEPTH}")));
    }
    let seq = |matches: &[Match]| {
        matches
            .iter()
            .map(|m| convert(m, depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(|matches| pm::Seq { matches })
    };
    let kind = match m.r#match.as_ref() {
        None => return Err(MatchError("a condition without a kind".into())),
        Some(MatchKind::All(s)) => pm::Match::All(seq(&s.matches)?),
        Some(MatchKind::Any(s)) => pm::Match::Any(seq(&s.matches)?),
        Some(MatchKind::Not(inner)) => pm::Match::Not(Box::new(convert(inner, depth + 1)?)),
        Some(MatchKind::Destinations(selection)) => pm::Match::All(pm::Seq {
            matches: destination_labels(selection)
                .into_iter()
                .map(|(key, value)| ProxyMatch {
                    r#match: Some(pm::Match::DestinationLabel(pm::Label { key, value })),
                })
                .collect(),
        }),
        Some(MatchKind::Http(http)) => {
            use pm::http::string_match::Match as S;
            let kind = match http.r#match.as_ref() {
                None => return Err(MatchError("an HTTP condition without a kind".into())),
                Some(HttpMatchKind::Method(method)) => {
                    let method =
                        http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                            .map_err(|_| MatchError(format!("{method:?} is not an HTTP method")))?;
                    pm::http::Match::Method(method.into())
                }
                Some(HttpMatchKind::Scheme(scheme)) => {
                    pm::http::Match::Scheme(scheme.to_ascii_lowercase().as_str().into())
                }
                Some(HttpMatchKind::Authority(authority)) => {
                    pm::http::Match::Authority(pm::http::StringMatch {
                        r#match: Some(S::Exact(authority.clone())),
                    })
                }
                Some(HttpMatchKind::Path(path)) => pm::http::Match::Path(pm::http::StringMatch {
                    r#match: Some(S::Prefix(path.clone())),
                }),
            };
            pm::Match::Http(pm::Http {
                r#match: Some(kind),
            })
        }
    };
    Ok(ProxyMatch {
        r#match: Some(kind),
    })
}

/// The destination labels that select a resource (Linkerd's: its type as
/// the key, and its namespace).
fn destination_labels(selection: &ResourceSelection) -> Vec<(String, String)> {
    let Some(resource) = &selection.resource else {
        return Vec::new();
    };
    let mut labels = Vec::new();
    if !resource.name.is_empty() {
        labels.push((resource.r#type.clone(), resource.name.clone()));
    }
    if resource.r#type != "namespace" && !resource.namespace.is_empty() {
        labels.push(("namespace".to_owned(), resource.namespace.clone()));
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tap_api::{HttpMatch, Resource, Seq};

    #[test]
    fn both_sides_of_an_event_are_named() {
        use linkerd2_proxy_api::tap::tap_event::ProxyDirection;
        let own = [
            ("pod".to_owned(), "web-1".to_owned()),
            ("namespace".to_owned(), "shop".to_owned()),
        ];
        let (store, mut writer) = kube::runtime::reflector::store();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(pod_at(
            "client-7", "10.0.0.1",
        )));
        let peers = Peers::new(Some(store));
        let event = TapEvent {
            source: Some(
                "10.0.0.1:40000"
                    .parse::<std::net::SocketAddr>()
                    .expect("addr")
                    .into(),
            ),
            destination: Some(
                "10.0.0.2:8080"
                    .parse::<std::net::SocketAddr>()
                    .expect("addr")
                    .into(),
            ),
            proxy_direction: ProxyDirection::Inbound as i32,
            ..TapEvent::default()
        };
        let named = with_pods(event, &own, &peers);
        let label = |meta: &Option<linkerd2_proxy_api::tap::tap_event::EndpointMeta>, key: &str| {
            meta.as_ref().and_then(|m| m.labels.get(key).cloned())
        };
        assert_eq!(
            label(&named.destination_meta, "pod").as_deref(),
            Some("web-1")
        );
        assert_eq!(
            label(&named.source_meta, "pod").as_deref(),
            Some("client-7")
        );
        assert_eq!(
            label(&named.source_meta, "namespace").as_deref(),
            Some("shop")
        );
    }

    /// A running pod `name` at `ip`.
    fn pod_at(name: &str, ip: &str) -> k8s_openapi::api::core::v1::Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "shop"},
            "status": {"podIP": ip},
        }))
        .expect("pod")
    }

    /// A pod that starts after the tap did is named once the index is
    /// rebuilt; an address of no pod does not rebuild it more than once a
    /// second.
    #[tokio::test(start_paused = true)]
    async fn a_pod_started_after_the_tap_is_named_too() {
        let (store, mut writer) = kube::runtime::reflector::store();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(pod_at(
            "web-1", "10.0.0.2",
        )));
        let peers = Peers::new(Some(store));
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(pod_at(
            "client-9", "10.0.0.9",
        )));
        let late: std::net::IpAddr = "10.0.0.9".parse().expect("ip");
        assert_eq!(peers.name(late), None, "the index is fresh: not rebuilt");
        tokio::time::advance(PEERS_REFRESH).await;
        assert_eq!(
            peers.name(late),
            Some(("shop".to_owned(), "client-9".to_owned()))
        );
        let outside: std::net::IpAddr = "192.0.2.1".parse().expect("ip");
        let built = peers.index.lock().expect("index").0;
        assert_eq!(peers.name(outside), None);
        assert_eq!(
            peers.index.lock().expect("index").0,
            built,
            "an unknown address right after a rebuild does not rebuild again"
        );
        assert_eq!(
            peers.name("10.0.0.2".parse().expect("ip")),
            Some(("shop".to_owned(), "web-1".to_owned()))
        );
    }

    #[test]
    fn the_rate_is_shared_among_the_pods() {
        assert_eq!(per_pod_limit(100.0, 4), 25);
        assert_eq!(per_pod_limit(1.0, 10), 1, "every pod gets at least one");
        assert_eq!(per_pod_limit(0.0, 1), 100, "unset: Linkerd's default");
        assert_eq!(per_pod_limit(f32::NAN, 1), 100);
        assert_eq!(per_pod_limit(f32::INFINITY, 1), 100);
        assert_eq!(per_pod_limit(1e12, 1), 10_000, "bounded");
    }

    #[test]
    fn to_and_path_become_the_proxies_labels_and_prefix() {
        let m = Match {
            r#match: Some(MatchKind::All(Seq {
                matches: vec![
                    Match {
                        r#match: Some(MatchKind::Destinations(ResourceSelection {
                            resource: Some(Resource {
                                namespace: "shop".into(),
                                r#type: "deployment".into(),
                                name: "api".into(),
                            }),
                            label_selector: String::new(),
                        })),
                    },
                    Match {
                        r#match: Some(MatchKind::Http(HttpMatch {
                            r#match: Some(HttpMatchKind::Method("get".into())),
                        })),
                    },
                ],
            })),
        };
        let proxy = proxy_match(&m).expect("valid");
        let Some(pm::Match::All(all)) = proxy.r#match else {
            panic!("all: {proxy:?}")
        };
        let Some(pm::Match::All(labels)) = &all.matches[0].r#match else {
            panic!("labels")
        };
        assert_eq!(labels.matches.len(), 2);
        let bad = Match {
            r#match: Some(MatchKind::Http(HttpMatch {
                r#match: Some(HttpMatchKind::Method("GE T".into())),
            })),
        };
        assert_eq!(
            proxy_match(&bad),
            Err(MatchError("\"GE T\" is not an HTTP method".into()))
        );
    }
}
