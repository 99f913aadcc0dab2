//! A throwaway certificate authority for TLS tests: it signs server
//! certificates for harness clusters (`PgOptions::tls`) so that clients can
//! be tested with `sslmode=verify-ca` / `verify-full` against a real server.
//! The certificates are made by the Lasect CA's own code (`lasect-pki`).

use std::path::Path;
use std::time::Duration;

use lasect_pki::CertificateAuthority;

use crate::HarnessError;

/// Long enough for any test run, short enough to be visibly throwaway.
const VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A self-signed CA that lives as long as the test.
pub struct TestCa(CertificateAuthority);

impl TestCa {
    pub fn new(common_name: &str) -> Result<Self, HarnessError> {
        CertificateAuthority::generate(common_name)
            .map(Self)
            .map_err(pki_error("make CA"))
    }

    pub fn cert_pem(&self) -> &str {
        self.0.cert_pem()
    }

    /// Writes the CA certificate (what a client names in `sslrootcert`).
    pub fn write_cert(&self, path: &Path) -> Result<(), HarnessError> {
        std::fs::write(path, self.0.cert_pem()).map_err(HarnessError::io("write CA certificate"))
    }

    /// A server certificate for `names`: DNS names, or IP addresses when they parse as one.
    pub fn server_cert(&self, names: &[&str]) -> Result<CertPair, HarnessError> {
        let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let common_name = names.first().copied().unwrap_or_default();
        let issued = self
            .0
            .issue_server(common_name, &sans, VALIDITY)
            .map_err(pki_error("issue server certificate"))?;
        Ok(CertPair {
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem.expose_secret().to_owned(),
        })
    }
}

fn pki_error(what: &'static str) -> impl FnOnce(lasect_pki::PkiError) -> HarnessError {
    move |e| HarnessError::Other(format!("{what}: {e}"))
}
