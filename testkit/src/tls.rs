//! A throwaway certificate authority for TLS tests: it signs server
//! certificates for harness clusters (`PgOptions::tls`) so that clients can
//! be tested with `sslmode=verify-ca` / `verify-full` against a real server.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::HarnessError;

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A self-signed CA that lives as long as the test.
pub struct TestCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(common_name: &str) -> Result<Self, HarnessError> {
        let key = KeyPair::generate().map_err(rcgen_error("generate CA key"))?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params
            .self_signed(&key)
            .map_err(rcgen_error("self-sign CA"))?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Writes the CA certificate (what a client names in `sslrootcert`).
    pub fn write_cert(&self, path: &Path) -> Result<(), HarnessError> {
        std::fs::write(path, &self.cert_pem).map_err(HarnessError::io("write CA certificate"))
    }

    /// A server certificate for `names`: DNS names, or IP addresses when they parse as one.
    pub fn server_cert(&self, names: &[&str]) -> Result<CertPair, HarnessError> {
        self.leaf(names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate whose common name is `user` (for `clientcert=verify-full`).
    pub fn client_cert(&self, user: &str) -> Result<CertPair, HarnessError> {
        self.leaf(&[user], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(
        &self,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<CertPair, HarnessError> {
        let key = KeyPair::generate().map_err(rcgen_error("generate leaf key"))?;
        let mut params = CertificateParams::default();
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        for name in names {
            let san = match name.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    (*name)
                        .try_into()
                        .map_err(rcgen_error("certificate DNS name"))?,
                ),
            };
            params.subject_alt_names.push(san);
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(rcgen_error("sign leaf certificate"))?;
        Ok(CertPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn rcgen_error(what: &'static str) -> impl FnOnce(rcgen::Error) -> HarnessError {
    move |e| HarnessError::Other(format!("{what}: {e}"))
}
