//! `SO_ORIGINAL_DST` for real: in a network namespace of its own, an
//! iptables REDIRECT sends connections for port 8080 to a listener on 4140,
//! which reads where they were going.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::process::Command;

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} (scripts/setup.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn a_redirected_connection_reports_where_it_was_going() {
    let ns = Netns(format!("mesh-origdst-{}", std::process::id()));
    run("ip", &["netns", "add", &ns.0]);
    run("ip", &["-n", &ns.0, "link", "set", "lo", "up"]);
    run(
        "ip",
        &[
            "netns",
            "exec",
            &ns.0,
            "iptables",
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
    let path = format!("/run/netns/{}", ns.0);
    let seen = std::thread::spawn(move || {
        let netns = std::fs::File::open(&path).expect("the namespace");
        nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
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
    })
    .join()
    .expect("the namespace thread");
    assert_eq!(seen, "127.0.0.1:8080".parse::<SocketAddr>().expect("addr"));
}
