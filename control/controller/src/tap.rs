//! `mesh-controller tap`: viz's tap component, an extension API server
//! behind `APIService v1alpha1.tap.linkerd.io` ([`mesh_viz::tap_server`]).
//! It taps proxies as its own identity (`tap.linkerd-viz.serviceaccount…`),
//! certified by the identity service with its ServiceAccount token, and
//! trusts the roots the control plane publishes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::runtime::WatchStreamExt as _;
use mesh_core::admin::Admin;
use mesh_core::drain::{CONTROLLER_GRACE, Drain};
use mesh_viz::tap_server::authn::{CONFIGMAP, RequestHeader};
use mesh_viz::tap_server::proxies::Proxies;
use mesh_viz::tap_server::{TapServer, serve};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, Args)]
pub(crate) struct TapArgs {
    /// Where the API server reaches it (HTTPS).
    #[arg(long, env = "MESH_TAP_LISTEN", default_value_t = crate::admin_listen(mesh_api::ports::TAP))]
    listen: SocketAddr,
    /// Where /metrics, /ready and /live are served.
    #[arg(long, env = "MESH_ADMIN_LISTEN", default_value_t = crate::admin_listen(mesh_api::ports::TAP_ADMIN))]
    admin_listen: SocketAddr,
    /// Its serving certificate, which the APIService's caBundle trusts (PEM).
    #[arg(long, env = "MESH_TAP_TLS_CERT_FILE", value_name = "FILE")]
    tls_cert_file: PathBuf,
    /// Its private key (PEM).
    #[arg(long, env = "MESH_TAP_TLS_KEY_FILE", value_name = "FILE")]
    tls_key_file: PathBuf,
    /// The control plane's namespace (its trust roots, and in identities).
    #[arg(long, env = "MESH_CONTROLLER_NAMESPACE", default_value = mesh_api::labels::CONTROL_PLANE_NAMESPACE)]
    controller_namespace: String,
    /// The trust domain of workload identities.
    #[arg(long, env = "MESH_IDENTITY_TRUST_DOMAIN", default_value = mesh_api::identity::DEFAULT_TRUST_DOMAIN)]
    identity_trust_domain: String,
    /// Its own identity, the one proxies let tap them.
    #[arg(
        long,
        env = "MESH_IDENTITY_LOCAL_NAME",
        default_value = "tap.linkerd-viz.serviceaccount.identity.linkerd.cluster.local"
    )]
    identity_local_name: String,
    #[command(flatten)]
    identity: crate::serving_identity::IdentityServiceArgs,
}

pub(crate) async fn run(args: TapArgs, client: kube::Client) -> anyhow::Result<()> {
    let (ns, name) = CONFIGMAP;
    let authentication = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .with_context(|| {
            format!("reading {ns}/{name} (the API server's aggregation layer settings)")
        })?;
    let authn = RequestHeader::from_data(&authentication.data.unwrap_or_default())?;
    let roots = mesh_api::labels::TRUST_ROOTS_CONFIGMAP;
    let anchors = Api::<ConfigMap>::namespaced(client.clone(), &args.controller_namespace)
        .get(roots)
        .await
        .with_context(|| {
            format!(
                "reading {}/{roots} (the trust anchors)",
                args.controller_namespace
            )
        })?
        .data
        .and_then(|d| d.get(mesh_api::labels::TRUST_BUNDLE_KEY).cloned())
        .with_context(|| {
            format!(
                "{}/{roots} has no {}",
                args.controller_namespace,
                mesh_api::labels::TRUST_BUNDLE_KEY
            )
        })?;
    let chain = CertificateDer::pem_file_iter(&args.tls_cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("--tls-cert-file {}", args.tls_cert_file.display()))?;
    let key = PrivateKeyDer::from_pem_file(&args.tls_key_file)
        .with_context(|| format!("--tls-key-file {}", args.tls_key_file.display()))?;
    let tls = authn.server_config(chain, key)?;

    let mut registry = prometheus_client::registry::Registry::default();
    let mut drain = Drain::new();
    let credentials = mesh_core::identity::certified_credentials(
        &args.identity_local_name,
        &anchors,
        args.identity.config(None),
        &mut registry,
        &mut drain,
    )?;
    // Every pod, to name the other side of a tapped request.
    let (pods, writer) = kube::runtime::reflector::store();
    let watch = kube::runtime::reflector(
        writer,
        kube::runtime::watcher(
            Api::<k8s_openapi::api::core::v1::Pod>::all(client.clone()),
            kube::runtime::watcher::Config::default(),
        ),
    )
    .default_backoff()
    .for_each(|_| std::future::ready(()));
    let stop = drain.signaled();
    drain.spawn(async move {
        tokio::select! {
            () = watch => {}
            () = stop => {}
        }
    });
    let server = Arc::new(TapServer {
        pods: Some(pods),
        client,
        authn,
        proxies: Proxies {
            credentials: credentials.clone(),
            controller_namespace: args.controller_namespace.clone(),
            trust_domain: args.identity_trust_domain.clone(),
            port: mesh_api::ports::PROXY_CONTROL,
        },
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let admin_listener = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("listening on {}", args.admin_listen))?;
    // Ready once it can tap: certified by the identity service.
    let admin = Admin::new(Arc::new(registry), move || credentials.has_certificate());
    drain.spawn(admin.serve(admin_listener, drain.signaled()));
    drain.spawn(serve(listener, tls, server, drain.signaled()));
    tracing::info!(listen = %args.listen, identity = %args.identity_local_name, "tap started");
    drain.until_terminated(CONTROLLER_GRACE).await;
    Ok(())
}
