//! The trust roots where workloads can mount them. A pod can only mount a
//! ConfigMap of its own namespace, and the trust roots live in the control
//! plane's (`linkerd-identity-trust-roots`); so the identity service keeps
//! a copy, `mesh-identity-trust-roots`, in every namespace it has certified
//! a workload of, with the bundle and the SHA-256 of the issuer in force
//! (`issuer.sha256`, also recorded in the control plane's own ConfigMap for
//! the controllers). Proxies follow their copy without a restart
//! (`mesh_core::identity::trust_dir`): after an issuer rotation every
//! workload is certified by the new issuer within seconds, and after a
//! change of anchors trusts the new bundle, so that the four steps of a
//! trust anchor rotation need no restart.
//!
//! Only ConfigMaps this service made are written, as its field manager in
//! their managed fields proves (an object of the same name made by someone
//! else, labelled or not, is left alone and logged); copies are applied
//! with this service's field manager when the roots or issuer change, when
//! a namespace is first seen, and every [`REPAIR_PERIOD`] (an edited copy
//! is put back).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use mesh_api::labels::{
    ISSUER_FINGERPRINT_KEY, TRUST_BUNDLE_KEY, TRUST_ROOTS_CONFIGMAP, TRUST_ROOTS_COPY_CONFIGMAP,
    TRUST_ROOTS_COPY_LABEL,
};
use tokio::sync::Notify;

use crate::issuer::IssuerStore;

/// How often every copy is checked and put back if edited.
pub const REPAIR_PERIOD: Duration = Duration::from_secs(30);

/// The field manager of what this service writes.
const FIELD_MANAGER: &str = "mesh-identity";

/// What every copy holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Contents {
    bundle: String,
    issuer: String,
}

/// Keeps the copies.
pub struct TrustCopies {
    client: kube::Client,
    control_namespace: String,
    /// Namespaces certified in since the last pass, to copy into.
    pending: Mutex<BTreeSet<String>>,
    wake: Notify,
}

impl std::fmt::Debug for TrustCopies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustCopies")
            .field("control_namespace", &self.control_namespace)
            .finish_non_exhaustive()
    }
}

impl TrustCopies {
    /// Copies for the control plane in `control_namespace`.
    pub fn new(client: kube::Client, control_namespace: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            client,
            control_namespace: control_namespace.into(),
            pending: Mutex::new(BTreeSet::new()),
            wake: Notify::new(),
        })
    }

    /// A workload of `namespace` was certified: make sure it has a copy.
    pub fn certified_in(&self, namespace: &str) {
        if namespace == self.control_namespace {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.insert(namespace.to_owned()) {
            self.wake.notify_one();
        }
    }

    fn contents(issuer: &IssuerStore) -> Option<Contents> {
        let loaded = issuer.current()?;
        let issuer_cert = loaded.ca.chain().first()?;
        Some(Contents {
            bundle: loaded.roots.pem().to_owned(),
            issuer: mesh_core::tls::sha256_hex(issuer_cert),
        })
    }

    /// Keeps the copies until `stop`: a pass whenever woken (a namespace
    /// seen, `changed` by the issuer's reloads) and every [`REPAIR_PERIOD`].
    pub async fn run(
        self: Arc<Self>,
        issuer: Arc<IssuerStore>,
        changed: Arc<Notify>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let mut copied: BTreeSet<String> = BTreeSet::new();
        let mut last: Option<Contents> = None;
        // The issuer last recorded in the control plane's ConfigMap.
        let mut recorded: Option<String> = None;
        let mut repair = tokio::time::Instant::now();
        loop {
            if let Some(contents) = Self::contents(&issuer) {
                let fresh = last.as_ref() != Some(&contents);
                let due = tokio::time::Instant::now() >= repair;
                if fresh || due {
                    match self.existing_copies().await {
                        Ok(existing) => copied.extend(existing),
                        Err(e) => tracing::warn!("listing the trust roots copies: {e}"),
                    }
                    repair = tokio::time::Instant::now() + REPAIR_PERIOD;
                }
                let pending =
                    std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
                let targets: Vec<String> = if fresh || due {
                    copied.union(&pending).cloned().collect()
                } else {
                    pending.difference(&copied).cloned().collect()
                };
                if recorded.as_ref() != Some(&contents.issuer)
                    && self.record_issuer(&contents).await
                {
                    recorded = Some(contents.issuer.clone());
                }
                let mut all_ok = true;
                for namespace in targets {
                    if self.apply(&namespace, &contents).await {
                        copied.insert(namespace);
                    } else {
                        all_ok = false;
                        // Tried again on the next pass.
                        self.pending
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(namespace);
                    }
                }
                if all_ok {
                    last = Some(contents);
                }
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = changed.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
                () = &mut stop => return,
            }
        }
    }

    /// The namespaces holding a copy made by this service.
    async fn existing_copies(&self) -> Result<Vec<String>, kube::Error> {
        let copies: Api<ConfigMap> = Api::all(self.client.clone());
        let list = copies
            .list(&ListParams::default().labels(&format!("{TRUST_ROOTS_COPY_LABEL}=true")))
            .await?;
        Ok(list
            .items
            .into_iter()
            .filter(|c| c.metadata.name.as_deref() == Some(TRUST_ROOTS_COPY_CONFIGMAP))
            .filter_map(|c| c.metadata.namespace)
            .collect())
    }

    /// Records the issuer in force in the control plane's trust roots
    /// ConfigMap (its key alone: the bundle stays the operator's).
    async fn record_issuer(&self, contents: &Contents) -> bool {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.control_namespace);
        // A merge patch: it never makes the ConfigMap (an external CA's
        // operator does), and leaves the bundle as it is.
        let patch = serde_json::json!({"data": {ISSUER_FINGERPRINT_KEY: contents.issuer}});
        match api
            .patch(
                TRUST_ROOTS_CONFIGMAP,
                &PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..PatchParams::default()
                },
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!("recording the issuer in {TRUST_ROOTS_CONFIGMAP}: {e}");
                false
            }
        }
    }

    /// Writes the copy in `namespace`, unless an object of that name is
    /// not a copy. Whether the copy is current.
    async fn apply(&self, namespace: &str, contents: &Contents) -> bool {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        match api.get_opt(TRUST_ROOTS_COPY_CONFIGMAP).await {
            // Its own copy is proven by this service's field manager in the
            // object's managed fields, not by a label anyone can set.
            Ok(Some(existing))
                if !existing
                    .metadata
                    .managed_fields
                    .iter()
                    .flatten()
                    .any(|f| f.manager.as_deref() == Some(FIELD_MANAGER)) =>
            {
                tracing::warn!(
                    namespace,
                    "ConfigMap {TRUST_ROOTS_COPY_CONFIGMAP} exists and is not a trust roots copy: leaving it alone (its proxies keep the roots they started with)"
                );
                return true;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(namespace, "reading the trust roots copy: {e}");
                return false;
            }
        }
        let copy = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": TRUST_ROOTS_COPY_CONFIGMAP,
                "labels": {TRUST_ROOTS_COPY_LABEL: "true", "linkerd.io/control-plane-ns": self.control_namespace},
            },
            "data": {TRUST_BUNDLE_KEY: contents.bundle, ISSUER_FINGERPRINT_KEY: contents.issuer},
        });
        match api
            .patch(
                TRUST_ROOTS_COPY_CONFIGMAP,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&copy),
            )
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(namespace, "writing the trust roots copy: {e}");
                false
            }
        }
    }
}
