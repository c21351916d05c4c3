//! The failover controller's `failover_state` gauge: the value each phase
//! is written as, read back by viz's clusters page. One table, so the
//! writer and the reader cannot disagree.

/// Each phase's value and name.
pub const PHASES: [(i64, &str); 5] = [
    (0, "Primary"),
    (1, "FailingOver"),
    (2, "FailedOver"),
    (3, "FailingBack"),
    (-1, "Invalid"),
];

/// The value `phase` is written as (`Invalid` for a name not in the table).
pub fn value(phase: &str) -> i64 {
    PHASES
        .iter()
        .find(|(_, name)| *name == phase)
        .map_or(-1, |(value, _)| *value)
}

/// The phase a gauge's value names; `Unknown` for any other value.
pub fn name(value: f64) -> &'static str {
    PHASES
        .iter()
        .find(|(known, _)| value.is_finite() && *known as f64 == value)
        .map_or("Unknown", |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_reads_back_as_itself() {
        for (value, phase) in PHASES {
            assert_eq!(name(super::value(phase) as f64), phase);
            assert_eq!(super::value(phase), value);
        }
        for odd in [f64::NAN, f64::INFINITY, 7.0, 0.5] {
            assert_eq!(name(odd), "Unknown", "{odd}");
        }
    }
}
