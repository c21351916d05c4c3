//! What injection does to a pod: the decision, then the containers,
//! volumes, labels and annotations, built from [`Values`].
//!
//! The proxy runs as a native sidecar (an init container with
//! `restartPolicy: Always`) right after `linkerd-init`, so it is up before
//! the application's own init containers and the application, and Jobs
//! complete when their containers do.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, ObjectFieldSelector, PodSpec, Probe, ProjectedVolumeSource,
    ResourceRequirements, SecretKeySelector, SecurityContext, ServiceAccountTokenProjection,
    Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mesh_api::labels::{
    CONTROL_PLANE_NS, IDENTITY_TOKEN_AUDIENCE, IDENTITY_TOKEN_PATH, INJECT_ANNOTATION,
    PROXY_VERSION_ANNOTATION, TRUST_ROOTS_COPY_CONFIGMAP, TRUST_ROOTS_COPY_PATH,
};
use mesh_api::ports;

use crate::values::Values;

/// The proxy container's name.
pub use mesh_api::pod::PROXY_CONTAINER;
/// The init container's name.
pub const INIT_CONTAINER: &str = "linkerd-init";
/// The identity token volume.
pub const TOKEN_VOLUME: &str = "linkerd-identity-token";
/// The volume of the namespace's trust roots copy, which the proxy follows
/// without a restart (`mesh-identity-trust-roots`, kept by the identity
/// service; optional: until the namespace's first workload is certified
/// it does not exist, and the proxy uses the anchors in its environment).
pub const TRUST_ROOTS_VOLUME: &str = "mesh-identity-trust-roots";
/// The in-memory volume for the proxy's identity.
pub const END_ENTITY_VOLUME: &str = "linkerd-identity-end-entity";
/// The init container's `/run` (its root filesystem is read-only, and
/// iptables takes its lock in `/run/xtables.lock`), Linkerd's name.
pub const XTABLES_LOCK_VOLUME: &str = "linkerd-proxy-init-xtables-lock";
/// The label naming the workload's namespace.
pub const WORKLOAD_NS: &str = "linkerd.io/workload-ns";

/// Whether a pod gets a proxy, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Inject.
    Inject,
    /// Leave it: why (for `mesh inject` to say, and for the webhook's log).
    Skip(String),
}

/// Decides from the pod's and the namespace's annotations and the pod's
/// spec: `linkerd.io/inject: disabled` on the pod wins, then `enabled` on
/// the pod or its namespace; pods already injected or on the host network
/// are left alone.
pub fn decide(
    pod: &ObjectMeta,
    spec: &PodSpec,
    namespace: Option<&BTreeMap<String, String>>,
) -> Decision {
    let on = |annotations: Option<&BTreeMap<String, String>>| {
        annotations
            .and_then(|a| a.get(INJECT_ANNOTATION))
            .map(|v| v.trim().to_owned())
    };
    let pod_says = on(pod.annotations.as_ref());
    let namespace_says = on(namespace);
    if pod_says.as_deref() == Some("disabled") {
        return Decision::Skip(format!("{INJECT_ANNOTATION}: disabled on the pod"));
    }
    if pod_says.as_deref() != Some("enabled") && namespace_says.as_deref() != Some("enabled") {
        return Decision::Skip(format!(
            "neither the pod nor its namespace has {INJECT_ANNOTATION}: enabled"
        ));
    }
    if has_proxy(spec) {
        return Decision::Skip("it already has a linkerd-proxy container".into());
    }
    if spec.host_network == Some(true) {
        return Decision::Skip(
            "it uses the host network (iptables there would catch the node's traffic)".into(),
        );
    }
    Decision::Inject
}

pub use mesh_api::pod::has_proxy;

/// Adds the proxy to the pod: init container, sidecar, volumes, labels and
/// annotations. `namespace` is the pod's namespace (for the
/// `linkerd.io/workload-ns` label).
pub fn inject(meta: &mut ObjectMeta, spec: &mut PodSpec, values: &Values, namespace: Option<&str>) {
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(
        PROXY_VERSION_ANNOTATION.into(),
        values.proxy_version.clone(),
    );
    annotations.insert("linkerd.io/identity-mode".into(), "default".into());
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(
        CONTROL_PLANE_NS.into(),
        values.control_plane_namespace.clone(),
    );
    if let Some(namespace) = namespace {
        labels.insert(WORKLOAD_NS.into(), namespace.to_owned());
    }
    let inbound_ports = container_ports(spec);
    let init_containers = spec.init_containers.get_or_insert_with(Vec::new);
    init_containers.splice(
        0..0,
        [
            init_container(values),
            proxy_container(values, &inbound_ports),
        ],
    );
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    volumes.retain(|v| {
        v.name != TOKEN_VOLUME
            && v.name != END_ENTITY_VOLUME
            && v.name != XTABLES_LOCK_VOLUME
            && v.name != TRUST_ROOTS_VOLUME
    });
    volumes.extend(identity_volumes());
    volumes.push(Volume {
        name: XTABLES_LOCK_VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    });
}

fn init_container(values: &Values) -> Container {
    let mut inbound_skip = format!("{},{}", ports::PROXY_CONTROL, ports::PROXY_ADMIN);
    if values.gateway {
        inbound_skip = format!("{inbound_skip},{}", ports::GATEWAY_PROBE_TARGET);
    }
    if !values.skip_inbound_ports.is_empty() {
        inbound_skip = format!("{inbound_skip},{}", values.skip_inbound_ports);
    }
    let mut args = vec![
        "--incoming-proxy-port".to_owned(),
        ports::PROXY_INBOUND.to_string(),
        "--outgoing-proxy-port".into(),
        ports::PROXY_OUTBOUND.to_string(),
        "--proxy-uid".into(),
        values.proxy_uid.to_string(),
        "--inbound-ports-to-ignore".into(),
        inbound_skip,
    ];
    if !values.skip_outbound_ports.is_empty() {
        args.extend([
            "--outbound-ports-to-ignore".into(),
            values.skip_outbound_ports.clone(),
        ]);
    }
    if !values.skip_subnets.is_empty() {
        args.extend(["--subnets-to-ignore".into(), values.skip_subnets.clone()]);
    }
    Container {
        name: INIT_CONTAINER.into(),
        image: Some(values.init_image()),
        // The proxy image runs the proxy unless told; an init image of its
        // own runs what it was built to.
        command: values
            .init_image
            .is_none()
            .then(|| vec![crate::values::INIT_PROGRAM.to_owned()]),
        args: Some(args),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".into(), "NET_RAW".into()]),
                drop: None,
            }),
            run_as_non_root: Some(false),
            run_as_user: Some(0),
            read_only_root_filesystem: Some(true),
            ..Default::default()
        }),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: Some(vec![VolumeMount {
            name: XTABLES_LOCK_VOLUME.into(),
            mount_path: "/run".into(),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                api_version: None,
            }),
            ..Default::default()
        }),
    }
}

/// The pod's container ports (comma list): the proxy watches their policy
/// from start-up.
fn container_ports(spec: &PodSpec) -> String {
    let mut ports: Vec<i32> = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .map(|p| p.container_port)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The proxy's environment (the variables `mesh-proxy` reads), with the
/// pod's `inbound_ports`.
fn proxy_env(values: &Values, inbound_ports: &str) -> Vec<EnvVar> {
    let ns = &values.control_plane_namespace;
    let domain = &values.cluster_domain;
    let mut vars = vec![
        field("_pod_name", "metadata.name"),
        field("_pod_ns", "metadata.namespace"),
        field("_pod_nodeName", "spec.nodeName"),
        field("_pod_sa", "spec.serviceAccountName"),
        env("_l5d_ns", ns.clone()),
        env("_l5d_trustdomain", values.trust_domain.clone()),
        env("LINKERD2_PROXY_LOG", values.log_level.clone()),
        env(
            "LINKERD2_PROXY_DESTINATION_SVC_ADDR",
            format!(
                "linkerd-dst-headless.{ns}.svc.{domain}.:{}",
                ports::DESTINATION
            ),
        ),
        // The addresses whose profiles the proxy looks up: a stock
        // linkerd2-proxy looks up none without it.
        env(
            "LINKERD2_PROXY_DESTINATION_PROFILE_NETWORKS",
            values.cluster_networks.clone(),
        ),
        env(
            "LINKERD2_PROXY_DESTINATION_SVC_NAME",
            "linkerd-destination.$(_l5d_ns).serviceaccount.identity.$(_l5d_ns).$(_l5d_trustdomain)",
        ),
        env(
            "LINKERD2_PROXY_DESTINATION_CONTEXT",
            r#"{"ns":"$(_pod_ns)", "nodeName":"$(_pod_nodeName)", "pod":"$(_pod_name)"}"#,
        ),
        env(
            "LINKERD2_PROXY_POLICY_SVC_ADDR",
            format!("linkerd-policy.{ns}.svc.{domain}.:{}", ports::POLICY),
        ),
        env(
            "LINKERD2_PROXY_POLICY_SVC_NAME",
            "linkerd-policy.$(_l5d_ns).serviceaccount.identity.$(_l5d_ns).$(_l5d_trustdomain)",
        ),
        env(
            "LINKERD2_PROXY_POLICY_WORKLOAD",
            r#"{"ns":"$(_pod_ns)", "pod":"$(_pod_name)"}"#,
        ),
        env(
            "LINKERD2_PROXY_INBOUND_DEFAULT_POLICY",
            values.default_inbound_policy.clone(),
        ),
        env(
            "LINKERD2_PROXY_POLICY_CLUSTER_NETWORKS",
            values.cluster_networks.clone(),
        ),
        env(
            "LINKERD2_PROXY_INBOUND_PORTS",
            if values.gateway {
                // A gateway's own port: its Server decides who may use it.
                [inbound_ports, &ports::PROXY_INBOUND.to_string()]
                    .iter()
                    .filter(|p| !p.is_empty())
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            } else {
                inbound_ports.to_owned()
            },
        ),
        env(
            "LINKERD2_PROXY_CONTROL_LISTEN_ADDR",
            format!("0.0.0.0:{}", ports::PROXY_CONTROL),
        ),
        env(
            "LINKERD2_PROXY_ADMIN_LISTEN_ADDR",
            format!("0.0.0.0:{}", ports::PROXY_ADMIN),
        ),
        env(
            "LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR",
            format!("127.0.0.1:{}", ports::PROXY_OUTBOUND),
        ),
        env(
            "LINKERD2_PROXY_INBOUND_LISTEN_ADDR",
            format!("0.0.0.0:{}", ports::PROXY_INBOUND),
        ),
        env(
            "LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION",
            values.opaque_ports.clone(),
        ),
        env(
            "LINKERD2_PROXY_OUTBOUND_PORTS_DISABLE_PROTOCOL_DETECTION",
            values.opaque_ports.clone(),
        ),
        env(
            "LINKERD2_PROXY_IDENTITY_SVC_ADDR",
            format!(
                "linkerd-identity-headless.{ns}.svc.{domain}.:{}",
                ports::IDENTITY
            ),
        ),
        env(
            "LINKERD2_PROXY_IDENTITY_SVC_NAME",
            "linkerd-identity.$(_l5d_ns).serviceaccount.identity.$(_l5d_ns).$(_l5d_trustdomain)",
        ),
        env(
            "LINKERD2_PROXY_IDENTITY_LOCAL_NAME",
            "$(_pod_sa).$(_pod_ns).serviceaccount.identity.$(_l5d_ns).$(_l5d_trustdomain)",
        ),
        env(
            "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS",
            values.trust_anchors_pem.clone(),
        ),
        env("LINKERD2_PROXY_IDENTITY_TOKEN_FILE", IDENTITY_TOKEN_PATH),
        env("MESH_PROXY_IDENTITY_TRUST_DIR", TRUST_ROOTS_COPY_PATH),
        env(
            "LINKERD2_PROXY_IDENTITY_DIR",
            "/var/run/linkerd/identity/end-entity",
        ),
    ];
    if values.gateway {
        // Forward what linked clusters send for this cluster's Services.
        vars.push(env("MESH_PROXY_GATEWAY_SUFFIXES", format!("svc.{domain}")));
        // The LoadBalancer's probe port reaches the probes alone.
        vars.push(env(
            "MESH_PROXY_PROBE_LISTEN_ADDR",
            format!("0.0.0.0:{}", ports::GATEWAY_PROBE_TARGET),
        ));
        if let Some(exports) = &values.gateway_exports {
            vars.push(env("MESH_PROXY_GATEWAY_EXPORTS", exports.clone()));
        }
        if let Some(secret) = &values.gateway_reset_key_secret {
            vars.push(EnvVar {
                name: "MESH_PROXY_QUIC_RESET_KEY".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    // Without the Secret the gateway still starts, with a
                    // key of its own (resets then reach only its own
                    // clients).
                    secret_key_ref: Some(SecretKeySelector {
                        name: secret.clone(),
                        key: mesh_api::labels::GATEWAY_RESET_KEY.into(),
                        optional: Some(true),
                    }),
                    ..Default::default()
                }),
            });
        }
    }
    if !values.tap_disabled {
        // Only the viz extension's tap component may tap this proxy.
        vars.push(env(
            "LINKERD2_PROXY_TAP_SVC_NAME",
            format!(
                "tap.{}.serviceaccount.identity.$(_l5d_ns).$(_l5d_trustdomain)",
                mesh_api::labels::VIZ_NAMESPACE
            ),
        ));
    }
    if values.wait_before_exit_seconds > 0 {
        vars.push(env(
            "MESH_PROXY_WAIT_BEFORE_EXIT",
            format!("{}s", values.wait_before_exit_seconds),
        ));
    }
    if let Some(congestion) = &values.quic_congestion_control {
        vars.push(env(
            "MESH_PROXY_QUIC_CONGESTION_CONTROL",
            congestion.clone(),
        ));
    }
    if let Some(cores) = values.cpu_limit.as_deref().and_then(cores) {
        vars.push(env("LINKERD2_PROXY_CORES", cores.to_string()));
    }
    vars
}

/// Whole cores for a CPU limit (at least one).
fn cores(limit: &str) -> Option<u64> {
    let millis = match limit.strip_suffix('m') {
        Some(m) => m.parse::<f64>().ok()?,
        None => limit.parse::<f64>().ok()? * 1000.0,
    };
    Some(((millis / 1000.0).ceil() as u64).max(1))
}

fn proxy_container(values: &Values, inbound_ports: &str) -> Container {
    let admin = |path: &str, delay: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(i32::from(ports::PROXY_ADMIN)),
            ..Default::default()
        }),
        initial_delay_seconds: Some(delay),
        ..Default::default()
    };
    let quantities = |pairs: [(&str, &Option<String>); 2]| {
        let map: BTreeMap<String, Quantity> = pairs
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_owned(), Quantity(v.clone()?))))
            .collect();
        (!map.is_empty()).then_some(map)
    };
    let requests = quantities([
        ("cpu", &values.cpu_request),
        ("memory", &values.memory_request),
    ]);
    let limits = quantities([("cpu", &values.cpu_limit), ("memory", &values.memory_limit)]);
    Container {
        name: PROXY_CONTAINER.into(),
        image: Some(format!("{}:{}", values.proxy_image, values.proxy_version)),
        restart_policy: Some("Always".into()),
        env: Some(proxy_env(values, inbound_ports)),
        ports: Some(vec![
            ContainerPort {
                name: Some("linkerd-proxy".into()),
                container_port: i32::from(ports::PROXY_INBOUND),
                ..Default::default()
            },
            ContainerPort {
                name: Some("linkerd-admin".into()),
                container_port: i32::from(ports::PROXY_ADMIN),
                ..Default::default()
            },
        ]),
        // The application starts once the proxy is ready (it has its
        // certificate), so its first requests already go through the mesh.
        startup_probe: Some(Probe {
            period_seconds: Some(1),
            failure_threshold: Some(120),
            ..admin("/ready", 0)
        }),
        readiness_probe: Some(admin("/ready", 2)),
        liveness_probe: Some(admin("/live", 10)),
        resources: (requests.is_some() || limits.is_some()).then(|| ResourceRequirements {
            requests,
            limits,
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(values.proxy_uid),
            run_as_group: Some(values.proxy_uid),
            ..Default::default()
        }),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: Some(vec![
            VolumeMount {
                name: END_ENTITY_VOLUME.into(),
                mount_path: "/var/run/linkerd/identity/end-entity".into(),
                ..Default::default()
            },
            VolumeMount {
                name: TOKEN_VOLUME.into(),
                mount_path: IDENTITY_TOKEN_PATH
                    .rsplit_once('/')
                    .map(|(dir, _)| dir.to_owned())
                    .unwrap_or_default(),
                ..Default::default()
            },
            VolumeMount {
                name: TRUST_ROOTS_VOLUME.into(),
                mount_path: TRUST_ROOTS_COPY_PATH.into(),
                read_only: Some(true),
                ..Default::default()
            },
        ]),
        ..Default::default()
    }
}

fn identity_volumes() -> [Volume; 3] {
    [
        Volume {
            name: END_ENTITY_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: None,
            }),
            ..Default::default()
        },
        identity_token_volume(),
        Volume {
            name: TRUST_ROOTS_VOLUME.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: TRUST_ROOTS_COPY_CONFIGMAP.into(),
                optional: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        },
    ]
}

/// The projected ServiceAccount token (audience `identity.l5d.io`) a
/// workload certifies with, mounted at the directory of
/// [`IDENTITY_TOKEN_PATH`]; the control plane's own servers use it too.
pub fn identity_token_volume() -> Volume {
    Volume {
        name: TOKEN_VOLUME.into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    audience: Some(IDENTITY_TOKEN_AUDIENCE.into()),
                    expiration_seconds: Some(86400),
                    path: IDENTITY_TOKEN_PATH
                        .rsplit('/')
                        .next()
                        .unwrap_or("linkerd-identity-token")
                        .into(),
                }),
                ..Default::default()
            }]),
            default_mode: None,
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(annotations: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn app() -> PodSpec {
        PodSpec {
            containers: vec![Container {
                name: "web".into(),
                image: Some("ghcr.io/stefanprodan/podinfo:6.7.0".into()),
                ..Default::default()
            }],
            init_containers: Some(vec![Container {
                name: "migrate".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn the_pod_decides_before_its_namespace() {
        let enabled: BTreeMap<String, String> =
            [(INJECT_ANNOTATION.to_owned(), "enabled".to_owned())].into();
        assert_eq!(decide(&meta(&[]), &app(), Some(&enabled)), Decision::Inject);
        assert!(matches!(
            decide(
                &meta(&[(INJECT_ANNOTATION, "disabled")]),
                &app(),
                Some(&enabled)
            ),
            Decision::Skip(_)
        ));
        assert_eq!(
            decide(&meta(&[(INJECT_ANNOTATION, "enabled")]), &app(), None),
            Decision::Inject
        );
        assert!(matches!(
            decide(&meta(&[]), &app(), None),
            Decision::Skip(_)
        ));
        let mut host = app();
        host.host_network = Some(true);
        assert!(matches!(
            decide(&meta(&[]), &host, Some(&enabled)),
            Decision::Skip(_)
        ));
    }

    #[test]
    fn injection_adds_init_then_sidecar_before_the_apps_init_containers() {
        let values = Values::new("-----BEGIN CERTIFICATE-----", "v0.1.0");
        let mut meta = meta(&[]);
        let mut spec = app();
        inject(&mut meta, &mut spec, &values, Some("shop"));
        let inits: Vec<&str> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(inits, [INIT_CONTAINER, PROXY_CONTAINER, "migrate"]);
        let proxy = &spec.init_containers.as_ref().expect("inits")[1];
        assert_eq!(
            proxy.restart_policy.as_deref(),
            Some("Always"),
            "a native sidecar"
        );
        assert_eq!(proxy.image.as_deref(), Some("mesh/proxy:v0.1.0"));
        let security = proxy.security_context.as_ref().expect("security");
        assert_eq!(security.run_as_user, Some(2102));
        let env = proxy.env.as_ref().expect("env");
        let var = |name: &str| {
            env.iter()
                .find(|e| e.name == name)
                .and_then(|e| e.value.clone())
                .unwrap_or_default()
        };
        assert_eq!(
            var("LINKERD2_PROXY_IDENTITY_LOCAL_NAME"),
            "$(_pod_sa).$(_pod_ns).serviceaccount.identity.$(_l5d_ns).$(_l5d_trustdomain)"
        );
        assert_eq!(
            var("LINKERD2_PROXY_DESTINATION_SVC_ADDR"),
            "linkerd-dst-headless.linkerd.svc.cluster.local.:8086"
        );
        let init = &spec.init_containers.as_ref().expect("inits")[0];
        assert_eq!(
            (init.image.as_deref(), init.command.as_deref()),
            (
                Some("mesh/proxy:v0.1.0"),
                Some(&["/usr/bin/mesh-init".to_owned()][..])
            ),
            "the proxy's image runs mesh-init"
        );
        let args = init.args.as_ref().expect("args").join(" ");
        assert!(args.contains("--proxy-uid 2102"), "{args}");
        assert!(
            args.contains("--inbound-ports-to-ignore 4190,4191"),
            "{args}"
        );
        let volumes: Vec<&str> = spec
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(
            volumes,
            [
                END_ENTITY_VOLUME,
                TOKEN_VOLUME,
                TRUST_ROOTS_VOLUME,
                XTABLES_LOCK_VOLUME
            ]
        );
        let trust = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == TRUST_ROOTS_VOLUME)
            .and_then(|v| v.config_map.as_ref())
            .expect("the trust roots copy's volume");
        assert_eq!(
            (trust.name.as_str(), trust.optional),
            (TRUST_ROOTS_COPY_CONFIGMAP, Some(true)),
            "the namespace's copy, optional until the identity service makes it"
        );
        let init_mounts = init.volume_mounts.as_ref().expect("init mounts");
        assert_eq!(
            (
                init_mounts[0].name.as_str(),
                init_mounts[0].mount_path.as_str()
            ),
            (XTABLES_LOCK_VOLUME, "/run"),
            "iptables' lock has a writable /run beside the read-only root"
        );
        assert_eq!(
            meta.annotations.as_ref().expect("annotations")[PROXY_VERSION_ANNOTATION],
            "v0.1.0"
        );
        assert_eq!(meta.labels.as_ref().expect("labels")[WORKLOAD_NS], "shop");
        let enabled: BTreeMap<String, String> =
            [(INJECT_ANNOTATION.to_owned(), "enabled".to_owned())].into();
        assert_eq!(
            decide(&meta, &spec, Some(&enabled)),
            Decision::Skip("it already has a linkerd-proxy container".into()),
            "an injected pod is not injected twice"
        );
    }

    #[test]
    fn a_wait_before_exit_reaches_the_proxy_only_when_set() {
        let wait = |values: &Values| {
            proxy_env(values, "")
                .into_iter()
                .find(|e| e.name == "MESH_PROXY_WAIT_BEFORE_EXIT")
                .and_then(|e| e.value)
        };
        let mut values = Values::new("-----BEGIN CERTIFICATE-----", "v0.1.0");
        assert_eq!(wait(&values), None);
        values.wait_before_exit_seconds = 10;
        assert_eq!(wait(&values).as_deref(), Some("10s"));
    }

    /// `mesh.dev/quic-congestion-control` on the namespace or the pod
    /// reaches the proxy (the pod's wins); a controller the proxy does not
    /// have is refused at admission, named, instead of a proxy that would
    /// not start.
    #[test]
    fn a_quic_congestion_control_annotation_reaches_the_proxy_or_is_refused() {
        let congestion = |values: &Values| {
            proxy_env(values, "")
                .into_iter()
                .find(|e| e.name == "MESH_PROXY_QUIC_CONGESTION_CONTROL")
                .and_then(|e| e.value)
        };
        let values = Values::new("-----BEGIN CERTIFICATE-----", "v0.1.0");
        assert_eq!(congestion(&values), None, "the proxy's default");
        let annotated = |value: &str| -> BTreeMap<String, String> {
            [(
                mesh_api::labels::QUIC_CONGESTION_CONTROL_ANNOTATION.to_owned(),
                value.to_owned(),
            )]
            .into()
        };
        let (namespace, pod) = (annotated("newreno"), annotated(" Cubic "));
        let applied = crate::values::Overrides::default()
            .layer(Some(&namespace), "namespace shop")
            .layer(Some(&pod), "pod web")
            .apply(&values)
            .expect("valid");
        assert_eq!(congestion(&applied).as_deref(), Some("cubic"));
        let bad = annotated("reno");
        let error = crate::values::Overrides::default()
            .layer(Some(&bad), "pod web")
            .apply(&values)
            .expect_err("reno");
        assert_eq!(
            error.annotation,
            mesh_api::labels::QUIC_CONGESTION_CONTROL_ANNOTATION
        );
        assert!(error.to_string().contains("bbr, cubic, newreno"), "{error}");
    }

    #[test]
    fn only_the_viz_tap_identity_may_tap_unless_the_pod_says_no() {
        let tap = |values: &Values| {
            proxy_env(values, "")
                .into_iter()
                .find(|e| e.name == "LINKERD2_PROXY_TAP_SVC_NAME")
                .and_then(|e| e.value)
        };
        let values = Values::new("-----BEGIN CERTIFICATE-----", "v0.1.0");
        assert_eq!(
            tap(&values).as_deref(),
            Some("tap.linkerd-viz.serviceaccount.identity.$(_l5d_ns).$(_l5d_trustdomain)")
        );
        for annotation in [
            "viz.linkerd.io/disable-tap",
            "config.linkerd.io/disable-tap",
        ] {
            let annotations: BTreeMap<String, String> =
                [(annotation.to_owned(), "true".to_owned())].into();
            let disabled = crate::values::Overrides::default()
                .layer(Some(&annotations), "pod")
                .apply(&values)
                .expect("valid");
            assert_eq!(tap(&disabled), None, "{annotation}");
            let annotations: BTreeMap<String, String> =
                [(annotation.to_owned(), "maybe".to_owned())].into();
            let e = crate::values::Overrides::default()
                .layer(Some(&annotations), "pod")
                .apply(&values)
                .expect_err("not a boolean");
            assert!(e.to_string().contains(annotation), "{e}");
        }
    }

    #[test]
    fn an_init_image_of_its_own_runs_its_own_entrypoint() {
        let mut values = Values::new("-----BEGIN CERTIFICATE-----", "v0.1.0");
        values.proxy_image = "registry.example/mesh/proxy".into();
        let init = init_container(&values);
        assert_eq!(
            init.image.as_deref(),
            Some("registry.example/mesh/proxy:v0.1.0")
        );
        assert!(init.command.is_some());
        values.init_image = Some("registry.example/init:v2".into());
        let init = init_container(&values);
        assert_eq!(init.image.as_deref(), Some("registry.example/init:v2"));
        assert_eq!(init.command, None);
    }

    #[test]
    fn a_cpu_limit_sets_the_proxy_cores() {
        assert_eq!(cores("500m"), Some(1));
        assert_eq!(cores("1500m"), Some(2));
        assert_eq!(cores("2"), Some(2));
        assert_eq!(cores("lots"), None);
    }

    #[test]
    fn a_gateway_proxy_forwards_for_its_cluster_domain() {
        let gateway_env = |values: &Values| {
            proxy_env(values, "")
                .into_iter()
                .find(|e| e.name == "MESH_PROXY_GATEWAY_SUFFIXES")
                .and_then(|e| e.value)
        };
        let mut values = Values::new("-----BEGIN CERTIFICATE-----", "v0.1.0");
        assert_eq!(
            gateway_env(&values),
            None,
            "workload proxies are no gateways"
        );
        values.cluster_domain = "example.org".into();
        values.gateway = true;
        assert_eq!(gateway_env(&values).as_deref(), Some("svc.example.org"));
        values.gateway_reset_key_secret = Some("linkerd-gateway-quic".into());
        let reset_key = proxy_env(&values, "")
            .into_iter()
            .find(|e| e.name == "MESH_PROXY_QUIC_RESET_KEY")
            .and_then(|e| e.value_from)
            .and_then(|from| from.secret_key_ref)
            .map(|secret| (secret.name, secret.key));
        assert_eq!(
            reset_key,
            Some(("linkerd-gateway-quic".to_owned(), "reset-key".to_owned())),
            "the gateway's pods share their QUIC reset key through a Secret"
        );
        let probe = proxy_env(&values, "")
            .into_iter()
            .find(|e| e.name == "MESH_PROXY_PROBE_LISTEN_ADDR")
            .and_then(|e| e.value);
        assert_eq!(
            probe.as_deref(),
            Some("0.0.0.0:4181"),
            "the LoadBalancer's probe port reaches the probes alone"
        );
        let init = init_container(&values).args.unwrap_or_default().join(" ");
        assert!(
            init.contains("--inbound-ports-to-ignore 4190,4191,4181"),
            "the probe port is not redirected to the proxy's inbound port: {init}"
        );
        let exports = |values: &Values| {
            proxy_env(values, "")
                .into_iter()
                .find(|e| e.name == "MESH_PROXY_GATEWAY_EXPORTS")
                .and_then(|e| e.value)
        };
        assert_eq!(exports(&values), None, "the proxy's default selector");
        let annotations: BTreeMap<String, String> = [(
            mesh_api::labels::GATEWAY_EXPORTS_ANNOTATION.to_owned(),
            r#"{"matchLabels":{"tier":"public"}}"#.to_owned(),
        )]
        .into();
        let values = crate::values::Overrides::default()
            .layer(Some(&annotations), "pod linkerd-gateway")
            .apply(&values)
            .expect("valid");
        assert_eq!(
            exports(&values).as_deref(),
            Some(r#"{"matchLabels":{"tier":"public"}}"#)
        );
        for bad in ["tier=public", "{}", r#"{"matchLabels":{}}"#] {
            let annotations: BTreeMap<String, String> = [(
                mesh_api::labels::GATEWAY_EXPORTS_ANNOTATION.to_owned(),
                bad.to_owned(),
            )]
            .into();
            let error = crate::values::Overrides::default()
                .layer(Some(&annotations), "pod linkerd-gateway")
                .apply(&values)
                .expect_err(bad);
            assert_eq!(
                error.annotation,
                mesh_api::labels::GATEWAY_EXPORTS_ANNOTATION
            );
        }
    }

    #[test]
    fn the_proxy_learns_its_policy_controller_default_policy_and_ports() {
        let mut values = Values::new("-----BEGIN CERTIFICATE-----", "v0.1.0");
        values.default_inbound_policy = "cluster-authenticated".into();
        values.cluster_networks = "10.0.0.0/8,fd00::/8".into();
        let mut spec: PodSpec = serde_json::from_value(serde_json::json!({
            "containers": [
                {"name": "app", "ports": [{"containerPort": 9898}, {"containerPort": 8080}]},
                {"name": "sidecar", "ports": [{"containerPort": 8080}]}
            ]
        }))
        .expect("spec");
        let mut meta = ObjectMeta::default();
        inject(&mut meta, &mut spec, &values, Some("shop"));
        let proxy = spec
            .init_containers
            .iter()
            .flatten()
            .find(|c| c.name == PROXY_CONTAINER)
            .expect("the proxy");
        let env = |name: &str| {
            proxy
                .env
                .iter()
                .flatten()
                .find(|e| e.name == name)
                .and_then(|e| e.value.clone())
        };
        assert_eq!(
            env("LINKERD2_PROXY_POLICY_SVC_ADDR").as_deref(),
            Some("linkerd-policy.linkerd.svc.cluster.local.:8090")
        );
        assert_eq!(
            env("LINKERD2_PROXY_INBOUND_DEFAULT_POLICY").as_deref(),
            Some("cluster-authenticated")
        );
        assert_eq!(
            env("LINKERD2_PROXY_INBOUND_PORTS").as_deref(),
            Some("8080,9898")
        );
        assert!(env("LINKERD2_PROXY_POLICY_WORKLOAD").is_some_and(|w| w.contains("$(_pod_name)")));
        // Found by running a stock linkerd2-proxy beside ours: it looks up
        // the profile of no address unless told the cluster's networks.
        for networks in [
            "LINKERD2_PROXY_DESTINATION_PROFILE_NETWORKS",
            "LINKERD2_PROXY_POLICY_CLUSTER_NETWORKS",
        ] {
            assert_eq!(
                env(networks).as_deref(),
                Some("10.0.0.0/8,fd00::/8"),
                "{networks}"
            );
        }
    }
}
