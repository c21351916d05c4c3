//! The tap API as Linkerd's viz serves it through the Kubernetes API
//! server's aggregation layer, so that `linkerd viz tap` and `mesh viz tap`
//! both work against it:
//!
//! - `POST /apis/tap.linkerd.io/v1alpha1/watch/namespaces/{ns}/{type}s/{name}/tap`
//!   (or `…/watch/namespaces/{ns}/tap` for a namespace) with a protobuf
//!   `TapByResourceRequest` as the body;
//! - the answer streams protobuf `TapEvent`s, each preceded by its length
//!   (u32, little-endian); an error is a `linkerd-error` header and one
//!   framed `ApiError`.
//!
//! The request messages are Linkerd viz's (`viz_tap.proto`, `viz.proto`),
//! declared here with their field numbers; `TapEvent` is wire-identical to
//! linkerd2-proxy-api's, which is used as is.

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub use linkerd2_proxy_api::tap::TapEvent;

/// The API group and version the APIService registers.
pub const GROUP_VERSION: &str = "tap.linkerd.io/v1alpha1";

/// The header that marks an error answer.
pub const ERROR_HEADER: &str = "linkerd-error";

/// The largest frame read (a request or an event).
pub const MAX_FRAME: usize = 4 * 1024 * 1024;

/// A Kubernetes resource (`viz.Resource`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Resource {
    /// Its namespace.
    #[prost(string, tag = "1")]
    pub namespace: String,
    /// Its type, singular (`deployment`, `pod`, `namespace`, …).
    #[prost(string, tag = "2")]
    pub r#type: String,
    /// Its name.
    #[prost(string, tag = "3")]
    pub name: String,
}

/// A resource and a label selector (`viz.ResourceSelection`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ResourceSelection {
    /// The resource.
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    /// A label selector, as `kubectl get --selector` takes.
    #[prost(string, tag = "2")]
    pub label_selector: String,
}

/// What to tap (`tap.TapByResourceRequest`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TapByResourceRequest {
    /// The pods to tap.
    #[prost(message, optional, tag = "1")]
    pub target: Option<ResourceSelection>,
    /// Which of their requests.
    #[prost(message, optional, tag = "2")]
    pub r#match: Option<Match>,
    /// At most this many requests a second in all (default 100).
    #[prost(float, tag = "3")]
    pub max_rps: f32,
}

/// A condition on requests (`TapByResourceRequest.Match`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Match {
    /// The condition.
    #[prost(oneof = "MatchKind", tags = "1, 2, 3, 4, 5")]
    pub r#match: Option<MatchKind>,
}

/// The kinds of condition.
#[derive(Clone, PartialEq, Eq, prost::Oneof)]
pub enum MatchKind {
    /// All hold.
    #[prost(message, tag = "1")]
    All(Seq),
    /// Some holds.
    #[prost(message, tag = "2")]
    Any(Seq),
    /// Does not hold.
    #[prost(message, tag = "3")]
    Not(Box<Match>),
    /// Sent to this resource.
    #[prost(message, tag = "4")]
    Destinations(ResourceSelection),
    /// An HTTP condition.
    #[prost(message, tag = "5")]
    Http(HttpMatch),
}

/// A list of conditions.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Seq {
    /// The conditions.
    #[prost(message, repeated, tag = "1")]
    pub matches: Vec<Match>,
}

/// An HTTP condition.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct HttpMatch {
    /// Which.
    #[prost(oneof = "HttpMatchKind", tags = "1, 2, 3, 4")]
    pub r#match: Option<HttpMatchKind>,
}

/// The HTTP conditions.
#[derive(Clone, PartialEq, Eq, prost::Oneof)]
pub enum HttpMatchKind {
    /// The scheme.
    #[prost(string, tag = "1")]
    Scheme(String),
    /// The method.
    #[prost(string, tag = "2")]
    Method(String),
    /// The authority, exactly.
    #[prost(string, tag = "3")]
    Authority(String),
    /// A path prefix.
    #[prost(string, tag = "4")]
    Path(String),
}

/// An error answer (`viz.ApiError`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ApiError {
    /// What went wrong.
    #[prost(string, tag = "1")]
    pub error: String,
}

/// The resource types tap serves, plural as in the URL, and whether they
/// live in a namespace.
pub const RESOURCES: [(&str, bool); 9] = [
    ("namespaces", false),
    ("pods", true),
    ("deployments", true),
    ("replicasets", true),
    ("statefulsets", true),
    ("daemonsets", true),
    ("jobs", true),
    ("cronjobs", true),
    ("replicationcontrollers", true),
];

/// The URL path a request for `target` is posted to.
pub fn path(target: &Resource) -> String {
    if target.r#type == "namespace" {
        return format!("/apis/{GROUP_VERSION}/watch/namespaces/{}/tap", target.name);
    }
    format!(
        "/apis/{GROUP_VERSION}/watch/namespaces/{}/{}s/{}/tap",
        target.namespace, target.r#type, target.name
    )
}

/// `message` with its length in front.
pub fn frame(message: &impl prost::Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut out = BytesMut::with_capacity(4 + body.len());
    out.put_u32_le(u32::try_from(body.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(&body);
    out.freeze()
}

/// Why a framed stream cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// A frame claims more than [`MAX_FRAME`] bytes.
    #[error("a tap frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    /// A frame is not the message it should be.
    #[error("a tap frame is not a valid message: {0}")]
    Decode(String),
}

/// Reads length-prefixed messages from a byte stream as it arrives.
#[derive(Debug, Default)]
pub struct FrameReader {
    buffer: BytesMut,
}

impl FrameReader {
    /// Adds bytes received.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole message, if one has arrived.
    pub fn next_message<M: prost::Message + Default>(&mut self) -> Result<Option<M>, FrameError> {
        if self.buffer.len() < 4 {
            return Ok(None);
        }
        let len = (&self.buffer[..4]).get_u32_le() as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        if self.buffer.len() < 4 + len {
            return Ok(None);
        }
        self.buffer.advance(4);
        let body = self.buffer.split_to(len);
        M::decode(body.freeze())
            .map(Some)
            .map_err(|e| FrameError::Decode(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_request_is_posted_where_linkerd_posts_it() {
        let deploy = Resource {
            namespace: "shop".into(),
            r#type: "deployment".into(),
            name: "web".into(),
        };
        assert_eq!(
            path(&deploy),
            "/apis/tap.linkerd.io/v1alpha1/watch/namespaces/shop/deployments/web/tap"
        );
        let ns = Resource {
            namespace: String::new(),
            r#type: "namespace".into(),
            name: "shop".into(),
        };
        assert_eq!(
            path(&ns),
            "/apis/tap.linkerd.io/v1alpha1/watch/namespaces/shop/tap"
        );
    }

    #[test]
    fn frames_arrive_in_pieces_and_come_out_whole() {
        let error = ApiError {
            error: "no pods to tap".into(),
        };
        let bytes = [frame(&error), frame(&error)].concat();
        let mut reader = FrameReader::default();
        let mut out = Vec::new();
        for byte in bytes {
            reader.push(&[byte]);
            if let Some(e) = reader.next_message::<ApiError>().expect("valid") {
                out.push(e);
            }
        }
        assert_eq!(out, [error.clone(), error]);
    }

    #[test]
    fn a_frame_that_claims_gigabytes_is_refused_before_any_allocation() {
        let mut reader = FrameReader::default();
        reader.push(&u32::MAX.to_le_bytes());
        assert_eq!(
            reader.next_message::<ApiError>(),
            Err(FrameError::TooLarge(u32::MAX as usize))
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, rng_seed: proptest::test_runner::RngSeed::Fixed(0x7a9), ..ProptestConfig::default() })]
        #[test]
        fn any_bytes_read_as_frames_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let mut reader = FrameReader::default();
            reader.push(&bytes);
            for _ in 0..bytes.len() + 1 {
                match reader.next_message::<TapEvent>() {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}
