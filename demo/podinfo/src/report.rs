//! The line `mesh-podinfo load` prints every second, as a type its
//! readers parse.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One second of load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadSecond {
    /// Seconds since the load started.
    pub second: u64,
    /// Requests answered below 500.
    pub ok: u64,
    /// Requests answered 5xx, failed or timed out.
    pub failed: u64,
    /// Answers by status code (`error` for no answer).
    pub codes: BTreeMap<String, u64>,
    /// Answers by the podinfo pod (hostname) that gave them.
    pub answered_by: BTreeMap<String, u64>,
}

impl LoadSecond {
    /// The lines of `output` that are load lines, in order (anything else
    /// is skipped).
    pub fn parse_lines(output: &str) -> Vec<Self> {
        output
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// How many answers came from one of `pods`.
    pub fn answered_by_any(&self, pods: &BTreeSet<String>) -> u64 {
        self.answered_by
            .iter()
            .filter(|(pod, _)| pods.contains(*pod))
            .map(|(_, n)| n)
            .sum()
    }

    /// All requests of the second.
    pub fn requests(&self) -> u64 {
        self.ok + self.failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_back_as_printed_and_other_lines_are_skipped() {
        let second = LoadSecond {
            second: 3,
            ok: 48,
            failed: 2,
            codes: [("200".to_owned(), 48), ("500".to_owned(), 2)].into(),
            answered_by: [("podinfo-a".to_owned(), 30), ("podinfo-b".to_owned(), 18)].into(),
        };
        let output = format!(
            "mesh-podinfo: starting\n{}\n",
            serde_json::to_string(&second).expect("json")
        );
        let parsed = LoadSecond::parse_lines(&output);
        assert_eq!(parsed, [second]);
        assert_eq!(parsed[0].requests(), 50);
        assert_eq!(
            parsed[0].answered_by_any(&["podinfo-b".to_owned()].into()),
            18
        );
    }
}
