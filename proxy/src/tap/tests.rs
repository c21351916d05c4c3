use http_body_util::BodyExt;
use tokio_stream::StreamExt;

use super::*;

fn request(path: &str) -> http::Request<()> {
    http::Request::get(format!("http://web.test.svc.cluster.local{path}"))
        .body(())
        .expect("request")
}

fn observe(taps: &Taps, req: &http::Request<()>) -> Option<Tapped> {
    let source_labels = vec![
        ("tls", "no_identity".to_owned()),
        ("no_tls_reason", "no_tls_from_remote".to_owned()),
    ];
    taps.observe(&Observed {
        direction: Direction::Inbound,
        source: "10.0.0.1:40000".parse().expect("addr"),
        destination: "10.0.0.2:8080".parse().expect("addr"),
        source_labels: &source_labels,
        destination_labels: &[],
        route_labels: &[],
        request: req.into(),
    })
}

#[tokio::test]
async fn nothing_is_built_while_no_one_taps_and_a_tap_ends_with_its_reader() {
    let taps = Taps::default();
    assert!(observe(&taps, &request("/")).is_none());
    let subscription = taps.subscribe(matcher::Match::All(Vec::new()), 10);
    assert!(taps.is_active());
    drop(subscription);
    assert!(!taps.is_active(), "the reader left: the tap is gone");
    assert!(observe(&taps, &request("/")).is_none());
}

#[tokio::test]
async fn a_tapped_request_reports_its_plaintext_caller_and_how_its_body_ended() {
    let taps = Taps::default();
    let mut subscription = taps.subscribe(matcher::Match::All(Vec::new()), 1);
    let tapped = observe(&taps, &request("/x")).expect("tapped");
    // Its limit taken, the tap takes no more.
    assert!(observe(&taps, &request("/y")).is_none());
    assert!(!taps.is_active());
    let response = tapped.response(http::Response::new(crate::endpoint::full("hello")));
    response.into_body().collect().await.expect("body");
    let events: Vec<_> = (&mut subscription)
        .map(|e| e.expect("event"))
        .collect()
        .await;
    assert_eq!(events.len(), 3, "{events:?}");
    let tls = events[0]
        .source_meta
        .as_ref()
        .and_then(|m| m.labels.get("tls"))
        .cloned();
    assert_eq!(
        tls.as_deref(),
        Some("no_tls_from_remote"),
        "Linkerd's tap shows the reason"
    );
    match &events[2].event {
        Some(tap_event::Event::Http(tap_event::Http {
            event: Some(tap_event::http::Event::ResponseEnd(end)),
        })) => assert_eq!(end.response_bytes, 5),
        other => panic!("not a ResponseEnd: {other:?}"),
    }
}

#[tokio::test]
async fn a_tap_that_does_not_read_loses_events_not_memory() {
    let taps = Taps::default();
    let _subscription = taps.subscribe(matcher::Match::All(Vec::new()), u32::MAX);
    // The attack: a tap that never reads while the proxy serves far more
    // requests than its buffer holds.
    for _ in 0..EVENT_BUFFER * 2 {
        let tapped = observe(&taps, &request("/")).expect("tapped");
        drop(tapped.response(http::Response::new(crate::endpoint::full(""))));
    }
    // Three events a request, at most EVENT_BUFFER kept.
    assert_eq!(
        taps.inner.dropped.get(),
        (EVENT_BUFFER * 2 * 3 - EVENT_BUFFER) as u64
    );
}
