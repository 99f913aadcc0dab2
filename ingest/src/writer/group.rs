//! Group commit: the writer tasks and the queue pushes wait in.
//!
//! A push hands its validated batch to [`Writers::write`] and waits for the
//! answer. A fixed few writer tasks (`WRITER_TASKS` in `lib.rs`) share one
//! bounded queue: an idle task takes the first push waiting plus everything
//! queued behind it, up to [`MAX_GROUP_BATCHES`] batches or
//! [`MAX_GROUP_ROWS`] rows, writes the group in one transaction and answers
//! every push of it after the commit. Under light load nothing waits on
//! purpose: a push that finds the other tasks idle is written alone at once.
//! Groups grow while tasks are busy, which is exactly when one commit per
//! batch would be the bottleneck; then a small group also lingers a few
//! milliseconds for more ([`MIN_GROUP_ROWS`]), since the store's cost per
//! group, not per row, is what limits throughput there.
//!
//! When the group's transaction fails, every push of it gets the same error;
//! a retryable one makes all of their agents resend, which the `(agent, seq)`
//! records make safe. Admission (`crate::limits`) stays in front: the queue
//! never holds more than the pushes admitted, so its bound is never the one
//! that bites.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{Known, Outcome, Pending, Sightings, StoreError, write_group};
use crate::identity::AgentId;
use crate::metrics::Metrics;
use crate::partitions::PartitionCache;
use crate::validate::{Batch, Seq};

/// Most batches one transaction takes.
pub const MAX_GROUP_BATCHES: usize = 256;
/// Rows after which a group takes no more batches (a group may exceed it by
/// its last batch).
pub const MAX_GROUP_ROWS: usize = 100_000;
/// While another writer task is busy (the store is the bottleneck), a
/// group of fewer rows waits up to [`GROUP_LINGER`] for more pushes. Each
/// group costs the store a fixed share (one COPY per table, a commit); on
/// `make bench` groups of ~1,200 rows grew to ~2,800 and throughput rose
/// by a tenth, with push p99 lower, not higher.
pub const MIN_GROUP_ROWS: usize = 4_000;
pub const GROUP_LINGER: Duration = Duration::from_millis(5);

/// The name of the writers' threads. The writers run on a runtime of their
/// own rather than beside the pushes: a group makes some fifty round trips
/// to the store (a COPY per table, the records, the commit), and on a busy
/// machine each of them waited for a worker thread that was decoding a
/// push before the writer could send the next statement. On 2 cores
/// `make bench` (ingest_rows_per_s, back-to-back runs) went from 151k–158k
/// to 166k–179k rows/s.
pub const WRITER_THREAD: &str = "lasect-writer";

type Reply = Result<Outcome, Arc<StoreError>>;

struct Job {
    pending: Pending,
    reply: oneshot::Sender<Reply>,
}

impl Job {
    fn rows(&self) -> usize {
        self.pending.batch.rows()
    }
}

/// The queue to the writer tasks; cheap to clone. The tasks end once every
/// clone is dropped and the queue is drained.
#[derive(Clone)]
pub struct Writers {
    queue: mpsc::Sender<Job>,
    metrics: Metrics,
}

impl Writers {
    /// Starts `tasks` writer tasks (at least one) behind a queue of
    /// `capacity` pushes (at least one), on a runtime of their own (see
    /// [`WRITER_THREAD`]); `pool` should be theirs alone, so that the
    /// connections they write on are driven by that runtime too.
    ///
    /// `sightings` collects what stored batches say about their instances;
    /// its owner flushes it.
    pub fn spawn(
        pool: Pool,
        partitions: PartitionCache,
        sightings: Sightings,
        metrics: Metrics,
        tasks: usize,
        capacity: usize,
    ) -> std::io::Result<Self> {
        let (queue, receiver) = mpsc::channel(capacity.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let known = Known::default();
        let busy = Arc::new(AtomicUsize::new(0));
        let tasks = tasks.max(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(tasks)
            .thread_name(WRITER_THREAD)
            .enable_all()
            .build()?;
        let writer_metrics = metrics.clone();
        // The runtime lives on its own thread until every writer task has
        // ended, which is once the queue is closed and drained.
        std::thread::Builder::new()
            .name(WRITER_THREAD.to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut running = tokio::task::JoinSet::new();
                    for _ in 0..tasks {
                        running.spawn(run(
                            Arc::clone(&receiver),
                            Store {
                                pool: pool.clone(),
                                partitions: partitions.clone(),
                                known: known.clone(),
                                sightings: sightings.clone(),
                                busy: Arc::clone(&busy),
                            },
                            writer_metrics.clone(),
                        ));
                    }
                    while running.join_next().await.is_some() {}
                });
            })?;
        Ok(Self { queue, metrics })
    }

    /// Stores `batch` as batch `seq` of `agent`, together with whatever
    /// other pushes are waiting; returns once the group is committed.
    pub async fn write(&self, agent: AgentId, seq: Seq, batch: Batch) -> Reply {
        let _writing = self.metrics.writing();
        let (reply, answer) = oneshot::channel();
        let job = Job {
            pending: Pending { agent, seq, batch },
            reply,
        };
        self.queue
            .send(job)
            .await
            .map_err(|_| Arc::new(StoreError::WriterGone))?;
        // A dropped sender means the task died mid-group (it panicked): the
        // batch may or may not be stored, so the agent must resend.
        answer
            .await
            .unwrap_or_else(|_| Err(Arc::new(StoreError::WriterGone)))
    }
}

/// What every writer task writes with.
struct Store {
    pool: Pool,
    partitions: PartitionCache,
    known: Known,
    sightings: Sightings,
    /// Writer tasks writing a group right now.
    busy: Arc<AtomicUsize>,
}

/// One writer task: take a group, write it, answer it; until the queue
/// closes.
async fn run(receiver: Arc<Mutex<mpsc::Receiver<Job>>>, store: Store, metrics: Metrics) {
    while let Some(group) = next_group(&receiver, &store.busy).await {
        let (pending, replies): (Vec<Pending>, Vec<_>) =
            group.into_iter().map(|j| (j.pending, j.reply)).unzip();
        let started = Instant::now();
        store.busy.fetch_add(1, Ordering::Relaxed);
        let result = write_group(
            &store.pool,
            &store.partitions,
            &store.known,
            &store.sightings,
            &pending,
        )
        .await;
        store.busy.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(
            batches = pending.len(),
            rows = pending.iter().map(|p| p.batch.rows()).sum::<usize>(),
            micros = started.elapsed().as_micros() as u64,
            ok = result.is_ok(),
            "group written"
        );
        match result {
            Ok(outcomes) => {
                metrics.group_written();
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    // Ignored error: the push was cancelled (client gone);
                    // its batch is stored and a resend will be a duplicate.
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(error) => {
                let error = Arc::new(error);
                for reply in replies {
                    let _ = reply.send(Err(Arc::clone(&error)));
                }
            }
        }
    }
}

/// Waits for a push, then takes everything queued behind it up to the caps
/// (lingering for more while `busy` says another writer is writing, see
/// [`MIN_GROUP_ROWS`]). `None` once the queue is closed and empty.
async fn next_group(receiver: &Mutex<mpsc::Receiver<Job>>, busy: &AtomicUsize) -> Option<Vec<Job>> {
    // Holding the lock while waiting is the point: idle tasks line up and
    // the first in line takes the next push.
    let mut receiver = receiver.lock().await;
    let first = receiver.recv().await?;
    let mut rows = first.rows();
    let mut group = vec![first];
    let deadline = tokio::time::Instant::now() + GROUP_LINGER;
    while group.len() < MAX_GROUP_BATCHES && rows < MAX_GROUP_ROWS {
        match receiver.try_recv() {
            Ok(job) => {
                rows += job.rows();
                group.push(job);
            }
            Err(_) => {
                // Light load (no other writer busy): write at once.
                if rows >= MIN_GROUP_ROWS || busy.load(Ordering::Relaxed) == 0 {
                    break;
                }
                match tokio::time::timeout_at(deadline, receiver.recv()).await {
                    Ok(Some(job)) => {
                        rows += job.rows();
                        group.push(job);
                    }
                    _ => break,
                }
            }
        }
    }
    Some(group)
}
