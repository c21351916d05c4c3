//! The policy controller's objects (`linkerd-policy`, Service
//! `linkerd-policy` on 8090, as Linkerd names it): its own Deployment here
//! (Linkerd runs it beside the destination service), with the read access
//! its watches need and the cluster's default inbound policy and networks.

use super::component::{Component, Port, rule, serving_identity};
use super::manifest::Object;
use super::settings::Settings;

/// Its objects, in apply order.
pub fn objects(settings: &Settings) -> anyhow::Result<Vec<Object>> {
    let watch = ["get", "list", "watch"];
    let (identity_args, volumes) = serving_identity(settings, "linkerd-policy");
    let mut args = vec![
        "policy".into(),
        format!(
            "--controller-namespace={}",
            mesh_api::labels::CONTROL_PLANE_NAMESPACE
        ),
        format!("--identity-trust-domain={}", settings.identity_trust_domain),
        format!("--default-policy={}", settings.default_inbound_policy),
        format!("--cluster-networks={}", settings.cluster_networks),
        format!("--cluster-domain={}", settings.cluster_domain),
    ];
    args.extend(identity_args);
    Component {
        name: "linkerd-policy",
        service: "linkerd-policy",
        component: "policy",
        image: settings.controller_image.clone(),
        args,
        ports: vec![Port {
            name: "grpc",
            port: mesh_api::ports::POLICY,
            service_port: Some(mesh_api::ports::POLICY),
        }],
        admin_port: mesh_api::ports::POLICY_ADMIN,
        rules: vec![
            rule("", &["pods", "namespaces", "services"], &watch),
            rule(
                "policy.linkerd.io",
                &[
                    "servers",
                    "authorizationpolicies",
                    "meshtlsauthentications",
                    "networkauthentications",
                    "serverauthorizations",
                    "httproutes",
                ],
                &watch,
            ),
            rule(
                "gateway.networking.k8s.io",
                &["httproutes", "grpcroutes"],
                &watch,
            ),
            // Route status conditions (Accepted, ResolvedRefs).
            rule(
                "gateway.networking.k8s.io",
                &["httproutes/status", "grpcroutes/status"],
                &["get", "patch"],
            ),
            rule(
                "policy.linkerd.io",
                &["httproutes/status"],
                &["get", "patch"],
            ),
            // Refused objects become Events (kube-runtime's recorder writes
            // events.k8s.io/v1).
            rule("events.k8s.io", &["events"], &["create", "patch"]),
        ],
        headless_service: None,
        volumes,
        placement: settings.into(),
        resources: settings
            .resources
            .for_controller(&settings.resources.policy),
    }
    .objects()
}
