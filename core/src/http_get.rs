//! Plain HTTP/1 GETs with a deadline and a bound on the answer: metrics
//! pages and Prometheus queries, read by controllers and the dashboard.
//! Whoever answers is not trusted to be brief: a body longer than the
//! bound is refused before it is held in memory.

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// GETs `path` (with its query) from `authority` (`host:port`) and returns
/// the body of a 200 answer, within `timeout` and at most `max_bytes`
/// long; otherwise why not (the status and the start of the body, the
/// timeout, or the bound).
pub async fn get(
    authority: &str,
    path: &str,
    timeout: Duration,
    max_bytes: usize,
) -> Result<String, String> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let request = http::Request::get(path)
            .header(http::header::HOST, authority)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = Limited::new(response.into_body(), max_bytes)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    format!("the answer is longer than {max_bytes} bytes")
                } else {
                    e.to_string()
                }
            })?
            .to_bytes();
        let text = String::from_utf8_lossy(&body);
        if status != http::StatusCode::OK {
            return Err(format!(
                "{status}: {}",
                text.chars().take(200).collect::<String>()
            ));
        }
        Ok(text.into_owned())
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(answer) => answer,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that answers one request with `body` and keeps the socket
    /// open.
    async fn server(body: Vec<u8>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let authority = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await;
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&body).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        authority
    }

    #[tokio::test]
    async fn an_answer_within_the_bound_is_read() {
        let authority = server(b"up 1\n".to_vec()).await;
        let page = get(&authority, "/metrics", Duration::from_secs(5), 1024).await;
        assert_eq!(page.as_deref(), Ok("up 1\n"));
    }

    /// Attack: a metrics page of 8 MiB toward a reader that allows 1 MiB
    /// is refused, not held in memory.
    #[tokio::test]
    async fn a_page_longer_than_the_bound_is_refused() {
        let authority = server(vec![b'x'; 8 << 20]).await;
        let refused = get(&authority, "/metrics", Duration::from_secs(5), 1 << 20)
            .await
            .expect_err("an 8 MiB page was read");
        assert!(refused.contains("longer than 1048576 bytes"), "{refused}");
    }
}
