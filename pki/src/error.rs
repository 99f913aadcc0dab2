//! Errors of the CA.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("invalid agent id {id:?}: {reason}")]
    InvalidAgentId { id: String, reason: &'static str },

    #[error("invalid subject alternative name {0:?}: neither an IP address nor a DNS name")]
    InvalidSan(String),

    #[error(
        "invalid certificate validity {0:?}: must be at least one second and at most 100 years"
    )]
    InvalidValidity(Duration),

    #[error("{action}")]
    Rcgen {
        action: &'static str,
        #[source]
        source: rcgen::Error,
    },

    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("parse certificate: {0}")]
    ParseCertificate(String),

    #[error("certificate has no usable Common Name")]
    MissingCommonName,

    #[error("invalid certificate signing request: {0}")]
    Csr(String),

    #[error("invalid certificate signing request")]
    InvalidCsr(#[source] rcgen::Error),

    #[error("the private key {} does not belong to the certificate {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },

    #[error("{} exists but {} does not; remove the remaining file to start over", present.display(), missing.display())]
    IncompletePair { present: PathBuf, missing: PathBuf },

    #[error("{} was not issued by the CA in {}; remove it and its key to issue a new one", cert.display(), ca.display())]
    ForeignCertificate { cert: PathBuf, ca: PathBuf },
}

impl PkiError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        PkiError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn rcgen(action: &'static str) -> impl FnOnce(rcgen::Error) -> Self {
        move |source| PkiError::Rcgen { action, source }
    }
}
