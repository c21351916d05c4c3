//! The inbound side's decisions about a connection, as pure functions:
//! what its first bytes mean for how it is handled, and what to do inside
//! mesh TLS once it is terminated.

use crate::detect::Protocol;

/// What to do with a connection once its first bytes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnDetected {
    /// Mesh TLS for this workload: terminate it.
    Terminate,
    /// Proxy it as it came, with no client identity.
    Plain {
        /// How: HTTP is served request by request; anything else
        /// (including TLS that is not ours) as opaque TCP.
        protocol: Protocol,
        /// The `no_tls_reason` label.
        no_tls_reason: &'static str,
    },
    /// Close it: a connection straight to the inbound port (not redirected)
    /// must be mesh TLS.
    Refuse,
}

/// `protocol` as detected; `ours`: a ClientHello for this workload's
/// identity while it has a certificate; `direct`: connected to the
/// inbound port itself; `opaque_port`: the port is configured opaque.
pub(crate) fn on_detected(
    protocol: Protocol,
    ours: bool,
    direct: bool,
    opaque_port: bool,
) -> OnDetected {
    if ours {
        return OnDetected::Terminate;
    }
    if direct {
        return OnDetected::Refuse;
    }
    let no_tls_reason = if protocol == Protocol::Tls {
        "passthru"
    } else {
        "no_tls_from_remote"
    };
    let opaque = matches!(protocol, Protocol::Tls | Protocol::Opaque) || opaque_port;
    OnDetected::Plain {
        protocol: if opaque { Protocol::Opaque } else { protocol },
        no_tls_reason,
    }
}

/// What to do inside mesh TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnTls {
    /// Read a transport header, which names the target.
    TransportHeader,
    /// Relay opaque TCP to the original destination.
    Opaque,
    /// Detect the protocol inside.
    Detect,
    /// Close it.
    Refuse,
}

/// `client_identity`: the client presented a certificate; `header`: it
/// negotiated the transport-header ALPN. Only a proxy speaks the transport
/// header, and a proxy always presents its certificate: a client that
/// offers the header without one is refused, redirected or not.
pub(crate) fn on_tls(
    client_identity: bool,
    header: bool,
    direct: bool,
    opaque_port: bool,
) -> OnTls {
    if (direct || header) && !(client_identity && header) {
        return OnTls::Refuse;
    }
    if header {
        OnTls::TransportHeader
    } else if opaque_port {
        OnTls::Opaque
    } else {
        OnTls::Detect
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesh_tls_for_this_workload_is_terminated_and_anything_else_relayed_or_refused() {
        assert_eq!(
            on_detected(Protocol::Tls, true, true, false),
            OnDetected::Terminate
        );
        assert_eq!(
            on_detected(Protocol::Http1, false, true, false),
            OnDetected::Refuse,
            "plain text straight to the inbound port"
        );
        assert_eq!(
            on_detected(Protocol::Tls, false, true, false),
            OnDetected::Refuse,
            "TLS for another name straight to the inbound port"
        );
        assert_eq!(
            on_detected(Protocol::Http1, false, false, false),
            OnDetected::Plain {
                protocol: Protocol::Http1,
                no_tls_reason: "no_tls_from_remote"
            }
        );
        assert_eq!(
            on_detected(Protocol::Http2, false, false, true),
            OnDetected::Plain {
                protocol: Protocol::Opaque,
                no_tls_reason: "no_tls_from_remote"
            },
            "an opaque port is never parsed"
        );
        assert_eq!(
            on_detected(Protocol::Tls, false, false, false),
            OnDetected::Plain {
                protocol: Protocol::Opaque,
                no_tls_reason: "passthru"
            },
            "the application's own TLS passes through untouched"
        );
    }

    #[test]
    fn inside_mesh_tls_a_transport_header_wins_and_direct_clients_must_prove_themselves() {
        assert_eq!(on_tls(true, true, true, false), OnTls::TransportHeader);
        assert_eq!(
            on_tls(false, true, true, false),
            OnTls::Refuse,
            "no client certificate"
        );
        assert_eq!(
            on_tls(true, false, true, false),
            OnTls::Refuse,
            "no transport header"
        );
        assert_eq!(
            on_tls(false, true, false, false),
            OnTls::Refuse,
            "a transport header without a client certificate, on a redirected port"
        );
        assert_eq!(on_tls(false, false, false, true), OnTls::Opaque);
        assert_eq!(on_tls(true, false, false, false), OnTls::Detect);
    }
}
