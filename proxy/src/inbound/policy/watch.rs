//! The client of the policy controller: one `WatchPort` per inbound port,
//! started at start-up for the pod's ports (`LINKERD2_PROXY_INBOUND_PORTS`,
//! the injector lists the containers' ports) and on first use for any
//! other, shared by every connection to the port. A connection to one of
//! the pod's ports waits (at most a second) for the controller's first
//! answer; one to another port does not wait: the default policy decides
//! until the answer comes. Until the controller answers for a port (or
//! without a controller, or while it does not know the pod yet: NOT_FOUND)
//! the default policy applies; when the stream breaks, the last
//! answer stays in force while it reconnects with back-off; an answer the
//! proxy cannot use is logged and the previous one kept.
//!
//! Ports outside the pod's list are watched up to [`MAX_UNLISTED_PORTS`]:
//! a client that connects to every port number cannot make the proxy open
//! a watch (and the controller a stream) for each. Past the cap, a port not
//! yet watched is denied, not given the default policy: a Server for such a
//! port must not be bypassed by filling the cap first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use linkerd2_proxy_api::inbound::PortSpec;
use linkerd2_proxy_api::inbound::inbound_server_policies_client::InboundServerPoliciesClient;
use mesh_core::identity::schedule::Backoff;
use rand::RngExt;
use tokio::sync::watch;
use tonic::transport::Channel;

use super::authorize::ServerPolicy;

/// How long a connection to a port waits for the controller's first answer
/// before the default policy decides.
const FIRST_ANSWER: Duration = Duration::from_secs(1);

/// How many ports outside the pod's list are watched at most.
pub(crate) const MAX_UNLISTED_PORTS: usize = 256;

/// How soon a port the controller did not know (NOT_FOUND) is asked again.
const UNKNOWN_RETRY: Duration = Duration::from_millis(500);

/// What the controller has said of a port.
#[derive(Debug, Clone)]
enum Answer {
    /// Nothing yet.
    Pending,
    /// It does not know this pod (yet): the default policy applies.
    Unknown,
    /// The port's policy.
    Policy(Arc<ServerPolicy>),
}

/// A watched port: its answers, and whether a first wait has timed out.
type PortEntry = (watch::Receiver<Answer>, Arc<std::sync::atomic::AtomicBool>);

/// Every port's policy.
#[derive(Debug)]
pub(crate) struct Policies {
    client: Option<InboundServerPoliciesClient<Channel>>,
    workload: String,
    default: Arc<ServerPolicy>,
    /// What a port past [`MAX_UNLISTED_PORTS`] gets.
    denied: Arc<ServerPolicy>,
    ports: Mutex<HashMap<u16, PortEntry>>,
    /// The pod's ports, watched from the start.
    listed: Vec<u16>,
    backoff: Backoff,
}

/// One port's policy, as it changes.
#[derive(Debug, Clone)]
pub(crate) struct PortPolicy {
    answers: watch::Receiver<Answer>,
    default: Arc<ServerPolicy>,
    /// Set once a first wait for the controller timed out: later
    /// connections do not wait again (a controller that is down must not
    /// add a second to every connection).
    gave_up: Arc<std::sync::atomic::AtomicBool>,
}

impl PortPolicy {
    /// The policy now: the controller's last answer, else the default.
    pub(crate) fn current(&self) -> Arc<ServerPolicy> {
        match &*self.answers.borrow() {
            Answer::Policy(policy) => policy.clone(),
            Answer::Pending | Answer::Unknown => self.default.clone(),
        }
    }

    /// Waits for the next change; never returns once the watch is gone.
    pub(crate) async fn changed(&mut self) {
        if self.answers.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Policies {
    /// Policies from the controller on `channel` (none: only `default`)
    /// for `workload`, watching `ports` from the start.
    pub(crate) fn new(
        channel: Option<Channel>,
        workload: String,
        default: ServerPolicy,
        ports: &[u16],
    ) -> Arc<Self> {
        let this = Arc::new(Self {
            client: channel.map(InboundServerPoliciesClient::new),
            workload,
            default: Arc::new(default),
            denied: Arc::new(ServerPolicy::denied()),
            ports: Mutex::default(),
            listed: ports.to_vec(),
            backoff: Backoff {
                min: Duration::from_millis(100),
                max: Duration::from_secs(10),
            },
        });
        for port in ports {
            this.port(*port);
        }
        this
    }

    /// Follows `port`'s policy.
    pub(crate) fn port(self: &Arc<Self>, port: u16) -> PortPolicy {
        let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        let unlisted = |p: &u16| !self.listed.contains(p);
        if !ports.contains_key(&port)
            && unlisted(&port)
            && ports.keys().filter(|p| unlisted(p)).count() >= MAX_UNLISTED_PORTS
        {
            tracing::debug!(
                port,
                "{MAX_UNLISTED_PORTS} ports outside the pod's are watched already: denied"
            );
            let (_, answers) = watch::channel(Answer::Pending);
            return PortPolicy {
                answers,
                default: self.denied.clone(),
                gave_up: Arc::new(true.into()),
            };
        }
        let (answers, gave_up) = ports
            .entry(port)
            .or_insert_with(|| {
                let (tx, rx) = watch::channel(Answer::Pending);
                if self.client.is_some() {
                    tokio::spawn(self.clone().run(port, tx));
                }
                (rx, Arc::default())
            })
            .clone();
        PortPolicy {
            answers,
            default: self.default.clone(),
            gave_up,
        }
    }

    /// `port`'s policy: for one of the pod's ports, once the controller
    /// has answered, or the default after [`FIRST_ANSWER`] (at once without
    /// a controller); for any other port, at once.
    pub(crate) async fn first(self: &Arc<Self>, port: u16) -> PortPolicy {
        let mut policy = self.port(port);
        let waited = policy.gave_up.load(std::sync::atomic::Ordering::Relaxed);
        if self.client.is_some() && !waited && self.listed.contains(&port) {
            let answered = policy.answers.wait_for(|a| !matches!(a, Answer::Pending));
            if tokio::time::timeout(FIRST_ANSWER, answered).await.is_err() {
                policy
                    .gave_up
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(
                    port,
                    "no policy from the controller within {FIRST_ANSWER:?}: the default policy applies until it answers"
                );
            }
        }
        policy
    }

    async fn run(self: Arc<Self>, port: u16, tx: watch::Sender<Answer>) {
        let Some(client) = self.client.clone() else {
            return;
        };
        let mut failures = 0u32;
        loop {
            let spec = PortSpec {
                workload: self.workload.clone(),
                port: u32::from(port),
            };
            match client.clone().watch_port(spec).await {
                Ok(response) => {
                    let mut stream = response.into_inner();
                    loop {
                        match stream.message().await {
                            Ok(Some(server)) => match ServerPolicy::from_api(&server) {
                                Ok(policy) => {
                                    failures = 0;
                                    tx.send_replace(Answer::Policy(Arc::new(policy)));
                                }
                                Err(e) => tracing::warn!(port, "{e}: the previous policy stays"),
                            },
                            Ok(None) => break,
                            Err(status) => {
                                tracing::debug!(port, "policy stream: {status}");
                                break;
                            }
                        }
                    }
                }
                Err(status) if status.code() == tonic::Code::NotFound => {
                    let first = tx.send_if_modified(|answer| {
                        let pending = matches!(answer, Answer::Pending);
                        if pending {
                            *answer = Answer::Unknown;
                        }
                        pending
                    });
                    // Said once: the retries every moment would bury
                    // everything else in the log.
                    if first {
                        tracing::debug!(
                            port,
                            "the policy controller does not know this pod yet: {status}"
                        );
                    } else {
                        tracing::trace!(port, "still unknown to the policy controller: {status}");
                    }
                }
                Err(status) => tracing::debug!(port, "WatchPort: {status}"),
            }
            if tx.is_closed() {
                return;
            }
            failures = failures.saturating_add(1);
            let mut delay = self
                .backoff
                .delay(failures.saturating_sub(1), rand::rng().random::<f64>());
            if matches!(*tx.borrow(), Answer::Unknown) {
                // A pod the controller does not know yet is indexed within
                // moments: ask again soon, not after a long back-off.
                delay = delay.min(UNKNOWN_RETRY);
            }
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbound::policy::authorize::Client;

    #[test]
    fn a_scan_of_every_port_opens_a_bounded_number_of_watches_and_is_denied_past_it() {
        let open = ServerPolicy::default_named("all-unauthenticated", &[]).expect("policy");
        let policies = Policies::new(None, "{}".into(), open, &[8080]);
        let client = Client {
            ip: "10.0.0.9".parse().expect("ip"),
            mesh_tls: false,
            identity: None,
        };
        let admitted = |port: u16| {
            policies
                .port(port)
                .current()
                .authorize_connection(&client)
                .is_some()
        };
        for port in 1..=u16::MAX {
            let _ = policies.port(port);
        }
        let watched = policies.ports.lock().expect("ports").len();
        assert_eq!(
            watched,
            MAX_UNLISTED_PORTS + 1,
            "the cap, and the pod's own port"
        );
        assert!(admitted(8080), "the pod's own port keeps its policy");
        assert!(
            admitted(1),
            "a port watched before the cap keeps its policy"
        );
        assert!(
            !admitted(60000),
            "a port past the cap is denied, not defaulted"
        );
    }
}
