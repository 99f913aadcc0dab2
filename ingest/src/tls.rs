//! The server's TLS settings: its identity, and the Lasect CA that client
//! certificates must chain to.
//!
//! Client authentication is optional at the handshake, so an agent without
//! a certificate yet can reach `Enroll`; every other call refuses a caller
//! without a verified client certificate (UNAUTHENTICATED, see `server`).
//! A certificate that is presented must chain to the CA, must not name a
//! disabled agent and its serial must not be revoked ([`Revocations`]), or
//! the handshake fails. A serial this process has not seen yet is judged
//! against the store right after the handshake ([`Revocations::admit`], in
//! [`crate::connections`]): a rustls verifier cannot wait for the store.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};

use crate::IngestError;
use crate::config::TlsFiles;
use crate::revocation::Revocations;

/// Reads and checks the PEM files (a bad file is reported by its path
/// rather than as an anonymous TLS error later) and builds the rustls
/// server configuration.
/// Also returns the DER certificates of `ca_file` (the client roots).
pub fn server_config(
    files: &TlsFiles,
    revocations: Revocations,
) -> Result<(Arc<ServerConfig>, Vec<Vec<u8>>), IngestError> {
    let ca = read(&files.ca_file)?;
    let ca_certs = certificates(&files.ca_file, &ca)?;
    let root_ders: Vec<Vec<u8>> = ca_certs.iter().map(|c| c.as_ref().to_vec()).collect();
    let cert = read(&files.cert_file)?;
    let chain = certificates(&files.cert_file, &cert)?;
    let key = read(&files.key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| IngestError::TlsFile {
        path: files.key_file.clone(),
        reason: format!("no usable private key: {e}"),
    })?;

    let mut roots = RootCertStore::empty();
    for c in ca_certs {
        roots.add(c).map_err(|e| IngestError::TlsFile {
            path: files.ca_file.clone(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| IngestError::TlsFile {
            path: files.ca_file.clone(),
            reason: format!("cannot verify clients with it: {e}"),
        })?;
    let verifier = Arc::new(AgentVerifier {
        inner: webpki,
        revocations,
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(IngestError::TlsConfig)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(IngestError::TlsConfig)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok((Arc::new(config), root_ders))
}

/// The CA's verdict, then: the certificate names a valid agent id that is
/// not disabled, and its serial is not known to be revoked.
#[derive(Debug)]
struct AgentVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revocations: Revocations,
}

impl ClientCertVerifier for AgentVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let cert = lasect_pki::CertInfo::from_der(end_entity.as_ref()).map_err(|e| {
            tracing::warn!(error = %e, "refused a client certificate without a valid agent id");
            rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
        })?;
        let agent = &cert.agent_id;
        if self.revocations.is_disabled(agent) {
            tracing::warn!(%agent, "refused a handshake of a disabled agent");
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        if self.revocations.is_revoked(&cert.serial_hex) {
            tracing::warn!(%agent, serial = %cert.serial_hex, "refused a handshake with a revoked certificate");
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, IngestError> {
    std::fs::read(path).map_err(|e| IngestError::TlsFile {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, IngestError> {
    let invalid = |reason: String| IngestError::TlsFile {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("unreadable certificate: {e}")))?;
    if certs.is_empty() {
        return Err(invalid("contains no PEM certificate".to_owned()));
    }
    Ok(certs)
}
