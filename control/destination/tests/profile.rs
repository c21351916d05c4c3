//! `GetProfile` against the real kube-apiserver, with the YAML of Linkerd's
//! documentation applied as users apply it: a ServiceProfile with a retry
//! budget and a TrafficSplit whose weights change while a stream is open
//! (HTTPRoutes are the policy controller's: `control/policy/tests`). An invalid
//! object is reported as a Kubernetes Event and changes nothing.

mod support;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Service};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use linkerd2_proxy_api::destination::destination_client::DestinationClient;
use linkerd2_proxy_api::destination::{DestinationProfile, GetDestination};
use mesh_api::crds::service_profile::ServiceProfile;
use mesh_api::crds::traffic_split::TrafficSplit;
use mesh_clusters::testing::shared_cluster;
use support::*;
use tonic::transport::Channel;

fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_saphyr::from_str(text).expect("yaml")
}

async fn create_service(client: &kube::Client, ns: &str, name: &str) {
    let svc: Service = yaml(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  selector: {{app: {name}}}\n  ports: [{{name: http, port: 7000}}]\n"
    ));
    Api::<Service>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &svc)
        .await
        .expect("service");
}

struct ProfileWatch(tonic::Streaming<DestinationProfile>);

impl ProfileWatch {
    async fn open(client: &mut DestinationClient<Channel>, path: &str) -> Self {
        let stream = client
            .get_profile(GetDestination {
                scheme: "k8s".into(),
                path: path.into(),
                context_token: String::new(),
            })
            .await
            .expect("GetProfile")
            .into_inner();
        Self(stream)
    }

    /// The first profile for which `done` holds (30 s at most).
    async fn until(
        &mut self,
        what: &str,
        done: impl Fn(&DestinationProfile) -> bool,
    ) -> DestinationProfile {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let next = tokio::time::timeout_at(deadline, self.0.next())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
            let profile = next.expect("stream open").expect("profile");
            if done(&profile) {
                return profile;
            }
        }
    }
}

#[tokio::test]
async fn the_docs_service_profile_shows_its_budget_and_routes() {
    let cluster = shared_cluster().await;
    let ns = cluster.namespace("booksapp").await;
    let running = start_destination(&cluster).await;
    create_service(&cluster.client, &ns, "webapp").await;
    let mut grpc = client(&running).await;
    let mut watch =
        ProfileWatch::open(&mut grpc, &format!("webapp.{ns}.svc.cluster.local:7000")).await;
    let first = watch
        .until("the Service's default profile", |p| {
            !p.fully_qualified_name.is_empty()
        })
        .await;
    assert_eq!(
        first.fully_qualified_name,
        format!("webapp.{ns}.svc.cluster.local")
    );
    assert!(first.routes.is_empty());
    assert!(first.retry_budget.is_some(), "Linkerd's default budget");

    // From Linkerd's "Configuring Retries" and "Configuring Timeouts" docs.
    let profile: ServiceProfile = yaml(&format!(
        r#"
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata:
  name: webapp.{ns}.svc.cluster.local
  namespace: {ns}
spec:
  routes:
  - condition:
      method: GET
      pathRegex: /books/[^/]*
    name: GET /books/{{id}}
    isRetryable: true
    timeout: 300ms
  - condition:
      method: POST
      pathRegex: /books
    name: POST /books
    responseClasses:
    - condition:
        status:
          min: 500
          max: 599
      isFailure: true
  retryBudget:
    retryRatio: 0.1
    minRetriesPerSecond: 5
    ttl: 10s
"#
    ));
    let profiles = Api::<ServiceProfile>::namespaced(cluster.client.clone(), &ns);
    profiles
        .create(&PostParams::default(), &profile)
        .await
        .expect("the docs' ServiceProfile applies");
    let got = watch
        .until("the profile's routes", |p| p.routes.len() == 2)
        .await;
    let budget = got.retry_budget.expect("budget");
    assert_eq!(
        (budget.retry_ratio, budget.min_retries_per_second),
        (0.1, 5)
    );
    assert_eq!(budget.ttl.map(|t| t.seconds), Some(10));
    assert!(got.routes[0].is_retryable);
    assert_eq!(got.routes[0].timeout.map(|t| t.nanos), Some(300_000_000));
    assert!(got.routes[1].response_classes[0].is_failure);

    // A broken edit is refused with an Event and changes nothing.
    let broken = serde_json::json!({"spec": {"routes": [{"name": "bad", "condition": {"pathRegex": "/books/(["}}]}});
    profiles
        .patch(
            &format!("webapp.{ns}.svc.cluster.local"),
            &PatchParams::default(),
            &Patch::Merge(&broken),
        )
        .await
        .expect("the API server accepts it; the index must not");
    let events = Api::<Event>::namespaced(cluster.client.clone(), &ns);
    let mut reported = false;
    for _ in 0..100 {
        let list = events.list(&ListParams::default()).await.expect("events");
        if list.items.iter().any(|e| {
            e.reason.as_deref() == Some("Invalid")
                && e.message
                    .as_deref()
                    .is_some_and(|m| m.contains("pathRegex"))
        }) {
            reported = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        reported,
        "no Kubernetes Event explains the refused ServiceProfile"
    );
    let index =
        running
            .index
            .lock()
            .expect("index")
            .profile(&mesh_destination::index::LookupKey::Service(
                (ns.clone(), "webapp".into()),
                7000,
            ));
    assert_eq!(index.routes.len(), 2, "the last valid profile stays");
    drop((watch, grpc));
    running.shutdown().await;
}

#[tokio::test]
async fn traffic_split_weight_changes_reach_open_streams() {
    let cluster = shared_cluster().await;
    let ns = cluster.namespace("split").await;
    let running = start_destination(&cluster).await;
    for name in ["backend", "backend-east"] {
        create_service(&cluster.client, &ns, name).await;
    }
    let split: TrafficSplit = yaml(&format!(
        r#"
apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata:
  name: backend-split
  namespace: {ns}
  labels:
    failover.linkerd.io/controlled-by: linkerd-failover
  annotations:
    failover.linkerd.io/primary-service: backend
spec:
  service: backend
  backends:
    - service: backend
      weight: 1
    - service: backend-east
      weight: 0
"#
    ));
    let splits = Api::<TrafficSplit>::namespaced(cluster.client.clone(), &ns);
    splits
        .create(&PostParams::default(), &split)
        .await
        .expect("the docs' TrafficSplit applies");
    let mut grpc = client(&running).await;
    let mut watch =
        ProfileWatch::open(&mut grpc, &format!("backend.{ns}.svc.cluster.local:7000")).await;
    let weights =
        |p: &DestinationProfile| p.dst_overrides.iter().map(|d| d.weight).collect::<Vec<_>>();
    let first = watch
        .until("the split", |p| p.dst_overrides.len() == 2)
        .await;
    assert_eq!(weights(&first), [10_000, 0]);
    assert_eq!(
        first.dst_overrides[1].authority,
        format!("backend-east.{ns}.svc.cluster.local:7000")
    );
    let failover = serde_json::json!({"spec": {"backends": [
        {"service": "backend", "weight": 0},
        {"service": "backend-east", "weight": 1}
    ]}});
    splits
        .patch(
            "backend-split",
            &PatchParams::default(),
            &Patch::Merge(&failover),
        )
        .await
        .expect("patch");
    let moved = watch
        .until("the new weights", |p| weights(p) == [0, 10_000])
        .await;
    assert_eq!(moved.dst_overrides[1].weight, 10_000);

    // A guide's `v1alpha1` TrafficSplit, weights in milli-units, is served
    // and stored as the same object.
    let v1alpha1: kube::core::DynamicObject = yaml(&format!(
        r#"
apiVersion: split.smi-spec.io/v1alpha1
kind: TrafficSplit
metadata:
  name: backend-split
  namespace: {ns}
spec:
  service: backend
  backends:
    - service: backend
      weight: 950m
    - service: backend-east
      weight: 50m
"#
    ));
    let resource = kube::core::ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk("split.smi-spec.io", "v1alpha1", "TrafficSplit"),
        "trafficsplits",
    );
    Api::<kube::core::DynamicObject>::namespaced_with(cluster.client.clone(), &ns, &resource)
        .patch(
            "backend-split",
            &PatchParams::apply("mesh-test").force(),
            &Patch::Apply(&v1alpha1),
        )
        .await
        .expect("the v1alpha1 TrafficSplit applies");
    watch
        .until("the v1alpha1 weights", |p| weights(p) == [9_500, 500])
        .await;
    drop((watch, grpc));
    running.shutdown().await;
}
