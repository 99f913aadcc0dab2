//! The agents whose Control stream this process holds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use lasect_proto::v1::ServerMessage;
use tokio::sync::mpsc;
use tonic::Status;

pub type Outbound = mpsc::Sender<Result<ServerMessage, Status>>;

#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<HashMap<String, Entry>>>,
    generations: Arc<AtomicU64>,
}

struct Entry {
    generation: u64,
    tx: Outbound,
}

impl Registry {
    /// Registers `tx` as the agent's stream, replacing (and so closing) an
    /// older one. Returns the generation to pass to [`Self::remove`].
    pub fn insert(&self, agent: &str, tx: Outbound) -> u64 {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let old = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(agent.to_owned(), Entry { generation, tx });
        if let Some(old) = old {
            // Dropping the sender ends the older stream's response side.
            tracing::info!(%agent, "a new Control stream replaces the older one");
            drop(old);
        }
        generation
    }

    /// Forgets the agent's stream if it is still `generation`.
    pub fn remove(&self, agent: &str, generation: u64) {
        let mut map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if map.get(agent).is_some_and(|e| e.generation == generation) {
            map.remove(agent);
        }
    }

    pub fn is_current(&self, agent: &str, generation: u64) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(agent)
            .is_some_and(|e| e.generation == generation)
    }

    pub fn sender(&self, agent: &str) -> Option<Outbound> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(agent)
            .map(|e| e.tx.clone())
    }

    pub fn agents(&self) -> Vec<String> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes the streams of agents that were disabled.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|agent, _| keep(agent));
    }
}
