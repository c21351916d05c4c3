//! Feeding the index from the Kubernetes API: one watcher per kind
//! (Services, EndpointSlices, Pods, mirrored Endpoints, ServiceProfiles,
//! TrafficSplits; HTTPRoutes are the policy controller's). A relist removes what disappeared meanwhile;
//! an invalid object is logged and reported as a Kubernetes Event on it, and
//! the index keeps what it had.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use mesh_api::crds::service_profile::ServiceProfile;
use mesh_api::crds::traffic_split::TrafficSplit;
use mesh_api::index_watch::{Target, watch};
use tokio::task::JoinSet;

use mesh_core::admin::Readiness;

use crate::index::Index;

/// How many kinds are watched.
const WATCHED_KINDS: usize = 6;

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
    let target = || Target {
        index: index.clone(),
        recorder: recorder.clone(),
        listed: Box::new({
            let synced = synced.clone();
            move || synced.part_done()
        }),
    };
    let mut set = JoinSet::new();
    let all = |c: &kube::Client| c.clone();
    set.spawn(watch::<Service, Index>(
        Api::all(all(&client)),
        watcher::Config::default(),
        target(),
        |i, s| {
            i.apply_service(s);
            Ok(())
        },
        Index::delete_service,
    ));
    set.spawn(watch::<EndpointSlice, Index>(
        Api::all(all(&client)),
        watcher::Config::default(),
        target(),
        |i, s| {
            i.apply_slice(s);
            Ok(())
        },
        Index::delete_slice,
    ));
    set.spawn(watch::<Pod, Index>(
        Api::all(all(&client)),
        watcher::Config::default(),
        target(),
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
    set.spawn(watch::<Endpoints, Index>(
        Api::all(all(&client)),
        mirrored,
        target(),
        |i, e| {
            i.apply_mirror_endpoints(e);
            Ok(())
        },
        Index::delete_mirror_endpoints,
    ));
    set.spawn(watch::<ServiceProfile, Index>(
        Api::all(all(&client)),
        watcher::Config::default(),
        target(),
        Index::apply_service_profile,
        Index::delete_service_profile,
    ));
    set.spawn(watch::<TrafficSplit, Index>(
        Api::all(client),
        watcher::Config::default(),
        target(),
        Index::apply_traffic_split,
        Index::delete_traffic_split,
    ));
    debug_assert_eq!(set.len(), WATCHED_KINDS);
    (set, synced)
}
