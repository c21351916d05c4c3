//! Progress for long operations (builds, cluster start-up, waits): a spinner
//! with the elapsed time on a terminal, plain start and end lines otherwise,
//! so that logs in CI say what happened and how long it took.

use std::borrow::Cow;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::time::Instant;

/// One step of a long operation, shown on stderr until it finishes.
#[derive(Debug)]
pub struct Step {
    label: Cow<'static, str>,
    bar: Option<ProgressBar>,
    started: Instant,
}

impl Step {
    /// Starts showing `label`.
    pub fn start(label: impl Into<Cow<'static, str>>) -> Self {
        let label = label.into();
        let bar = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner:.cyan} {msg} {elapsed:.dim}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(label.clone());
            bar.enable_steady_tick(Duration::from_millis(120));
            Some(bar)
        } else {
            eprintln!("  … {label}");
            None
        };
        Self {
            label,
            bar,
            started: Instant::now(),
        }
    }

    /// Time since the step started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Ends the step as a success.
    pub fn done(self) {
        self.finish(&console::style("✔").green().to_string());
    }

    /// Ends the step as a success with a note (what was found or skipped).
    pub fn done_with(self, note: &str) {
        let label = format!("{} ({note})", self.label);
        Self {
            label: label.into(),
            ..self
        }
        .done();
    }

    /// Ends the step as a failure; the caller reports the error.
    pub fn fail(self) {
        self.finish(&console::style("×").red().to_string());
    }

    fn finish(self, mark: &str) {
        let line = format!(
            "{mark} {} {}",
            self.label,
            console::style(format!("{:.1}s", self.elapsed().as_secs_f64())).dim()
        );
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        eprintln!("{line}");
    }
}
