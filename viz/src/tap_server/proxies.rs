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
                                            if events.send(with_pod(event, &own)).await.is_err() {
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

/// `event` with the tapped pod named on its side (the server of an inbound
/// request, the client of an outbound one), as the proxy knows itself only
/// by address.
fn with_pod(mut event: TapEvent, own: &[(String, String); 2]) -> TapEvent {
    use linkerd2_proxy_api::tap::tap_event::{EndpointMeta, ProxyDirection};
    let side = if event.proxy_direction == ProxyDirection::Inbound as i32 {
        &mut event.destination_meta
    } else {
        &mut event.source_meta
    };
    let labels = &mut side.get_or_insert_with(EndpointMeta::default).labels;
    for (k, v) in own {
        labels.entry(k.clone()).or_insert_with(|| v.clone());
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
