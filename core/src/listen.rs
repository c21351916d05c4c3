//! Binding a listener, with an error that names the address, and taking
//! its connections in without letting a flood of them hold back the
//! connections already open.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use tokio::net::TcpListener;

/// A listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("listening on {addr}: {source}")]
pub struct ListenError {
    /// The address.
    pub addr: SocketAddr,
    /// Why.
    pub source: std::io::Error,
}

/// Binds `addr`; also returns the address bound (the port chosen for 0).
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ListenError> {
    let failed = |source| ListenError { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(failed)?;
    let bound = listener.local_addr().map_err(failed)?;
    Ok((listener, bound))
}

/// How many connections are taken in between two polls of the runtime's
/// I/O while they keep arriving: enough that accepting keeps up with a
/// client opening connections at the proxy's full request rate, few enough
/// that a burst queues only that many new tasks ahead of the requests that
/// arrive meanwhile on connections already open.
pub const ACCEPT_BURST: u32 = 16;

/// Takes a listener's connections in without letting a flood of them hold
/// back the connections already open.
///
/// An accept loop that takes every waiting connection in at once queues a
/// task for each ahead of everything else: during a flood of connections
/// (thousands of stalled TLS handshakes, say), a request arriving on a
/// connection already open waits behind all of them, because tokio polls
/// I/O only when its run queue empties or every 61 tasks. So after
/// [`ACCEPT_BURST`] connections taken without waiting, the acceptor waits
/// for the runtime's next I/O poll (`NextIoPoll`) and resumes behind the
/// tasks that poll woke. Taking one connection per poll would be fairer still
/// but caps accepting at one connection per 61 tasks once the runtime is
/// busy: a client that opens connections as its load grows (hyper's pool
/// does) then waits in the listen backlog, and the proxy saturates early.
#[derive(Debug)]
pub struct FairAcceptor {
    listener: TcpListener,
    /// Connections taken since the runtime last polled I/O for this loop.
    taken_since_io: u32,
}

impl FairAcceptor {
    /// Accepts from `listener`.
    pub fn new(listener: TcpListener) -> Self {
        Self {
            listener,
            taken_since_io: 0,
        }
    }

    /// The next connection, once the runtime has polled its I/O if the
    /// last [`ACCEPT_BURST`] were taken without waiting for it.
    pub async fn accept(&mut self) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
        if self.taken_since_io >= ACCEPT_BURST {
            NextIoPoll::default().await;
            self.taken_since_io = 0;
        }
        let mut waited = false;
        let accepted = std::future::poll_fn(|cx| {
            let polled = self.listener.poll_accept(cx);
            waited |= polled.is_pending();
            polled
        })
        .await;
        // A wait for the listener's readiness is a wait for an I/O poll.
        self.taken_since_io = if waited { 1 } else { self.taken_since_io + 1 };
        accepted
    }
}

/// Completes once the runtime has polled its I/O (tokio wakes a yielded
/// task only after its next I/O poll) and not before, even when something
/// else wakes the task first: `tokio::task::yield_now` completes on any
/// second poll, so in a `select!` beside a branch that wakes often (a
/// `JoinSet` of connections ending) it would hardly wait at all.
#[derive(Default)]
struct NextIoPoll {
    /// Set by the runtime's deferred wake; `None` until the first poll.
    woken: Option<Arc<DeferredWake>>,
}

/// The waker handed to the runtime's yield: records that it fired and
/// wakes the task that waits.
struct DeferredWake {
    fired: AtomicBool,
    task: Mutex<Waker>,
}

impl Wake for DeferredWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .wake_by_ref();
    }
}

impl Future for NextIoPoll {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &self.woken {
            Some(woken) => {
                // The waker first, then the flag: a wake between the two
                // (the task moved to another worker) still reaches it.
                woken
                    .task
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone_from(cx.waker());
                if woken.fired.load(Ordering::Acquire) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }
            None => {
                let woken = Arc::new(DeferredWake {
                    fired: AtomicBool::new(false),
                    task: Mutex::new(cx.waker().clone()),
                });
                let waker = Waker::from(woken.clone());
                // Its first poll hands the waker to the runtime and is pending.
                let yielded =
                    std::pin::pin!(tokio::task::yield_now()).poll(&mut Context::from_waker(&waker));
                self.woken = Some(woken);
                yielded
            }
        }
    }
}
