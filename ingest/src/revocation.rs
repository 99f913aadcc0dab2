//! Who may connect: disabled agents and revoked certificate serials, re-read
//! from the store every `agents.refresh_interval_secs`, and the admission of
//! a certificate serial the first time this process sees it.
//!
//! Three places consult it, so a disabled agent or a revoked certificate is
//! cut off within one refresh interval: the TLS client certificate verifier
//! (new handshakes fail with a `certificate_revoked` alert), every RPC
//! (PERMISSION_DENIED), and every open connection of that agent
//! ([`Revocations::closed`] resolves, and the connection's I/O fails, ending
//! whatever calls it carries). The agent's data stays in the store; clearing
//! `disabled_at` lets it back in.
//!
//! # Certificate serials
//! Any certificate signed by the Lasect CA names an agent, but only the
//! serials the store knows for that agent (`agent_certificates`, V21) are let
//! in. After a successful handshake, [`Revocations::admit`] decides, in one
//! transaction that locks the agent's row:
//!
//! - a serial recorded for this agent and not revoked is admitted;
//! - a revoked one (by an operator, superseded by a renewal, or left behind by
//!   a re-enrollment) is refused, as is a serial recorded for another agent;
//! - an unknown serial comes from `lasect-api ca init --agent` run without a
//!   store (enrollment and renewal record theirs in the transaction that signs
//!   them, `ca init --store-dsn` registers its own). It is recorded
//!   (`first_use`) and admitted only if the agent has **no** live certificate
//!   (recorded, not revoked, not expired): the first `ca init` certificate of
//!   an agent works unregistered, but once an agent has a certificate a
//!   different unregistered one is refused, so a copy of an old `ca init`
//!   certificate, or one minted for an id that enrolled since, cannot take
//!   the agent over. To replace a live certificate with a new `ca init` one,
//!   revoke the old serial first or register the new one with `--store-dsn`.
//!
//! An admitted serial is remembered, so reconnections need no store round
//! trip; revocations reach every ingest through the refresh. When the store
//! cannot be asked, an unknown serial is refused (the agent retries).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use deadpool_postgres::Pool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ErrorChain;
use crate::reports::AgentReports;
use crate::writer::Sightings;

/// What the store last said about who is cut off.
#[derive(Debug, Default, PartialEq, Eq)]
struct Refused {
    /// Agent ids with `disabled_at` set.
    agents: HashSet<String>,
    /// Serials (lowercase hex, not expired) revoked by an operator or left
    /// behind by a re-enrollment: their open connections end too.
    serials: HashSet<String>,
    /// Serials replaced by a renewal: refused from now on, but the
    /// connection that renewed may finish (the agent reconnects with the new
    /// certificate by itself); ending it at once could lose the answer.
    superseded: HashSet<String>,
}

#[derive(Clone)]
pub struct Revocations {
    refused: watch::Sender<Arc<Refused>>,
    /// Serials admitted by this process, with their agent.
    admitted: Arc<Mutex<HashMap<String, String>>>,
    /// The store, kept by the first [`Self::load`] for [`Self::admit`].
    store: Arc<OnceLock<Pool>>,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let refused = self.refused.borrow();
        f.debug_struct("Revocations")
            .field("disabled", &refused.agents.len())
            .field("revoked_serials", &refused.serials.len())
            .field("superseded_serials", &refused.superseded.len())
            .finish()
    }
}

impl Default for Revocations {
    fn default() -> Self {
        Self {
            refused: watch::Sender::new(Arc::new(Refused::default())),
            admitted: Arc::default(),
            store: Arc::default(),
        }
    }
}

/// Why [`Revocations::admit`] refused a certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("agent {0:?} is disabled")]
    Disabled(String),
    #[error("certificate {serial} of agent {agent:?} is revoked ({reason})")]
    Revoked {
        agent: String,
        serial: String,
        reason: String,
    },
    #[error("certificate {serial} is recorded for agent {recorded:?}, not {agent:?}")]
    OtherAgent {
        agent: String,
        serial: String,
        recorded: String,
    },
    #[error(
        "certificate {serial} is not registered and agent {agent:?} already has a live \
         certificate; revoke that one first or register this one (`lasect-api ca init \
         --store-dsn`)"
    )]
    NotRegistered { agent: String, serial: String },
    #[error("cannot check certificate {serial} of agent {agent:?}: {reason}")]
    Store {
        agent: String,
        serial: String,
        reason: String,
    },
}

impl Revocations {
    pub fn is_disabled(&self, agent_id: &str) -> bool {
        self.refused.borrow().agents.contains(agent_id)
    }

    /// Whether the serial (lowercase hex) is known to be revoked or superseded.
    pub fn is_revoked(&self, serial: &str) -> bool {
        let refused = self.refused.borrow();
        refused.serials.contains(serial) || refused.superseded.contains(serial)
    }

    /// Replaces the disabled agents (only notifies watchers when it changed).
    pub fn replace(&self, ids: HashSet<String>) {
        let now = self.refused.borrow();
        let (serials, superseded) = (now.serials.clone(), now.superseded.clone());
        drop(now);
        self.set(Refused {
            agents: ids,
            serials,
            superseded,
        });
    }

    /// Adds revoked serials at once, before the next refresh would.
    pub fn revoke_serials(&self, serials: impl IntoIterator<Item = String>) {
        let now = self.refused.borrow();
        let mut serials: HashSet<String> = serials.into_iter().collect();
        serials.extend(now.serials.iter().cloned());
        let (agents, superseded) = (now.agents.clone(), now.superseded.clone());
        drop(now);
        self.set(Refused {
            agents,
            serials,
            superseded,
        });
    }

    fn set(&self, refused: Refused) {
        self.refused.send_if_modified(|current| {
            if **current == refused {
                false
            } else {
                *current = Arc::new(refused);
                true
            }
        });
    }

    /// Resolves once `agent_id` is disabled, `serial` is revoked or
    /// `not_after` has passed: the moment a connection authenticated with
    /// that certificate must end.
    pub fn closed(
        &self,
        agent_id: String,
        serial: String,
        not_after: Option<SystemTime>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let mut refused = self.refused.subscribe();
        async move {
            let expiry = async {
                match not_after {
                    Some(at) => {
                        let left = at.duration_since(SystemTime::now()).unwrap_or_default();
                        tokio::time::sleep(left).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(expiry);
            loop {
                {
                    let now = refused.borrow_and_update();
                    if now.agents.contains(&agent_id) || now.serials.contains(&serial) {
                        return;
                    }
                }
                tokio::select! {
                    changed = refused.changed() => {
                        if changed.is_err() {
                            // Nobody updates the set any more: only expiry can end it.
                            (&mut expiry).await;
                            return;
                        }
                    }
                    () = &mut expiry => return,
                }
            }
        }
    }

    /// Reads the disabled agents and revoked serials once.
    pub async fn load(&self, pool: &Pool) -> Result<(), String> {
        let _ = self.store.set(pool.clone());
        let client = pool.get().await.map_err(|e| ErrorChain(&e).to_string())?;
        let rows = client
            .query("SELECT id FROM agents WHERE disabled_at IS NOT NULL", &[])
            .await
            .map_err(|e| ErrorChain(&e).to_string())?;
        let agents: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
        let rows = client
            .query(
                "SELECT serial, revoke_reason = 'superseded' FROM agent_certificates
                 WHERE revoked_at IS NOT NULL AND not_after > now()",
                &[],
            )
            .await
            .map_err(|e| ErrorChain(&e).to_string())?;
        let (mut serials, mut superseded) = (HashSet::new(), HashSet::new());
        for row in &rows {
            if row.get::<_, bool>(1) {
                superseded.insert(row.get(0));
            } else {
                serials.insert(row.get(0));
            }
        }
        let before = self.refused.borrow().agents.len();
        if agents.len() != before {
            tracing::info!(disabled_agents = agents.len(), "disabled agents changed");
        }
        self.set(Refused {
            agents,
            serials,
            superseded,
        });
        Ok(())
    }

    /// Decides whether a certificate that passed the handshake may be used
    /// (see the module documentation); records a first use.
    pub async fn admit(&self, cert: &lasect_pki::CertInfo) -> Result<(), Refusal> {
        let (agent, serial) = (&cert.agent_id, &cert.serial_hex);
        if self.is_disabled(agent) {
            return Err(Refusal::Disabled(agent.clone()));
        }
        if self.is_revoked(serial) {
            return Err(Refusal::Revoked {
                agent: agent.clone(),
                serial: serial.clone(),
                reason: "revoked".to_owned(),
            });
        }
        let known = self
            .admitted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(serial)
            .cloned();
        if let Some(recorded) = known {
            return if recorded == *agent {
                Ok(())
            } else {
                Err(Refusal::OtherAgent {
                    agent: agent.clone(),
                    serial: serial.clone(),
                    recorded,
                })
            };
        }
        let store_error = |reason: String| Refusal::Store {
            agent: agent.clone(),
            serial: serial.clone(),
            reason,
        };
        let pool = self
            .store
            .get()
            .ok_or_else(|| store_error("the store has not been read yet".to_owned()))?;
        match admit_in_store(pool, cert).await {
            Ok(Ok(())) => {
                self.admitted
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(serial.clone(), agent.clone());
                Ok(())
            }
            Ok(Err(refusal)) => Err(refusal),
            Err(e) => Err(store_error(ErrorChain(e.as_ref()).to_string())),
        }
    }
}

/// The store's verdict on a certificate; the outer error is the store's.
async fn admit_in_store(
    pool: &Pool,
    cert: &lasect_pki::CertInfo,
) -> Result<Result<(), Refusal>, Box<dyn std::error::Error + Send + Sync>> {
    let (agent, serial) = (&cert.agent_id, &cert.serial_hex);
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // The agent's row is the lock that orders two first uses of one id.
    tx.execute(
        "INSERT INTO agents (id) VALUES ($1) ON CONFLICT (id) DO NOTHING",
        &[agent],
    )
    .await?;
    let disabled: bool = tx
        .query_one(
            "SELECT disabled_at IS NOT NULL FROM agents WHERE id = $1 FOR UPDATE",
            &[agent],
        )
        .await?
        .get(0);
    if disabled {
        return Ok(Err(Refusal::Disabled(agent.clone())));
    }
    let row = tx
        .query_opt(
            "SELECT agent_id, revoke_reason FROM agent_certificates WHERE serial = $1",
            &[serial],
        )
        .await?;
    if let Some(row) = row {
        let (recorded, revoked): (String, Option<String>) = (row.get(0), row.get(1));
        if recorded != *agent {
            return Ok(Err(Refusal::OtherAgent {
                agent: agent.clone(),
                serial: serial.clone(),
                recorded,
            }));
        }
        if let Some(reason) = revoked {
            return Ok(Err(Refusal::Revoked {
                agent: agent.clone(),
                serial: serial.clone(),
                reason,
            }));
        }
        return Ok(Ok(()));
    }
    let live: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM agent_certificates
                 WHERE agent_id = $1 AND revoked_at IS NULL AND not_after > now())",
            &[agent],
        )
        .await?
        .get(0);
    if live {
        return Ok(Err(Refusal::NotRegistered {
            agent: agent.clone(),
            serial: serial.clone(),
        }));
    }
    tx.execute(
        "INSERT INTO agent_certificates (serial, agent_id, not_before, not_after, reason)
         VALUES ($1, $2, $3, $4, 'first_use')",
        &[serial, agent, &cert.not_before, &cert.not_after],
    )
    .await?;
    tx.execute(
        "UPDATE agents SET cert_serial = $2, cert_not_after = $3 WHERE id = $1",
        &[agent, serial, &cert.not_after],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(%agent, %serial, "recorded the first use of an unregistered certificate");
    Ok(Ok(()))
}

/// Every `interval`: re-read the disabled agents, store what agents
/// reported and what their batches said about their instances. A failure is
/// logged and retried at the next tick; the last known set stays in force
/// meanwhile.
pub fn spawn_refresh(
    pool: Pool,
    revocations: Revocations,
    reports: AgentReports,
    sightings: Sightings,
    interval: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            ticks.tick().await;
            let result = match revocations.load(&pool).await {
                Ok(()) => match reports.flush(&pool).await {
                    Ok(()) => sightings.flush(&pool).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match result {
                Ok(()) if failing => {
                    tracing::info!("reading disabled agents works again");
                    failing = false;
                }
                Ok(()) => {}
                Err(error) => {
                    if !failing {
                        tracing::warn!(%error, "cannot refresh disabled agents or store agent reports; keeping the last known set");
                    }
                    failing = true;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn closed_resolves_when_the_agent_is_disabled_or_the_certificate_expires() {
        let revocations = Revocations::default();
        let far = SystemTime::now() + Duration::from_secs(3600);
        let closed = tokio::spawn(revocations.closed("a".into(), "01".into(), Some(far)));
        revocations.replace(HashSet::from(["b".to_owned()]));
        tokio::task::yield_now().await;
        assert!(
            !closed.is_finished(),
            "another agent's disabling ends nothing"
        );
        assert!(revocations.is_disabled("b") && !revocations.is_disabled("a"));
        revocations.replace(HashSet::from(["a".to_owned(), "b".to_owned()]));
        tokio::time::timeout(Duration::from_secs(10), closed)
            .await
            .expect("closed after disabling")
            .expect("task");

        // Already disabled: resolves at once; expired: resolves at expiry.
        revocations.closed("a".into(), "01".into(), Some(far)).await;
        let past = SystemTime::now() - Duration::from_secs(1);
        tokio::time::timeout(
            Duration::from_secs(10),
            revocations.closed("c".into(), "03".into(), Some(past)),
        )
        .await
        .expect("closed after expiry");
    }

    #[tokio::test]
    async fn closed_resolves_when_the_serial_is_revoked() {
        let revocations = Revocations::default();
        let far = SystemTime::now() + Duration::from_secs(3600);
        let closed = tokio::spawn(revocations.closed("a".into(), "0a".into(), Some(far)));
        revocations.revoke_serials(["0b".to_owned()]);
        tokio::task::yield_now().await;
        assert!(
            !closed.is_finished(),
            "another serial's revocation ends nothing"
        );
        revocations.revoke_serials(["0a".to_owned()]);
        tokio::time::timeout(Duration::from_secs(10), closed)
            .await
            .expect("closed after revocation")
            .expect("task");
        assert!(revocations.is_revoked("0a") && revocations.is_revoked("0b"));
        // Disabling keeps the revoked serials.
        revocations.replace(HashSet::from(["z".to_owned()]));
        assert!(revocations.is_revoked("0a") && revocations.is_disabled("z"));
    }
}
