//! Attacks on the server pod, from the client pod past its proxy (see
//! [`crate::unmeshed_connect`]), shared by the proxy's flood test and
//! `flood-bench`: a real ClientHello to send before stalling, and an
//! HTTP/2 client that opens more streams than the server allows.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{CLIENT_ID, Ca, SERVER_IP, addr, unmeshed_connect};

/// The first flight of a real TLS client for `server_identity`: the
/// ClientHello record, as rustls writes it.
pub fn client_hello(server_identity: &str) -> Vec<u8> {
    let ca = Ca::new();
    let credentials = ca.credentials(CLIENT_ID);
    let config = credentials
        .client_config(&[b"http/1.1"])
        .expect("client config");
    let name = rustls_pki_types::ServerName::try_from(server_identity.to_owned()).expect("name");
    let mut connection = rustls::ClientConnection::new(config, name).expect("client");
    let mut hello = Vec::new();
    connection.write_tls(&mut hello).expect("hello");
    hello
}

/// One HTTP/2 HEADERS frame (END_STREAM, END_HEADERS) for `GET path` on
/// `stream`, its header block in HPACK without Huffman coding or indexing.
fn headers_frame(stream: u32, path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
    for (name_index, value) in [(4u8, path), (1u8, "web")] {
        // Literal without indexing, name by index (:path 4, :authority 1).
        block.push(name_index);
        block.push(u8::try_from(value.len()).expect("a short value"));
        block.extend_from_slice(value.as_bytes());
    }
    let len = u32::try_from(block.len()).expect("len");
    let mut frame = len.to_be_bytes()[1..].to_vec();
    frame.extend_from_slice(&[0x1, 0x5]);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(&block);
    frame
}

/// What the server said to a client that opened too many streams.
#[derive(Debug, Default)]
pub struct Pushback {
    /// Streams reset with REFUSED_STREAM.
    pub refused: usize,
    /// The error code of a GOAWAY, if one came.
    pub goaway: Option<u32>,
}

/// How many HEADERS frames the attacker writes at a time: the server
/// takes each batch in before the next arrives, so the streams it accepts
/// reach the application (written all at once, the streams past the
/// refusal threshold make h2 close the connection before any is served).
const STREAMS_PER_WRITE: usize = 100;

/// Opens `streams` streams (`GET path`) on one HTTP/2 connection to the
/// server pod's app port, without waiting for any and ignoring the
/// server's limit, in batches of [`STREAMS_PER_WRITE`]; reads the server's
/// frames until it closes or `hold` passes.
pub async fn open_streams(streams: u32, path: &'static str, hold: Duration) -> Pushback {
    let io = unmeshed_connect(addr(&format!("{SERVER_IP}:8080")))
        .await
        .expect("connect");
    let (mut reader, mut writer) = io.into_split();
    // Reads alongside the writes: once the server gives up on the
    // connection, the writes fail and what it said must already be read.
    let read = tokio::spawn(async move {
        let mut read = Vec::new();
        let _ = tokio::time::timeout(hold, reader.read_to_end(&mut read)).await;
        read
    });
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // empty SETTINGS
    let frames: Vec<Vec<u8>> = (0..streams)
        .map(|n| headers_frame(2 * n + 1, path))
        .collect();
    if writer.write_all(&preface).await.is_ok() {
        for batch in frames.chunks(STREAMS_PER_WRITE) {
            if writer.write_all(&batch.concat()).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let read = read.await.unwrap_or_default();
    drop(writer);
    let mut pushback = Pushback::default();
    let mut at = 0;
    while let Some(header) = read.get(at..at + 9) {
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let payload = read.get(at + 9..at + 9 + len).unwrap_or_default();
        let code_at = |from: usize| {
            payload
                .get(from..from + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        match header[3] {
            0x3 if code_at(0) == Some(0x7) => pushback.refused += 1,
            0x7 => pushback.goaway = code_at(4),
            _ => {}
        }
        at += 9 + len;
    }
    pushback
}

/// Opens `count` connections to the server pod's app port, sends each a
/// ClientHello for the server's identity ([`client_hello`]) and nothing
/// more; the connections that got that far, to hold open.
pub async fn stalled_handshakes(count: usize) -> Vec<tokio::net::TcpStream> {
    let hello = client_hello(crate::WEB_ID);
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        if let Ok(mut io) = unmeshed_connect(addr(&format!("{SERVER_IP}:8080"))).await
            && io.write_all(&hello).await.is_ok()
        {
            held.push(io);
        }
    }
    held
}
