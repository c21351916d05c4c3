//! The destination service's objects (`linkerd-destination`, Services
//! `linkerd-dst` and `linkerd-dst-headless` on 8086), named as Linkerd names
//! them, with the read access its watches need.

use super::component::{Component, Port, rule, serving_identity};
use super::manifest::Object;
use super::settings::Settings;

/// The destination service's admin port.
const ADMIN_PORT: u16 = mesh_api::ports::DESTINATION_ADMIN;

/// Its objects, in apply order.
pub fn objects(settings: &Settings) -> anyhow::Result<Vec<Object>> {
    let watch = ["get", "list", "watch"];
    // Proxies reach it over mutual TLS, as they reach a meshed pod.
    let (identity_args, volumes) = serving_identity(settings, "linkerd-destination");
    let mut args = vec![
        "destination".into(),
        format!(
            "--controller-namespace={}",
            mesh_api::labels::CONTROL_PLANE_NAMESPACE
        ),
        format!("--identity-trust-domain={}", settings.identity_trust_domain),
        format!("--cluster-domain={}", settings.cluster_domain),
    ];
    args.extend(identity_args);
    Component {
        name: "linkerd-destination",
        service: "linkerd-dst",
        component: "destination",
        image: settings.controller_image.clone(),
        args,
        ports: vec![Port {
            name: "grpc",
            port: mesh_api::ports::DESTINATION,
            service_port: Some(mesh_api::ports::DESTINATION),
        }],
        admin_port: ADMIN_PORT,
        rules: vec![
            rule(
                "",
                &["services", "endpoints", "pods", "nodes", "namespaces"],
                &watch,
            ),
            rule("discovery.k8s.io", &["endpointslices"], &watch),
            rule("linkerd.io", &["serviceprofiles"], &watch),
            rule("split.smi-spec.io", &["trafficsplits"], &watch),
            // Refused objects become Events (kube-runtime's recorder writes
            // events.k8s.io/v1).
            rule("events.k8s.io", &["events"], &["create", "patch"]),
        ],
        headless_service: Some("linkerd-dst-headless".into()),
        volumes,
        placement: settings.into(),
        resources: settings
            .resources
            .for_controller(&settings.resources.destination),
    }
    .objects()
}
