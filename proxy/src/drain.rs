//! Graceful shutdown: one signal every long-running task watches, and a
//! bounded wait for them to finish. Tasks that do not finish within the
//! grace period (a client holding a stream open, say) are aborted, so a
//! shutdown always ends.

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
/// runs this bounds the wait, see [`Drain::shutdown`]).
pub async fn accept_until<F, Fut>(listener: tokio::net::TcpListener, signal: Signal, handle: F)
where
    F: Fn(tokio::net::TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = tokio::task::JoinSet::new();
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
        let _ = self.signal.send(true);
        let deadline = tokio::time::Instant::now() + grace;
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
}
