//! Where encoded batches wait until ingest acknowledges them.
//!
//! [`Outbox`] is the seam for the durable disk spool: the collector side
//! pushes, the sender peeks the oldest unacknowledged entry, sends it, and
//! removes it with [`Outbox::ack`] only once ingest confirmed it (or with
//! [`Outbox::reject`] when ingest refused it as invalid). For now
//! [`MemoryOutbox`] implements it with a bounded queue: when ingest is away
//! for longer than the bound, the oldest batches are dropped and counted.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use lasect_proto::payload::CompressedBatch;
use lasect_proto::v1::PushRequest;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

/// One encoded batch with its sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub seq: u64,
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
            priority: 0,
            sample_count: self.sample_count,
        }
    }
}

/// Counters of an outbox since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Entries waiting for an ack.
    pub queued: usize,
    pub acked: u64,
    /// Oldest entries dropped because the outbox was full.
    pub dropped_overflow: u64,
    /// Entries ingest refused as invalid.
    pub rejected: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// Reserved for outboxes backed by storage; the memory outbox never fails.
    #[error("outbox storage failed: {0}")]
    Storage(String),
}

/// Queue of batches between the collector and the sender. Entries are
/// pushed in increasing seq order and delivered oldest first.
pub trait Outbox: Send + Sync + 'static {
    /// Appends an entry; may drop the oldest entries to make room.
    fn push(&self, entry: OutboxEntry) -> Result<(), OutboxError>;
    /// The oldest entry not yet acknowledged, if any.
    fn peek_unacked(&self) -> Result<Option<Arc<OutboxEntry>>, OutboxError>;
    /// Removes the entry ingest acknowledged. Unknown seqs (for example an
    /// entry dropped for room while it was in flight) are ignored.
    fn ack(&self, seq: u64) -> Result<(), OutboxError>;
    /// Removes an entry ingest refused, so it cannot block the queue.
    fn reject(&self, seq: u64, reason: &str) -> Result<(), OutboxError>;
    /// Resolves after the next push (immediately if one happened since the
    /// previous wait): the sender waits on this when it finds nothing to send.
    fn pushed(&self) -> Notified<'_>;
    fn stats(&self) -> OutboxStats;
}

/// Bounded in-memory [`Outbox`].
#[derive(Debug)]
pub struct MemoryOutbox {
    capacity: usize,
    state: Mutex<State>,
    pushed: Notify,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Arc<OutboxEntry>>,
    stats: OutboxStats,
}

impl MemoryOutbox {
    /// An outbox holding at most `capacity` (at least 1) entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
            pushed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue half-updated
        // (every mutation is a single VecDeque call), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remove(&self, seq: u64) -> bool {
        let mut state = self.lock();
        match state.queue.iter().position(|e| e.seq == seq) {
            Some(i) => {
                state.queue.remove(i);
                state.stats.queued = state.queue.len();
                true
            }
            None => false,
        }
    }
}

impl Outbox for MemoryOutbox {
    fn push(&self, entry: OutboxEntry) -> Result<(), OutboxError> {
        let mut state = self.lock();
        while state.queue.len() >= self.capacity {
            let Some(dropped) = state.queue.pop_front() else {
                break;
            };
            state.stats.dropped_overflow += 1;
            let total = state.stats.dropped_overflow;
            // One line per drop would flood the log during a long outage.
            if total == 1 || total.is_multiple_of(100) {
                tracing::warn!(
                    seq = dropped.seq,
                    dropped_total = total,
                    capacity = self.capacity,
                    "outbox full, dropped the oldest batch"
                );
            }
        }
        state.queue.push_back(Arc::new(entry));
        state.stats.queued = state.queue.len();
        drop(state);
        self.pushed.notify_one();
        Ok(())
    }

    fn peek_unacked(&self) -> Result<Option<Arc<OutboxEntry>>, OutboxError> {
        Ok(self.lock().queue.front().cloned())
    }

    fn ack(&self, seq: u64) -> Result<(), OutboxError> {
        if self.remove(seq) {
            self.lock().stats.acked += 1;
        }
        Ok(())
    }

    fn reject(&self, seq: u64, reason: &str) -> Result<(), OutboxError> {
        if self.remove(seq) {
            let mut state = self.lock();
            state.stats.rejected += 1;
            tracing::error!(
                seq,
                reason,
                rejected_total = state.stats.rejected,
                "ingest refused a batch as invalid; dropped it"
            );
        }
        Ok(())
    }

    fn pushed(&self) -> Notified<'_> {
        self.pushed.notified()
    }

    fn stats(&self) -> OutboxStats {
        self.lock().stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lasect_proto::v1::Codec;

    fn entry(seq: u64) -> OutboxEntry {
        OutboxEntry {
            seq,
            created_unix_micros: 0,
            sample_count: 1,
            batch: CompressedBatch {
                codec: Codec::Lz4,
                uncompressed_size: 0,
                payload: Vec::new(),
            },
        }
    }

    fn head(o: &MemoryOutbox) -> Option<u64> {
        o.peek_unacked().expect("peek").map(|e| e.seq)
    }

    #[test]
    fn overflow_drops_oldest_and_counts() {
        let o = MemoryOutbox::new(3);
        for seq in 1..=5 {
            o.push(entry(seq)).expect("push");
        }
        let stats = o.stats();
        assert_eq!(stats.queued, 3);
        assert_eq!(stats.dropped_overflow, 2);
        assert_eq!(head(&o), Some(3));
        o.ack(3).expect("ack");
        o.ack(4).expect("ack");
        o.ack(5).expect("ack");
        assert_eq!(head(&o), None);
        assert_eq!(o.stats().acked, 3);
    }

    #[test]
    fn ack_only_removes_the_named_entry() {
        let o = MemoryOutbox::new(10);
        o.push(entry(1)).expect("push");
        o.push(entry(2)).expect("push");
        // An ack for an entry that was already dropped changes nothing.
        o.ack(99).expect("ack");
        assert_eq!(head(&o), Some(1));
        assert_eq!(o.stats().acked, 0);
        o.reject(1, "bad").expect("reject");
        assert_eq!(head(&o), Some(2));
        let stats = o.stats();
        assert_eq!((stats.queued, stats.rejected), (1, 1));
    }

    #[tokio::test]
    async fn push_wakes_a_waiter_even_if_it_came_first() {
        let o = MemoryOutbox::new(10);
        // Push before waiting: the permit is kept, so the wait returns at once.
        o.push(entry(1)).expect("push");
        o.pushed().await;
        assert_eq!(head(&o), Some(1));
    }
}
