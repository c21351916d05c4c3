//! `mesh viz top`: the tap stream of a resource's pods, summed by source,
//! destination, method and path, as Linkerd's `top` tables it (Source,
//! Destination, Method, Path, Count, Best, Worst, Last, Success Rate),
//! busiest first. On a terminal the table is redrawn every `--interval`;
//! otherwise (a pipe, a file) it is printed each interval, one table after
//! another.

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use linkerd2_proxy_api::tap::{TapEvent, tap_event};

use super::tap::TapFilters;
use crate::cli::GlobalArgs;

/// Flags of `mesh viz top`.
#[derive(Debug, clap::Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub filters: TapFilters,
    /// Leave out the Source column.
    #[arg(long, env = "MESH_VIZ_HIDE_SOURCES")]
    pub hide_sources: bool,
    /// How often the table is drawn.
    #[arg(long, env = "MESH_VIZ_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
}

/// What a row sums: one source, destination, method and path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// The caller (its pod, else its address).
    pub source: String,
    /// The server (its pod, else its address).
    pub destination: String,
    /// The method.
    pub method: String,
    /// The path.
    pub path: String,
}

/// A row's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Row {
    /// Requests that ended.
    pub count: u64,
    /// Successes among them.
    pub successes: u64,
    /// The fastest, slowest and latest latency.
    pub best: Duration,
    /// The slowest.
    pub worst: Duration,
    /// The latest.
    pub last: Duration,
}

/// The requests seen so far, by key.
#[derive(Debug, Default)]
pub struct Table {
    /// Requests begun, by their stream id, until they end.
    open: HashMap<(u32, u64), (Key, u32)>,
    rows: HashMap<Key, Row>,
}

/// How many requests may be open at once before the oldest are forgotten
/// (a stream whose end never comes must not grow the table for ever).
const MAX_OPEN: usize = 10_000;

impl Table {
    /// Adds one event.
    pub fn add(&mut self, event: &TapEvent) {
        use tap_event::http::Event as E;
        let Some(tap_event::Event::Http(tap_event::Http { event: Some(http) })) = &event.event
        else {
            return;
        };
        match http {
            E::RequestInit(init) => {
                let Some(id) = init.id else { return };
                if self.open.len() >= MAX_OPEN {
                    self.open.clear();
                }
                let key = Key {
                    source: peer(event.source.as_ref(), event.source_meta.as_ref()),
                    destination: peer(event.destination.as_ref(), event.destination_meta.as_ref()),
                    method: init
                        .method
                        .clone()
                        .and_then(|m| http::Method::try_from(m).ok())
                        .map_or_else(String::new, |m| m.to_string()),
                    path: init.path.clone(),
                };
                self.open.insert((id.base, id.stream), (key, 0));
            }
            E::ResponseInit(init) => {
                if let Some(id) = init.id
                    && let Some((_, status)) = self.open.get_mut(&(id.base, id.stream))
                {
                    *status = init.http_status;
                }
            }
            E::ResponseEnd(end) => {
                let Some(id) = end.id else { return };
                let Some((key, status)) = self.open.remove(&(id.base, id.stream)) else {
                    return;
                };
                let latency = end
                    .since_request_init
                    .and_then(|d| Duration::try_from(d).ok())
                    .unwrap_or_default();
                let row = self.rows.entry(key).or_default();
                if row.count == 0 || latency < row.best {
                    row.best = latency;
                }
                row.worst = row.worst.max(latency);
                row.last = latency;
                row.count += 1;
                if succeeded(status, end.eos.as_ref()) {
                    row.successes += 1;
                }
            }
        }
    }

    /// The rows, busiest first.
    pub fn rows(&self) -> Vec<(&Key, &Row)> {
        let mut rows: Vec<_> = self.rows.iter().collect();
        rows.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(b.0)));
        rows
    }
}

/// Linkerd's verdict: a status below 500, and no gRPC failure or reset.
fn succeeded(status: u32, eos: Option<&linkerd2_proxy_api::tap::Eos>) -> bool {
    use linkerd2_proxy_api::tap::eos::End;
    if status >= 500 {
        return false;
    }
    match eos.and_then(|e| e.end.as_ref()) {
        // Unknown, DeadlineExceeded, Internal, Unavailable, DataLoss.
        Some(End::GrpcStatusCode(code)) => !matches!(code, 2 | 4 | 13 | 14 | 15),
        Some(End::ResetErrorCode(_)) => false,
        None => true,
    }
}

/// A peer as a row names it: its pod, else its address without the port.
fn peer(
    address: Option<&linkerd2_proxy_api::net::TcpAddress>,
    meta: Option<&tap_event::EndpointMeta>,
) -> String {
    if let Some(pod) = meta
        .and_then(|m| m.labels.get("pod"))
        .filter(|p| !p.is_empty())
    {
        return pod.clone();
    }
    address
        .and_then(|a| std::net::SocketAddr::try_from(*a).ok())
        .map_or_else(|| "?".to_owned(), |a| a.ip().to_string())
}

/// The table as text.
pub fn render(table: &Table, hide_sources: bool) -> String {
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let mut lines: Vec<Vec<String>> = vec![
        [
            "Source",
            "Destination",
            "Method",
            "Path",
            "Count",
            "Best",
            "Worst",
            "Last",
            "Success Rate",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect(),
    ];
    for (key, row) in table.rows() {
        lines.push(vec![
            key.source.clone(),
            key.destination.clone(),
            key.method.clone(),
            key.path.clone(),
            row.count.to_string(),
            ms(row.best),
            ms(row.worst),
            ms(row.last),
            format!(
                "{:.2}%",
                100.0 * row.successes as f64 / row.count.max(1) as f64
            ),
        ]);
    }
    if hide_sources {
        for line in &mut lines {
            line.remove(0);
        }
    }
    let columns = lines[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let numeric_from = columns - 5;
    let mut out = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c >= numeric_from {
                    format!("{cell:>width$}", width = widths[c])
                } else {
                    format!("{cell:<width$}", width = widths[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Runs `mesh viz top` until the stream ends or the user stops it.
pub async fn run(global: &GlobalArgs, args: &TopArgs) -> anyhow::Result<()> {
    let terminal = std::io::stdout().is_terminal();
    let mut table = Table::default();
    let mut drawn = tokio::time::Instant::now();
    let draw = |table: &Table| -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        if terminal {
            // Clear the screen and draw from its top.
            write!(out, "\x1b[2J\x1b[H")?;
        }
        writeln!(out, "{}", render(table, args.hide_sources))?;
        out.flush()?;
        Ok(())
    };
    super::tap::events(global, &args.filters, |event| {
        table.add(&event);
        if drawn.elapsed() >= args.interval {
            drawn = tokio::time::Instant::now();
            draw(&table)?;
        }
        Ok(())
    })
    .await?;
    draw(&table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(http: tap_event::http::Event, pod: &str) -> TapEvent {
        TapEvent {
            source: Some(
                "10.0.0.1:5000"
                    .parse::<std::net::SocketAddr>()
                    .expect("addr")
                    .into(),
            ),
            source_meta: None,
            route_meta: None,
            destination: Some(
                "10.0.0.2:9898"
                    .parse::<std::net::SocketAddr>()
                    .expect("addr")
                    .into(),
            ),
            destination_meta: Some(tap_event::EndpointMeta {
                labels: [("pod".to_owned(), pod.to_owned())].into(),
            }),
            proxy_direction: tap_event::ProxyDirection::Inbound as i32,
            event: Some(tap_event::Event::Http(tap_event::Http {
                event: Some(http),
            })),
        }
    }

    fn request(table: &mut Table, id: u64, path: &str, status: u32, millis: u64) {
        use tap_event::http::{Event as E, RequestInit, ResponseEnd, ResponseInit, StreamId};
        let sid = Some(StreamId {
            base: 1,
            stream: id,
        });
        table.add(&event(
            E::RequestInit(RequestInit {
                id: sid,
                method: Some(http::Method::GET.into()),
                scheme: None,
                authority: "web".into(),
                path: path.into(),
                headers: None,
            }),
            "web-1",
        ));
        table.add(&event(
            E::ResponseInit(ResponseInit {
                id: sid,
                since_request_init: None,
                http_status: status,
                headers: None,
            }),
            "web-1",
        ));
        table.add(&event(
            E::ResponseEnd(ResponseEnd {
                id: sid,
                since_request_init: prost_types::Duration::try_from(Duration::from_millis(millis))
                    .ok(),
                since_response_init: None,
                response_bytes: 10,
                eos: None,
                trailers: None,
            }),
            "web-1",
        ));
    }

    #[test]
    fn requests_are_summed_by_path_busiest_first() {
        let mut table = Table::default();
        request(&mut table, 1, "/api", 200, 3);
        request(&mut table, 2, "/api", 500, 9);
        request(&mut table, 3, "/api", 200, 5);
        request(&mut table, 4, "/health", 200, 1);
        let text = render(&table, false);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("Source    Destination  Method  Path"),
            "{text}"
        );
        assert_eq!(
            lines[1],
            "10.0.0.1  web-1        GET     /api         3   3ms    9ms   5ms        66.67%"
        );
        assert!(
            lines[2].contains("/health") && lines[2].ends_with("100.00%"),
            "{text}"
        );
        assert!(!render(&table, true).contains("Source"), "--hide-sources");
    }
}
