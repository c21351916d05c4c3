//! The identity service's objects, named as Linkerd names them.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, HTTPGetAction, Namespace, PodSpec,
    PodTemplateSpec, Probe, Secret, SecretVolumeSource, Service, ServiceAccount, ServicePort,
    ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mesh_api::labels::{
    CONTROL_PLANE_COMPONENT, CONTROL_PLANE_NAMESPACE as NS, CONTROL_PLANE_NS,
    CONTROLLER_ADMIN_PORT, IS_CONTROL_PLANE, ISSUER_SECRET, TRUST_ROOTS_CONFIGMAP,
};

use super::manifest::{Object, object};
use super::{InstallArgs, TrustMaterial};

const NAME: &str = "linkerd-identity";
const TRUST_ROOTS_DIR: &str = "/var/run/linkerd/identity/trust-roots";
const ISSUER_DIR: &str = "/var/run/linkerd/identity/issuer";

fn labels(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = [(CONTROL_PLANE_NS, NS)]
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.retain(|_, v| !v.is_empty());
    labels
}

fn meta(name: &str, namespace: Option<&str>, extra_labels: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels(extra_labels)),
        ..ObjectMeta::default()
    }
}

fn identity_selector() -> BTreeMap<String, String> {
    [(CONTROL_PLANE_COMPONENT.to_owned(), "identity".to_owned())].into()
}

/// Everything the identity service needs, in apply order.
pub fn objects(args: &InstallArgs, material: &TrustMaterial) -> anyhow::Result<Vec<Object>> {
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
    let account = ServiceAccount {
        metadata: meta(NAME, Some(NS), &component),
        ..ServiceAccount::default()
    };
    let role_name = format!("linkerd-{NS}-identity");
    let role = ClusterRole {
        metadata: meta(&role_name, None, &component),
        rules: Some(vec![
            PolicyRule {
                api_groups: Some(vec!["authentication.k8s.io".into()]),
                resources: Some(vec!["tokenreviews".into()]),
                verbs: vec!["create".into()],
                ..PolicyRule::default()
            },
            PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["events".into()]),
                verbs: vec!["create".into(), "patch".into()],
                ..PolicyRule::default()
            },
        ]),
        ..ClusterRole::default()
    };
    let binding = ClusterRoleBinding {
        metadata: meta(&role_name, None, &component),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: role_name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: NAME.into(),
            namespace: Some(NS.into()),
            ..Subject::default()
        }]),
    };
    let grpc_port = ServicePort {
        name: Some("grpc".into()),
        port: i32::from(mesh_api::ports::IDENTITY),
        target_port: Some(IntOrString::Int(i32::from(mesh_api::ports::IDENTITY))),
        ..ServicePort::default()
    };
    let service = |name: &str, headless: bool| Service {
        metadata: meta(name, Some(NS), &component),
        spec: Some(ServiceSpec {
            selector: Some(identity_selector()),
            ports: Some(vec![grpc_port.clone()]),
            cluster_ip: headless.then(|| "None".to_owned()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    let lifetime = humantime::format_duration(args.identity_issuance_lifetime)
        .to_string()
        .replace(' ', "");
    let skew = humantime::format_duration(args.identity_clock_skew_allowance)
        .to_string()
        .replace(' ', "");
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin-http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(5),
        ..Probe::default()
    };
    let container = Container {
        name: "identity".into(),
        image: Some(args.controller_image.clone()),
        args: Some(vec![
            "identity".into(),
            format!("--controller-namespace={NS}"),
            format!("--identity-trust-domain={}", args.identity_trust_domain),
            format!("--identity-issuance-lifetime={lifetime}"),
            format!("--identity-clock-skew-allowance={skew}"),
            format!("--trust-anchors-file={TRUST_ROOTS_DIR}/ca-bundle.crt"),
            format!("--issuer-dir={ISSUER_DIR}"),
        ]),
        ports: Some(vec![
            ContainerPort {
                name: Some("grpc".into()),
                container_port: i32::from(mesh_api::ports::IDENTITY),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("admin-http".into()),
                container_port: i32::from(CONTROLLER_ADMIN_PORT),
                ..ContainerPort::default()
            },
        ]),
        readiness_probe: Some(probe("/ready")),
        liveness_probe: Some(probe("/live")),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "trust-roots".into(),
                mount_path: TRUST_ROOTS_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "identity-issuer".into(),
                mount_path: ISSUER_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    };
    let deployment = Deployment {
        metadata: meta(NAME, Some(NS), &component),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(identity_selector()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&component)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(NAME.into()),
                    containers: vec![container],
                    volumes: Some(vec![
                        Volume {
                            name: "trust-roots".into(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: TRUST_ROOTS_CONFIGMAP.into(),
                                ..ConfigMapVolumeSource::default()
                            }),
                            ..Volume::default()
                        },
                        Volume {
                            name: "identity-issuer".into(),
                            secret: Some(SecretVolumeSource {
                                secret_name: Some(ISSUER_SECRET.into()),
                                ..SecretVolumeSource::default()
                            }),
                            ..Volume::default()
                        },
                    ]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    };
    Ok(vec![
        object(&namespace)?,
        object(&trust_roots)?,
        object(&issuer)?,
        object(&account)?,
        object(&role)?,
        object(&binding)?,
        object(&service(NAME, false))?,
        object(&service(&format!("{NAME}-headless"), true))?,
        object(&deployment)?,
    ])
}
