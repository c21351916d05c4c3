//! Feeding a controller's pure index from the Kubernetes API, one watcher
//! per kind, the same way for every controller (destination, policy): each
//! object goes to the index's `apply`, each deletion to its `delete`; a
//! relist deletes what vanished meanwhile; an object the index refuses is
//! logged and reported as a Kubernetes Event on it (reason `Invalid`), and
//! the index keeps what it had. A broken watch is retried with back-off.

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

/// How an index takes an object: `Err` with the reason it was refused.
pub type Apply<I, K> = fn(&mut I, &K) -> Result<(), String>;
/// How an index forgets an object, by namespace and name.
pub type Delete<I> = fn(&mut I, &str, &str);

/// Where a watcher's objects go.
pub struct Target<I> {
    /// The index.
    pub index: Arc<Mutex<I>>,
    /// Where refusals are reported.
    pub recorder: Recorder,
    /// Called once, when the kind has been listed for the first time.
    pub listed: Box<dyn Fn() + Send + Sync>,
}

impl<I> Debug for Target<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").finish_non_exhaustive()
    }
}

/// Watches `api` (filtered by `config`) into `target` until the task is
/// dropped, or the index is poisoned.
pub async fn watch<K, I>(
    api: Api<K>,
    config: watcher::Config,
    target: Target<I>,
    apply: Apply<I, K>,
    delete: Delete<I>,
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
            let Ok(mut index) = target.index.lock() else {
                tracing::error!("the index is poisoned; stopping the {kind} watch");
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
                        (target.listed)();
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
            if let Err(e) = target.recorder.publish(&event, &reference).await {
                tracing::debug!("publishing an Event failed: {e}");
            }
        }
    }
}
