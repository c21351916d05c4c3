//! `Get` against the real kube-apiserver: a Deployment's pods (bound and
//! readied by a stand-in kubelet) become EndpointSlices through the
//! controller-manager, and the stream shows exactly the ready endpoints with
//! their identities, then Add and Remove as the Deployment scales.

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use mesh_clusters::testing::shared_cluster;
use support::*;

fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_saphyr::from_str(text).expect("yaml")
}

#[tokio::test]
async fn a_deployment_scales_and_the_stream_follows_with_identities() {
    let cluster = shared_cluster().await;
    let ns = cluster.namespace("get").await;
    let running = start_destination(&cluster).await;
    let kubelet = fake_kubelet(cluster.client.clone(), ns.clone(), format!("node-{ns}"));
    mesh_clusters::testing::service_account(&cluster.client, &ns, "web").await;

    let svc: Service = yaml(&format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {ns}}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
"#
    ));
    Api::<Service>::namespaced(cluster.client.clone(), &ns)
        .create(&PostParams::default(), &svc)
        .await
        .expect("service");
    let deploy: Deployment = yaml(&format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      serviceAccountName: web
      containers:
      - {{name: app, image: podinfo, ports: [{{name: http, containerPort: 8080}}]}}
      - {{name: linkerd-proxy, image: mesh-proxy}}
"#
    ));
    let deployments = Api::<Deployment>::namespaced(cluster.client.clone(), &ns);
    deployments
        .create(&PostParams::default(), &deploy)
        .await
        .expect("deployment");

    let mut grpc = client(&running).await;
    let mut get = GetWatch::open(&mut grpc, &format!("web.{ns}.svc.cluster.local:80")).await;
    get.until("two ready endpoints", |s| s.endpoints.len() == 2)
        .await;
    let identity = format!("web.{ns}.serviceaccount.identity.linkerd.cluster.local");
    for addr in get.state.endpoints.values() {
        assert_eq!(
            dns_identity(addr),
            Some(identity.as_str()),
            "meshed endpoints have their ServiceAccount's identity"
        );
        assert_eq!(addr.addr.map(|a| a.port), Some(8080));
        assert_eq!(
            addr.metric_labels.get("deployment").map(String::as_str),
            Some("web")
        );
        assert!(addr.protocol_hint.is_some());
    }

    let scale = |n: i32| serde_json::json!({"spec": {"replicas": n}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(&scale(3)))
        .await
        .expect("scale up");
    let adds_before = get.state.adds;
    get.until("a third endpoint", |s| s.endpoints.len() == 3)
        .await;
    assert!(get.state.adds > adds_before, "scaling up arrived as Add");
    deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(&scale(1)))
        .await
        .expect("scale down");
    get.until("one endpoint left", |s| s.endpoints.len() == 1)
        .await;
    assert!(get.state.removes > 0, "scaling down arrived as Remove");
    kubelet.abort();
    running.shutdown().await;
}

#[tokio::test]
async fn an_unknown_service_says_so_then_appears_and_bad_paths_are_refused() {
    let cluster = shared_cluster().await;
    let ns = cluster.namespace("unknown").await;
    let running = start_destination(&cluster).await;
    let mut grpc = client(&running).await;
    let mut get = GetWatch::open(&mut grpc, &format!("late.{ns}.svc.cluster.local:80")).await;
    get.until("NoEndpoints{exists: false}", |s| {
        s.no_endpoints == Some(false)
    })
    .await;

    let svc: Service = yaml(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: late, namespace: {ns}}}\nspec:\n  ports: [{{name: http, port: 80}}]\n"
    ));
    Api::<Service>::namespaced(cluster.client.clone(), &ns)
        .create(&PostParams::default(), &svc)
        .await
        .expect("service");
    get.until("NoEndpoints{exists: true}", |s| {
        s.no_endpoints == Some(true)
    })
    .await;
    let slice: k8s_openapi::api::discovery::v1::EndpointSlice = yaml(&format!(
        r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: late-1
  namespace: {ns}
  labels: {{kubernetes.io/service-name: late}}
addressType: IPv4
ports: [{{name: http, port: 9090}}]
endpoints:
- addresses: [10.250.0.7]
  conditions: {{ready: true}}
- addresses: [10.250.0.8]
  conditions: {{ready: false}}
"#
    ));
    Api::<k8s_openapi::api::discovery::v1::EndpointSlice>::namespaced(cluster.client.clone(), &ns)
        .create(&PostParams::default(), &slice)
        .await
        .expect("slice");
    get.until("the ready endpoint", |s| s.endpoints.len() == 1)
        .await;
    assert!(
        get.state
            .endpoints
            .contains_key(&"10.250.0.7:9090".parse().expect("addr"))
    );

    let err = grpc
        .get(linkerd2_proxy_api::destination::GetDestination {
            scheme: "k8s".into(),
            path: "not a service".into(),
            context_token: String::new(),
        })
        .await
        .expect_err("malformed");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("not a service"), "{}", err.message());
    running.shutdown().await;
}

#[tokio::test]
async fn a_hand_written_mirror_service_resolves_to_the_remote_gateway() {
    let cluster = shared_cluster().await;
    let ns = cluster.namespace("mirror").await;
    let running = start_destination(&cluster).await;
    // What the service mirror writes for `web` exported by `east`: a
    // selector-less Service and an Endpoints object naming east's gateway.
    let svc: Service = yaml(&format!(
        r#"
apiVersion: v1
kind: Service
metadata:
  name: web-east
  namespace: {ns}
  labels:
    mirror.linkerd.io/mirrored-service: "true"
    mirror.linkerd.io/cluster-name: east
  annotations:
    mirror.linkerd.io/remote-svc-fq-name: web.{ns}.svc.cluster.local
spec:
  ports: [{{name: http, port: 80}}]
"#
    ));
    let endpoints: k8s_openapi::api::core::v1::Endpoints = yaml(&format!(
        r#"
apiVersion: v1
kind: Endpoints
metadata:
  name: web-east
  namespace: {ns}
  labels:
    mirror.linkerd.io/mirrored-service: "true"
    mirror.linkerd.io/cluster-name: east
  annotations:
    mirror.linkerd.io/remote-gateway-identity: linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local
subsets:
- addresses: [{{ip: 172.20.0.2}}, {{ip: 172.20.0.3}}]
  ports: [{{name: http, port: 4143}}]
"#
    ));
    Api::<Service>::namespaced(cluster.client.clone(), &ns)
        .create(&PostParams::default(), &svc)
        .await
        .expect("mirror service");
    let eps_api =
        Api::<k8s_openapi::api::core::v1::Endpoints>::namespaced(cluster.client.clone(), &ns);
    eps_api
        .create(&PostParams::default(), &endpoints)
        .await
        .expect("mirror endpoints");

    let mut grpc = client(&running).await;
    let mut get = GetWatch::open(&mut grpc, &format!("web-east.{ns}.svc.cluster.local:80")).await;
    get.until("both gateway addresses", |s| s.endpoints.len() == 2)
        .await;
    // Only the gateway addresses: the slices the controller-manager mirrors
    // from the Endpoints must not add a second copy.
    let gateways: Vec<String> = get.state.endpoints.keys().map(|a| a.to_string()).collect();
    assert_eq!(gateways, ["172.20.0.2:4143", "172.20.0.3:4143"]);
    for addr in get.state.endpoints.values() {
        assert_eq!(
            dns_identity(addr),
            Some(
                "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"
            ),
            "the gateway's identity"
        );
        let authority = addr
            .authority_override
            .as_ref()
            .map(|a| a.authority_override.clone());
        assert_eq!(
            authority.as_deref(),
            Some(format!("web.{ns}.svc.cluster.local:80").as_str())
        );
    }
    assert_eq!(
        get.state
            .set_labels
            .get("target_cluster")
            .map(String::as_str),
        Some("east")
    );

    // The gateway moves: the stream follows the Endpoints.
    let moved = serde_json::json!({"subsets": [{
        "addresses": [{"ip": "172.20.0.9"}],
        "ports": [{"name": "http", "port": 4143}]
    }]});
    eps_api
        .patch("web-east", &PatchParams::default(), &Patch::Merge(&moved))
        .await
        .expect("patch endpoints");
    get.until("the new gateway address", |s| {
        s.endpoints
            .keys()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            == ["172.20.0.9:4143"]
    })
    .await;
    running.shutdown().await;
}
