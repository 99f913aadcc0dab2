//! Accepting connections: TCP, then the TLS handshake (with the verifier of
//! [`crate::tls`]), then handed to the gRPC server.
//!
//! Handshakes run here rather than inside tonic so that each connection
//! authenticated as an agent is first admitted by the store
//! ([`Revocations::admit`]: its serial must be the agent's, not revoked, or a
//! first use) and then carries a "closed" future from
//! [`Revocations::closed`]: when the agent is disabled, its certificate is
//! revoked or expires, the connection's reads and writes fail, which ends
//! the HTTP/2 connection and every call (unary or streaming) on it. A refused
//! certificate gets a TLS close right after its handshake (the reason is in
//! ingest's log). A connection without a client certificate can only reach
//! `Enroll`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo, TlsConnectInfo};

use crate::revocation::Revocations;

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const BACKLOG: usize = 128;

type Closing = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One accepted TLS connection.
pub struct AgentConn {
    tls: TlsStream<TcpStream>,
    /// Resolves when the connection must end (agent disabled, certificate
    /// expired); `None` for a connection without a client certificate.
    closing: Option<Closing>,
    closed: bool,
}

impl AgentConn {
    /// Whether the connection must end now; registers the waker otherwise.
    fn must_close(&mut self, cx: &mut Context<'_>) -> bool {
        if self.closed {
            return true;
        }
        if let Some(closing) = self.closing.as_mut()
            && closing.as_mut().poll(cx).is_ready()
        {
            self.closed = true;
            tracing::info!(peer = ?self.tls.get_ref().0.peer_addr().ok(), "closing the connection of a disabled agent or a revoked or expired certificate");
            return true;
        }
        false
    }
}

fn revoked() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "agent disabled or certificate revoked or expired",
    )
}

impl AsyncRead for AgentConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.must_close(cx) {
            return Poll::Ready(Err(revoked()));
        }
        Pin::new(&mut self.tls).poll_read(cx, buf)
    }
}

impl AsyncWrite for AgentConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.must_close(cx) {
            return Poll::Ready(Err(revoked()));
        }
        Pin::new(&mut self.tls).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.must_close(cx) {
            return Poll::Ready(Err(revoked()));
        }
        Pin::new(&mut self.tls).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_shutdown(cx)
    }
}

impl Connected for AgentConn {
    type ConnectInfo = TlsConnectInfo<TcpConnectInfo>;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.tls.connect_info()
    }
}

/// How long a refused client gets to read the TLS alert that says why.
const LINGER: Duration = Duration::from_secs(1);

/// Closes a connection whose handshake failed so that the client can read
/// the alert (e.g. `certificate_revoked` for a disabled agent): send FIN,
/// then read and discard what the client still sends for a moment. Dropping
/// a socket with unread input would reset it, and the client would only see
/// "connection reset" instead of the reason.
async fn linger(mut tcp: TcpStream) {
    use tokio::io::AsyncReadExt;
    let _ = tcp.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Accepts on `listener` until the returned task is aborted; yields the
/// connections whose handshake succeeded. A failed handshake is logged
/// (debug: scanners and bad clients are common) and dropped.
pub fn accept(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    revocations: Revocations,
) -> (ReceiverStream<io::Result<AgentConn>>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(BACKLOG);
    let acceptor = TlsAcceptor::from(tls);
    let task = tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause, go on.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx, revocations) = (acceptor.clone(), tx.clone(), revocations.clone());
            tokio::spawn(async move {
                let handshake = acceptor.accept(tcp).into_fallible();
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err((error, tcp))) => {
                        tracing::debug!(%peer, %error, "TLS handshake failed");
                        linger(tcp).await;
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                let cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .and_then(|leaf| lasect_pki::CertInfo::from_der(leaf.as_ref()).ok());
                let closing = match cert {
                    Some(cert) => {
                        if let Err(refusal) = revocations.admit(&cert).await {
                            tracing::warn!(%peer, %refusal, "refused a client certificate after the handshake");
                            let mut tls = tls;
                            let _ = tls.shutdown().await;
                            return;
                        }
                        Some(Box::pin(revocations.closed(
                            cert.agent_id,
                            cert.serial_hex,
                            Some(cert.not_after),
                        )) as Closing)
                    }
                    None => None,
                };
                let conn = AgentConn {
                    tls,
                    closing,
                    closed: false,
                };
                let _ = tx.send(Ok(conn)).await;
            });
        }
    });
    (ReceiverStream::new(rx), task)
}
