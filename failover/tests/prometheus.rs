//! The Prometheus path against a real Prometheus server (built by
//! scripts/setup.sh into ~/.cache/mesh/prometheus-<version>) scraping a
//! real client proxy (the proxy's own test harness: proxy processes in
//! network namespaces, a mock destination speaking the real gRPC API):
//! what the controller reads with PromQL is what the proxies' metrics pages
//! say: per backend and per client, and what the server proxy served per
//! client identity.

use mesh_test_util as support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use linkerd2_proxy_api::destination::DestinationProfile;
use mesh_failover::prometheus::Prometheus;
use mesh_failover::signals;
use support::*;

/// Prometheus in the client pod's network namespace, scraping its proxy
/// and the server pod's every second, with the `namespace` label Linkerd's
/// scrape configuration gives a pod in Kubernetes namespace `test`.
fn start_prometheus(netns_path: &str) -> mesh_clusters::prometheus::Server {
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: linkerd-proxy\n    \
         static_configs:\n      - targets: ['127.0.0.1:4191', '{SERVER_IP}:4191']\n        \
         labels: {{namespace: test}}\n"
    );
    mesh_clusters::prometheus::Server::start(
        &config,
        "127.0.0.1:9090".parse().expect("address"),
        Some(netns_path),
    )
    .unwrap_or_else(|e| panic!("this test needs a Prometheus server: {e:#}"))
}

#[tokio::test]
async fn prometheus_reads_what_the_proxies_metrics_pages_say() {
    let mesh = Mesh::start().await;
    let mut endpoints = meshed(&[(8080, "web-1")]);
    endpoints[0].metric_labels.extend([
        ("service".to_owned(), "web".to_owned()),
        ("namespace".to_owned(), "test".to_owned()),
    ]);
    mesh.web(DestinationProfile::default(), endpoints);
    let app = mesh.app("web-1", 8080).await;
    let statuses = load(&mesh, "/", 30, 3).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    app.failing.store(true, Ordering::SeqCst);
    let statuses = load(&mesh, "/", 10, 2).await;
    assert!(statuses.iter().all(|s| *s == 500), "{statuses:?}");

    let page = mesh.client_metrics().await;
    let (from_page, ignored) = signals::from_metrics_page(&page);
    assert_eq!(ignored, signals::Ignored::default(), "{page}");
    let backend = ("test".to_owned(), "web".to_owned());
    assert_eq!(
        (from_page[&backend].success, from_page[&backend].failure),
        (30.0, 10.0),
        "the proxy counts what web answered: {page}"
    );

    let server_page = mesh.server_metrics().await;
    let (served_page, ignored) = signals::served_from_metrics_page(&server_page);
    assert_eq!(ignored, signals::Ignored::default(), "{server_page}");
    assert_eq!(
        (
            served_page[CLIENT_ID].success,
            served_page[CLIENT_ID].failure
        ),
        (30.0, 10.0),
        "the server proxy counts what it served the client's identity: {server_page}"
    );

    let _server = start_prometheus(&mesh.client.path());
    let server_instance = format!("{SERVER_IP}:4191");
    let (from_prometheus, served, scraped) = mesh
        .client
        .run({
            let server_instance = server_instance.clone();
            async move {
                let prometheus =
                    Prometheus::new("http://127.0.0.1:9090", Duration::from_secs(2)).expect("url");
                let mut last = Err(mesh_failover::error::Error::Prometheus(
                    "not asked yet".into(),
                ));
                for _ in 0..60 {
                    let mut ignored = signals::Ignored::default();
                    let read = async {
                        Ok::<_, mesh_failover::error::Error>((
                            prometheus.client_counts("test", &mut ignored).await?,
                            prometheus.served_counts("test", &mut ignored).await?,
                            prometheus.scraped("test").await?,
                        ))
                    };
                    last = read.await;
                    if let Ok((clients, served, _)) = &last
                        && clients
                            .values()
                            .any(|c| c.contains_key(&("test".to_owned(), "web".to_owned())))
                        && served.contains_key(&server_instance)
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                last
            }
        })
        .await
        .expect("Prometheus answers");
    let client = from_prometheus
        .get("127.0.0.1:4191")
        .unwrap_or_else(|| panic!("one client, the scraped proxy: {from_prometheus:?}"));
    assert_eq!(client[&backend], from_page[&backend]);
    let server = served
        .get(&server_instance)
        .unwrap_or_else(|| panic!("the server proxy's inbound counts: {served:?}"));
    assert_eq!(server[CLIENT_ID], served_page[CLIENT_ID]);
    for instance in ["127.0.0.1:4191", server_instance.as_str()] {
        assert!(
            scraped.iter().any(|s| s == instance),
            "{instance} is scraped: {scraped:?}"
        );
    }
}
