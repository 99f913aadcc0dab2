//! Disabled agents: the set of agent ids whose `agents.disabled_at` is set,
//! re-read from the store every `agents.refresh_interval_secs`.
//!
//! Three places consult it, so a disabled agent is cut off within one
//! refresh interval: the TLS client certificate verifier (new handshakes
//! fail with a `certificate_revoked` alert), every RPC (PERMISSION_DENIED),
//! and every open connection of that agent ([`Revocations::closed`] resolves, and the
//! connection's I/O fails, ending whatever calls it carries). The agent's
//! data stays in the store; clearing `disabled_at` lets it back in.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use deadpool_postgres::Pool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ErrorChain;
use crate::reports::AgentReports;
use crate::writer::Sightings;

#[derive(Clone)]
pub struct Revocations {
    disabled: watch::Sender<Arc<HashSet<String>>>,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field("disabled", &self.disabled.borrow().len())
            .finish()
    }
}

impl Default for Revocations {
    fn default() -> Self {
        Self {
            disabled: watch::Sender::new(Arc::new(HashSet::new())),
        }
    }
}

impl Revocations {
    pub fn is_disabled(&self, agent_id: &str) -> bool {
        self.disabled.borrow().contains(agent_id)
    }

    /// Replaces the set (only notifies watchers when it changed).
    pub fn replace(&self, ids: HashSet<String>) {
        self.disabled.send_if_modified(|current| {
            if **current == ids {
                false
            } else {
                *current = Arc::new(ids);
                true
            }
        });
    }

    /// Resolves once `agent_id` is disabled or `not_after` has passed: the
    /// moment a connection authenticated as that agent must end.
    pub fn closed(
        &self,
        agent_id: String,
        not_after: Option<SystemTime>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let mut disabled = self.disabled.subscribe();
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
                if disabled.borrow_and_update().contains(&agent_id) {
                    return;
                }
                tokio::select! {
                    changed = disabled.changed() => {
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

    /// Reads the disabled agents once.
    pub async fn load(&self, pool: &Pool) -> Result<(), String> {
        let client = pool.get().await.map_err(|e| ErrorChain(&e).to_string())?;
        let rows = client
            .query("SELECT id FROM agents WHERE disabled_at IS NOT NULL", &[])
            .await
            .map_err(|e| ErrorChain(&e).to_string())?;
        let ids: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
        let before = self.disabled.borrow().len();
        if ids.len() != before {
            tracing::info!(disabled_agents = ids.len(), "disabled agents changed");
        }
        self.replace(ids);
        Ok(())
    }
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
        let closed = tokio::spawn(revocations.closed("a".into(), Some(far)));
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
        revocations.closed("a".into(), Some(far)).await;
        let past = SystemTime::now() - Duration::from_secs(1);
        tokio::time::timeout(
            Duration::from_secs(10),
            revocations.closed("c".into(), Some(past)),
        )
        .await
        .expect("closed after expiry");
    }
}
