//! `mesh-controller injector`: the proxy injector MutatingWebhook (HTTPS on
//! 8443, path `/inject`), with `/ready`, `/live` and `/metrics` on the
//! admin port. Its certificate files are re-read while it runs
//! ([`ServingCertificate`]), so a changed Secret needs no restart.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use mesh_core::admin::Admin;
use mesh_core::drain::{CONTROLLER_GRACE, Drain};
use mesh_injector::Values;
use mesh_injector::serving::ServingCertificate;
use mesh_injector::webhook::{Settings, Webhook};

#[derive(Debug, Args)]
pub(crate) struct InjectorArgs {
    /// Where the webhook listens (HTTPS).
    #[arg(long, env = "MESH_INJECTOR_LISTEN", default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// Where /metrics, /ready and /live are served.
    #[arg(long, env = "MESH_ADMIN_LISTEN", default_value_t = crate::admin_listen(mesh_api::ports::INJECTOR_ADMIN))]
    admin_listen: SocketAddr,
    /// The webhook's serving certificate (PEM).
    #[arg(long, env = "MESH_INJECTOR_TLS_CERT_FILE", value_name = "FILE")]
    tls_cert_file: PathBuf,
    /// Its private key (PEM).
    #[arg(long, env = "MESH_INJECTOR_TLS_KEY_FILE", value_name = "FILE")]
    tls_key_file: PathBuf,
    /// The proxy version injected (image tag, `linkerd.io/proxy-version`).
    #[arg(long, env = "MESH_PROXY_VERSION", default_value = concat!("v", env!("CARGO_PKG_VERSION")))]
    proxy_version: String,
    /// The proxy image repository.
    #[arg(long, env = "MESH_PROXY_IMAGE", default_value = "mesh/proxy")]
    proxy_image: String,
    /// The init container's image (with its tag), which runs its own
    /// entrypoint; unset, the proxy's image runs `mesh-init` (it holds it
    /// and iptables).
    #[arg(long, env = "MESH_PROXY_INIT_IMAGE")]
    proxy_init_image: Option<String>,
    /// The proxies' CPU request (`proxy.resources.cpu.request`); a pod's
    /// `config.linkerd.io/proxy-cpu-request` overrides it.
    #[arg(long, env = "MESH_PROXY_CPU_REQUEST", value_name = "QUANTITY")]
    proxy_cpu_request: Option<String>,
    /// The proxies' CPU limit (`proxy.resources.cpu.limit`).
    #[arg(long, env = "MESH_PROXY_CPU_LIMIT", value_name = "QUANTITY")]
    proxy_cpu_limit: Option<String>,
    /// The proxies' memory request (`proxy.resources.memory.request`).
    #[arg(long, env = "MESH_PROXY_MEMORY_REQUEST", value_name = "QUANTITY")]
    proxy_memory_request: Option<String>,
    /// The proxies' memory limit (`proxy.resources.memory.limit`).
    #[arg(long, env = "MESH_PROXY_MEMORY_LIMIT", value_name = "QUANTITY")]
    proxy_memory_limit: Option<String>,
    /// The proxies' log filter.
    #[arg(
        long,
        env = "MESH_PROXY_LOG_LEVEL",
        default_value = mesh_injector::values::DEFAULT_PROXY_LOG_LEVEL
    )]
    proxy_log_level: String,
    /// The control plane's namespace (its services, its trust roots).
    #[arg(long, env = "MESH_CONTROLLER_NAMESPACE", default_value = mesh_api::labels::CONTROL_PLANE_NAMESPACE)]
    controller_namespace: String,
    /// The cluster's DNS domain.
    #[arg(long, env = "MESH_CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    /// The trust domain of workload identities.
    #[arg(long, env = "MESH_IDENTITY_TRUST_DOMAIN", default_value = mesh_api::identity::DEFAULT_TRUST_DOMAIN)]
    identity_trust_domain: String,
    /// The default inbound policy injected proxies start with
    /// (`proxy.defaultInboundPolicy`; a namespace or pod annotation
    /// `config.linkerd.io/default-inbound-policy` overrides it).
    #[arg(long, env = "MESH_DEFAULT_INBOUND_POLICY", default_value = "all-unauthenticated", value_parser = clap::builder::PossibleValuesParser::new(mesh_api::labels::DEFAULT_INBOUND_POLICIES))]
    default_inbound_policy: String,
    /// The cluster's networks (`clusterNetworks`).
    #[arg(long, env = "MESH_CLUSTER_NETWORKS", default_value = mesh_api::ports::DEFAULT_CLUSTER_NETWORKS)]
    cluster_networks: String,
}

pub(crate) async fn run(args: InjectorArgs, client: kube::Client) -> anyhow::Result<()> {
    let mut registry = prometheus_client::registry::Registry::default();
    let serving = ServingCertificate::load(&args.tls_cert_file, &args.tls_key_file, &mut registry)
        .context("the webhook's certificate (--tls-cert-file, --tls-key-file)")?;
    let tls = serving.server_config()?;
    tracing::info!(sha256 = %serving.sha256(), "serving the webhook certificate");
    let mut values = Values::new(String::new(), args.proxy_version.clone());
    values.proxy_image = args.proxy_image.clone();
    values.init_image = args.proxy_init_image.clone();
    values.log_level = args.proxy_log_level.clone();
    values.cpu_request = args.proxy_cpu_request.clone();
    values.cpu_limit = args.proxy_cpu_limit.clone();
    values.memory_request = args.proxy_memory_request.clone();
    values.memory_limit = args.proxy_memory_limit.clone();
    values.control_plane_namespace = args.controller_namespace.clone();
    values.cluster_domain = args.cluster_domain.clone();
    values.trust_domain = args.identity_trust_domain.clone();
    values.default_inbound_policy = args.default_inbound_policy.clone();
    values.cluster_networks = args.cluster_networks.clone();
    let webhook = Webhook::new(client, Settings { values });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let admin_listener = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("listening on {}", args.admin_listen))?;
    let mut drain = Drain::new();
    // Ready while the certificate it serves is valid: the API server
    // refuses an expired one, and every pod creation would then fail.
    let current = serving.clone();
    let admin = Admin::new(Arc::new(registry), move || current.is_current());
    drain.spawn(admin.serve(admin_listener, drain.signaled()));
    drain.spawn(serving.keep_fresh(drain.signaled()));
    drain.spawn(webhook.serve(listener, tls, drain.signal()));
    tracing::info!(listen = %args.listen, "proxy injector started");
    drain.until_terminated(CONTROLLER_GRACE).await;
    Ok(())
}
