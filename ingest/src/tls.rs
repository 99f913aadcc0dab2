//! The server's TLS settings: its identity, and the Lasect CA that every
//! client certificate must chain to (client authentication is required).

use std::path::Path;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::IngestError;
use crate::config::TlsFiles;

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads and checks the PEM files, so a bad file is reported by its path
/// rather than as an anonymous TLS error later.
pub fn server_config(files: &TlsFiles) -> Result<ServerTlsConfig, IngestError> {
    let ca = read(&files.ca_file)?;
    require_certificates(&files.ca_file, &ca)?;
    let cert = read(&files.cert_file)?;
    require_certificates(&files.cert_file, &cert)?;
    let key = read(&files.key_file)?;
    PrivateKeyDer::from_pem_slice(&key).map_err(|e| IngestError::TlsFile {
        path: files.key_file.clone(),
        reason: format!("no usable private key: {e}"),
    })?;
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .client_ca_root(Certificate::from_pem(ca))
        .client_auth_optional(false)
        .timeout(HANDSHAKE_TIMEOUT))
}

fn read(path: &Path) -> Result<Vec<u8>, IngestError> {
    std::fs::read(path).map_err(|e| IngestError::TlsFile {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn require_certificates(path: &Path, pem: &[u8]) -> Result<(), IngestError> {
    let invalid = |reason: String| IngestError::TlsFile {
        path: path.to_owned(),
        reason,
    };
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        cert.map_err(|e| invalid(format!("unreadable certificate: {e}")))?;
        count += 1;
    }
    if count == 0 {
        return Err(invalid("contains no PEM certificate".to_owned()));
    }
    Ok(())
}
