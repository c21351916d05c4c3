//! `mesh viz tap`: live requests of a resource's pods, through the
//! Kubernetes API server's aggregation layer (`tap.linkerd.io`, served by
//! viz's tap component), so RBAC decides who may tap. One line per event
//! in Linkerd's format (`req id=… proxy=in  src=… dst=… tls=true :method=GET
//! :authority=… :path=/…`, then `rsp` and `end`), `-o wide` adds the
//! peers' labels, `-o json` Linkerd's JSON events.

use std::io::Write as _;

use http_body_util::BodyExt as _;
use linkerd2_proxy_api::tap::{TapEvent, tap_event};
use mesh_viz::tap_api::{
    self, FrameReader, HttpMatch, HttpMatchKind, Match, MatchKind, Resource, ResourceSelection,
    Seq, TapByResourceRequest,
};
use prost::Message as _;

use super::resource::{Kind, NamespaceArgs, Target};
use crate::cli::GlobalArgs;

/// Flags of `mesh viz tap`.
#[derive(Debug, clap::Args)]
pub struct TapArgs {
    #[command(flatten)]
    pub filters: TapFilters,
    /// `table` (Linkerd's lines), `wide` (with the peers' labels) or `json`.
    #[arg(long, short, env = "MESH_OUTPUT", value_enum, default_value_t = TapOutput::Table)]
    pub output: TapOutput,
}

/// What to tap and which of its requests (`tap` and `top`).
#[derive(Debug, clap::Args)]
pub struct TapFilters {
    /// What to tap: `deploy/web`, `po/web-1`, `ns/shop`, `sts/db`,
    /// `ds/agent`, `job/batch`.
    pub target: Target,
    #[command(flatten)]
    pub namespaces: NamespaceArgs,
    /// Only requests sent to this resource (`deploy/api`, `svc/api`, `ns/prod`).
    #[arg(long, env = "MESH_VIZ_TO")]
    pub to: Option<Target>,
    /// The namespace of --to (default: --namespace).
    #[arg(long, env = "MESH_VIZ_TO_NAMESPACE")]
    pub to_namespace: Option<String>,
    /// Only requests with this method.
    #[arg(long, env = "MESH_VIZ_METHOD")]
    pub method: Option<String>,
    /// Only requests whose path starts with this.
    #[arg(long, env = "MESH_VIZ_PATH")]
    pub path: Option<String>,
    /// Only requests to this authority.
    #[arg(long, env = "MESH_VIZ_AUTHORITY")]
    pub authority: Option<String>,
    /// Only requests with this scheme.
    #[arg(long, env = "MESH_VIZ_SCHEME")]
    pub scheme: Option<String>,
    /// At most this many requests a second, across all the pods.
    #[arg(long, env = "MESH_VIZ_MAX_RPS", default_value_t = 100.0)]
    pub max_rps: f32,
}

/// How `tap` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TapOutput {
    /// Linkerd's lines.
    Table,
    /// Plus each peer's labels.
    Wide,
    /// Linkerd's JSON events.
    Json,
}

/// Runs `mesh viz tap` until the stream ends or the user stops it.
pub async fn run(global: &GlobalArgs, args: &TapArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    events(global, &args.filters, |event| {
        let text = match args.output {
            TapOutput::Table => line(&event, false),
            TapOutput::Wide => line(&event, true),
            TapOutput::Json => serde_json::to_string_pretty(&json(&event))?,
        };
        writeln!(out, "{text}")?;
        out.flush()?;
        Ok(())
    })
    .await
}

/// Taps what `args` names, handing each event to `each` until the stream
/// ends or the user stops it.
pub async fn events(
    global: &GlobalArgs,
    args: &TapFilters,
    each: impl FnMut(TapEvent) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.namespaces.all_namespaces,
        "tap watches one namespace's resource (-n NS); to tap a whole namespace, tap ns/NAME"
    );
    let client =
        mesh_api::kube_client::client(global.kubeconfig.as_deref(), global.context.as_deref())
            .await?;
    let namespace = args.namespaces.resolve(&client).unwrap_or_default();
    let request = request(args, &namespace)?;
    stream(&client, &request, &args.target.to_string(), each).await
}

/// Sends `request` to the tap API through the API server (with the
/// client's credentials: RBAC decides), handing each event to `each` until
/// the stream ends or `each` fails; `what` names the target in errors.
pub async fn stream(
    client: &kube::Client,
    request: &TapByResourceRequest,
    what: &str,
    mut each: impl FnMut(TapEvent) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let target = request
        .target
        .as_ref()
        .and_then(|t| t.resource.clone())
        .unwrap_or_default();
    let http_request = http::Request::post(tap_api::path(&target))
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .body(request.encode_to_vec())?;
    let response = client
        .send(http_request.map(kube::client::Body::from))
        .await
        .map_err(|e| anyhow::anyhow!("tapping {what}: {e}"))?;
    let status = response.status();
    let error = response.headers().contains_key(tap_api::ERROR_HEADER);
    let mut body = response.into_body();
    if !status.is_success() || error {
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        anyhow::bail!("tapping {what}: {}", error_message(status, &bytes));
    }
    let mut reader = FrameReader::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| anyhow::anyhow!("the tap stream broke off: {e}"))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        reader.push(data);
        while let Some(event) = reader.next_message::<TapEvent>()? {
            each(event)?;
        }
    }
    Ok(())
}

/// What the API server or the tap component said went wrong.
fn error_message(status: http::StatusCode, body: &[u8]) -> String {
    let mut reader = FrameReader::default();
    reader.push(body);
    if let Ok(Some(error)) = reader.next_message::<tap_api::ApiError>()
        && !error.error.is_empty()
    {
        return error.error;
    }
    if let Ok(status) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(message) = status["message"].as_str()
    {
        let hint =
            if status["code"] == 404 && message.contains("could not find the requested resource") {
                " (is viz installed? `mesh viz install | kubectl apply -f -`)"
            } else {
                ""
            };
        return format!("{message}{hint}");
    }
    format!("{status}: {}", String::from_utf8_lossy(body).trim())
}

/// The request for `args` in `namespace`.
pub fn request(args: &TapFilters, namespace: &str) -> anyhow::Result<TapByResourceRequest> {
    let target = resource(&args.target, namespace, "the target")?;
    let mut matches = Vec::new();
    if let Some(to) = &args.to {
        let to_ns = args.to_namespace.as_deref().unwrap_or(namespace);
        let resource = match to.kind {
            Kind::Service => Resource {
                namespace: to_ns.to_owned(),
                r#type: "service".into(),
                name: to.name.clone().unwrap_or_default(),
            },
            _ => resource(to, to_ns, "--to")?,
        };
        matches.push(Match {
            r#match: Some(MatchKind::Destinations(ResourceSelection {
                resource: Some(resource),
                label_selector: String::new(),
            })),
        });
    }
    for (value, kind) in [
        (
            &args.method,
            HttpMatchKind::Method as fn(String) -> HttpMatchKind,
        ),
        (&args.path, HttpMatchKind::Path),
        (&args.authority, HttpMatchKind::Authority),
        (&args.scheme, HttpMatchKind::Scheme),
    ] {
        if let Some(value) = value {
            matches.push(Match {
                r#match: Some(MatchKind::Http(HttpMatch {
                    r#match: Some(kind(value.clone())),
                })),
            });
        }
    }
    Ok(TapByResourceRequest {
        target: Some(ResourceSelection {
            resource: Some(target),
            label_selector: String::new(),
        }),
        r#match: Some(Match {
            r#match: Some(MatchKind::All(Seq { matches })),
        }),
        max_rps: args.max_rps,
    })
}

/// The tap resource for `target`: one named object of a kind tap serves.
fn resource(target: &Target, namespace: &str, what: &str) -> anyhow::Result<Resource> {
    let kind = match target.kind {
        Kind::Deployment
        | Kind::StatefulSet
        | Kind::DaemonSet
        | Kind::Job
        | Kind::Pod
        | Kind::Namespace => target.kind.name(),
        other => anyhow::bail!(
            "{what} {target}: tap taps pods, namespaces, deployments, statefulsets, daemonsets and jobs, not {}s",
            other.name()
        ),
    };
    let Some(name) = &target.name else {
        anyhow::bail!("{what} {target}: name one ({kind}/NAME)");
    };
    Ok(Resource {
        namespace: if target.kind == Kind::Namespace {
            String::new()
        } else {
            namespace.to_owned()
        },
        r#type: kind.to_owned(),
        name: name.clone(),
    })
}

/// An address as Linkerd prints it.
fn addr(address: Option<&linkerd2_proxy_api::net::TcpAddress>) -> String {
    address
        .and_then(|a| std::net::SocketAddr::try_from(*a).ok())
        .map_or_else(|| "?".to_owned(), |a| a.to_string())
}

fn labels(meta: Option<&tap_event::EndpointMeta>) -> Vec<(&str, &str)> {
    let mut labels: Vec<_> = meta
        .iter()
        .flat_map(|m| m.labels.iter())
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    labels.sort();
    labels
}

/// One event as Linkerd's `tap` prints it.
pub fn line(event: &TapEvent, wide: bool) -> String {
    let inbound = event.proxy_direction == tap_event::ProxyDirection::Inbound as i32;
    let outbound = event.proxy_direction == tap_event::ProxyDirection::Outbound as i32;
    let (proxy, tls_meta) = if inbound {
        ("in ", event.source_meta.as_ref())
    } else if outbound {
        ("out", event.destination_meta.as_ref())
    } else {
        ("???", None)
    };
    let tls = tls_meta
        .and_then(|m| m.labels.get("tls"))
        .map_or("", String::as_str);
    let flow = format!(
        "proxy={proxy} src={} dst={} tls={tls}",
        addr(event.source.as_ref()),
        addr(event.destination.as_ref())
    );
    use tap_event::http::Event as E;
    let http = match &event.event {
        Some(tap_event::Event::Http(http)) => http.event.as_ref(),
        None => None,
    };
    let id = |id: Option<&tap_event::http::StreamId>| {
        id.map_or_else(|| "?".to_owned(), |id| format!("{}:{}", id.base, id.stream))
    };
    let micros = |d: Option<&prost_types::Duration>| {
        d.map_or(0, |d| d.seconds * 1_000_000 + i64::from(d.nanos) / 1_000)
    };
    let mut text = match http {
        Some(E::RequestInit(init)) => format!(
            "req id={} {flow} :method={} :authority={} :path={}",
            id(init.id.as_ref()),
            init.method
                .clone()
                .and_then(|m| http::Method::try_from(m).ok())
                .map_or_else(String::new, |m| m.to_string()),
            init.authority,
            init.path
        ),
        Some(E::ResponseInit(init)) => format!(
            "rsp id={} {flow} :status={} latency={}µs",
            id(init.id.as_ref()),
            init.http_status,
            micros(init.since_request_init.as_ref())
        ),
        Some(E::ResponseEnd(end)) => {
            use linkerd2_proxy_api::tap::eos::End;
            let eos = match end.eos.as_ref().and_then(|e| e.end.as_ref()) {
                Some(End::GrpcStatusCode(code)) => format!(" grpc-status={}", grpc_code(*code)),
                Some(End::ResetErrorCode(code)) => format!(" reset-error={code}"),
                None => String::new(),
            };
            format!(
                "end id={} {flow}{eos} duration={}µs response-length={}B",
                id(end.id.as_ref()),
                micros(end.since_response_init.as_ref()),
                end.response_bytes
            )
        }
        None => format!("unknown {flow}"),
    };
    if wide {
        for (side, meta) in [
            ("src", event.source_meta.as_ref()),
            ("dst", event.destination_meta.as_ref()),
        ] {
            for (k, v) in labels(meta) {
                text.push_str(&format!(" {side}_{k}={v}"));
            }
        }
        let mut route: Vec<_> = event
            .route_meta
            .iter()
            .flat_map(|m| m.labels.iter())
            .collect();
        route.sort();
        for (k, v) in route {
            text.push_str(&format!(" rt_{k}={v}"));
        }
    }
    text
}

/// gRPC's name for a status code, as Go prints it.
fn grpc_code(code: u32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    NAMES
        .get(code as usize)
        .map_or_else(|| format!("Code({code})"), |name| (*name).to_owned())
}

/// One event as Linkerd's `tap -o json` shows it.
pub fn json(event: &TapEvent) -> serde_json::Value {
    let peer = |address: Option<&linkerd2_proxy_api::net::TcpAddress>,
                meta: Option<&tap_event::EndpointMeta>| {
        let socket = address.and_then(|a| std::net::SocketAddr::try_from(*a).ok());
        let metadata: serde_json::Map<String, serde_json::Value> = labels(meta)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.into()))
            .collect();
        serde_json::json!({
            "ip": socket.map(|s| s.ip().to_string()),
            "port": socket.map(|s| s.port()),
            "metadata": (!metadata.is_empty()).then_some(metadata),
        })
    };
    let direction = match tap_event::ProxyDirection::try_from(event.proxy_direction) {
        Ok(tap_event::ProxyDirection::Inbound) => "INBOUND",
        Ok(tap_event::ProxyDirection::Outbound) => "OUTBOUND",
        _ => "UNKNOWN",
    };
    let mut out = serde_json::json!({
        "source": peer(event.source.as_ref(), event.source_meta.as_ref()),
        "destination": peer(event.destination.as_ref(), event.destination_meta.as_ref()),
        "routeMeta": event.route_meta.as_ref().map(|m| m.labels.clone()),
        "proxyDirection": direction,
    });
    let id = |id: Option<&tap_event::http::StreamId>| {
        id.map(|id| serde_json::json!({"base": id.base, "stream": id.stream}))
    };
    let seconds = |d: Option<&prost_types::Duration>| {
        d.map(|d| serde_json::json!({"seconds": d.seconds, "nanos": d.nanos}))
    };
    use tap_event::http::Event as E;
    match &event.event {
        Some(tap_event::Event::Http(tap_event::Http {
            event: Some(E::RequestInit(init)),
        })) => {
            out["requestInitEvent"] = serde_json::json!({
                "id": id(init.id.as_ref()),
                "method": init.method.clone().and_then(|m| http::Method::try_from(m).ok()).map(|m| m.to_string()),
                "scheme": init.scheme.as_ref().and_then(|s| http::uri::Scheme::try_from(s.clone()).ok()).map(|s| s.as_str().to_uppercase()),
                "authority": init.authority,
                "path": init.path,
            });
        }
        Some(tap_event::Event::Http(tap_event::Http {
            event: Some(E::ResponseInit(init)),
        })) => {
            out["responseInitEvent"] = serde_json::json!({
                "id": id(init.id.as_ref()),
                "sinceRequestInit": seconds(init.since_request_init.as_ref()),
                "httpStatus": init.http_status,
            });
        }
        Some(tap_event::Event::Http(tap_event::Http {
            event: Some(E::ResponseEnd(end)),
        })) => {
            use linkerd2_proxy_api::tap::eos::End;
            let mut value = serde_json::json!({
                "id": id(end.id.as_ref()),
                "sinceRequestInit": seconds(end.since_request_init.as_ref()),
                "sinceResponseInit": seconds(end.since_response_init.as_ref()),
                "responseBytes": end.response_bytes,
            });
            match end.eos.as_ref().and_then(|e| e.end.as_ref()) {
                Some(End::GrpcStatusCode(code)) => value["grpcStatusCode"] = (*code).into(),
                Some(End::ResetErrorCode(code)) => value["resetErrorCode"] = (*code).into(),
                None => {}
            }
            out["responseEndEvent"] = value;
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(direction: tap_event::ProxyDirection, http: tap_event::http::Event) -> TapEvent {
        let meta = |pairs: &[(&str, &str)]| tap_event::EndpointMeta {
            labels: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        TapEvent {
            source: Some(
                "10.244.1.5:40312"
                    .parse::<std::net::SocketAddr>()
                    .expect("addr")
                    .into(),
            ),
            source_meta: Some(meta(&[
                ("tls", "true"),
                (
                    "client_id",
                    "web.shop.serviceaccount.identity.linkerd.cluster.local",
                ),
            ])),
            route_meta: None,
            destination: Some(
                "10.244.1.9:9898"
                    .parse::<std::net::SocketAddr>()
                    .expect("addr")
                    .into(),
            ),
            destination_meta: Some(meta(&[("tls", "no_identity")])),
            proxy_direction: direction as i32,
            event: Some(tap_event::Event::Http(tap_event::Http {
                event: Some(http),
            })),
        }
    }

    #[test]
    fn events_print_as_linkerds_lines() {
        let id = tap_event::http::StreamId { base: 7, stream: 3 };
        let req = event(
            tap_event::ProxyDirection::Inbound,
            tap_event::http::Event::RequestInit(tap_event::http::RequestInit {
                id: Some(id),
                method: Some(http::Method::GET.into()),
                scheme: None,
                authority: "podinfo.shop:9898".into(),
                path: "/env".into(),
                headers: None,
            }),
        );
        assert_eq!(
            line(&req, false),
            "req id=7:3 proxy=in  src=10.244.1.5:40312 dst=10.244.1.9:9898 tls=true :method=GET :authority=podinfo.shop:9898 :path=/env"
        );
        let end = event(
            tap_event::ProxyDirection::Outbound,
            tap_event::http::Event::ResponseEnd(tap_event::http::ResponseEnd {
                id: Some(id),
                since_request_init: None,
                since_response_init: Some(prost_types::Duration {
                    seconds: 0,
                    nanos: 1_500_000,
                }),
                response_bytes: 1337,
                eos: Some(linkerd2_proxy_api::tap::Eos::from_grpc_status(14)),
                trailers: None,
            }),
        );
        assert_eq!(
            line(&end, false),
            "end id=7:3 proxy=out src=10.244.1.5:40312 dst=10.244.1.9:9898 tls=no_identity grpc-status=Unavailable duration=1500µs response-length=1337B"
        );
        assert!(line(&end, true).ends_with(
            "src_client_id=web.shop.serviceaccount.identity.linkerd.cluster.local src_tls=true dst_tls=no_identity"
        ));
        let json = json(&end);
        assert_eq!(json["proxyDirection"], "OUTBOUND");
        assert_eq!(json["responseEndEvent"]["grpcStatusCode"], 14);
        assert_eq!(json["source"]["ip"], "10.244.1.5");
    }

    #[test]
    fn only_what_tap_serves_is_asked_for() {
        let target: Target = "svc/web".parse().expect("target");
        let e = resource(&target, "shop", "the target").expect_err("not a service");
        assert!(e.to_string().contains("not services"), "{e}");
        let target: Target = "deploy".parse().expect("target");
        let e = resource(&target, "shop", "the target").expect_err("no name");
        assert!(e.to_string().contains("deployment/NAME"), "{e}");
    }
}
