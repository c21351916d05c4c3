//! The web component's objects (`mesh viz install`): its ServiceAccount
//! with read-only access to what the dashboard shows, Service `web` on
//! Linkerd's port 8084 and its Deployment running `mesh-controller web`.

use super::install::{InstallArgs, NAMESPACE};
use crate::install::manifest::Object;

/// The web component's Service, Deployment and ServiceAccount.
pub const WEB: &str = "web";

/// The web component's objects.
pub fn objects(args: &InstallArgs) -> Vec<Object> {
    let labels = serde_json::json!({"linkerd.io/extension": "viz", "component": WEB});
    let meta = |name: &str, namespaced: bool| {
        let mut meta = serde_json::json!({"name": name, "labels": labels});
        if namespaced {
            meta["namespace"] = NAMESPACE.into();
        }
        meta
    };
    let role = format!("linkerd-{NAMESPACE}-{WEB}");
    let read = ["get", "list", "watch"];
    let (port, admin_port) = (mesh_api::ports::WEB, mesh_api::ports::WEB_ADMIN);
    vec![
        serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(WEB, true)}),
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": meta(&role, false),
            "rules": [
                {"apiGroups": [""], "resources": ["pods", "namespaces", "services"], "verbs": read},
                {"apiGroups": ["apps"], "resources": ["deployments", "replicasets", "statefulsets", "daemonsets"], "verbs": read},
                {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": read},
                {"apiGroups": ["multicluster.linkerd.io"], "resources": ["links"], "verbs": read},
                {"apiGroups": ["split.smi-spec.io"], "resources": ["trafficsplits"], "verbs": read},
                {"apiGroups": ["linkerd.io"], "resources": ["serviceprofiles"], "verbs": read},
            ],
        }),
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": meta(&role, false),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": WEB, "namespace": NAMESPACE}],
        }),
        serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": meta(WEB, true),
            "spec": {
                "type": "ClusterIP",
                "selector": labels,
                "ports": [
                    {"name": "http", "port": port, "targetPort": port},
                    {"name": "admin-http", "port": admin_port, "targetPort": admin_port},
                ],
            },
        }),
        super::install::component_deployment(
            WEB,
            &labels,
            1,
            serde_json::json!({
                "name": WEB,
                "image": args.image.controller_image(),
                "args": [
                    "web",
                    format!("--prometheus-url={}", args.prometheus_url.clone().unwrap_or_default()),
                    format!("--cluster-domain={}", args.cluster_domain),
                ],
                "ports": [
                    {"name": "http", "containerPort": port},
                    {"name": "admin-http", "containerPort": admin_port},
                ],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": admin_port}},
                "livenessProbe": {"httpGet": {"path": "/live", "port": admin_port}, "initialDelaySeconds": 10},
            }),
            Vec::new(),
        ),
    ]
}
