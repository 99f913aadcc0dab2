//! Admission control: how much work ingest takes on at once.
//!
//! Every push must hold a permit while it is decoded, waits for a store
//! connection and is written. Two bounds apply together:
//!
//! - `max_inflight_batches` pushes at once, so a slow or stalled store makes
//!   a bounded queue (at most that many requests wait for the pool) rather
//!   than an ever-growing one;
//! - `max_inflight_bytes` of payload at once, counted as the compressed
//!   bytes already received plus the declared decompressed size (checked
//!   against `max_uncompressed_bytes` before this), so memory stays bounded
//!   whatever mix of batch sizes arrives.
//!
//! Requests still being received are not admitted yet; they are bounded
//! by `max_message_bytes` each and by the HTTP/2 streams one connection may
//! open (see `MAX_STREAMS_PER_CONNECTION` in `lib.rs`).
//!
//! A push that finds either bound reached is not queued: it is refused at
//! once with `RESOURCE_EXHAUSTED`, which agents retry with backoff while
//! their spool keeps the batch. Permits are released when the push ends,
//! however it ends (the permit is dropped with the request's future).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::config::Limits;

/// Bytes are counted in units of this size, so the byte budget fits the
/// semaphore's permit count and a push's cost fits a `u32`.
const BYTE_UNIT: usize = 1024;

/// Shared admission state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Admission {
    batches: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    byte_units: u32,
    max_batches: usize,
}

/// Held for the life of an admitted push.
#[derive(Debug)]
pub struct Permit {
    _batch: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

/// Why a push was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Saturated {
    #[error("ingest is busy ({0} pushes in flight), retry later")]
    Batches(usize),
    #[error("ingest is busy (payload memory budget in use), retry later")]
    Bytes,
}

impl Admission {
    pub fn new(limits: &Limits) -> Self {
        let units = (limits.max_inflight_bytes / BYTE_UNIT).clamp(1, u32::MAX as usize);
        Self {
            batches: Arc::new(Semaphore::new(limits.max_inflight_batches)),
            bytes: Arc::new(Semaphore::new(units)),
            byte_units: units as u32,
            max_batches: limits.max_inflight_batches,
        }
    }

    /// Admits a push holding `bytes` (compressed plus declared decompressed
    /// size), or says why not, without waiting.
    pub fn try_admit(&self, bytes: u64) -> Result<Permit, Saturated> {
        let batch = self
            .batches
            .clone()
            .try_acquire_owned()
            .map_err(|_| Saturated::Batches(self.max_batches))?;
        // A push larger than the whole budget (only possible when the
        // config allows it) takes the whole budget rather than never passing.
        let units = bytes.div_ceil(BYTE_UNIT as u64).max(1);
        let units = u32::try_from(units)
            .unwrap_or(u32::MAX)
            .min(self.byte_units);
        let bytes = match self.bytes.clone().try_acquire_many_owned(units) {
            Ok(permit) => permit,
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => {
                return Err(Saturated::Bytes);
            }
        };
        Ok(Permit {
            _batch: batch,
            _bytes: bytes,
        })
    }

    /// Pushes admitted right now.
    pub fn in_flight(&self) -> usize {
        self.max_batches - self.batches.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(batches: usize, bytes: usize) -> Limits {
        Limits {
            max_inflight_batches: batches,
            max_inflight_bytes: bytes,
            ..Limits::default()
        }
    }

    #[test]
    fn batch_count_is_bounded_and_released_on_drop() {
        let admission = Admission::new(&limits(2, 1 << 20));
        let a = admission.try_admit(10).expect("first fits");
        let _b = admission.try_admit(10).expect("second fits");
        assert_eq!(admission.in_flight(), 2);
        assert_eq!(admission.try_admit(10).err(), Some(Saturated::Batches(2)));
        drop(a);
        assert_eq!(admission.in_flight(), 1);
        admission
            .try_admit(10)
            .expect("room again after a push ended");
    }

    #[test]
    fn bytes_are_bounded() {
        let admission = Admission::new(&limits(100, 100 * 1024));
        let big = admission.try_admit(60 * 1024).expect("fits the budget");
        assert_eq!(admission.try_admit(60 * 1024).err(), Some(Saturated::Bytes));
        // The refused push did not keep its batch permit.
        assert_eq!(admission.in_flight(), 1);
        let _small = admission.try_admit(40 * 1024).expect("the rest fits");
        drop(big);
        admission
            .try_admit(60 * 1024)
            .expect("released bytes are reusable");
    }

    #[test]
    fn a_push_above_the_whole_budget_takes_all_of_it() {
        let admission = Admission::new(&limits(4, 4096));
        let all = admission
            .try_admit(u64::MAX)
            .expect("alone, it is admitted");
        assert_eq!(admission.try_admit(1).err(), Some(Saturated::Bytes));
        drop(all);
        admission.try_admit(1).expect("budget back");
    }
}
