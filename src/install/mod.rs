//! `mesh install`: renders the control plane for `kubectl apply -f -`.
//!
//! The `linkerd` namespace, the trust roots ConfigMap and issuer Secret,
//! the `linkerd-config` ConfigMap (the values rendered, [`config`]), and
//! the components built on [`component::Component`]: the identity
//! service, the destination service and the proxy injector (with its
//! webhook certificate and MutatingWebhookConfiguration). Trust material
//! and the webhook certificate are generated unless the operator brings
//! their own (the same flags as `linkerd install` for identity); with all of
//! it given, the output is the same on every run. When mesh is already
//! installed, what the cluster holds is kept ([`existing`]), so that
//! re-applying `mesh install` changes only what its flags changed.

pub mod chart;
mod component;
pub mod config;
mod destination;
pub(crate) mod existing;
pub mod gateway_api;
mod identity;
pub(crate) mod injector;
pub mod manifest;
mod policy;
pub mod resources;
pub mod settings;
pub mod upgrade;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::Args;
use mesh_identity::ca::{Ca, IssuancePolicy, TrustRoots};
use mesh_identity::generate;
use settings::Settings;

use crate::cli::GlobalArgs;

/// Flags of `mesh install`. Unset flags fall back to the values file, then
/// to `--ha`, then to the defaults named here.
#[derive(Debug, Default, Args)]
pub struct InstallArgs {
    /// Render only the CustomResourceDefinitions (ServiceProfile, TrafficSplit,
    /// HTTPRoute, the policy resources and Link), to apply before the control plane.
    #[arg(long, env = "MESH_INSTALL_CRDS")]
    pub crds: bool,
    /// A values file (YAML, Linkerd's Helm value names; `-` for stdin).
    #[arg(long, short = 'f', env = "MESH_INSTALL_VALUES", value_name = "FILE")]
    pub values: Option<PathBuf>,
    /// A value in Linkerd's Helm names, over the values file
    /// (`--set proxy.defaultInboundPolicy=deny`); repeatable (one through
    /// the environment).
    #[arg(long, env = "MESH_INSTALL_SET", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// High availability: 3 replicas of each controller, spread over nodes,
    /// with PodDisruptionBudgets.
    #[arg(long, env = "MESH_INSTALL_HA")]
    pub ha: bool,
    /// Replicas of each control-plane Deployment [default: 1, 3 with --ha].
    #[arg(long, env = "MESH_CONTROLLER_REPLICAS", value_name = "N")]
    pub controller_replicas: Option<u32>,
    /// PEM bundle of trust anchors (one or more roots); generated when unset.
    #[arg(long, env = "MESH_IDENTITY_TRUST_ANCHORS_FILE", value_name = "FILE")]
    pub identity_trust_anchors_file: Option<PathBuf>,
    /// The issuer certificate (PEM, chaining to a trust anchor); generated when unset.
    #[arg(
        long,
        env = "MESH_IDENTITY_ISSUER_CERTIFICATE_FILE",
        value_name = "FILE"
    )]
    pub identity_issuer_certificate_file: Option<PathBuf>,
    /// The issuer's private key (PEM, ECDSA P-256).
    #[arg(long, env = "MESH_IDENTITY_ISSUER_KEY_FILE", value_name = "FILE")]
    pub identity_issuer_key_file: Option<PathBuf>,
    /// The trust domain of workload identities [default: cluster.local].
    #[arg(long, env = "MESH_IDENTITY_TRUST_DOMAIN", value_name = "DOMAIN")]
    pub identity_trust_domain: Option<String>,
    /// How long workload certificates are valid [default: 24h].
    #[arg(long, env = "MESH_IDENTITY_ISSUANCE_LIFETIME", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub identity_issuance_lifetime: Option<Duration>,
    /// How far workload certificates are back-dated for clock skew [default: 20s].
    #[arg(long, env = "MESH_IDENTITY_CLOCK_SKEW_ALLOWANCE", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub identity_clock_skew_allowance: Option<Duration>,
    /// The cluster's DNS domain [default: cluster.local].
    #[arg(long, env = "MESH_CLUSTER_DOMAIN", value_name = "DOMAIN")]
    pub cluster_domain: Option<String>,
    /// The proxy injector webhook's serving certificate (PEM, for
    /// `linkerd-proxy-injector.linkerd.svc`); generated with its own CA when unset.
    #[arg(
        long,
        env = "MESH_PROXY_INJECTOR_TLS_CERT_FILE",
        value_name = "FILE",
        requires_all = ["proxy_injector_tls_key_file", "proxy_injector_ca_file"]
    )]
    pub proxy_injector_tls_cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(
        long,
        env = "MESH_PROXY_INJECTOR_TLS_KEY_FILE",
        value_name = "FILE",
        requires = "proxy_injector_tls_cert_file"
    )]
    pub proxy_injector_tls_key_file: Option<PathBuf>,
    /// The CA that signed it (PEM), given to the API server as the webhook's caBundle.
    #[arg(
        long,
        env = "MESH_PROXY_INJECTOR_CA_FILE",
        value_name = "FILE",
        requires = "proxy_injector_tls_cert_file"
    )]
    pub proxy_injector_ca_file: Option<PathBuf>,
    /// What the API server does when the injector cannot be reached [default: ignore].
    #[arg(long, env = "MESH_WEBHOOK_FAILURE_POLICY", value_enum)]
    pub webhook_failure_policy: Option<settings::FailurePolicy>,
    /// The registry (and path) to pull mesh's images from, as `mesh
    /// images push --registry` put them: `<registry>/controller` and
    /// `<registry>/proxy` (which also runs the init container), tagged with
    /// mesh's version (values: `imageRegistry`) [default: mesh].
    #[arg(long, env = "MESH_REGISTRY", value_name = "REGISTRY")]
    pub registry: Option<String>,
    /// The image of the control-plane binary (`mesh-controller`; local
    /// clusters map `mesh/controller` to it in `clusters/images.toml`)
    /// [default: <registry>/controller:v<version>].
    #[arg(long, env = "MESH_CONTROLLER_IMAGE", value_name = "IMAGE")]
    pub controller_image: Option<String>,
    /// The proxy image repository injected [default: <registry>/proxy].
    #[arg(long, env = "MESH_PROXY_IMAGE", value_name = "IMAGE")]
    pub proxy_image: Option<String>,
    /// The proxy version injected [default: v<version>].
    #[arg(long, env = "MESH_PROXY_VERSION", value_name = "VERSION")]
    pub proxy_version: Option<String>,
    /// The init container's image, with its tag, when not the proxy's own
    /// (which holds `mesh-init` and iptables); it runs its own entrypoint
    /// (values: `proxyInit.image.name` and `.version`).
    #[arg(long, env = "MESH_PROXY_INIT_IMAGE", value_name = "IMAGE")]
    pub proxy_init_image: Option<String>,
    /// The proxies' log filter [default: warn,mesh_proxy=info].
    #[arg(long, env = "MESH_PROXY_LOG_LEVEL", value_name = "FILTER")]
    pub proxy_log_level: Option<String>,
    /// The issuer Secret (linkerd-identity-issuer, type kubernetes.io/tls)
    /// is written by someone else, cert-manager say: render none, and take
    /// the trust anchors from --identity-trust-anchors-file or that
    /// Secret's ca.crt (values: identity.issuer.scheme=kubernetes.io/tls).
    #[arg(long, env = "MESH_IDENTITY_EXTERNAL_ISSUER")]
    pub identity_external_issuer: bool,
    /// The trust-roots ConfigMap (linkerd-identity-trust-roots) is managed
    /// by someone else, trust-manager say: render none (values:
    /// identity.externalCA=true).
    #[arg(long, env = "MESH_IDENTITY_EXTERNAL_CA")]
    pub identity_external_ca: bool,
    /// Do not read the cluster: render new trust anchors, issuer and webhook
    /// certificate (unless given) even when mesh is installed there already.
    #[arg(long, env = "MESH_INSTALL_IGNORE_CLUSTER")]
    pub ignore_cluster: bool,
}

/// The trust anchors and issuer the control plane will use.
#[derive(Debug, Clone)]
pub struct TrustMaterial {
    /// The anchors bundle.
    pub anchors_pem: String,
    /// The issuer certificate (and chain).
    pub issuer_cert_pem: String,
    /// The issuer key.
    pub issuer_key_pem: String,
}

/// Renders the manifests as one YAML stream, keeping the trust material
/// and webhook certificate of the cluster of `global` when mesh is there.
pub async fn render(global: &GlobalArgs, args: &InstallArgs) -> anyhow::Result<String> {
    if args.crds {
        let gateway_api =
            args.ignore_cluster || gateway_api::ours_to_manage(global, "mesh install --crds").await;
        return manifest::to_yaml(&crd_objects(gateway_api)?);
    }
    let mut settings = Settings::resolve(args)?;
    if !args.ignore_cluster {
        keep_existing(global, &mut settings).await;
    }
    manifest::to_yaml(&control_plane(&settings)?)
}

/// Keeps what an earlier install left in the cluster, saying so on stderr.
async fn keep_existing(global: &GlobalArgs, settings: &mut Settings) {
    let brings_all = settings.trust_anchors.is_some() && settings.injector_tls.is_some();
    if brings_all {
        return;
    }
    match existing::Existing::read(global).await {
        Ok(found) => {
            let kept = found.keep_in(settings);
            if !kept.is_empty() {
                eprintln!(
                    "mesh install: keeping the {} already in the cluster (--ignore-cluster renders new ones)",
                    kept.join(" and the ")
                );
            }
        }
        Err(e) => {
            tracing::info!("not reading the cluster for existing trust material: {e:#}");
            eprintln!(
                "mesh install: could not read the cluster ({}); rendering new trust material and webhook \
                 certificate: if mesh is installed there, `kubectl apply` of this replaces them",
                first_line(&format!("{e:#}"))
            );
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// The control plane's objects, in apply order.
pub(crate) fn control_plane(settings: &Settings) -> anyhow::Result<Vec<manifest::Object>> {
    let material = trust_material(settings)?;
    let webhook_tls = injector::webhook_tls(settings)?;
    control_plane_with(settings, &material, &webhook_tls)
}

/// The control plane's objects from `settings` with this trust material
/// and webhook certificate.
fn control_plane_with(
    settings: &Settings,
    material: &TrustMaterial,
    webhook_tls: &injector::WebhookTls,
) -> anyhow::Result<Vec<manifest::Object>> {
    let mut objects = identity::objects(settings, material)?;
    objects.push(config::object_for(settings, material)?);
    objects.extend(destination::objects(settings)?);
    objects.extend(policy::objects(settings)?);
    objects.extend(injector::objects(settings, webhook_tls)?);
    Ok(objects)
}

/// `mesh uninstall`: what `kubectl delete -f -` needs to remove everything
/// `mesh install` and `mesh install --crds` made. The webhook goes first,
/// so no pod creation waits on an injector being deleted; then the
/// cluster-wide RBAC, the `linkerd` namespace (and all in it), the CRDs.
/// The Gateway API CRDs are left out when they are not mesh's (see
/// [`gateway_api`]).
pub async fn render_uninstall(global: &GlobalArgs) -> anyhow::Result<String> {
    let cluster_scoped = control_plane(&Settings::resolve(&InstallArgs::default())?)?
        .into_iter()
        .filter(|o| o.pointer("/metadata/namespace").is_none())
        .rev();
    let crds = crd_objects(gateway_api::ours_to_manage(global, "mesh uninstall").await)?;
    let references: Vec<manifest::Object> = cluster_scoped
        .chain(crds)
        .map(|o| manifest::reference(&o))
        .collect();
    manifest::to_yaml(&references)
}

/// Every CRD mesh ships, the Gateway API's (labelled as mesh's) only when
/// `gateway_api`.
fn crd_objects(gateway_api: bool) -> anyhow::Result<Vec<manifest::Object>> {
    let mut crds: Vec<_> = mesh_api::crds::all()
        .into_iter()
        .filter(|crd| !gateway_api::is_gateway_api(crd))
        .collect();
    if gateway_api {
        crds.extend(gateway_api::ours());
    }
    crds.iter().map(manifest::object).collect()
}

pub(crate) fn read(path: &PathBuf, flag: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("--{flag} {}", path.display()))
}

/// The operator's trust material, checked, or fresh material.
fn trust_material(settings: &Settings) -> anyhow::Result<TrustMaterial> {
    let issuer_name = mesh_api::identity::issuer_name(
        mesh_api::labels::CONTROL_PLANE_NAMESPACE,
        &settings.identity_trust_domain,
    );
    if settings.external_issuer {
        return external_trust_material(settings);
    }
    let (anchors, cert, key) = match (
        &settings.trust_anchors,
        &settings.issuer_cert,
        &settings.issuer_key,
    ) {
        (Some(anchors), Some(cert), Some(key)) => (anchors, cert, key),
        (None, None, None) => {
            let now = SystemTime::now();
            let anchor = generate::trust_anchor(
                &format!("root.linkerd.{}", settings.identity_trust_domain),
                now,
                generate::ANCHOR_LIFETIME,
            )?;
            let issuer = generate::issuer(&anchor, &issuer_name, now, generate::ISSUER_LIFETIME)?;
            return Ok(TrustMaterial {
                anchors_pem: anchor.cert_pem,
                issuer_cert_pem: issuer.cert_pem,
                issuer_key_pem: issuer.key_pem,
            });
        }
        _ => anyhow::bail!(
            "trust anchors, issuer certificate and issuer key go together \
             (--identity-trust-anchors-file, --identity-issuer-certificate-file, --identity-issuer-key-file, \
             or identityTrustAnchorsPEM and identity.issuer.tls in the values file): \
             an issuer signed by one of the anchors, or none of them to generate all three"
        ),
    };
    let roots = TrustRoots::from_pem(&anchors.text).context(anchors.origin.clone())?;
    let policy = IssuancePolicy {
        lifetime: settings.issuance_lifetime,
        clock_skew: settings.clock_skew_allowance,
    };
    let ca = Ca::new(&cert.text, &key.text, &roots, policy, SystemTime::now())
        .with_context(|| format!("{} with {}", cert.origin, key.origin))?;
    if !ca.subject().contains(&format!("CN={issuer_name}")) {
        tracing::warn!(
            "the issuer certificate is named {:?}; Linkerd expects CN={issuer_name}",
            ca.subject()
        );
    }
    Ok(TrustMaterial {
        anchors_pem: anchors.text.clone(),
        issuer_cert_pem: cert.text.clone(),
        issuer_key_pem: key.text.clone(),
    })
}

/// With an external issuer mesh renders no issuer, only the anchors
/// (unless the CA is external too), which it must be given or find.
fn external_trust_material(settings: &Settings) -> anyhow::Result<TrustMaterial> {
    let anchors_pem = match (&settings.trust_anchors, settings.external_ca) {
        (Some(anchors), _) => {
            TrustRoots::from_pem(&anchors.text).context(anchors.origin.clone())?;
            anchors.text.clone()
        }
        (None, true) => String::new(),
        (None, false) => anyhow::bail!(
            "an external issuer needs the trust anchors: --identity-trust-anchors-file, \
             identityTrustAnchorsPEM, or the ca.crt of Secret {}/{} in the cluster \
             (or --identity-external-ca when something else writes ConfigMap {}/{})",
            mesh_api::labels::CONTROL_PLANE_NAMESPACE,
            mesh_api::labels::ISSUER_SECRET,
            mesh_api::labels::CONTROL_PLANE_NAMESPACE,
            mesh_api::labels::TRUST_ROOTS_CONFIGMAP,
        ),
    };
    Ok(TrustMaterial {
        anchors_pem,
        issuer_cert_pem: String::new(),
        issuer_key_pem: String::new(),
    })
}
