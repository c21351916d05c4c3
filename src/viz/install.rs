//! The objects of `mesh viz install`: namespace `linkerd-viz` and, as
//! Linkerd's viz ships it, Prometheus (ServiceAccount, the ClusterRole it
//! discovers pods with, its configuration, Service and Deployment) scraping
//! every proxy's `:4191/metrics` with Linkerd's relabelling, so the series
//! carry `namespace`, `pod`, `deployment`, … as users' dashboards expect.

use clap::Args;

use crate::install::manifest::{self, Object};

pub use mesh_viz::{CONFIG, NAMESPACE, PROMETHEUS, PROMETHEUS_PORT};
/// The Prometheus image viz runs (the release the local clusters run, built
/// by `scripts/setup.sh`).
pub const PROMETHEUS_IMAGE: &str = "prom/prometheus:v3.16.0";

/// Flags of `mesh viz install`.
#[derive(Debug, Clone, Args)]
pub struct InstallArgs {
    /// How often Prometheus scrapes the proxies (Linkerd's
    /// `prometheus.globalConfig.scrape_interval`).
    #[arg(long, env = "MESH_VIZ_SCRAPE_INTERVAL", default_value = "10s", value_parser = prometheus_duration)]
    pub scrape_interval: String,
    /// How long Prometheus keeps samples.
    #[arg(long, env = "MESH_VIZ_RETENTION", default_value = "6h", value_parser = prometheus_duration)]
    pub retention: String,
    /// Prometheus's image.
    #[arg(long, env = "MESH_VIZ_PROMETHEUS_IMAGE", default_value = PROMETHEUS_IMAGE)]
    pub prometheus_image: String,
    /// Use this Prometheus instead of installing one: an in-cluster
    /// Service URL (`http://prometheus.monitoring.svc.cluster.local:9090`)
    /// that scrapes the proxies with Linkerd's configuration. The CLI asks
    /// it through the API server's service proxy.
    #[arg(long, env = "MESH_VIZ_PROMETHEUS_URL", value_name = "URL", value_parser = external_prometheus)]
    pub prometheus_url: Option<String>,
    /// The control plane's namespace (whose proxies are scraped).
    #[arg(long, env = "MESH_CONTROL_PLANE_NAMESPACE", default_value = mesh_api::labels::CONTROL_PLANE_NAMESPACE)]
    pub linkerd_namespace: String,
    /// The trust domain of workload identities (the tap component's
    /// identity is in it).
    #[arg(long, env = "MESH_IDENTITY_TRUST_DOMAIN", default_value = mesh_api::identity::DEFAULT_TRUST_DOMAIN)]
    pub identity_trust_domain: String,
    /// The cluster's DNS domain.
    #[arg(long, env = "MESH_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// The tap component's image.
    #[command(flatten)]
    pub image: crate::images::ControllerImageArgs,
    /// High availability, as Linkerd viz's `values-ha.yaml`: 3 tap replicas
    /// spread over nodes and zones, a PodDisruptionBudget letting one down
    /// at a time.
    #[arg(long, env = "MESH_VIZ_HA")]
    pub ha: bool,
}

/// Tap's replicas with `--ha`.
pub const TAP_HA_REPLICAS: u32 = 3;

fn external_prometheus(url: &str) -> Result<String, String> {
    super::prometheus::ServiceRef::parse(url).map(|_| url.to_owned())
}

/// A Prometheus duration (`10s`, `1m`, `6h`), refused when it is not one.
fn prometheus_duration(text: &str) -> Result<String, String> {
    super::prometheus::duration_seconds(text).map(|_| text.to_owned())
}

/// Renders the extension as one YAML stream.
pub fn render(args: &InstallArgs) -> anyhow::Result<String> {
    let tls = super::tap_component::serving_tls(&args.cluster_domain)?;
    manifest::to_yaml(&objects(args, &tls))
}

/// What `mesh viz uninstall` renders for `kubectl delete -f -`: the
/// namespace (and with it everything in it) and viz's cluster-scoped
/// objects, by name.
pub fn render_uninstall(args: &InstallArgs) -> anyhow::Result<String> {
    let names_only = crate::install::injector::WebhookTls {
        ca_pem: String::new(),
        cert_pem: String::new(),
        key_pem: String::new(),
    };
    // The namespace takes what is in it; the rest is named.
    let removed: Vec<Object> = objects(args, &names_only)
        .into_iter()
        .filter(|o| o["metadata"].get("namespace").and_then(|n| n.as_str()) != Some(NAMESPACE))
        .map(|o| {
            let mut metadata = serde_json::json!({"name": o["metadata"]["name"]});
            if let Some(namespace) = o["metadata"].get("namespace") {
                metadata["namespace"] = namespace.clone();
            }
            serde_json::json!({
                "apiVersion": o["apiVersion"],
                "kind": o["kind"],
                "metadata": metadata,
            })
        })
        .collect();
    manifest::to_yaml(&removed)
}

/// Prometheus's configuration: itself, the control plane's and the
/// multicluster controllers' admin ports, and every proxy of this control
/// plane, labelled as Linkerd's viz labels them.
pub fn prometheus_config(args: &InstallArgs) -> String {
    let interval = &args.scrape_interval;
    let linkerd = &args.linkerd_namespace;
    let failover = mesh_api::labels::FAILOVER_NAMESPACE;
    let failover_component = mesh_api::labels::FAILOVER_CONTROLLER_NAME;
    format!(
        r#"global:
  scrape_interval: "{interval}"
  scrape_timeout: "{interval}"
  evaluation_interval: "{interval}"

scrape_configs:
- job_name: 'prometheus'
  static_configs:
  - targets: ['localhost:{PROMETHEUS_PORT}']

- job_name: 'linkerd-controller'
  kubernetes_sd_configs:
  - role: pod
    namespaces:
      names: ['{linkerd}', '{NAMESPACE}']
  relabel_configs:
  - source_labels: [__meta_kubernetes_pod_container_port_name]
    action: keep
    regex: .*admin$
  - source_labels: [__meta_kubernetes_pod_container_port_name]
    action: drop
    regex: linkerd-admin
  - source_labels: [__meta_kubernetes_pod_container_name]
    action: replace
    target_label: component

- job_name: 'linkerd-multicluster-controller'
  kubernetes_sd_configs:
  - role: pod
  relabel_configs:
  - source_labels: [__meta_kubernetes_pod_label_component, __meta_kubernetes_pod_container_port_name]
    action: keep
    regex: (linkerd-service-mirror|controller);admin-http$
  - source_labels: [__meta_kubernetes_pod_container_port_name]
    action: drop
    regex: linkerd-admin
  - source_labels: [__meta_kubernetes_pod_container_name]
    action: replace
    target_label: component

# The failover controller: its phase and weights per TrafficSplit, for
# the dashboard's clusters page.
- job_name: 'linkerd-failover'
  kubernetes_sd_configs:
  - role: pod
    namespaces:
      names: ['{failover}']
  relabel_configs:
  - source_labels: [__meta_kubernetes_pod_label_component, __meta_kubernetes_pod_container_port_name]
    action: keep
    regex: {failover_component};admin-http
  - source_labels: [__meta_kubernetes_pod_name]
    action: replace
    target_label: pod

- job_name: 'linkerd-proxy'
  kubernetes_sd_configs:
  - role: pod
  relabel_configs:
  - source_labels: [__meta_kubernetes_pod_phase]
    regex: (Pending|Running)
    action: keep
  - source_labels:
    - __meta_kubernetes_pod_container_name
    - __meta_kubernetes_pod_container_port_name
    - __meta_kubernetes_pod_label_linkerd_io_control_plane_ns
    action: keep
    regex: ^linkerd-proxy;linkerd-admin;{linkerd}$
  - source_labels: [__meta_kubernetes_namespace]
    action: replace
    target_label: namespace
  - source_labels: [__meta_kubernetes_pod_name]
    action: replace
    target_label: pod
  # A Kubernetes job is k8s_job, not to clash with Prometheus's own job.
  - source_labels: [__meta_kubernetes_pod_label_linkerd_io_proxy_job]
    action: replace
    target_label: k8s_job
  - action: labeldrop
    regex: __meta_kubernetes_pod_label_linkerd_io_proxy_job
  # linkerd.io/proxy-deployment=web becomes deployment=web, and so on.
  - action: labelmap
    regex: __meta_kubernetes_pod_label_linkerd_io_proxy_(.+)
  - action: labeldrop
    regex: __meta_kubernetes_pod_label_linkerd_io_proxy_(.+)
  - action: labelmap
    regex: __meta_kubernetes_pod_label_linkerd_io_(.+)
  # Every other pod label too, linkerd.io/ prefixes dropped.
  - action: labelmap
    regex: __meta_kubernetes_pod_label_(.+)
    replacement: __tmp_pod_label_$1
  - action: labelmap
    regex: __tmp_pod_label_linkerd_io_(.+)
    replacement: __tmp_pod_label_$1
  - action: labeldrop
    regex: __tmp_pod_label_linkerd_io_(.+)
  - action: labelmap
    regex: __tmp_pod_label_(.+)
"#
    )
}

/// The Deployment of one of viz's controller components: `replicas` of
/// `container` as ServiceAccount `name` in viz's namespace (spread over
/// nodes and zones when there are several), with the restricted security
/// context every component runs with, and `volumes`.
pub(crate) fn component_deployment(
    name: &str,
    labels: &serde_json::Value,
    replicas: u32,
    mut container: serde_json::Value,
    volumes: Vec<serde_json::Value>,
) -> Object {
    container["securityContext"] = serde_json::json!({
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "runAsUser": 2103,
    });
    let mut spec = serde_json::json!({
        "serviceAccountName": name,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
    });
    if !volumes.is_empty() {
        spec["volumes"] = volumes.into();
    }
    if replicas > 1 {
        let selector: std::collections::BTreeMap<String, String> =
            serde_json::from_value(labels.clone()).unwrap_or_default();
        spec["affinity"] = serde_json::to_value(crate::multicluster::install::spread(&selector))
            .unwrap_or_default();
    }
    serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": spec},
        },
    })
}

pub(crate) fn objects(
    args: &InstallArgs,
    tap_tls: &crate::install::injector::WebhookTls,
) -> Vec<Object> {
    let mut objects = prometheus_objects(args);
    objects.extend(super::tap_component::objects(args, tap_tls));
    objects.extend(super::web_component::objects(args));
    objects
}

/// The namespace, viz's configuration and (unless an external one is
/// given) Prometheus.
fn prometheus_objects(args: &InstallArgs) -> Vec<Object> {
    let labels = serde_json::json!({
        "linkerd.io/extension": "viz",
        "component": PROMETHEUS,
        "namespace": NAMESPACE,
    });
    let meta = |name: &str, namespaced: bool| {
        let mut meta = serde_json::json!({"name": name, "labels": labels});
        if namespaced {
            meta["namespace"] = NAMESPACE.into();
        }
        meta
    };
    let cluster_role = format!("linkerd-{NAMESPACE}-{PROMETHEUS}");
    let config = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": CONFIG, "namespace": NAMESPACE, "labels": {"linkerd.io/extension": "viz"}},
        "data": {"prometheusUrl": args.prometheus_url.clone().unwrap_or_default()},
    });
    let namespace = serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": {"linkerd.io/extension": "viz"}}});
    if args.prometheus_url.is_some() {
        return vec![namespace, config];
    }
    vec![
        namespace,
        config,
        serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(PROMETHEUS, true)}),
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": meta(&cluster_role, false),
            "rules": [
                {"apiGroups": [""], "resources": ["nodes", "nodes/proxy", "pods"], "verbs": ["get", "list", "watch"]},
            ],
        }),
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": meta(&cluster_role, false),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
            "subjects": [{"kind": "ServiceAccount", "name": PROMETHEUS, "namespace": NAMESPACE}],
        }),
        serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": meta("prometheus-config", true),
            "data": {"prometheus.yml": prometheus_config(args)},
        }),
        serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": meta(PROMETHEUS, true),
            "spec": {
                "type": "ClusterIP",
                "selector": {"linkerd.io/extension": "viz", "component": PROMETHEUS},
                "ports": [{"name": "admin", "port": PROMETHEUS_PORT, "targetPort": PROMETHEUS_PORT}],
            },
        }),
        serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": meta(PROMETHEUS, true),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": PROMETHEUS,
                        "securityContext": {"fsGroup": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [{
                            "name": PROMETHEUS,
                            "image": args.prometheus_image,
                            "args": [
                                "--log.level=info",
                                "--log.format=logfmt",
                                "--config.file=/etc/prometheus/prometheus.yml",
                                "--storage.tsdb.path=/data",
                                format!("--storage.tsdb.retention.time={}", args.retention),
                            ],
                            "ports": [{"name": "admin", "containerPort": PROMETHEUS_PORT}],
                            "readinessProbe": {"httpGet": {"path": "/-/ready", "port": PROMETHEUS_PORT}},
                            "livenessProbe": {"httpGet": {"path": "/-/healthy", "port": PROMETHEUS_PORT}, "initialDelaySeconds": 30, "timeoutSeconds": 30},
                            "securityContext": {
                                "allowPrivilegeEscalation": false,
                                "capabilities": {"drop": ["ALL"]},
                                "readOnlyRootFilesystem": true,
                                "runAsNonRoot": true,
                                "runAsUser": 65534,
                                "runAsGroup": 65534,
                            },
                            "volumeMounts": [
                                {"name": "data", "mountPath": "/data"},
                                {"name": "prometheus-config", "mountPath": "/etc/prometheus/prometheus.yml", "subPath": "prometheus.yml", "readOnly": true},
                            ],
                        }],
                        "volumes": [
                            {"name": "data", "emptyDir": {}},
                            {"name": "prometheus-config", "configMap": {"name": "prometheus-config"}},
                        ],
                    },
                },
            },
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> InstallArgs {
        InstallArgs {
            scrape_interval: "10s".into(),
            retention: "6h".into(),
            prometheus_image: PROMETHEUS_IMAGE.into(),
            linkerd_namespace: "linkerd".into(),
            prometheus_url: None,
            identity_trust_domain: "cluster.local".into(),
            cluster_domain: "cluster.local".into(),
            image: Default::default(),
            ha: false,
        }
    }

    fn tls() -> crate::install::injector::WebhookTls {
        crate::viz::tap_component::serving_tls("cluster.local").expect("tls")
    }

    #[test]
    fn ha_spreads_three_tap_replicas_and_lets_one_down_at_a_time() {
        let objects = objects(&InstallArgs { ha: true, ..args() }, &tls());
        let find = |kind: &str, name: &str| {
            objects
                .iter()
                .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("no {kind}/{name}"))
        };
        let tap = find("Deployment", "tap");
        assert_eq!(tap["spec"]["replicas"], 3);
        let spread = &tap["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"];
        assert_eq!(
            spread[0]["podAffinityTerm"]["topologyKey"],
            "kubernetes.io/hostname"
        );
        assert_eq!(
            find("PodDisruptionBudget", "tap")["spec"]["maxUnavailable"],
            1
        );
        assert_eq!(find("Deployment", "web")["spec"]["replicas"], 1);
        let plain = super::objects(&args(), &tls());
        assert!(!plain.iter().any(|o| o["kind"] == "PodDisruptionBudget"));
    }

    #[test]
    fn an_external_prometheus_replaces_the_bundled_one() {
        let url = "http://prometheus.monitoring.svc.cluster.local:9090";
        let objects = objects(
            &InstallArgs {
                prometheus_url: Some(url.into()),
                ..args()
            },
            &tls(),
        );
        let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
        assert_eq!(kinds[..2], ["Namespace", "ConfigMap"]);
        assert!(
            !objects.iter().any(|o| o["metadata"]["name"] == PROMETHEUS),
            "no Prometheus of its own"
        );
        assert_eq!(objects[1]["data"]["prometheusUrl"], url);
        // The components that ask Prometheus are told where it is.
        for component in ["web", "metrics-api"] {
            let deployment = objects
                .iter()
                .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == component)
                .unwrap_or_else(|| panic!("no Deployment {component}"));
            let container = &deployment["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(container["args"][0], component);
            assert_eq!(container["args"][1], format!("--prometheus-url={url}"));
        }
        let api = objects
            .iter()
            .find(|o| o["kind"] == "Service" && o["metadata"]["name"] == "metrics-api")
            .expect("Service metrics-api");
        assert_eq!(api["spec"]["ports"][0]["name"], "grpc");
        assert_eq!(api["spec"]["ports"][0]["port"], 8085);
    }

    #[test]
    fn uninstall_removes_the_namespace_and_cluster_wide_objects() {
        let yaml = render_uninstall(&args()).expect("render");
        for name in [
            "kind: Namespace",
            "name: linkerd-viz",
            "kind: ClusterRole\n",
            "kind: ClusterRoleBinding",
        ] {
            assert!(yaml.contains(name), "{name:?} missing from\n{yaml}");
        }
        assert!(
            !yaml.contains("kind: Deployment"),
            "namespaced objects go with the namespace"
        );
        // Tap's objects outside viz's namespace go by name.
        for name in [
            "name: v1alpha1.tap.linkerd.io",
            "name: linkerd-linkerd-viz-tap-auth-reader\n  namespace: kube-system",
            "name: linkerd-linkerd-viz-tap-trust-roots\n  namespace: linkerd",
        ] {
            assert!(yaml.contains(name), "{name:?} missing from\n{yaml}");
        }
    }

    #[test]
    fn prometheus_is_rendered_with_linkerds_names_and_scrape_rules() {
        let objects = objects(&args(), &tls());
        let names: Vec<String> = objects[..8]
            .iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap_or_default(),
                    o["metadata"]["name"].as_str().unwrap_or_default()
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                "Namespace/linkerd-viz",
                "ConfigMap/linkerd-viz-config",
                "ServiceAccount/prometheus",
                "ClusterRole/linkerd-linkerd-viz-prometheus",
                "ClusterRoleBinding/linkerd-linkerd-viz-prometheus",
                "ConfigMap/prometheus-config",
                "Service/prometheus",
                "Deployment/prometheus",
            ]
        );
        assert_eq!(objects[1]["data"]["prometheusUrl"], "");
        let config = objects[5]["data"]["prometheus.yml"]
            .as_str()
            .unwrap_or_default();
        let parsed: serde_json::Value =
            serde_saphyr::from_str(config).expect("the configuration is YAML");
        let jobs: Vec<&str> = parsed["scrape_configs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|j| j["job_name"].as_str())
            .collect();
        assert_eq!(
            jobs,
            [
                "prometheus",
                "linkerd-controller",
                "linkerd-multicluster-controller",
                "linkerd-failover",
                "linkerd-proxy"
            ]
        );
        assert!(config.contains("regex: ^linkerd-proxy;linkerd-admin;linkerd$"));
        assert!(config.contains("regex: linkerd-failover;admin-http"));
        let container = &objects[7]["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["args"][4], "--storage.tsdb.retention.time=6h");
        assert_eq!(container["image"], PROMETHEUS_IMAGE);
    }
}
