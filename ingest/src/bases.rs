//! The samples ingest keeps as bases for delta pushes, per agent
//! ([`lasect_proto::bases`] has the protocol and its invariants).
//!
//! Memory is bounded by `[limits] delta_bases_max_bytes`: past it, the
//! agents that pushed least recently lose their bases (their next delta
//! push gets FAILED_PRECONDITION and they send whole batches until a new
//! base is kept). Bases live in memory only: after a restart every agent's
//! first delta push is answered the same way, which costs one resend.
//!
//! Each agent has its own lock, taken while one of its pushes is rebuilt or
//! kept, so agents never wait for each other; the map of agents is locked
//! only to find or add an agent, and to evict.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use lasect_proto::bases::ReceiverBases;

use crate::identity::AgentId;

/// Every agent's kept bases; cheap to clone.
#[derive(Clone)]
pub struct KeptBases {
    inner: Arc<Inner>,
}

struct Inner {
    agents: Mutex<HashMap<AgentId, Arc<AgentBases>>>,
    max_bytes: usize,
    bytes: AtomicUsize,
    /// A logical clock for least-recently-used eviction.
    clock: AtomicU64,
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
                clock: AtomicU64::new(0),
            }),
        }
    }

    /// Bytes of samples kept, all agents together.
    pub fn bytes(&self) -> usize {
        self.inner.bytes.load(Ordering::Relaxed)
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
        let now = self.inner.clock.fetch_add(1, Ordering::Relaxed);
        entry.last_used.store(now, Ordering::Relaxed);
        Some(entry)
    }

    /// Runs `f` with `agent`'s bases (empty when none are kept).
    pub fn with<R>(&self, agent: &AgentId, f: impl FnOnce(&ReceiverBases) -> R) -> R {
        match self.agent(agent, false) {
            Some(entry) => f(&lock(&entry.bases)),
            None => f(&ReceiverBases::default()),
        }
    }

    /// Keeps the samples of `agent`'s batch `seq`, then evicts other agents'
    /// bases while over the memory bound.
    pub fn keep(&self, agent: &AgentId, seq: u64, samples: &[Arc<[u8]>]) {
        let Some(entry) = self.agent(agent, true) else {
            return;
        };
        {
            let mut bases = lock(&entry.bases);
            let before = bases.bytes();
            bases.keep(seq, samples);
            let after = bases.bytes();
            if after >= before {
                self.inner.bytes.fetch_add(after - before, Ordering::Relaxed);
            } else {
                self.inner.bytes.fetch_sub(before - after, Ordering::Relaxed);
            }
        }
        if self.bytes() > self.inner.max_bytes {
            self.evict(agent);
        }
    }

    /// Drops the least recently used agents' bases until under 90% of the
    /// bound (so eviction does not run at every push); `keeping`'s last, when
    /// they alone are over the bound.
    fn evict(&self, keeping: &AgentId) {
        let target = self.inner.max_bytes / 10 * 9;
        let mut agents = lock(&self.inner.agents);
        let mut by_age: Vec<(u64, AgentId)> = agents
            .iter()
            .filter(|(id, _)| *id != keeping)
            .map(|(id, e)| (e.last_used.load(Ordering::Relaxed), id.clone()))
            .collect();
        by_age.sort_unstable_by_key(|(used, _)| *used);
        let mut evicted = 0usize;
        // The agent that just kept goes last.
        by_age.push((u64::MAX, keeping.clone()));
        for (_, id) in by_age {
            if self.bytes() <= target {
                break;
            }
            if let Some(entry) = agents.remove(&id) {
                let freed = lock(&entry.bases).bytes();
                self.inner.bytes.fetch_sub(freed, Ordering::Relaxed);
                evicted += 1;
            }
        }
        tracing::debug!(
            evicted,
            kept_bytes = self.bytes(),
            "evicted delta bases of the least recently seen agents"
        );
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
    fn memory_stays_bounded_and_the_least_recent_agents_go_first() {
        let kept = KeptBases::new(10_000);
        let agents: Vec<AgentId> = (0..6)
            .map(|i| AgentId::parse(&format!("a{i}")).expect("id"))
            .collect();
        for (i, agent) in agents[..5].iter().enumerate() {
            kept.keep(agent, 1, &[sample(2_000)]);
            assert!(kept.bytes() <= 10_000, "after agent {i}: {}", kept.bytes());
        }
        // The bound was passed at the fifth agent: the first one went.
        assert!(kept.with(&agents[0], |b| b.find(1, 0).is_none()));
        assert!(kept.with(&agents[1], |b| b.find(1, 0).is_some()));
        assert!(kept.with(&agents[4], |b| b.find(1, 0).is_some()));
        // An agent over the bound on its own keeps nothing either.
        kept.keep(&agents[5], 1, &[sample(20_000)]);
        assert!(kept.bytes() <= 10_000, "{}", kept.bytes());
        assert!(kept.with(&agents[5], |b| b.find(1, 0).is_none()));
        kept.forget(&agents[4]);
        assert!(kept.with(&agents[4], |b| b.find(1, 0).is_none()));
        let left: usize = agents
            .iter()
            .map(|a| kept.with(a, |b| b.bytes()))
            .sum();
        assert_eq!(kept.bytes(), left, "the byte count follows every change");
    }
}
