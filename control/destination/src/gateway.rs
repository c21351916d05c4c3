//! Lookups made by a multicluster gateway, answered only for what the
//! gateway exports.
//!
//! A gateway's proxy says it is one in its context token
//! (`"gatewayExports": <label selector>`, which the proxy always sends in
//! gateway mode, Linkerd's `mirror.linkerd.io/exported=true` unless the
//! gateway was installed with another selector). The destination service
//! then answers only for Services whose labels match that selector (and for
//! the pods of those that are headless, by host name), and refuses
//! anything else with `PERMISSION_DENIED`: an IP address, an unlabelled
//! Service, and whatever the labels say, the API server's Service
//! (`default/kubernetes`) and the control plane's namespace. An answer
//! stream ends with the same refusal once its Service stops matching
//! (unlabelled or deleted), so the gateway stops forwarding to it.
//!
//! A client can only narrow its own answers with this field, so the token
//! needs no authentication: the gateway enforces, the destination service
//! answers its question.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;
use tonic::Status;

use crate::index::model::Key;
use crate::index::{LookupKey, ServiceLabels};

/// The context token's field that marks a gateway's lookup.
pub const CONTEXT_FIELD: &str = "gatewayExports";

/// What a gateway exports: the Services its selector matches.
#[derive(Debug, Clone)]
pub struct Exports {
    selector: Selector,
    control_namespace: String,
}

impl Exports {
    /// The exports a lookup's context token declares: `None` when it is not
    /// a gateway's (no [`CONTEXT_FIELD`], or a token that is not JSON, as
    /// Linkerd ignores such tokens).
    pub fn from_context(token: &str, control_namespace: &str) -> Result<Option<Self>, Status> {
        let Ok(serde_json::Value::Object(mut context)) = serde_json::from_str(token) else {
            return Ok(None);
        };
        let Some(field) = context.remove(CONTEXT_FIELD) else {
            return Ok(None);
        };
        let invalid = |why: String| {
            Status::invalid_argument(format!("context token field {CONTEXT_FIELD}: {why}"))
        };
        let selector: LabelSelector =
            serde_json::from_value(field).map_err(|e| invalid(e.to_string()))?;
        let selector = Selector::try_from(selector).map_err(|e| invalid(e.to_string()))?;
        if selector.selects_all() {
            return Err(invalid(
                "an empty selector would export every Service; name the label exported Services carry"
                    .into(),
            ));
        }
        Ok(Some(Self {
            selector,
            control_namespace: control_namespace.to_owned(),
        }))
    }

    /// The Service a gateway's lookup is about, or why the gateway may not
    /// forward to it.
    pub fn service<'k>(&self, key: &'k LookupKey) -> Result<&'k Key, Status> {
        let service = match key {
            LookupKey::Service(service, _) | LookupKey::Host(service, _, _) => service,
            LookupKey::Ip(addr) => {
                return Err(Status::permission_denied(format!(
                    "a gateway forwards only to exported Services by name, not to {addr}"
                )));
            }
        };
        let (namespace, name) = service;
        if (namespace == "default" && name == "kubernetes") || *namespace == self.control_namespace
        {
            return Err(Status::permission_denied(format!(
                "{name}.{namespace} is never exported through a gateway"
            )));
        }
        Ok(service)
    }

    /// Whether a Service with `labels` (`None`: it does not exist) is
    /// exported, or why not.
    pub fn check(&self, key: &Key, labels: Option<&ServiceLabels>) -> Result<(), Status> {
        let (namespace, name) = key;
        match labels {
            None => Err(Status::permission_denied(format!(
                "{name}.{namespace} does not exist, so it is not exported"
            ))),
            Some(labels) if !self.selector.matches(labels) => {
                Err(Status::permission_denied(format!(
                    "{name}.{namespace} is not exported: its labels do not match {}",
                    self.selector
                )))
            }
            Some(_) => Ok(()),
        }
    }

    /// `answers` until the Service `key`'s labels (followed by `labels`)
    /// stop matching; then one `PERMISSION_DENIED`, and the end.
    pub fn guard<T: Send + 'static>(
        self,
        key: Key,
        answers: impl Stream<Item = Result<T, Status>> + Send + 'static,
        labels: watch::Receiver<Option<ServiceLabels>>,
    ) -> Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>> {
        let refused = WatchStream::new(labels)
            .filter_map(move |labels| {
                futures::future::ready(self.check(&key, labels.as_ref()).err())
            })
            .boxed();
        let refused = refused.fuse();
        let answers = answers.boxed().fuse();
        Box::pin(futures::stream::unfold(
            (answers, Some(()), refused),
            |(mut answers, open, mut refused)| async move {
                open?;
                tokio::select! {
                    biased;
                    Some(status) = refused.next() => Some((Err(status), (answers, None, refused))),
                    answer = answers.next() => answer.map(|a| (a, (answers, Some(()), refused))),
                }
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exports() -> Exports {
        Exports::from_context(
            r#"{"ns":"linkerd-multicluster","gatewayExports":{"matchLabels":{"mirror.linkerd.io/exported":"true"}}}"#,
            "linkerd",
        )
        .expect("valid")
        .expect("a gateway's token")
    }

    fn labels(pairs: &[(&str, &str)]) -> ServiceLabels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn key(ns: &str, name: &str) -> Key {
        (ns.to_owned(), name.to_owned())
    }

    #[test]
    fn only_a_token_with_the_field_is_a_gateways() {
        for token in [
            "",
            "{}",
            r#"{"ns":"test","pod":"web-1"}"#,
            "not json",
            "[1]",
        ] {
            assert!(
                Exports::from_context(token, "linkerd")
                    .expect("not refused")
                    .is_none(),
                "{token:?}"
            );
        }
        for (token, why) in [
            (r#"{"gatewayExports":{}}"#, "empty selector"),
            (
                r#"{"gatewayExports":"exported=true"}"#,
                "not a LabelSelector",
            ),
            (
                r#"{"gatewayExports":{"matchExpressions":[{"key":"a","operator":"Near"}]}}"#,
                "unknown operator",
            ),
        ] {
            let status = Exports::from_context(token, "linkerd").expect_err(why);
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{why}");
            assert!(status.message().contains(CONTEXT_FIELD), "{status:?}");
        }
    }

    #[test]
    fn only_labelled_services_are_exported() {
        let exports = exports();
        let podinfo = key("test", "podinfo");
        assert!(
            exports
                .check(
                    &podinfo,
                    Some(&labels(&[("mirror.linkerd.io/exported", "true")]))
                )
                .is_ok()
        );
        for (labels, why) in [
            (None, "does not exist"),
            (Some(labels(&[])), "not exported"),
            (
                Some(labels(&[("mirror.linkerd.io/exported", "false")])),
                "not exported",
            ),
        ] {
            let status = exports
                .check(&podinfo, labels.as_ref())
                .expect_err("refused");
            assert_eq!(status.code(), tonic::Code::PermissionDenied);
            assert!(status.message().contains(why), "{status:?}");
        }
    }

    #[test]
    fn addresses_the_api_server_and_the_control_plane_are_never_forwarded() {
        let exports = exports();
        let addr = LookupKey::Ip("10.96.0.1:443".parse().expect("addr"));
        assert_eq!(
            exports.service(&addr).expect_err("an IP").code(),
            tonic::Code::PermissionDenied
        );
        for (ns, name) in [("default", "kubernetes"), ("linkerd", "linkerd-identity")] {
            let status = exports
                .service(&LookupKey::Service(key(ns, name), 443))
                .expect_err("never exported");
            assert_eq!(status.code(), tonic::Code::PermissionDenied, "{ns}/{name}");
        }
        let host = LookupKey::Host(key("test", "web"), "web-0".into(), 80);
        assert_eq!(
            exports.service(&host).expect("a headless pod"),
            &key("test", "web")
        );
    }

    #[tokio::test]
    async fn a_stream_ends_refused_once_its_service_is_unexported() {
        let exported = Some(labels(&[("mirror.linkerd.io/exported", "true")]));
        let (labels_tx, labels_rx) = watch::channel(exported);
        let (answers_tx, answers_rx) = watch::channel(1u32);
        let mut stream = exports().guard(
            key("test", "podinfo"),
            WatchStream::new(answers_rx).map(Ok),
            labels_rx,
        );
        assert_eq!(stream.next().await.and_then(Result::ok), Some(1));
        answers_tx.send_replace(2);
        assert_eq!(stream.next().await.and_then(Result::ok), Some(2));
        labels_tx.send_replace(Some(labels(&[])));
        let refused = stream.next().await.expect("an item").expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert!(stream.next().await.is_none(), "the stream ends");
    }
}
