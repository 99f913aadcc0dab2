//! A freshly issued certificate and its private key.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::PkiError;
use crate::key_file::{CERT_MODE, KEY_MODE, write_atomic};

/// A PEM private key. `Debug` and `Display` print `***` so it cannot end up in a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretPem(String);

impl SecretPem {
    pub fn new(pem: String) -> Self {
        SecretPem(pem)
    }

    /// The PEM text, for writing to a key file or handing to rustls.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for SecretPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A certificate (PEM) with the private key made for it.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: SecretPem,
}

impl IssuedCert {
    /// Writes `<dir>/<stem>.key` (mode 0600) and then `<dir>/<stem>.pem`, each atomically; an
    /// existing pair is replaced. The key goes first so that a crash in between leaves a key
    /// without a certificate, which [`crate::init_dir`] completes, rather than a certificate
    /// whose key is lost. Returns the certificate and key paths.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), PkiError> {
        let cert_path = dir.join(format!("{stem}.pem"));
        let key_path = dir.join(format!("{stem}.key"));
        write_atomic(&key_path, self.key_pem.expose().as_bytes(), KEY_MODE)?;
        write_atomic(&cert_path, self.cert_pem.as_bytes(), CERT_MODE)?;
        Ok((cert_path, key_path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_not_printed() {
        let s = SecretPem::new("-----BEGIN PRIVATE KEY-----".into());
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        let issued = IssuedCert {
            cert_pem: "cert".into(),
            key_pem: s,
        };
        assert!(!format!("{issued:?}").contains("PRIVATE"));
    }
}
