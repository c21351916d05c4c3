//! The decision core driven second by second on a simulated clock: 50
//! requests per second spread by the weights it sets, each backend
//! answering at the success rate a scenario gives it.

use std::time::Duration;

use mesh_failover::decision::{Failover, Phase, Readiness, TOTAL_WEIGHT, Tick};
use mesh_failover::settings::Settings;
use mesh_failover::window::Counts;

const RPS: f64 = 50.0;

/// A tiny deterministic generator, for binomial noise.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One backend as the scenario has it now.
#[derive(Clone, Copy)]
struct Backend {
    success: f64,
    ready: usize,
    gateway_alive: Option<bool>,
}

const UP: Backend = Backend {
    success: 1.0,
    ready: 2,
    gateway_alive: None,
};

struct Sim {
    failover: Failover,
    backends: Vec<Backend>,
    now: u64,
    noise: Option<Noise>,
    transitions: Vec<(u64, &'static str, String)>,
    last: Option<Tick>,
}

impl Sim {
    fn new(names: &[&str]) -> Self {
        let weights = names
            .iter()
            .enumerate()
            .map(|(i, _)| u32::from(i == 0))
            .collect();
        Self {
            failover: Failover::new(
                Settings::default(),
                names.iter().map(|n| (*n).to_owned()).collect(),
                0,
                weights,
                None,
            ),
            backends: vec![UP; names.len()],
            now: 0,
            noise: None,
            transitions: Vec::new(),
            last: None,
        }
    }

    fn weights(&self) -> Vec<u32> {
        self.last
            .as_ref()
            .map(|t| t.weights.clone())
            .unwrap_or_default()
    }

    /// Runs `seconds` seconds: the requests of each second go out by the
    /// current weights, then the controller ticks.
    fn run(&mut self, seconds: u64) {
        for _ in 0..seconds {
            self.now += 1;
            let now = Duration::from_secs(self.now);
            let weights = match &self.last {
                Some(tick) => tick.weights.clone(),
                None => {
                    let mut w = vec![0; self.backends.len()];
                    w[0] = TOTAL_WEIGHT;
                    w
                }
            };
            for (i, backend) in self.backends.clone().iter().enumerate() {
                let sent = RPS * f64::from(weights[i]) / f64::from(TOTAL_WEIGHT);
                if sent == 0.0 {
                    continue;
                }
                let success = match &mut self.noise {
                    Some(noise) => (0..sent.round() as u64)
                        .filter(|_| noise.next() < backend.success)
                        .count() as f64,
                    None => (sent * backend.success).round(),
                };
                let failure = sent.round().max(sent) - success;
                self.failover.record(now, i, Counts { success, failure });
            }
            let readiness: Vec<Readiness> = self
                .backends
                .iter()
                .map(|b| Readiness {
                    ready_endpoints: Some(b.ready),
                    gateway_alive: b.gateway_alive,
                })
                .collect();
            let tick = self.failover.tick(now, &readiness);
            if let Some(t) = &tick.transition {
                self.transitions.push((self.now, t.to, t.reason.clone()));
            }
            self.last = Some(tick);
        }
    }

    /// Runs until `done` holds, at most `limit` seconds; how long it took.
    fn until(&mut self, limit: u64, done: impl Fn(&Self) -> bool) -> u64 {
        let start = self.now;
        while !done(self) {
            assert!(
                self.now - start < limit,
                "not within {limit} s: {:?}",
                self.transitions
            );
            self.run(1);
        }
        self.now - start
    }

    fn phase(&self) -> &'static str {
        self.failover.phase().name()
    }
}

#[test]
fn a_hard_failure_moves_everything_at_once() {
    let mut sim = Sim::new(&["podinfo", "podinfo-east"]);
    sim.run(30);
    assert_eq!(sim.weights(), [100, 0]);
    assert!(sim.transitions.is_empty());
    // Every primary pod answers 500 while Ready.
    sim.backends[0].success = 0.0;
    let took = sim.until(5, |s| s.weights()[1] >= 99);
    assert!(took <= 2, "failed over in {took} s");
    let (_, to, reason) = sim.transitions.last().expect("a transition").clone();
    assert_eq!(to, "FailedOver");
    assert!(
        reason.contains("primary podinfo is down: success rate 0.0%"),
        "{reason}"
    );
    assert_eq!(sim.weights(), [1, 99], "the primary keeps its probe share");
}

#[test]
fn no_ready_endpoint_fails_over_at_the_next_tick_without_a_probe_share() {
    let mut sim = Sim::new(&["podinfo", "podinfo-east"]);
    sim.run(20);
    sim.backends[0].ready = 0;
    sim.run(1);
    assert_eq!(sim.weights(), [0, 100]);
    assert!(sim.transitions[0].2.contains("no ready endpoints"));
}

#[test]
fn a_brown_out_fails_over_in_steps_within_ten_seconds() {
    let mut sim = Sim::new(&["podinfo", "podinfo-east"]);
    sim.noise = Some(Noise(7));
    sim.run(30);
    sim.backends[0].success = 0.7;
    let took = sim.until(10, |s| s.phase() == "FailedOver");
    assert!(took <= 10, "{took} s");
    let shares: Vec<&str> = sim.transitions.iter().map(|t| t.1).collect();
    assert_eq!(shares, ["FailingOver", "FailedOver"]);
    assert!(
        sim.transitions[0].2.contains("under 95.0%"),
        "{:?}",
        sim.transitions
    );
}

#[test]
fn noise_near_the_threshold_never_moves_anything() {
    let mut sim = Sim::new(&["podinfo", "podinfo-east"]);
    sim.noise = Some(Noise(42));
    sim.backends[0].success = 0.97;
    sim.run(120);
    assert!(sim.transitions.is_empty(), "{:?}", sim.transitions);
    assert_eq!(sim.weights(), [100, 0]);
}

#[test]
fn failback_waits_for_the_hold_time_then_ramps_to_the_primary() {
    let mut sim = Sim::new(&["podinfo", "podinfo-east"]);
    sim.run(20);
    sim.backends[0].success = 0.0;
    sim.until(5, |s| s.phase() == "FailedOver");
    sim.run(20);
    let recovered_at = sim.now;
    sim.backends[0].success = 1.0;
    sim.until(60, |s| s.phase() == "FailingBack");
    let waited = sim.now - recovered_at;
    assert!(
        waited >= 30,
        "failback started {waited} s after the primary recovered, before the 30 s hold"
    );
    assert_eq!(sim.weights(), [10, 90], "the first failback step");
    sim.until(30, |s| s.phase() == "Primary");
    assert_eq!(sim.weights(), [100, 0]);
    // (The first second of errors may read as a brown-out before the fast
    // window sees a hard failure.)
    let to: Vec<&str> = sim.transitions.iter().map(|t| t.1).collect();
    assert!(
        to.ends_with(&["FailedOver", "FailingBack", "Primary"]),
        "{to:?}"
    );
}

#[test]
fn the_ramp_goes_through_every_failback_step() {
    let mut sim = Sim::new(&["podinfo", "podinfo-east"]);
    sim.run(20);
    sim.backends[0].ready = 0;
    sim.run(5);
    sim.backends[0].ready = 2;
    sim.until(60, |s| s.phase() == "FailingBack");
    let mut seen = Vec::new();
    while sim.phase() != "Primary" {
        let share = sim.weights()[0];
        if seen.last() != Some(&share) {
            seen.push(share);
        }
        sim.run(1);
    }
    seen.push(sim.weights()[0]);
    assert_eq!(seen, [10, 25, 50, 100]);
}

#[test]
fn a_relapse_during_the_ramp_aborts_it() {
    let mut sim = Sim::new(&["podinfo", "podinfo-east"]);
    sim.run(20);
    sim.backends[0].success = 0.0;
    sim.until(5, |s| s.phase() == "FailedOver");
    sim.run(10);
    sim.backends[0].success = 1.0;
    sim.until(60, |s| s.phase() == "FailingBack");
    sim.run(6);
    assert!(
        sim.weights()[0] >= 25,
        "the ramp went on: {:?}",
        sim.weights()
    );
    sim.backends[0].success = 0.6;
    sim.until(10, |s| s.phase() == "FailedOver");
    let (_, _, reason) = sim.transitions.last().expect("transition");
    assert!(reason.starts_with("failback aborted"), "{reason}");
    assert!(sim.weights()[1] >= 99);
}

#[test]
fn errors_between_the_threshold_and_the_recovery_rate_do_not_fail_back() {
    let mut sim = Sim::new(&["podinfo", "podinfo-east"]);
    sim.run(20);
    sim.backends[0].success = 0.0;
    sim.until(5, |s| s.phase() == "FailedOver");
    // 96 %: no longer a brown-out, not yet the 97 % recovery rate.
    sim.backends[0].success = 0.96;
    sim.run(120);
    assert_eq!(sim.phase(), "FailedOver", "{:?}", sim.transitions);
}

#[test]
fn when_nothing_is_healthy_traffic_stays_where_it_is() {
    let mut sim = Sim::new(&["podinfo", "podinfo-east"]);
    sim.run(20);
    sim.backends[1].ready = 0;
    sim.backends[0].ready = 0;
    sim.run(10);
    assert_eq!(sim.weights(), [100, 0], "never all zeros");
    assert!(sim.transitions.is_empty());
    let note = sim.last.as_ref().and_then(|t| t.note.clone());
    assert!(note.is_some_and(|n| n.contains("no healthy secondary")));
}

#[test]
fn a_dead_gateway_moves_traffic_to_the_local_secondary() {
    let mut sim = Sim::new(&["podinfo", "podinfo-east", "podinfo-backup"]);
    sim.backends[1].gateway_alive = Some(true);
    sim.run(20);
    sim.backends[0].ready = 0;
    sim.run(2);
    let weights = sim.weights();
    assert_eq!(weights[0], 0);
    assert!(weights[1] > 0 && weights[2] > 0, "spread: {weights:?}");
    // The WAN to east is cut: east's gateway is not alive.
    sim.backends[1].gateway_alive = Some(false);
    sim.run(1);
    assert_eq!(sim.weights(), [0, 0, 100]);
}

#[test]
fn a_restarted_controller_resumes_its_phase() {
    let failover = Failover::new(
        Settings::default(),
        vec!["a".into(), "b".into()],
        0,
        vec![1, 99],
        Phase::resume("FailedOver", Duration::ZERO, 1, &Settings::default()),
    );
    assert_eq!(failover.phase().name(), "FailedOver");
    let fresh = Failover::new(
        Settings::default(),
        vec!["a".into(), "b".into()],
        0,
        vec![1, 0],
        None,
    );
    assert_eq!(fresh.phase().name(), "Primary");
}

/// A standby replica takes over a split whose active replica was killed
/// mid-ramp: it carries the ramp on from the weights it finds, never
/// handing back weight the ramp had moved (resuming at the first step
/// would give a browning-out primary 75 % again, or take 15 points from a
/// recovered one).
#[test]
fn a_replica_taking_over_mid_ramp_carries_on_from_the_weights_it_finds() {
    let settings = Settings::default();
    // (phase the status says, weights found, primary's success rate,
    // where the ramp must end, whether the primary's share may only fall)
    for (phase, found, success, ends_in, falling) in [
        ("FailingOver", [50, 50], 0.8, "FailedOver", true),
        ("FailingBack", [25, 75], 1.0, "Primary", false),
    ] {
        let mut sim = Sim::new(&["podinfo", "podinfo-east"]);
        sim.failover = Failover::new(
            settings.clone(),
            vec!["podinfo".into(), "podinfo-east".into()],
            0,
            found.to_vec(),
            Phase::resume(phase, Duration::ZERO, found[0], &settings),
        );
        sim.backends[0].success = success;
        let mut shares = vec![found[0]];
        while sim.phase() != ends_in {
            assert!(sim.now < 60, "{phase} never ended: {:?}", sim.transitions);
            sim.run(1);
            shares.push(sim.weights()[0]);
        }
        let monotonic = shares
            .windows(2)
            .all(|w| if falling { w[1] <= w[0] } else { w[1] >= w[0] });
        assert!(
            monotonic,
            "taking over {phase} at {found:?}, the primary's share went {shares:?}"
        );
        assert_eq!(
            sim.transitions.len(),
            1,
            "one transition, out of the ramp: {:?}",
            sim.transitions
        );
    }
}

#[test]
fn readiness_only_never_sees_a_bad_deploy() {
    let mut sim = Sim::new(&["podinfo", "podinfo-east"]);
    sim.failover = Failover::new(
        Settings {
            use_success_rate: false,
            ..Settings::default()
        },
        vec!["podinfo".into(), "podinfo-east".into()],
        0,
        vec![1, 0],
        None,
    );
    sim.run(20);
    sim.backends[0].success = 0.0;
    sim.run(60);
    assert!(
        sim.transitions.is_empty(),
        "Linkerd's rule: Ready pods answering 500 keep their traffic"
    );
    sim.backends[0].ready = 0;
    sim.run(1);
    assert_eq!(sim.weights(), [0, 100]);
}

/// Each phase is written to `failover_state` as the value viz's clusters
/// page reads back as that phase.
#[test]
fn every_phase_is_written_as_the_value_viz_reads_it_by() {
    let settings = Settings::default();
    for name in ["Primary", "FailingOver", "FailedOver", "FailingBack"] {
        let phase = Phase::resume(name, Duration::ZERO, 50, &settings)
            .unwrap_or_else(|| panic!("{name} resumes"));
        assert_eq!(
            mesh_api::failover_state::name(phase.gauge() as f64),
            name,
            "{phase:?}"
        );
    }
}
