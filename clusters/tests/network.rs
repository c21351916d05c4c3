//! The network of a cluster pair, built for real: node namespaces reachable
//! from the host, a WAN between them through `mesh-node wan` whose delay,
//! cut and restore act on real TCP connections, and a teardown that leaves
//! no namespace behind.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mesh_clusters::netns;
use mesh_clusters::topology::{self, PairNet, Side};
use mesh_clusters::wan;
use tokio::time::Instant;

/// Starts a TCP echo-once server inside `ns` on `addr` with the host's
/// python (present on every machine we run on), returning its child.
async fn listener_in(ns: &str, addr: SocketAddr) -> tokio::process::Child {
    let script = format!(
        "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('{}',{}))\ns.listen(16)\nwhile True:\n c,_=s.accept()\n c.sendall(b'pong')\n c.close()\n",
        addr.ip(),
        addr.port()
    );
    let child = tokio::process::Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", &script])
        .kill_on_drop(true)
        .spawn()
        .expect("python3 in the namespace");
    tokio::time::sleep(Duration::from_millis(300)).await;
    child
}

/// Connects from inside `ns` to `addr` and reads the answer, with a timeout.
async fn call_from(ns: &str, addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    let script = format!(
        "import socket,sys\ns=socket.create_connection(('{}',{}),timeout={})\nsys.stdout.write(s.recv(16).decode())\n",
        addr.ip(),
        addr.port(),
        timeout.as_secs_f64()
    );
    let out = tokio::process::Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", &script])
        .output()
        .await
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test]
async fn the_wan_carries_delays_cuts_and_heals_and_teardown_leaves_nothing() {
    let plan = topology::claim_slot(false).await.expect("a free slot");
    let prefix = plan.prefix.clone();
    let result = exercise(&plan).await;
    topology::teardown(&plan).await;
    assert!(
        netns::list_with_prefix(&prefix).is_empty(),
        "namespaces left: {:?}",
        netns::list_with_prefix(&prefix)
    );
    for net in &plan.clusters {
        assert!(
            !std::path::Path::new("/sys/class/net")
                .join(&net.host_if)
                .exists(),
            "host link {} left behind",
            net.host_if
        );
    }
    result.expect("network scenario");
}

async fn exercise(plan: &PairNet) -> anyhow::Result<()> {
    topology::build(plan).await?;
    let dir = tempfile::tempdir()?;
    let control: PathBuf = dir.path().join("wan.sock");
    let (west, east) = (plan.cluster(Side::West), plan.cluster(Side::East));
    let mut forwarder = tokio::process::Command::new(env!("CARGO_BIN_EXE_mesh-node"))
        .args([
            "wan",
            "--west-netns",
            &west.netns,
            "--east-netns",
            &east.netns,
        ])
        .arg("--control")
        .arg(&control)
        .kill_on_drop(true)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !control.exists() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the forwarder never opened its socket"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    topology::configure_wan(plan).await?;

    // The host reaches each node on its link.
    let node_listener = listener_in(&west.netns, SocketAddr::new(west.node_ip.into(), 7001)).await;
    let got = tokio::net::TcpStream::connect(SocketAddr::new(west.node_ip.into(), 7001)).await;
    anyhow::ensure!(got.is_ok(), "host → west node: {got:?}");
    drop(node_listener);

    // West's node reaches east's node over the WAN.
    let east_addr = SocketAddr::new(east.wan_ip.into(), 7002);
    let _east_listener = listener_in(&east.netns, east_addr).await;
    let answer = call_from(&west.netns, east_addr, Duration::from_secs(5)).await;
    anyhow::ensure!(answer.as_deref() == Ok("pong"), "west → east: {answer:?}");

    // A 100 ms one-way delay makes a connection take at least one round trip
    // of 200 ms (a lower bound the link guarantees, not a timing guess).
    wan::control(&control, "set delay=100ms").await?;
    let started = Instant::now();
    let answer = call_from(&west.netns, east_addr, Duration::from_secs(5)).await;
    anyhow::ensure!(answer.as_deref() == Ok("pong"), "with delay: {answer:?}");
    anyhow::ensure!(
        started.elapsed() >= Duration::from_millis(200),
        "a delayed link answered in {:?}",
        started.elapsed()
    );
    wan::control(&control, "clear").await?;

    // Cut: nothing gets through. Restore: it heals.
    wan::control(&control, "cut").await?;
    let cut = call_from(&west.netns, east_addr, Duration::from_secs(1)).await;
    anyhow::ensure!(cut.is_err(), "a cut link carried a connection: {cut:?}");
    wan::control(&control, "restore").await?;
    let healed = call_from(&west.netns, east_addr, Duration::from_secs(5)).await;
    anyhow::ensure!(healed.as_deref() == Ok("pong"), "after restore: {healed:?}");

    // A bad command is refused with the reason.
    let err = wan::control(&control, "set loss=7")
        .await
        .expect_err("refused");
    anyhow::ensure!(err.to_string().contains("loss"), "{err}");
    forwarder.kill().await?;
    Ok(())
}
