//! `mesh-controller injector`: the proxy injector MutatingWebhook (HTTPS on
//! 8443, path `/inject`), with `/ready`, `/live` and `/metrics` on the
//! admin port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use mesh_injector::Values;
use mesh_injector::webhook::{Settings, Webhook};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, Args)]
pub(crate) struct InjectorArgs {
    /// Where the webhook listens (HTTPS).
    #[arg(long, env = "MESH_INJECTOR_LISTEN", default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// Where /metrics, /ready and /live are served.
    #[arg(long, env = "MESH_ADMIN_LISTEN", default_value = "0.0.0.0:9995")]
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
    /// The init container's image (with its tag); `mesh/proxy-init:<proxy version>` when unset.
    #[arg(long, env = "MESH_PROXY_INIT_IMAGE")]
    proxy_init_image: Option<String>,
    /// The proxies' log filter.
    #[arg(
        long,
        env = "MESH_PROXY_LOG_LEVEL",
        default_value = "warn,mesh_proxy=info"
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
}

fn tls(args: &InjectorArgs) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(&args.tls_cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("--tls-cert-file {}", args.tls_cert_file.display()))?;
    let key = PrivateKeyDer::from_pem_file(&args.tls_key_file)
        .with_context(|| format!("--tls-key-file {}", args.tls_key_file.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .context("the webhook's certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

pub(crate) async fn run(args: InjectorArgs, client: kube::Client) -> anyhow::Result<()> {
    let tls = tls(&args)?;
    let mut values = Values::new(String::new(), args.proxy_version.clone());
    values.proxy_image = args.proxy_image.clone();
    if let Some(image) = &args.proxy_init_image {
        values.init_image = image.clone();
    }
    values.log_level = args.proxy_log_level.clone();
    values.control_plane_namespace = args.controller_namespace.clone();
    values.cluster_domain = args.cluster_domain.clone();
    values.trust_domain = args.identity_trust_domain.clone();
    let webhook = Webhook::new(client, Settings { values });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let admin_listener = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("listening on {}", args.admin_listen))?;
    let registry = Arc::new(prometheus_client::registry::Registry::default());
    let admin = mesh_proxy::admin::Admin::new(registry, || true);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let admin_task = tokio::spawn(admin.serve(admin_listener, stopped(stop_rx.clone())));
    tracing::info!(listen = %args.listen, "proxy injector started");
    let serve = webhook.serve(listener, tls, stopped(stop_rx));
    tokio::pin!(serve);
    tokio::select! {
        () = &mut serve => {}
        () = crate::shutdown_signal() => {
            let _ = stop_tx.send(true);
            serve.await;
        }
    }
    let _ = admin_task.await;
    Ok(())
}
