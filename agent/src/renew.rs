//! Renewing the enrolled certificate before it expires.
//!
//! The renewal is due at a random point between 55 % and 66 % of the
//! certificate's life (`not_after - not_before`), so a fleet enrolled at the
//! same moment does not renew in one wave and a failing renewal has a third
//! of the life left for retries. A renewal makes a new key pair, sends a CSR
//! for the same agent id over mutual TLS with the current certificate,
//! stores the answer atomically ([`IdentityStore::save`]) and bumps the
//! generation watched by the sender, which connects again with the new
//! certificate (no restart). Failures are retried with exponential backoff
//! and jitter, capped at a tenth of the life (at most 5 minutes).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use lasect_pki::{CertInfo, new_agent_csr};
use lasect_proto::v1::RenewRequest;
use tokio::sync::watch;

use crate::backoff::Backoff;
use crate::channel::{connect, error_chain};
use crate::identity::{IdentityStore, Pair};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Wait between attempts to read an unreadable identity.
const UNREADABLE_RETRY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct RenewSettings {
    pub endpoint: String,
    pub server_name: Option<String>,
    pub ca_file: PathBuf,
    pub store: IdentityStore,
}

pub struct Renewer {
    settings: RenewSettings,
    generation: watch::Sender<u64>,
}

impl Renewer {
    /// `generation` is bumped after each stored renewal.
    pub fn new(settings: RenewSettings, generation: watch::Sender<u64>) -> Self {
        Self {
            settings,
            generation,
        }
    }

    /// Renews whenever due, until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        tokio::select! {
            () = self.renew_forever() => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }

    async fn renew_forever(&self) {
        loop {
            let (pair, info) = match self.current() {
                Ok(current) => current,
                Err(error) => {
                    tracing::error!(%error, "cannot read the enrolled identity; renewal waits");
                    tokio::time::sleep(UNREADABLE_RETRY).await;
                    continue;
                }
            };
            let due = due_at(&info, rand::random_range(0.55..0.66));
            let wait = due.duration_since(SystemTime::now()).unwrap_or_default();
            tracing::info!(
                agent = info.agent_id,
                serial = info.serial_hex,
                renew_in_secs = wait.as_secs(),
                "certificate renewal scheduled"
            );
            tokio::time::sleep(wait).await;
            self.renew_with_retries(pair, &info).await;
        }
    }

    fn current(&self) -> Result<(Pair, CertInfo), String> {
        let pair = self.settings.store.load().map_err(|e| e.to_string())?;
        let info = pair
            .info(&self.settings.store.current())
            .map_err(|e| e.to_string())?;
        Ok((pair, info))
    }

    async fn renew_with_retries(&self, pair: Pair, info: &CertInfo) {
        let cap = (info.lifetime() / 10).clamp(Duration::from_secs(1), Duration::from_secs(300));
        let mut backoff = Backoff::new(Duration::from_millis(500).min(cap), cap);
        loop {
            match self.renew_once(&pair, &info.agent_id).await {
                Ok(renewed) => {
                    let not_after = chrono::DateTime::<chrono::Utc>::from(renewed.not_after);
                    tracing::info!(
                        agent = renewed.agent_id,
                        serial = renewed.serial_hex,
                        %not_after,
                        "certificate renewed"
                    );
                    self.generation.send_modify(|g| *g += 1);
                    return;
                }
                Err(error) => {
                    if SystemTime::now() >= info.not_after {
                        tracing::error!(
                            error,
                            attempt = backoff.attempts() + 1,
                            "certificate renewal failed and the certificate has expired: ingest \
                             will refuse it; enroll again (`lasect-agent enroll` with a token bound \
                             to this agent id). Retrying meanwhile"
                        );
                    } else {
                        tracing::warn!(
                            error,
                            attempt = backoff.attempts() + 1,
                            "certificate renewal failed; retrying"
                        );
                    }
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    async fn renew_once(&self, pair: &Pair, agent_id: &str) -> Result<CertInfo, String> {
        let s = &self.settings;
        let ca = tokio::fs::read(&s.ca_file)
            .await
            .map_err(|e| format!("cannot read {}: {e}", s.ca_file.display()))?;
        let (csr, key) = new_agent_csr(agent_id).map_err(|e| e.to_string())?;
        let mut client = connect(
            &s.endpoint,
            s.server_name.as_deref(),
            &ca,
            Some(pair),
            CONNECT_TIMEOUT,
        )
        .await
        .map_err(|e| error_chain(&e))?;
        let answer =
            tokio::time::timeout(CALL_TIMEOUT, client.renew(RenewRequest { csr_pem: csr }))
                .await
                .map_err(|_| format!("no answer within {CALL_TIMEOUT:?}"))?
                .map_err(|status| format!("{:?}: {}", status.code(), status.message()))?
                .into_inner();
        let info = CertInfo::from_pem(&answer.certificate_pem)
            .map_err(|e| format!("unusable certificate in the answer: {e}"))?;
        if info.agent_id != agent_id {
            return Err(format!(
                "the renewed certificate names {:?}, not {agent_id:?}",
                info.agent_id
            ));
        }
        let chain = format!(
            "{}\n{}\n",
            answer.certificate_pem.trim_end(),
            answer.ca_pem.trim_end()
        );
        s.store
            .save(&info.serial_hex, &key, &chain)
            .map_err(|e| e.to_string())?;
        Ok(info)
    }
}

/// `not_before + fraction × life`.
fn due_at(info: &CertInfo, fraction: f64) -> SystemTime {
    info.not_before + info.lifetime().mul_f64(fraction.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_before_two_thirds_of_the_life() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let info = CertInfo {
            agent_id: "a".into(),
            serial_hex: "01".into(),
            not_before: start,
            not_after: start + Duration::from_secs(7 * 86_400),
        };
        let due = due_at(&info, 0.66);
        assert!(due > start + Duration::from_secs(4 * 86_400));
        assert!(due < start + Duration::from_secs(7 * 86_400 * 2 / 3));
    }
}
