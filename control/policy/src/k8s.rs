//! Feeding the policy index from the Kubernetes API: one watcher per kind
//! (Pods, Namespaces, Servers, AuthorizationPolicies,
//! MeshTLSAuthentications, NetworkAuthentications, ServerAuthorizations,
//! HTTPRoutes of both groups, GRPCRoutes, Services), through
//! `mesh_api::index_watch`; a refused object becomes a Kubernetes Event on
//! it and the index keeps its last valid version.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::Api;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use mesh_api::crds::policy::{
    AuthorizationPolicy, MeshTLSAuthentication, NetworkAuthentication, Server, ServerAuthorization,
};
use mesh_api::index_watch::{Target, watch};
use mesh_core::admin::Readiness;
use tokio::task::JoinSet;

use crate::index::{Index, Invalid};

/// How many kinds are watched.
const WATCHED_KINDS: usize = 11;

fn refused(result: Result<(), Invalid>) -> Result<(), String> {
    result.map_err(|e| e.to_string())
}

/// Starts every watcher; the readiness turns true once each kind has been
/// listed.
pub fn spawn_watchers(client: kube::Client, index: Arc<Mutex<Index>>) -> (JoinSet<()>, Readiness) {
    let synced = Readiness::waiting_for(WATCHED_KINDS);
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "linkerd-policy".into(),
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
    let all = watcher::Config::default;
    let mut set = JoinSet::new();
    set.spawn(watch::<Pod, Index>(
        Api::all(client.clone()),
        all(),
        target(),
        |index, pod| {
            let problems = index.apply_pod(pod);
            if problems.is_empty() {
                return Ok(());
            }
            let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
            Err(problems.join("; "))
        },
        Index::delete_pod,
    ));
    set.spawn(watch::<Namespace, Index>(
        Api::all(client.clone()),
        all(),
        target(),
        |index, ns| refused(index.apply_namespace(ns)),
        |index, _, name| index.delete_namespace(name),
    ));
    set.spawn(watch::<Server, Index>(
        Api::all(client.clone()),
        all(),
        target(),
        |index, server| refused(index.apply_server(server)),
        Index::delete_server,
    ));
    set.spawn(watch::<AuthorizationPolicy, Index>(
        Api::all(client.clone()),
        all(),
        target(),
        |index, policy| refused(index.apply_authorization_policy(policy)),
        Index::delete_authorization_policy,
    ));
    set.spawn(watch::<MeshTLSAuthentication, Index>(
        Api::all(client.clone()),
        all(),
        target(),
        |index, authn| refused(index.apply_mesh_tls_authentication(authn)),
        Index::delete_mesh_tls_authentication,
    ));
    set.spawn(watch::<ServerAuthorization, Index>(
        Api::all(client.clone()),
        all(),
        target(),
        |index, saz| refused(index.apply_server_authorization(saz)),
        Index::delete_server_authorization,
    ));
    set.spawn(watch::<mesh_api::crds::http_route::HttpRoute, Index>(
        Api::all(client.clone()),
        all(),
        target(),
        |index, route| refused(index.apply_http_route(route)),
        Index::delete_http_route,
    ));
    set.spawn(watch::<mesh_api::crds::http_route::PolicyHttpRoute, Index>(
        Api::all(client.clone()),
        all(),
        target(),
        |index, route| refused(index.apply_policy_http_route(route)),
        Index::delete_policy_http_route,
    ));
    set.spawn(watch::<mesh_api::crds::grpc_route::GrpcRoute, Index>(
        Api::all(client.clone()),
        all(),
        target(),
        |index, route| refused(index.apply_grpc_route(route)),
        Index::delete_grpc_route,
    ));
    set.spawn(watch::<Service, Index>(
        Api::all(client.clone()),
        all(),
        target(),
        |index, svc| refused(index.apply_service(svc)),
        Index::delete_service,
    ));
    set.spawn(watch::<NetworkAuthentication, Index>(
        Api::all(client),
        all(),
        target(),
        |index, authn| refused(index.apply_network_authentication(authn)),
        Index::delete_network_authentication,
    ));
    debug_assert_eq!(set.len(), WATCHED_KINDS);
    (set, synced)
}
