//! The destination service's objects (`linkerd-destination`, Services
//! `linkerd-dst` and `linkerd-dst-headless` on 8086), named as Linkerd names
//! them, with the read access its watches need.

use k8s_openapi::api::core::v1::VolumeMount;
use mesh_api::identity::IdentityName;
use mesh_api::labels::{CONTROL_PLANE_NAMESPACE as NS, IDENTITY_TOKEN_PATH};
use mesh_injector::inject::{TOKEN_VOLUME, identity_token_volume};

use super::component::{Component, Port, rule};
use super::identity::{TRUST_ROOTS_DIR, trust_roots_volume};
use super::manifest::Object;
use super::settings::Settings;

/// The destination service's admin port.
const ADMIN_PORT: u16 = mesh_api::ports::DESTINATION_ADMIN;

/// Its objects, in apply order.
pub fn objects(settings: &Settings) -> anyhow::Result<Vec<Object>> {
    let watch = ["get", "list", "watch"];
    let identity = |account: &str| IdentityName {
        service_account: account.into(),
        namespace: NS.into(),
        control_namespace: NS.into(),
        trust_domain: settings.identity_trust_domain.clone(),
    };
    let token_dir = IDENTITY_TOKEN_PATH
        .rsplit_once('/')
        .map_or(IDENTITY_TOKEN_PATH, |(dir, _)| dir);
    Component {
        name: "linkerd-destination",
        service: "linkerd-dst",
        component: "destination",
        image: settings.controller_image.clone(),
        args: vec![
            "destination".into(),
            format!("--controller-namespace={NS}"),
            format!("--identity-trust-domain={}", settings.identity_trust_domain),
            format!("--cluster-domain={}", settings.cluster_domain),
            // Proxies reach it over mutual TLS, as they reach a meshed pod.
            format!("--identity-local-name={}", identity("linkerd-destination")),
            format!("--identity-trust-anchors-file={TRUST_ROOTS_DIR}/ca-bundle.crt"),
            format!(
                "--identity-addr=linkerd-identity-headless.{NS}.svc.{}.:{}",
                settings.cluster_domain,
                mesh_api::ports::IDENTITY
            ),
            format!("--identity-svc-name={}", identity("linkerd-identity")),
            format!("--identity-token-file={IDENTITY_TOKEN_PATH}"),
        ],
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
            rule("gateway.networking.k8s.io", &["httproutes"], &watch),
            rule("", &["events"], &["create", "patch"]),
        ],
        headless_service: Some("linkerd-dst-headless".into()),
        volumes: vec![
            trust_roots_volume(),
            (
                identity_token_volume(),
                VolumeMount {
                    name: TOKEN_VOLUME.into(),
                    mount_path: token_dir.into(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                },
            ),
        ],
        placement: settings.into(),
    }
    .objects()
}
