//! Identity benchmarks, each a ratio or a rate measured in one run:
//!
//! 1. certificates signed per second on one core by the CA alone
//!    (CSR checks and signing, no I/O);
//! 2. certificates per second end to end (gRPC over TLS, TokenReview against
//!    a real kube-apiserver on this host, signing), several clients at once;
//! 3. TLS 1.3 mutual handshakes per second on one core with our
//!    configurations (certificates and verifiers swappable at run time)
//!    against plain rustls configurations built once, in memory, so only
//!    the TLS work is measured.
//!
//! Run: `cargo run --release -p mesh-bench --bin identity-bench`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mesh_api::IdentityName;
use mesh_core::identity::{LocalKey, client};
use mesh_core::tls::{self, ClientAuth, Credentials};
use mesh_identity::ca::{Ca, IssuancePolicy, TrustRoots};
use mesh_identity::generate;
use mesh_identity::issuer::IssuerFiles;
use mesh_identity::server::{self, ServerConfig};
use rustls::{ClientConnection, RootCertStore, ServerConnection};
use rustls_pki_types::CertificateDer;
use tokio::time::Instant;

const DAY: Duration = Duration::from_secs(86400);

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let now = SystemTime::now();
    let anchor = generate::trust_anchor("root.linkerd.cluster.local", now - DAY, 3650 * DAY)?;
    let issuer = generate::issuer(
        &anchor,
        "identity.linkerd.cluster.local",
        now - DAY,
        365 * DAY,
    )?;
    let roots = TrustRoots::from_pem(&anchor.cert_pem)?;
    let ca = Ca::new(
        &issuer.cert_pem,
        &issuer.key_pem,
        &roots,
        IssuancePolicy::default(),
        now,
    )?;

    println!("| measure | result |");
    println!("|---|---|");
    let signed = ca_signing_rate(&ca)?;
    println!("| CA alone: certificates signed per second, one core | {signed:.0} |");
    let e2e = runtime.block_on(end_to_end_rate(&anchor, &issuer))?;
    println!(
        "| end to end (gRPC+TLS, TokenReview, signing), 8 concurrent clients, 2 cores shared with kube-apiserver: certificates per second | {e2e:.0} |"
    );
    println!("| end to end per core | {:.0} |", e2e / 2.0);
    let (ours, baseline) = handshake_rates(&ca, &roots)?;
    println!("| TLS 1.3 mTLS handshakes per second, one core: ours | {ours:.0} |");
    println!("| TLS 1.3 mTLS handshakes per second, one core: plain rustls | {baseline:.0} |");
    println!("| ours / plain rustls | {:.3} |", ours / baseline);
    Ok(())
}

fn ca_signing_rate(ca: &Ca) -> anyhow::Result<f64> {
    const N: usize = 2000;
    let id = IdentityName::for_service_account("web", "bench");
    let name = id.to_string();
    let spiffe = id.spiffe_id();
    let csrs: Vec<LocalKey> = (0..N)
        .map(|_| LocalKey::generate(&name))
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    for key in &csrs {
        ca.certify(&name, &spiffe, key.csr_der(), SystemTime::now())?;
    }
    Ok(N as f64 / started.elapsed().as_secs_f64())
}

async fn end_to_end_rate(
    anchor: &generate::CertAndKey,
    issuer: &generate::CertAndKey,
) -> anyhow::Result<f64> {
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 100;
    let binaries = mesh_clusters::Binaries::locate()?;
    let dir = tempfile::tempdir()?;
    let plane = mesh_clusters::ControlPlane::start(
        &binaries,
        &dir.path().join("cluster"),
        mesh_clusters::ControlPlaneConfig::default(),
    )
    .await?;
    let kube = plane.client().await?;
    mesh_clusters::testing::ensure_namespace(&kube, "bench").await;
    mesh_clusters::testing::service_account(&kube, "bench", "web").await;
    let token = mesh_clusters::testing::request_token(
        &kube,
        "bench",
        "web",
        mesh_api::labels::IDENTITY_TOKEN_AUDIENCE,
    )
    .await;
    let token_path = dir.path().join("token");
    std::fs::write(&token_path, token)?;
    let files = IssuerFiles {
        trust_anchors: dir.path().join("ca-bundle.crt"),
        certificate: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    };
    std::fs::write(&files.trust_anchors, &anchor.cert_pem)?;
    std::fs::write(&files.certificate, &issuer.cert_pem)?;
    std::fs::write(&files.key, &issuer.key_pem)?;
    let running = server::start(
        ServerConfig {
            listen: "127.0.0.1:0".parse()?,
            admin_listen: "127.0.0.1:0".parse()?,
            files,
            policy: IssuancePolicy::default(),
            control_namespace: "linkerd".into(),
            trust_domain: "cluster.local".into(),
            reload_interval: Duration::from_secs(60),
            // Signing throughput from one load generator: no per-source
            // rate limit in the way.
            admission: mesh_identity::admission::Limits {
                burst: u32::MAX,
                per_second: f64::MAX,
                ..Default::default()
            },
            trust_copies: false,
        },
        kube,
    )
    .await?;
    let identity = IdentityName::for_service_account("web", "bench").to_string();
    let anchors = mesh_identity::pem::certificates(anchor.cert_pem.as_bytes(), "anchor")?;
    let creds = Credentials::new(&identity, &anchors)?;
    let channel = client::channel(&running.addr.to_string(), &running.server_identity, &creds)?;
    // Warm up the connection.
    client::certify(channel.clone(), &identity, &token_path).await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (channel, identity, token_path) =
            (channel.clone(), identity.clone(), token_path.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..PER_CLIENT {
                client::certify(channel.clone(), &identity, &token_path).await?;
            }
            Ok::<_, client::CertifyError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let rate = (CLIENTS * PER_CLIENT) as f64 / started.elapsed().as_secs_f64();
    running.shutdown().await;
    plane.stop().await;
    Ok(rate)
}

/// Drives one handshake between two in-memory connections.
fn handshake(client: &mut ClientConnection, server: &mut ServerConnection) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    while client.is_handshaking() || server.is_handshaking() {
        buf.clear();
        client.write_tls(&mut buf)?;
        let mut slice = buf.as_slice();
        while !slice.is_empty() {
            server.read_tls(&mut slice)?;
        }
        server.process_new_packets()?;
        buf.clear();
        server.write_tls(&mut buf)?;
        let mut slice = buf.as_slice();
        while !slice.is_empty() {
            client.read_tls(&mut slice)?;
        }
        client.process_new_packets()?;
    }
    Ok(())
}

fn issue(ca: &Ca, sa: &str) -> anyhow::Result<(String, Vec<CertificateDer<'static>>, LocalKey)> {
    let id = IdentityName::for_service_account(sa, "bench");
    let name = id.to_string();
    let key = LocalKey::generate(&name)?;
    let issued = ca.certify(&name, &id.spiffe_id(), key.csr_der(), SystemTime::now())?;
    let mut chain = vec![issued.leaf];
    chain.extend(issued.intermediates);
    Ok((name, chain, key))
}

fn handshake_rates(ca: &Ca, roots: &TrustRoots) -> anyhow::Result<(f64, f64)> {
    const N: usize = 3000;
    let (server_name, server_chain, server_key) = issue(ca, "server")?;
    let (client_name, client_chain, client_key) = issue(ca, "client")?;

    // Ours.
    let server_creds = Credentials::new(&server_name, roots.certs())?;
    server_creds.set_certificate(server_chain.clone(), server_key.private_key())?;
    let client_creds = Credentials::new(&client_name, roots.certs())?;
    client_creds.set_certificate(client_chain.clone(), client_key.private_key())?;
    let ours_server = server_creds.server_config(ClientAuth::Required, &[])?;
    let ours_client = client_creds.client_config(&[])?;

    // Plain rustls, built once.
    let provider = tls::provider();
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(roots.certs().iter().cloned());
    let store = Arc::new(store);
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        store.clone(),
        provider.clone(),
    )
    .build()?;
    let plain_server = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(server_chain, server_key.private_key())?,
    );
    let plain_client = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(store)
            .with_client_auth_cert(client_chain, client_key.private_key())?,
    );

    let sni = tls::server_name(&server_name)?;
    let measure = |client_cfg: &Arc<rustls::ClientConfig>,
                   server_cfg: &Arc<rustls::ServerConfig>|
     -> anyhow::Result<f64> {
        let started = Instant::now();
        for _ in 0..N {
            let mut client = ClientConnection::new(client_cfg.clone(), sni.clone())?;
            let mut server = ServerConnection::new(server_cfg.clone())?;
            handshake(&mut client, &mut server)?;
        }
        Ok(N as f64 / started.elapsed().as_secs_f64())
    };
    // One warm-up each, then three timed rounds, interleaved so that noise
    // on this shared host falls on both alike.
    measure(&ours_client, &ours_server)?;
    measure(&plain_client, &plain_server)?;
    let mut ours = 0.0;
    let mut plain = 0.0;
    for _ in 0..3 {
        ours += measure(&ours_client, &ours_server)?;
        plain += measure(&plain_client, &plain_server)?;
    }
    Ok((ours / 3.0, plain / 3.0))
}
