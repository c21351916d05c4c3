//! The objects of `mesh failover install`: namespace `linkerd-failover`,
//! the ServiceAccount `linkerd-failover` with what the controller reads
//! (TrafficSplits, Services, Endpoints, Pods), writes (TrafficSplits,
//! Events), and its Deployment running `mesh-controller failover`.

use clap::Args;
use mesh_api::labels::{FAILOVER_CONTROLLER_NAME as NAME, FAILOVER_NAMESPACE as NS};

use crate::install::manifest::{self, Object};

/// The controller's admin port (`/metrics`, `/ready`, `/live`).
pub const ADMIN_PORT: u16 = mesh_api::ports::FAILOVER_ADMIN;

/// Flags of `mesh failover install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Read success rates from this Prometheus server (http://host:port)
    /// instead of scraping the client proxies.
    #[arg(long, env = "MESH_FAILOVER_PROMETHEUS_URL", value_name = "URL")]
    pub prometheus_url: Option<String>,
    /// The `failover.linkerd.io/controlled-by` value to manage.
    #[arg(long, env = "MESH_FAILOVER_CONTROLLED_BY", default_value = NAME)]
    pub controlled_by: String,
    #[command(flatten)]
    pub image: crate::images::ControllerImageArgs,
}

/// Renders the extension as one YAML stream.
pub fn render(args: &InstallArgs) -> anyhow::Result<String> {
    if let Some(url) = &args.prometheus_url {
        mesh_failover::prometheus::Prometheus::new(url, std::time::Duration::from_secs(1))?;
    }
    manifest::to_yaml(&objects(args))
}

pub(crate) fn objects(args: &InstallArgs) -> Vec<Object> {
    let labels = serde_json::json!({"linkerd.io/extension": "failover", "component": NAME});
    let meta = |namespaced: bool| {
        let mut meta = serde_json::json!({"name": NAME, "labels": labels});
        if namespaced {
            meta["namespace"] = NS.into();
        }
        meta
    };
    let read = ["get", "list", "watch"];
    let mut controller_args = vec![
        "failover".to_owned(),
        format!("--controlled-by={}", args.controlled_by),
        format!("--admin-listen=0.0.0.0:{ADMIN_PORT}"),
    ];
    if let Some(url) = &args.prometheus_url {
        controller_args.push(format!("--prometheus-url={url}"));
    }
    vec![
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": NS, "labels": {"linkerd.io/extension": "failover"}}}),
        serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(true)}),
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": meta(false),
            "rules": [
                {"apiGroups": ["split.smi-spec.io"], "resources": ["trafficsplits"], "verbs": ["get", "list", "watch", "patch", "update"]},
                {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["httproutes"], "verbs": ["get", "list", "watch", "patch", "update"]},
                {"apiGroups": [""], "resources": ["services", "endpoints", "pods"], "verbs": read},
                {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
                {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
            ],
        }),
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": meta(false),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NS}],
        }),
        // Its Lease, in its own namespace only: of two replicas, the one
        // holding it decides.
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": meta(true),
            "rules": [
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
            ],
        }),
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": meta(true),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NS}],
        }),
        serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": meta(true),
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"component": NAME}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": NAME,
                        "containers": [{
                            "name": "failover",
                            "image": args.image.controller_image(),
                            "args": controller_args,
                            "env": [
                                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                            ],
                            "ports": [{"name": "admin-http", "containerPort": ADMIN_PORT}],
                            "readinessProbe": {"httpGet": {"path": "/ready", "port": "admin-http"}},
                            "livenessProbe": {"httpGet": {"path": "/live", "port": "admin-http"}},
                        }],
                    },
                },
            },
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_controller_is_rendered_with_its_permissions_and_prometheus() {
        let args = InstallArgs {
            prometheus_url: Some("http://prometheus.monitoring:9090".into()),
            controlled_by: NAME.into(),
            image: crate::images::ControllerImageArgs {
                registry: Some("registry.example/acme".into()),
                controller_image: None,
            },
        };
        let objects = objects(&args);
        let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
                "Deployment"
            ]
        );
        let container = &objects[6]["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            container["args"][3],
            "--prometheus-url=http://prometheus.monitoring:9090"
        );
        assert_eq!(
            container["image"],
            concat!(
                "registry.example/acme/controller:v",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert!(
            render(&InstallArgs {
                prometheus_url: Some("https://x".into()),
                ..args
            })
            .is_err()
        );
    }
}
