//! What the `mesh-controller` process tests share: free ports, the admin
//! endpoint as a prober reads it, and a SIGTERM stop that must end in time.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A loopback address with a port free right now.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// `GET path` on the admin endpoint at `admin`: the status code and body,
/// or `None` while nothing answers.
pub async fn admin_get(admin: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(admin).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.ok()?;
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// `/ready`'s first answer once the admin endpoint listens (up to 5 s).
pub async fn first_ready_answer(admin: SocketAddr) -> Option<(u16, String)> {
    for _ in 0..50 {
        if let Some(answer) = admin_get(admin, "/ready").await {
            return Some(answer);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Waits up to `within` for `/ready` to answer 200 `ready`.
pub async fn wait_ready(admin: SocketAddr, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if let Some((200, body)) = admin_get(admin, "/ready").await
            && body == "ready\n"
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Sends SIGTERM to `child` and asserts it exits successfully within 10 s.
pub async fn stop_with_sigterm(child: &mut tokio::process::Child) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().expect("pid")).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("it stops within 10 s of SIGTERM")
        .expect("wait");
    assert!(status.success(), "exit after SIGTERM: {status}");
}
