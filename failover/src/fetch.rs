//! Plain HTTP/1 GETs with a deadline: a proxy's or a service mirror's
//! metrics page, and Prometheus queries.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// GETs `path` (with its query) from `authority` (`host:port`) and returns
/// the body of a 200 answer, within `timeout`.
pub async fn get(authority: &str, path: &str, timeout: Duration) -> anyhow::Result<String> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(authority).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let request = http::Request::get(path)
            .header(http::header::HOST, authority)
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::ensure!(
            status == http::StatusCode::OK,
            "GET http://{authority}{path}: {status}: {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(200)
                .collect::<String>()
        );
        Ok(String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| {
        anyhow::anyhow!("GET http://{authority}{path}: no answer within {timeout:?}")
    })?
}
