//! The identity service's objects, named as Linkerd names them.

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Namespace, Secret, SecretVolumeSource, Volume, VolumeMount,
};
use mesh_api::labels::{
    CONTROL_PLANE_COMPONENT, CONTROL_PLANE_NAMESPACE as NS, IS_CONTROL_PLANE, ISSUER_SECRET,
    TRUST_ROOTS_CONFIGMAP,
};

use super::TrustMaterial;
use super::component::{Component, Port, meta, rule};
use super::manifest::{Object, object};
use super::settings::Settings;

const NAME: &str = "linkerd-identity";
/// Where controllers find the trust anchors (`ca-bundle.crt`).
pub const TRUST_ROOTS_DIR: &str = "/var/run/linkerd/identity/trust-roots";
const ISSUER_DIR: &str = "/var/run/linkerd/identity/issuer";

/// Everything the identity service needs, in apply order.
pub fn objects(settings: &Settings, material: &TrustMaterial) -> anyhow::Result<Vec<Object>> {
    let component = [(CONTROL_PLANE_COMPONENT, "identity")];
    let namespace = Namespace {
        metadata: meta(
            NS,
            None,
            &[
                (IS_CONTROL_PLANE, "true"),
                ("config.linkerd.io/admission-webhooks", "disabled"),
            ],
        ),
        ..Namespace::default()
    };
    let trust_roots = ConfigMap {
        metadata: meta(TRUST_ROOTS_CONFIGMAP, Some(NS), &[]),
        data: Some([("ca-bundle.crt".to_owned(), material.anchors_pem.clone())].into()),
        ..ConfigMap::default()
    };
    let issuer = Secret {
        metadata: meta(ISSUER_SECRET, Some(NS), &component),
        type_: Some("kubernetes.io/tls".into()),
        string_data: Some(
            [
                ("tls.crt".to_owned(), material.issuer_cert_pem.clone()),
                ("tls.key".to_owned(), material.issuer_key_pem.clone()),
                ("ca.crt".to_owned(), material.anchors_pem.clone()),
            ]
            .into(),
        ),
        ..Secret::default()
    };
    let lifetime = super::settings::duration_arg(settings.issuance_lifetime);
    let skew = super::settings::duration_arg(settings.clock_skew_allowance);
    let mount = |name: &str, dir: &str| VolumeMount {
        name: name.into(),
        mount_path: dir.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    let identity = Component {
        name: NAME,
        service: NAME,
        component: "identity",
        image: settings.controller_image.clone(),
        args: vec![
            "identity".into(),
            format!("--controller-namespace={NS}"),
            format!("--identity-trust-domain={}", settings.identity_trust_domain),
            format!("--identity-issuance-lifetime={lifetime}"),
            format!("--identity-clock-skew-allowance={skew}"),
            format!("--trust-anchors-file={TRUST_ROOTS_DIR}/ca-bundle.crt"),
            format!("--issuer-dir={ISSUER_DIR}"),
        ],
        ports: vec![Port {
            name: "grpc",
            port: mesh_api::ports::IDENTITY,
            service_port: Some(mesh_api::ports::IDENTITY),
        }],
        admin_port: mesh_api::ports::IDENTITY_ADMIN,
        rules: vec![
            rule("authentication.k8s.io", &["tokenreviews"], &["create"]),
            rule("", &["events"], &["create", "patch"]),
            // The trust roots copies in workloads' namespaces, and the
            // issuer in force recorded in the control plane's own.
            rule(
                "",
                &["configmaps"],
                &["get", "list", "watch", "create", "patch"],
            ),
        ],
        headless_service: Some(format!("{NAME}-headless")),
        volumes: vec![
            trust_roots_volume(),
            (
                Volume {
                    name: "identity-issuer".into(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(ISSUER_SECRET.into()),
                        ..SecretVolumeSource::default()
                    }),
                    ..Volume::default()
                },
                mount("identity-issuer", ISSUER_DIR),
            ),
        ],
        placement: settings.into(),
        resources: settings
            .resources
            .for_controller(&settings.resources.identity),
    };
    let mut objects = Vec::new();
    if settings.install_namespace {
        objects.push(object(&namespace)?);
    }
    if !settings.external_ca {
        objects.push(object(&trust_roots)?);
    }
    if !settings.external_issuer {
        objects.push(object(&issuer)?);
    }
    objects.extend(identity.objects()?);
    Ok(objects)
}

/// The trust roots ConfigMap as a volume at [`TRUST_ROOTS_DIR`].
pub fn trust_roots_volume() -> (Volume, VolumeMount) {
    (
        Volume {
            name: "trust-roots".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: TRUST_ROOTS_CONFIGMAP.into(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        VolumeMount {
            name: "trust-roots".into(),
            mount_path: TRUST_ROOTS_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
    )
}
