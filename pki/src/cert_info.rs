//! What an agent needs to know about its own certificate: who it names and when it expires,
//! to schedule the renewal.

use std::time::{Duration, SystemTime};

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::PkiError;
use crate::authority::pem_to_der;

/// The identity and validity window of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The Common Name, checked as an agent id.
    pub agent_id: String,
    /// Serial in lowercase hex, without separators.
    pub serial_hex: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl CertInfo {
    /// Reads the first certificate of a PEM chain.
    pub fn from_pem(pem: &str) -> Result<Self, PkiError> {
        let der = pem_to_der(pem)?;
        Self::from_der(&der)
    }

    pub fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        let agent_id = crate::agent_id_from_cert_der(der)?;
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| PkiError::ParseCertificate(e.to_string()))?;
        let validity = cert.validity();
        Ok(CertInfo {
            agent_id,
            serial_hex: cert
                .raw_serial()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            not_before: to_system_time(validity.not_before.timestamp()),
            not_after: to_system_time(validity.not_after.timestamp()),
        })
    }

    /// `not_after - not_before` (zero for an inverted window).
    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or_default()
    }
}

fn to_system_time(unix_secs: i64) -> SystemTime {
    match u64::try_from(unix_secs) {
        Ok(secs) => SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}
