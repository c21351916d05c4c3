//! How many heap allocations a running process makes, counted from outside
//! it: `perf` user-space probes on the C library's `malloc`, `calloc` and
//! `realloc` (what Rust's default allocator calls), attached to one process
//! for as long as a [`Counting`] lives. The process needs no change and
//! no rebuild, so two builds of a proxy are counted the same way. A program
//! with its own allocator (a stock linkerd2-proxy links jemalloc) does not
//! allocate through these functions, and counts nearly nothing.
//!
//! Needs root and `perf` (the setup script installs it). Each probe hit
//! costs the process a trap, so a run that counts allocations must not also
//! be the one whose CPU or latency is reported.

use std::process::{Child, Command, Stdio};

/// The C library functions counted.
const FUNCTIONS: [&str; 3] = ["malloc", "calloc", "realloc"];

/// `perf stat` attached to one process.
#[derive(Debug)]
pub struct Counting {
    perf: Child,
    pid: u32,
}

/// Adds the probes on the C library process `pid` runs with (once per
/// machine: an existing probe is kept).
pub fn add_probes(pid: u32) -> anyhow::Result<()> {
    let libc = c_library(pid)?;
    let listed = Command::new("perf")
        .args(["probe", "--list"])
        .output()
        .map_err(|e| anyhow::anyhow!("running perf (needed to count allocations): {e}"))?;
    let listed = String::from_utf8_lossy(&listed.stdout);
    for function in FUNCTIONS {
        if listed.contains(&format!("probe_libc:{function} ")) {
            continue;
        }
        let added = Command::new("perf")
            .args(["probe", "-x", &libc, "--add", function])
            .output()?;
        anyhow::ensure!(
            added.status.success(),
            "perf probe -x {libc} --add {function}: {}",
            String::from_utf8_lossy(&added.stderr).trim()
        );
    }
    Ok(())
}

/// The C library mapped into process `pid`.
fn c_library(pid: u32) -> anyhow::Result<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| {
            path.rsplit('/')
                .next()
                .is_some_and(|file| file.starts_with("libc.so"))
        })
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("process {pid} has no C library mapped"))
}

impl Counting {
    /// Starts counting process `pid`'s allocations ([`add_probes`] first).
    pub async fn start(pid: u32) -> anyhow::Result<Self> {
        let events: Vec<String> = FUNCTIONS
            .iter()
            .map(|function| format!("probe_libc:{function}"))
            .collect();
        let perf = Command::new("perf")
            .args(["stat", "-x", ",", "-e", &events.join(","), "-p"])
            .arg(pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| anyhow::anyhow!("running perf stat on {pid}: {e}"))?;
        // perf attaches its probes before it counts; give it that moment.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        Ok(Self { perf, pid })
    }

    /// Stops counting: the allocations made since [`Counting::start`].
    pub fn stop(self) -> anyhow::Result<u64> {
        let pid = nix::unistd::Pid::from_raw(self.perf.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT)?;
        let output = self.perf.wait_with_output()?;
        let text = String::from_utf8_lossy(&output.stderr);
        let counts = parse_counts(&text);
        anyhow::ensure!(
            counts.len() == FUNCTIONS.len(),
            "perf stat on {} counted {} of {:?}: {}",
            self.pid,
            counts.len(),
            FUNCTIONS,
            text.trim()
        );
        Ok(counts.iter().sum())
    }
}

/// The counts in `perf stat -x ,` output: one line per event, the count
/// first (lines for events perf could not count say so there instead).
fn parse_counts(text: &str) -> Vec<u64> {
    text.lines()
        .filter(|line| line.contains("probe_libc:"))
        .filter_map(|line| line.split(',').next()?.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_read_from_perfs_csv_and_uncounted_events_are_left_out() {
        let text = "12345,,probe_libc:malloc,2000000000,100.00,,\n\
                    7,,probe_libc:calloc,2000000000,100.00,,\n\
                    <not counted>,,probe_libc:realloc,0,0.00,,\n";
        assert_eq!(parse_counts(text), vec![12345, 7]);
    }
}
