//! Traffic splits: a profile's weighted backends (`dst_overrides`, from a
//! TrafficSplit), one drawn per request in proportion to its weight; a
//! retry goes to a backend the request has not tried yet, even one with no
//! weight (a failover secondary before the weights move), unless that one
//! is known to have no endpoint: then by weight again, the backend that
//! failed included (its next attempt may well answer, on a new
//! connection: a gateway pod replaced under a failed-over split).

use crate::discover::profile::Backend;

/// Picks a backend for a draw in `[0, 1)`; `None` when no backend has
/// weight (then nothing is sent anywhere the split did not say).
pub fn pick(backends: &[Backend], draw: f64) -> Option<&Backend> {
    let total: u64 = backends.iter().map(|b| u64::from(b.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut point = (draw.clamp(0.0, 1.0) * total as f64) as u64;
    for backend in backends {
        let weight = u64::from(backend.weight);
        if point < weight {
            return Some(backend);
        }
        point -= weight;
    }
    backends.iter().rev().find(|b| b.weight > 0)
}

/// Picks a backend for a retry of a request that already went to the
/// backends in `tried`: one it has not tried, by weight among those with
/// weight, else the first with none; `None` when every backend was tried.
pub fn pick_untried<'a>(
    backends: &'a [Backend],
    draw: f64,
    tried: &[String],
) -> Option<&'a Backend> {
    let untried: Vec<Backend> = backends
        .iter()
        .filter(|b| !tried.contains(&b.authority))
        .cloned()
        .collect();
    let chosen = pick(&untried, draw).or_else(|| untried.first())?;
    backends.iter().find(|b| b.authority == chosen.authority)
}

/// Picks a backend for a retry: [`pick_untried`] among the backends that
/// may answer (`known_empty` says which are known to have no endpoint),
/// else [`pick`] among them all.
pub fn pick_retry<'a>(
    backends: &'a [Backend],
    draw: f64,
    tried: &[String],
    known_empty: impl Fn(&Backend) -> bool,
) -> Option<&'a Backend> {
    let reachable: Vec<Backend> = backends
        .iter()
        .filter(|b| !known_empty(b))
        .cloned()
        .collect();
    pick_untried(&reachable, draw, tried)
        .and_then(|chosen| backends.iter().find(|b| b.authority == chosen.authority))
        .or_else(|| pick(backends, draw))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(name: &str, weight: u32) -> Backend {
        Backend {
            authority: format!("{name}:80"),
            weight,
            ..Backend::default()
        }
    }

    #[test]
    fn draws_land_in_proportion_to_weight() {
        let backends = [backend("a", 900), backend("b", 100), backend("c", 0)];
        let mut counts = [0usize; 3];
        for i in 0..1000 {
            let picked = pick(&backends, f64::from(i) / 1000.0).expect("a backend");
            let index = backends
                .iter()
                .position(|b| b == picked)
                .expect("one of them");
            counts[index] += 1;
        }
        assert_eq!(counts, [900, 100, 0]);
        assert!(pick(&[backend("a", 0)], 0.5).is_none());
        assert_eq!(
            pick(&backends, 1.0).map(|b| b.authority.as_str()),
            Some("b:80")
        );
    }

    #[test]
    fn retries_go_to_backends_not_tried_yet_even_without_weight() {
        let backends = [
            backend("primary", 100),
            backend("east", 0),
            backend("west", 0),
        ];
        let tried =
            |names: &[&str]| -> Vec<String> { names.iter().map(|n| format!("{n}:80")).collect() };
        let picked = |t: &[&str], draw| {
            pick_untried(&backends, draw, &tried(t)).map(|b| b.authority.clone())
        };
        assert_eq!(picked(&["primary"], 0.5).as_deref(), Some("east:80"));
        assert_eq!(
            picked(&["primary", "east"], 0.5).as_deref(),
            Some("west:80")
        );
        assert_eq!(picked(&["primary", "east", "west"], 0.5), None);
        let weighted = [
            backend("primary", 10),
            backend("east", 0),
            backend("west", 90),
        ];
        assert_eq!(
            pick_untried(&weighted, 0.0, &tried(&["primary"])).map(|b| b.authority.as_str()),
            Some("west:80"),
            "weight still decides among the untried"
        );
    }

    /// Failed over (east has all the weight, the primary no pod): a retry
    /// of a request east failed goes to east again, not to the primary,
    /// which has no endpoint to answer it; an untried backend that may
    /// answer still comes first.
    #[test]
    fn a_retry_skips_a_backend_known_to_have_no_endpoint() {
        let backends = [backend("primary", 0), backend("east", 100)];
        let tried = ["east:80".to_owned()];
        let primary_empty = |b: &Backend| b.authority == "primary:80";
        assert_eq!(
            pick_retry(&backends, 0.5, &tried, primary_empty).map(|b| b.authority.as_str()),
            Some("east:80")
        );
        assert_eq!(
            pick_retry(&backends, 0.5, &tried, |_| false).map(|b| b.authority.as_str()),
            Some("primary:80")
        );
    }
}
