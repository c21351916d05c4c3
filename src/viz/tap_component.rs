//! The tap component's objects in `mesh viz install`, with Linkerd viz's
//! names: ServiceAccount, Deployment and Service `tap`, its serving
//! certificate (Secret `tap-k8s-tls`, trusted by the APIService's
//! caBundle), `APIService v1alpha1.tap.linkerd.io`, and its permissions:
//! reading pods and workloads, asking the API server whether a user may
//! tap (`system:auth-delegator`), reading the aggregation layer's settings
//! in `kube-system` and the trust roots in the control plane's namespace.
//! Users get tap through the `linkerd-linkerd-viz-tap-admin` ClusterRole
//! (watch on `tap.linkerd.io`), bound as they choose.

use base64::Engine as _;

use super::install::{InstallArgs, NAMESPACE};
use crate::install::injector::WebhookTls;
use crate::install::manifest::Object;

/// The tap component's name (Deployment, Service, ServiceAccount).
pub const TAP: &str = "tap";
/// Its serving certificate's Secret.
const TLS_SECRET: &str = "tap-k8s-tls";
/// Where that Secret is mounted.
const TLS_DIR: &str = "/var/run/linkerd/tls";
/// The APIService that sends `tap.linkerd.io` to the tap component.
pub const API_SERVICE: &str = "v1alpha1.tap.linkerd.io";
/// The ClusterRole that lets a user tap.
pub const TAP_ADMIN_ROLE: &str = "linkerd-linkerd-viz-tap-admin";

/// The tap component's serving certificate, for `tap.linkerd-viz.svc`.
pub fn serving_tls(cluster_domain: &str) -> anyhow::Result<WebhookTls> {
    crate::install::injector::serving_tls(&format!("{TAP}.{NAMESPACE}.svc"), cluster_domain)
}

/// The identity the proxies let tap them.
pub fn tap_identity(args: &InstallArgs) -> String {
    format!(
        "{TAP}.{NAMESPACE}.serviceaccount.identity.{}.{}",
        args.linkerd_namespace, args.identity_trust_domain
    )
}

/// The tap component's objects.
pub fn objects(args: &InstallArgs, tls: &WebhookTls) -> Vec<Object> {
    let labels = serde_json::json!({"linkerd.io/extension": "viz", "component": TAP});
    let meta = |name: &str, namespace: Option<&str>| {
        let mut meta = serde_json::json!({"name": name, "labels": labels});
        if let Some(namespace) = namespace {
            meta["namespace"] = namespace.into();
        }
        meta
    };
    let ns = args.linkerd_namespace.as_str();
    let td = args.identity_trust_domain.as_str();
    let domain = args.cluster_domain.as_str();
    let role = format!("linkerd-{NAMESPACE}-{TAP}");
    let binding = |name: &str, namespace: Option<&str>, kind: &str, role: &str| {
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": if namespace.is_some() { "RoleBinding" } else { "ClusterRoleBinding" },
            "metadata": meta(name, namespace),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": TAP, "namespace": NAMESPACE}],
        })
    };
    let base64 = base64::engine::general_purpose::STANDARD;
    let admin_port = mesh_api::ports::TAP_ADMIN;
    let mut objects = vec![
        serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(TAP, Some(NAMESPACE))}),
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": meta(&role, None),
            "rules": [
                {"apiGroups": [""], "resources": ["pods", "namespaces", "replicationcontrollers"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["apps"], "resources": ["deployments", "replicasets", "statefulsets", "daemonsets"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": ["get", "list", "watch"]},
            ],
        }),
        binding(&role, None, "ClusterRole", &role),
        // SubjectAccessReviews: whether the user may tap.
        binding(
            &format!("{role}-auth-delegator"),
            None,
            "ClusterRole",
            "system:auth-delegator",
        ),
        // The API server's aggregation-layer settings (its CA, header names).
        binding(
            &format!("{role}-auth-reader"),
            Some("kube-system"),
            "Role",
            "extension-apiserver-authentication-reader",
        ),
        // The trust roots, to certify and to check the proxies with.
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": meta(&format!("{role}-trust-roots"), Some(ns)),
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [mesh_api::labels::TRUST_ROOTS_CONFIGMAP], "verbs": ["get"]}],
        }),
        binding(
            &format!("{role}-trust-roots"),
            Some(ns),
            "Role",
            &format!("{role}-trust-roots"),
        ),
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": meta(TAP_ADMIN_ROLE, None),
            "rules": [{"apiGroups": ["tap.linkerd.io"], "resources": ["*"], "verbs": ["watch"]}],
        }),
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": meta(TLS_SECRET, Some(NAMESPACE)),
            "stringData": {"tls.crt": tls.cert_pem, "tls.key": tls.key_pem},
        }),
        serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": meta(TAP, Some(NAMESPACE)),
            "spec": {
                "type": "ClusterIP",
                "selector": labels,
                "ports": [
                    {"name": "apiserver", "port": 443, "targetPort": mesh_api::ports::TAP},
                    {"name": "admin-http", "port": admin_port, "targetPort": admin_port},
                ],
            },
        }),
        super::install::component_deployment(
            TAP,
            &labels,
            if args.ha {
                super::install::TAP_HA_REPLICAS
            } else {
                1
            },
            serde_json::json!({
                "name": TAP,
                "image": args.image.controller_image(),
                "args": [
                    "tap",
                    format!("--controller-namespace={ns}"),
                    format!("--identity-trust-domain={td}"),
                    format!("--identity-local-name={}", tap_identity(args)),
                    format!("--identity-addr=linkerd-identity-headless.{ns}.svc.{domain}.:{}", mesh_api::ports::IDENTITY),
                    format!("--identity-svc-name=linkerd-identity.{ns}.serviceaccount.identity.{ns}.{td}"),
                    format!("--tls-cert-file={TLS_DIR}/tls.crt"),
                    format!("--tls-key-file={TLS_DIR}/tls.key"),
                ],
                "ports": [
                    {"name": "apiserver", "containerPort": mesh_api::ports::TAP},
                    {"name": "admin-http", "containerPort": admin_port},
                ],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": admin_port}},
                "livenessProbe": {"httpGet": {"path": "/live", "port": admin_port}, "initialDelaySeconds": 10},
                "volumeMounts": [
                    {"name": "tls", "mountPath": TLS_DIR, "readOnly": true},
                    {"name": "linkerd-identity-token", "mountPath": "/var/run/secrets/tokens", "readOnly": true},
                ],
            }),
            vec![
                serde_json::json!({"name": "tls", "secret": {"secretName": TLS_SECRET}}),
                serde_json::json!({"name": "linkerd-identity-token", "projected": {"sources": [{"serviceAccountToken": {
                    "audience": mesh_api::labels::IDENTITY_TOKEN_AUDIENCE,
                    "expirationSeconds": 86400,
                    "path": "linkerd-identity-token",
                }}]}}),
            ],
        ),
        serde_json::json!({
            "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": meta(API_SERVICE, None),
            "spec": {
                "group": "tap.linkerd.io",
                "version": "v1alpha1",
                "groupPriorityMinimum": 1000,
                "versionPriority": 100,
                "service": {"name": TAP, "namespace": NAMESPACE, "port": 443},
                "caBundle": base64.encode(&tls.ca_pem),
            },
        }),
    ];
    if args.ha {
        // One tap replica down at a time (a drain, a rolling update).
        objects.push(serde_json::json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": meta(TAP, Some(NAMESPACE)),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}},
        }));
    }
    objects
}
