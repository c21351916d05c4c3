//! The proxy injector's objects: `linkerd-proxy-injector` (Deployment,
//! Service on 443 → 8443), its serving certificate (a CA of its own, made at
//! install like Linkerd's chart does), and the MutatingWebhookConfiguration
//! that sends pod creations to it, skipping namespaces labelled
//! `config.linkerd.io/admission-webhooks: disabled` (the control plane's
//! own) and kube-system.

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
    WebhookClientConfig,
};
use k8s_openapi::api::core::v1::{Secret, SecretVolumeSource, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use mesh_api::labels::{CONTROL_PLANE_COMPONENT, CONTROL_PLANE_NAMESPACE as NS};

use super::component::{Component, Port, meta, rule};
use super::manifest::{Object, object};
use super::settings::Settings;

const NAME: &str = "linkerd-proxy-injector";
const TLS_SECRET: &str = super::existing::INJECTOR_SECRET;
const TLS_DIR: &str = "/var/run/linkerd/tls";
/// The injector's admin port.
const ADMIN_PORT: u16 = mesh_api::ports::INJECTOR_ADMIN;

/// The webhook's CA (PEM) and serving certificate and key (PEM).
#[derive(Debug, Clone)]
pub struct WebhookTls {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// The operator's webhook certificate, or a fresh CA and certificate.
pub fn webhook_tls(settings: &Settings) -> anyhow::Result<WebhookTls> {
    let Some((cert, key, ca)) = &settings.injector_tls else {
        return serving_tls(&format!("{NAME}.{NS}.svc"), &settings.cluster_domain);
    };
    for (pem, what) in [
        (cert, "CERTIFICATE"),
        (ca, "CERTIFICATE"),
        (key, "PRIVATE KEY"),
    ] {
        anyhow::ensure!(
            pem.text.contains(&format!("BEGIN {what}"))
                || (what == "PRIVATE KEY" && pem.text.contains("PRIVATE KEY-----")),
            "{}: not a PEM {}",
            pem.origin,
            what.to_lowercase()
        );
    }
    Ok(WebhookTls {
        cert_pem: cert.text.clone(),
        key_pem: key.text.clone(),
        ca_pem: ca.text.clone(),
    })
}

/// A fresh CA and a certificate it signed for the Service `host`
/// (`<name>.<namespace>.svc`, and with the cluster domain), valid ten
/// years, for a server the API server calls (a webhook, an APIService).
pub fn serving_tls(host: &str, cluster_domain: &str) -> anyhow::Result<WebhookTls> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca = rcgen::CertificateParams::default();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, host.to_owned());
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    let now = std::time::SystemTime::now();
    let ten_years = std::time::Duration::from_secs(10 * 365 * 24 * 3600);
    ca.not_before = now.into();
    ca.not_after = (now + ten_years).into();
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate()?;
    let mut leaf =
        rcgen::CertificateParams::new(vec![host.to_owned(), format!("{host}.{cluster_domain}")])?;
    leaf.not_before = now.into();
    leaf.not_after = (now + ten_years).into();
    let cert = leaf.signed_by(&key, &issuer)?;
    Ok(WebhookTls {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The injector's flags for the proxies' requests and limits, those set.
fn proxy_resource_args(resources: &super::resources::Resources) -> Vec<String> {
    let pairs = [
        (
            "cpu-request",
            resources.cpu.as_ref().and_then(|q| q.request.as_ref()),
        ),
        (
            "cpu-limit",
            resources.cpu.as_ref().and_then(|q| q.limit.as_ref()),
        ),
        (
            "memory-request",
            resources.memory.as_ref().and_then(|q| q.request.as_ref()),
        ),
        (
            "memory-limit",
            resources.memory.as_ref().and_then(|q| q.limit.as_ref()),
        ),
    ];
    pairs
        .into_iter()
        .filter_map(|(flag, value)| Some(format!("--proxy-{flag}={}", value?)))
        .collect()
}

/// Its objects, in apply order.
pub fn objects(settings: &Settings, tls: &WebhookTls) -> anyhow::Result<Vec<Object>> {
    let component = [(CONTROL_PLANE_COMPONENT, "proxy-injector")];
    let secret = Secret {
        metadata: meta(TLS_SECRET, Some(NS), &component),
        type_: Some("kubernetes.io/tls".into()),
        string_data: Some(
            [
                ("tls.crt".to_owned(), tls.cert_pem.clone()),
                ("tls.key".to_owned(), tls.key_pem.clone()),
                ("ca.crt".to_owned(), tls.ca_pem.clone()),
            ]
            .into(),
        ),
        ..Secret::default()
    };
    let injector = Component {
        name: NAME,
        service: NAME,
        component: "proxy-injector",
        image: settings.controller_image.clone(),
        args: vec![
            "injector".into(),
            format!("--controller-namespace={NS}"),
            format!("--identity-trust-domain={}", settings.identity_trust_domain),
            format!("--cluster-domain={}", settings.cluster_domain),
            format!("--tls-cert-file={TLS_DIR}/tls.crt"),
            format!("--tls-key-file={TLS_DIR}/tls.key"),
            format!(
                "--default-inbound-policy={}",
                settings.default_inbound_policy
            ),
            format!("--cluster-networks={}", settings.cluster_networks),
            format!("--proxy-image={}", settings.proxy_repository()),
            format!("--proxy-version={}", settings.proxy_tag()),
            format!("--proxy-log-level={}", settings.proxy_log_filter()),
        ]
        .into_iter()
        .chain(
            settings
                .proxy_init_image
                .as_ref()
                .map(|image| format!("--proxy-init-image={image}")),
        )
        .chain(proxy_resource_args(&settings.resources.proxy))
        .collect(),
        ports: vec![Port {
            name: "proxy-injector",
            port: mesh_api::ports::INJECTOR_WEBHOOK,
            service_port: Some(443),
        }],
        admin_port: ADMIN_PORT,
        rules: vec![
            rule("", &["namespaces"], &["get", "list", "watch"]),
            rule("", &["configmaps"], &["get"]),
            // The owner a pod's `linkerd.io/proxy-<kind>` label names.
            rule("apps", &["replicasets"], &["get"]),
            rule("batch", &["jobs"], &["get"]),
            rule("", &["events"], &["create", "patch"]),
        ],
        headless_service: None,
        volumes: vec![(
            Volume {
                name: "tls".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(TLS_SECRET.into()),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            },
            VolumeMount {
                name: "tls".into(),
                mount_path: TLS_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        )],
        placement: settings.into(),
        resources: settings
            .resources
            .for_controller(&settings.resources.proxy_injector),
    };
    let not_in = |key: &str, values: &[&str]| LabelSelectorRequirement {
        key: key.into(),
        operator: "NotIn".into(),
        values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
    };
    let webhook = MutatingWebhookConfiguration {
        metadata: meta("linkerd-proxy-injector-webhook-config", None, &component),
        webhooks: Some(vec![MutatingWebhook {
            name: "linkerd-proxy-injector.linkerd.io".into(),
            client_config: WebhookClientConfig {
                service: Some(ServiceReference {
                    name: NAME.into(),
                    namespace: NS.into(),
                    path: Some(mesh_injector::webhook::PATH.into()),
                    port: Some(443),
                }),
                ca_bundle: Some(k8s_openapi::ByteString(tls.ca_pem.clone().into_bytes())),
                url: None,
            },
            rules: Some(vec![RuleWithOperations {
                operations: Some(vec!["CREATE".into()]),
                api_groups: Some(vec![String::new()]),
                api_versions: Some(vec!["v1".into()]),
                resources: Some(vec!["pods".into()]),
                scope: None,
            }]),
            namespace_selector: Some(LabelSelector {
                match_expressions: Some(vec![
                    not_in("config.linkerd.io/admission-webhooks", &["disabled"]),
                    not_in(
                        "kubernetes.io/metadata.name",
                        &["kube-system", "cert-manager"],
                    ),
                ]),
                match_labels: None,
            }),
            // Control-plane pods are never injected, whatever their
            // namespace's labels (one made by `helm install
            // --create-namespace` has none), so that a webhook that fails
            // closed cannot keep the injector itself from starting.
            object_selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: CONTROL_PLANE_COMPONENT.into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                }]),
                match_labels: None,
            }),
            failure_policy: Some(settings.webhook_failure_policy.as_str().into()),
            side_effects: "None".into(),
            admission_review_versions: vec!["v1".into()],
            reinvocation_policy: Some("IfNeeded".into()),
            timeout_seconds: Some(10),
            ..MutatingWebhook::default()
        }]),
    };
    let mut objects = vec![object(&secret)?];
    objects.extend(injector.objects()?);
    objects.push(object(&webhook)?);
    Ok(objects)
}
