//! The policy controller against the real kube-apiserver, through its gRPC
//! API as a proxy uses it: a pod's port first has the cluster default; the
//! guide's Server, AuthorizationPolicy and MeshTLSAuthentication (as the
//! guide writes them, all at `policy.linkerd.io/v1beta3`) turn it into that Server with that identity
//! suffix, on the open WatchPort stream; a `policy.linkerd.io/v1beta1`
//! HTTPRoute becomes its route; a namespace annotated `deny` denies
//! its other ports while the probe route stays; an invalid Server is refused
//! with a Kubernetes Event and changes nothing.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Namespace};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use linkerd2_proxy_api::inbound::inbound_server_policies_client::InboundServerPoliciesClient;
use linkerd2_proxy_api::inbound::{PortSpec, Server, authn};
use mesh_clusters::testing::shared_cluster;
use tokio_stream::StreamExt;

mod support;
use support::{apply, start};

/// The next message of `stream` for which `done` holds (30 s at most).
async fn until(
    stream: &mut tonic::Streaming<Server>,
    what: &str,
    done: impl Fn(&Server) -> bool,
) -> Server {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
        let server = next.expect("stream open").expect("a policy");
        if done(&server) {
            return server;
        }
    }
}

fn spec(ns: &str, pod: &str, port: u32) -> PortSpec {
    PortSpec {
        workload: format!(r#"{{"ns":"{ns}","pod":"{pod}"}}"#),
        port,
    }
}

#[tokio::test]
async fn the_guides_policy_reaches_an_open_watch_and_bad_objects_are_refused() {
    let cluster = shared_cluster().await;
    let ns = cluster.namespace("policy").await;
    let running = start(&cluster).await;
    apply(
        &cluster.client,
        &ns,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: my-service-1, namespace: {ns}, labels: {{app: my-service}}}}\n\
             spec:\n  containers:\n  - name: app\n    image: podinfo\n    ports: [{{name: http, containerPort: 8080}}, {{name: admin, containerPort: 9090}}]\n    \
             readinessProbe: {{httpGet: {{port: admin, path: /ready}}}}\n"
        ),
    )
    .await;
    let mut grpc = InboundServerPoliciesClient::connect(format!("http://{}", running.addr))
        .await
        .expect("connect");

    // The pod is known once the watch has seen it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut stream = loop {
        match grpc.watch_port(spec(&ns, "my-service-1", 8080)).await {
            Ok(response) => break response.into_inner(),
            Err(status) if status.code() == tonic::Code::NotFound => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "pod never known: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => panic!("WatchPort: {status:?}"),
        }
    };
    let first = until(&mut stream, "the cluster default", |_| true).await;
    assert_eq!(first.labels["kind"], "default");
    assert_eq!(first.labels["name"], "all-unauthenticated");

    apply(
        &cluster.client,
        &ns,
        &format!(
            "apiVersion: policy.linkerd.io/v1beta3\nkind: Server\nmetadata: {{name: my-service-server, namespace: {ns}}}\n\
             spec: {{podSelector: {{matchLabels: {{app: my-service}}}}, port: 8080, proxyProtocol: HTTP/2}}\n"
        ),
    )
    .await;
    apply(
        &cluster.client,
        &ns,
        &format!(
            "apiVersion: policy.linkerd.io/v1beta3\nkind: AuthorizationPolicy\nmetadata: {{name: my-service-authn, namespace: {ns}}}\n\
             spec:\n  targetRef: {{group: policy.linkerd.io, kind: Server, name: my-service-server}}\n  \
             requiredAuthenticationRefs: [{{name: meshed-only, kind: MeshTLSAuthentication, group: policy.linkerd.io}}]\n"
        ),
    )
    .await;
    apply(
        &cluster.client,
        &ns,
        &format!(
            "apiVersion: policy.linkerd.io/v1beta3\nkind: MeshTLSAuthentication\nmetadata: {{name: meshed-only, namespace: {ns}}}\n\
             spec: {{identities: [\"*.{ns}.serviceaccount.identity.linkerd.cluster.local\"]}}\n"
        ),
    )
    .await;
    let guarded = until(&mut stream, "the Server with its policy", |s| {
        s.labels.get("kind").map(String::as_str) == Some("server") && !s.authorizations.is_empty()
    })
    .await;
    assert_eq!(guarded.labels["name"], "my-service-server");
    let permit = guarded.authorizations[0]
        .authentication
        .as_ref()
        .and_then(|a| a.permit.clone());
    let Some(authn::Permit::MeshTls(authn::PermitMeshTls {
        clients: Some(authn::permit_mesh_tls::Clients::Identities(ids)),
    })) = permit
    else {
        panic!("mesh TLS with identities: {guarded:?}");
    };
    let expected: Vec<String> = format!("{ns}.serviceaccount.identity.linkerd.cluster.local")
        .split('.')
        .map(str::to_owned)
        .collect();
    assert_eq!(ids.suffixes[0].parts, expected);

    // A `policy.linkerd.io/v1beta1` HTTPRoute (as Linkerd's per-route guide
    // writes one) becomes the Server's route, its header match kept.
    apply(
        &cluster.client,
        &ns,
        &format!(
            "apiVersion: policy.linkerd.io/v1beta1\nkind: HTTPRoute\nmetadata: {{name: authors-get, namespace: {ns}}}\n\
             spec:\n  parentRefs: [{{name: my-service-server, kind: Server, group: policy.linkerd.io}}]\n  \
             rules: [{{matches: [{{path: {{value: /authors, type: PathPrefix}}, method: GET, headers: [{{name: x-team, value: ops}}]}}]}}]\n"
        ),
    )
    .await;
    let routed = until(&mut stream, "the HTTPRoute on the Server", |s| {
        matches!(
            s.protocol.as_ref().and_then(|p| p.kind.as_ref()),
            Some(linkerd2_proxy_api::inbound::proxy_protocol::Kind::Http2(h))
                if h.routes.iter().any(|r| r.rules.iter().any(|rule| rule.matches.iter().any(|m| !m.headers.is_empty())))
        )
    })
    .await;
    let Some(linkerd2_proxy_api::inbound::proxy_protocol::Kind::Http2(http2)) =
        routed.protocol.and_then(|p| p.kind)
    else {
        panic!("HTTP/2");
    };
    assert_eq!(
        http2.routes[0]
            .metadata
            .as_ref()
            .and_then(|m| m.kind.clone()),
        Some(linkerd2_proxy_api::meta::metadata::Kind::Resource(
            linkerd2_proxy_api::meta::Resource {
                group: "policy.linkerd.io".into(),
                kind: "HTTPRoute".into(),
                name: "authors-get".into(),
                ..Default::default()
            }
        ))
    );

    // An invalid Server: refused with an Event on it, the policy unchanged.
    apply(
        &cluster.client,
        &ns,
        &format!(
            "apiVersion: policy.linkerd.io/v1beta3\nkind: Server\nmetadata: {{name: broken, namespace: {ns}}}\n\
             spec: {{podSelector: {{matchLabels: {{app: my-service}}}}, port: 9090, accessPolicy: open-to-all}}\n"
        ),
    )
    .await;
    let events = Api::<Event>::namespaced(cluster.client.clone(), &ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let listed = events.list(&ListParams::default()).await.expect("events");
        if let Some(event) = listed.items.iter().find(|e| {
            e.involved_object.name.as_deref() == Some("broken")
                && e.reason.as_deref() == Some("Invalid")
        }) {
            assert!(
                event
                    .message
                    .as_deref()
                    .unwrap_or_default()
                    .contains("spec.accessPolicy"),
                "{event:?}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Event for the invalid Server"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let admin = grpc
        .get_port(spec(&ns, "my-service-1", 9090))
        .await
        .expect("GetPort")
        .into_inner();
    assert_eq!(
        admin.labels["kind"], "default",
        "the broken Server selects nothing"
    );

    // `deny` on the namespace: the admin port allows nothing but its probe.
    Api::<Namespace>::all(cluster.client.clone())
        .patch(
            &ns,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"config.linkerd.io/default-inbound-policy": "deny"}}})),
        )
        .await
        .expect("annotate");
    let mut admin = grpc
        .watch_port(spec(&ns, "my-service-1", 9090))
        .await
        .expect("WatchPort")
        .into_inner();
    let denied = until(&mut admin, "deny", |s| s.labels["name"] == "deny").await;
    assert!(denied.authorizations.is_empty());
    let Some(linkerd2_proxy_api::inbound::ProxyProtocol {
        kind: Some(linkerd2_proxy_api::inbound::proxy_protocol::Kind::Detect(detect)),
    }) = denied.protocol
    else {
        panic!("detect: {denied:?}");
    };
    let probe = detect
        .http_routes
        .iter()
        .find(|r| {
            r.metadata.as_ref().and_then(|m| m.kind.clone())
                == Some(linkerd2_proxy_api::meta::metadata::Kind::Default(
                    "probe".into(),
                ))
        })
        .expect("a probe route");
    assert_eq!(
        probe.authorizations.len(),
        1,
        "kubelet's probes stay allowed"
    );
}
