//! The index as a reducer: Kubernetes objects in, answers out.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{
    Container, EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, PodIP, PodSpec,
    PodStatus, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint as SliceEndpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use linkerd2_proxy_api::destination::{request_match, update};
use mesh_api::crds::service_profile::ServiceProfile;
use mesh_api::crds::traffic_split::TrafficSplit;

use super::*;
use crate::authority::Target;
use crate::convert::{self, Sent};

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..ObjectMeta::default()
    }
}

fn service(ns: &str, name: &str, ip: &str, port: i32) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.into()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn slice(
    ns: &str,
    name: &str,
    svc: &str,
    port: i32,
    addrs: &[(&str, &str, bool)],
) -> EndpointSlice {
    let mut m = meta(ns, name);
    m.labels = Some([("kubernetes.io/service-name".to_owned(), svc.to_owned())].into());
    EndpointSlice {
        metadata: m,
        address_type: "IPv4".into(),
        ports: Some(vec![SlicePort {
            name: Some("http".into()),
            port: Some(port),
            ..SlicePort::default()
        }]),
        endpoints: addrs
            .iter()
            .map(|(ip, pod, ready)| SliceEndpoint {
                addresses: vec![(*ip).into()],
                conditions: Some(EndpointConditions {
                    ready: Some(*ready),
                    ..EndpointConditions::default()
                }),
                target_ref: Some(ObjectReference {
                    kind: Some("Pod".into()),
                    name: Some((*pod).into()),
                    namespace: Some(ns.into()),
                    ..ObjectReference::default()
                }),
                ..SliceEndpoint::default()
            })
            .collect(),
    }
}

fn pod(ns: &str, name: &str, ip: &str, meshed: bool) -> Pod {
    let mut m = meta(ns, name);
    m.labels = Some([("pod-template-hash".to_owned(), "5d8f7".to_owned())].into());
    m.owner_references = Some(vec![OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: "web-5d8f7".into(),
        uid: "u".into(),
        controller: Some(true),
        ..OwnerReference::default()
    }]);
    let mut containers = vec![Container {
        name: "app".into(),
        ..Container::default()
    }];
    if meshed {
        containers.push(Container {
            name: "linkerd-proxy".into(),
            ..Container::default()
        });
    }
    Pod {
        metadata: m,
        spec: Some(PodSpec {
            containers,
            service_account_name: Some("web".into()),
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            pod_ip: Some(ip.into()),
            pod_ips: Some(vec![PodIP { ip: ip.into() }]),
            ..PodStatus::default()
        }),
    }
}

fn svc_key(ns: &str, name: &str, port: u16) -> LookupKey {
    LookupKey::Service((ns.into(), name.into()), port)
}

fn endpoints(res: &Resolution) -> BTreeMap<SocketAddr, Endpoint> {
    match res {
        Resolution::Endpoints { endpoints, .. } => endpoints.clone(),
        Resolution::NotFound => panic!("expected endpoints, got NotFound"),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_saphyr::from_str(text).expect("yaml")
}

#[test]
fn ready_endpoints_carry_identity_labels_and_h2() {
    let mut index = Index::new(IndexConfig::default());
    index.apply_service(&service("shop", "web", "10.96.0.10", 80));
    index.apply_pod(&pod("shop", "web-5d8f7-a", "10.0.0.1", true));
    index.apply_pod(&pod("shop", "web-5d8f7-b", "10.0.0.2", false));
    index.apply_slice(&slice(
        "shop",
        "web-abc",
        "web",
        8080,
        &[
            ("10.0.0.1", "web-5d8f7-a", true),
            ("10.0.0.2", "web-5d8f7-b", true),
            ("10.0.0.3", "web-5d8f7-c", false),
        ],
    ));
    let eps = endpoints(&index.resolve(&svc_key("shop", "web", 80)));
    assert_eq!(
        eps.keys().copied().collect::<Vec<_>>(),
        [addr("10.0.0.1:8080"), addr("10.0.0.2:8080")]
    );
    let meshed = &eps[&addr("10.0.0.1:8080")];
    assert_eq!(
        meshed.identity.as_deref(),
        Some("web.shop.serviceaccount.identity.linkerd.cluster.local")
    );
    assert_eq!(meshed.hint.protocol, Some(Protocol::H2));
    assert_eq!(meshed.weight, 10_000);
    assert_eq!(meshed.labels["deployment"], "web");
    assert_eq!(meshed.labels["pod"], "web-5d8f7-a");
    assert_eq!(meshed.labels["pod_template_hash"], "5d8f7");
    assert_eq!(meshed.labels["serviceaccount"], "web");
    let plain = &eps[&addr("10.0.0.2:8080")];
    assert_eq!(plain.identity, None);
    assert_eq!(plain.hint, Hint::default());
}

#[test]
fn watchers_see_a_service_appear_scale_and_vanish() {
    let mut index = Index::new(IndexConfig::default());
    let key = index.lookup_key(&Target::Service {
        namespace: "shop".into(),
        name: "web".into(),
        port: 80,
    });
    let mut rx = index.watch_endpoints(&key);
    assert_eq!(*rx.borrow_and_update(), Resolution::NotFound);
    index.apply_service(&service("shop", "web", "10.96.0.10", 80));
    assert!(rx.has_changed().expect("open"));
    assert!(endpoints(&rx.borrow_and_update()).is_empty());
    index.apply_slice(&slice(
        "shop",
        "web-abc",
        "web",
        8080,
        &[("10.0.0.1", "a", true)],
    ));
    assert_eq!(endpoints(&rx.borrow_and_update()).len(), 1);
    index.apply_slice(&slice(
        "shop",
        "web-abc",
        "web",
        8080,
        &[("10.0.0.1", "a", true), ("10.0.0.2", "b", true)],
    ));
    assert_eq!(endpoints(&rx.borrow_and_update()).len(), 2);
    index.delete_slice("shop", "web-abc");
    assert!(endpoints(&rx.borrow_and_update()).is_empty());
    index.delete_service("shop", "web");
    assert_eq!(*rx.borrow_and_update(), Resolution::NotFound);
    // An unrelated change does not wake the watcher.
    index.apply_service(&service("shop", "other", "10.96.0.11", 80));
    assert!(!rx.has_changed().expect("open"));
}

#[test]
fn the_stream_follows_destination_proto_ordering() {
    let unknown = Resolution::NotFound;
    let (first, sent) = convert::updates(&Sent::Nothing, &unknown);
    assert!(
        matches!(&first[..], [u] if matches!(u.update, Some(update::Update::NoEndpoints(ref n)) if !n.exists))
    );
    let ep = |ip: &str| {
        (
            addr(ip),
            Endpoint {
                weight: 10_000,
                labels: BTreeMap::new(),
                identity: None,
                hint: Hint::default(),
                authority_override: None,
            },
        )
    };
    let two = Resolution::Endpoints {
        set_labels: BTreeMap::new(),
        endpoints: [ep("10.0.0.1:80"), ep("10.0.0.2:80")].into(),
    };
    let (updates, sent) = convert::updates(&sent, &two);
    assert!(
        matches!(&updates[..], [u] if matches!(u.update, Some(update::Update::Add(ref s)) if s.addrs.len() == 2))
    );
    let one = Resolution::Endpoints {
        set_labels: BTreeMap::new(),
        endpoints: [ep("10.0.0.2:80")].into(),
    };
    let (updates, sent) = convert::updates(&sent, &one);
    assert!(
        matches!(&updates[..], [u] if matches!(u.update, Some(update::Update::Remove(ref s)) if s.addrs.len() == 1))
    );
    let none = Resolution::Endpoints {
        set_labels: BTreeMap::new(),
        endpoints: BTreeMap::new(),
    };
    let (updates, _) = convert::updates(&sent, &none);
    assert!(matches!(&updates[..], [u] if matches!(u.update, Some(update::Update::Remove(_)))));
    let (updates, _) = convert::updates(&Sent::Nothing, &none);
    assert!(
        matches!(&updates[..], [u] if matches!(u.update, Some(update::Update::NoEndpoints(ref n)) if n.exists))
    );
}

#[test]
fn opaque_ports_get_the_transport_header_hint() {
    let mut index = Index::new(IndexConfig::default());
    let mut svc = service("db", "pg", "10.96.0.20", 5432);
    svc.metadata.annotations = None;
    index.apply_service(&svc);
    index.apply_pod(&pod("db", "pg-0", "10.0.1.1", true));
    index.apply_slice(&slice(
        "db",
        "pg-x",
        "pg",
        5432,
        &[("10.0.1.1", "pg-0", true)],
    ));
    let eps = endpoints(&index.resolve(&svc_key("db", "pg", 5432)));
    let ep = &eps[&addr("10.0.1.1:5432")];
    assert_eq!(ep.hint.protocol, Some(Protocol::Opaque));
    assert_eq!(ep.hint.opaque_transport_port, Some(4143));
    assert!(
        index.profile(&svc_key("db", "pg", 5432)).opaque_protocol,
        "5432 is opaque by default"
    );
    let mut annotated = service("db", "pg", "10.96.0.20", 5432);
    annotated.metadata.annotations = Some(
        [(
            "config.linkerd.io/opaque-ports".to_owned(),
            "9999".to_owned(),
        )]
        .into(),
    );
    index.apply_service(&annotated);
    assert!(
        !index.profile(&svc_key("db", "pg", 5432)).opaque_protocol,
        "the annotation replaces the defaults"
    );
}

#[test]
fn pod_ips_and_cluster_ips_are_looked_up() {
    let mut index = Index::new(IndexConfig::default());
    index.apply_service(&service("shop", "web", "10.96.0.10", 80));
    index.apply_pod(&pod("shop", "web-5d8f7-a", "10.0.0.1", true));
    let by_cluster_ip = index.lookup_key(&Target::Ip(addr("10.96.0.10:80")));
    assert_eq!(by_cluster_ip, svc_key("shop", "web", 80));
    let by_pod_ip = index.lookup_key(&Target::Ip(addr("10.0.0.1:8080")));
    let eps = endpoints(&index.resolve(&by_pod_ip));
    assert!(eps[&addr("10.0.0.1:8080")].identity.is_some());
    let profile = index.profile(&by_pod_ip);
    assert_eq!(profile.fully_qualified_name, "");
    assert!(profile.endpoint.expect("endpoint").tls_identity.is_some());
    assert_eq!(
        index.profile(&by_cluster_ip).fully_qualified_name,
        "web.shop.svc.cluster.local"
    );
    assert_eq!(
        index.resolve(&index.lookup_key(&Target::Ip(addr("10.9.9.9:80")))),
        Resolution::NotFound
    );
}

#[test]
fn a_statefulset_pod_is_looked_up_by_its_host_name_and_followed() {
    let mut index = Index::new(IndexConfig::default());
    let mut headless = service("shop", "db", "None", 5432);
    headless.spec.as_mut().expect("spec").cluster_ip = Some("None".into());
    index.apply_service(&headless);
    let with_hosts = |ips: [&str; 2]| {
        let mut slice = slice(
            "shop",
            "db-abc",
            "db",
            5432,
            &[(ips[0], "db-0", true), (ips[1], "db-1", true)],
        );
        for (endpoint, host) in slice.endpoints.iter_mut().zip(["db-0", "db-1"]) {
            endpoint.hostname = Some(host.into());
        }
        slice
    };
    index.apply_pod(&pod("shop", "db-0", "10.0.0.1", true));
    index.apply_pod(&pod("shop", "db-1", "10.0.0.2", true));
    index.apply_slice(&with_hosts(["10.0.0.1", "10.0.0.2"]));
    let target = crate::authority::parse("db-1.db.shop.svc.cluster.local:5432", "cluster.local")
        .expect("parses");
    let key = index.lookup_key(&target);
    let mut watch = index.watch_endpoints(&key);
    assert_eq!(
        endpoints(&watch.borrow_and_update())
            .keys()
            .collect::<Vec<_>>(),
        vec![&addr("10.0.0.2:5432")],
        "only db-1 answers for db-1.db"
    );
    assert!(
        index.profile(&key).endpoint.is_some(),
        "the profile names the pod, as a pod IP's does"
    );
    // db-1 is rescheduled with a new IP: the same name follows it.
    index.apply_pod(&pod("shop", "db-1", "10.0.0.7", true));
    index.apply_slice(&with_hosts(["10.0.0.1", "10.0.0.7"]));
    assert!(watch.has_changed().expect("open"));
    assert_eq!(
        endpoints(&watch.borrow_and_update())
            .keys()
            .collect::<Vec<_>>(),
        vec![&addr("10.0.0.7:5432")]
    );
    let unknown = crate::authority::parse("db-9.db.shop.svc.cluster.local:5432", "cluster.local")
        .expect("parses");
    assert_eq!(
        index.resolve(&index.lookup_key(&unknown)),
        Resolution::NotFound
    );
}

#[test]
fn a_mirrored_service_resolves_to_the_remote_gateway() {
    let mut index = Index::new(IndexConfig::default());
    let mut svc = service("shop", "web-east", "10.96.0.30", 80);
    svc.metadata.labels = Some(
        [
            (
                "mirror.linkerd.io/mirrored-service".to_owned(),
                "true".to_owned(),
            ),
            (
                "mirror.linkerd.io/cluster-name".to_owned(),
                "east".to_owned(),
            ),
        ]
        .into(),
    );
    svc.metadata.annotations = Some(
        [(
            "mirror.linkerd.io/remote-svc-fq-name".to_owned(),
            "web.shop.svc.east.local".to_owned(),
        )]
        .into(),
    );
    svc.spec.as_mut().expect("spec").selector = None;
    index.apply_service(&svc);
    let mut eps_meta = meta("shop", "web-east");
    eps_meta.annotations = Some(
        [
            (
                "mirror.linkerd.io/remote-gateway-identity".to_owned(),
                "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"
                    .to_owned(),
            ),
            ("mesh.dev/transport".to_owned(), "tcp".to_owned()),
        ]
        .into(),
    );
    index.apply_mirror_endpoints(&Endpoints {
        metadata: eps_meta,
        subsets: Some(vec![EndpointSubset {
            addresses: Some(vec![EndpointAddress {
                ip: "172.20.0.2".into(),
                ..EndpointAddress::default()
            }]),
            ports: Some(vec![EndpointPort {
                name: Some("http".into()),
                port: 4143,
                ..EndpointPort::default()
            }]),
            ..EndpointSubset::default()
        }]),
    });
    let Resolution::Endpoints {
        set_labels,
        endpoints,
    } = index.resolve(&svc_key("shop", "web-east", 80))
    else {
        panic!("resolves");
    };
    let ep = &endpoints[&addr("172.20.0.2:4143")];
    assert_eq!(
        ep.identity.as_deref(),
        Some("linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local")
    );
    assert_eq!(
        ep.authority_override.as_deref(),
        Some("web.shop.svc.east.local:80")
    );
    assert_eq!(
        ep.labels.get("gateway_transport").map(String::as_str),
        Some("tcp"),
        "the Link's transport reaches the proxies"
    );
    assert_eq!(set_labels["target_cluster"], "east");
    assert_eq!(set_labels["target_service"], "web");
    assert_eq!(set_labels["target_service_namespace"], "shop");
}

const PROFILE: &str = r#"
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata:
  name: web.shop.svc.cluster.local
  namespace: shop
spec:
  routes:
  - name: GET /books/{id}
    condition:
      method: GET
      pathRegex: /books/[^/]*
    responseClasses:
    - condition:
        status:
          min: 500
          max: 599
      isFailure: true
    isRetryable: true
    timeout: 300ms
  retryBudget:
    retryRatio: 0.1
    minRetriesPerSecond: 5
    ttl: 10s
"#;

#[test]
fn a_service_profile_gives_routes_and_budget_and_a_bad_one_keeps_the_last_good() {
    let mut index = Index::new(IndexConfig::default());
    index.apply_service(&service("shop", "web", "10.96.0.10", 80));
    let key = svc_key("shop", "web", 80);
    let mut rx = index.watch_profile(&key);
    assert_eq!(
        rx.borrow_and_update()
            .retry_budget
            .as_ref()
            .map(|b| b.retry_ratio),
        Some(0.2),
        "default budget"
    );
    index
        .apply_service_profile(&yaml::<ServiceProfile>(PROFILE))
        .expect("valid");
    let profile = rx.borrow_and_update().clone();
    let budget = profile.retry_budget.expect("budget");
    assert_eq!(
        (budget.retry_ratio, budget.min_retries_per_second),
        (0.1, 5)
    );
    assert_eq!(budget.ttl.map(|t| t.seconds), Some(10));
    let route = &profile.routes[0];
    assert!(route.is_retryable);
    assert_eq!(route.timeout.map(|t| t.nanos), Some(300_000_000));
    assert!(
        matches!(route.condition.as_ref().and_then(|c| c.r#match.as_ref()), Some(request_match::Match::All(s)) if s.matches.len() == 2)
    );

    let bad = PROFILE.replace("/books/[^/]*", "/books/([");
    let err = index
        .apply_service_profile(&yaml::<ServiceProfile>(&bad))
        .expect_err("bad regex");
    assert!(
        err.contains("pathRegex") && err.contains("spec.routes[0]"),
        "{err}"
    );
    assert!(!rx.has_changed().expect("open"), "the valid profile stays");
    assert_eq!(index.profile(&key).routes.len(), 1);
}

const SPLIT: &str = r#"
apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata:
  name: web-split
  namespace: shop
spec:
  service: web
  backends:
  - service: web
    weight: 9
  - service: web-east
    weight: 1
"#;

#[test]
fn a_traffic_split_becomes_dst_overrides_and_bad_weights_are_refused() {
    let mut index = Index::new(IndexConfig::default());
    index.apply_service(&service("shop", "web", "10.96.0.10", 80));
    index
        .apply_traffic_split(&yaml::<TrafficSplit>(SPLIT))
        .expect("valid");
    let overrides = index.profile(&svc_key("shop", "web", 80)).dst_overrides;
    let got: Vec<(String, u32)> = overrides
        .iter()
        .map(|d| (d.authority.clone(), d.weight))
        .collect();
    assert_eq!(
        got,
        [
            ("web.shop.svc.cluster.local:80".to_owned(), 90_000),
            ("web-east.shop.svc.cluster.local:80".to_owned(), 10_000)
        ]
    );
    let negative = SPLIT.replace("weight: 1", "weight: -1");
    let err = index
        .apply_traffic_split(&yaml::<TrafficSplit>(&negative))
        .expect_err("negative");
    assert!(err.contains("spec.backends[1].weight"), "{err}");
    assert_eq!(
        index
            .profile(&svc_key("shop", "web", 80))
            .dst_overrides
            .len(),
        2,
        "the valid split stays"
    );
    index.delete_traffic_split("shop", "web-split");
    assert!(
        index
            .profile(&svc_key("shop", "web", 80))
            .dst_overrides
            .is_empty()
    );
}
