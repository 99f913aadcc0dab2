//! The agents whose Control stream this process holds.
//!
//! One stream per agent. A new stream replaces the open one only if its
//! certificate is not older (by `notBefore`): an agent that reconnects, or
//! reconnects with a renewed certificate, takes over; a copy of an older
//! certificate that is still accepted somewhere (a revocation not yet
//! refreshed, a superseded serial on a connection that predates the renewal)
//! cannot push the legitimate stream out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

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
    cert: StreamCert,
}

/// The certificate a stream was opened with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCert {
    pub serial: String,
    pub not_before: SystemTime,
}

/// A stream refused because the agent's open one has a newer certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "agent {agent} already has a Control stream opened with a newer certificate \
     (serial {open}); this one (serial {refused}) is older"
)]
pub struct OlderCertificate {
    pub agent: String,
    pub open: String,
    pub refused: String,
}

impl Registry {
    /// Whether a stream with `cert` would be taken (see [`Self::insert`]).
    pub fn admits(&self, agent: &str, cert: &StreamCert) -> Result<(), OlderCertificate> {
        let map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        check(agent, map.get(agent), cert)
    }

    /// Registers `tx` as the agent's stream, replacing (and so closing) the
    /// open one unless that one's certificate is newer. Returns the
    /// generation to pass to [`Self::remove`].
    pub fn insert(
        &self,
        agent: &str,
        tx: Outbound,
        cert: StreamCert,
    ) -> Result<u64, OlderCertificate> {
        let mut map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        check(agent, map.get(agent), &cert)?;
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let old = map.insert(
            agent.to_owned(),
            Entry {
                generation,
                tx,
                cert,
            },
        );
        drop(map);
        if let Some(old) = old {
            // Dropping the sender ends the older stream's response side.
            tracing::info!(%agent, serial = %old.cert.serial, "a new Control stream replaces the older one");
            drop(old);
        }
        Ok(generation)
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

fn check(agent: &str, open: Option<&Entry>, cert: &StreamCert) -> Result<(), OlderCertificate> {
    match open {
        Some(e) if e.cert.not_before > cert.not_before => Err(OlderCertificate {
            agent: agent.to_owned(),
            open: e.cert.serial.clone(),
            refused: cert.serial.clone(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cert(serial: &str, secs: u64) -> StreamCert {
        StreamCert {
            serial: serial.to_owned(),
            not_before: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        }
    }

    #[test]
    fn an_older_certificate_never_replaces_the_open_stream() {
        let registry = Registry::default();
        let (new_tx, new_rx) = tokio::sync::mpsc::channel(1);
        let first = registry
            .insert("a", new_tx, cert("0b", 2000))
            .expect("first stream");
        let (old_tx, _old_rx) = tokio::sync::mpsc::channel(1);
        let refused = registry
            .insert("a", old_tx, cert("0a", 1000))
            .expect_err("older certificate");
        assert_eq!(refused.open, "0b");
        assert!(registry.admits("a", &cert("0a", 1000)).is_err());
        assert!(registry.is_current("a", first));
        assert!(!new_rx.is_closed(), "the legitimate stream stays open");

        // The same certificate reconnecting, or a newer one, takes over.
        let (same_tx, _same_rx) = tokio::sync::mpsc::channel(1);
        let second = registry
            .insert("a", same_tx, cert("0b", 2000))
            .expect("same certificate");
        assert!(new_rx.is_closed(), "the replaced stream is closed");
        let (newer_tx, _newer_rx) = tokio::sync::mpsc::channel(1);
        let third = registry
            .insert("a", newer_tx, cert("0c", 3000))
            .expect("newer certificate");
        assert!(!registry.is_current("a", second) && registry.is_current("a", third));
        // Other agents are independent.
        assert!(registry.admits("b", &cert("01", 0)).is_ok());
    }
}
