//! Rotations under load: a client and a server workload keep exchanging
//! requests over mTLS (new connections and one long-lived connection) while
//! the issuer is replaced (same anchor), and then while the trust anchor is
//! replaced (a two-anchor bundle, a new issuer from the new anchor, the old
//! anchor removed). Not one request may fail. The issuer Secret changes as
//! cert-manager renews a `kubernetes.io/tls` Secret (certificate, new key
//! and CA at once) and kubelet projects it into the pod (one `..data`
//! swap); the identity service is never restarted.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use mesh_api::IdentityName;
use mesh_clusters::testing::shared_cluster;
use mesh_core::identity::refresh::IdentityMetrics;
use mesh_core::tls::{self, ClientAuth, Credentials};
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;

/// Leaves live three seconds, so they are renewed every two.
const LIFETIME: Duration = Duration::from_secs(3);

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// An mTLS echo server requiring client certificates.
async fn echo_server(creds: Arc<Credentials>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(
        creds.server_config(ClientAuth::Required, &[]).expect("cfg"),
    );
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let peer = tls::peer_identity(tls.get_ref().1).unwrap_or_default();
                let (read, mut write) = tokio::io::split(tls);
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if write
                        .write_all(format!("{line} from {peer}\n").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// One request on a connection: a line out, the echo back.
async fn exchange<S>(
    lines: &mut tokio::io::Lines<BufReader<tokio::io::ReadHalf<S>>>,
    write: &mut tokio::io::WriteHalf<S>,
    expect_peer: &str,
) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite,
{
    if write.write_all(b"ping\n").await.is_err() {
        return false;
    }
    matches!(lines.next_line().await, Ok(Some(line)) if line == format!("ping from {expect_peer}"))
}

fn load(
    creds: Arc<Credentials>,
    addr: std::net::SocketAddr,
    server_identity: String,
    client_identity: String,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let connector = tokio_rustls::TlsConnector::from(creds.client_config(&[]).expect("cfg"));
    let mut tasks = Vec::new();
    // New connections, one request each: every handshake sees the newest
    // certificates and roots.
    for _ in 0..2 {
        let (connector, server_identity, client_identity, counts, stop) = (
            connector.clone(),
            server_identity.clone(),
            client_identity.clone(),
            counts.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let ok = async {
                    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
                    let tls = connector
                        .connect(tls::server_name(&server_identity).ok()?, tcp)
                        .await
                        .ok()?;
                    let (read, mut write) = tokio::io::split(tls);
                    let mut lines = BufReader::new(read).lines();
                    Some(exchange(&mut lines, &mut write, &client_identity).await)
                }
                .await
                .unwrap_or(false);
                let counter = if ok { &counts.ok } else { &counts.failed };
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    // One connection kept open across every rotation.
    tasks.push(tokio::spawn(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let tls = connector
            .connect(tls::server_name(&server_identity).expect("name"), tcp)
            .await
            .expect("long-lived handshake");
        let (read, mut write) = tokio::io::split(tls);
        let mut lines = BufReader::new(read).lines();
        while !stop.load(Ordering::Relaxed) {
            let counter = if exchange(&mut lines, &mut write, &client_identity).await {
                &counts.ok
            } else {
                &counts.failed
            };
            counter.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }));
    tasks
}

#[tokio::test]
async fn issuer_and_trust_anchor_rotations_fail_no_request() {
    let cluster = shared_cluster().await;
    let ns = cluster.namespace("rotate").await;
    service_account(&cluster, &ns, "client").await;
    service_account(&cluster, &ns, "server").await;
    let svc = TestIdentity::start(&cluster, LIFETIME).await;
    let (stop_tx, stop_rx) = watch::channel(false);

    let mut registry = prometheus_client::registry::Registry::default();
    let client_metrics = IdentityMetrics::register(&mut registry);
    let mut workloads = Vec::new();
    for sa in ["client", "server"] {
        let name = IdentityName::for_service_account(sa, &ns).to_string();
        let metrics = if sa == "client" {
            client_metrics.clone()
        } else {
            IdentityMetrics::default()
        };
        let creds = spawn_workload(&cluster, &svc, &ns, sa, None, metrics, stop_rx.clone()).await;
        workloads.push((name, creds));
    }
    for _ in 0..100 {
        if workloads.iter().all(|(_, c)| c.has_certificate()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (client_name, client) = workloads[0].clone();
    let (server_name, server) = workloads[1].clone();
    assert!(
        client.has_certificate() && server.has_certificate(),
        "workloads were not certified"
    );

    let addr = echo_server(server.clone()).await;
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load(
        client.clone(),
        addr,
        server_name,
        client_name,
        counts.clone(),
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 1. A new issuer from the same anchor, as cert-manager renews it
    // (kubernetes.io/tls Secret, a new key) and kubelet projects it.
    let issuer2 = new_issuer(&svc.anchor);
    renew_issuer(&svc, &issuer2, &svc.anchor);
    wait_for_issuer(&[&client, &server], &issuer2.cert_pem).await;
    let after_issuer_rotation = counts.ok.load(Ordering::Relaxed);

    // 2. A new anchor: trust both, move the issuer to the new one, then drop the old.
    let anchor2 = new_anchor();
    set_trust_roots(
        &svc,
        &format!("{}{}", svc.anchor.cert_pem, anchor2.cert_pem),
    );
    let both = roots_of(&[&svc.anchor, &anchor2]);
    for w in [&client, &server] {
        w.set_roots(&both).expect("two-anchor roots");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let issuer3 = new_issuer(&anchor2);
    renew_issuer(&svc, &issuer3, &anchor2);
    wait_for_issuer(&[&client, &server], &issuer3.cert_pem).await;
    set_trust_roots(&svc, &anchor2.cert_pem);
    let only_new = roots_of(&[&anchor2]);
    for w in [&client, &server] {
        w.set_roots(&only_new).expect("new roots");
    }
    // Renewals keep working under the new anchor alone.
    tokio::time::sleep(LIFETIME + Duration::from_secs(1)).await;
    wait_for_issuer(&[&client, &server], &issuer3.cert_pem).await;

    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("load task");
    }
    let _ = stop_tx.send(true);
    let ok = counts.ok.load(Ordering::Relaxed);
    let failed = counts.failed.load(Ordering::Relaxed);
    eprintln!("rotation under load: {ok} requests succeeded, {failed} failed");
    assert_eq!(failed, 0, "{failed} requests failed ({ok} succeeded)");
    assert!(
        after_issuer_rotation > 100 && ok > after_issuer_rotation + 100,
        "too little load: {ok} requests"
    );
    let metrics = svc.metrics().await;
    // Issuer, two-anchor bundle, new issuer, old anchor removed: four changes.
    assert!(
        counter(&metrics, "identity_issuer_reloads_total") >= 4.0,
        "{metrics}"
    );

    // The proxy-side metrics say when the current certificate expires.
    let mut exposed = String::new();
    prometheus_client::encoding::text::encode(&mut exposed, &registry).expect("encode");
    let expiry = counter(&exposed, "identity_cert_expiration_timestamp_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs_f64();
    assert!(
        expiry > now - 1.0 && expiry < now + 10.0,
        "expiry {expiry} vs now {now}"
    );
    assert!(
        counter(&exposed, "identity_cert_refresh_total") >= 3.0,
        "{exposed}"
    );
    svc.running.shutdown().await;
}

/// The value of an unlabelled sample in a Prometheus text exposition.
fn counter(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name}:\n{exposition}"))
}
