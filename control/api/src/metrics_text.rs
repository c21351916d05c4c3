//! Reading the Prometheus text format the proxies and controllers serve:
//! the samples of one metric, each with its label text, for the CLI and
//! tests that read a proxy's or the mirror's metrics page.

/// The samples of `metric` in `page`: `(labels, value)` with `labels` the
/// text between the braces (`""` when there are none). Other metrics whose
/// names merely start with `metric` are not included.
pub fn samples<'a>(page: &'a str, metric: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    page.lines().filter_map(move |line| {
        let rest = line.strip_prefix(metric)?;
        let (labels, value) = match rest.strip_prefix('{') {
            Some(labelled) => labelled.rsplit_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        Some((labels, value.trim().parse().ok()?))
    })
}

/// The value of label `name` in a sample's label text
/// (`direction="outbound",dst_service="web"`). Label values the proxies
/// write never hold a quote or a comma, so no unescaping is needed.
pub fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key.trim() == name).then(|| value.trim().trim_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_by_name() {
        let labels = "direction=\"outbound\",dst_service=\"web\",service=\"x\"";
        assert_eq!(label(labels, "service"), Some("x"));
        assert_eq!(label(labels, "dst_service"), Some("web"));
        assert_eq!(label(labels, "missing"), None);
    }

    #[test]
    fn samples_of_one_metric_with_their_labels() {
        let page = "# HELP x\n\
                    request_total{direction=\"inbound\",tls=\"true\"} 3\n\
                    request_totals{direction=\"inbound\"} 100\n\
                    identity_cert_expiration_timestamp_seconds 1790000000\n";
        let requests: Vec<_> = samples(page, "request_total").collect();
        assert_eq!(requests, [("direction=\"inbound\",tls=\"true\"", 3.0)]);
        assert_eq!(
            samples(page, "identity_cert_expiration_timestamp_seconds").next(),
            Some(("", 1_790_000_000.0))
        );
        assert_eq!(samples(page, "response_total").count(), 0);
    }
}
