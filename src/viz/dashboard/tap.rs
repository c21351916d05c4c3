//! The dashboard's live tap: `GET /tap?namespace=NS&kind=deployment&name=NAME`
//! on `mesh viz dashboard`'s own port, answered by the relay itself, not
//! by the web component. It taps through the API server's `tap.linkerd.io`
//! APIService with the user's credentials, exactly as `mesh viz tap` does,
//! so RBAC decides what the page may tap and the web component holds no
//! tap rights at all (Linkerd's web taps as its own ServiceAccount, so
//! whoever reaches the dashboard taps with web's rights).
//!
//! The page is sent one JSON line a second while something changed
//! (`application/x-ndjson`): the requests summed as `mesh viz top` sums
//! them (`calls`) and the latest events as `mesh viz tap` prints them
//! (`latest`); a failure is a last line `{"error": …}`. A stream ends
//! after [`TAP_DURATION`] (the page asks again) or once the page stops
//! reading.
//!
//! Bounds: [`MAX_TAPS`] streams at once (503 beyond), [`MAX_RPS`] requests
//! a second per stream; a page that reads slowly is sent fewer
//! snapshots (each holds the whole table), never a growing queue. Only the page itself may start a
//! tap: a request a browser marks as sent by another site
//! (`Sec-Fetch-Site`) is refused, so a page elsewhere cannot make the
//! user's browser tap with the user's credentials.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use mesh_viz::web::api::{Failure, Params};
use tokio::sync::{Semaphore, mpsc};

use super::{Body, reply};
use crate::viz::resource::{NamespaceArgs, Target};
use crate::viz::tap::{self, TapFilters};
use crate::viz::top;

/// The path the relay answers itself.
pub const PATH: &str = "/tap";

/// Taps streaming at once through one `mesh viz dashboard`.
pub const MAX_TAPS: usize = 4;

/// Requests a second one stream reports, across the tapped pods.
pub const MAX_RPS: f32 = 20.0;

/// How long one stream lasts before the page asks again.
pub const TAP_DURATION: Duration = Duration::from_secs(300);

/// Snapshots held for a page that reads slower than they come.
const BUFFERED_LINES: usize = 2;

/// The kinds the page taps.
const KINDS: [&str; 5] = ["deployment", "statefulset", "daemonset", "job", "pod"];

/// The live taps of one `mesh viz dashboard`.
#[derive(Clone)]
pub struct Taps {
    client: kube::Client,
    streams: Arc<Semaphore>,
}

impl Taps {
    /// Taps with `client`'s credentials, at most [`MAX_TAPS`] at once.
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            streams: Arc::new(Semaphore::new(MAX_TAPS)),
        }
    }

    /// Answers `GET /tap?…`: a stream of events, or why not.
    pub fn answer(&self, headers: &http::HeaderMap, query: &str) -> http::Response<Body> {
        if let Some(site) = cross_site(headers) {
            return reply(
                http::StatusCode::FORBIDDEN,
                format!("a tap is started by the dashboard's own page, not from {site:?}\n"),
            );
        }
        let filters = match filters(query) {
            Ok(filters) => filters,
            Err(why) => return reply(http::StatusCode::BAD_REQUEST, format!("{why}\n")),
        };
        let Ok(permit) = self.streams.clone().try_acquire_owned() else {
            let mut response = reply(
                http::StatusCode::SERVICE_UNAVAILABLE,
                format!("{MAX_TAPS} taps are streaming already: close a dashboard tab\n"),
            );
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("5"),
            );
            return response;
        };
        let (lines, receiver) = mpsc::channel::<Bytes>(BUFFERED_LINES);
        let client = self.client.clone();
        tokio::spawn(async move {
            let _permit = permit;
            stream_lines(&client, &filters, lines).await;
        });
        let body = futures::stream::unfold(receiver, |mut receiver| async move {
            let line = receiver.recv().await?;
            Some((Ok(hyper::body::Frame::data(line)), receiver))
        });
        let mut response = http::Response::new(http_body_util::BodyExt::boxed_unsync(
            http_body_util::StreamBody::new(body),
        ));
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-ndjson"),
        );
        headers.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        response
    }
}

/// The site a browser says the request came from, when it is not this
/// page's own origin (`Sec-Fetch-Site` other than `same-origin`). A
/// request without the header is not from a browser that sends it.
fn cross_site(headers: &http::HeaderMap) -> Option<String> {
    let site = headers.get("sec-fetch-site")?;
    (site != "same-origin").then(|| String::from_utf8_lossy(site.as_bytes()).into_owned())
}

/// What `query` asks to tap, every parameter checked and named.
fn filters(query: &str) -> Result<TapFilters, String> {
    let params = Params::parse(query);
    let named = |result: Result<&str, Failure>| match result {
        Ok(value) => Ok(value.to_owned()),
        Err(Failure::BadRequest(why)) => Err(why),
        Err(other) => Err(format!("{other:?}")),
    };
    let namespace = named(params.object_name("namespace"))?;
    let name = named(params.object_name("name"))?;
    let kind = params.get("kind").unwrap_or_default();
    if !KINDS.contains(&kind) {
        return Err(format!(
            "parameter kind={kind:?}: the dashboard taps a {}",
            KINDS.join(", a ")
        ));
    }
    let target: Target = format!("{kind}/{name}").parse()?;
    Ok(TapFilters {
        target,
        namespaces: NamespaceArgs {
            namespace: Some(namespace),
            all_namespaces: false,
        },
        to: None,
        to_namespace: None,
        method: None,
        path: None,
        authority: None,
        scheme: None,
        max_rps: MAX_RPS,
    })
}

/// What the page is shown of one stream: the requests summed as
/// `mesh viz top` sums them, and the latest events as `mesh viz tap`
/// prints them.
#[derive(Default)]
struct Live {
    calls: top::Table,
    latest: VecDeque<String>,
    changed: bool,
}

impl Live {
    fn add(&mut self, event: &linkerd2_proxy_api::tap::TapEvent) {
        self.calls.add(event);
        if self.latest.len() == LATEST_EVENTS {
            self.latest.pop_front();
        }
        self.latest.push_back(tap::line(event, false));
        self.changed = true;
    }

    /// A line with the calls and latest events, when they changed.
    fn snapshot(&mut self) -> Option<Bytes> {
        if !std::mem::take(&mut self.changed) {
            return None;
        }
        let millis = |d: Duration| d.as_secs_f64() * 1e3;
        let calls: Vec<_> = self
            .calls
            .rows()
            .into_iter()
            .map(|(key, row)| {
                serde_json::json!({
                    "source": key.source,
                    "destination": key.destination,
                    "method": key.method,
                    "path": key.path,
                    "count": row.count,
                    "successRate": row.successes as f64 / row.count.max(1) as f64,
                    "bestMs": millis(row.best),
                    "worstMs": millis(row.worst),
                    "lastMs": millis(row.last),
                })
            })
            .collect();
        Some(json_line(
            &serde_json::json!({ "calls": calls, "latest": self.latest }),
        ))
    }
}

/// Events the page shows as `mesh viz tap` prints them.
const LATEST_EVENTS: usize = 30;

/// `value` as one line.
fn json_line(value: &serde_json::Value) -> Bytes {
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// Taps what `filters` names for at most [`TAP_DURATION`], sending the
/// page a [`Live`] snapshot each second something changed, until the page
/// stops reading; a failure is the last line.
async fn stream_lines(client: &kube::Client, filters: &TapFilters, lines: mpsc::Sender<Bytes>) {
    let live = Mutex::new(Live::default());
    let what = filters.target.to_string();
    let tapped = async {
        let namespace = filters.namespaces.namespace.clone().unwrap_or_default();
        let request = tap::request(filters, &namespace)?;
        tap::stream(client, &request, &what, |event| {
            live.lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .add(&event);
            Ok(())
        })
        .await
    };
    let snapshots = async {
        let mut every = tokio::time::interval(SNAPSHOT_EVERY);
        loop {
            every.tick().await;
            let snapshot = live.lock().ok().and_then(|mut live| live.snapshot());
            if let Some(snapshot) = snapshot
                && lines.send(snapshot).await.is_err()
            {
                return;
            }
        }
    };
    let failure = tokio::select! {
        () = snapshots => return,
        () = lines.closed() => return,
        ended = tokio::time::timeout(TAP_DURATION, tapped) => match ended {
            Ok(Err(e)) => Some(e),
            Ok(Ok(())) | Err(_) => None,
        },
    };
    let last = live.lock().ok().and_then(|mut live| live.snapshot());
    for line in last
        .into_iter()
        .chain(failure.map(|e| json_line(&serde_json::json!({ "error": format!("{e:#}") }))))
    {
        let _ = lines.send(line).await;
    }
}

/// How often the page is sent what changed.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    /// Attack: a page on another site makes the user's browser start a
    /// tap, with the user's credentials, on the dashboard's port (it
    /// cannot read the answer, but the tap would run).
    #[tokio::test]
    async fn a_tap_asked_for_by_another_site_is_refused() {
        let taps = Taps::new(test_client());
        let query = "namespace=shop&kind=deployment&name=web";
        for site in ["cross-site", "same-site", "none"] {
            let mut headers = http::HeaderMap::new();
            headers.insert("sec-fetch-site", http::HeaderValue::from_static(site));
            let response = taps.answer(&headers, query);
            assert_eq!(response.status(), http::StatusCode::FORBIDDEN, "{site}");
        }
        assert_eq!(taps.streams.available_permits(), MAX_TAPS);
    }

    #[test]
    fn bad_parameters_are_named() {
        for (query, named) in [
            ("kind=deployment&name=web", "\"namespace\" is missing"),
            (
                "namespace=Shop!&kind=deployment&name=web",
                "namespace=\"Shop!\"",
            ),
            ("namespace=shop&kind=service&name=web", "kind=\"service\""),
            ("namespace=shop&kind=deployment&name=../x", "name=\"../x\""),
        ] {
            let why = filters(query).expect_err(query);
            assert!(why.contains(named), "{query}: {why}");
        }
        let ok = filters("namespace=shop&kind=statefulset&name=db").expect("a statefulset");
        assert_eq!(ok.target.to_string(), "statefulset/db");
        assert_eq!(ok.max_rps, MAX_RPS);
    }

    /// A page that opens tab after tab cannot start more than
    /// [`MAX_TAPS`] taps at once.
    #[tokio::test]
    async fn taps_past_the_bound_wait_their_turn() {
        let taps = Taps::new(test_client());
        let held: Vec<_> = (0..MAX_TAPS)
            .map(|_| {
                taps.streams
                    .clone()
                    .try_acquire_owned()
                    .expect("a free stream")
            })
            .collect();
        let response = taps.answer(
            &http::HeaderMap::new(),
            "namespace=shop&kind=deployment&name=web",
        );
        assert_eq!(response.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(http::header::RETRY_AFTER));
        drop(held);
    }

    /// A client for an API server that is never reached by these tests.
    fn test_client() -> kube::Client {
        let config = kube::Config::new("https://127.0.0.1:1".parse().expect("a URL"));
        kube::Client::try_from(config).expect("a client")
    }
}
