//! `SO_ORIGINAL_DST` for real: in a network namespace of its own, an
//! iptables REDIRECT sends connections for port 8080 to a listener on 4140,
//! which reads where they were going.

use mesh_test_util as support;

use std::net::SocketAddr;

use support::Netns;

#[tokio::test]
async fn a_redirected_connection_reports_where_it_was_going() {
    let ns = Netns::new("origdst");
    ns.exec(
        "iptables",
        &[
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "--dport",
            "8080",
            "-j",
            "REDIRECT",
            "--to-ports",
            "4140",
        ],
    );
    let seen = ns
        .run(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:4140")
                .await
                .expect("listen on 4140");
            let client = tokio::net::TcpStream::connect("127.0.0.1:8080");
            let (client, accepted) = tokio::join!(client, listener.accept());
            let _client = client.expect("connect to 8080 (redirected)");
            let (stream, _) = accepted.expect("accept");
            let local = stream.local_addr().expect("local");
            assert_eq!(local.port(), 4140, "the connection arrived at the proxy");
            mesh_proxy::orig_dst::original_dst(&stream, local).expect("SO_ORIGINAL_DST")
        })
        .await;
    assert_eq!(seen, "127.0.0.1:8080".parse::<SocketAddr>().expect("addr"));
}
