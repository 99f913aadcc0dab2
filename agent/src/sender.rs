//! Delivers outbox entries to lasect-ingest over mutual TLS gRPC.
//!
//! Oldest first, one at a time: an entry leaves the outbox only when ingest
//! acknowledges its seq. Every failure is retried with backoff and a fresh
//! connection, except `InvalidArgument` and `OutOfRange`: ingest looked at
//! that batch (or its size) and will never accept it, so it is dropped (counted by the outbox) instead of
//! blocking everything behind it. Ingest deduplicates on `(agent, seq)`, so
//! resending a batch whose ack was lost is harmless.
//!
//! The TLS files are read at every (re)connect, so a renewed certificate is
//! picked up without a restart.

use std::error::Error as StdError;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lasect_proto::v1::ingest_client::IngestClient;
use tokio::sync::watch;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::backoff::Backoff;
use crate::config::AgentConfig;
use crate::outbox::{Outbox, OutboxEntry};

#[derive(Debug, Clone)]
pub struct SenderSettings {
    /// `https://host:port` of ingest.
    pub endpoint: String,
    /// Name the ingest certificate is verified against; `None` = endpoint host.
    pub server_name: Option<String>,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub connect_timeout: Duration,
    /// Bound of one Push call, answer included.
    pub request_timeout: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// How long a stopping agent keeps trying to empty the outbox.
    pub flush_timeout: Duration,
}

impl SenderSettings {
    pub fn from_config(config: &AgentConfig) -> Self {
        Self {
            endpoint: config.ingest.endpoint.clone(),
            server_name: config.tls_server_name(),
            ca_file: config.tls.ca_file.clone(),
            cert_file: config.tls.cert_file.clone(),
            key_file: config.tls.key_file.clone(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(30),
            flush_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot read {path}: {source}")]
    ReadTls {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to {endpoint}: {source}")]
    Transport {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
}

/// How one delivery attempt ended.
enum Attempt {
    Acked,
    /// Ingest refused the batch as invalid.
    Rejected(String),
    /// Worth trying again later.
    Retry(String),
}

pub struct Sender<O: Outbox> {
    settings: SenderSettings,
    outbox: Arc<O>,
    client: Option<IngestClient<Channel>>,
    backoff: Backoff,
    /// Whether the last attempt failed; failures are logged on changes only.
    failing: bool,
}

impl<O: Outbox> Sender<O> {
    pub fn new(settings: SenderSettings, outbox: Arc<O>) -> Self {
        let backoff = Backoff::new(settings.backoff_base, settings.backoff_cap);
        Self {
            settings,
            outbox,
            client: None,
            backoff,
            failing: false,
        }
    }

    /// Delivers until `shutdown` turns true (or its sender is dropped), then
    /// tries to empty the outbox for at most `flush_timeout`.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        tokio::select! {
            () = self.deliver(false) => {}
            () = wait_for_stop(&mut shutdown) => {}
        }
        let queued = self.outbox.stats().queued;
        if queued == 0 {
            return;
        }
        tracing::info!(queued, "flushing the outbox before stopping");
        let flush_timeout = self.settings.flush_timeout;
        if tokio::time::timeout(flush_timeout, self.deliver(true))
            .await
            .is_err()
        {
            tracing::warn!(
                lost = self.outbox.stats().queued,
                "ingest did not take every batch before the agent stopped; the rest are lost"
            );
        }
    }

    /// Sends entries oldest first; returns only when `until_empty` and the
    /// outbox is empty, otherwise waits for more.
    async fn deliver(&mut self, until_empty: bool) {
        loop {
            let entry = match self.outbox.peek_unacked() {
                Ok(Some(entry)) => entry,
                Ok(None) if until_empty => return,
                Ok(None) => {
                    self.outbox.pushed().await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the outbox");
                    tokio::time::sleep(self.backoff.next_delay()).await;
                    continue;
                }
            };
            let outcome = match self.attempt(&entry).await {
                Attempt::Acked => self.outbox.ack(entry.seq),
                Attempt::Rejected(reason) => self.outbox.reject(entry.seq, &reason),
                Attempt::Retry(error) => {
                    self.client = None;
                    if !self.failing {
                        tracing::warn!(
                            seq = entry.seq,
                            error,
                            "cannot deliver to ingest; retrying with backoff (logged again on recovery)"
                        );
                    } else {
                        tracing::debug!(seq = entry.seq, error, "delivery failed again");
                    }
                    self.failing = true;
                    tokio::time::sleep(self.backoff.next_delay()).await;
                    continue;
                }
            };
            if self.failing {
                tracing::info!(
                    failed_attempts = self.backoff.attempts(),
                    "delivering to ingest again"
                );
                self.failing = false;
            }
            self.backoff.reset();
            if let Err(e) = outcome {
                tracing::error!(seq = entry.seq, error = %e, "cannot remove a delivered batch from the outbox");
            }
        }
    }

    async fn attempt(&mut self, entry: &OutboxEntry) -> Attempt {
        if self.client.is_none() {
            match self.connect().await {
                Ok(client) => self.client = Some(client),
                Err(e) => return Attempt::Retry(error_chain(&e)),
            }
        }
        let Some(client) = self.client.as_mut() else {
            return Attempt::Retry("not connected".into());
        };
        let timeout = self.settings.request_timeout;
        let mut request = tonic::Request::new(entry.to_request());
        // Tells ingest too, so it can give up on a request nobody waits for.
        request.set_timeout(timeout);
        match tokio::time::timeout(timeout, client.push(request)).await {
            Err(_) => Attempt::Retry(format!("no answer within {timeout:?}")),
            Ok(Ok(response)) => {
                let ack = response.into_inner();
                if ack.seq == entry.seq {
                    tracing::debug!(
                        seq = ack.seq,
                        duplicate = ack.duplicate,
                        stored = ack.stored_samples,
                        unknown = ack.unknown_samples,
                        "batch acknowledged"
                    );
                    Attempt::Acked
                } else {
                    Attempt::Retry(format!(
                        "ingest acknowledged seq {} for seq {}",
                        ack.seq, entry.seq
                    ))
                }
            }
            // InvalidArgument: ingest decoded the batch and refuses it.
            // OutOfRange: the message exceeds ingest's size limit. Neither
            // will ever succeed, so retrying would block the queue for good.
            Ok(Err(status))
                if matches!(status.code(), Code::InvalidArgument | Code::OutOfRange) =>
            {
                Attempt::Rejected(format!("{:?}: {}", status.code(), status.message()))
            }
            Ok(Err(status)) => Attempt::Retry(format!(
                "{:?}: {}{}",
                status.code(),
                status.message(),
                status
                    .source()
                    .map(|s| format!(" ({})", error_chain(s)))
                    .unwrap_or_default()
            )),
        }
    }

    async fn connect(&self) -> Result<IngestClient<Channel>, ConnectError> {
        let s = &self.settings;
        let read = |path: PathBuf| async move {
            tokio::fs::read(&path)
                .await
                .map_err(|source| ConnectError::ReadTls { path, source })
        };
        let ca = read(s.ca_file.clone()).await?;
        let cert = read(s.cert_file.clone()).await?;
        let key = read(s.key_file.clone()).await?;
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .identity(Identity::from_pem(cert, key));
        if let Some(name) = &s.server_name {
            tls = tls.domain_name(name.clone());
        }
        let transport = |source| ConnectError::Transport {
            endpoint: s.endpoint.clone(),
            source,
        };
        let channel = Endpoint::from_shared(s.endpoint.clone())
            .and_then(|e| e.tls_config(tls))
            .map_err(transport)?
            .connect_timeout(s.connect_timeout)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true)
            .connect()
            .await
            .map_err(transport)?;
        tracing::debug!(endpoint = %s.endpoint, "connected to ingest");
        Ok(IngestClient::new(channel))
    }
}

async fn wait_for_stop(shutdown: &mut watch::Receiver<bool>) {
    // A dropped sender means nobody can ask to stop any more: stop.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// `error: cause: cause`, since tonic's transport errors say little on their own.
fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}
