//! The decision core, pure: from each backend's readiness and the requests
//! the clients saw (recorded into sliding windows), which backends are
//! healthy, which phase the split is in, and the weights it gets. Time is
//! passed in, so tests drive it second by second.
//!
//! Phases: `Primary` (all weight on the primary); `FailingOver` (a
//! brown-out: weight moves to the secondaries in steps); `FailedOver`
//! (the secondaries carry the traffic, the primary keeps a probe share
//! while it has ready endpoints); `FailingBack` (the primary has been
//! recovered for the hold time and gets its traffic back in steps; a
//! relapse aborts). A hard failure (no ready endpoint, its gateway not
//! alive, or a success rate under the hard threshold over the fast
//! window) moves everything at once. When no secondary is healthy the
//! weights stay where they are.

use std::time::Duration;

use crate::settings::Settings;
use crate::window::{Counts, Window};

/// The weights of a split add up to this: each is a percentage.
pub const TOTAL_WEIGHT: u32 = 100;

/// What the controller reads of a backend besides its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// Ready endpoints (a mirror's: the gateway's addresses while alive).
    /// `None`: the Service does not exist.
    pub ready_endpoints: Option<usize>,
    /// For a mirrored backend, whether its cluster's gateway is alive.
    pub gateway_alive: Option<bool>,
}

/// How a backend is doing.
#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    /// Enough requests, and they succeed.
    Healthy,
    /// Too few requests to judge: ready endpoints are all we know.
    Idle,
    /// Its success rate is under the threshold.
    BrownOut,
    /// Its requests fail (under the hard threshold over the fast window),
    /// and the numbers.
    Failing(String),
    /// It cannot take traffic, and why.
    Down(String),
}

impl Health {
    /// A hard failure: everything moves at once.
    pub fn is_hard_failure(&self) -> bool {
        matches!(self, Self::Failing(_) | Self::Down(_))
    }

    fn hard_failure(&self) -> Option<&str> {
        match self {
            Self::Failing(why) | Self::Down(why) => Some(why),
            _ => None,
        }
    }
}

/// A backend's health and the numbers behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendHealth {
    /// The verdict.
    pub health: Health,
    /// Its success rate over the window, when it had requests.
    pub success_rate: Option<f64>,
    /// Its requests per second over the window.
    pub rps: f64,
}

/// Where a split is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    /// All traffic on the primary.
    Primary,
    /// A brown-out: moving to the secondaries, `step` of the failover
    /// steps since `at`.
    FailingOver {
        /// Index into the failover steps.
        step: usize,
        /// When that step was taken.
        at: Duration,
    },
    /// On the secondaries; the primary recovered since `recovered_since`.
    FailedOver {
        /// Since when the primary has looked recovered.
        recovered_since: Option<Duration>,
    },
    /// Giving the primary its traffic back, `step` of the failback steps
    /// since `at`, the ramp started at `started`.
    FailingBack {
        /// Index into the failback steps.
        step: usize,
        /// When that step was taken.
        at: Duration,
        /// When the ramp started.
        started: Duration,
    },
}

impl Phase {
    /// Its name, as status and events say it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Primary => "Primary",
            Self::FailingOver { .. } => "FailingOver",
            Self::FailedOver { .. } => "FailedOver",
            Self::FailingBack { .. } => "FailingBack",
        }
    }

    /// The phase named `name`, entered at `now`: a controller that starts
    /// (a restart, or a standby replica taking over) resumes where the
    /// status said the split was. A ramp resumes at the step the weights
    /// already reached (the primary holding `primary_share` percent), so
    /// that taking over mid-ramp never hands back weight the ramp had
    /// moved.
    pub fn resume(
        name: &str,
        now: Duration,
        primary_share: u32,
        settings: &Settings,
    ) -> Option<Self> {
        // The first step that does not move the weights back: steps are
        // increasing and end at 100 % (see `settings`).
        let first_step_reaching = |steps: &[u32], share: u32| {
            steps
                .iter()
                .position(|step| *step >= share)
                .unwrap_or(steps.len().saturating_sub(1))
        };
        Some(match name {
            "Primary" => Self::Primary,
            "FailingOver" => Self::FailingOver {
                step: first_step_reaching(
                    &settings.failover_steps,
                    TOTAL_WEIGHT.saturating_sub(primary_share),
                ),
                at: now,
            },
            "FailedOver" => Self::FailedOver {
                recovered_since: None,
            },
            "FailingBack" => Self::FailingBack {
                step: first_step_reaching(&settings.failback_steps, primary_share),
                at: now,
                started: now,
            },
            _ => return None,
        })
    }

    /// The `failover_state` gauge's value (the table viz reads it by).
    pub fn gauge(&self) -> i64 {
        mesh_api::failover_state::value(self.name())
    }
}

/// A change of phase, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The phase left.
    pub from: &'static str,
    /// The phase entered.
    pub to: &'static str,
    /// Why, with the numbers.
    pub reason: String,
}

/// What one tick decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    /// The weights, in the order of the backends.
    pub weights: Vec<u32>,
    /// The phase change, if any.
    pub transition: Option<Transition>,
    /// Each backend's health.
    pub health: Vec<BackendHealth>,
    /// Something that holds the split where it is (no healthy secondary).
    pub note: Option<String>,
}

/// The failover state of one TrafficSplit.
#[derive(Debug, Clone)]
pub struct Failover {
    settings: Settings,
    backends: Vec<String>,
    primary: usize,
    phase: Phase,
    windows: Vec<Window>,
    weights: Vec<u32>,
}

impl Failover {
    /// A split over `backends` whose primary is `primary`, with the weights
    /// it has now; in `resumed` (from its status) or, without one, in
    /// `Primary` when the primary has all the weight and `FailedOver`
    /// otherwise.
    pub fn new(
        settings: Settings,
        backends: Vec<String>,
        primary: usize,
        weights: Vec<u32>,
        resumed: Option<Phase>,
    ) -> Self {
        let all_on_primary = weights
            .iter()
            .enumerate()
            .all(|(i, w)| (i == primary) == (*w > 0));
        let phase = resumed.unwrap_or(if all_on_primary {
            Phase::Primary
        } else {
            Phase::FailedOver {
                recovered_since: None,
            }
        });
        Self {
            windows: vec![Window::default(); backends.len()],
            settings,
            backends,
            primary,
            phase,
            weights,
        }
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The backends, in order.
    pub fn backends(&self) -> &[String] {
        &self.backends
    }

    /// The primary's index.
    pub fn primary(&self) -> usize {
        self.primary
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Records what backend `index`'s clients saw since the last record.
    pub fn record(&mut self, now: Duration, index: usize, counts: Counts) {
        let keep = self.settings.window;
        if let Some(window) = self.windows.get_mut(index) {
            window.record(now, counts, keep);
        }
    }

    fn health(&self, now: Duration, index: usize, readiness: &Readiness) -> BackendHealth {
        let s = &self.settings;
        let window = &self.windows[index];
        let counts = window.over(now, s.window);
        let fast = window.over(now, s.fast_window);
        let rps = window.rps(now, s.window);
        let verdict = |health: Health| BackendHealth {
            health,
            success_rate: counts.success_rate(),
            rps,
        };
        let down = |why: &str| verdict(Health::Down(why.to_owned()));
        match readiness.ready_endpoints {
            None => return down("the Service does not exist"),
            Some(0) => return down("no ready endpoints"),
            Some(_) => {}
        }
        if readiness.gateway_alive == Some(false) {
            return down("its cluster's gateway is not alive");
        }
        if !s.use_success_rate {
            // Linkerd's rule: readiness and gateway liveness only.
            return verdict(Health::Idle);
        }
        let fast_volume = s.min_rps * s.fast_window.as_secs_f64();
        if fast.total() >= fast_volume.max(3.0) && fast.surely_under(s.hard_threshold) {
            return verdict(Health::Failing(format!(
                "success rate {} over {} ({} requests)",
                percent(fast.success_rate().unwrap_or(0.0)),
                humantime::format_duration(s.fast_window),
                fast.total()
            )));
        }
        let health = if rps < s.min_rps {
            Health::Idle
        } else if counts.surely_under(s.threshold) {
            Health::BrownOut
        } else {
            Health::Healthy
        };
        BackendHealth {
            health,
            success_rate: counts.success_rate(),
            rps,
        }
    }

    /// Secondaries that may take traffic, each with its share factor: the
    /// healthy and idle ones by success rate; brown-out ones only when the
    /// primary is down and nothing better is left.
    fn eligible(&self, health: &[BackendHealth], primary_down: bool) -> Vec<(usize, f64)> {
        let pick = |wanted: &dyn Fn(&Health) -> bool| -> Vec<(usize, f64)> {
            health
                .iter()
                .enumerate()
                .filter(|(i, h)| *i != self.primary && wanted(&h.health))
                .map(|(i, h)| (i, h.success_rate.unwrap_or(1.0).max(0.01)))
                .collect()
        };
        let good = pick(&|h| matches!(h, Health::Healthy | Health::Idle));
        if good.is_empty() && primary_down {
            pick(&|h| matches!(h, Health::BrownOut))
        } else {
            good
        }
    }

    /// One decision at `now`.
    pub fn tick(&mut self, now: Duration, readiness: &[Readiness]) -> Tick {
        let health: Vec<BackendHealth> = (0..self.backends.len())
            .map(|i| {
                let r = readiness.get(i).copied().unwrap_or(Readiness {
                    ready_endpoints: None,
                    gateway_alive: None,
                });
                self.health(now, i, &r)
            })
            .collect();
        let primary = &health[self.primary];
        let primary_name = &self.backends[self.primary];
        let primary_down = primary.health.is_hard_failure();
        let eligible = self.eligible(&health, primary_down);
        let s = self.settings.clone();
        let mut note = None;
        let stranded = "no healthy secondary: traffic stays where it is".to_owned();
        let next = match self.phase {
            Phase::Primary => match &primary.health {
                Health::Down(why) | Health::Failing(why) if !eligible.is_empty() => Some((
                    Phase::FailedOver {
                        recovered_since: None,
                    },
                    format!("primary {primary_name} is down: {why}"),
                )),
                Health::BrownOut if !eligible.is_empty() => Some((
                    Phase::FailingOver { step: 0, at: now },
                    format!(
                        "primary {primary_name} success rate {} is under {} over {} ({:.1} rps)",
                        percent(primary.success_rate.unwrap_or(0.0)),
                        percent(s.threshold),
                        humantime::format_duration(s.window),
                        primary.rps
                    ),
                )),
                Health::Down(_) | Health::Failing(_) | Health::BrownOut => {
                    note = Some(stranded);
                    None
                }
                Health::Healthy | Health::Idle => None,
            },
            Phase::FailingOver { step, at } => {
                if eligible.is_empty() {
                    self.without_secondaries(primary_down, &mut note, stranded)
                } else if let Some(why) = primary.health.hard_failure() {
                    Some((
                        Phase::FailedOver {
                            recovered_since: None,
                        },
                        format!("primary {primary_name} is down: {why}"),
                    ))
                } else if now.saturating_sub(at) >= s.failover_interval {
                    if step + 2 >= s.failover_steps.len() {
                        Some((
                            Phase::FailedOver {
                                recovered_since: None,
                            },
                            format!("all traffic moved off primary {primary_name}"),
                        ))
                    } else {
                        self.phase = Phase::FailingOver {
                            step: step + 1,
                            at: now,
                        };
                        None
                    }
                } else {
                    None
                }
            }
            Phase::FailedOver { recovered_since } => {
                if eligible.is_empty() {
                    self.without_secondaries(primary_down, &mut note, stranded)
                } else if self.recovered(primary) {
                    let since = recovered_since.unwrap_or(now);
                    if now.saturating_sub(since) >= s.hold {
                        Some((
                            Phase::FailingBack {
                                step: 0,
                                at: now,
                                started: now,
                            },
                            format!(
                                "primary {primary_name} healthy for {} ({})",
                                humantime::format_duration(s.hold),
                                rate_text(primary)
                            ),
                        ))
                    } else {
                        self.phase = Phase::FailedOver {
                            recovered_since: Some(since),
                        };
                        None
                    }
                } else {
                    self.phase = Phase::FailedOver {
                        recovered_since: None,
                    };
                    None
                }
            }
            Phase::FailingBack { step, at, started } => {
                let since_ramp = self.windows[self.primary].over(
                    now,
                    s.window
                        .min(now.saturating_sub(started) + Duration::from_secs(1)),
                );
                if let Some(why) = primary.health.hard_failure() {
                    Some((
                        Phase::FailedOver {
                            recovered_since: None,
                        },
                        format!("failback aborted: primary {primary_name} is down: {why}"),
                    ))
                } else if since_ramp.surely_under(s.threshold) {
                    Some((
                        Phase::FailedOver {
                            recovered_since: None,
                        },
                        format!(
                            "failback aborted: primary {primary_name} success rate {} is under {} since the ramp started",
                            percent(since_ramp.success_rate().unwrap_or(0.0)),
                            percent(s.threshold)
                        ),
                    ))
                } else if eligible.is_empty() {
                    Some((
                        Phase::Primary,
                        "no healthy secondary: primary takes all traffic back".into(),
                    ))
                } else if now.saturating_sub(at) >= s.failback_interval {
                    if step + 2 >= s.failback_steps.len() {
                        Some((
                            Phase::Primary,
                            format!(
                                "failback to {primary_name} complete ({})",
                                rate_text(primary)
                            ),
                        ))
                    } else {
                        self.phase = Phase::FailingBack {
                            step: step + 1,
                            at: now,
                            started,
                        };
                        None
                    }
                } else {
                    None
                }
            }
        };
        let transition = next.map(|(phase, reason)| {
            let from = self.phase.name();
            self.phase = phase;
            Transition {
                from,
                to: phase.name(),
                reason,
            }
        });
        if note.is_none() {
            self.weights = self.weights_for(&health, &eligible);
        }
        Tick {
            weights: self.weights.clone(),
            transition,
            health,
            note,
        }
    }

    /// No secondary can take traffic: back to the primary unless it is
    /// down too, in which case nothing moves.
    fn without_secondaries(
        &self,
        primary_down: bool,
        note: &mut Option<String>,
        stranded: String,
    ) -> Option<(Phase, String)> {
        if primary_down {
            *note = Some(stranded);
            None
        } else {
            Some((
                Phase::Primary,
                format!(
                    "no healthy secondary: primary {} takes all traffic back",
                    self.backends[self.primary]
                ),
            ))
        }
    }

    /// Whether a failed-over primary counts as recovered: it can take
    /// traffic, and what its probe share saw succeeded at the recovery
    /// rate (with no request at all, readiness is all there is).
    fn recovered(&self, primary: &BackendHealth) -> bool {
        !primary.health.is_hard_failure()
            && primary.health != Health::BrownOut
            && primary
                .success_rate
                .is_none_or(|rate| rate >= self.settings.threshold + self.settings.hysteresis)
    }

    fn weights_for(&self, health: &[BackendHealth], eligible: &[(usize, f64)]) -> Vec<u32> {
        let s = &self.settings;
        let primary_share = match self.phase {
            Phase::Primary => TOTAL_WEIGHT,
            Phase::FailingOver { step, .. } => TOTAL_WEIGHT - s.failover_steps[step],
            Phase::FailedOver { .. } => {
                // A probe share only while the primary has somewhere to
                // send it (a failing one still does: that is how its
                // recovery is seen).
                let reachable = !matches!(&health[self.primary].health, Health::Down(_));
                if reachable { s.probe_share } else { 0 }
            }
            Phase::FailingBack { step, .. } => s.failback_steps[step],
        };
        let primary_share = if eligible.is_empty() {
            TOTAL_WEIGHT
        } else {
            primary_share
        };
        let mut weights = spread(TOTAL_WEIGHT - primary_share, eligible, self.backends.len());
        weights[self.primary] = primary_share;
        weights
    }
}

/// `share` spread over `eligible` in proportion to their factors, whole
/// numbers adding up to `share` (largest remainders first).
fn spread(share: u32, eligible: &[(usize, f64)], len: usize) -> Vec<u32> {
    let mut weights = vec![0; len];
    let total: f64 = eligible.iter().map(|(_, f)| f).sum();
    if eligible.is_empty() || total <= 0.0 {
        return weights;
    }
    let mut remainders = Vec::new();
    let mut given = 0;
    for (index, factor) in eligible {
        let exact = f64::from(share) * factor / total;
        let whole = exact.floor() as u32;
        weights[*index] = whole;
        given += whole;
        remainders.push((exact - f64::from(whole), *index));
    }
    remainders.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, index) in remainders.iter().take((share - given) as usize) {
        weights[*index] += 1;
    }
    weights
}

fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

fn rate_text(health: &BackendHealth) -> String {
    match health.success_rate {
        Some(rate) => format!("success rate {} at {:.1} rps", percent(rate), health.rps),
        None => "ready, no requests seen".into(),
    }
}
