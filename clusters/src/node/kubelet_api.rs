//! The part of the kubelet's HTTPS API (port 10250) that `kubectl` reaches
//! through the API server: `GET /containerLogs/{namespace}/{pod}/{container}`
//! with `follow`, `previous`, `tailLines` and `limitBytes`, and `/healthz`.
//!
//! Only the API server may call it: the server's certificate is signed by
//! the cluster CA (which the API server is told to check with
//! `--kubelet-certificate-authority`), callers must show a client
//! certificate from the same CA, and that certificate must be the API
//! server's kubelet client ([`crate::pki::KUBELET_CLIENT_NAME`]): an admin
//! or a controller holding another certificate of the CA gets 403. Names
//! in the path must be Kubernetes names (no `..`, no `/`), and logs are
//! streamed from the file in chunks: `tailLines` reads the file backwards
//! only as far as it needs, `limitBytes` reads no further than the limit.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;

/// The kubelet API port.
pub const PORT: u16 = 10250;

/// Where the kubelet API gets its certificates.
#[derive(Debug, Clone)]
pub struct KubeletTls {
    /// The serving certificate (PEM).
    pub cert: PathBuf,
    /// Its key (PEM).
    pub key: PathBuf,
    /// The CA client certificates must chain to (PEM).
    pub client_ca: PathBuf,
}

type Body = BoxBody<Bytes, std::io::Error>;

/// What the handlers need.
struct Logs {
    client: kube::Client,
    pods_dir: PathBuf,
}

fn tls_config(tls: &KubeletTls) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", tls.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", tls.key.display()))?;
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&tls.client_ca)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", tls.client_ca.display()))?
    {
        roots.add(ca.map_err(|e| anyhow::anyhow!("reading {}: {e}", tls.client_ca.display()))?)?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?)
}

/// Serves the kubelet API on `address` until the process ends.
pub async fn serve(
    address: SocketAddr,
    tls: KubeletTls,
    client: kube::Client,
    pods_dir: PathBuf,
) -> anyhow::Result<()> {
    let mut config = tls_config(&tls)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("listening on {address} for the kubelet API: {e}"))?;
    let logs = Arc::new(Logs { client, pods_dir });
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let logs = logs.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(stream).await {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::debug!(%peer, "kubelet API handshake: {e}");
                    return;
                }
            };
            let caller = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(common_name);
            let api_server = caller.as_deref() == Some(crate::pki::KUBELET_CLIENT_NAME);
            if !api_server {
                tracing::info!(%peer, ?caller, "kubelet API: a client that is not the API server: 403");
            }
            let service = service_fn(move |request| {
                let logs = logs.clone();
                async move {
                    if !api_server {
                        return Ok::<_, Infallible>(text(
                            StatusCode::FORBIDDEN,
                            format!(
                                "only the API server's kubelet client ({}) may call the kubelet API",
                                crate::pki::KUBELET_CLIENT_NAME
                            ),
                        ));
                    }
                    Ok(logs.handle(request).await)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The common name of a certificate's subject.
fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(cert).ok()?;
    let name = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_owned();
    Some(name)
}

/// Whether `name` is a Kubernetes object name: a DNS subdomain (lowercase
/// letters, digits, `-` and `.`, at most 253), or with `label` a DNS label
/// (no `.`, at most 63), as container names are.
fn kubernetes_name(name: &str, label: bool) -> bool {
    let max = if label { 63 } else { 253 };
    !name.is_empty()
        && name.len() <= max
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (b == b'.' && !label)
        })
        && !name.starts_with(['-', '.'])
        && !name.ends_with(['-', '.'])
        && !name.contains("..")
}

/// `kubectl logs` options, from the query string.
#[derive(Debug, Default, PartialEq)]
struct LogOptions {
    follow: bool,
    previous: bool,
    tail_lines: Option<usize>,
    limit_bytes: Option<usize>,
}

impl LogOptions {
    fn parse(query: Option<&str>) -> Self {
        let mut options = Self::default();
        for pair in query.unwrap_or_default().split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, "true"));
            match key {
                "follow" => options.follow = value == "true",
                "previous" => options.previous = value == "true",
                "tailLines" => options.tail_lines = value.parse().ok(),
                "limitBytes" => options.limit_bytes = value.parse().ok(),
                _ => {}
            }
        }
        options
    }
}

impl Logs {
    async fn handle(&self, request: Request<hyper::body::Incoming>) -> Response<Body> {
        let path = request.uri().path().to_string();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (request.method(), segments.as_slice()) {
            (&Method::GET, ["healthz"]) => text(StatusCode::OK, "ok".into()),
            (&Method::GET, ["containerLogs", namespace, pod, container]) => {
                for (field, value, label) in [
                    ("namespace", namespace, false),
                    ("pod", pod, false),
                    ("container", container, true),
                ] {
                    if !kubernetes_name(value, label) {
                        return text(
                            StatusCode::BAD_REQUEST,
                            format!("{field} {value:?} is not a Kubernetes name"),
                        );
                    }
                }
                let options = LogOptions::parse(request.uri().query());
                match self
                    .container_logs(namespace, pod, container, &options)
                    .await
                {
                    Ok(body) => Response::new(body),
                    Err((status, message)) => text(status, message),
                }
            }
            _ => text(
                StatusCode::NOT_FOUND,
                format!("mesh-node serves /containerLogs only, not {path}"),
            ),
        }
    }

    async fn container_logs(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        options: &LogOptions,
    ) -> Result<Body, (StatusCode, String)> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let uid = pods
            .get_opt(pod)
            .await
            .map_err(|e| {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("reading pod {namespace}/{pod}: {e}"),
                )
            })?
            .and_then(|p| p.metadata.uid)
            .ok_or_else(|| {
                (
                    StatusCode::NOT_FOUND,
                    format!("pod {namespace}/{pod} not found"),
                )
            })?;
        let dir = self.pods_dir.join(uid).join("logs").join(container);
        let known = runs(&dir);
        let run = if options.previous {
            known.iter().rev().nth(1)
        } else {
            known.last()
        };
        let Some(run) = run.copied() else {
            let what = if options.previous {
                "has no previous terminated run"
            } else {
                "has not started"
            };
            return Err((
                StatusCode::BAD_REQUEST,
                format!("container {container:?} in pod {namespace}/{pod} {what}"),
            ));
        };
        let file = dir.join(format!("{run}.log"));
        let unreadable = |e: std::io::Error| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading {}: {e}", file.display()),
            )
        };
        let length = tokio::fs::metadata(&file).await.map_err(unreadable)?.len();
        let start = match options.tail_lines {
            Some(lines) => tail_start(&file, length, lines).await.map_err(unreadable)?,
            None => 0,
        };
        let end = match options.limit_bytes {
            Some(limit) => length.min(start.saturating_add(limit as u64)),
            None => length,
        };
        let head = read_range(file.clone(), start, end);
        if options.limit_bytes.is_some() || !options.follow || options.previous {
            return Ok(BodyExt::boxed(StreamBody::new(head)));
        }
        let follow = futures::stream::unfold(
            (file, dir, run, end),
            |(file, dir, run, offset)| async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    let grown = read_at(&file, offset, CHUNK).await;
                    match grown {
                        Ok(bytes) if !bytes.is_empty() => {
                            let next = offset + bytes.len() as u64;
                            return Some((
                                Ok(Frame::data(Bytes::from(bytes))),
                                (file, dir, run, next),
                            ));
                        }
                        Ok(_) if runs(&dir).last().is_some_and(|last| *last > run) => return None,
                        Ok(_) => continue,
                        Err(_) => return None,
                    }
                }
            },
        );
        Ok(BodyExt::boxed(StreamBody::new(head.chain(follow))))
    }
}

/// How much of a log is read at a time.
const CHUNK: u64 = 64 * 1024;

/// Bytes `start..end` of `file`, a chunk at a time.
fn read_range(
    file: PathBuf,
    start: u64,
    end: u64,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send + Sync + 'static {
    futures::stream::unfold((file, start), move |(file, offset)| async move {
        if offset >= end {
            return None;
        }
        let chunk = read_at(&file, offset, (end - offset).min(CHUNK)).await;
        match chunk {
            Ok(bytes) if !bytes.is_empty() => {
                let next = offset + bytes.len() as u64;
                Some((Ok(Frame::data(Bytes::from(bytes))), (file, next)))
            }
            Ok(_) => None,
            Err(e) => Some((Err(e), (file, end))),
        }
    })
}

/// Up to `len` bytes of `file` from `offset`.
async fn read_at(file: &Path, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut f = tokio::fs::File::open(file).await?;
    f.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut bytes = Vec::new();
    f.take(len).read_to_end(&mut bytes).await?;
    Ok(bytes)
}

/// Where the last `lines` lines of the first `length` bytes of `file`
/// start, reading backwards a chunk at a time and no further than needed.
async fn tail_start(file: &Path, length: u64, lines: usize) -> std::io::Result<u64> {
    if lines == 0 {
        return Ok(length);
    }
    let mut end = length;
    let mut wanted = lines;
    // A last line ending in a newline: that newline does not start a line.
    let mut skip_last_newline = true;
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = read_at(file, start, end - start).await?;
        for (i, byte) in chunk.iter().enumerate().rev() {
            let at = start + i as u64;
            if *byte != b'\n' {
                skip_last_newline = false;
                continue;
            }
            if skip_last_newline && at + 1 == length {
                skip_last_newline = false;
                continue;
            }
            skip_last_newline = false;
            wanted -= 1;
            if wanted == 0 {
                return Ok(at + 1);
            }
        }
        end = start;
    }
    Ok(0)
}

/// The run numbers (`<n>.log`) in a container's log directory, in order.
fn runs(dir: &Path) -> Vec<u32> {
    let mut runs: Vec<u32> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    runs.sort_unstable();
    runs
}

fn full(bytes: Vec<u8>) -> Body {
    Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed()
}

fn text(status: StatusCode, message: String) -> Response<Body> {
    let mut response = Response::new(full(message.into_bytes()));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_options_are_read() {
        assert_eq!(
            LogOptions::parse(Some("follow=true&tailLines=10&timestamps=false")),
            LogOptions {
                follow: true,
                tail_lines: Some(10),
                ..LogOptions::default()
            }
        );
        assert_eq!(LogOptions::parse(None), LogOptions::default());
    }

    async fn tail(contents: &[u8], lines: usize) -> Vec<u8> {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("0.log");
        std::fs::write(&file, contents).expect("write");
        let start = tail_start(&file, contents.len() as u64, lines)
            .await
            .expect("tail");
        contents[usize::try_from(start).expect("offset")..].to_vec()
    }

    #[tokio::test]
    async fn tail_takes_the_last_lines() {
        let log = b"one\ntwo\nthree\n";
        assert_eq!(tail(log, 1).await, b"three\n");
        assert_eq!(tail(log, 2).await, b"two\nthree\n");
        assert_eq!(tail(log, 9).await, log);
        assert_eq!(tail(log, 0).await, b"");
        assert_eq!(tail(b"a\nb", 1).await, b"b");
        // Across chunk boundaries.
        let long: Vec<u8> = (0..50_000)
            .flat_map(|n| format!("line {n}\n").into_bytes())
            .collect();
        assert_eq!(tail(&long, 2).await, b"line 49998\nline 49999\n");
        let lines = String::from_utf8(tail(&long, 30_000).await).expect("utf-8");
        assert_eq!(lines.lines().count(), 30_000);
        assert!(lines.starts_with("line 20000\n"));
    }

    #[test]
    fn only_kubernetes_names_reach_the_file_system() {
        for name in ["web", "web-1", "kube-system"] {
            assert!(kubernetes_name(name, true), "{name}");
        }
        assert!(kubernetes_name("web.v1", false));
        for name in ["..", ".", "", "a/b", "A", "-a", "a..b", "web.v1", "%2e%2e"] {
            assert!(!kubernetes_name(name, true), "{name:?}");
        }
        assert!(!kubernetes_name("..", false));
        assert!(!kubernetes_name(&"a".repeat(64), true));
    }

    #[test]
    fn runs_are_numbered_log_files() {
        let dir = tempfile::tempdir().expect("dir");
        for name in ["0.log", "1.log", "10.log", "notes.txt"] {
            std::fs::write(dir.path().join(name), "").expect("write");
        }
        assert_eq!(runs(dir.path()), vec![0, 1, 10]);
    }
}
