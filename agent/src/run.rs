//! The agent's main loop: every second (`collect::schedule::TICK`), collect
//! the families that are due (each has its own interval), encode them
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
use crate::identity::ClientIdentity;
use crate::metrics::AgentMetrics;
use crate::outbox::{Outbox, OutboxEntry};
use crate::renew::{RenewSettings, Renewer};
use crate::sender::{Sender, SenderSettings};
use crate::seq::{SeqAllocator, SeqError};
use crate::spool::{Spool, SpoolError, SpoolOptions};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Seq(#[from] SeqError),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("cannot listen for metrics on {addr}: {source}")]
    MetricsListen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the agent until `shutdown` resolves. `config` must have passed
/// [`AgentConfig::validate`].
pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let seq = SeqAllocator::open(&config.state_dir)?;
    let collector = Collector::new(&config.instances, &config.collect)?
        .with_logs(&config.state_dir, &config.logs);
    let outbox = Arc::new(Spool::open(
        &config.state_dir,
        SpoolOptions::from_config(&config),
    )?);
    let metrics = Arc::new(AgentMetrics::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    if let Some(addr) = config.metrics.listen {
        let listener = crate::metrics::bind(addr)
            .await
            .map_err(|source| RunError::MetricsListen { addr, source })?;
        tracing::info!(%addr, "serving agent metrics at /metrics");
        let mut stop = stop_rx.clone();
        let serve = crate::metrics::serve(
            listener,
            Arc::clone(&metrics),
            Arc::clone(&outbox),
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        );
        tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "metrics endpoint failed");
            }
        });
    }
    let housekeeping = {
        let spool = Arc::clone(&outbox);
        let mut stop = stop_rx.clone();
        // Often enough for the fsync interval and the state file (1 s).
        let period = match config.spool.fsync_interval_ms {
            Some(ms) => Duration::from_millis(ms.clamp(1, 200)),
            None => Duration::from_millis(200),
        };
        tokio::spawn(async move {
            let mut every = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = every.tick() => spool.housekeeping(),
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        })
    };
    let settings = SenderSettings::from_config(&config);
    let mut sender =
        Sender::new(settings.clone(), Arc::clone(&outbox)).with_metrics(Arc::clone(&metrics));
    tracing::info!(identity = %settings.identity.describe(), "client certificate");
    let renewer = if let ClientIdentity::Enrolled(store) = &settings.identity {
        let (generation, changes) = watch::channel(0u64);
        sender = sender.with_identity_changes(changes);
        let renewer = Renewer::new(
            RenewSettings {
                endpoint: settings.endpoint.clone(),
                server_name: settings.server_name.clone(),
                ca_file: settings.ca_file.clone(),
                store: store.clone(),
            },
            generation,
        );
        Some(tokio::spawn(renewer.run(stop_rx.clone())))
    } else {
        None
    };
    let (assignments_tx, assignments) = tokio::sync::mpsc::unbounded_channel();
    let mut health_events = None;
    let control = config.control.enabled.then(|| {
        let client = crate::control::ControlClient::new(&config).with_assignments(assignments_tx);
        health_events = Some(client.events());
        tokio::spawn(client.run(stop_rx.clone()))
    });
    let sender = tokio::spawn(sender.run(stop_rx));

    let mut batcher = Batcher {
        collector,
        seq,
        outbox: Arc::clone(&outbox),
        metrics: Arc::clone(&metrics),
        seq_failing: false,
        assignments,
        health_events,
        ticks_since_health: 0,
    };
    let mut ticks = tokio::time::interval(crate::collect::schedule::TICK);
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
    let _ = housekeeping.await;
    if let Some(control) = control {
        let _ = control.await;
    }
    if let Some(renewer) = renewer {
        let _ = renewer.await;
    }
    outbox.close();
    let stats = outbox.stats();
    tracing::info!(
        acked = stats.acked,
        dropped_batches = stats.dropped_batches,
        quarantined = stats.quarantined,
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
    metrics: Arc<AgentMetrics>,
    /// Seq persistence failures are logged on changes only.
    seq_failing: bool,
    /// Instances assigned through the API, from the Control stream.
    assignments: tokio::sync::mpsc::UnboundedReceiver<Vec<(String, crate::config::Dsn)>>,
    /// Where instance health goes (the Control stream), when it is enabled.
    health_events: Option<tokio::sync::mpsc::Sender<lasect_proto::v1::AgentMessage>>,
    ticks_since_health: u32,
}

/// Ticks (seconds) between health reports on the Control stream.
const HEALTH_EVERY_TICKS: u32 = 15;

impl<O: Outbox> Batcher<O> {
    /// Every [`HEALTH_EVERY_TICKS`]: each instance's state, as the collector
    /// last saw it (no extra connection). Dropped, not queued, when the
    /// stream is backed up: the next report supersedes it.
    fn report_health(&mut self) {
        use lasect_proto::v1::{AgentMessage, InstanceHealth, agent_message};
        let Some(tx) = &self.health_events else {
            return;
        };
        self.ticks_since_health += 1;
        if self.ticks_since_health < HEALTH_EVERY_TICKS {
            return;
        }
        self.ticks_since_health = 0;
        for (name, healthy, error, version) in self.collector.health() {
            let Some(up) = healthy else { continue };
            let msg = AgentMessage {
                body: Some(agent_message::Body::Health(InstanceHealth {
                    instance: name.to_owned(),
                    up,
                    error: error.unwrap_or_default().to_owned(),
                    checked_unix_micros: now_unix_micros(),
                    server_version_num: version.unwrap_or(0),
                    in_recovery: false,
                })),
            };
            let _ = tx.try_send(msg);
        }
    }

    async fn tick(&mut self) {
        while let Ok(assigned) = self.assignments.try_recv() {
            self.collector.set_assigned(assigned);
        }
        let Tick { batch, failures } = self.collector.tick().await;
        self.report_health();
        for (instance, error) in &failures {
            self.metrics.collect_errors.inc();
            tracing::debug!(%instance, %error, "no samples from instance this tick");
        }
        if batch.samples.is_empty() {
            // Log lines read without events (e.g. only skipped ones) are done.
            self.collector.spooled();
            return;
        }
        let created_unix_micros = now_unix_micros();
        let sample_count = u32::try_from(batch.samples.len()).unwrap_or(u32::MAX);
        let compressed = match payload::encode(&batch) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode batch; dropped it");
                self.outbox
                    .count_lost(sample_count, "the batch could not be encoded");
                self.collector.not_spooled();
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
                self.outbox
                    .count_lost(sample_count, "no batch seq could be reserved");
                self.collector.not_spooled();
                return;
            }
        };
        let entry = OutboxEntry {
            seq,
            priority: 0,
            created_unix_micros,
            sample_count,
            batch: compressed,
        };
        if let Err(e) = self.outbox.push(entry) {
            tracing::error!(seq, error = %e, "cannot queue batch; dropped it");
            self.outbox
                .count_lost(sample_count, "the batch could not be queued");
            self.collector.not_spooled();
        } else {
            tracing::debug!(seq, sample_count, "batch spooled");
            self.collector.spooled();
        }
    }
}
