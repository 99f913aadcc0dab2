//! Delivers outbox entries to lasect-ingest over mutual TLS gRPC.
//!
//! Oldest first, up to `window` pushes in flight on one HTTP/2 connection;
//! acks may come back in any order, and an entry leaves the outbox only when
//! ingest acknowledges its seq. Every failure is retried with backoff and a
//! fresh connection, resuming from the oldest unacknowledged entry, except
//! `InvalidArgument` and `OutOfRange`: ingest looked at that batch (or its
//! size) and will never accept it, so it is quarantined by the outbox instead
//! of blocking everything behind it. Ingest deduplicates on `(agent, seq)`, so
//! resending a batch whose ack was lost is harmless.
//!
//! Batches go as delta pushes (`[sender] delta`, see
//! `lasect_proto::bases`) once ingest has kept a base: each push is coded
//! against the samples of earlier batches ingest acknowledged with `kept`,
//! at most one push in flight offers itself as a base, and a delta push
//! ingest cannot rebuild (FAILED_PRECONDITION: it restarted, or dropped the
//! bases for memory) is sent again whole at once, without a backoff. The
//! spool always holds whole batches; the coding happens at send time.
//!
//! The TLS files are read at every (re)connect, so a renewed certificate is
//! picked up without a restart; after a renewal by the agent itself (a new
//! generation on the watch given to [`Sender::with_identity_changes`]) the
//! sender connects again at once. Each push also carries what ingest shows
//! in `lasect agent list`: host name, agent version and the spool backlog.

use std::error::Error as StdError;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;

use lasect_proto::bases::SenderBases;
use lasect_proto::payload;
use lasect_proto::v1::PushRequest;
use lasect_proto::v1::ingest_client::IngestClient;
use tokio::sync::watch;
use tonic::Code;
use tonic::transport::Channel;

use crate::backoff::Backoff;
use crate::channel::{ChannelError, error_chain};
use crate::config::AgentConfig;
use crate::identity::{ClientIdentity, IdentityError};
use crate::metrics::AgentMetrics;
use crate::outbox::{Outbox, OutboxEntry};

#[derive(Debug, Clone)]
pub struct SenderSettings {
    /// `https://host:port` of ingest.
    pub endpoint: String,
    /// Name the ingest certificate is verified against; `None` = endpoint host.
    pub server_name: Option<String>,
    pub ca_file: PathBuf,
    /// The client certificate and key.
    pub identity: ClientIdentity,
    pub connect_timeout: Duration,
    /// Bound of one Push call, answer included.
    pub request_timeout: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// How long a stopping agent keeps trying to empty the outbox.
    pub flush_timeout: Duration,
    /// Pushes in flight at once on the one HTTP/2 connection.
    pub window: usize,
    /// Send delta pushes when ingest keeps bases.
    pub delta: bool,
}

impl SenderSettings {
    pub fn from_config(config: &AgentConfig) -> Self {
        Self {
            endpoint: config.ingest.endpoint.clone(),
            server_name: config.tls_server_name(),
            ca_file: config.tls.ca_file.clone(),
            identity: config.client_identity(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(30),
            flush_timeout: Duration::from_secs(5),
            window: config.sender.window,
            delta: config.sender.delta,
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
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Transport(#[from] ChannelError),
}

/// What each push tells ingest about this agent.
#[derive(Debug, Clone)]
struct Report {
    hostname: String,
    version: String,
    backlog_batches: u64,
    backlog_bytes: u64,
}

/// How one delivery attempt ended.
enum Attempt {
    /// Stored; `kept` when ingest kept the batch as a base.
    Acked { kept: bool },
    /// Ingest refused the batch for good.
    Rejected(String),
    /// Ingest could not rebuild a delta push: send it again whole, now.
    Resend(String),
    /// Worth trying again later.
    Retry(String),
}

/// A push ready to go.
struct Prepared {
    request: PushRequest,
    /// The encoded `SampleBatch`, when the push offers it as a base.
    offered: Option<Vec<u8>>,
    delta: bool,
}

/// A finished push.
struct Finished {
    seq: u64,
    outcome: Attempt,
    offered: Option<Vec<u8>>,
}

type InFlight = Pin<Box<dyn Future<Output = Finished> + Send>>;

pub struct Sender<O: Outbox> {
    settings: SenderSettings,
    outbox: Arc<O>,
    metrics: Arc<AgentMetrics>,
    client: Option<IngestClient<Channel>>,
    backoff: Backoff,
    /// Whether the last attempt failed; failures are logged on changes only.
    failing: bool,
    /// Bumped when the agent renewed its certificate.
    identity_changes: Option<watch::Receiver<u64>>,
    hostname: String,
    /// What ingest kept, for delta pushes.
    bases: SenderBases,
    /// The seq of the push in flight that offers itself as a base.
    offered: Option<u64>,
}

impl<O: Outbox> Sender<O> {
    pub fn new(settings: SenderSettings, outbox: Arc<O>) -> Self {
        let backoff = Backoff::new(settings.backoff_base, settings.backoff_cap);
        Self {
            settings,
            outbox,
            metrics: Arc::new(AgentMetrics::default()),
            client: None,
            backoff,
            failing: false,
            identity_changes: None,
            hostname: crate::enroll::hostname(),
            bases: SenderBases::default(),
            offered: None,
        }
    }

    /// Connects again (for the next pushes) whenever `changes` moves on.
    pub fn with_identity_changes(mut self, changes: watch::Receiver<u64>) -> Self {
        self.identity_changes = Some(changes);
        self
    }

    /// Whether the identity changed since the last look.
    fn identity_changed(&mut self) -> bool {
        match self.identity_changes.as_mut() {
            Some(changes) if changes.has_changed().unwrap_or(false) => {
                changes.borrow_and_update();
                true
            }
            _ => false,
        }
    }

    fn report(&self) -> Report {
        let stats = self.outbox.stats();
        Report {
            hostname: self.hostname.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            backlog_batches: stats.queued as u64,
            backlog_bytes: stats.queued_bytes,
        }
    }

    /// Counts sends, retries and acks into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<AgentMetrics>) -> Self {
        self.metrics = metrics;
        self
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
            tracing::info!(
                unsent = self.outbox.stats().queued,
                "ingest did not take every batch before the agent stopped; the rest stay spooled for the next start"
            );
        }
    }

    /// Keeps up to `window` pushes in flight, oldest first; returns only when
    /// `until_empty` and nothing is left, otherwise waits for more. Acks may
    /// arrive in any order. Any retryable failure drops every push in
    /// flight and starts again from the oldest unacknowledged batch on a
    /// fresh connection (ingest discards the resulting duplicates).
    async fn deliver(&mut self, until_empty: bool) {
        let window = self.settings.window.max(1);
        let mut in_flight: FuturesUnordered<InFlight> = FuturesUnordered::new();
        // Highest seq handed to a push since the last restart of the window.
        let mut last_sent: Option<u64> = None;
        loop {
            if self.identity_changed() && self.client.take().is_some() {
                // Pushes in flight finish on the old connection.
                tracing::info!("connecting again with the renewed certificate");
            }
            if in_flight.len() < window {
                let want = window - in_flight.len();
                match self.outbox.unacked_after(last_sent, want) {
                    Ok(entries) => {
                        for entry in entries {
                            if self.client.is_none() {
                                match self.connect().await {
                                    Ok(client) => {
                                        self.client = Some(client);
                                        // Ingest may have restarted.
                                        self.bases.reset();
                                        self.offered = None;
                                    }
                                    Err(e) => {
                                        in_flight.clear();
                                        last_sent = None;
                                        self.failed(entry.seq, error_chain(&e)).await;
                                        break;
                                    }
                                }
                            }
                            let Some(client) = self.client.clone() else {
                                break;
                            };
                            last_sent = Some(entry.seq);
                            self.metrics.sent.inc();
                            let prepared = self.prepare(&entry);
                            if prepared.delta {
                                self.metrics.delta_sent.inc();
                            }
                            in_flight.push(Box::pin(attempt(
                                client,
                                entry.seq,
                                prepared,
                                self.report(),
                                self.settings.request_timeout,
                            )));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the outbox");
                        tokio::time::sleep(self.backoff.next_delay()).await;
                        continue;
                    }
                }
            }
            if in_flight.is_empty() {
                if self.outbox.stats().queued == 0 {
                    if until_empty {
                        return;
                    }
                    self.outbox.pushed().await;
                } else if last_sent.is_some() {
                    // Everything after `last_sent` is finished but an older
                    // batch is not (its finish failed): start over from it.
                    last_sent = None;
                } else if !self.failing {
                    // Queued but nothing readable: do not spin.
                    let _ =
                        tokio::time::timeout(Duration::from_secs(1), self.outbox.pushed()).await;
                }
                // When failing, the connect above already backed off.
                continue;
            }
            let next = tokio::select! {
                done = in_flight.next() => done,
                // A new batch may fill a free slot of the window.
                () = self.outbox.pushed(), if in_flight.len() < window => None,
            };
            let Some(Finished {
                seq,
                outcome,
                offered,
            }) = next
            else {
                continue;
            };
            if self.offered == Some(seq) {
                self.offered = None;
            }
            let result = match outcome {
                Attempt::Acked { kept } => {
                    self.metrics.acked.inc();
                    if let (true, Some(plain)) = (kept, &offered) {
                        self.bases.kept(seq, plain);
                    }
                    self.outbox.ack(seq)
                }
                Attempt::Rejected(reason) => self.outbox.reject(seq, &reason),
                Attempt::Resend(reason) => {
                    // Everything in flight goes again, whole until ingest
                    // keeps a base (the others' answers would be the same).
                    tracing::debug!(seq, reason, "ingest lacks a base; sending whole");
                    self.metrics.delta_resent.inc();
                    self.bases.reset();
                    self.offered = None;
                    in_flight.clear();
                    last_sent = None;
                    continue;
                }
                Attempt::Retry(error) => {
                    in_flight.clear();
                    last_sent = None;
                    self.offered = None;
                    self.failed(seq, error).await;
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
            if let Err(e) = result {
                tracing::error!(seq, error = %e, "cannot finish a delivered batch in the outbox");
            }
        }
    }

    /// The request for `entry`: a delta push when there are bases and it is
    /// smaller, else the batch as spooled; it offers itself as a base when
    /// no other push in flight does.
    fn prepare(&mut self, entry: &OutboxEntry) -> Prepared {
        let mut request = entry.to_request();
        if !self.settings.delta {
            return Prepared {
                request,
                offered: None,
                delta: false,
            };
        }
        let size = request.uncompressed_size;
        let plain = match payload::decompress(request.codec, size, &request.payload, size as usize)
        {
            Ok(plain) => plain,
            Err(e) => {
                // Sent as it is: ingest's verdict quarantines it.
                tracing::warn!(seq = entry.seq, error = %e, "a spooled batch does not decompress");
                return Prepared {
                    request,
                    offered: None,
                    delta: false,
                };
            }
        };
        let mut delta = false;
        if let Ok(coded) = self.bases.encode(entry.seq, &plain)
            && coded.coded_samples > 0
            && let Ok(size) = u32::try_from(coded.plain.len())
            && let Ok(bytes) = payload::compress(payload::DELTA_CODEC, &coded.plain)
            && bytes.len() < request.payload.len()
        {
            request.codec = payload::DELTA_CODEC as i32;
            request.uncompressed_size = size;
            request.payload = bytes;
            request.delta_crc32c = Some(coded.crc32c);
            delta = true;
        }
        let offer = self.offered.is_none();
        if offer {
            self.offered = Some(entry.seq);
            request.offer_base = true;
        }
        Prepared {
            request,
            offered: offer.then_some(plain),
            delta,
        }
    }

    /// A failed delivery: drop the connection, log on change, back off.
    async fn failed(&mut self, seq: u64, error: String) {
        self.client = None;
        self.metrics.retries.inc();
        if !self.failing {
            tracing::warn!(
                seq,
                error,
                "cannot deliver to ingest; retrying with backoff (logged again on recovery)"
            );
        } else {
            tracing::debug!(seq, error, "delivery failed again");
        }
        self.failing = true;
        tokio::time::sleep(self.backoff.next_delay()).await;
    }

    async fn connect(&self) -> Result<IngestClient<Channel>, ConnectError> {
        let s = &self.settings;
        let ca = tokio::fs::read(&s.ca_file)
            .await
            .map_err(|source| ConnectError::ReadTls {
                path: s.ca_file.clone(),
                source,
            })?;
        let identity = s.identity.load()?;
        let client = crate::channel::connect(
            &s.endpoint,
            s.server_name.as_deref(),
            &ca,
            Some(&identity),
            s.connect_timeout,
        )
        .await?;
        tracing::debug!(endpoint = %s.endpoint, "connected to ingest");
        Ok(client)
    }
}

/// One Push call for batch `seq` and what it means for the batch.
async fn attempt(
    mut client: IngestClient<Channel>,
    seq: u64,
    prepared: Prepared,
    report: Report,
    timeout: Duration,
) -> Finished {
    let Prepared {
        request: mut push,
        offered,
        delta,
    } = prepared;
    push.hostname = report.hostname;
    push.agent_version = report.version;
    push.spool_backlog_batches = Some(report.backlog_batches);
    push.spool_backlog_bytes = Some(report.backlog_bytes);
    let mut request = tonic::Request::new(push);
    // Tells ingest too, so it can give up on a request nobody waits for.
    request.set_timeout(timeout);
    let outcome = match tokio::time::timeout(timeout, client.push(request)).await {
        Err(_) => Attempt::Retry(format!("no answer within {timeout:?}")),
        Ok(Ok(response)) => {
            let ack = response.into_inner();
            if ack.seq == seq {
                tracing::debug!(
                    seq = ack.seq,
                    duplicate = ack.duplicate,
                    stored = ack.stored_samples,
                    unknown = ack.unknown_samples,
                    delta,
                    kept = ack.kept,
                    "batch acknowledged"
                );
                Attempt::Acked { kept: ack.kept }
            } else {
                Attempt::Retry(format!("ingest acknowledged seq {} for seq {seq}", ack.seq))
            }
        }
        // InvalidArgument: ingest decoded the batch and refuses it.
        // OutOfRange: the message exceeds ingest's size limit. Neither
        // will ever succeed, so retrying would block the queue for good.
        Ok(Err(status)) if matches!(status.code(), Code::InvalidArgument | Code::OutOfRange) => {
            Attempt::Rejected(format!("{:?}: {}", status.code(), status.message()))
        }
        // Only a delta push is sent again at once: for anything else this
        // answer means something is wrong, and backing off is safer.
        Ok(Err(status)) if delta && status.code() == Code::FailedPrecondition => {
            Attempt::Resend(status.message().to_owned())
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
    };
    Finished {
        seq,
        outcome,
        offered,
    }
}

async fn wait_for_stop(shutdown: &mut watch::Receiver<bool>) {
    // A dropped sender means nobody can ask to stop any more: stop.
    let _ = shutdown.wait_for(|stop| *stop).await;
}
