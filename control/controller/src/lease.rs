//! One active replica through a Kubernetes Lease (`coordination.k8s.io/v1`),
//! with client-go's timing: of a controller's replicas, the one holding
//! the Lease works and renews it every `retry`; the others stand by and try
//! to take it as often. A holder that could not renew for `deadline` stops
//! working (the process then exits, and its pod restarts as a standby)
//! before a standby may take the Lease, `duration` after it last saw it
//! change: a standby judges expiry by its own clock from that moment, not
//! by the holder's timestamps, so clock skew between nodes does not matter,
//! only clock rates. Every write names the resourceVersion read, so two
//! standbys never both take it. A holder that stops because it was asked
//! to releases the Lease, and a standby takes it at its next try.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use mesh_core::admin::Readiness;
use tokio::time::Instant;

/// How long a Lease lasts, how long a holder may fail to renew before it
/// stops, and the time between tries.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// A Lease not renewed for this long may be taken.
    pub duration: Duration,
    /// A holder that could not renew for this long stops working.
    pub deadline: Duration,
    /// Time between tries to take or renew it.
    pub retry: Duration,
}

impl Default for Timing {
    /// client-go's defaults: 15 s, 10 s, 2 s.
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(15),
            deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

/// Why a holder stopped working.
#[derive(Debug, thiserror::Error)]
pub enum Lost {
    /// Another replica holds the Lease now.
    #[error("Lease {0} was taken by {1}")]
    Taken(String, String),
    /// Renewing failed for longer than the deadline.
    #[error("Lease {name} not renewed for {deadline:?}: {last_error}")]
    NotRenewed {
        /// The Lease.
        name: String,
        /// The deadline.
        deadline: Duration,
        /// The last failure.
        last_error: String,
    },
}

/// What a standby last saw of the Lease, and since when.
#[derive(Debug, Default)]
struct Observed {
    record: Option<(Option<String>, Option<String>)>,
    since: Option<Instant>,
}

/// The election of one controller's active replica.
#[derive(Debug)]
pub struct Election {
    api: Api<Lease>,
    name: String,
    holder: String,
    timing: Timing,
}

/// What one try found.
enum Try {
    /// This replica holds the Lease.
    Holding,
    /// Another one does.
    HeldBy(String),
}

impl Election {
    /// Lease `name` in `namespace`, held as `holder` (unique per process).
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        holder: String,
        timing: Timing,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            holder,
            timing,
        }
    }

    /// A holder identity for this process: the pod's name (`POD_NAME` from
    /// the downward API, else `HOSTNAME`) and a random suffix, so that a
    /// restarted pod is a new candidate.
    pub fn holder_identity() -> String {
        let pod = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "mesh-controller".into());
        format!("{pod}_{:016x}", rand::random::<u64>())
    }

    /// Stands by until this replica holds the Lease (then `readiness` is
    /// left to `work`; a standby is ready, as it can take over), runs `work`
    /// while renewing it, and releases it when `work` ends. `None` when
    /// `stop` came before the Lease; `Err` when the Lease was lost, `work`
    /// then being dropped unfinished.
    pub async fn lead<T>(
        &self,
        readiness: &Readiness,
        work: impl Future<Output = T>,
        stop: impl Future<Output = ()>,
    ) -> Result<Option<T>, Lost> {
        let mut observed = Observed::default();
        tokio::pin!(stop);
        loop {
            match self.try_once(&mut observed).await {
                Ok(Try::Holding) => break,
                Ok(Try::HeldBy(holder)) => {
                    if !readiness.is_ready() {
                        tracing::info!(lease = %self.name, %holder, "standing by");
                        readiness.set_ready();
                    }
                }
                Err(e) => tracing::warn!(lease = %self.name, "taking the Lease: {e}"),
            }
            tokio::select! {
                () = tokio::time::sleep(self.timing.retry) => {}
                () = &mut stop => return Ok(None),
            }
        }
        tracing::info!(lease = %self.name, holder = %self.holder, "holding the Lease: active");
        let mut renewed = Instant::now();
        let mut last_error = String::new();
        tokio::pin!(work);
        let outcome = loop {
            tokio::select! {
                out = &mut work => break Ok(Some(out)),
                () = tokio::time::sleep(self.timing.retry) => {}
            }
            match self.try_once(&mut observed).await {
                Ok(Try::Holding) => renewed = Instant::now(),
                Ok(Try::HeldBy(holder)) => break Err(Lost::Taken(self.name.clone(), holder)),
                Err(e) => last_error = e.to_string(),
            }
            if renewed.elapsed() >= self.timing.deadline {
                break Err(Lost::NotRenewed {
                    name: self.name.clone(),
                    deadline: self.timing.deadline,
                    last_error,
                });
            }
        };
        if outcome.is_ok() {
            self.release().await;
        }
        outcome
    }

    /// Takes or renews the Lease once.
    async fn try_once(&self, observed: &mut Observed) -> kube::Result<Try> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.held(now, 0)),
            };
            return self.write(&lease).await;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        if holder.as_deref() == Some(self.holder.as_str()) {
            let mut renewed = spec;
            renewed.renew_time = Some(now);
            lease.spec = Some(renewed);
            return self.write(&lease).await;
        }
        let record = (holder.clone(), lease.metadata.resource_version.clone());
        if observed.record.as_ref() != Some(&record) {
            observed.record = Some(record);
            observed.since = Some(Instant::now());
        }
        let lasts = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.timing.duration, Duration::from_secs);
        let expired = observed.since.is_some_and(|at| at.elapsed() >= lasts);
        match holder {
            Some(holder) if !expired => Ok(Try::HeldBy(holder)),
            _ => {
                let transitions = spec.lease_transitions.unwrap_or(0).saturating_add(1);
                lease.spec = Some(self.held(now, transitions));
                self.write(&lease).await
            }
        }
    }

    /// The Lease held by this replica from `now`.
    fn held(&self, now: MicroTime, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.holder.clone()),
            lease_duration_seconds: i32::try_from(self.timing.duration.as_secs()).ok(),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Creates `lease` (one never read has no resourceVersion) or replaces
    /// the Lease with it, over the resourceVersion read: losing a race to
    /// another replica is `HeldBy`, not an error.
    async fn write(&self, lease: &Lease) -> kube::Result<Try> {
        let written = if lease.metadata.resource_version.is_none() {
            self.api.create(&PostParams::default(), lease).await
        } else {
            self.api
                .replace(&self.name, &PostParams::default(), lease)
                .await
        };
        match written {
            Ok(_) => Ok(Try::Holding),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                Ok(Try::HeldBy("another replica (a concurrent write)".into()))
            }
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up, so that a standby takes it at its next try.
    async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.holder.as_str()) {
            return;
        }
        spec.holder_identity = None;
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.name, "Lease released"),
            Err(e) => tracing::warn!(lease = %self.name, "releasing the Lease: {e}"),
        }
    }
}

/// The flags of a component that runs as one active replica of several.
#[derive(Debug, clap::Args)]
pub(crate) struct LeaseArgs {
    /// Work only while holding the component's Lease, so that of several
    /// replicas one is active and the others stand by; `false`: always
    /// active (a single replica outside a cluster, for development).
    #[arg(long, env = "MESH_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// A Lease not renewed for this long may be taken by a standby.
    #[arg(long, env = "MESH_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    lease_duration: Duration,
    /// The active replica stops (and exits) when it could not renew its
    /// Lease for this long; shorter than --lease-duration.
    #[arg(long, env = "MESH_LEASE_RENEW_DEADLINE", default_value = "10s", value_parser = humantime::parse_duration)]
    lease_renew_deadline: Duration,
    /// Time between tries to take or renew the Lease; shorter than
    /// --lease-renew-deadline.
    #[arg(long, env = "MESH_LEASE_RETRY_PERIOD", default_value = "2s", value_parser = humantime::parse_duration)]
    lease_retry_period: Duration,
}

impl LeaseArgs {
    /// The timing, or which flag breaks it.
    fn timing(&self) -> anyhow::Result<Timing> {
        anyhow::ensure!(
            self.lease_renew_deadline < self.lease_duration,
            "--lease-renew-deadline {:?} must be shorter than --lease-duration {:?}: \
             a holder must stop before a standby may take its Lease",
            self.lease_renew_deadline,
            self.lease_duration
        );
        anyhow::ensure!(
            self.lease_retry_period < self.lease_renew_deadline,
            "--lease-retry-period {:?} must be shorter than --lease-renew-deadline {:?}",
            self.lease_retry_period,
            self.lease_renew_deadline
        );
        Ok(Timing {
            duration: self.lease_duration,
            deadline: self.lease_renew_deadline,
            retry: self.lease_retry_period,
        })
    }
}

/// Runs `work` (a component's loop, which ends soon after `drain` is
/// signaled) until the process is asked to stop, only while holding Lease
/// `name` in `namespace` unless `args` turn the election off. `None` when
/// it did not end within the grace period or never held the Lease; an
/// error when the Lease was lost, so that the process exits and its pod
/// restarts as a standby.
pub(crate) async fn run_elected<T>(
    args: &LeaseArgs,
    client: kube::Client,
    (namespace, name): (&str, &str),
    readiness: &Readiness,
    drain: mesh_core::drain::Drain,
    work: impl Future<Output = T>,
) -> anyhow::Result<Option<T>> {
    let grace = mesh_core::drain::CONTROLLER_GRACE;
    if !args.leader_election {
        return Ok(drain.run_until_terminated(grace, work).await);
    }
    let election = Election::new(
        client,
        namespace,
        name,
        Election::holder_identity(),
        args.timing()?,
    );
    let stop = drain.signaled();
    let led = election.lead(readiness, work, stop);
    match drain.run_until_terminated(grace, led).await {
        None => Ok(None),
        Some(led) => Ok(led?),
    }
}
