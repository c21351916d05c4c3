//! The mirror's loop against a real API server (the shared test cluster is
//! both the linked cluster, through a credentials Secret holding its
//! kubeconfig, and this one): a Link and an exported Service give a mirror
//! within a few periods and `gateway_alive 1`; when the gateway stops
//! answering its probes, the mirror's addresses turn not ready and
//! `gateway_alive` 0, and the mirror stays; the Link's status says so.
//! Through a forwarder the test can cut, an outage of the linked API keeps
//! every mirror, and the reconnect deletes only what went away meanwhile.
//! A linked cluster cannot take over local objects: a Service already
//! holding a mirror's name (with or without the mirror's labels) is left
//! alone through export and unexport, reported on the Link and in an
//! Event; exports past the Link's cap are reported, not mirrored, and never
//! displace a mirror.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use kube::Api;
use kube::api::PostParams;
use mesh_api::crds::link::Link;
use mesh_clusters::testing::{ApiForwarder, shared_cluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn ensure_link_crd(client: &kube::Client) {
    mesh_clusters::testing::ensure_crds(client, vec![mesh_api::crds::link::crd()]).await;
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
    for _ in 0..120 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{what} within 30 s");
}

/// A documentation address (RFC 5737): nothing answers there.
const STALE_ADDRESS: &str = "192.0.2.10";

/// A Link named after `ns` whose credentials reach the shared cluster
/// (through `server` when given), probing a test gateway on this host, and
/// its running mirror.
struct Linked {
    client: kube::Client,
    ns: String,
    link: String,
    gateway_up: tokio::sync::watch::Sender<bool>,
    registry: std::sync::Arc<prometheus_client::registry::Registry>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    mirror: tokio::task::JoinHandle<()>,
    readiness: mesh_core::admin::Readiness,
}

impl Linked {
    /// `server`: the linked API's address in the credentials; `follow`: a
    /// gateway Service (in the test namespace) the Link follows, its own
    /// gateway address then being a stale one.
    async fn start(prefix: &str, server: Option<&str>, follow: Option<&str>) -> Self {
        Self::start_capped(prefix, server, follow, 100).await
    }

    /// As [`Linked::start`], mirroring at most `max_services`.
    async fn start_capped(
        prefix: &str,
        server: Option<&str>,
        follow: Option<&str>,
        max_services: usize,
    ) -> Self {
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        let cluster = shared_cluster().await;
        let client = cluster.client.clone();
        ensure_link_crd(&client).await;
        let ns = cluster.namespace(prefix).await;
        let link = format!("k{}", &ns[ns.len() - 5..]);
        let (gateway_up, up_rx) = tokio::sync::watch::channel(true);
        let probe_port = gateway(up_rx).await;
        let kubeconfig = std::fs::read_to_string(cluster.kubeconfig()).expect("kubeconfig");
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("cluster-credentials-{link}")},
            "type": "mirror.linkerd.io/remote-kubeconfig",
            "stringData": {"kubeconfig": match server {
                Some(server) => cluster.kubeconfig_via(server),
                None => kubeconfig,
            }},
        }))
        .expect("secret");
        Api::<Secret>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &secret)
            .await
            .expect("create secret");
        let (address, annotations) = match follow {
            None => (host_ip().to_string(), serde_json::json!({})),
            Some(service) => (
                STALE_ADDRESS.to_owned(),
                serde_json::json!({"mesh.dev/gateway-service": format!("{ns}/{service}")}),
            ),
        };
        let resource: Link = serde_json::from_value(serde_json::json!({
            "apiVersion": "multicluster.linkerd.io/v1alpha3",
            "kind": "Link",
            "metadata": {"name": link, "annotations": annotations},
            "spec": {
                "targetClusterName": link,
                "targetClusterDomain": "cluster.local",
                "clusterCredentialsSecret": format!("cluster-credentials-{link}"),
                "gatewayAddress": address,
                "gatewayPort": "4143",
                "gatewayIdentity": "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local",
                "probeSpec": {"path": "/ready", "port": probe_port.to_string(), "period": "1s"},
                "selector": {"matchLabels": {"mirror.linkerd.io/exported": "true", "test-link": link}},
            },
        }))
        .expect("link");
        Api::<Link>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &resource)
            .await
            .expect("create link");
        let (registry, metrics) = mesh_mirror::controller::metrics();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let readiness = mesh_core::admin::Readiness::new();
        let mirror = tokio::spawn(mesh_mirror::controller::run(
            client.clone(),
            ns.clone(),
            link.clone(),
            max_services,
            metrics,
            readiness.clone(),
            async move {
                let _ = stop_rx.await;
            },
        ));
        Self {
            client,
            ns,
            link,
            gateway_up,
            registry,
            stop: Some(stop),
            mirror,
            readiness,
        }
    }

    /// Creates an exported Service `name` with one ready endpoint.
    async fn export(&self, name: &str) {
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"mirror.linkerd.io/exported": "true", "test-link": self.link}},
            "spec": {"ports": [{"name": "http", "port": 80}]},
        }))
        .expect("service");
        Api::<Service>::namespaced(self.client.clone(), &self.ns)
            .create(&PostParams::default(), &service)
            .await
            .expect("create service");
        let endpoints: Endpoints = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"mirror.linkerd.io/exported": "true", "test-link": self.link}},
            "subsets": [{"addresses": [{"ip": "10.10.0.9"}], "ports": [{"name": "http", "port": 8080}]}],
        }))
        .expect("endpoints");
        Api::<Endpoints>::namespaced(self.client.clone(), &self.ns)
            .create(&PostParams::default(), &endpoints)
            .await
            .expect("create endpoints");
    }

    fn mirror_name(&self, service: &str) -> String {
        format!("{service}-{}", self.link)
    }

    async fn mirror(&self, service: &str) -> Option<Service> {
        Api::<Service>::namespaced(self.client.clone(), &self.ns)
            .get_opt(&self.mirror_name(service))
            .await
            .expect("get mirror")
    }

    /// `(ready, not ready)` addresses of a mirror's Endpoints.
    async fn mirror_addresses(&self, service: &str) -> (usize, usize) {
        let subset = Api::<Endpoints>::namespaced(self.client.clone(), &self.ns)
            .get_opt(&self.mirror_name(service))
            .await
            .ok()
            .flatten()
            .and_then(|e| e.subsets)
            .and_then(|s| s.into_iter().next())
            .unwrap_or_default();
        (
            subset.addresses.map_or(0, |a| a.len()),
            subset.not_ready_addresses.map_or(0, |a| a.len()),
        )
    }

    /// The status of condition `type_` on the Link.
    async fn condition(&self, type_: &str) -> Option<String> {
        let link = Api::<Link>::namespaced(self.client.clone(), &self.ns)
            .get(&self.link)
            .await
            .expect("get link");
        let status = serde_json::to_value(link.status?).ok()?;
        status["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == type_)
            .and_then(|c| c["status"].as_str().map(str::to_owned))
    }

    async fn link_status(&self) -> serde_json::Value {
        let link = Api::<Link>::namespaced(self.client.clone(), &self.ns)
            .get(&self.link)
            .await
            .expect("get link");
        serde_json::to_value(link.status).expect("status")
    }

    fn metrics_text(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("encode");
        text
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.mirror).await.expect("the loop stops");
    }
}

#[tokio::test]
async fn a_link_mirrors_exported_services_and_follows_its_gateway() {
    let linked = Linked::start("mirror-ctl", None, None).await;
    linked.export("web").await;
    until("the mirror with a ready gateway address", || async {
        linked.mirror_addresses("web").await == (1, 0)
    })
    .await;
    assert!(
        linked.readiness.is_ready(),
        "a mirror that has mirrored has listed this cluster's mirrors, and says it is ready"
    );
    let alive = format!("gateway_alive{{target_cluster_name=\"{}\"}} 1", linked.link);
    assert!(
        linked.metrics_text().contains(&alive),
        "{}",
        linked.metrics_text()
    );
    until(
        "the Link's status: valid, remote reachable, gateway alive, one mirror",
        || async {
            linked.condition("Valid").await.as_deref() == Some("True")
                && linked.condition("RemoteReachable").await.as_deref() == Some("True")
                && linked.condition("GatewayAlive").await.as_deref() == Some("True")
                && linked.link_status().await["mirroredServices"] == 1
        },
    )
    .await;

    linked.gateway_up.send_replace(false);
    until(
        "the gateway address not ready after three failed probes",
        || async { linked.mirror_addresses("web").await == (0, 1) },
    )
    .await;
    let dead = format!("gateway_alive{{target_cluster_name=\"{}\"}} 0", linked.link);
    assert!(
        linked.metrics_text().contains(&dead),
        "{}",
        linked.metrics_text()
    );
    assert!(
        linked.mirror("web").await.is_some(),
        "a dead gateway keeps the mirror"
    );
    until("GatewayAlive False on the Link", || async {
        linked.condition("GatewayAlive").await.as_deref() == Some("False")
    })
    .await;
    linked.stop().await;
}

#[tokio::test]
async fn an_outage_of_the_linked_api_keeps_the_mirrors_and_the_reconnect_deletes_only_what_went_away()
 {
    let cluster = shared_cluster().await;
    let mut forwarder = ApiForwarder::start(cluster.api_address()).await;
    let via = forwarder.url();
    let linked = Linked::start("mirror-outage", Some(&via), None).await;
    linked.export("stays").await;
    linked.export("goes").await;
    until("both mirrors", || async {
        linked.mirror("stays").await.is_some() && linked.mirror("goes").await.is_some()
    })
    .await;
    let uid = |s: Option<Service>| s.and_then(|s| s.metadata.uid);
    let stays_uid = uid(linked.mirror("stays").await);

    forwarder.cut();
    Api::<Service>::namespaced(linked.client.clone(), &linked.ns)
        .delete("goes", &Default::default())
        .await
        .expect("delete the remote Service during the outage");
    until("RemoteReachable False on the Link", || async {
        linked.condition("RemoteReachable").await.as_deref() == Some("False")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        linked.mirror("goes").await.is_some() && linked.mirror("stays").await.is_some(),
        "an outage deletes no mirror, even of a Service that went away meanwhile"
    );

    forwarder.restore().await;
    until(
        "the mirror of the Service deleted during the outage removed",
        || async { linked.mirror("goes").await.is_none() },
    )
    .await;
    assert_eq!(
        uid(linked.mirror("stays").await),
        stays_uid,
        "the other mirror was never deleted nor recreated"
    );
    until("RemoteReachable True again", || async {
        linked.condition("RemoteReachable").await.as_deref() == Some("True")
    })
    .await;
    linked.stop().await;
}

#[tokio::test]
async fn a_link_made_from_a_gateway_service_follows_it_to_its_current_address() {
    let linked = Linked::start("mirror-follow", None, Some("gateway")).await;
    let services = Api::<Service>::namespaced(linked.client.clone(), &linked.ns);
    let gateway: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "gateway"},
        "spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "ports": [{"name": "mc-gateway", "port": 4143}]},
    }))
    .expect("gateway service");
    services
        .create(&PostParams::default(), &gateway)
        .await
        .expect("create the gateway Service");
    // What a load balancer writes once the gateway has its (new) address.
    services
        .patch_status(
            "gateway",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({
                "status": {"loadBalancer": {"ingress": [{"ip": host_ip().to_string()}]}}
            })),
        )
        .await
        .expect("advertise the gateway's address");
    linked.export("web").await;
    until(
        "the mirror's Endpoints at the gateway's current address, alive",
        || async {
            let endpoints = Api::<Endpoints>::namespaced(linked.client.clone(), &linked.ns)
                .get_opt(&linked.mirror_name("web"))
                .await
                .ok()
                .flatten();
            let ips: Vec<String> = endpoints
                .and_then(|e| e.subsets)
                .into_iter()
                .flatten()
                .flat_map(|s| s.addresses.unwrap_or_default())
                .map(|a| a.ip)
                .collect();
            ips == [host_ip().to_string()]
        },
    )
    .await;
    let status = linked.link_status().await;
    assert!(
        !status.to_string().contains(STALE_ADDRESS),
        "the Link's stale address is not probed: {status}"
    );
    linked.stop().await;
}

/// A Service in the test namespace, as its user would create it.
async fn local_service(linked: &Linked, name: &str, labels: serde_json::Value) -> Service {
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"selector": {"app": "mine"}, "ports": [{"name": "http", "port": 8080}]},
    }))
    .expect("service");
    Api::<Service>::namespaced(linked.client.clone(), &linked.ns)
        .create(&PostParams::default(), &service)
        .await
        .expect("create a local Service")
}

#[tokio::test]
async fn a_local_service_holding_a_mirrors_name_is_left_alone_through_export_and_unexport() {
    let linked = Linked::start("mirror-own", None, None).await;
    let services = Api::<Service>::namespaced(linked.client.clone(), &linked.ns);
    // One plain, one wearing the mirror's labels: labels prove nothing.
    let plain = local_service(&linked, &linked.mirror_name("web"), serde_json::json!({})).await;
    let lookalike = local_service(
        &linked,
        &linked.mirror_name("api"),
        serde_json::json!({
            "mirror.linkerd.io/mirrored-service": "true",
            "mirror.linkerd.io/cluster-name": linked.link,
        }),
    )
    .await;
    for name in ["web", "api", "ok"] {
        linked.export(name).await;
    }
    until(
        "the exported Service without a conflict mirrored",
        || async { linked.mirror_addresses("ok").await == (1, 0) },
    )
    .await;
    until("both conflicts on the Link's status", || async {
        linked.link_status().await["conflicts"]
            .as_array()
            .is_some_and(|c| c.len() == 2)
    })
    .await;
    let events =
        Api::<k8s_openapi::api::events::v1::Event>::namespaced(linked.client.clone(), &linked.ns);
    until("a MirrorConflict Event on the Link", || async {
        events
            .list(&Default::default())
            .await
            .expect("list events")
            .items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("MirrorConflict")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref())
                        == Some(linked.link.as_str())
            })
    })
    .await;
    let unchanged = |before: &Service, now: Option<Service>, what: &str| {
        let now = now.unwrap_or_else(|| panic!("{what} was deleted"));
        assert_eq!(now.metadata.uid, before.metadata.uid, "{what} was replaced");
        assert_eq!(
            now.metadata.resource_version, before.metadata.resource_version,
            "{what} was written: {now:?}"
        );
    };
    unchanged(
        &plain,
        linked.mirror("web").await,
        "the plain local Service",
    );
    unchanged(&lookalike, linked.mirror("api").await, "the look-alike");
    let endpoints = Api::<Endpoints>::namespaced(linked.client.clone(), &linked.ns);
    for name in ["web", "api"] {
        // Kubernetes' endpoints controller may have written them (the
        // local Services have a selector); the mirror must not have.
        let written = endpoints
            .get_opt(&linked.mirror_name(name))
            .await
            .expect("get endpoints");
        assert!(
            !written
                .as_ref()
                .is_some_and(|e| mesh_mirror::desired::written_by_mirror(&e.metadata)),
            "the mirror wrote Endpoints under the name of {name}'s local Service: {written:?}"
        );
    }

    // Unexport all three: the mirror goes, the local Services stay.
    for name in ["web", "api", "ok"] {
        services
            .delete(name, &Default::default())
            .await
            .expect("unexport");
    }
    until("the real mirror deleted", || async {
        linked.mirror("ok").await.is_none()
    })
    .await;
    unchanged(
        &plain,
        linked.mirror("web").await,
        "the plain local Service",
    );
    unchanged(&lookalike, linked.mirror("api").await, "the look-alike");
    linked.stop().await;
}

#[tokio::test]
async fn exports_past_the_links_cap_are_reported_and_never_displace_a_mirror() {
    let linked = Linked::start_capped("mirror-cap", None, None, 2).await;
    for name in ["b", "c"] {
        linked.export(name).await;
    }
    until("both mirrored", || async {
        linked.mirror("b").await.is_some() && linked.mirror("c").await.is_some()
    })
    .await;
    // New exports, one sorting before the mirrored ones.
    for name in ["a", "d"] {
        linked.export(name).await;
    }
    until("two exports reported over the cap", || async {
        let status = linked.link_status().await;
        status["rejectedServicesTotal"] == 2 && status["mirroredServices"] == 2
    })
    .await;
    let status = linked.link_status().await;
    let rejected = status["rejectedServices"].to_string();
    assert!(
        rejected.contains("cap of 2") && rejected.contains("\"a\"") && rejected.contains("\"d\""),
        "{rejected}"
    );
    for (name, mirrored) in [("a", false), ("b", true), ("c", true), ("d", false)] {
        assert_eq!(
            linked.mirror(name).await.is_some(),
            mirrored,
            "{name} mirrored: {mirrored}"
        );
    }
    linked.stop().await;
}
