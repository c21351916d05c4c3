//! The objects of `mesh multicluster install`. The gateway is a proxy: the
//! Deployment runs a do-nothing container and the injector adds the proxy,
//! configured as a gateway for this cluster's Services; linked clusters
//! reach it through the LoadBalancer Service, whose annotations tell
//! `mesh multicluster link` its identity and how to probe it. A read-only
//! ServiceAccount with a token is what linked clusters' mirrors use.

use clap::Args;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Affinity, Container, Namespace, PodAffinityTerm, PodAntiAffinity, PodSpec, PodTemplateSpec,
    Secret, Service, ServiceAccount, ServicePort, ServiceSpec, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mesh_api::identity::IdentityName;
use mesh_api::labels::{
    CONTROL_PLANE_NAMESPACE, INJECT_ANNOTATION, MIRROR_GATEWAY_IDENTITY,
    MULTICLUSTER_NAMESPACE as NS, TRUST_ROOTS_CONFIGMAP,
};

use crate::install::manifest::{self, Object, object};

/// The gateway's name (Deployment, ServiceAccount, Service).
pub const GATEWAY: &str = "linkerd-gateway";
/// The ServiceAccount linked clusters' mirrors read this cluster as.
pub const REMOTE_ACCESS: &str = "linkerd-service-mirror-remote-access-default";
/// Its long-lived token Secret, which `mesh multicluster link` reads.
pub const REMOTE_ACCESS_TOKEN: &str = "linkerd-service-mirror-remote-access-default-token";
/// The annotation saying where the gateway answers probes.
pub const PROBE_PATH_ANNOTATION: &str = "mirror.linkerd.io/probe-path";
/// The annotation saying how often (seconds) to probe it.
pub const PROBE_PERIOD_ANNOTATION: &str = "mirror.linkerd.io/probe-period";

/// Flags of `mesh multicluster install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The trust domain of workload identities (the gateway's identity is under it).
    #[arg(long, env = "MESH_IDENTITY_TRUST_DOMAIN", default_value = mesh_api::identity::DEFAULT_TRUST_DOMAIN)]
    pub identity_trust_domain: String,
    /// How linked clusters reach the gateway: `LoadBalancer`, or `NodePort`.
    #[arg(
        long,
        env = "MESH_GATEWAY_SERVICE_TYPE",
        default_value = "LoadBalancer"
    )]
    pub gateway_service_type: String,
    /// Seconds between the service mirror's probes of this gateway.
    #[arg(long, env = "MESH_GATEWAY_PROBE_SECONDS", default_value_t = 3)]
    pub gateway_probe_seconds: u32,
    /// Gateway replicas.
    #[arg(long, env = "MESH_GATEWAY_REPLICAS", default_value_t = 1)]
    pub gateway_replicas: u32,
    /// A highly available gateway: at least 3 replicas, spread over nodes
    /// and zones where the cluster has them, a PodDisruptionBudget letting
    /// one down at a time, and rolling updates that start a new pod before
    /// stopping an old one.
    #[arg(long, env = "MESH_GATEWAY_HA")]
    pub ha: bool,
    /// How long a stopping gateway pod keeps serving, new connections
    /// included, before it drains: time for its Service to move new
    /// connections to the replacement pod (Linkerd's
    /// `config.alpha.linkerd.io/proxy-wait-before-exit-seconds`).
    #[arg(
        long,
        env = "MESH_GATEWAY_WAIT_BEFORE_EXIT_SECONDS",
        default_value_t = 10
    )]
    pub gateway_wait_before_exit_seconds: u32,
    /// The image of the gateway pod's own (idle) container.
    #[arg(
        long,
        env = "MESH_GATEWAY_PAUSE_IMAGE",
        default_value = "registry.k8s.io/pause:3.10"
    )]
    pub gateway_pause_image: String,
    /// A mesh identity that may use the gateway (`*` for any under the
    /// shared trust anchor, `*.<suffix>`, or a name); repeatable.
    #[arg(
        long = "gateway-allowed-identity",
        env = "MESH_GATEWAY_ALLOWED_IDENTITIES",
        value_delimiter = ',',
        default_value = "*",
        value_name = "IDENTITY"
    )]
    pub gateway_allowed_identities: Vec<String>,
    /// The labels of the Services the gateway forwards to (`key=value`,
    /// comma-separated, all required); what the Links of other clusters
    /// select should match it.
    #[arg(
        long,
        env = "MESH_GATEWAY_EXPORT_SELECTOR",
        default_value = "mirror.linkerd.io/exported=true",
        value_name = "LABELS"
    )]
    pub export_selector: String,
}

/// Renders the extension as one YAML stream.
pub fn render(args: &InstallArgs) -> anyhow::Result<String> {
    anyhow::ensure!(
        matches!(
            args.gateway_service_type.as_str(),
            "LoadBalancer" | "NodePort"
        ),
        "--gateway-service-type {:?}: LoadBalancer or NodePort",
        args.gateway_service_type
    );
    anyhow::ensure!(args.gateway_replicas >= 1, "--gateway-replicas: at least 1");
    manifest::to_yaml(&objects(args)?)
}

/// `--export-selector` (`k=v,k2=v2`) as the JSON label selector the
/// gateway's proxy sends the destination service.
fn export_selector(text: &str) -> anyhow::Result<String> {
    let mut labels = serde_json::Map::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or_else(|| {
            anyhow::anyhow!("--export-selector {text:?}: {pair:?} is not key=value")
        })?;
        anyhow::ensure!(
            !key.trim().is_empty(),
            "--export-selector {text:?}: {pair:?} has an empty key"
        );
        labels.insert(key.trim().to_owned(), value.trim().into());
    }
    anyhow::ensure!(
        !labels.is_empty(),
        "--export-selector: at least one key=value (an empty selector would export every Service)"
    );
    Ok(serde_json::json!({ "matchLabels": labels }).to_string())
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(
            [
                ("linkerd.io/extension".to_owned(), "multicluster".to_owned()),
                ("app".to_owned(), GATEWAY.to_owned()),
            ]
            .into(),
        ),
        ..ObjectMeta::default()
    }
}

/// The Secret holding the key the gateway's pods derive QUIC stateless
/// resets from.
const RESET_KEY_SECRET: &str = "linkerd-gateway-quic";

/// The gateway pods' shared QUIC reset key: 32 random bytes, base64. A new
/// install renders a new key: pods started after it is applied share it.
fn reset_key_secret() -> anyhow::Result<Secret> {
    use base64::Engine as _;
    use ring::rand::SecureRandom as _;
    let mut key = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| anyhow::anyhow!("no randomness for the gateway's QUIC reset key"))?;
    Ok(Secret {
        metadata: meta(RESET_KEY_SECRET, Some(NS)),
        string_data: Some(
            [(
                mesh_api::labels::GATEWAY_RESET_KEY.to_owned(),
                base64::engine::general_purpose::STANDARD.encode(key),
            )]
            .into(),
        ),
        ..Secret::default()
    })
}

/// How many gateway replicas `--ha` runs at least.
const HA_REPLICAS: u32 = 3;

/// The gateway pods' labels, as its Service and Deployment select them.
fn selector_labels() -> std::collections::BTreeMap<String, String> {
    [("app".to_owned(), GATEWAY.to_owned())].into()
}

/// Replicas (the gateway's, viz's tap) spread over nodes, then zones, where the cluster has
/// them: preferred, not required, so that a one-node cluster still runs
/// every replica (each pod is a failure domain of its own for a rolling
/// update or a crash).
pub(crate) fn spread(selector: &std::collections::BTreeMap<String, String>) -> Affinity {
    let term = |topology: &str, weight: i32| WeightedPodAffinityTerm {
        pod_affinity_term: PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: Some(selector.clone()),
                ..LabelSelector::default()
            }),
            topology_key: topology.into(),
            ..PodAffinityTerm::default()
        },
        weight,
    };
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                term("kubernetes.io/hostname", 100),
                term("topology.kubernetes.io/zone", 50),
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

pub(crate) fn objects(args: &InstallArgs) -> anyhow::Result<Vec<Object>> {
    let identity = IdentityName {
        service_account: GATEWAY.into(),
        namespace: NS.into(),
        control_namespace: CONTROL_PLANE_NAMESPACE.into(),
        trust_domain: args.identity_trust_domain.clone(),
    };
    let mut namespace_meta = meta(NS, None);
    if let Some(labels) = namespace_meta.labels.as_mut() {
        labels.remove("app");
    }
    let namespace = Namespace {
        metadata: namespace_meta,
        ..Namespace::default()
    };
    let selector = selector_labels();
    let replicas = if args.ha {
        args.gateway_replicas.max(HA_REPLICAS)
    } else {
        args.gateway_replicas
    };
    let deployment = Deployment {
        metadata: meta(GATEWAY, Some(NS)),
        spec: Some(DeploymentSpec {
            replicas: Some(i32::try_from(replicas)?),
            // A new pod is Ready before an old one stops.
            strategy: args.ha.then(|| DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    annotations: Some(
                        [
                            (INJECT_ANNOTATION.to_owned(), "enabled".to_owned()),
                            (
                                "config.linkerd.io/enable-gateway".to_owned(),
                                "true".to_owned(),
                            ),
                            // As Linkerd's gateway: callers must be meshed
                            // on its port, whatever its Server says.
                            (
                                mesh_api::labels::REQUIRE_IDENTITY_PORTS_ANNOTATION.to_owned(),
                                mesh_api::ports::GATEWAY.to_string(),
                            ),
                            (
                                mesh_api::labels::DEFAULT_INBOUND_POLICY_ANNOTATION.to_owned(),
                                "all-authenticated".to_owned(),
                            ),
                            (
                                mesh_api::labels::GATEWAY_EXPORTS_ANNOTATION.to_owned(),
                                export_selector(&args.export_selector)?,
                            ),
                            (
                                mesh_api::labels::WAIT_BEFORE_EXIT_ANNOTATION.to_owned(),
                                args.gateway_wait_before_exit_seconds.to_string(),
                            ),
                            (
                                mesh_api::labels::GATEWAY_RESET_KEY_SECRET_ANNOTATION.to_owned(),
                                RESET_KEY_SECRET.to_owned(),
                            ),
                        ]
                        .into(),
                    ),
                    ..meta(GATEWAY, None)
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(GATEWAY.into()),
                    affinity: args.ha.then(|| spread(&selector)),
                    // The wait, then time for the streams in flight to end.
                    termination_grace_period_seconds: Some(
                        i64::from(args.gateway_wait_before_exit_seconds) + 30,
                    ),
                    containers: vec![Container {
                        name: "pause".into(),
                        image: Some(args.gateway_pause_image.clone()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    };
    let port = |name: &str, port: u16, protocol: &str| ServicePort {
        name: Some(name.into()),
        port: i32::from(port),
        target_port: Some(IntOrString::Int(i32::from(port))),
        protocol: Some(protocol.into()),
        ..ServicePort::default()
    };
    let service = Service {
        metadata: ObjectMeta {
            annotations: Some(
                [
                    (MIRROR_GATEWAY_IDENTITY.to_owned(), identity.to_string()),
                    (PROBE_PATH_ANNOTATION.to_owned(), "/ready".to_owned()),
                    (
                        PROBE_PERIOD_ANNOTATION.to_owned(),
                        args.gateway_probe_seconds.to_string(),
                    ),
                ]
                .into(),
            ),
            ..meta(GATEWAY, Some(NS))
        },
        spec: Some(ServiceSpec {
            type_: Some(args.gateway_service_type.clone()),
            selector: Some(selector),
            ports: Some(vec![
                port("mc-gateway", mesh_api::ports::GATEWAY, "TCP"),
                // QUIC from proxies whose Link allows it, on the same port.
                port("mc-gateway-quic", mesh_api::ports::GATEWAY, "UDP"),
                // The proxy's probes alone, not its admin server.
                ServicePort {
                    target_port: Some(IntOrString::Int(i32::from(
                        mesh_api::ports::GATEWAY_PROBE_TARGET,
                    ))),
                    ..port("mc-probe", mesh_api::ports::GATEWAY_PROBE, "TCP")
                },
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    let mut objects = vec![
        object(&namespace)?,
        object(&mesh_api::crds::link::crd())?,
        object(&ServiceAccount {
            metadata: meta(GATEWAY, Some(NS)),
            ..ServiceAccount::default()
        })?,
        object(&reset_key_secret()?)?,
        object(&deployment)?,
        object(&service)?,
    ];
    if args.ha {
        objects.push(object(&PodDisruptionBudget {
            metadata: meta(GATEWAY, Some(NS)),
            spec: Some(PodDisruptionBudgetSpec {
                max_unavailable: Some(IntOrString::Int(1)),
                selector: Some(LabelSelector {
                    match_labels: Some(selector_labels()),
                    ..LabelSelector::default()
                }),
                ..PodDisruptionBudgetSpec::default()
            }),
            ..PodDisruptionBudget::default()
        })?);
    }
    objects.extend(super::gateway_policy::objects(
        &args.gateway_allowed_identities,
    )?);
    objects.extend(remote_access()?);
    Ok(objects)
}

/// What a linked cluster's mirror reads this cluster as: a ServiceAccount
/// that may only read Services, Endpoints and Namespaces, and the trust
/// anchors ConfigMap (so the linked side can check that both clusters
/// share an anchor), and a token for it that `mesh multicluster link` puts
/// in the other cluster's credentials.
fn remote_access() -> anyhow::Result<Vec<Object>> {
    let role = ClusterRole {
        metadata: meta(REMOTE_ACCESS, None),
        rules: Some(vec![
            PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec![
                    "services".into(),
                    "endpoints".into(),
                    "namespaces".into(),
                ]),
                verbs: vec!["get".into(), "list".into(), "watch".into()],
                ..PolicyRule::default()
            },
            PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["configmaps".into()]),
                resource_names: Some(vec![TRUST_ROOTS_CONFIGMAP.into()]),
                verbs: vec!["get".into(), "list".into(), "watch".into()],
                ..PolicyRule::default()
            },
        ]),
        ..ClusterRole::default()
    };
    let binding = ClusterRoleBinding {
        metadata: meta(REMOTE_ACCESS, None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: REMOTE_ACCESS.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: REMOTE_ACCESS.into(),
            namespace: Some(NS.into()),
            ..Subject::default()
        }]),
    };
    let token = Secret {
        metadata: ObjectMeta {
            annotations: Some(
                [(
                    "kubernetes.io/service-account.name".to_owned(),
                    REMOTE_ACCESS.to_owned(),
                )]
                .into(),
            ),
            ..meta(REMOTE_ACCESS_TOKEN, Some(NS))
        },
        type_: Some("kubernetes.io/service-account-token".into()),
        ..Secret::default()
    };
    Ok(vec![
        object(&ServiceAccount {
            metadata: meta(REMOTE_ACCESS, Some(NS)),
            ..ServiceAccount::default()
        })?,
        object(&role)?,
        object(&binding)?,
        object(&token)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_load_balancers_probe_port_reaches_the_probes_alone() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: InstallArgs,
        }
        let cli = <Cli as clap::Parser>::try_parse_from(["install"]).expect("defaults");
        let objects = objects(&cli.args).expect("objects");
        let service = objects
            .iter()
            .find(|o| o["kind"] == "Service" && o["metadata"]["name"] == GATEWAY)
            .expect("the gateway Service");
        let probe = service["spec"]["ports"]
            .as_array()
            .and_then(|ports| ports.iter().find(|p| p["name"] == "mc-probe"))
            .expect("mc-probe");
        assert_eq!(probe["port"], 4191, "the port Links name, as Linkerd's");
        assert_eq!(
            probe["targetPort"], 4181,
            "the proxy's probe-only listener, not its admin server"
        );
    }

    #[test]
    fn the_export_selector_becomes_the_gateways_label_selector() {
        assert_eq!(
            export_selector("mirror.linkerd.io/exported=true").expect("valid"),
            r#"{"matchLabels":{"mirror.linkerd.io/exported":"true"}}"#
        );
        assert_eq!(
            export_selector("tier=public, team=shop").expect("valid"),
            r#"{"matchLabels":{"team":"shop","tier":"public"}}"#
        );
        for bad in ["", "tier", "=public"] {
            assert!(export_selector(bad).is_err(), "{bad:?}");
        }
    }
}
