//! What `mesh install` renders from: the defaults, then `--ha`, then a
//! values file (`--values`, Linkerd's Helm value names for the settings mesh
//! has) with `--set key.path=value` applied over it as Helm applies them,
//! then explicit flags. A values file or `--set` with a key mesh does not
//! know, or a value of the wrong type, is refused with the key's path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use super::InstallArgs;
use super::resources::{Resources, ha_controller, ha_identity, ha_proxy};
use crate::images::TAG;

/// A values file, in Linkerd's Helm value names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Values {
    /// `linkerdVersion`: the version that rendered the values (what
    /// `linkerd-config` stores); the CLI's own version is what renders.
    #[serde(rename = "linkerdVersion")]
    _linkerd_version: Option<serde::de::IgnoredAny>,
    /// `installNamespace`: render the `linkerd` Namespace (off when
    /// something else creates it, as `helm install --create-namespace`).
    install_namespace: Option<bool>,
    /// `clusterDomain`.
    cluster_domain: Option<String>,
    /// `clusterNetworks`: the pod and node networks (comma list of CIDRs).
    cluster_networks: Option<String>,
    /// `identityTrustDomain`.
    identity_trust_domain: Option<String>,
    /// `identityTrustAnchorsPEM`.
    #[serde(rename = "identityTrustAnchorsPEM")]
    identity_trust_anchors_pem: Option<String>,
    /// `identity.issuer.*`.
    identity: Option<IdentityValues>,
    /// `imageRegistry`: the registry (and path) mesh's images are pulled
    /// from, as `--registry` (`<registry>/controller`, `<registry>/proxy`,
    /// whose image also runs the init container).
    image_registry: Option<String>,
    /// `controllerImage` (repository and tag).
    controller_image: Option<String>,
    /// `controllerReplicas`.
    controller_replicas: Option<u32>,
    /// `enablePodAntiAffinity`.
    enable_pod_anti_affinity: Option<bool>,
    /// `enablePodDisruptionBudget`.
    enable_pod_disruption_budget: Option<bool>,
    /// `webhookFailurePolicy`: `Ignore` or `Fail`.
    webhook_failure_policy: Option<FailurePolicy>,
    /// `proxy.*`.
    proxy: Option<ProxyValues>,
    /// `proxyInit.*`.
    proxy_init: Option<ProxyInitValues>,
    /// `proxyInjector.*`.
    proxy_injector: Option<InjectorValues>,
    /// `controllerResources`: every controller's, unless its own is set.
    controller_resources: Option<Resources>,
    /// `identityResources`.
    identity_resources: Option<Resources>,
    /// `destinationResources`.
    destination_resources: Option<Resources>,
    /// `proxyInjectorResources`.
    proxy_injector_resources: Option<Resources>,
    /// `policyController.resources`.
    policy_controller: Option<PolicyControllerValues>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyControllerValues {
    resources: Option<Resources>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct IdentityValues {
    issuer: Option<IssuerValues>,
    /// `identity.externalCA`: the trust-roots ConfigMap is someone
    /// else's (trust-manager's, say); mesh renders none.
    #[serde(rename = "externalCA")]
    external_ca: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct IssuerValues {
    /// `identity.issuer.scheme`: `linkerd.io/tls` (mesh renders the issuer
    /// Secret) or `kubernetes.io/tls` (someone else, cert-manager say,
    /// writes it).
    scheme: Option<IssuerScheme>,
    issuance_lifetime: Option<String>,
    clock_skew_allowance: Option<String>,
    tls: Option<PemPair>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PemPair {
    #[serde(rename = "crtPEM")]
    crt_pem: Option<String>,
    #[serde(rename = "keyPEM")]
    key_pem: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ProxyValues {
    image: Option<ImageValues>,
    resources: Option<Resources>,
    log_level: Option<String>,
    default_inbound_policy: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProxyInitValues {
    image: Option<ImageValues>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageValues {
    name: Option<String>,
    version: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct InjectorValues {
    #[serde(rename = "crtPEM")]
    crt_pem: Option<String>,
    #[serde(rename = "keyPEM")]
    key_pem: Option<String>,
    #[serde(rename = "caBundle")]
    ca_bundle: Option<String>,
}

/// Who writes the issuer Secret (`identity.issuer.scheme`), spelled as
/// the value is both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum IssuerScheme {
    /// mesh renders it from the issuer it was given or generated.
    #[serde(rename = "linkerd.io/tls")]
    Linkerd,
    /// Someone else (cert-manager) writes it; mesh renders none.
    #[serde(rename = "kubernetes.io/tls")]
    Kubernetes,
}

/// What the webhook does when the injector cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
pub enum FailurePolicy {
    /// Pods are admitted without a proxy.
    Ignore,
    /// Pod creation fails until the injector answers.
    Fail,
}

impl FailurePolicy {
    /// The webhook's `failurePolicy` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ignore => "Ignore",
            Self::Fail => "Fail",
        }
    }
}

/// PEM text and where it came from (a flag's file or a values key), for errors.
#[derive(Debug, Clone)]
pub struct Pem {
    /// The text.
    pub text: String,
    /// `--flag FILE` or `values file F: key`.
    pub origin: String,
}

/// Everything the manifests are rendered from.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The cluster's DNS domain.
    pub cluster_domain: String,
    /// The identity trust domain.
    pub identity_trust_domain: String,
    /// Workload certificate lifetime.
    pub issuance_lifetime: Duration,
    /// Workload certificate back-dating.
    pub clock_skew_allowance: Duration,
    /// Trust anchors, issuer certificate and key, when brought by the operator.
    pub trust_anchors: Option<Pem>,
    /// The issuer certificate.
    pub issuer_cert: Option<Pem>,
    /// The issuer key.
    pub issuer_key: Option<Pem>,
    /// The injector's serving certificate, key and CA, when brought.
    pub injector_tls: Option<(Pem, Pem, Pem)>,
    /// The registry images are named under (`--registry`,
    /// `imageRegistry`), when one was given.
    pub registry: Option<String>,
    /// The `mesh-controller` image.
    pub controller_image: String,
    /// The proxy image repository, when not the injector's default.
    pub proxy_image: Option<String>,
    /// The proxy version, when not the injector's default.
    pub proxy_version: Option<String>,
    /// The init container's image (with its tag), when not the proxy's
    /// own (which holds `mesh-init`).
    pub proxy_init_image: Option<String>,
    /// The proxies' log filter, when not the injector's default.
    pub proxy_log_level: Option<String>,
    /// Replicas of each control-plane Deployment.
    pub replicas: u32,
    /// Spread replicas over nodes (required) and zones (preferred).
    pub anti_affinity: bool,
    /// A PodDisruptionBudget per component (one replica down at a time).
    pub disruption_budget: bool,
    /// The webhook's failure policy.
    pub webhook_failure_policy: FailurePolicy,
    /// The cluster-wide default inbound policy (`proxy.defaultInboundPolicy`).
    pub default_inbound_policy: String,
    /// The cluster's pod and node networks (`clusterNetworks`).
    pub cluster_networks: String,
    /// Render the `linkerd` Namespace (`installNamespace`).
    pub install_namespace: bool,
    /// The issuer Secret is written by someone else
    /// (`identity.issuer.scheme: kubernetes.io/tls`).
    pub external_issuer: bool,
    /// The trust-roots ConfigMap is someone else's (`identity.externalCA`).
    pub external_ca: bool,
    /// Resource requests and limits.
    pub resources: ResourceSettings,
}

/// Resource requests and limits of each container, in Linkerd's shape.
#[derive(Debug, Clone, Default)]
pub struct ResourceSettings {
    /// Every controller's, unless its own is set (`controllerResources`).
    pub controller: Resources,
    /// `identityResources`.
    pub identity: Resources,
    /// `destinationResources`.
    pub destination: Resources,
    /// `policyController.resources`.
    pub policy: Resources,
    /// `proxyInjectorResources`.
    pub proxy_injector: Resources,
    /// `proxy.resources`: every injected proxy's.
    pub proxy: Resources,
}

impl ResourceSettings {
    /// A controller's `resources`: its own, else the controllers'.
    pub fn for_controller(
        &self,
        own: &Resources,
    ) -> Option<k8s_openapi::api::core::v1::ResourceRequirements> {
        if own.is_empty() {
            self.controller.requirements()
        } else {
            own.requirements()
        }
    }
}

/// A duration as the controllers' flags and the stored values write it
/// (`1day`, `20s`).
pub fn duration_arg(duration: Duration) -> String {
    humantime::format_duration(duration)
        .to_string()
        .replace(' ', "")
}

impl Settings {
    /// The proxy image repository injected.
    pub fn proxy_repository(&self) -> String {
        self.proxy_image
            .clone()
            .unwrap_or_else(|| crate::images::repository(self.registry.as_deref(), "proxy"))
    }

    /// The proxy version injected.
    pub fn proxy_tag(&self) -> String {
        self.proxy_version.clone().unwrap_or_else(|| TAG.to_owned())
    }

    /// The proxies' log filter.
    pub fn proxy_log_filter(&self) -> String {
        self.proxy_log_level
            .clone()
            .unwrap_or_else(|| mesh_injector::values::DEFAULT_PROXY_LOG_LEVEL.to_owned())
    }

    /// Defaults, `--ha`, the values file, then flags.
    pub fn resolve(args: &InstallArgs) -> anyhow::Result<Self> {
        Self::resolve_over(args, serde_json::json!({}))
    }

    /// As [`Settings::resolve`], with the values file and `--set` applied
    /// over `base` (the values an earlier install stored, for `mesh
    /// upgrade`).
    pub fn resolve_over(args: &InstallArgs, base: serde_json::Value) -> anyhow::Result<Self> {
        let values = read_values_over(base, args.values.as_deref(), &args.set)?;
        let from_values = |key: &str| {
            format!(
                "values file {}: {key}",
                args.values.as_deref().unwrap_or(Path::new("-")).display()
            )
        };
        let value_pem = |text: String, key: &str| Pem {
            text,
            origin: from_values(key),
        };
        let identity = values.identity.unwrap_or_default();
        let external_ca = args.identity_external_ca || identity.external_ca.unwrap_or(false);
        let issuer = identity.issuer.unwrap_or_default();
        let external_issuer =
            args.identity_external_issuer || issuer.scheme == Some(IssuerScheme::Kubernetes);
        let issuer_tls = issuer.tls.unwrap_or_default();
        let proxy = values.proxy.unwrap_or_default();
        let proxy_image = proxy.image.unwrap_or_default();
        let proxy_init_image = values
            .proxy_init
            .and_then(|init| init.image)
            .unwrap_or_default();
        let registry = args
            .registry
            .clone()
            .or(values.image_registry)
            .map(|registry| registry.trim_end_matches('/').to_owned());
        let proxy_version = args.proxy_version.clone().or(proxy_image.version);
        let injector = values.proxy_injector.unwrap_or_default();
        let resources = {
            let ha = args.ha;
            let pick = |value: Option<Resources>, key: &str, ha_default: fn() -> Resources| {
                let chosen = value.unwrap_or_else(|| {
                    if ha {
                        ha_default()
                    } else {
                        Resources::default()
                    }
                });
                chosen.validate(&from_values(key)).map(|()| chosen)
            };
            ResourceSettings {
                controller: pick(
                    values.controller_resources,
                    "controllerResources",
                    ha_controller,
                )?,
                identity: pick(values.identity_resources, "identityResources", ha_identity)?,
                destination: pick(
                    values.destination_resources,
                    "destinationResources",
                    Resources::default,
                )?,
                policy: pick(
                    values.policy_controller.and_then(|p| p.resources),
                    "policyController.resources",
                    Resources::default,
                )?,
                proxy_injector: pick(
                    values.proxy_injector_resources,
                    "proxyInjectorResources",
                    Resources::default,
                )?,
                proxy: pick(proxy.resources.clone(), "proxy.resources", ha_proxy)?,
            }
        };

        let trust_anchors = flag_pem(
            &args.identity_trust_anchors_file,
            "identity-trust-anchors-file",
        )?
        .or_else(|| {
            values
                .identity_trust_anchors_pem
                .map(|text| value_pem(text, "identityTrustAnchorsPEM"))
        });
        let issuer_cert = flag_pem(
            &args.identity_issuer_certificate_file,
            "identity-issuer-certificate-file",
        )?
        .or_else(|| {
            issuer_tls
                .crt_pem
                .map(|text| value_pem(text, "identity.issuer.tls.crtPEM"))
        });
        let issuer_key = flag_pem(&args.identity_issuer_key_file, "identity-issuer-key-file")?
            .or_else(|| {
                issuer_tls
                    .key_pem
                    .map(|text| value_pem(text, "identity.issuer.tls.keyPEM"))
            });
        let injector_tls = match (
            flag_pem(
                &args.proxy_injector_tls_cert_file,
                "proxy-injector-tls-cert-file",
            )?,
            flag_pem(
                &args.proxy_injector_tls_key_file,
                "proxy-injector-tls-key-file",
            )?,
            flag_pem(&args.proxy_injector_ca_file, "proxy-injector-ca-file")?,
        ) {
            (Some(cert), Some(key), Some(ca)) => Some((cert, key, ca)),
            _ => match (injector.crt_pem, injector.key_pem, injector.ca_bundle) {
                (Some(cert), Some(key), Some(ca)) => Some((
                    value_pem(cert, "proxyInjector.crtPEM"),
                    value_pem(key, "proxyInjector.keyPEM"),
                    value_pem(ca, "proxyInjector.caBundle"),
                )),
                (None, None, None) => None,
                _ => anyhow::bail!(
                    "{}: crtPEM, keyPEM and caBundle go together",
                    from_values("proxyInjector")
                ),
            },
        };

        let duration = |text: Option<String>, key: &str| {
            text.map(|text| {
                humantime::parse_duration(&text)
                    .with_context(|| format!("{}: {text:?} is not a duration", from_values(key)))
            })
            .transpose()
        };
        let issuance_lifetime =
            duration(issuer.issuance_lifetime, "identity.issuer.issuanceLifetime")?;
        let clock_skew_allowance = duration(
            issuer.clock_skew_allowance,
            "identity.issuer.clockSkewAllowance",
        )?;
        let ha = args.ha;
        let settings = Self {
            cluster_domain: first(&args.cluster_domain, values.cluster_domain, "cluster.local"),
            identity_trust_domain: first(
                &args.identity_trust_domain,
                values.identity_trust_domain,
                mesh_api::identity::DEFAULT_TRUST_DOMAIN,
            ),
            issuance_lifetime: args
                .identity_issuance_lifetime
                .or(issuance_lifetime)
                .unwrap_or(Duration::from_secs(24 * 3600)),
            clock_skew_allowance: args
                .identity_clock_skew_allowance
                .or(clock_skew_allowance)
                .unwrap_or(Duration::from_secs(20)),
            trust_anchors,
            issuer_cert,
            issuer_key,
            injector_tls,
            controller_image: first(
                &args.controller_image,
                values.controller_image,
                &crate::images::image(registry.as_deref(), "controller"),
            ),
            proxy_image: args.proxy_image.clone().or(proxy_image.name).or_else(|| {
                Some(crate::images::repository(
                    Some(registry.as_deref()?),
                    "proxy",
                ))
            }),
            proxy_init_image: args.proxy_init_image.clone().or_else(|| {
                let name = proxy_init_image.name?;
                let version = proxy_init_image
                    .version
                    .or_else(|| proxy_version.clone())
                    .unwrap_or_else(|| TAG.to_owned());
                Some(format!("{name}:{version}"))
            }),
            proxy_version,
            registry,
            proxy_log_level: args.proxy_log_level.clone().or(proxy.log_level),
            replicas: args
                .controller_replicas
                .or(values.controller_replicas)
                .unwrap_or(if ha { 3 } else { 1 }),
            anti_affinity: values.enable_pod_anti_affinity.unwrap_or(ha),
            disruption_budget: values.enable_pod_disruption_budget.unwrap_or(ha),
            webhook_failure_policy: args
                .webhook_failure_policy
                .or(values.webhook_failure_policy)
                .unwrap_or(FailurePolicy::Ignore),
            default_inbound_policy: proxy
                .default_inbound_policy
                .unwrap_or_else(|| "all-unauthenticated".into()),
            cluster_networks: values
                .cluster_networks
                .unwrap_or_else(|| mesh_api::ports::DEFAULT_CLUSTER_NETWORKS.into()),
            install_namespace: values.install_namespace.unwrap_or(true),
            external_issuer,
            external_ca,
            resources,
        };
        anyhow::ensure!(
            !(external_issuer && (settings.issuer_cert.is_some() || settings.issuer_key.is_some())),
            "an external issuer (--identity-external-issuer, identity.issuer.scheme: kubernetes.io/tls) \
             is written by someone else: give no issuer certificate or key"
        );
        settings
            .default_inbound_policy
            .parse::<mesh_policy::index::defaults::DefaultPolicy>()
            .with_context(|| from_values("proxy.defaultInboundPolicy"))?;
        for network in settings.cluster_networks.split(',').map(str::trim) {
            network.parse::<ipnet::IpNet>().with_context(|| {
                format!(
                    "{}: {network:?} is not a CIDR",
                    from_values("clusterNetworks")
                )
            })?;
        }
        anyhow::ensure!(
            settings.replicas >= 1,
            "--controller-replicas (or controllerReplicas): at least 1"
        );
        Ok(settings)
    }
}

fn first(flag: &Option<String>, value: Option<String>, default: &str) -> String {
    flag.clone().or(value).unwrap_or_else(|| default.to_owned())
}

fn flag_pem(path: &Option<PathBuf>, flag: &str) -> anyhow::Result<Option<Pem>> {
    path.as_ref()
        .map(|path| {
            Ok(Pem {
                text: super::read(path, flag)?,
                origin: format!("--{flag} {}", path.display()),
            })
        })
        .transpose()
}

/// Reads a values file (`-` for stdin; none: empty values) over `base`
/// (maps merged key by key, anything else replaced, as Helm merges values
/// files) and applies `sets` (`key.path=value`, Helm's `--set`) over it,
/// naming the offending key on error.
pub fn read_values_over(
    base: serde_json::Value,
    path: Option<&Path>,
    sets: &[String],
) -> anyhow::Result<Values> {
    let text = match path {
        None => String::new(),
        Some(path) if path == Path::new("-") => {
            std::io::read_to_string(std::io::stdin()).context("--values -: reading stdin")?
        }
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("--values {}", path.display()))?
        }
    };
    let shown = path.map_or_else(|| "--set".to_owned(), |p| p.display().to_string());
    let file: serde_json::Value = if text.trim().is_empty() {
        serde_json::json!({})
    } else {
        serde_saphyr::from_str(&text).with_context(|| format!("values file {shown}"))?
    };
    let mut tree = base;
    merge(&mut tree, file);
    for set in sets {
        apply_set(&mut tree, set)?;
    }
    // Read back through the YAML reader, whose errors point at the key.
    let merged = serde_json::to_string_pretty(&tree)?;
    serde_saphyr::from_str(&merged).with_context(|| {
        if sets.is_empty() {
            format!("values file {shown}")
        } else {
            format!("values file {shown} with --set {}", sets.join(" --set "))
        }
    })
}

/// Merges `over` into `base`: maps key by key, anything else replaced.
fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(base), serde_json::Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

/// Applies one `--set key.path=value`: `true`/`false` and whole numbers
/// are typed as Helm types them, anything else is a string.
fn apply_set(tree: &mut serde_json::Value, set: &str) -> anyhow::Result<()> {
    let (path, value) = set
        .split_once('=')
        .with_context(|| format!("--set {set:?}: expected key.path=value"))?;
    anyhow::ensure!(
        !path.is_empty() && path.split('.').all(|k| !k.is_empty()),
        "--set {set:?}: the key path has an empty part"
    );
    let value = match value {
        "true" => serde_json::Value::Bool(true),
        "false" => serde_json::Value::Bool(false),
        number if number.parse::<u64>().is_ok() => serde_json::json!(number.parse::<u64>()?),
        text => serde_json::Value::String(text.to_owned()),
    };
    let mut node = tree;
    let keys: Vec<&str> = path.split('.').collect();
    for (i, key) in keys.iter().enumerate() {
        if !node.is_object() {
            anyhow::bail!("--set {set:?}: {} is not a map", keys[..i].join("."));
        }
        let map = node.as_object_mut().context("a map")?;
        if i + 1 == keys.len() {
            map.insert((*key).to_owned(), value);
            return Ok(());
        }
        node = map
            .entry((*key).to_owned())
            .or_insert_with(|| serde_json::json!({}));
    }
    Ok(())
}
