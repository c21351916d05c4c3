//! Feeding the index from the Kubernetes API: one watcher per kind
//! (Services, EndpointSlices, Pods, mirrored Endpoints, ServiceProfiles,
//! TrafficSplits, HTTPRoutes). A relist removes what disappeared meanwhile;
//! an invalid object is logged and reported as a Kubernetes Event on it, and
//! the index keeps what it had.

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource, ResourceExt};
use mesh_api::crds::http_route::HttpRoute;
use mesh_api::crds::service_profile::ServiceProfile;
use mesh_api::crds::traffic_split::TrafficSplit;
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;

use mesh_core::admin::Readiness;

use crate::index::Index;

type Apply<K> = fn(&mut Index, &K) -> Result<(), String>;
type Delete = fn(&mut Index, &str, &str);

/// How many kinds are watched.
const WATCHED_KINDS: usize = 7;

/// Starts every watcher; they run until the set is dropped or aborted. The
/// readiness turns true once every kind has been listed.
pub fn spawn_watchers(client: kube::Client, index: Arc<Mutex<Index>>) -> (JoinSet<()>, Readiness) {
    let synced = Readiness::waiting_for(WATCHED_KINDS);
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "linkerd-destination".into(),
            instance: None,
        },
    );
    let mut set = JoinSet::new();
    let all = |c: &kube::Client| c.clone();
    set.spawn(watch::<Service>(
        Api::all(all(&client)),
        watcher::Config::default(),
        index.clone(),
        recorder.clone(),
        synced.clone(),
        |i, s| {
            i.apply_service(s);
            Ok(())
        },
        Index::delete_service,
    ));
    set.spawn(watch::<EndpointSlice>(
        Api::all(all(&client)),
        watcher::Config::default(),
        index.clone(),
        recorder.clone(),
        synced.clone(),
        |i, s| {
            i.apply_slice(s);
            Ok(())
        },
        Index::delete_slice,
    ));
    set.spawn(watch::<Pod>(
        Api::all(all(&client)),
        watcher::Config::default(),
        index.clone(),
        recorder.clone(),
        synced.clone(),
        |i, p| {
            i.apply_pod(p);
            Ok(())
        },
        Index::delete_pod,
    ));
    let mirrored = watcher::Config::default().labels(&format!(
        "{}=true",
        mesh_api::labels::MIRROR_MIRRORED_SERVICE
    ));
    set.spawn(watch::<Endpoints>(
        Api::all(all(&client)),
        mirrored,
        index.clone(),
        recorder.clone(),
        synced.clone(),
        |i, e| {
            i.apply_mirror_endpoints(e);
            Ok(())
        },
        Index::delete_mirror_endpoints,
    ));
    set.spawn(watch::<ServiceProfile>(
        Api::all(all(&client)),
        watcher::Config::default(),
        index.clone(),
        recorder.clone(),
        synced.clone(),
        Index::apply_service_profile,
        Index::delete_service_profile,
    ));
    set.spawn(watch::<TrafficSplit>(
        Api::all(all(&client)),
        watcher::Config::default(),
        index.clone(),
        recorder.clone(),
        synced.clone(),
        Index::apply_traffic_split,
        Index::delete_traffic_split,
    ));
    set.spawn(watch::<HttpRoute>(
        Api::all(client),
        watcher::Config::default(),
        index,
        recorder,
        synced.clone(),
        Index::apply_http_route,
        Index::delete_http_route,
    ));
    debug_assert_eq!(set.len(), WATCHED_KINDS);
    (set, synced)
}

async fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    index: Arc<Mutex<Index>>,
    recorder: Recorder,
    synced: Readiness,
    apply: Apply<K>,
    delete: Delete,
) where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    let kind = K::kind(&());
    let mut known: HashSet<(String, String)> = HashSet::new();
    let mut relisted: HashSet<(String, String)> = HashSet::new();
    let mut listed_once = false;
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(%kind, "watch failed, retrying: {e}");
                continue;
            }
        };
        let mut refused = Vec::new();
        {
            let Ok(mut index) = index.lock() else {
                tracing::error!("the destination index is poisoned; stopping the {kind} watch");
                return;
            };
            match event {
                Event::Init => relisted.clear(),
                Event::InitApply(obj) | Event::Apply(obj) => {
                    let key = (obj.namespace().unwrap_or_default(), obj.name_any());
                    if let Err(reason) = apply(&mut index, &obj) {
                        refused.push((obj.object_ref(&()), reason));
                    }
                    relisted.insert(key.clone());
                    known.insert(key);
                }
                Event::InitDone => {
                    for (ns, name) in known.difference(&relisted) {
                        delete(&mut index, ns, name);
                    }
                    known = std::mem::take(&mut relisted);
                    if !std::mem::replace(&mut listed_once, true) {
                        synced.part_done();
                    }
                }
                Event::Delete(obj) => {
                    let key = (obj.namespace().unwrap_or_default(), obj.name_any());
                    delete(&mut index, &key.0, &key.1);
                    known.remove(&key);
                }
            }
        }
        for (reference, reason) in refused {
            tracing::warn!(%kind, name = ?reference.name, namespace = ?reference.namespace, "ignored: {reason}");
            let event = KubeEvent {
                type_: EventType::Warning,
                reason: "Invalid".into(),
                note: Some(reason),
                action: "Index".into(),
                secondary: None,
            };
            if let Err(e) = recorder.publish(&event, &reference).await {
                tracing::debug!("publishing an Event failed: {e}");
            }
        }
    }
}
