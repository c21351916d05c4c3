//! A west/east pair for real: both nodes register and turn Ready, and a
//! Deployment's pod runs through the node agent with its address from the
//! node's pod CIDR, env from the downward API, ConfigMap and Secret
//! volumes (an edit reaching the running pod), an exec readiness probe,
//! logs through the API server, and a replacement when it is deleted; a LoadBalancer Service gets an address on the WAN side.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::Api;
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use mesh_clusters::Binaries;
use mesh_clusters::pair::{Pair, PairOptions};
use mesh_clusters::topology::Side;

fn mesh_bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mesh-node"))
        .parent()
        .expect("bin dir")
        .to_path_buf()
}

async fn ready_pods(api: &Api<Pod>, selector: &str) -> Vec<Pod> {
    api.list(&ListParams::default().labels(selector))
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .collect()
}

async fn wait_ready(api: &Api<Pod>, selector: &str, what: &str) -> Pod {
    for _ in 0..600 {
        if let Some(pod) = ready_pods(api, selector).await.into_iter().next() {
            return pod;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = api.list(&ListParams::default().labels(selector)).await;
    panic!(
        "{what}: no ready pod within 60 s; pods: {:#?}",
        all.map(|l| l.items.into_iter().map(|p| p.status).collect::<Vec<_>>())
    );
}

#[tokio::test]
async fn pods_run_on_both_clusters_nodes() {
    let binaries = Binaries::locate().expect("the Kubernetes binaries (scripts/setup.sh)");
    let dir = tempfile::tempdir().expect("dir");
    let pair = Pair::start(
        &binaries,
        &dir.path().join("pair"),
        PairOptions {
            cluster_domain: "cluster.local".into(),
            flat: false,
            wan_settings: String::new(),
            mesh_bin_dir: mesh_bin_dir(),
        },
    )
    .await
    .expect("the pair starts");
    let west = pair.cluster(Side::West).client().await.expect("client");
    let cms: Api<ConfigMap> = Api::namespaced(west.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "greeting"},
        "data": {"greeting.txt": "hello from a configmap"}
    }))
    .expect("configmap");
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("configmap");
    let secrets: Api<Secret> = Api::namespaced(west.clone(), "default");
    let set_token = |token: &str| serde_json::json!({"metadata": {"name": "creds"}, "stringData": {"token": token}});
    let secret: Secret = serde_json::from_value(set_token("first")).expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let deploy: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "sleeper"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "sleeper"}},
            "template": {
                "metadata": {"labels": {"app": "sleeper"}},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "volumes": [
                        {"name": "greeting", "configMap": {"name": "greeting"}},
                        {"name": "creds", "secret": {"secretName": "creds"}}
                    ],
                    "containers": [{
                        "name": "main",
                        "image": "busybox:1.36",
                        "command": ["sh", "-c",
                            "echo \"$POD_NAME $(cat /etc/greeting/greeting.txt) $(hostname)\" > /tmp/mesh-pair-$POD_NAME; echo \"started $POD_NAME\"; exec sleep 3600"],
                        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                        "volumeMounts": [
                            {"name": "greeting", "mountPath": "/etc/greeting"},
                            {"name": "creds", "mountPath": "/etc/creds"}
                        ],
                        "readinessProbe": {"exec": {"command": ["sh", "-c",
                            "test -f /etc/greeting/greeting.txt && grep -qx first /etc/creds/token"]}, "periodSeconds": 1}
                    }]
                }
            }
        }
    }))
    .expect("deployment");
    Api::<Deployment>::namespaced(west.clone(), "default")
        .create(&PostParams::default(), &deploy)
        .await
        .expect("deployment");
    let pods: Api<Pod> = Api::namespaced(west.clone(), "default");
    let pod = wait_ready(&pods, "app=sleeper", "the sleeper").await;
    let name = pod.metadata.name.clone().expect("name");
    let ip: std::net::Ipv4Addr = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("pod IP")
        .parse()
        .expect("ipv4");
    assert!(
        pair.plan.cluster(Side::West).pod_cidr.contains(ip),
        "{ip} is in west's pod CIDR"
    );
    // Ready says the volume is there; the shell writes its file right after.
    let mut written = std::fs::read_to_string(format!("/tmp/mesh-pair-{name}"));
    for _ in 0..40 {
        if written.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        written = std::fs::read_to_string(format!("/tmp/mesh-pair-{name}"));
    }
    let written = written.expect("the pod wrote its file within 10 s");
    assert_eq!(
        written.trim(),
        format!("{name} hello from a configmap {name}")
    );
    let _ = std::fs::remove_file(format!("/tmp/mesh-pair-{name}"));
    // `kubectl logs`: the API server asks the node agent's kubelet API.
    let logs = pods
        .logs(&name, &LogParams::default())
        .await
        .expect("the pod's logs through the API server");
    assert_eq!(logs, format!("started {name}\n"));

    // An edited Secret reaches the running pod (as the kubelet's periodic
    // sync does): its probe reads the new token and fails, then passes
    // again once the old one is back.
    let patch_token = |token: &str| {
        let secrets = secrets.clone();
        let patch = set_token(token);
        async move {
            secrets
                .patch("creds", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .expect("patch the secret");
        }
    };
    patch_token("second").await;
    wait_readiness(&pods, &name, false, "the pod sees the edited Secret").await;
    patch_token("first").await;
    wait_readiness(&pods, &name, true, "the pod sees the Secret restored").await;

    pods.delete(&name, &DeleteParams::default())
        .await
        .expect("delete");
    for _ in 0..600 {
        let ready = ready_pods(&pods, "app=sleeper").await;
        if ready
            .iter()
            .any(|p| p.metadata.name.as_deref() != Some(name.as_str()))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let replaced = ready_pods(&pods, "app=sleeper").await;
    assert!(
        replaced
            .iter()
            .any(|p| p.metadata.name.as_deref() != Some(name.as_str())),
        "the Deployment replaced the deleted pod"
    );
    let east = pair.cluster(Side::East).client().await.expect("client");
    let east_node = Api::<k8s_openapi::api::core::v1::Node>::all(east.clone())
        .get("east")
        .await
        .expect("east's node");
    assert!(east_node.spec.and_then(|s| s.pod_cidr).is_some());
    let gateway = load_balancer_address(&east).await;
    let east_net = pair.plan.cluster(Side::East);
    assert!(
        east_net.lb_pool.contains(gateway),
        "{gateway} is in east's pool {}",
        east_net.lb_pool
    );
    let wan = mesh_clusters::netns::ip_in(&east_net.netns, &["-4", "addr", "show", "dev", "wan0"])
        .await
        .expect("east's WAN interface");
    assert!(wan.contains(&format!("{gateway}/32")), "{wan}");
    let survivors: Vec<String> = replaced
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let prefix = pair.plan.prefix.clone();
    pair.stop().await;
    assert!(mesh_clusters::netns::list_with_prefix(&prefix).is_empty());
    for name in survivors {
        let _ = std::fs::remove_file(format!("/tmp/mesh-pair-{name}"));
        assert!(
            pod_processes(&name).is_empty(),
            "pod {name}'s processes outlived the clusters: {:?}",
            pod_processes(&name)
        );
    }
}

/// Waits up to 40 s (four of the node agent's volume syncs) for pod
/// `name`'s Ready condition to be `ready`.
async fn wait_readiness(pods: &Api<Pod>, name: &str, ready: bool, what: &str) {
    let want = if ready { "True" } else { "False" };
    let mut seen = None;
    for _ in 0..400 {
        let pod = pods.get(name).await.expect("get pod");
        seen = pod
            .status
            .and_then(|s| s.conditions)
            .and_then(|c| c.into_iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status);
        if seen.as_deref() == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: pod {name} still Ready={seen:?} after 40 s");
}

/// Creates a LoadBalancer Service and returns the address it is given.
async fn load_balancer_address(client: &kube::Client) -> std::net::Ipv4Addr {
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "gateway"},
        "spec": {"type": "LoadBalancer", "selector": {"app": "gateway"},
                 "ports": [{"name": "mc-gateway", "port": 4143}]}
    }))
    .expect("service");
    services
        .create(&PostParams::default(), &service)
        .await
        .expect("create the service");
    for _ in 0..100 {
        let ip = services
            .get("gateway")
            .await
            .expect("service")
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|lb| lb.ingress)
            .and_then(|i| i.first().and_then(|i| i.ip.clone()));
        if let Some(ip) = ip {
            return ip.parse().expect("an IPv4 address");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the LoadBalancer Service got no address within 10 s");
}

/// Processes whose environment says they belong to pod `name`.
fn pod_processes(name: &str) -> Vec<i32> {
    let marker = format!("HOSTNAME={name}");
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == marker.as_bytes()))
        })
        .collect()
}
