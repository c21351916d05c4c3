//! A watched set of objects, kept as a small projection of each (the
//! remote Service itself, whether remote Endpoints have a ready address, a
//! mirror's remote version): one watch per kind instead of a listing per
//! pass, so a new export is seen within a round trip of the API server.
//!
//! The view is `None` until the first listing is complete. A relisting
//! (after a reconnect or an expired watch) replaces the view only once it
//! is complete, so an outage keeps the last view and the pass after the
//! reconnect deletes only what really went away. Every change pokes
//! `changed`, which wakes the mirror's loop.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::desired::Key;

/// What a watch knows.
#[derive(Debug)]
struct Known<T> {
    /// The complete view, once the first listing is done.
    view: Option<BTreeMap<Key, T>>,
    /// A listing in progress.
    relisting: Option<BTreeMap<Key, T>>,
    /// The last watch error since the last event, if any.
    error: Option<String>,
}

/// A watched set of objects, projected; the watch stops when it is dropped.
#[derive(Debug)]
pub struct Watched<T> {
    known: Arc<Mutex<Known<T>>>,
    task: tokio::task::JoinHandle<()>,
}

impl<T> Drop for Watched<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<T: Clone + PartialEq + Send + 'static> Watched<T> {
    /// Watches `api` under `config`, keeping `project(object)` per object.
    pub fn spawn<K>(
        api: Api<K>,
        config: watcher::Config,
        project: fn(&K) -> T,
        changed: Arc<Notify>,
    ) -> Self
    where
        K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    {
        let known = Arc::new(Mutex::new(Known {
            view: None,
            relisting: None,
            error: None,
        }));
        let writer = known.clone();
        let task = tokio::spawn(async move {
            let kind = K::kind(&());
            let mut events = watcher::watcher(api, config).default_backoff().boxed();
            while let Some(event) = events.next().await {
                let mut known = writer.lock().unwrap_or_else(PoisonError::into_inner);
                let poke = match event {
                    Err(e) => {
                        tracing::debug!(%kind, "watch interrupted: {e}");
                        known.error = Some(e.to_string());
                        false
                    }
                    Ok(event) => {
                        known.error = None;
                        apply(&mut known, event, project)
                    }
                };
                drop(known);
                if poke {
                    changed.notify_one();
                }
            }
        });
        Self { known, task }
    }

    /// The complete view, or `None` before the first listing is done.
    pub fn view(&self) -> Option<BTreeMap<Key, T>> {
        self.lock().view.clone()
    }

    /// The watch's last error when it has not recovered since.
    pub fn error(&self) -> Option<String> {
        self.lock().error.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Known<T>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Applies one event; returns whether the view changed.
fn apply<K: Resource, T: PartialEq>(
    known: &mut Known<T>,
    event: Event<K>,
    project: fn(&K) -> T,
) -> bool {
    let key = |object: &K| (object.namespace().unwrap_or_default(), object.name_any());
    match event {
        Event::Init => {
            known.relisting = Some(BTreeMap::new());
            false
        }
        Event::InitApply(object) => {
            if let Some(relisting) = &mut known.relisting {
                relisting.insert(key(&object), project(&object));
            }
            false
        }
        Event::InitDone => {
            let listed = known.relisting.take().unwrap_or_default();
            let changed = known.view.as_ref() != Some(&listed);
            known.view = Some(listed);
            changed
        }
        Event::Apply(object) => {
            let Some(view) = &mut known.view else {
                return false;
            };
            let (key, value) = (key(&object), project(&object));
            if view.get(&key) == Some(&value) {
                return false;
            }
            view.insert(key, value);
            true
        }
        Event::Delete(object) => known
            .view
            .as_mut()
            .is_some_and(|view| view.remove(&key(&object)).is_some()),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn config_map(name: &str, value: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            data: Some([("v".to_owned(), value.to_owned())].into()),
            ..ConfigMap::default()
        }
    }

    fn value(map: &ConfigMap) -> String {
        map.data
            .as_ref()
            .and_then(|d| d.get("v"))
            .cloned()
            .unwrap_or_default()
    }

    fn names(known: &Known<String>) -> Option<Vec<String>> {
        known
            .view
            .as_ref()
            .map(|v| v.keys().map(|(_, n)| n.clone()).collect())
    }

    #[test]
    fn a_relisting_replaces_the_view_only_once_it_is_complete() {
        let mut known = Known {
            view: None,
            relisting: None,
            error: None,
        };
        assert!(!apply(&mut known, Event::Init, value));
        assert!(!apply(
            &mut known,
            Event::InitApply(config_map("a", "1")),
            value
        ));
        assert_eq!(names(&known), None, "nothing before the listing is done");
        assert!(apply(&mut known, Event::InitDone, value));
        assert_eq!(names(&known), Some(vec!["a".into()]));

        assert!(apply(&mut known, Event::Apply(config_map("b", "1")), value));
        assert!(
            !apply(&mut known, Event::Apply(config_map("b", "1")), value),
            "same projection"
        );
        assert!(apply(&mut known, Event::Apply(config_map("b", "2")), value));

        // A reconnect: the old view stays while the new listing runs.
        apply(&mut known, Event::Init, value);
        apply(&mut known, Event::InitApply(config_map("b", "2")), value);
        assert_eq!(names(&known), Some(vec!["a".into(), "b".into()]));
        assert!(apply(&mut known, Event::InitDone, value), "a went away");
        assert_eq!(names(&known), Some(vec!["b".into()]));

        assert!(apply(
            &mut known,
            Event::Delete(config_map("b", "2")),
            value
        ));
        assert!(!apply(
            &mut known,
            Event::Delete(config_map("b", "2")),
            value
        ));
        assert_eq!(names(&known), Some(vec![]));
    }
}
