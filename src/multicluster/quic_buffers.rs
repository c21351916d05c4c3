//! `mesh multicluster check`'s look at the QUIC socket buffers the kernel
//! granted this cluster's gateway pods, as each pod's proxy reports them
//! on its metrics page (read through the API server).
//!
//! A node whose `net.core.rmem_max` is the usual default grants a socket
//! 416 KiB where the proxy wants 8 MiB: a fast transfer between clusters
//! then loses packets in the socket whenever the proxy is busy for a few
//! milliseconds, and QUIC takes the losses for congestion. Nothing else
//! shows it (the link is clean, the proxy is healthy), so the check says
//! what the gateway got and which node setting to raise. A warning, not an
//! error: traffic flows, slower.

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use mesh_api::labels::MULTICLUSTER_NAMESPACE as NS;
use mesh_api::metrics_text::{label, samples};
use mesh_api::ports::QUIC_SOCKET_BUFFER_BYTES;

use crate::check::Waiter;
use crate::check::report::{Outcome, Problem};

/// The check's hint.
const HINT: &str = "raise the nodes' socket buffer limits (as root on each node, or through your \
     node image): `sysctl -w net.core.rmem_max=4194304 net.core.wmem_max=4194304`";

/// What one gateway pod's proxy says of its inbound QUIC socket: a line
/// for the report when it got less than it wants or says nothing.
fn shortfall(pod: &str, page: &str) -> Option<String> {
    let granted = |metric: &str| {
        samples(page, metric)
            .find(|(labels, _)| label(labels, "direction") == Some("inbound"))
            .map(|(_, value)| value)
    };
    let receive = granted("quic_socket_receive_buffer_bytes");
    let send = granted("quic_socket_send_buffer_bytes");
    let (Some(receive), Some(send)) = (receive, send) else {
        return Some(format!(
            "{pod}: its proxy reports no QUIC socket (quic_socket_*_buffer_bytes): an older proxy, \
             or QUIC not listening"
        ));
    };
    let wanted = QUIC_SOCKET_BUFFER_BYTES as f64;
    let kib = |bytes: f64| (bytes / 1024.0).round();
    (receive < wanted || send < wanted).then(|| {
        format!(
            "{pod}: the kernel granted its QUIC socket {} KiB to receive and {} KiB to send, \
             of {} KiB wanted: transfers from linked clusters lose packets in it",
            kib(receive),
            kib(send),
            kib(wanted)
        )
    })
}

/// The outcome for the pages read: a warning naming every pod short of
/// buffer or unread; nothing seen is not a pass.
fn judge(pages: &[(String, Result<String, String>)]) -> Outcome {
    if pages.is_empty() {
        return Err(Problem::warning(
            format!("no running gateway pod in {NS} to ask"),
            "install the gateway: `mesh multicluster install | kubectl apply -f -`",
        ));
    }
    let problems: Vec<String> = pages
        .iter()
        .filter_map(|(pod, page)| match page {
            Ok(text) => shortfall(pod, text),
            Err(e) => Some(format!("{pod}: {e}")),
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Problem::warning(problems.join("\n"), HINT))
    }
}

/// Reads every running gateway pod's metrics page (the proxy's admin
/// port, through the API server) and judges it.
pub async fn gateway_quic_buffers(client: &kube::Client, waiter: &Waiter) -> Outcome {
    let pods = match Api::<Pod>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels(&format!("app={}", super::install::GATEWAY)))
        .await
    {
        Ok(list) => list.items,
        Err(e) => {
            return Err(Problem::warning(
                format!("listing the gateway's pods in {NS}: {e}"),
                "",
            ));
        }
    };
    let pages: Vec<(String, Result<String, String>)> =
        crate::check::data_plane::metrics_pages(client, &pods, waiter)
            .await
            .into_iter()
            .map(|(pod, page)| (pod.metadata.name.clone().unwrap_or_default(), page))
            .collect();
    judge(&pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(receive: usize, send: usize) -> String {
        format!(
            "# TYPE quic_socket_receive_buffer_bytes gauge\n\
             quic_socket_receive_buffer_bytes{{direction=\"inbound\"}} {receive}\n\
             quic_socket_receive_buffer_bytes{{direction=\"outbound\"}} 8388608\n\
             quic_socket_send_buffer_bytes{{direction=\"inbound\"}} {send}\n"
        )
    }

    /// A gateway granted what it wants passes; one on a node with the
    /// default limits is named with what it got; a pod whose page says
    /// nothing, or could not be read, is never a pass.
    #[test]
    fn the_gateways_own_buffers_decide_and_silence_is_not_a_pass() {
        let full = QUIC_SOCKET_BUFFER_BYTES;
        let ok = |name: &str, text: String| (name.to_owned(), Ok(text));
        assert!(judge(&[ok("gw-a", page(full, full))]).is_ok());

        let short = judge(&[
            ok("gw-a", page(full, full)),
            ok("gw-b", page(425_984, full)),
        ])
        .expect_err("a short pod");
        let text = format!("{short:?}");
        assert!(text.contains("gw-b") && text.contains("416 KiB"), "{text}");
        assert!(!text.contains("gw-a"), "{text}");

        for pages in [
            vec![ok("gw-a", "process_cpu_seconds_total 1\n".to_owned())],
            vec![("gw-a".to_owned(), Err("unreadable".to_owned()))],
            vec![],
        ] {
            assert!(judge(&pages).is_err(), "{pages:?}");
        }
    }
}
