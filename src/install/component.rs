//! One control-plane component as Linkerd lays it out: a ServiceAccount, a
//! ClusterRole and its binding, Services in front of it, and a Deployment
//! running `mesh-controller <component>` with an admin port probed for
//! `/ready` and `/live`, and with high availability a PodDisruptionBudget
//! and anti-affinity. Each component module says only what differs.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, HTTPGetAction, PodAffinityTerm, PodAntiAffinity, PodSpec,
    PodTemplateSpec, Probe, Service, ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
    WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mesh_api::labels::{CONTROL_PLANE_COMPONENT, CONTROL_PLANE_NAMESPACE as NS, CONTROL_PLANE_NS};

use super::manifest::{Object, object};
use super::settings::Settings;

/// Labels of every control-plane object, plus `extra` (empty values dropped).
pub fn labels(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = [(CONTROL_PLANE_NS, NS)]
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.retain(|_, v| !v.is_empty());
    labels
}

/// Metadata named `name` (in `namespace` unless cluster-scoped).
pub fn meta(name: &str, namespace: Option<&str>, extra_labels: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels(extra_labels)),
        ..ObjectMeta::default()
    }
}

/// A rule of a ClusterRole: `verbs` on `resources` of `group`.
pub fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        ..PolicyRule::default()
    }
}

/// A port a component serves and, optionally, exposes through its Services.
#[derive(Debug, Clone)]
pub struct Port {
    /// Its name.
    pub name: &'static str,
    /// The container port.
    pub port: u16,
    /// The Service port in front of it, when exposed.
    pub service_port: Option<u16>,
}

/// What differs between components.
#[derive(Debug, Clone)]
pub struct Component {
    /// `linkerd-<name>`: ServiceAccount and Deployment.
    pub name: &'static str,
    /// The main Service's name.
    pub service: &'static str,
    /// The `linkerd.io/control-plane-component` label.
    pub component: &'static str,
    /// The image running `mesh-controller`.
    pub image: String,
    /// The arguments (`identity`, `--flag=value`, …).
    pub args: Vec<String>,
    /// Ports; the admin port is added.
    pub ports: Vec<Port>,
    /// The admin port (`/ready`, `/live`, `/metrics`).
    pub admin_port: u16,
    /// What its ClusterRole allows.
    pub rules: Vec<PolicyRule>,
    /// Extra Service names that get the same ports (a headless `-headless`).
    pub headless_service: Option<String>,
    /// Volumes and where they are mounted.
    pub volumes: Vec<(Volume, VolumeMount)>,
    /// Replicas and how they are spread.
    pub placement: Placement,
    /// The container's resource requests and limits.
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
}

/// How many replicas a component runs and how they survive disruptions.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    /// Replicas of the Deployment.
    pub replicas: u32,
    /// Replicas on different nodes (required) and zones (preferred).
    pub anti_affinity: bool,
    /// A PodDisruptionBudget letting one replica down at a time.
    pub disruption_budget: bool,
}

impl From<&Settings> for Placement {
    fn from(settings: &Settings) -> Self {
        Self {
            replicas: settings.replicas,
            anti_affinity: settings.anti_affinity,
            disruption_budget: settings.disruption_budget,
        }
    }
}

impl Component {
    /// Anti-affinity to the component's other replicas, as Linkerd's HA
    /// values lay it out: never two on a node, spread over zones if it can.
    fn anti_affinity(&self) -> Affinity {
        let term = |topology: &str| PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: Some(self.selector()),
                ..LabelSelector::default()
            }),
            topology_key: topology.into(),
            ..PodAffinityTerm::default()
        };
        Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    WeightedPodAffinityTerm {
                        pod_affinity_term: term("topology.kubernetes.io/zone"),
                        weight: 100,
                    },
                ]),
                required_during_scheduling_ignored_during_execution: Some(vec![term(
                    "kubernetes.io/hostname",
                )]),
            }),
            ..Affinity::default()
        }
    }

    fn selector(&self) -> BTreeMap<String, String> {
        [(
            CONTROL_PLANE_COMPONENT.to_owned(),
            self.component.to_owned(),
        )]
        .into()
    }

    /// The component's objects, in apply order.
    pub fn objects(&self) -> anyhow::Result<Vec<Object>> {
        let component = [(CONTROL_PLANE_COMPONENT, self.component)];
        let account = ServiceAccount {
            metadata: meta(self.name, Some(NS), &component),
            ..ServiceAccount::default()
        };
        let role_name = format!("linkerd-{NS}-{}", self.component);
        let role = ClusterRole {
            metadata: meta(&role_name, None, &component),
            rules: Some(self.rules.clone()),
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
                name: self.name.into(),
                namespace: Some(NS.into()),
                ..Subject::default()
            }]),
        };
        let service_ports: Vec<ServicePort> = self
            .ports
            .iter()
            .filter_map(|p| {
                Some(ServicePort {
                    name: Some(p.name.into()),
                    port: i32::from(p.service_port?),
                    target_port: Some(IntOrString::Int(i32::from(p.port))),
                    ..ServicePort::default()
                })
            })
            .collect();
        let service = |name: &str, headless: bool| Service {
            metadata: meta(name, Some(NS), &component),
            spec: Some(ServiceSpec {
                selector: Some(self.selector()),
                ports: Some(service_ports.clone()),
                cluster_ip: headless.then(|| "None".to_owned()),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };
        let probe = |path: &str| Probe {
            http_get: Some(HTTPGetAction {
                path: Some(path.into()),
                port: IntOrString::String("admin-http".into()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(5),
            ..Probe::default()
        };
        let mut ports: Vec<ContainerPort> = self
            .ports
            .iter()
            .map(|p| ContainerPort {
                name: Some(p.name.into()),
                container_port: i32::from(p.port),
                ..ContainerPort::default()
            })
            .collect();
        ports.push(ContainerPort {
            name: Some("admin-http".into()),
            container_port: i32::from(self.admin_port),
            ..ContainerPort::default()
        });
        let container = Container {
            name: self.component.into(),
            image: Some(self.image.clone()),
            args: Some(self.args.clone()),
            ports: Some(ports),
            readiness_probe: Some(probe("/ready")),
            liveness_probe: Some(probe("/live")),
            volume_mounts: (!self.volumes.is_empty())
                .then(|| self.volumes.iter().map(|(_, m)| m.clone()).collect()),
            resources: self.resources.clone(),
            ..Container::default()
        };
        let deployment = Deployment {
            metadata: meta(self.name, Some(NS), &component),
            spec: Some(DeploymentSpec {
                replicas: Some(i32::try_from(self.placement.replicas)?),
                strategy: (self.placement.replicas > 1).then(|| DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_unavailable: Some(IntOrString::Int(1)),
                        max_surge: Some(IntOrString::String("25%".into())),
                    }),
                }),
                selector: LabelSelector {
                    match_labels: Some(self.selector()),
                    ..LabelSelector::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels(&component)),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec {
                        service_account_name: Some(self.name.into()),
                        affinity: self.placement.anti_affinity.then(|| self.anti_affinity()),
                        containers: vec![container],
                        volumes: (!self.volumes.is_empty())
                            .then(|| self.volumes.iter().map(|(v, _)| v.clone()).collect()),
                        ..PodSpec::default()
                    }),
                },
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        };
        let mut objects = vec![object(&account)?, object(&role)?, object(&binding)?];
        if !service_ports.is_empty() {
            objects.push(object(&service(self.service, false))?);
            if let Some(headless) = &self.headless_service {
                objects.push(object(&service(headless, true))?);
            }
        }
        objects.push(object(&deployment)?);
        if self.placement.disruption_budget {
            objects.push(object(&PodDisruptionBudget {
                metadata: meta(self.name, Some(NS), &component),
                spec: Some(PodDisruptionBudgetSpec {
                    max_unavailable: Some(IntOrString::Int(1)),
                    selector: Some(LabelSelector {
                        match_labels: Some(self.selector()),
                        ..LabelSelector::default()
                    }),
                    ..PodDisruptionBudgetSpec::default()
                }),
                ..PodDisruptionBudget::default()
            })?);
        }
        Ok(objects)
    }
}

/// What a gRPC component needs to serve proxies over mutual TLS as the
/// identity of ServiceAccount `account`: its `mesh-controller` flags, and
/// the trust roots and projected token volumes they read.
pub fn serving_identity(
    settings: &Settings,
    account: &str,
) -> (Vec<String>, Vec<(Volume, VolumeMount)>) {
    use mesh_api::identity::IdentityName;
    use mesh_api::labels::IDENTITY_TOKEN_PATH;
    use mesh_injector::inject::{TOKEN_VOLUME, identity_token_volume};

    use super::identity::{TRUST_ROOTS_DIR, trust_roots_volume};

    let identity = |account: &str| IdentityName {
        service_account: account.into(),
        namespace: NS.into(),
        control_namespace: NS.into(),
        trust_domain: settings.identity_trust_domain.clone(),
    };
    let token_dir = IDENTITY_TOKEN_PATH
        .rsplit_once('/')
        .map_or(IDENTITY_TOKEN_PATH, |(dir, _)| dir);
    let args = vec![
        format!("--identity-local-name={}", identity(account)),
        format!("--identity-trust-anchors-file={TRUST_ROOTS_DIR}/ca-bundle.crt"),
        format!(
            "--identity-addr=linkerd-identity-headless.{NS}.svc.{}.:{}",
            settings.cluster_domain,
            mesh_api::ports::IDENTITY
        ),
        format!("--identity-svc-name={}", identity("linkerd-identity")),
        format!("--identity-token-file={IDENTITY_TOKEN_PATH}"),
    ];
    let volumes = vec![
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
    ];
    (args, volumes)
}
