//! Where encoded batches wait until ingest acknowledges them.
//!
//! [`Outbox`] is the seam between the collector side, which pushes batches,
//! and the sender, which reads the oldest unacknowledged ones, keeps a window
//! of them in flight and finishes each with [`Outbox::ack`] (ingest stored
//! it) or [`Outbox::reject`] (ingest refused it for good). The agent's only
//! implementation is the durable disk spool, [`crate::spool::Spool`]; the
//! trait keeps the sender independent of how batches are stored.

use std::sync::Arc;

use lasect_proto::payload::CompressedBatch;
use lasect_proto::v1::PushRequest;
use tokio::sync::futures::Notified;

/// One encoded batch with its sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub seq: u64,
    /// 0 = metrics, which may be dropped when the spool is full; higher
    /// priorities (command results, later) are never dropped.
    pub priority: u8,
    pub created_unix_micros: i64,
    pub sample_count: u32,
    pub batch: CompressedBatch,
}

impl OutboxEntry {
    /// The request that delivers this entry.
    pub fn to_request(&self) -> PushRequest {
        PushRequest {
            seq: self.seq,
            created_unix_micros: self.created_unix_micros,
            codec: self.batch.codec as i32,
            uncompressed_size: self.batch.uncompressed_size,
            payload: self.batch.payload.clone(),
            priority: u32::from(self.priority),
            sample_count: self.sample_count,
            ..Default::default()
        }
    }
}

/// State and counters of an outbox. Counters marked "lifetime" survive
/// restarts; the others count since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Batches waiting for an ack, including those dropped for room while
    /// the sender held them (until their ack or abandonment settles them).
    pub queued: usize,
    /// Bytes of spool files on disk.
    pub queued_bytes: u64,
    /// Creation time of the oldest batch waiting for an ack.
    pub oldest_unacked_unix_micros: Option<i64>,
    /// Batches held in memory because the spool could not be written.
    pub held_in_memory: usize,
    /// Whether the last write to the spool failed (disk full or similar).
    pub write_failing: bool,
    pub acked: u64,
    /// Lifetime: batches dropped for room (spool full, or memory bound hit
    /// while the disk was full) or lost before reaching the spool (no seq
    /// could be reserved), and their samples.
    pub dropped_batches: u64,
    pub dropped_samples: u64,
    /// Lifetime: batches ingest refused for good, moved to quarantine.
    pub quarantined: u64,
    /// Lifetime: damaged spool parts found (torn tails, corrupt or vanished records).
    pub corrupt: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox storage failed: {0}")]
    Storage(String),
}

/// Batches between the collector and the sender, delivered in seq order.
pub trait Outbox: Send + Sync + 'static {
    /// Stores an entry (seqs increase from push to push); may drop the
    /// oldest droppable entries to make room.
    fn push(&self, entry: OutboxEntry) -> Result<(), OutboxError>;
    /// Up to `max` unacknowledged entries with a seq above `after` (all when
    /// `None`), oldest first. The sender owns what it is handed until it
    /// acks or rejects it; asking again with `None` means it abandoned every
    /// entry it held (a restart of its window).
    fn unacked_after(
        &self,
        after: Option<u64>,
        max: usize,
    ) -> Result<Vec<Arc<OutboxEntry>>, OutboxError>;
    /// Finishes an entry ingest acknowledged; one dropped for room while in
    /// flight counts as acknowledged, not dropped. Unknown seqs are ignored.
    fn ack(&self, seq: u64) -> Result<(), OutboxError>;
    /// Finishes an entry ingest refused for good, so it cannot block the queue.
    fn reject(&self, seq: u64, reason: &str) -> Result<(), OutboxError>;
    /// Resolves after the next push (immediately if one happened since the
    /// previous wait): the sender waits on this when it has nothing to send.
    /// Counts a metrics batch that was collected but could never be pushed
    /// (no seq could be reserved, e.g. on a full disk) in `dropped_batches`
    /// and `dropped_samples`, like a batch dropped for room.
    fn count_lost(&self, samples: u32, why: &'static str);
    fn pushed(&self) -> Notified<'_>;
    fn stats(&self) -> OutboxStats;
}
