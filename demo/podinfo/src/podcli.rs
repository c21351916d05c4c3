//! `podcli check http|tcp`: the health checker podinfo's image ships and
//! its manifests use in exec probes (`podcli check http
//! localhost:9898/readyz`). Exits 0 when the target answers (HTTP 2xx or
//! 3xx, or a TCP connection), 1 otherwise, within the timeout.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Runs `podcli <args>`; returns the exit code.
pub async fn run(args: &[String]) -> i32 {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let (kind, target) = match words.as_slice() {
        ["check", kind @ ("http" | "tcp"), target, ..] => (*kind, *target),
        _ => {
            eprintln!("usage: podcli check http <host:port/path> | podcli check tcp <host:port>");
            return 2;
        }
    };
    let timeout = flag(&words, "--timeout")
        .and_then(|t| humantime::parse_duration(t).ok())
        .unwrap_or(Duration::from_secs(5));
    let outcome = tokio::time::timeout(timeout, async {
        match kind {
            "http" => check_http(target).await,
            _ => TcpStream::connect(target)
                .await
                .map(drop)
                .map_err(|e| format!("{target}: {e}")),
        }
    })
    .await
    .unwrap_or_else(|_| Err(format!("{target}: no answer within {timeout:?}")));
    match outcome {
        Ok(()) => 0,
        Err(why) => {
            eprintln!("podcli: check failed: {why}");
            1
        }
    }
}

/// The value of flag `name` (`--name=value` or `--name value`).
pub(crate) fn flag<'a>(words: &[&'a str], name: &str) -> Option<&'a str> {
    words.iter().enumerate().find_map(|(i, w)| {
        w.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
            .or_else(|| (*w == name).then(|| words.get(i + 1).copied()).flatten())
    })
}

async fn check_http(target: &str) -> Result<(), String> {
    let target = target.strip_prefix("http://").unwrap_or(target);
    let (authority, path) = match target.find('/') {
        Some(slash) => (&target[..slash], &target[slash..]),
        None => (target, "/"),
    };
    let mut stream = TcpStream::connect(authority)
        .await
        .map_err(|e| format!("{authority}: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: {authority}\r\nuser-agent: podcli\r\nconnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("{authority}: {e}"))?;
    let mut head = vec![0u8; 64];
    let n = stream
        .read(&mut head)
        .await
        .map_err(|e| format!("{authority}: {e}"))?;
    let line = String::from_utf8_lossy(&head[..n]);
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{authority}{path}: not an HTTP answer"))?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("{authority}{path} answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_take_both_forms() {
        assert_eq!(
            flag(&["check", "http", "x", "--timeout=2s"], "--timeout"),
            Some("2s")
        );
        assert_eq!(flag(&["check", "--timeout", "3s"], "--timeout"), Some("3s"));
        assert_eq!(flag(&["check"], "--timeout"), None);
    }
}
