//! Linkerd's transport header: what a client proxy writes first on an
//! opaque mTLS connection (negotiated with ALPN `transport.l5d.io/v1`) so
//! that the server proxy (or a gateway) knows the real target. On the wire:
//! `transport.l5d.io/v1\r\n\r\n`, a big-endian u32 length, then a protobuf
//! `Header { int32 port = 1; string name = 2; SessionProtocol
//! session_protocol = 3; }`, and our `string client_id = 100` (see
//! [`TransportHeader::client_id`]).

use bytes::{BufMut, BytesMut};
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The preamble before the length.
pub const PREFIX: &[u8] = b"transport.l5d.io/v1\r\n\r\n";

/// The largest header accepted (names are DNS names; this is generous).
pub const MAX_LEN: u32 = 64 * 1024;

/// The header.
#[derive(Clone, PartialEq, Message)]
pub struct TransportHeader {
    /// The target port.
    #[prost(int32, tag = "1")]
    pub port: i32,
    /// The target name (`name.ns.svc.cluster.local`) when the target is a
    /// Service behind a gateway; empty for the endpoint itself.
    #[prost(string, tag = "2")]
    pub name: String,
    /// What the stream carries, when it is HTTP.
    #[prost(message, optional, tag = "3")]
    pub session_protocol: Option<SessionProtocol>,
    /// Ours, not Linkerd's (proxies that do not know it skip it): the
    /// client a gateway forwards an opaque stream for, believed only from
    /// a trusted gateway.
    #[prost(string, tag = "100")]
    pub client_id: String,
}

/// The protocol of the stream after the header.
#[derive(Clone, PartialEq, Message)]
pub struct SessionProtocol {
    /// HTTP/1 or HTTP/2.
    #[prost(oneof = "Kind", tags = "1, 2")]
    pub kind: Option<Kind>,
}

/// The kinds of session.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    /// HTTP/1.
    #[prost(message, tag = "1")]
    Http1(Empty),
    /// HTTP/2.
    #[prost(message, tag = "2")]
    Http2(Empty),
}

/// An empty message.
#[derive(Clone, PartialEq, Message)]
pub struct Empty {}

/// The bytes of `header` on the wire.
pub fn encode(header: &TransportHeader) -> BytesMut {
    let body = header.encode_to_vec();
    let mut out = BytesMut::with_capacity(PREFIX.len() + 4 + body.len());
    out.put_slice(PREFIX);
    out.put_u32(u32::try_from(body.len()).unwrap_or(u32::MAX));
    out.put_slice(&body);
    out
}

/// Reads a header from the start of `io`.
pub async fn read<I: AsyncRead + Unpin>(io: &mut I) -> std::io::Result<TransportHeader> {
    let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
    let mut prefix = [0u8; PREFIX.len()];
    io.read_exact(&mut prefix).await?;
    if prefix != PREFIX {
        return Err(invalid("no transport header preamble".into()));
    }
    let len = io.read_u32().await?;
    if len > MAX_LEN {
        return Err(invalid(format!("a transport header of {len} bytes")));
    }
    let mut body = vec![0u8; len as usize];
    io.read_exact(&mut body).await?;
    let header = TransportHeader::decode(body.as_slice())
        .map_err(|e| invalid(format!("transport header: {e}")))?;
    if !(1..=i32::from(u16::MAX)).contains(&header.port) {
        return Err(invalid(format!("transport header port {}", header.port)));
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_header_reads_back_as_written_and_leaves_the_payload() {
        let header = TransportHeader {
            port: 9898,
            name: "podinfo.test.svc.cluster.local".into(),
            session_protocol: Some(SessionProtocol {
                kind: Some(Kind::Http2(Empty {})),
            }),
            client_id: String::new(),
        };
        let mut wire = encode(&header).to_vec();
        assert!(wire.starts_with(PREFIX));
        wire.extend_from_slice(b"payload");
        let mut reader = wire.as_slice();
        assert_eq!(read(&mut reader).await.expect("header"), header);
        assert_eq!(reader, b"payload");
    }

    #[tokio::test]
    async fn garbage_and_impossible_ports_are_refused() {
        let mut reader: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(read(&mut reader).await.is_err());
        for port in [0, -1, 65536] {
            let wire = encode(&TransportHeader {
                port,
                ..Default::default()
            });
            assert!(read(&mut wire.as_ref()).await.is_err(), "port {port}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn kind() -> impl Strategy<Value = Option<SessionProtocol>> {
            prop_oneof![
                Just(None),
                Just(Some(SessionProtocol {
                    kind: Some(Kind::Http1(Empty {}))
                })),
                Just(Some(SessionProtocol {
                    kind: Some(Kind::Http2(Empty {}))
                })),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4096))]

            /// Whatever arrives, reading gives a header or an error that
            /// says what was wrong, never a panic.
            #[test]
            fn any_bytes_read_to_a_header_or_an_error(mut bytes in prop::collection::vec(any::<u8>(), 0..512), preamble in any::<bool>()) {
                if preamble {
                    let mut wire = PREFIX.to_vec();
                    wire.append(&mut bytes);
                    bytes = wire;
                }
                let mut reader = bytes.as_slice();
                if let Err(e) = futures::executor::block_on(read(&mut reader)) {
                    prop_assert!(!e.to_string().is_empty());
                }
            }

            /// Every header a proxy can write reads back as it was, and
            /// leaves the stream after it untouched.
            #[test]
            fn every_valid_header_reads_back(port in 1..=i32::from(u16::MAX), name in "[a-z0-9.-]{0,253}", session_protocol in kind(), client_id in "[a-z0-9.-]{0,100}", payload in prop::collection::vec(any::<u8>(), 0..64)) {
                let header = TransportHeader { port, name, session_protocol, client_id };
                let mut wire = encode(&header).to_vec();
                wire.extend_from_slice(&payload);
                let mut reader = wire.as_slice();
                let read_back = futures::executor::block_on(read(&mut reader));
                prop_assert_eq!(read_back.ok(), Some(header));
                prop_assert_eq!(reader, payload.as_slice());
            }
        }
    }
}
