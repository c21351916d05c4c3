//! `mesh viz dashboard`: serves viz's web component on a local port
//! (Linkerd's 50750), each request relayed through the API server's
//! service proxy with the user's credentials (RBAC decides:
//! `services/proxy` in `linkerd-viz`), and prints the URL (or opens it).
//! Linkerd port-forwards to a web pod instead; the local clusters' node
//! agent serves no port-forward, and the service proxy reaches whichever
//! web pod is ready. Only GETs whose `Host` is the printed address are
//! relayed (a page rebinding its name to this machine is refused before
//! the user's credentials are used). The page's live tap is answered
//! here, not relayed: see [`tap`].

pub mod tap;

use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full, Limited};

use self::tap::Taps;

use super::install::NAMESPACE;
use super::web_component::WEB;
use crate::cli::GlobalArgs;

/// Flags of `mesh viz dashboard`.
#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// The local port.
    #[arg(long, short, env = "MESH_VIZ_DASHBOARD_PORT", default_value_t = mesh_api::ports::DASHBOARD)]
    pub port: u16,
    /// The local address (the dashboard answers `localhost`,
    /// `127.0.0.1` and `[::1]` only).
    #[arg(long, env = "MESH_VIZ_DASHBOARD_ADDRESS", default_value = "localhost")]
    pub address: String,
    /// `linkerd`: open the dashboard in a browser when one can be
    /// started; `url`: only print its URL.
    #[arg(long, env = "MESH_VIZ_DASHBOARD_SHOW", value_enum, default_value_t = Show::Linkerd)]
    pub show: Show,
}

/// What `--show` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Show {
    /// Open the dashboard in a browser.
    Linkerd,
    /// Print its URL only.
    Url,
}

/// The prefix of the web Service's port in the API server's service proxy.
fn proxy_prefix() -> String {
    mesh_api::kube_client::proxy_prefix("services", NAMESPACE, WEB, mesh_api::ports::WEB)
}

/// The longest answer relayed.
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// The headers of the dashboard's answer that are relayed.
const RELAYED: [http::HeaderName; 6] = [
    http::header::CONTENT_TYPE,
    http::header::CONTENT_SECURITY_POLICY,
    http::header::X_CONTENT_TYPE_OPTIONS,
    http::header::X_FRAME_OPTIONS,
    http::header::REFERRER_POLICY,
    http::header::CACHE_CONTROL,
];

/// What the relay answers: a whole answer, or the tap's stream.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::convert::Infallible>;

/// A plain-text answer.
pub fn reply(status: http::StatusCode, text: String) -> http::Response<Body> {
    let mut response = http::Response::new(Full::new(Bytes::from(text)).boxed_unsync());
    *response.status_mut() = status;
    response
}

/// Relays one browser request to the web component (or answers the live
/// tap), after checking its `Host`: a page whose DNS name was rebound to
/// this machine sends its own name, and is refused before the user's
/// credentials are used.
async fn relay(
    client: kube::Client,
    taps: Taps,
    allowed_host: String,
    request: http::Request<hyper::body::Incoming>,
) -> http::Response<Body> {
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if host != allowed_host {
        return reply(
            http::StatusCode::FORBIDDEN,
            format!("host {host:?} is not allowed: open http://{allowed_host}\n"),
        );
    }
    if request.method() != http::Method::GET {
        return reply(
            http::StatusCode::METHOD_NOT_ALLOWED,
            "the dashboard only answers GET\n".into(),
        );
    }
    if request.uri().path() == tap::PATH {
        return taps.answer(request.headers(), request.uri().query().unwrap_or_default());
    }
    if !relayed(request.uri().path()) {
        return reply(
            http::StatusCode::NOT_FOUND,
            "the dashboard has no such page\n".into(),
        );
    }
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let upstream =
        http::Request::get(format!("{}{path}", proxy_prefix())).body(kube::client::Body::empty());
    let answer = match upstream {
        Ok(upstream) => client.send(upstream).await.map_err(|e| format!("{e}")),
        Err(e) => Err(e.to_string()),
    };
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => {
            return reply(
                http::StatusCode::BAD_GATEWAY,
                format!("the API server did not relay to {NAMESPACE}/{WEB}: {e}\n"),
            );
        }
    };
    let (parts, body) = answer.into_parts();
    let body = match Limited::new(body, MAX_ANSWER_BYTES).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            return reply(
                http::StatusCode::BAD_GATEWAY,
                format!("reading {NAMESPACE}/{WEB}'s answer: {e}\n"),
            );
        }
    };
    let mut response = http::Response::new(Full::new(body).boxed_unsync());
    *response.status_mut() = parts.status;
    for name in RELAYED {
        if let Some(value) = parts.headers.get(&name) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

/// Whether `path` is one of the dashboard's: its files or `/api/<word>`.
/// Nothing else is relayed with the user's credentials: a path such as
/// `/../../../secrets` could otherwise leave the web Service's proxy
/// prefix once the API server cleans it, and read the cluster as the user.
fn relayed(path: &str) -> bool {
    mesh_viz::web::assets::get(path).is_some()
        || path
            .strip_prefix("/api/")
            .is_some_and(|word| !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase()))
}

/// Runs `mesh viz dashboard` until Ctrl-C.
pub async fn run(global: &GlobalArgs, args: &DashboardArgs) -> anyhow::Result<()> {
    let client =
        mesh_api::kube_client::client(global.kubeconfig.as_deref(), global.context.as_deref())
            .await?;
    // Fail early, with what to do, when the dashboard does not answer.
    mesh_api::kube_client::service_get(&client, NAMESPACE, WEB, mesh_api::ports::WEB, "/")
        .await
        .with_context(
            || "is viz installed? `mesh viz install | kubectl apply -f -`, then `mesh viz check`",
        )?;
    let listen = format!("{}:{}", args.address, args.port);
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("listening on {listen} (--address, --port)"))?;
    let bound: SocketAddr = listener.local_addr()?;
    let authority = format!("{}:{}", args.address, bound.port());
    let url = format!("http://{authority}");
    println!("mesh dashboard available at:\n{url}");
    if args.show == Show::Linkerd && !open_browser(&url) {
        println!("Open it in a browser (no browser could be started here).");
    }
    println!("Press Ctrl-C to stop.");
    let taps = Taps::new(client.clone());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                let (client, taps, authority) = (client.clone(), taps.clone(), authority.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let (client, taps, authority) = (client.clone(), taps.clone(), authority.clone());
                        async move { Ok::<_, std::convert::Infallible>(relay(client, taps, authority, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// Starts the desktop's browser on `url`, when there is a desktop.
fn open_browser(url: &str) -> bool {
    let desktop =
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    desktop
        && std::process::Command::new("xdg-open")
            .arg(url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attack: another local user (or a page whose request got past the
    /// Host check) climbs out of the web Service's proxy prefix to reach
    /// the API server with this user's credentials.
    #[test]
    fn only_the_dashboards_own_paths_are_relayed() {
        for path in [
            "/",
            "/app.js",
            "/vendor/uplot/uPlot.min.css",
            "/api/namespaces",
            "/api/trafficsplit",
        ] {
            assert!(relayed(path), "{path} is the dashboard's");
        }
        for path in [
            "/../../../secrets",
            "/api/../../../../api/v1/secrets",
            "/api/%2e%2e/secrets",
            "/api/",
            "/api/namespaces/x",
            "//api/v1/secrets",
            "/secrets",
        ] {
            assert!(!relayed(path), "{path} was relayed");
        }
    }
}
