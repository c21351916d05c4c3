//! Traffic splits: a profile's weighted backends (`dst_overrides`, from a
//! TrafficSplit), one drawn per request in proportion to its weight.

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

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(name: &str, weight: u32) -> Backend {
        Backend {
            authority: format!("{name}:80"),
            weight,
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
}
