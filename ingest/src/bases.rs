//! The samples ingest keeps as bases for delta pushes, per agent
//! ([`lasect_proto::bases`] has the protocol and its invariants).
//!
//! Memory is bounded by `[limits] delta_bases_max_bytes`. When a batch
//! would take it past the bound, agents silent for [`IDLE`] lose their
//! bases first; if that is not enough, the agent whose batch it is keeps
//! none (its ack says `kept = false`, so it sends whole batches and offers
//! them again later). Evicting active agents instead would make them churn:
//! agents that push in turn would each lose their bases just before using
//! them, and every push would be sent twice. Bases live in memory only:
//! after a restart every agent's first delta push is answered
//! FAILED_PRECONDITION, which costs one resend.
//!
//! Each agent has its own lock, taken while one of its pushes is rebuilt or
//! kept, so agents never wait for each other; the map of agents is locked
//! only to find or add an agent, and to evict.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use lasect_proto::bases::ReceiverBases;

use crate::identity::AgentId;

/// Every agent's kept bases; cheap to clone.
#[derive(Clone)]
pub struct KeptBases {
    inner: Arc<Inner>,
}

/// How long an agent must have been silent before its bases make room for
/// another's.
pub const IDLE: Duration = Duration::from_secs(600);

struct Inner {
    agents: Mutex<HashMap<AgentId, Arc<AgentBases>>>,
    max_bytes: usize,
    bytes: AtomicUsize,
    /// When this store was made: `last_used` counts milliseconds from it.
    epoch: Instant,
}

struct AgentBases {
    bases: Mutex<ReceiverBases>,
    last_used: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves consistent data (every
    // update is a single insert or removal), so a poisoned lock is used.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl KeptBases {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                agents: Mutex::new(HashMap::new()),
                max_bytes,
                bytes: AtomicUsize::new(0),
                epoch: Instant::now(),
            }),
        }
    }

    /// Bytes of samples kept, all agents together.
    pub fn bytes(&self) -> usize {
        self.inner.bytes.load(Ordering::Relaxed)
    }

    fn now_millis(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn agent(&self, agent: &AgentId, create: bool) -> Option<Arc<AgentBases>> {
        let mut agents = lock(&self.inner.agents);
        let entry = match agents.get(agent) {
            Some(entry) => Arc::clone(entry),
            None if create => {
                let entry = Arc::new(AgentBases {
                    bases: Mutex::new(ReceiverBases::default()),
                    last_used: AtomicU64::new(0),
                });
                agents.insert(agent.clone(), Arc::clone(&entry));
                entry
            }
            None => return None,
        };
        entry.last_used.store(self.now_millis(), Ordering::Relaxed);
        Some(entry)
    }

    /// Runs `f` with `agent`'s bases (empty when none are kept).
    pub fn with<R>(&self, agent: &AgentId, f: impl FnOnce(&ReceiverBases) -> R) -> R {
        match self.agent(agent, false) {
            Some(entry) => f(&lock(&entry.bases)),
            None => f(&ReceiverBases::default()),
        }
    }

    /// Keeps the samples of `agent`'s batch `seq` if they fit (see the
    /// module docs); returns whether they are kept.
    pub fn keep(&self, agent: &AgentId, seq: u64, samples: &[Arc<[u8]>]) -> bool {
        let Some(entry) = self.agent(agent, true) else {
            return false;
        };
        {
            let mut bases = lock(&entry.bases);
            let before = bases.bytes();
            bases.keep(seq, samples);
            let after = bases.bytes();
            if after >= before {
                self.inner
                    .bytes
                    .fetch_add(after - before, Ordering::Relaxed);
            } else {
                self.inner
                    .bytes
                    .fetch_sub(before - after, Ordering::Relaxed);
            }
        }
        if self.bytes() <= self.inner.max_bytes {
            return true;
        }
        self.evict_idle();
        if self.bytes() <= self.inner.max_bytes {
            return true;
        }
        self.forget(agent);
        false
    }

    /// Drops the bases of agents silent for [`IDLE`].
    fn evict_idle(&self) {
        let now = self.now_millis();
        let idle = u64::try_from(IDLE.as_millis()).unwrap_or(u64::MAX);
        let mut agents = lock(&self.inner.agents);
        let before = agents.len();
        agents.retain(|_, entry| {
            let silent = now.saturating_sub(entry.last_used.load(Ordering::Relaxed));
            if silent < idle {
                return true;
            }
            let freed = lock(&entry.bases).bytes();
            self.inner.bytes.fetch_sub(freed, Ordering::Relaxed);
            false
        });
        let evicted = before - agents.len();
        if evicted > 0 {
            tracing::debug!(
                evicted,
                kept_bytes = self.bytes(),
                "dropped the delta bases of silent agents"
            );
        }
    }

    /// Forgets `agent`'s bases (a disabled agent).
    pub fn forget(&self, agent: &AgentId) {
        if let Some(entry) = lock(&self.inner.agents).remove(agent) {
            let freed = lock(&entry.bases).bytes();
            self.inner.bytes.fetch_sub(freed, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lasect_proto::v1::sample::Family;
    use lasect_proto::v1::{HostCpu, Sample};
    use prost::Message as _;

    fn sample(bytes: usize) -> Arc<[u8]> {
        let encoded = Sample {
            instance: "x".repeat(bytes),
            time_unix_micros: 1,
            family: Some(Family::HostCpu(HostCpu::default())),
        }
        .encode_to_vec();
        Arc::from(encoded)
    }

    #[test]
    fn memory_stays_bounded_and_agents_that_fit_keep_their_bases() {
        let kept = KeptBases::new(9_000);
        let agents: Vec<AgentId> = (0..6)
            .map(|i| AgentId::parse(&format!("a{i}")).expect("id"))
            .collect();
        let mut fitted = Vec::new();
        for agent in &agents[..5] {
            fitted.push(kept.keep(agent, 1, &[sample(2_000)]));
            assert!(kept.bytes() <= 9_000, "{}", kept.bytes());
        }
        // Four fit; the fifth keeps nothing rather than evicting an active
        // agent (which would make the agents churn).
        assert_eq!(fitted, [true, true, true, true, false]);
        assert!(kept.with(&agents[0], |b| b.find(1, 0).is_some()));
        assert!(kept.with(&agents[4], |b| b.find(1, 0).is_none()));
        // With room again, the ones kept go on keeping newer batches.
        kept.forget(&agents[1]);
        assert!(kept.keep(&agents[0], 2, &[sample(2_000)]));
        assert!(kept.with(&agents[0], |b| b.find(2, 0).is_some()));
        // An agent over the bound on its own keeps nothing.
        assert!(!kept.keep(&agents[5], 1, &[sample(20_000)]));
        assert!(kept.with(&agents[5], |b| b.find(1, 0).is_none()));
        let left: usize = agents.iter().map(|a| kept.with(a, |b| b.bytes())).sum();
        assert_eq!(kept.bytes(), left, "the byte count follows every change");
    }
}
