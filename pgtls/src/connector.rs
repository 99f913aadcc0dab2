//! The rustls side: a [`MakeTlsConnect`] for tokio-postgres whose server
//! certificate check follows the DSN's [`Verification`].

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

use crate::dsn::{RootCert, TlsOptions, Verification};
use crate::{ConnectTlsError, DsnError};

/// Makes the TLS connector of every connection of one DSN. Cheap to clone.
#[derive(Clone)]
pub struct MakeRustlsConnect {
    config: Arc<ClientConfig>,
    /// Where the trusted roots came from, for error messages.
    roots: Option<Arc<str>>,
}

impl fmt::Debug for MakeRustlsConnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MakeRustlsConnect")
            .field("roots", &self.roots)
            .finish_non_exhaustive()
    }
}

impl MakeRustlsConnect {
    /// Reads the root and client certificate files `options` names.
    pub fn new(options: &TlsOptions) -> Result<Self, DsnError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(DsnError::Rustls)?;
        let verification = options.verification();
        let roots = match (&options.root_cert, verification) {
            (Some(root), Verification::Chain | Verification::Full) => Some(root),
            _ => None,
        };
        let chain = match roots {
            None => None,
            Some(root) => {
                let store = root_store(root)?;
                let webpki = WebPkiServerVerifier::builder_with_provider(
                    Arc::new(store),
                    Arc::clone(&provider),
                )
                .build()
                .map_err(|e| DsnError::Rustls(rustls::Error::General(e.to_string())))?;
                Some(webpki)
            }
        };
        let verifier: Arc<dyn ServerCertVerifier> = match chain {
            Some(webpki) if verification == Verification::Full => webpki,
            chain => Arc::new(LenientVerifier {
                provider: Arc::clone(&provider),
                chain,
            }),
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&options.client_cert, &options.client_key) {
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert, "sslcert")?;
                let key = read_key(key)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(DsnError::Rustls)?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(Self {
            config: Arc::new(config),
            roots: roots.map(|r| Arc::from(r.to_string())),
        })
    }
}

fn root_store(root: &RootCert) -> Result<RootCertStore, DsnError> {
    let mut store = RootCertStore::empty();
    match root {
        RootCert::File(path) => {
            for cert in read_certs(path, "sslrootcert")? {
                store.add(cert).map_err(|e| DsnError::BadCertificate {
                    what: "sslrootcert",
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            }
        }
        RootCert::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(DsnError::NoSystemRoots);
            }
        }
    }
    Ok(store)
}

fn read_certs(
    path: &std::path::Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, DsnError> {
    let pem = std::fs::read(path).map_err(|source| DsnError::ReadFile {
        what,
        path: path.to_owned(),
        source,
    })?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| DsnError::BadCertificate {
            what,
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(DsnError::BadCertificate {
            what,
            path: path.to_owned(),
            reason: "no PEM certificate in it".to_owned(),
        });
    }
    Ok(certs)
}

fn read_key(path: &std::path::Path) -> Result<PrivateKeyDer<'static>, DsnError> {
    let pem = std::fs::read(path).map_err(|source| DsnError::ReadFile {
        what: "sslkey",
        path: path.to_owned(),
        source,
    })?;
    let bad = |reason: String| DsnError::BadCertificate {
        what: "sslkey",
        path: path.to_owned(),
        reason,
    };
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| bad(e.to_string()))?
        .ok_or_else(|| bad("no unencrypted PEM private key in it".to_owned()))
}

impl<S> MakeTlsConnect<S> for MakeRustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = ConnectTlsError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, ConnectTlsError> {
        // Unix-socket hosts come as "": the name is only needed (and checked)
        // once the server agrees to TLS.
        Ok(RustlsConnect {
            config: Arc::clone(&self.config),
            domain: domain.to_owned(),
            roots: self.roots.clone(),
        })
    }
}

/// One connection's TLS handshake.
pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    domain: String,
    roots: Option<Arc<str>>,
}

type ConnectFuture<S> =
    Pin<Box<dyn Future<Output = Result<RustlsStream<S>, ConnectTlsError>> + Send>>;

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = ConnectTlsError;
    type Future = ConnectFuture<S>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let name = ServerName::try_from(self.domain.clone())
                .map_err(|_| ConnectTlsError::InvalidHostName(self.domain.clone()))?;
            tokio_rustls::TlsConnector::from(self.config)
                .connect(name, stream)
                .await
                .map(RustlsStream)
                .map_err(|e| classify(e, &self.domain, self.roots.as_deref()))
        })
    }
}

/// Turns rustls' certificate errors into sentences that say what to fix.
fn classify(e: io::Error, host: &str, roots: Option<&str>) -> ConnectTlsError {
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return ConnectTlsError::Handshake(e);
    };
    let roots = roots.unwrap_or("the trusted roots").to_owned();
    match tls {
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => ConnectTlsError::UnknownIssuer { roots },
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => ConnectTlsError::WrongHostName {
            host: host.to_owned(),
        },
        rustls::Error::InvalidCertificate(other) => ConnectTlsError::Rejected {
            reason: format!("{other:?}"),
        },
        other => ConnectTlsError::Protocol(other.clone()),
    }
}

/// A TLS connection to the server.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM channel binding (tls-server-end-point) is not offered: the
        // server then authenticates with plain SCRAM-SHA-256, which
        // tokio-postgres accepts under its default `channel_binding=prefer`.
        ChannelBinding::none()
    }
}

/// The checks short of `verify-full`. Without a chain (`require`/`prefer`/
/// `allow`, or no root certificate) any certificate is accepted: encryption
/// only. With one (`verify-ca`) it is the web PKI check, except that a name
/// mismatch is accepted: webpki checks the chain before the name, so a name
/// error means the chain was good. Handshake signatures are checked either
/// way, so the peer holds the key of the certificate it sent.
#[derive(Debug)]
struct LenientVerifier {
    provider: Arc<CryptoProvider>,
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for LenientVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
