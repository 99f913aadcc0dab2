//! The loop that hands runs to the agents connected to this process.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use lasect_proto::v1::{
    AssignedInstance, CancelRun, InstanceAssignments, RunRequest, ServerMessage, server_message,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::listener::{self, Notice};
use super::registry::{Outbound, Registry};
use super::secrets::{DsnDecryptor, FIELD_DSN, FIELD_RUN_DSN};
use super::store_ops::{self, ClaimedRun};
use crate::config::RunsSettings;

/// How often queued runs are looked for without a notification, and the
/// sweep runs.
const TICK: Duration = Duration::from_secs(1);
/// A stream that does not take a message within this is treated as gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Shared by the gRPC service (streams) and the dispatch loop.
#[derive(Clone)]
pub struct Hub {
    pub registry: Registry,
    pub pool: Pool,
    /// Names this process in `runs.dispatched_by`.
    pub node: Arc<str>,
    pub secrets: DsnDecryptor,
    pub settings: RunsSettings,
    wake: mpsc::Sender<Notice>,
}

impl Hub {
    pub fn new(
        pool: Pool,
        secrets: DsnDecryptor,
        settings: RunsSettings,
    ) -> (Self, mpsc::Receiver<Notice>) {
        let (wake, rx) = mpsc::channel(1024);
        let node = format!(
            "{}:{}",
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "ingest".to_owned()),
            std::process::id()
        );
        let hub = Self {
            registry: Registry::default(),
            pool,
            node: node.into(),
            secrets,
            settings,
            wake,
        };
        (hub, rx)
    }

    /// Asks the loop to look at this agent's queue now (after a connect).
    pub fn wake(&self, agent: &str) {
        let _ = self.wake.try_send(Notice::Queued(agent.to_owned()));
    }

    /// Starts the LISTEN connection and the dispatch loop.
    pub fn spawn(
        self,
        pg: lasect_pgtls::PgConfig,
        mut rx: mpsc::Receiver<Notice>,
    ) -> JoinHandle<()> {
        let notices = self.wake.clone();
        let listener = tokio::spawn(listener::listen(pg, notices));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    notice = rx.recv() => match notice {
                        Some(n) => self.on_notice(n).await,
                        None => break,
                    },
                    _ = tick.tick() => self.on_tick().await,
                }
            }
            listener.abort();
        })
    }

    async fn on_notice(&self, notice: Notice) {
        match notice {
            Notice::Queued(agent) => {
                if self.registry.sender(&agent).is_some() {
                    self.dispatch(&[agent]).await;
                }
            }
            Notice::Cancel { run, agent } => {
                if let Some(tx) = self.registry.sender(&agent) {
                    let msg = server_message::Body::Cancel(CancelRun { run_id: run });
                    if send(&tx, msg).await {
                        tracing::info!(%agent, run, "cancel sent to the agent");
                    }
                }
            }
            Notice::Instances(agent) => {
                if let Some(tx) = self.registry.sender(&agent) {
                    self.send_assignments(&agent, &tx).await;
                }
            }
        }
    }

    async fn on_tick(&self) {
        match store_ops::sweep(&self.pool, self.settings.result_grace_secs).await {
            Ok((0, 0)) => {}
            Ok((expired, failed)) => {
                tracing::info!(expired, failed, "runs expired or failed without a result")
            }
            Err(e) => tracing::warn!(error = %e, "cannot sweep runs"),
        }
        let agents = self.registry.agents();
        if !agents.is_empty() {
            self.dispatch(&agents).await;
        }
    }

    /// Claims and sends the queued runs of `agents`.
    pub async fn dispatch(&self, agents: &[String]) {
        let claimed = match store_ops::claim(&self.pool, &self.node, agents).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim queued runs");
                return;
            }
        };
        for run in claimed {
            let (id, agent, kind) = (run.id, run.agent_id.clone(), run.kind.clone());
            if let Err(reason) = self.deliver(run).await {
                tracing::warn!(%agent, run = id, %kind, %reason, "run not delivered");
                if let Err(e) = store_ops::undeliverable(&self.pool, id, &reason).await {
                    tracing::warn!(run = id, error = %e, "cannot mark the run failed");
                }
            } else {
                tracing::info!(%agent, run = id, %kind, "run dispatched");
            }
        }
    }

    async fn deliver(&self, run: ClaimedRun) -> Result<(), String> {
        let tx = self.registry.sender(&run.agent_id).ok_or_else(|| {
            "the agent's Control stream closed before the run was delivered".to_owned()
        })?;
        let dsn = match &run.dsn_ciphertext {
            Some(c) => self
                .secrets
                .decrypt(run.instance_id, &run.agent_id, FIELD_DSN, c)
                .map_err(|e| format!("cannot decrypt the instance's DSN: {e}"))?,
            None => String::new(),
        };
        let run_dsn = match &run.run_dsn_ciphertext {
            Some(c) => self
                .secrets
                .decrypt(run.instance_id, &run.agent_id, FIELD_RUN_DSN, c)
                .map_err(|e| format!("cannot decrypt the instance's run_dsn: {e}"))?,
            None => String::new(),
        };
        let input = match &run.input {
            Some(c) => zstd::stream::decode_all(&c[..])
                .map_err(|e| format!("cannot decompress the run's input: {e}"))?,
            None => Vec::new(),
        };
        let params = self.with_backup_secrets(&run).await?;
        let params_json = self.with_stream_password(&run, params).await?.to_string();
        let request = RunRequest {
            run_id: run.id,
            kind: run.kind,
            instance: run.instance_name,
            params_json,
            timeout_ms: u32::try_from(run.timeout_ms).unwrap_or(0),
            max_rows: u64::try_from(run.max_rows).unwrap_or(0),
            max_bytes: u64::try_from(run.max_bytes).unwrap_or(0),
            dsn,
            input,
            run_dsn,
            allow_privileged_runs: run.allow_privileged_runs,
        };
        if send(&tx, server_message::Body::Run(request)).await {
            Ok(())
        } else {
            Err("the agent's Control stream closed before the run was delivered".to_owned())
        }
    }

    /// A backup run's parameters with its repository's secrets (cipher passphrase, object store
    /// key), decrypted here only and sent to the serving agent, never written to `runs.params`
    /// (docs/BACKUPS.md).
    async fn with_backup_secrets(&self, run: &ClaimedRun) -> Result<serde_json::Value, String> {
        let mut params = run.params.clone();
        if !run.kind.starts_with("backup") {
            return Ok(params);
        }
        let Some(repo) = params
            .pointer("/repo/repository_id")
            .and_then(serde_json::Value::as_i64)
        else {
            return Ok(params);
        };
        let secrets = store_ops::backup_secrets(&self.pool, run.instance_id, repo)
            .await
            .map_err(|e| format!("cannot read backup repository {repo}: {e}"))?;
        let Some(secrets) = secrets else {
            return Ok(params);
        };
        for (field, ciphertext) in [
            ("cipher_pass", &secrets.cipher_pass),
            ("secret_key", &secrets.secret_key),
        ] {
            let Some(ciphertext) = ciphertext else {
                continue;
            };
            let plain = self.secrets.decrypt(
                run.instance_id,
                &run.agent_id,
                &format!("backup:{}:{field}", secrets.stanza),
                ciphertext,
            )?;
            if let Some(r) = params
                .get_mut("repo")
                .and_then(serde_json::Value::as_object_mut)
            {
                r.insert(field.to_owned(), plain.into());
            }
        }
        Ok(params)
    }

    /// A replication stream run's parameters with the password of the stream's conninfo,
    /// decrypted here only, for the subscriber's agent; never written to `runs.params`
    /// (docs/REPLICATION.md, "Streams").
    async fn with_stream_password(
        &self,
        run: &ClaimedRun,
        mut params: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        if !matches!(
            run.kind.as_str(),
            "replication_validate" | "replication_subscribe"
        ) {
            return Ok(params);
        }
        let Some(stream) = params.get("stream_id").and_then(serde_json::Value::as_i64) else {
            return Ok(params);
        };
        let ciphertext = store_ops::stream_password(&self.pool, run.instance_id, stream)
            .await
            .map_err(|e| format!("cannot read replication stream {stream}: {e}"))?;
        if let Some(ciphertext) = ciphertext {
            let password = self.secrets.decrypt(
                run.instance_id,
                &run.agent_id,
                &format!("replication_stream:{stream}:password"),
                &ciphertext,
            )?;
            if let Some(p) = params.as_object_mut() {
                p.insert("password".to_owned(), password.into());
            }
        }
        Ok(params)
    }

    /// Sends the agent its API-added instances (DSNs decrypted here only).
    pub async fn send_assignments(&self, agent: &str, tx: &Outbound) {
        let rows = match store_ops::assignments(&self.pool, agent).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(%agent, error = %e, "cannot read the agent's instances");
                return;
            }
        };
        let mut instances = Vec::with_capacity(rows.len());
        for a in rows {
            let run_dsn = match &a.run_dsn_ciphertext {
                Some(c) => self
                    .secrets
                    .decrypt(a.id, agent, FIELD_RUN_DSN, c)
                    .map_err(|e| format!("run_dsn: {e}")),
                None => Ok(String::new()),
            };
            let dsn = self
                .secrets
                .decrypt(a.id, agent, FIELD_DSN, &a.dsn_ciphertext);
            match (dsn, run_dsn) {
                (Ok(dsn), Ok(run_dsn)) => instances.push(AssignedInstance {
                    id: a.id,
                    name: a.name,
                    dsn,
                    run_dsn,
                    allow_privileged_runs: a.allow_privileged_runs,
                }),
                (Err(reason), _) | (_, Err(reason)) => {
                    tracing::warn!(%agent, instance = %a.name, %reason, "instance not assigned")
                }
            }
        }
        let n = instances.len();
        let body = server_message::Body::Instances(InstanceAssignments { instances });
        if send(tx, body).await {
            tracing::debug!(%agent, instances = n, "instance assignments sent");
        }
    }
}

async fn send(tx: &Outbound, body: server_message::Body) -> bool {
    let msg = ServerMessage { body: Some(body) };
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, tx.send(Ok(msg))).await,
        Ok(Ok(()))
    )
}
