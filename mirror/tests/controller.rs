//! The mirror's loop against a real API server (the shared test cluster is
//! both the linked cluster, through a credentials Secret holding its
//! kubeconfig, and this one): a Link and an exported Service give a mirror
//! within a few periods and `gateway_alive 1`; when the gateway stops
//! answering its probes, the mirror's addresses turn not ready and
//! `gateway_alive` 0, and the mirror stays.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::PostParams;
use mesh_api::crds::link::Link;
use mesh_clusters::testing::shared_cluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn ensure_link_crd(client: &kube::Client) {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let crd = mesh_api::crds::link::crd();
    match api.create(&PostParams::default(), &crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => panic!("creating the Link CRD: {e}"),
    }
    for _ in 0..100 {
        let established = api
            .get("links.multicluster.linkerd.io")
            .await
            .ok()
            .and_then(|c| c.status?.conditions)
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
        if established {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the Link CRD is not established");
}

/// This host's address on its default route: the API server refuses
/// loopback addresses in Endpoints, so the test gateway listens there.
fn host_ip() -> std::net::IpAddr {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp socket");
    socket
        .connect("192.0.2.1:9")
        .expect("this test needs a non-loopback address with a route (none found)");
    socket.local_addr().expect("local addr").ip()
}

/// A gateway probe endpoint answering 200 on /ready until `up` turns false.
async fn gateway(up: tokio::sync::watch::Receiver<bool>) -> u16 {
    let listener = tokio::net::TcpListener::bind((host_ip(), 0))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let status = if *up.borrow() {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            let mut buf = [0u8; 512];
            let _ = stream.read(&mut buf).await;
            let _ = stream
                .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                .await;
        }
    });
    port
}

async fn until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    for _ in 0..60 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{what} within 15 s");
}

#[tokio::test]
async fn a_link_mirrors_exported_services_and_follows_its_gateway() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let cluster = shared_cluster().await;
    let client = cluster.client.clone();
    ensure_link_crd(&client).await;
    let ns = cluster.namespace("mirror-ctl").await;
    let link_name = format!("k{}", &ns[ns.len() - 5..]);
    let (up_tx, up_rx) = tokio::sync::watch::channel(true);
    let probe_port = gateway(up_rx).await;

    let kubeconfig = std::fs::read_to_string(cluster.kubeconfig()).expect("kubeconfig");
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("cluster-credentials-{link_name}")},
        "type": "mirror.linkerd.io/remote-kubeconfig",
        "stringData": {"kubeconfig": kubeconfig},
    }))
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    let link: Link = serde_json::from_value(serde_json::json!({
        "apiVersion": "multicluster.linkerd.io/v1alpha3",
        "kind": "Link",
        "metadata": {"name": link_name},
        "spec": {
            "targetClusterName": link_name,
            "targetClusterDomain": "cluster.local",
            "clusterCredentialsSecret": format!("cluster-credentials-{link_name}"),
            "gatewayAddress": host_ip().to_string(),
            "gatewayPort": "4143",
            "gatewayIdentity": "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local",
            "probeSpec": {"path": "/ready", "port": probe_port.to_string(), "period": "1s"},
            "selector": {"matchLabels": {"mirror.linkerd.io/exported": "true", "test-link": link_name}},
        },
    }))
    .expect("link");
    Api::<Link>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &link)
        .await
        .expect("create link");
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "labels": {"mirror.linkerd.io/exported": "true", "test-link": link_name}},
        "spec": {"ports": [{"name": "http", "port": 80}]},
    }))
    .expect("service");
    Api::<Service>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &service)
        .await
        .expect("create service");
    let endpoints: Endpoints = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "subsets": [{"addresses": [{"ip": "10.10.0.9"}], "ports": [{"name": "http", "port": 8080}]}],
    }))
    .expect("endpoints");
    Api::<Endpoints>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &endpoints)
        .await
        .expect("create endpoints");

    let (registry, metrics) = mesh_mirror::controller::metrics();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mirror = tokio::spawn(mesh_mirror::controller::run(
        client.clone(),
        ns.clone(),
        link_name.clone(),
        metrics,
        async move {
            let _ = stop_rx.await;
        },
    ));
    let mirror_name = format!("web-{link_name}");
    let endpoints_api = Api::<Endpoints>::namespaced(client.clone(), &ns);
    let ready_ips = |eps: Option<Endpoints>| -> (usize, usize) {
        let subset = eps
            .and_then(|e| e.subsets)
            .and_then(|s| s.into_iter().next())
            .unwrap_or_default();
        (
            subset.addresses.map_or(0, |a| a.len()),
            subset.not_ready_addresses.map_or(0, |a| a.len()),
        )
    };
    until("the mirror with a ready gateway address", || async {
        ready_ips(endpoints_api.get_opt(&mirror_name).await.ok().flatten()) == (1, 0)
    })
    .await;
    let metrics_text = || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        text
    };
    let alive = format!("gateway_alive{{target_cluster_name=\"{link_name}\"}} 1");
    assert!(metrics_text().contains(&alive), "{}", metrics_text());

    up_tx.send_replace(false);
    until(
        "the gateway address not ready after three failed probes",
        || async { ready_ips(endpoints_api.get_opt(&mirror_name).await.ok().flatten()) == (0, 1) },
    )
    .await;
    let dead = format!("gateway_alive{{target_cluster_name=\"{link_name}\"}} 0");
    assert!(metrics_text().contains(&dead), "{}", metrics_text());
    assert!(
        Api::<Service>::namespaced(client.clone(), &ns)
            .get_opt(&mirror_name)
            .await
            .expect("get")
            .is_some(),
        "a dead gateway keeps the mirror"
    );
    let _ = stop_tx.send(());
    mirror.await.expect("the loop stops");
}
