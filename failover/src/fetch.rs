//! Plain HTTP/1 GETs with a deadline: a proxy's or a service mirror's
//! metrics page, and Prometheus queries. What answers is any pod's page,
//! so an answer longer than [`MAX_ANSWER_BYTES`] is refused unread.

use std::time::Duration;

use crate::error::Error;

/// The longest answer read (a proxy's metrics page is tens of kilobytes;
/// a Prometheus answer about one namespace's clients, a few megabytes).
pub const MAX_ANSWER_BYTES: usize = 32 << 20;

/// GETs `path` (with its query) from `authority` (`host:port`) and returns
/// the body of a 200 answer, within `timeout`.
pub async fn get(authority: &str, path: &str, timeout: Duration) -> Result<String, Error> {
    mesh_core::http_get::get(authority, path, timeout, MAX_ANSWER_BYTES)
        .await
        .map_err(|reason| Error::Fetch {
            authority: authority.to_owned(),
            path: path.to_owned(),
            reason,
        })
}
