//! Protocol detection: what a connection speaks, from its first bytes,
//! bounded in time and in bytes. Mesh TLS and application TLS both start
//! with a ClientHello (the caller tells them apart by its server name,
//! [`client_hello_sni`]); HTTP/2 with prior knowledge starts with its
//! preface; HTTP/1 with a request line; anything else is opaque TCP, and so
//! is a connection that says nothing within the timeout or the byte limit.
//!
//! The bytes read are never lost: [`Prefixed`] replays them before the rest
//! of the stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The HTTP/2 connection preface.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How many bytes detection reads at most (a long HTTP/1 request line).
pub const MAX_DETECT_BYTES: usize = 8 * 1024;

/// What a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// A TLS ClientHello.
    Tls,
    /// HTTP/2 with prior knowledge.
    Http2,
    /// HTTP/1.0 or HTTP/1.1.
    Http1,
    /// Anything else.
    Opaque,
}

/// What the bytes so far say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Known.
    Is(Protocol),
    /// Not yet decided.
    NeedMore,
}

/// Classifies the first bytes of a connection.
pub fn classify(prefix: &[u8]) -> Verdict {
    if prefix.is_empty() {
        return Verdict::NeedMore;
    }
    if let Some(verdict) = tls(prefix) {
        return verdict;
    }
    if prefix.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(prefix) {
        return Verdict::NeedMore;
    }
    if prefix.starts_with(H2_PREFACE) {
        return Verdict::Is(Protocol::Http2);
    }
    http1(prefix)
}

/// A TLS record carrying a ClientHello: content type 22, version 3.x,
/// handshake type 1.
fn tls(prefix: &[u8]) -> Option<Verdict> {
    let expect: [fn(u8) -> bool; 6] = [
        |b| b == 0x16,
        |b| b == 0x03,
        |b| b <= 0x04,
        |_| true,
        |_| true,
        |b| b == 0x01,
    ];
    for (byte, ok) in prefix.iter().zip(expect) {
        if !ok(*byte) {
            return None;
        }
    }
    Some(if prefix.len() >= expect.len() {
        Verdict::Is(Protocol::Tls)
    } else {
        Verdict::NeedMore
    })
}

/// `METHOD SP request-target SP HTTP/1.x CRLF`.
fn http1(prefix: &[u8]) -> Verdict {
    let is_token = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    let line_end = prefix.windows(2).position(|w| w == b"\r\n");
    let line = &prefix[..line_end.unwrap_or(prefix.len())];
    let method_len = line.iter().take_while(|b| is_token(b)).count();
    let opaque = Verdict::Is(Protocol::Opaque);
    match line.get(method_len) {
        None if line_end.is_none() && method_len <= 32 => return Verdict::NeedMore,
        Some(b' ') if method_len > 0 => {}
        _ => return opaque,
    }
    if line.iter().any(|b| *b == b'\n' || *b == 0) {
        return opaque;
    }
    match line_end {
        None => Verdict::NeedMore,
        Some(_) if line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0") => {
            Verdict::Is(Protocol::Http1)
        }
        Some(_) => opaque,
    }
}

/// What detection found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detection {
    /// The protocol is known (a stream that ends before it is decided is
    /// opaque).
    Is(Protocol),
    /// Nothing arrived within the timeout.
    Silent,
    /// The bytes so far could still begin HTTP or TLS, and no more came
    /// within the timeout, or the byte limit was reached.
    Undecided,
}

impl Detection {
    /// The protocol, taking what is not known for opaque TCP.
    pub fn or_opaque(self) -> Protocol {
        match self {
            Self::Is(protocol) => protocol,
            Self::Silent | Self::Undecided => Protocol::Opaque,
        }
    }
}

/// Reads until the protocol is known, `timeout` passes or `max_bytes` are
/// read. Returns what was found and the stream with the bytes read put
/// back.
pub async fn detect<I: AsyncRead + Unpin>(
    io: I,
    timeout: Duration,
    max_bytes: usize,
) -> io::Result<(Detection, Prefixed<I>)> {
    detect_after(BytesMut::with_capacity(1024), io, timeout, max_bytes).await
}

/// [`detect`], with `read` the first bytes already taken from `io`.
pub async fn detect_after<I: AsyncRead + Unpin>(
    mut read: BytesMut,
    mut io: I,
    timeout: Duration,
    max_bytes: usize,
) -> io::Result<(Detection, Prefixed<I>)> {
    let reading = async {
        loop {
            if let Verdict::Is(protocol) = classify(&read) {
                return Ok::<_, io::Error>(Detection::Is(protocol));
            }
            if read.len() >= max_bytes {
                return Ok(Detection::Undecided);
            }
            if io.read_buf(&mut read).await? == 0 {
                return Ok(Detection::Is(Protocol::Opaque));
            }
        }
    };
    let detection = match tokio::time::timeout(timeout, reading).await {
        Ok(result) => result?,
        Err(_) if read.is_empty() => Detection::Silent,
        Err(_) => Detection::Undecided,
    };
    Ok((detection, Prefixed::new(read, io)))
}

/// The server name of a ClientHello, if the prefix holds the whole hello
/// and it names one.
pub fn client_hello_sni(prefix: &[u8]) -> Option<String> {
    let mut record = prefix.get(5..)?;
    let length = usize::from(u16::from_be_bytes([*prefix.get(3)?, *prefix.get(4)?]));
    record = record.get(..length.min(record.len()))?;
    // Handshake header: type (1), length (3); then version (2), random (32).
    let mut hello = record.get(4 + 2 + 32..)?;
    let take = |data: &mut &[u8], n: usize| -> Option<Vec<u8>> {
        let (head, rest) = (data.get(..n)?.to_vec(), data.get(n..)?);
        *data = rest;
        Some(head)
    };
    let session_len = usize::from(*take(&mut hello, 1)?.first()?);
    take(&mut hello, session_len)?;
    let suites = take(&mut hello, 2)?;
    take(
        &mut hello,
        usize::from(u16::from_be_bytes([suites[0], suites[1]])),
    )?;
    let compression_len = usize::from(*take(&mut hello, 1)?.first()?);
    take(&mut hello, compression_len)?;
    let ext_len = take(&mut hello, 2)?;
    let mut extensions = take(
        &mut hello,
        usize::from(u16::from_be_bytes([ext_len[0], ext_len[1]])),
    )?;
    let mut extensions = extensions.as_mut_slice() as &[u8];
    while !extensions.is_empty() {
        let kind = take(&mut extensions, 2)?;
        let len = take(&mut extensions, 2)?;
        let mut body = take(
            &mut extensions,
            usize::from(u16::from_be_bytes([len[0], len[1]])),
        )?;
        if kind == [0, 0] {
            // server_name: list length (2), then entries of type (1),
            // length (2), name.
            let mut list = body.as_mut_slice() as &[u8];
            take(&mut list, 2)?;
            while !list.is_empty() {
                let kind = *take(&mut list, 1)?.first()?;
                let len = take(&mut list, 2)?;
                let name = take(&mut list, usize::from(u16::from_be_bytes([len[0], len[1]])))?;
                if kind == 0 {
                    return String::from_utf8(name).ok();
                }
            }
        }
    }
    None
}

/// A stream whose first bytes were already read: they are read again first,
/// and once they have been, their buffer is given back (a connection lives
/// long after its first bytes: an idle HTTP/1.1 connection would otherwise
/// hold its detection buffer, 1 KiB or more, for its whole life).
#[derive(Debug)]
pub struct Prefixed<I> {
    prefix: BytesMut,
    inner: I,
}

impl<I> Prefixed<I> {
    /// `prefix`, then `inner`.
    pub fn new(prefix: BytesMut, inner: I) -> Self {
        Self { prefix, inner }
    }

    /// The bytes not yet read again.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The bytes not yet read again, and the underlying stream.
    pub fn into_parts(self) -> (BytesMut, I) {
        (self.prefix, self.inner)
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                self.prefix = BytesMut::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_prefix_read_again_gives_its_buffer_back() {
        use tokio::io::AsyncReadExt;
        let (client, server) = tokio::io::duplex(64);
        drop(client);
        let mut prefix = BytesMut::with_capacity(1024);
        prefix.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let mut io = Prefixed::new(prefix, server);
        let mut first = [0u8; 4];
        io.read_exact(&mut first).await.expect("part of the prefix");
        assert!(io.prefix.capacity() > 0, "still being read again");
        let mut rest = Vec::new();
        io.read_to_end(&mut rest).await.expect("the rest");
        assert_eq!(rest, b"/ HTTP/1.1\r\n");
        assert_eq!(io.prefix.capacity(), 0, "the buffer was given back");
    }

    #[test]
    fn each_protocol_is_told_from_its_first_bytes() {
        let cases: [(&[u8], Protocol); 8] = [
            (b"GET / HTTP/1.1\r\nhost: x\r\n", Protocol::Http1),
            (b"POST /a?b=c HTTP/1.0\r\n", Protocol::Http1),
            (H2_PREFACE, Protocol::Http2),
            (&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01], Protocol::Tls),
            (b"\x00\x00\x00\x0bSSH-2.0", Protocol::Opaque),
            (b"SSH-2.0-OpenSSH_9.2\r\n", Protocol::Opaque),
            (b"GET / SPDY/3\r\n", Protocol::Opaque),
            // A Redis inline command looks like a method and a target, but
            // its line does not end in an HTTP version.
            (b"SET key value\r\n", Protocol::Opaque),
        ];
        for (prefix, protocol) in cases {
            assert_eq!(
                classify(prefix),
                Verdict::Is(protocol),
                "{:?}",
                String::from_utf8_lossy(prefix)
            );
        }
    }

    #[test]
    fn partial_prefixes_wait_for_more() {
        assert_eq!(classify(b""), Verdict::NeedMore);
        assert_eq!(classify(b"GE"), Verdict::NeedMore);
        assert_eq!(classify(b"GET /index.html HTTP/1"), Verdict::NeedMore);
        assert_eq!(classify(b"PRI * HTTP/2"), Verdict::NeedMore);
        assert_eq!(classify(&[0x16, 0x03]), Verdict::NeedMore);
    }

    #[tokio::test]
    async fn detection_keeps_the_bytes_and_says_why_it_stopped_undecided() {
        let (mut client, server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"GET / HTTP/1.1\r\n")
            .await
            .expect("write");
        let (detection, mut io) = detect(server, Duration::from_secs(10), MAX_DETECT_BYTES)
            .await
            .expect("detect");
        assert_eq!(detection, Detection::Is(Protocol::Http1));
        let mut replay = vec![0; 16];
        io.read_exact(&mut replay).await.expect("replay");
        assert_eq!(replay, b"GET / HTTP/1.1\r\n");

        tokio::time::pause();
        let (_silent, server) = tokio::io::duplex(64);
        let (detection, _) = detect(server, Duration::from_secs(10), MAX_DETECT_BYTES)
            .await
            .expect("detect");
        assert_eq!(detection, Detection::Silent, "nothing within 10 s");

        let (mut stalled, server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut stalled, b"GET /")
            .await
            .expect("write");
        let (detection, io) = detect(server, Duration::from_secs(10), MAX_DETECT_BYTES)
            .await
            .expect("detect");
        assert_eq!(detection, Detection::Undecided, "half a request line");
        assert_eq!(io.prefix(), b"GET /");

        let (mut long, server) = tokio::io::duplex(64 * 1024);
        let line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_DETECT_BYTES));
        tokio::io::AsyncWriteExt::write_all(&mut long, line.as_bytes())
            .await
            .expect("write");
        let (detection, _) = detect(server, Duration::from_secs(10), MAX_DETECT_BYTES)
            .await
            .expect("detect");
        assert_eq!(
            detection,
            Detection::Undecided,
            "a request line longer than the limit"
        );

        let (mut closed, server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut closed, b"GE")
            .await
            .expect("write");
        drop(closed);
        let (detection, _) = detect(server, Duration::from_secs(10), MAX_DETECT_BYTES)
            .await
            .expect("detect");
        assert_eq!(
            detection,
            Detection::Is(Protocol::Opaque),
            "a stream that ends undecided"
        );
    }

    #[tokio::test]
    async fn a_real_client_hello_gives_its_server_name() {
        // Make a real ClientHello with rustls and read its SNI back.
        let roots = rustls::RootCertStore::empty();
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from(
            "web.shop.serviceaccount.identity.linkerd.cluster.local",
        )
        .expect("name");
        let mut conn =
            rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("client");
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).expect("hello");
        assert_eq!(classify(&hello), Verdict::Is(Protocol::Tls));
        assert_eq!(
            client_hello_sni(&hello).as_deref(),
            Some("web.shop.serviceaccount.identity.linkerd.cluster.local")
        );
        assert_eq!(client_hello_sni(&hello[..20]), None, "a truncated hello");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4096))]

            /// Any first bytes are classified, and searched for a server
            /// name, without a panic.
            #[test]
            fn any_bytes_are_classified(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
                let _ = classify(&bytes);
                let _ = client_hello_sni(&bytes);
            }

            /// A TLS record header followed by anything is still read
            /// safely for its server name (lengths that lie included).
            #[test]
            fn a_client_hello_with_lying_lengths_is_read_safely(body in prop::collection::vec(any::<u8>(), 0..600), len in any::<u16>()) {
                let mut hello = vec![0x16, 0x03, 0x01];
                hello.extend_from_slice(&len.to_be_bytes());
                hello.push(0x01);
                hello.extend_from_slice(&body);
                prop_assert_eq!(classify(&hello), Verdict::Is(Protocol::Tls));
                let _ = client_hello_sni(&hello);
            }

            /// A request line is HTTP/1 once whole, and undecided (never
            /// opaque) while it is still arriving.
            #[test]
            fn a_request_line_is_http1_and_undecided_until_whole(method in "[A-Z]{1,10}", path in "/[A-Za-z0-9/._~%?=&-]{0,300}", minor in 0..2u8) {
                let line = format!("{method} {path} HTTP/1.{minor}\r\n");
                prop_assert_eq!(classify(line.as_bytes()), Verdict::Is(Protocol::Http1));
                for cut in 1..line.len() - 1 {
                    prop_assert_eq!(classify(&line.as_bytes()[..cut]), Verdict::NeedMore, "{:?}", &line[..cut]);
                }
            }
        }
    }
}
