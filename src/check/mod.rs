//! `mesh check`: named checks of the cluster, the control plane and (with
//! `--proxy`) the data plane, printed as ✔ / ‼ / × lines with a hint for
//! each problem, like `linkerd check`; `--pre` checks a cluster before
//! install. Exits non-zero when a check fails; `--output json` prints
//! Linkerd's JSON shape.
//!
//! - [`kubernetes`]: the API, its version, and (`--pre`) install permissions.
//! - [`control_plane`]: namespace, CRDs, controllers ready, version.
//! - [`certificates`]: trust anchors, issuer and the injector's certificate.
//! - [`injection`]: the certificate the injector serves, a dry-run pod
//!   injected through the API server, and pods left without a proxy.
//! - [`data_plane`]: meshed pods' proxies, versions, anchors, certificates.

pub(crate) mod certificates;
pub(crate) mod control_plane;
pub(crate) mod data_plane;
mod injection;
pub(crate) mod kubernetes;
mod policy;
pub(crate) mod report;

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tokio::time::Instant;

use crate::cli::{GlobalArgs, OutputFormat};
use report::{Outcome, Report};

/// Flags of `mesh check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Check that the cluster is ready for `mesh install` instead.
    #[arg(long, env = "MESH_CHECK_PRE", conflicts_with = "proxy")]
    pub pre: bool,
    /// Check the data plane too (meshed pods and their proxies).
    #[arg(long, env = "MESH_CHECK_PROXY")]
    pub proxy: bool,
    /// The data plane namespace to check (every namespace when unset).
    #[arg(long, short = 'n', env = "MESH_NAMESPACE", value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// How long to wait for pods to become ready before failing.
    #[arg(long, env = "MESH_CHECK_WAIT", default_value = "5m", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub wait: Duration,
    /// Output format.
    #[arg(long, short, env = "MESH_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// Runs the checks `args` asks for.
pub async fn run(global: &GlobalArgs, args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let mut report = Report::new(args.output);
    let waiter = Waiter::new(args.wait, args.output == OutputFormat::Table);
    if let Some(client) = kubernetes::check(global, &mut report).await {
        if args.pre {
            kubernetes::pre(&client, &mut report).await;
        } else if control_plane::check(&client, &mut report, &waiter).await {
            let anchors = certificates::check(&client, &mut report).await;
            injection::check(&client, &mut report, &waiter).await;
            policy::check(&client, &mut report).await;
            if crate::viz::check::installed(&client).await {
                crate::viz::check::checks(&client, &mut report, &waiter).await;
            }
            if args.proxy {
                data_plane::check(
                    &client,
                    &mut report,
                    &waiter,
                    args.namespace.as_deref(),
                    anchors.as_deref(),
                )
                .await;
            }
        }
    }
    report.exit_code()
}

/// Runs an extension's checks (`mesh multicluster check`, `mesh viz
/// check`) after the Kubernetes API ones, as `mesh check` prints them; the
/// exit code says whether they all passed.
pub async fn run_extension(
    global: &GlobalArgs,
    wait: Duration,
    output: OutputFormat,
    checks: impl AsyncFnOnce(&kube::Client, &mut Report, &Waiter),
) -> anyhow::Result<ExitCode> {
    let mut report = Report::new(output);
    let waiter = Waiter::new(wait, output == OutputFormat::Table);
    if let Some(client) = kubernetes::check(global, &mut report).await {
        checks(&client, &mut report, &waiter).await;
    }
    report.exit_code()
}

/// Retries checks that wait on the cluster (pods becoming ready) until the
/// `--wait` deadline, showing what it waits for.
#[derive(Debug)]
pub struct Waiter {
    deadline: Instant,
    show_progress: bool,
}

impl Waiter {
    /// Waits at most `wait` from now, with a spinner when `show_progress`.
    pub fn new(wait: Duration, show_progress: bool) -> Self {
        Self {
            deadline: Instant::now() + wait,
            show_progress,
        }
    }

    /// `work`'s output, or `None` when it has not finished by the deadline
    /// (given at least [`Waiter::GRACE`] from now, so a check that starts
    /// late still gets one honest try).
    pub async fn bounded<F: Future>(&self, work: F) -> Option<F::Output> {
        let until = self.deadline.max(Instant::now() + Self::GRACE);
        tokio::time::timeout_at(until, work).await.ok()
    }

    /// The least time [`Waiter::bounded`] gives one piece of work.
    pub const GRACE: Duration = Duration::from_secs(10);

    /// The outcome of `check`, retried every second while it fails and the
    /// deadline has not passed.
    pub async fn until_ok<F, Fut>(&self, what: &str, mut check: F) -> Outcome
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Outcome>,
    {
        let mut step = None;
        loop {
            let outcome = match self.bounded(check()).await {
                Some(outcome) => outcome,
                None => Err(report::Problem::error(
                    format!("{what}: no answer from the cluster before the --wait deadline"),
                    "check that the API server answers (`kubectl get --raw /readyz`), or give a longer --wait",
                )),
            };
            if outcome.is_ok() || Instant::now() >= self.deadline {
                drop(step);
                return outcome;
            }
            if self.show_progress && step.is_none() {
                step = Some(Spinner::start(format!("waiting: {what}")));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// A transient spinner on stderr that leaves no line behind.
struct Spinner(Option<indicatif::ProgressBar>);

impl Spinner {
    fn start(message: String) -> Self {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(120));
        Self(Some(bar))
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
