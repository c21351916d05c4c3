//! Plain HTTP/1 GETs with a deadline: a proxy's or a service mirror's
//! metrics page, and Prometheus queries.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::error::Error;

/// GETs `path` (with its query) from `authority` (`host:port`) and returns
/// the body of a 200 answer, within `timeout`.
pub async fn get(authority: &str, path: &str, timeout: Duration) -> Result<String, Error> {
    let failed = |reason: String| Error::Fetch {
        authority: authority.to_owned(),
        path: path.to_owned(),
        reason,
    };
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
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
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
        Ok(answer) => answer.map_err(failed),
        Err(_) => Err(failed(format!("no answer within {timeout:?}"))),
    }
}
