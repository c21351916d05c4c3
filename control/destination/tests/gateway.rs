//! A gateway's lookups against the real kube-apiserver: with a gateway's
//! context token, only Services labelled for export are answered; an
//! unlabelled Service, the API server's own Service and an IP address are
//! refused with PERMISSION_DENIED; an open stream ends refused once its
//! Service loses the label, and the Service is answered again once
//! labelled again. The same lookups without the token are answered.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use linkerd2_proxy_api::destination::GetDestination;
use linkerd2_proxy_api::destination::destination_client::DestinationClient;
use mesh_clusters::testing::shared_cluster;
use support::*;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

const GATEWAY_TOKEN: &str = r#"{"ns":"linkerd-multicluster","pod":"linkerd-gateway-0","gatewayExports":{"matchLabels":{"mirror.linkerd.io/exported":"true"}}}"#;

fn lookup(path: &str, context_token: &str) -> GetDestination {
    GetDestination {
        scheme: "k8s".into(),
        path: path.into(),
        context_token: context_token.into(),
    }
}

async fn create_service(services: &Api<Service>, name: &str, exported: bool) {
    let labels = if exported {
        "{mirror.linkerd.io/exported: \"true\"}"
    } else {
        "{}"
    };
    let svc: Service = serde_saphyr::from_str(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, labels: {labels}}}\nspec:\n  selector: {{app: {name}}}\n  ports: [{{name: http, port: 9898}}]\n"
    ))
    .expect("yaml");
    services
        .create(&PostParams::default(), &svc)
        .await
        .expect("service");
}

/// The code a gateway's GetProfile of `path` is refused with, or `None`
/// when it is answered.
async fn refusal(grpc: &mut DestinationClient<Channel>, path: &str) -> Option<tonic::Status> {
    match grpc.get_profile(lookup(path, GATEWAY_TOKEN)).await {
        Ok(response) => {
            let first = tokio::time::timeout(Duration::from_secs(10), response.into_inner().next())
                .await
                .expect("a first answer");
            first.expect("stream open").err()
        }
        Err(status) => Some(status),
    }
}

#[tokio::test]
async fn a_gateway_is_answered_only_for_exported_services() {
    let cluster = shared_cluster().await;
    let ns = cluster.namespace("gw-lookups").await;
    let running = start_destination(&cluster).await;
    let services = Api::<Service>::namespaced(cluster.client.clone(), &ns);
    create_service(&services, "exported", true).await;
    create_service(&services, "private", false).await;
    let mut grpc = client(&running).await;
    let exported = format!("exported.{ns}.svc.cluster.local:9898");
    let private = format!("private.{ns}.svc.cluster.local:9898");

    // The index learns of the Services through its watch: wait for it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while refusal(&mut grpc, &exported).await.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the exported Service is never answered: {:?}",
            refusal(&mut grpc, &exported).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for path in [
        private.as_str(),
        "kubernetes.default.svc.cluster.local:443",
        "linkerd-identity.linkerd.svc.cluster.local:8080",
        "10.96.0.1:443",
        &format!("missing.{ns}.svc.cluster.local:9898"),
    ] {
        let status = refusal(&mut grpc, path)
            .await
            .unwrap_or_else(|| panic!("a gateway is answered for {path}"));
        assert_eq!(
            status.code(),
            tonic::Code::PermissionDenied,
            "{path}: {status:?}"
        );
        let endpoints = grpc.get(lookup(path, GATEWAY_TOKEN)).await;
        assert_eq!(
            endpoints.err().map(|s| s.code()),
            Some(tonic::Code::PermissionDenied),
            "Get {path}"
        );
    }
    // Anyone else is answered as before, unexported or not.
    let mut answered = grpc
        .get_profile(lookup(&private, r#"{"ns":"test","pod":"web-0"}"#))
        .await
        .expect("a pod's lookup of an unexported Service")
        .into_inner();
    answered
        .next()
        .await
        .expect("open")
        .expect("a pod is answered for an unexported Service");

    // An open gateway stream ends refused once the label goes...
    let mut open = grpc
        .get_profile(lookup(&exported, GATEWAY_TOKEN))
        .await
        .expect("exported")
        .into_inner();
    open.next().await.expect("open").expect("a profile");
    services
        .patch(
            "exported",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"metadata": {"labels": {"mirror.linkerd.io/exported": null}}}),
            ),
        )
        .await
        .expect("unlabel");
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match open.next().await {
                Some(Ok(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the stream ends once the Service is unexported");
    let status = ended.expect("an item").expect_err("refused");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("not exported"), "{status:?}");

    // ...and the Service is answered again once labelled again.
    services
        .patch(
            "exported",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"metadata": {"labels": {"mirror.linkerd.io/exported": "true"}}}),
            ),
        )
        .await
        .expect("label");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Some(status) = refusal(&mut grpc, &exported).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relabelled Service is still refused: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
