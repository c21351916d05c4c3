//! The objects (`mesh viz install`) of viz's two read-only components,
//! each a ServiceAccount with read-only access to what it reports on, a
//! Service and a Deployment running `mesh-controller <component>`: the
//! dashboard, `web` on Linkerd's port 8084, and the `metrics-api` (Linkerd
//! viz's gRPC API) on 8085.

use super::install::{InstallArgs, NAMESPACE};
use crate::install::manifest::Object;

/// The web component's Service, Deployment and ServiceAccount.
pub const WEB: &str = "web";
/// The metrics-api's Service, Deployment and ServiceAccount.
pub const METRICS_API: &str = "metrics-api";

/// The web component's and the metrics-api's objects.
pub fn objects(args: &InstallArgs) -> Vec<Object> {
    let mut objects = read_only(
        args,
        WEB,
        ("http", mesh_api::ports::WEB, mesh_api::ports::WEB_ADMIN),
    );
    objects.extend(read_only(
        args,
        METRICS_API,
        (
            "grpc",
            mesh_api::ports::METRICS_API,
            mesh_api::ports::METRICS_API_ADMIN,
        ),
    ));
    objects
}

/// One read-only component `name` (also its `mesh-controller` subcommand),
/// serving `port` (named `port_name`) and its admin server on `admin_port`.
fn read_only(
    args: &InstallArgs,
    name: &str,
    (port_name, port, admin_port): (&str, u16, u16),
) -> Vec<Object> {
    let labels = serde_json::json!({"linkerd.io/extension": "viz", "component": name});
    let meta = |name: &str, namespaced: bool| {
        let mut meta = serde_json::json!({"name": name, "labels": labels});
        if namespaced {
            meta["namespace"] = NAMESPACE.into();
        }
        meta
    };
    let role = format!("linkerd-{NAMESPACE}-{name}");
    let read = ["get", "list", "watch"];
    vec![
        serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(name, true)}),
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
                {"apiGroups": ["gateway.networking.k8s.io", "policy.linkerd.io"], "resources": ["httproutes"], "verbs": read},
            ],
        }),
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": meta(&role, false),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}],
        }),
        serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": meta(name, true),
            "spec": {
                "type": "ClusterIP",
                "selector": labels,
                "ports": [
                    {"name": port_name, "port": port, "targetPort": port},
                    {"name": "admin-http", "port": admin_port, "targetPort": admin_port},
                ],
            },
        }),
        super::install::component_deployment(
            name,
            &labels,
            1,
            serde_json::json!({
                "name": name,
                "image": args.image.controller_image(),
                "args": [
                    name,
                    format!("--prometheus-url={}", args.prometheus_url.clone().unwrap_or_default()),
                    format!("--cluster-domain={}", args.cluster_domain),
                ],
                "ports": [
                    {"name": port_name, "containerPort": port},
                    {"name": "admin-http", "containerPort": admin_port},
                ],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": admin_port}},
                "livenessProbe": {"httpGet": {"path": "/live", "port": admin_port}, "initialDelaySeconds": 10},
            }),
            Vec::new(),
        ),
    ]
}
