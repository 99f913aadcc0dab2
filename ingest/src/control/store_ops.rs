//! Ingest's side of the run state machine and its other statements on the
//! store (the instances' health and assignments, agents seen). The run
//! statements and the statuses they may move a run from are
//! [`lasect_runs::Transition`]'s: executed here with tokio-postgres, by the
//! API with sqlx. Each write for an agent names it, so an agent can only
//! touch its own runs, and a late message (after an expiry or a lost-run
//! sweep) changes nothing.

use deadpool_postgres::Pool;
use lasect_proto::v1::{InstanceHealth, RunFinished, RunOutcome};
use lasect_runs::{RunKind, RunStatus, Transition};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum StoreOpError {
    #[error("no store connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("store error: {0}")]
    Pg(#[from] tokio_postgres::Error),
    #[error("cannot decompress a stored page: {0}")]
    Decompress(std::io::Error),
}

/// A run this process has just claimed for one of its agents.
#[derive(Debug)]
pub struct ClaimedRun {
    pub id: i64,
    /// The instance, whose id is part of its DSNs' associated data.
    pub instance_id: i64,
    pub agent_id: String,
    pub kind: String,
    pub instance_name: String,
    pub params: Value,
    pub timeout_ms: i32,
    pub max_rows: i64,
    pub max_bytes: i64,
    /// Set for instances added through the API.
    pub dsn_ciphertext: Option<Vec<u8>>,
    /// The connection of read-only runs of an API-added instance, if it has one.
    pub run_dsn_ciphertext: Option<Vec<u8>>,
    pub allow_privileged_runs: bool,
    /// zstd-compressed input (import_csv).
    pub input: Option<Vec<u8>>,
}

/// Claims up to 100 queued runs of `agents`, oldest first, as dispatched by
/// `node`. The statement commits before it returns: only then are the runs
/// sent, and a concurrent claimer skips the locked rows.
pub async fn claim(
    pool: &Pool,
    node: &str,
    agents: &[String],
) -> Result<Vec<ClaimedRun>, StoreOpError> {
    let client = pool.get().await?;
    let rows = client
        .query(Transition::Claim.sql(), &[&agents, &node])
        .await?;
    Ok(rows
        .iter()
        .map(|r| ClaimedRun {
            id: r.get(0),
            agent_id: r.get(1),
            kind: r.get(2),
            instance_name: r.get(3),
            params: r.get(4),
            timeout_ms: r.get(5),
            max_rows: r.get(6),
            max_bytes: r.get(7),
            dsn_ciphertext: r.get(8),
            input: r.get(9),
            run_dsn_ciphertext: r.get(10),
            allow_privileged_runs: r.get(11),
            instance_id: r.get(12),
        })
        .collect())
}

/// A claimed run that could not be sent.
pub async fn undeliverable(pool: &Pool, run: i64, reason: &str) -> Result<(), StoreOpError> {
    pool.get()
        .await?
        .execute(Transition::Undeliverable.sql(), &[&run, &reason])
        .await?;
    Ok(())
}

/// After a (re)connect: the agent's runs it no longer executes are lost.
pub async fn fail_lost(pool: &Pool, agent: &str, in_flight: &[i64]) -> Result<u64, StoreOpError> {
    Ok(pool
        .get()
        .await?
        .execute(Transition::FailLost.sql(), &[&agent, &in_flight])
        .await?)
}

pub async fn started(
    pool: &Pool,
    agent: &str,
    run: i64,
    backend_pid: i32,
) -> Result<bool, StoreOpError> {
    let pid = (backend_pid != 0).then_some(backend_pid);
    Ok(pool
        .get()
        .await?
        .execute(Transition::Start.sql(), &[&run, &agent, &pid])
        .await?
        == 1)
}

/// Keeps a running run's latest progress report (V30 `runs.progress`) and announces it on
/// [`lasect_runs::PROGRESS_CHANNEL`]; false when the run is not this agent's or not running. A report that is not a JSON object is ignored.
pub async fn progress(
    pool: &Pool,
    agent: &str,
    run: i64,
    progress_json: &str,
) -> Result<bool, StoreOpError> {
    let Ok(serde_json::Value::Object(progress)) = serde_json::from_str(progress_json) else {
        return Ok(false);
    };
    Ok(pool
        .get()
        .await?
        .execute(
            lasect_runs::progress_sql(),
            &[&run, &agent, &serde_json::Value::Object(progress)],
        )
        .await?
        == 1)
}

/// Stores one page (compressed); false when the run is not the agent's or
/// no longer open, or the page is already there.
pub async fn page(
    pool: &Pool,
    agent: &str,
    run: i64,
    page: i32,
    rows: i32,
    data: &[u8],
) -> Result<bool, StoreOpError> {
    let compressed = zstd::bulk::compress(data, 3).map_err(StoreOpError::Decompress)?;
    let bytes = i32::try_from(data.len()).unwrap_or(i32::MAX);
    Ok(pool
        .get()
        .await?
        .execute(
            Transition::StorePage.sql(),
            &[&run, &agent, &page, &rows, &bytes, &compressed],
        )
        .await?
        == 1)
}

/// What the finishing transaction learnt, for logging.
#[derive(Debug)]
pub struct Finished {
    pub kind: String,
    pub status: RunStatus,
}

/// The status an agent's outcome stands for (one of [`RunStatus::REPORTED`]).
pub fn status_of(outcome: RunOutcome) -> RunStatus {
    match outcome {
        RunOutcome::Succeeded => RunStatus::Succeeded,
        RunOutcome::TimedOut => RunStatus::TimedOut,
        RunOutcome::Cancelled => RunStatus::Cancelled,
        RunOutcome::Failed | RunOutcome::Unspecified => RunStatus::Failed,
    }
}

/// A JSON object sent by the agent; anything else is kept as a string so
/// nothing the agent said is lost, but nothing malformed is trusted.
fn json_field(text: &str) -> Option<Value> {
    if text.is_empty() {
        return None;
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => Some(serde_json::json!({ "unparsed": text })),
    }
}

/// Writes the final status and the kind's post-processing in one
/// transaction. `None`: the run is not this agent's or not open.
pub async fn finish(
    pool: &Pool,
    agent: &str,
    msg: &RunFinished,
    result_ttl_secs: u64,
) -> Result<Option<Finished>, StoreOpError> {
    let status = status_of(msg.outcome());
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let rows = i64::try_from(msg.rows).unwrap_or(i64::MAX);
    let bytes = i64::try_from(msg.bytes).unwrap_or(i64::MAX);
    let pages = i32::try_from(msg.pages).unwrap_or(i32::MAX);
    let ttl = i64::try_from(result_ttl_secs).unwrap_or(i64::MAX);
    let error = (!msg.error.is_empty()).then_some(msg.error.as_str());
    let detail = json_field(&msg.error_detail_json);
    let summary = json_field(&msg.summary_json);
    let row = tx
        .query_opt(
            Transition::Finish.sql(),
            &[
                &msg.run_id,
                &agent,
                &status.as_str(),
                &rows,
                &bytes,
                &msg.truncated,
                &pages,
                &error,
                &detail,
                &summary,
                &ttl,
            ],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let kind: String = row.get(0);
    let instance_id: i64 = row.get(1);
    let database: String = row.get(2);
    // A kind this version does not know (a newer API's) has no post-processing.
    if status == RunStatus::Succeeded
        && let Ok(known) = kind.parse::<RunKind>()
    {
        post_process(&tx, known, instance_id, msg.run_id, &database, summary).await?;
    }
    tx.commit().await?;
    Ok(Some(Finished { kind, status }))
}

/// The kind-specific effects of a successful run (docs/CONTROL.md).
async fn post_process(
    tx: &tokio_postgres::Transaction<'_>,
    kind: RunKind,
    instance_id: i64,
    run_id: i64,
    database: &str,
    summary: Option<Value>,
) -> Result<(), StoreOpError> {
    match kind {
        RunKind::InstanceCheck => {
            tx.execute(
                "UPDATE instances SET state = 'active' WHERE id = $1 AND state = 'validating'",
                &[&instance_id],
            )
            .await?;
        }
        RunKind::InstanceMetadata => {
            tx.execute(
                "UPDATE instances SET metadata = $2, metadata_at = now() WHERE id = $1",
                &[&instance_id, &summary],
            )
            .await?;
        }
        RunKind::SchemaSnapshot => {
            let document = result_bytes(tx, run_id).await?;
            record_schema(tx, instance_id, run_id, database, &document).await?;
        }
        RunKind::Sql
        | RunKind::Explain
        | RunKind::TableData
        | RunKind::ExportCsv
        | RunKind::ImportCsv
        | RunKind::DumpSql
        | RunKind::ExtensionList
        | RunKind::ExtensionAction
        | RunKind::Migration
        | RunKind::BackupStanza
        | RunKind::Backup
        | RunKind::BackupRestore
        | RunKind::BackupDrill
        | RunKind::BackupInfo
        | RunKind::ReplicationValidate
        | RunKind::ReplicationPublish
        | RunKind::ReplicationSubscribe
        | RunKind::ReplicationDrop => {}
    }
    Ok(())
}

/// A run's raw pages, decompressed and concatenated in order.
pub async fn result_bytes(
    tx: &tokio_postgres::Transaction<'_>,
    run_id: i64,
) -> Result<Vec<u8>, StoreOpError> {
    let rows = tx
        .query(
            "SELECT data FROM run_results WHERE run_id = $1 ORDER BY page",
            &[&run_id],
        )
        .await?;
    let mut out = Vec::new();
    for row in rows {
        let data: Vec<u8> = row.get(0);
        out.extend(zstd::stream::decode_all(&data[..]).map_err(StoreOpError::Decompress)?);
    }
    Ok(out)
}

/// Stores the snapshot document and the changes since the previous one.
async fn record_schema(
    tx: &tokio_postgres::Transaction<'_>,
    instance_id: i64,
    run_id: i64,
    database: &str,
    document: &[u8],
) -> Result<(), StoreOpError> {
    match crate::schema_history::record(tx, instance_id, run_id, database, document).await {
        Ok(recorded) => {
            tracing::info!(instance_id, run_id, ?recorded, "schema snapshot recorded");
            Ok(())
        }
        // A bad document must not lose the run's result: the run stays
        // succeeded with its pages, and the reason is logged.
        Err(crate::schema_history::SchemaHistoryError::Store(e)) => Err(StoreOpError::Pg(e)),
        Err(e) => {
            tracing::warn!(instance_id, run_id, error = %e, "schema snapshot not recorded");
            Ok(())
        }
    }
}

/// Expires queued runs nobody took in time and fails runs whose result
/// never came. Returns (expired, failed).
pub async fn sweep(pool: &Pool, grace_secs: u64) -> Result<(u64, u64), StoreOpError> {
    let client = pool.get().await?;
    let expired: i64 = client
        .query_one(Transition::Expire.sql(), &[])
        .await?
        .get(0);
    let expired = u64::try_from(expired).unwrap_or(0);
    let grace_ms = i64::try_from(grace_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let failed = client
        .execute(Transition::ResultOverdue.sql(), &[&grace_ms])
        .await?;
    Ok((expired, failed))
}

/// One API-added instance of an agent, its DSNs still encrypted.
#[derive(Debug)]
pub struct Assignment {
    pub id: i64,
    pub name: String,
    pub dsn_ciphertext: Vec<u8>,
    pub run_dsn_ciphertext: Option<Vec<u8>>,
    pub allow_privileged_runs: bool,
}

/// The agent's API-added instances.
/// The secrets of backup repository `repo` of `instance`, still encrypted (docs/BACKUPS.md).
#[derive(Debug)]
pub struct BackupSecrets {
    pub stanza: String,
    pub cipher_pass: Option<Vec<u8>>,
    pub secret_key: Option<Vec<u8>>,
}

/// The stanza and secret ciphertexts (cipher passphrase, object store key) of backup repository
/// `repo` of `instance`, if it has any.
pub async fn backup_secrets(
    pool: &Pool,
    instance: i64,
    repo: i64,
) -> Result<Option<BackupSecrets>, StoreOpError> {
    let row = pool
        .get()
        .await?
        .query_opt(
            "SELECT stanza, cipher_pass_ciphertext, secret_key_ciphertext FROM backup_repositories
             WHERE id = $1 AND instance_id = $2
               AND (cipher_pass_ciphertext IS NOT NULL OR secret_key_ciphertext IS NOT NULL)",
            &[&repo, &instance],
        )
        .await?;
    Ok(row.map(|r| BackupSecrets {
        stanza: r.get(0),
        cipher_pass: r.get(1),
        secret_key: r.get(2),
    }))
}

/// The password ciphertext of replication stream `stream` whose subscriber is `instance`.
pub async fn stream_password(
    pool: &Pool,
    instance: i64,
    stream: i64,
) -> Result<Option<Vec<u8>>, StoreOpError> {
    let row = pool
        .get()
        .await?
        .query_opt(
            "SELECT password_ciphertext FROM replication_streams
             WHERE id = $1 AND subscriber_instance_id = $2 AND password_ciphertext IS NOT NULL",
            &[&stream, &instance],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

pub async fn assignments(pool: &Pool, agent: &str) -> Result<Vec<Assignment>, StoreOpError> {
    let rows = pool
        .get()
        .await?
        .query(
            "SELECT id, name, dsn_ciphertext, run_dsn_ciphertext, allow_privileged_runs
             FROM instances
             WHERE agent_id = $1 AND source = 'api' AND state <> 'removed'
               AND dsn_ciphertext IS NOT NULL
             ORDER BY id",
            &[&agent],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Assignment {
            id: r.get(0),
            name: r.get(1),
            dsn_ciphertext: r.get(2),
            run_dsn_ciphertext: r.get(3),
            allow_privileged_runs: r.get(4),
        })
        .collect())
}

pub async fn health(pool: &Pool, agent: &str, h: &InstanceHealth) -> Result<(), StoreOpError> {
    let checked = chrono::DateTime::from_timestamp_micros(h.checked_unix_micros)
        .unwrap_or_else(chrono::Utc::now);
    let value = serde_json::json!({
        "up": h.up,
        "error": (!h.error.is_empty()).then_some(h.error.as_str()),
        "checked_at": checked.to_rfc3339(),
        "server_version_num": (h.server_version_num != 0).then_some(h.server_version_num),
    });
    pool.get()
        .await?
        .execute(
            "UPDATE instances SET health = $3, health_at = now()
             WHERE agent_id = $1 AND name = $2",
            &[&agent, &h.instance, &value],
        )
        .await?;
    Ok(())
}

/// Fails one of the agent's open runs (a protocol error on its stream).
pub async fn fail_open(
    pool: &Pool,
    agent: &str,
    run: i64,
    reason: &str,
) -> Result<(), StoreOpError> {
    pool.get()
        .await?
        .execute(Transition::FailOpen.sql(), &[&run, &agent, &reason])
        .await?;
    Ok(())
}

/// An agent that opens its Control stream exists, even before its first push
/// (instances can be assigned to it at once).
pub async fn agent_seen(
    pool: &Pool,
    agent: &str,
    version: &str,
    allowed: &[String],
) -> Result<(), StoreOpError> {
    let version = (!version.is_empty()).then_some(version);
    pool.get()
        .await?
        .execute(
            "INSERT INTO agents (id, version, control_allowed, control_connected_at)
             VALUES ($1, $2, $3, now())
             ON CONFLICT (id) DO UPDATE SET last_seen = now(),
                 version = coalesce(EXCLUDED.version, agents.version),
                 control_allowed = EXCLUDED.control_allowed,
                 control_connected_at = now()",
            &[&agent, &version, &allowed],
        )
        .await?;
    Ok(())
}
