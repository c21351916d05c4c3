//! Graceful shutdown, the same for every mesh process: one signal every
//! long-running task watches, started by SIGTERM or SIGINT
//! ([`terminated`]), and a bounded wait for the tasks to finish. Tasks that
//! do not finish within the grace period (a client holding a stream open,
//! say) are aborted, so a shutdown always ends.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The shutdown signal, as seen by one task.
#[derive(Debug, Clone)]
pub struct Signal(watch::Receiver<bool>);

impl Signal {
    /// The underlying receiver (true once shutdown starts).
    pub fn receiver(self) -> watch::Receiver<bool> {
        self.0
    }

    /// Completes once shutdown starts.
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// Accepts connections on `listener` and handles each with `handle` on a
/// task of its own, until `signal` fires; then waits for the connections
/// still open (each is expected to wind down on the same signal; whoever
/// runs this bounds the wait, see [`Drain::shutdown`]). Connections are
/// taken in a few at a time, between polls of the runtime's I/O
/// ([`crate::listen::FairAcceptor`]).
pub async fn accept_until<F, Fut>(listener: tokio::net::TcpListener, signal: Signal, handle: F)
where
    F: Fn(tokio::net::TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = tokio::task::JoinSet::new();
    let mut listener = crate::listen::FairAcceptor::new(listener);
    let stop = signal.wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(handle(stream));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut stop => break,
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Completes when the process receives SIGTERM (what Kubernetes sends a
/// pod's containers) or SIGINT (Ctrl-C), naming which.
pub async fn terminated() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot watch SIGTERM and SIGINT; stopping on Ctrl-C only");
        let _ = tokio::signal::ctrl_c().await;
        return "Ctrl-C";
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// A component that is serving: what it tells its caller (`T`: where it
/// listens, say; read through `Deref`) and the drain that stops it.
#[derive(Debug)]
pub struct Serving<T> {
    state: T,
    drain: Drain,
}

impl<T> Serving<T> {
    /// `state`, stopped by `drain`.
    pub fn new(state: T, drain: Drain) -> Self {
        Self { state, drain }
    }

    /// Stops serving: open calls get [`CONTROLLER_GRACE`], then are cut.
    pub async fn shutdown(self) {
        self.drain.shutdown(CONTROLLER_GRACE).await;
    }

    /// Serves until the process is asked to stop (SIGTERM, SIGINT), then
    /// shuts down.
    pub async fn until_terminated(self) {
        self.drain.until_terminated(CONTROLLER_GRACE).await;
    }
}

impl<T> std::ops::Deref for Serving<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.state
    }
}

/// How long a control-plane component's open calls and tasks get to finish
/// once it is asked to stop (well within Kubernetes' default 30 s).
pub const CONTROLLER_GRACE: Duration = Duration::from_secs(5);

/// The tasks of one component and the signal that stops them.
#[derive(Debug)]
pub struct Drain {
    signal: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    /// No tasks yet.
    pub fn new() -> Self {
        Self {
            signal: watch::channel(false).0,
            tasks: Vec::new(),
        }
    }

    /// A future that completes once shutdown starts.
    pub fn signaled(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.signal.subscribe();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }

    /// A cloneable handle on the signal, for tasks that start more tasks.
    pub fn signal(&self) -> Signal {
        Signal(self.signal.subscribe())
    }

    /// Runs `task`, which must end soon after [`Drain::signaled`] completes.
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(task));
    }

    /// Signals every task, waits up to `grace` for them, aborts the rest.
    pub async fn shutdown(self, grace: Duration) {
        self.shutdown_by(tokio::time::Instant::now() + grace).await;
    }

    /// Waits until the process is asked to stop ([`terminated`]), then
    /// shuts down with `grace`.
    pub async fn until_terminated(self, grace: Duration) {
        let reason = terminated().await;
        tracing::info!("{reason}: draining for up to {grace:?}");
        self.shutdown(grace).await;
    }

    /// Runs `work` (a component's main loop, which is expected to end soon
    /// after [`Drain::signaled`]) until it ends or the process is asked to
    /// stop ([`terminated`]); then signals every task and gives `work` and
    /// the tasks together `grace` to finish. `None` when `work` did not
    /// finish in time.
    pub async fn run_until_terminated<T>(
        self,
        grace: Duration,
        work: impl Future<Output = T>,
    ) -> Option<T> {
        tokio::pin!(work);
        let finished = tokio::select! {
            out = &mut work => Some(out),
            reason = terminated() => {
                tracing::info!("{reason}: draining for up to {grace:?}");
                None
            }
        };
        let _ = self.signal.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        let out = match finished {
            Some(out) => Some(out),
            None => tokio::time::timeout_at(deadline, work).await.ok(),
        };
        self.shutdown_by(deadline).await;
        out
    }

    async fn shutdown_by(self, deadline: tokio::time::Instant) {
        let _ = self.signal.send(true);
        for mut task in self.tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A burst of new connections does not hold back a request on a
    /// connection already open: the request's task runs once the acceptor
    /// has taken one burst ([`crate::listen::ACCEPT_BURST`]) past the
    /// connection whose handler sends it (17 of 100 every time with a burst
    /// of 16; at most two bursts allowed). Without the acceptor's wait for
    /// an I/O poll, the loop takes connections in until the runtime's next
    /// periodic I/O poll, about sixty of them (57 and 58, tried); with a
    /// plain `yield_now` in its place, every connection closing wakes the
    /// loop and ends the yield early, and all 100 go first (tried). One
    /// worker thread, as the proxy runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_burst_of_connections_waits_behind_a_request_on_an_open_one() {
        use std::io::Write;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::AsyncReadExt;

        // Within the listen backlog (128), so that every connect completes at once.
        const BURST: usize = 100;
        let open = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let writer =
            std::net::TcpStream::connect(open.local_addr().expect("addr")).expect("connect");
        let (reader, _) = open.accept().expect("accept");
        reader.set_nonblocking(true).expect("nonblocking");
        let mut reader = tokio::net::TcpStream::from_std(reader).expect("register");
        let handled = Arc::new(AtomicUsize::new(0));
        let (waiting_tx, waiting) = tokio::sync::oneshot::channel();
        let seen = tokio::spawn({
            let handled = handled.clone();
            async move {
                // In the same poll as the read's first (pending) attempt:
                // the reader waits on the runtime's I/O before the burst.
                let _ = waiting_tx.send(());
                let mut byte = [0u8; 1];
                reader.read_exact(&mut byte).await.expect("the request");
                handled.load(Ordering::SeqCst)
            }
        });
        waiting.await.expect("the reader started");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let burst: Vec<_> = (0..BURST)
            .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
            .collect();
        let drain = Drain::new();
        let signal = drain.signal();
        // The first connection handled sends the request on the open one.
        let writer = Arc::new(std::sync::Mutex::new(writer));
        tokio::spawn(accept_until(listener, signal, move |_stream| {
            let handled = handled.clone();
            let writer = writer.clone();
            async move {
                if handled.fetch_add(1, Ordering::SeqCst) == 0 {
                    let mut writer = writer.lock().expect("writer");
                    writer.write_all(b"!").expect("write");
                }
            }
        }));
        let before = seen.await.expect("the reader");
        drop(burst);
        let allowed = 2 * crate::listen::ACCEPT_BURST as usize;
        assert!(
            before <= allowed,
            "{before} new connections were handled before the request on the open one (at most {allowed} allowed)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn tasks_that_ignore_the_signal_are_aborted_after_the_grace_period() {
        let mut drain = Drain::new();
        let polite = drain.signaled();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        drain.spawn(async move {
            polite.await;
            let _ = done_tx.send(());
        });
        drain.spawn(std::future::pending());
        let started = tokio::time::Instant::now();
        drain.shutdown(Duration::from_secs(5)).await;
        assert!(done_rx.await.is_ok(), "the polite task saw the signal");
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(5),
            "the stubborn one was aborted at the deadline"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn work_that_ends_on_its_own_still_drains_the_tasks() {
        let mut drain = Drain::new();
        let stopped = drain.signaled();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        drain.spawn(async move {
            stopped.await;
            let _ = done_tx.send(());
        });
        let out = drain
            .run_until_terminated(Duration::from_secs(5), async { 7 })
            .await;
        assert_eq!(out, Some(7));
        assert!(done_rx.await.is_ok(), "the task saw the signal and ended");
    }
}
