//! `mesh-controller identity`: the identity service, with Linkerd's file
//! layout as defaults (the trust roots ConfigMap and issuer Secret mounted
//! under `/var/run/linkerd/identity/`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use mesh_identity::admission::Limits;
use mesh_identity::ca::IssuancePolicy;
use mesh_identity::issuer::IssuerFiles;
use mesh_identity::server::{self, ServerConfig};

#[derive(Debug, Args)]
pub(crate) struct IdentityArgs {
    /// Where gRPC (Identity.Certify) listens.
    #[arg(long, env = "MESH_IDENTITY_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Where /metrics, /ready and /live are served.
    #[arg(long, env = "MESH_ADMIN_LISTEN", default_value_t = crate::admin_listen(mesh_api::ports::IDENTITY_ADMIN))]
    admin_listen: SocketAddr,
    /// The trust anchors bundle (the `linkerd-identity-trust-roots` ConfigMap's ca-bundle.crt).
    #[arg(
        long,
        env = "MESH_IDENTITY_TRUST_ANCHORS_FILE",
        default_value = "/var/run/linkerd/identity/trust-roots/ca-bundle.crt"
    )]
    trust_anchors_file: PathBuf,
    /// The mounted `linkerd-identity-issuer` Secret (tls.crt/tls.key or crt.pem/key.pem).
    #[arg(
        long,
        env = "MESH_IDENTITY_ISSUER_DIR",
        default_value = "/var/run/linkerd/identity/issuer"
    )]
    issuer_dir: PathBuf,
    /// The issuer certificate, instead of the one in --issuer-dir.
    #[arg(
        long,
        env = "MESH_IDENTITY_ISSUER_CERTIFICATE_FILE",
        requires = "issuer_key_file"
    )]
    issuer_certificate_file: Option<PathBuf>,
    /// The issuer key, instead of the one in --issuer-dir.
    #[arg(
        long,
        env = "MESH_IDENTITY_ISSUER_KEY_FILE",
        requires = "issuer_certificate_file"
    )]
    issuer_key_file: Option<PathBuf>,
    /// How long issued certificates are valid.
    #[arg(long, env = "MESH_IDENTITY_ISSUANCE_LIFETIME", default_value = "24h", value_parser = humantime::parse_duration)]
    identity_issuance_lifetime: Duration,
    /// How far certificates are back-dated for clock skew.
    #[arg(long, env = "MESH_IDENTITY_CLOCK_SKEW_ALLOWANCE", default_value = "20s", value_parser = humantime::parse_duration)]
    identity_clock_skew_allowance: Duration,
    /// The control plane's namespace.
    #[arg(long, env = "MESH_CONTROLLER_NAMESPACE", default_value = mesh_api::labels::CONTROL_PLANE_NAMESPACE)]
    controller_namespace: String,
    /// The trust domain of identities.
    #[arg(long, env = "MESH_IDENTITY_TRUST_DOMAIN", default_value = mesh_api::identity::DEFAULT_TRUST_DOMAIN)]
    identity_trust_domain: String,
    /// How often the issuer and trust anchor files are checked for changes.
    #[arg(long, env = "MESH_IDENTITY_RELOAD_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    reload_interval: Duration,
    /// TokenReviews in flight at most; a Certify request waits up to 2 s
    /// for a place, then is refused as Unavailable.
    #[arg(
        long,
        env = "MESH_IDENTITY_MAX_CONCURRENT_REVIEWS",
        default_value_t = 32
    )]
    identity_max_concurrent_reviews: usize,
    /// Certify requests one client address may make at once.
    #[arg(long, env = "MESH_IDENTITY_SOURCE_BURST", default_value_t = 20)]
    identity_source_burst: u32,
    /// Certify requests per second one client address may make over time.
    #[arg(long, env = "MESH_IDENTITY_SOURCE_RATE", default_value_t = 5.0)]
    identity_source_rate: f64,
    /// Keep a copy of the trust roots, with the issuer in force, in every
    /// namespace a workload is certified in (`mesh-identity-trust-roots`),
    /// for its proxies to follow without a restart.
    #[arg(
        long,
        env = "MESH_IDENTITY_TRUST_COPIES",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    identity_trust_copies: bool,
}

pub(crate) async fn run(args: IdentityArgs, client: kube::Client) -> anyhow::Result<()> {
    let mut files = IssuerFiles::in_secret_dir(&args.issuer_dir, args.trust_anchors_file);
    if let (Some(cert), Some(key)) = (args.issuer_certificate_file, args.issuer_key_file) {
        files.certificate = cert;
        files.key = key;
    }
    let config = ServerConfig {
        listen: args.listen,
        admin_listen: args.admin_listen,
        files,
        policy: IssuancePolicy {
            lifetime: args.identity_issuance_lifetime,
            clock_skew: args.identity_clock_skew_allowance,
        },
        control_namespace: args.controller_namespace,
        trust_domain: args.identity_trust_domain,
        reload_interval: args.reload_interval,
        admission: Limits {
            max_concurrent_reviews: args.identity_max_concurrent_reviews,
            burst: args.identity_source_burst,
            per_second: args.identity_source_rate,
            ..Limits::default()
        },
        trust_copies: args.identity_trust_copies,
    };
    let running = server::start(config, client).await?;
    running.until_terminated().await;
    Ok(())
}
