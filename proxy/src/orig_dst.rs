//! Where a redirected connection was going: iptables' `REDIRECT` (set up by
//! `mesh-init`) sends a pod's connections to the proxy's listeners, and the
//! kernel keeps the original destination, which `SO_ORIGINAL_DST` (IPv4)
//! and `IP6T_SO_ORIGINAL_DST` (IPv6) return.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsFd;

use nix::sys::socket::getsockopt;
use nix::sys::socket::sockopt::{Ip6tOriginalDst, OriginalDst};

/// The original destination of an accepted, redirected connection. For a
/// connection that was not redirected, the kernel answers with the
/// listener's own address (or an error), which callers treat as "no
/// original destination".
pub fn original_dst(socket: &impl AsFd, local: SocketAddr) -> std::io::Result<SocketAddr> {
    match local {
        SocketAddr::V4(_) => {
            let raw = getsockopt(socket, OriginalDst)?;
            Ok(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(raw.sin_addr.s_addr)),
                u16::from_be(raw.sin_port),
            )))
        }
        SocketAddr::V6(_) => {
            let raw = getsockopt(socket, Ip6tOriginalDst)?;
            Ok(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(raw.sin6_addr.s6_addr),
                u16::from_be(raw.sin6_port),
                raw.sin6_flowinfo,
                raw.sin6_scope_id,
            )))
        }
    }
}
