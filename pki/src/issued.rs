//! A freshly issued certificate and its private key.

use std::path::{Path, PathBuf};

use crate::PkiError;
use crate::key_file::{CERT_MODE, KEY_MODE, write_atomic};

/// A PEM private key.
pub type SecretPem = crate::Secret;

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
        write_atomic(&key_path, self.key_pem.expose_secret().as_bytes(), KEY_MODE)?;
        write_atomic(&cert_path, self.cert_pem.as_bytes(), CERT_MODE)?;
        Ok((cert_path, key_path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_not_printed() {
        let s = SecretPem::new("-----BEGIN PRIVATE KEY-----");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        let issued = IssuedCert {
            cert_pem: "cert".into(),
            key_pem: s,
        };
        assert!(!format!("{issued:?}").contains("PRIVATE"));
    }
}
