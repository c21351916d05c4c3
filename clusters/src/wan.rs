//! The WAN between two clusters: a userspace forwarder between two TUN
//! devices, one in each node namespace, that applies delay, jitter, loss
//! and a rate limit to every packet, and can cut the link. The kernels here
//! have no netem, so this is ours; it moves IP packets, so TCP, UDP (and
//! QUIC) see the same link.
//!
//! [`Shaper`] is the pure decision (when does a packet leave, or is it
//! dropped); [`Impairments`] are the settings, changed at run time through a
//! Unix socket with one-line commands (see [`Impairments::apply_command`]).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;
use tokio_tun::Tun;

/// What the link does to packets.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Impairments {
    /// One-way delay added to every packet.
    pub delay: Duration,
    /// Up to this much more or less delay, uniformly (never reordering).
    pub jitter: Duration,
    /// Share of packets dropped, 0–1.
    pub loss: f64,
    /// Bits per second; 0 is unlimited.
    pub rate_bps: u64,
    /// Whether the link is cut (every packet dropped).
    pub cut: bool,
    /// Whether UDP is dropped (a network that lets only TCP through, as
    /// many firewalls do).
    pub drop_udp: bool,
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CommandError(String);

impl Impairments {
    /// Applies one command line:
    /// `set delay=20ms jitter=5ms loss=0.01 rate=10mbit udp=drop`, `cut`, `restore`,
    /// `clear` (no impairment), `show`.
    pub fn apply_command(&mut self, line: &str) -> Result<(), CommandError> {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("cut") => self.cut = true,
            Some("restore") => self.cut = false,
            Some("clear") => *self = Impairments::default(),
            Some("show") => {}
            Some("set") => {
                let mut next = *self;
                for word in words {
                    let (key, value) = word
                        .split_once('=')
                        .ok_or_else(|| CommandError(format!("expected key=value, got {word:?}")))?;
                    match key {
                        "delay" => next.delay = parse_duration(value)?,
                        "jitter" => next.jitter = parse_duration(value)?,
                        "loss" => {
                            next.loss = value
                                .trim_end_matches('%')
                                .parse::<f64>()
                                .ok()
                                .map(|v| if value.ends_with('%') { v / 100.0 } else { v })
                                .filter(|v| (0.0..=1.0).contains(v))
                                .ok_or_else(|| {
                                    CommandError(format!("loss {value:?}: expected 0–1 or 0%–100%"))
                                })?;
                        }
                        "rate" => next.rate_bps = parse_rate(value)?,
                        "udp" => {
                            next.drop_udp = match value {
                                "drop" => true,
                                "pass" => false,
                                _ => {
                                    return Err(CommandError(format!(
                                        "udp {value:?}: expected drop or pass"
                                    )));
                                }
                            };
                        }
                        other => {
                            return Err(CommandError(format!(
                                "unknown setting {other:?} (delay, jitter, loss, rate, udp)"
                            )));
                        }
                    }
                }
                *self = next;
            }
            Some(other) => {
                return Err(CommandError(format!(
                    "unknown command {other:?} (set, cut, restore, clear, show)"
                )));
            }
            None => return Err(CommandError("empty command".into())),
        }
        Ok(())
    }

    /// `delay=20ms jitter=0ms loss=0 rate=0 udp=pass cut=false`.
    pub fn describe(&self) -> String {
        format!(
            "delay={}ms jitter={}ms loss={} rate={} udp={} cut={}",
            self.delay.as_millis(),
            self.jitter.as_millis(),
            self.loss,
            self.rate_bps,
            if self.drop_udp { "drop" } else { "pass" },
            self.cut
        )
    }
}

/// `20ms`, `1.5s`, `500us`, `0`.
pub fn parse_duration(value: &str) -> Result<Duration, CommandError> {
    let bad = || CommandError(format!("duration {value:?}: expected e.g. 20ms, 1s, 500us"));
    if value == "0" {
        return Ok(Duration::ZERO);
    }
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| bad())
}

/// `10mbit`, `1gbit`, `500kbit`, `0` (unlimited), or bits per second.
pub fn parse_rate(value: &str) -> Result<u64, CommandError> {
    let bad = || CommandError(format!("rate {value:?}: expected e.g. 10mbit, 500kbit"));
    let lower = value.to_ascii_lowercase();
    let (number, scale) = if let Some(n) = lower.strip_suffix("gbit") {
        (n, 1_000_000_000)
    } else if let Some(n) = lower.strip_suffix("mbit") {
        (n, 1_000_000)
    } else if let Some(n) = lower.strip_suffix("kbit") {
        (n, 1_000)
    } else {
        (lower.as_str(), 1)
    };
    let number: f64 = number.parse().map_err(|_| bad())?;
    if number < 0.0 {
        return Err(bad());
    }
    Ok((number * scale as f64) as u64)
}

/// When packets leave, for one direction of the link. Pure: the clock and
/// the random draws come in as arguments.
#[derive(Debug, Default)]
pub struct Shaper {
    /// When the link finishes sending what it has accepted (rate limit).
    busy_until: Option<Instant>,
    /// The last departure given, so that jitter never reorders packets.
    last_departure: Option<Instant>,
}

impl Shaper {
    /// When a packet of `len` bytes arriving at `now` leaves, or `None` when
    /// it is dropped. `loss_draw` and `jitter_draw` are uniform in [0, 1).
    pub fn admit(
        &mut self,
        settings: &Impairments,
        now: Instant,
        len: usize,
        loss_draw: f64,
        jitter_draw: f64,
    ) -> Option<Instant> {
        if settings.cut || loss_draw < settings.loss {
            return None;
        }
        let mut sent = now;
        if settings.rate_bps > 0 {
            let start = self.busy_until.map_or(now, |b| b.max(now));
            let serialisation =
                Duration::from_secs_f64(len as f64 * 8.0 / settings.rate_bps as f64);
            sent = start + serialisation;
            self.busy_until = Some(sent);
        }
        let jitter = settings.jitter.as_secs_f64() * (2.0 * jitter_draw - 1.0);
        let delay = (settings.delay.as_secs_f64() + jitter).max(0.0);
        let mut departure = sent + Duration::from_secs_f64(delay);
        if let Some(last) = self.last_departure {
            departure = departure.max(last);
        }
        self.last_departure = Some(departure);
        Some(departure)
    }
}

/// The running forwarder's settings, shared with its control socket.
pub type SharedImpairments = watch::Sender<Impairments>;

/// Moves packets from `from` to `to` for as long as the process lives.
pub async fn forward(from: Arc<Tun>, to: Arc<Tun>, settings: watch::Receiver<Impairments>) {
    let (queue_tx, mut queue_rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let sender = tokio::spawn(async move {
        while let Some((at, packet)) = queue_rx.recv().await {
            tokio::time::sleep_until(at).await;
            if let Err(e) = to.send(&packet).await {
                tracing::debug!("WAN send: {e}");
            }
        }
    });
    let mut shaper = Shaper::default();
    let mut buf = vec![0u8; 65_536];
    loop {
        let len = match from.recv(&mut buf).await {
            Ok(len) => len,
            Err(e) => {
                tracing::warn!("WAN receive: {e}");
                break;
            }
        };
        let current = *settings.borrow();
        if current.drop_udp && is_udp(&buf[..len]) {
            continue;
        }
        let now = Instant::now();
        let mut rng = rand::rng();
        let (loss_draw, jitter_draw) = (rng.random::<f64>(), rng.random::<f64>());
        if let Some(at) = shaper.admit(&current, now, len, loss_draw, jitter_draw)
            && queue_tx.send((at, buf[..len].to_vec())).is_err()
        {
            break;
        }
    }
    sender.abort();
}

/// Whether an IP packet carries UDP (IPv4 protocol or IPv6 next header 17).
fn is_udp(packet: &[u8]) -> bool {
    match packet.first().map(|b| b >> 4) {
        Some(4) => packet.get(9) == Some(&17),
        Some(6) => packet.get(6) == Some(&17),
        _ => false,
    }
}

/// Serves the control socket: each line is a command, each answer the
/// settings after it (`ok …`) or `error: …`.
pub async fn serve_control(path: PathBuf, settings: Arc<Mutex<SharedImpairments>>) {
    let _ = std::fs::remove_file(&path);
    let listener = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("WAN control socket {}: {e}", path.display());
            return;
        }
    };
    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let settings = settings.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let answer = {
                    let sender = settings.lock().await;
                    let mut next = *sender.borrow();
                    match next.apply_command(&line) {
                        Ok(()) => {
                            sender.send_replace(next);
                            format!("ok {}\n", next.describe())
                        }
                        Err(e) => format!("error: {e}\n"),
                    }
                };
                if write.write_all(answer.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// Sends one command to a running forwarder and returns its answer.
pub async fn control(socket: &Path, command: &str) -> std::io::Result<String> {
    let stream = UnixStream::connect(socket).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "the WAN forwarder's control socket {}: {e} (are the clusters up?)",
                socket.display()
            ),
        )
    })?;
    let (read, mut write) = stream.into_split();
    write.write_all(format!("{command}\n").as_bytes()).await?;
    let mut answer = String::new();
    BufReader::new(read).read_line(&mut answer).await?;
    let answer = answer.trim_end().to_owned();
    match answer.strip_prefix("error: ") {
        Some(e) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            e.to_owned(),
        )),
        None => Ok(answer.trim_start_matches("ok ").to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_change_settings_and_bad_ones_change_nothing() {
        let mut s = Impairments::default();
        s.apply_command("set delay=20ms jitter=5ms loss=1% rate=10mbit")
            .expect("set");
        assert_eq!(s.delay, Duration::from_millis(20));
        assert_eq!(s.jitter, Duration::from_millis(5));
        assert!((s.loss - 0.01).abs() < 1e-9);
        assert_eq!(s.rate_bps, 10_000_000);
        let before = s;
        let err = s
            .apply_command("set delay=20ms loss=2")
            .expect_err("loss > 1");
        assert!(err.to_string().contains("loss \"2\""), "{err}");
        assert_eq!(s, before, "a refused command changes nothing");
        assert!(s.apply_command("set colour=blue").is_err());
        assert!(s.apply_command("jump").is_err());
        s.apply_command("cut").expect("cut");
        assert!(s.cut);
        s.apply_command("restore").expect("restore");
        assert!(!s.cut);
        s.apply_command("set udp=drop").expect("udp");
        assert!(s.drop_udp && s.describe().contains("udp=drop"));
        assert!(s.apply_command("set udp=maybe").is_err());
        s.apply_command("clear").expect("clear");
        assert_eq!(s, Impairments::default());
    }

    #[test]
    fn udp_is_told_from_the_ip_header() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[9] = 17;
        assert!(is_udp(&v4));
        v4[9] = 6;
        assert!(!is_udp(&v4), "TCP");
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[6] = 17;
        assert!(is_udp(&v6));
        assert!(!is_udp(&[]));
    }

    #[tokio::test(start_paused = true)]
    async fn delay_rate_loss_and_cut_decide_departures() {
        let now = Instant::now();
        let mut shaper = Shaper::default();
        let mut s = Impairments {
            delay: Duration::from_millis(20),
            ..Impairments::default()
        };
        assert_eq!(
            shaper.admit(&s, now, 1000, 0.5, 0.5),
            Some(now + Duration::from_millis(20))
        );
        // 8 Mbit/s: 1000 bytes take 1 ms on the wire; a burst queues.
        s.rate_bps = 8_000_000;
        let mut shaper = Shaper::default();
        let first = shaper.admit(&s, now, 1000, 0.5, 0.5).expect("sent");
        let second = shaper.admit(&s, now, 1000, 0.5, 0.5).expect("sent");
        assert_eq!(first, now + Duration::from_millis(21));
        assert_eq!(second, now + Duration::from_millis(22));
        // Loss: a draw under the share drops the packet.
        s.loss = 0.1;
        assert_eq!(shaper.admit(&s, now, 10, 0.05, 0.5), None);
        assert!(shaper.admit(&s, now, 10, 0.2, 0.5).is_some());
        s.cut = true;
        assert_eq!(shaper.admit(&s, now, 10, 0.99, 0.5), None);
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_never_reorders() {
        let now = Instant::now();
        let s = Impairments {
            delay: Duration::from_millis(20),
            jitter: Duration::from_millis(10),
            ..Impairments::default()
        };
        let mut shaper = Shaper::default();
        let early = shaper.admit(&s, now, 10, 0.5, 1.0).expect("sent");
        let late_draw = shaper.admit(&s, now, 10, 0.5, 0.0).expect("sent");
        assert_eq!(early, now + Duration::from_millis(30));
        assert_eq!(late_draw, early, "held back rather than reordered");
    }

    #[test]
    fn durations_and_rates_parse_or_say_why() {
        assert_eq!(
            parse_duration("1.5s").expect("duration"),
            Duration::from_millis(1500)
        );
        assert_eq!(
            parse_duration("500us").expect("duration"),
            Duration::from_micros(500)
        );
        assert!(parse_duration("fast").is_err());
        assert_eq!(parse_rate("1gbit").expect("rate"), 1_000_000_000);
        assert_eq!(parse_rate("0").expect("rate"), 0);
        assert!(parse_rate("lots").is_err());
    }
}
