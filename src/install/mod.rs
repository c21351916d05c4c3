//! `mesh install`: renders the control plane for `kubectl apply -f -`.
//!
//! The `linkerd` namespace, the trust roots ConfigMap and issuer Secret,
//! and three components built on [`component::Component`]: the identity
//! service, the destination service and the proxy injector (with its
//! webhook certificate and MutatingWebhookConfiguration). Trust material
//! and the webhook certificate are generated unless the operator brings
//! their own (the same flags as `linkerd install` for identity); with all of
//! it given, the output is the same on every run.

mod component;
mod destination;
mod identity;
mod injector;
pub mod manifest;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::Args;
use mesh_identity::ca::{Ca, IssuancePolicy, TrustRoots};
use mesh_identity::generate;

/// Flags of `mesh install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Render only the CustomResourceDefinitions (ServiceProfile, TrafficSplit,
    /// HTTPRoute), to apply before the control plane.
    #[arg(long, env = "MESH_INSTALL_CRDS")]
    pub crds: bool,
    /// PEM bundle of trust anchors (one or more roots); generated when unset.
    #[arg(long, env = "MESH_IDENTITY_TRUST_ANCHORS_FILE", value_name = "FILE")]
    pub identity_trust_anchors_file: Option<PathBuf>,
    /// The issuer certificate (PEM, chaining to a trust anchor); generated when unset.
    #[arg(
        long,
        env = "MESH_IDENTITY_ISSUER_CERTIFICATE_FILE",
        value_name = "FILE",
        requires_all = ["identity_issuer_key_file", "identity_trust_anchors_file"]
    )]
    pub identity_issuer_certificate_file: Option<PathBuf>,
    /// The issuer's private key (PEM, ECDSA P-256).
    #[arg(
        long,
        env = "MESH_IDENTITY_ISSUER_KEY_FILE",
        value_name = "FILE",
        requires = "identity_issuer_certificate_file"
    )]
    pub identity_issuer_key_file: Option<PathBuf>,
    /// The trust domain of workload identities.
    #[arg(long, env = "MESH_IDENTITY_TRUST_DOMAIN", default_value = mesh_api::identity::DEFAULT_TRUST_DOMAIN)]
    pub identity_trust_domain: String,
    /// How long workload certificates are valid.
    #[arg(long, env = "MESH_IDENTITY_ISSUANCE_LIFETIME", default_value = "24h", value_parser = humantime::parse_duration)]
    pub identity_issuance_lifetime: Duration,
    /// How far workload certificates are back-dated for clock skew.
    #[arg(long, env = "MESH_IDENTITY_CLOCK_SKEW_ALLOWANCE", default_value = "20s", value_parser = humantime::parse_duration)]
    pub identity_clock_skew_allowance: Duration,
    /// The cluster's DNS domain.
    #[arg(long, env = "MESH_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,
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
    /// The image of the control-plane binary (`mesh-controller`; local
    /// clusters map `mesh/controller` to it in `clusters/images.toml`).
    #[arg(long, env = "MESH_CONTROLLER_IMAGE", default_value = concat!("mesh/controller:v", env!("CARGO_PKG_VERSION")))]
    pub controller_image: String,
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

/// Renders the manifests as one YAML stream.
pub fn render(args: &InstallArgs) -> anyhow::Result<String> {
    if args.crds {
        let crds: Vec<manifest::Object> = mesh_api::crds::all()
            .iter()
            .map(manifest::object)
            .collect::<anyhow::Result<_>>()?;
        return manifest::to_yaml(&crds);
    }
    let material = trust_material(args)?;
    let mut objects = identity::objects(args, &material)?;
    objects.extend(destination::objects(args)?);
    objects.extend(injector::objects(args)?);
    manifest::to_yaml(&objects)
}

pub(crate) fn read(path: &PathBuf, flag: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("--{flag} {}", path.display()))
}

/// The operator's trust material, checked, or fresh material.
fn trust_material(args: &InstallArgs) -> anyhow::Result<TrustMaterial> {
    let issuer_name = mesh_api::identity::issuer_name(
        mesh_api::labels::CONTROL_PLANE_NAMESPACE,
        &args.identity_trust_domain,
    );
    let material = match (
        &args.identity_trust_anchors_file,
        &args.identity_issuer_certificate_file,
        &args.identity_issuer_key_file,
    ) {
        (Some(anchors), Some(cert), Some(key)) => TrustMaterial {
            anchors_pem: read(anchors, "identity-trust-anchors-file")?,
            issuer_cert_pem: read(cert, "identity-issuer-certificate-file")?,
            issuer_key_pem: read(key, "identity-issuer-key-file")?,
        },
        (Some(_), None, None) => anyhow::bail!(
            "--identity-trust-anchors-file needs --identity-issuer-certificate-file and --identity-issuer-key-file: \
             an issuer signed by one of those anchors"
        ),
        _ => {
            let now = SystemTime::now();
            let anchor = generate::trust_anchor(
                &format!("root.linkerd.{}", args.identity_trust_domain),
                now,
                generate::ANCHOR_LIFETIME,
            )?;
            let issuer = generate::issuer(&anchor, &issuer_name, now, generate::ISSUER_LIFETIME)?;
            TrustMaterial {
                anchors_pem: anchor.cert_pem,
                issuer_cert_pem: issuer.cert_pem,
                issuer_key_pem: issuer.key_pem,
            }
        }
    };
    let roots =
        TrustRoots::from_pem(&material.anchors_pem).context("--identity-trust-anchors-file")?;
    let policy = IssuancePolicy {
        lifetime: args.identity_issuance_lifetime,
        clock_skew: args.identity_clock_skew_allowance,
    };
    let ca = Ca::new(
        &material.issuer_cert_pem,
        &material.issuer_key_pem,
        &roots,
        policy,
        SystemTime::now(),
    )
    .context("--identity-issuer-certificate-file")?;
    if !ca.subject().contains(&format!("CN={issuer_name}")) {
        tracing::warn!(
            "the issuer certificate is named {:?}; Linkerd expects CN={issuer_name}",
            ca.subject()
        );
    }
    Ok(material)
}
