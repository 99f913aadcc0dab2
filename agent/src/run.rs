//! The agent's main loop: every `interval_secs`, collect one tick, encode it
//! into a batch with the next seq, and hand it to the outbox; a sender task
//! delivers from there. On shutdown the loop stops collecting and the sender
//! gets a few seconds to flush.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lasect_proto::payload;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::collect::{Collector, SetupError, Tick, now_unix_micros};
use crate::config::AgentConfig;
use crate::outbox::{MemoryOutbox, Outbox, OutboxEntry};
use crate::sender::{Sender, SenderSettings};
use crate::seq::{SeqAllocator, SeqError};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Seq(#[from] SeqError),
    #[error(transparent)]
    Setup(#[from] SetupError),
}

/// Runs the agent until `shutdown` resolves. `config` must have passed
/// [`AgentConfig::validate`].
pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let seq = SeqAllocator::open(&config.state_dir)?;
    let collector = Collector::new(&config.instances, config.collect.host)?;
    let outbox = Arc::new(MemoryOutbox::new(config.sender.max_batches_in_memory));
    let (stop_tx, stop_rx) = watch::channel(false);
    let sender = tokio::spawn(
        Sender::new(SenderSettings::from_config(&config), Arc::clone(&outbox)).run(stop_rx),
    );

    let mut batcher = Batcher {
        collector,
        seq,
        outbox: Arc::clone(&outbox),
        seq_failing: false,
    };
    let mut ticks = tokio::time::interval(Duration::from_secs(config.collect.interval_secs));
    // After a slow tick, keep the spacing rather than bursting to catch up.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = async {
                ticks.tick().await;
                batcher.tick().await;
            } => {}
        }
    }

    tracing::info!("stopping");
    let _ = stop_tx.send(true);
    if let Err(e) = sender.await {
        tracing::error!(error = %e, "sender task failed");
    }
    let stats = outbox.stats();
    tracing::info!(
        acked = stats.acked,
        dropped_overflow = stats.dropped_overflow,
        rejected = stats.rejected,
        unsent = stats.queued,
        "lasect-agent stopped"
    );
    Ok(())
}

/// Turns ticks into outbox entries.
struct Batcher<O: Outbox> {
    collector: Collector,
    seq: SeqAllocator,
    outbox: Arc<O>,
    /// Seq persistence failures are logged on changes only.
    seq_failing: bool,
}

impl<O: Outbox> Batcher<O> {
    async fn tick(&mut self) {
        let Tick { batch, failures } = self.collector.tick().await;
        for (instance, error) in &failures {
            tracing::debug!(%instance, %error, "no samples from instance this tick");
        }
        if batch.samples.is_empty() {
            return;
        }
        let created_unix_micros = now_unix_micros();
        let sample_count = u32::try_from(batch.samples.len()).unwrap_or(u32::MAX);
        let compressed = match payload::encode(&batch) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode batch; dropped it");
                return;
            }
        };
        // A seq is taken only for a batch that will be queued, but a gap
        // would be harmless: ingest needs seqs unique and increasing, not dense.
        let seq = match self.seq.next_seq() {
            Ok(seq) => {
                if self.seq_failing {
                    tracing::info!("sequence file writable again");
                    self.seq_failing = false;
                }
                seq
            }
            Err(e) => {
                if !self.seq_failing {
                    tracing::error!(error = %e, "cannot reserve a batch seq; dropping batches until it works");
                    self.seq_failing = true;
                }
                return;
            }
        };
        let entry = OutboxEntry {
            seq,
            created_unix_micros,
            sample_count,
            batch: compressed,
        };
        if let Err(e) = self.outbox.push(entry) {
            tracing::error!(seq, error = %e, "cannot queue batch; dropped it");
        }
    }
}
