//! The issuer as files on disk (the Secret `linkerd-identity-issuer` and the
//! ConfigMap `linkerd-identity-trust-roots`, mounted), loaded into a [`Ca`]
//! and re-loaded when they change, so that an issuer or trust-anchor
//! rotation needs no restart. A change that does not load keeps the issuer
//! that works and says why.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwapOption;

use crate::ca::{Ca, CaError, IssuancePolicy, TrustRoots};

/// Where the trust anchors and the issuer are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerFiles {
    /// The PEM bundle of trust anchors (`ca-bundle.crt`).
    pub trust_anchors: PathBuf,
    /// The issuer certificate, optionally followed by its chain.
    pub certificate: PathBuf,
    /// The issuer's private key.
    pub key: PathBuf,
}

impl IssuerFiles {
    /// The issuer files in a mounted `linkerd-identity-issuer` Secret:
    /// `tls.crt`/`tls.key` (scheme `kubernetes.io/tls`) or
    /// `crt.pem`/`key.pem` (scheme `linkerd.io/tls`).
    pub fn in_secret_dir(dir: &Path, trust_anchors: PathBuf) -> Self {
        let (certificate, key) = if dir.join("tls.crt").exists() || !dir.join("crt.pem").exists() {
            (dir.join("tls.crt"), dir.join("tls.key"))
        } else {
            (dir.join("crt.pem"), dir.join("key.pem"))
        };
        Self {
            trust_anchors,
            certificate,
            key,
        }
    }

    /// Reads all three files.
    fn read(&self) -> Result<Contents, LoadError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| LoadError::Read {
                path: path.to_owned(),
                source,
            })
        };
        Ok(Contents {
            anchors: read(&self.trust_anchors)?,
            certificate: read(&self.certificate)?,
            key: read(&self.key)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Contents {
    anchors: String,
    certificate: String,
    key: String,
}

/// Why the issuer could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The contents are not a usable issuer.
    #[error("{0}")]
    Invalid(#[from] CaError),
}

/// A loaded issuer and the roots it was checked against.
#[derive(Debug)]
pub struct Loaded {
    /// The trust anchors.
    pub roots: TrustRoots,
    /// The issuer.
    pub ca: Ca,
    contents: Contents,
}

/// The issuer in use, swapped atomically on reload.
#[derive(Debug)]
pub struct IssuerStore {
    files: IssuerFiles,
    policy: IssuancePolicy,
    current: ArcSwapOption<Loaded>,
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    /// The files have not changed.
    Unchanged,
    /// A new issuer (or new roots) is in use.
    Changed,
}

impl IssuerStore {
    /// Loads the issuer from `files`; fails when it is unusable now.
    pub fn load(
        files: IssuerFiles,
        policy: IssuancePolicy,
        now: SystemTime,
    ) -> Result<Self, LoadError> {
        let store = Self {
            files,
            policy,
            current: ArcSwapOption::empty(),
        };
        store.reload(now)?;
        Ok(store)
    }

    /// The issuer in use.
    pub fn current(&self) -> Option<Arc<Loaded>> {
        self.current.load_full()
    }

    /// Re-reads the files; installs them when they changed and load. On an
    /// error the issuer in use stays.
    pub fn reload(&self, now: SystemTime) -> Result<Reload, LoadError> {
        let contents = self.files.read()?;
        if self
            .current
            .load()
            .as_ref()
            .is_some_and(|c| c.contents == contents)
        {
            return Ok(Reload::Unchanged);
        }
        let roots = TrustRoots::from_pem(&contents.anchors)?;
        let ca = Ca::new(
            &contents.certificate,
            &contents.key,
            &roots,
            self.policy,
            now,
        )?;
        self.current.store(Some(Arc::new(Loaded {
            roots,
            ca,
            contents,
        })));
        Ok(Reload::Changed)
    }
}
