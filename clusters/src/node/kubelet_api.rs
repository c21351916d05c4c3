//! The part of the kubelet's HTTPS API (port 10250) that `kubectl` reaches
//! through the API server: `GET /containerLogs/{namespace}/{pod}/{container}`
//! with `follow`, `previous`, `tailLines` and `limitBytes`, and `/healthz`.
//!
//! Only the API server may call it: the server's certificate is signed by
//! the cluster CA (which the API server is told to check with
//! `--kubelet-certificate-authority`) and callers must show a client
//! certificate from the same CA.

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
            let service = service_fn(move |request| {
                let logs = logs.clone();
                async move { Ok::<_, Infallible>(logs.handle(request).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
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
        let contents = tokio::fs::read(&file).await.map_err(|e| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading {}: {e}", file.display()),
            )
        })?;
        let start = options.tail_lines.map_or(0, |n| tail_offset(&contents, n));
        let mut head = contents[start..].to_vec();
        if let Some(limit) = options.limit_bytes {
            head.truncate(limit);
            return Ok(full(head));
        }
        if !options.follow || options.previous {
            return Ok(full(head));
        }
        let offset = contents.len() as u64;
        let follow = futures::stream::unfold(
            (file, dir, run, offset),
            |(file, dir, run, offset)| async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    let grown = read_from(&file, offset).await;
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
        let first = futures::stream::once(async move { Ok(Frame::data(Bytes::from(head))) });
        Ok(BodyExt::boxed(StreamBody::new(first.chain(follow))))
    }
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

/// Where the last `lines` lines of `contents` start.
fn tail_offset(contents: &[u8], lines: usize) -> usize {
    if lines == 0 {
        return contents.len();
    }
    let body = contents.strip_suffix(b"\n").unwrap_or(contents);
    body.iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'\n')
        .nth(lines - 1)
        .map_or(0, |(i, _)| i + 1)
}

async fn read_from(file: &Path, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut f = tokio::fs::File::open(file).await?;
    f.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).await?;
    Ok(bytes)
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

    #[test]
    fn tail_takes_the_last_lines() {
        let log = b"one\ntwo\nthree\n";
        assert_eq!(&log[tail_offset(log, 1)..], b"three\n");
        assert_eq!(&log[tail_offset(log, 2)..], b"two\nthree\n");
        assert_eq!(&log[tail_offset(log, 9)..], log);
        assert_eq!(&log[tail_offset(log, 0)..], b"");
        assert_eq!(&b"a\nb"[tail_offset(b"a\nb", 1)..], b"b");
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
