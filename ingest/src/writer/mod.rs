//! Writes a validated batch into the store, all of it or nothing.
//!
//! One transaction per batch: the agent row, the `(agent, seq)` record in
//! `ingest_batches` (its primary key makes a resent batch a no-op), the
//! instances, then the metric rows by binary COPY (one pre-encoded buffer
//! per table, see `copy`) and the statement texts. The ack is sent only
//! after the commit, so an acked batch is stored exactly once.

mod copy;

use std::collections::HashMap;

use deadpool_postgres::{Pool, PoolError, Transaction};
use lasect_migrations::MigrateError;
use tokio_postgres::Statement;
use tokio_postgres::error::SqlState;

use crate::identity::AgentId;
use crate::partitions::PartitionCache;
use crate::validate::{Batch, InstanceSeen, Seq};

/// What happened to a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Stored,
    /// Stored before under the same seq; nothing was written now.
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no store connection")]
    Pool(#[from] PoolError),
    #[error("store query failed while {action}")]
    Query {
        action: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("ensuring partitions")]
    Partitions(#[from] MigrateError),
    #[error("the instance upsert returned no id for {0:?}")]
    MissingInstance(String),
    #[error("cannot encode a row for COPY: {0}")]
    Encode(String),
}

fn query(action: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |source| StoreError::Query { action, source }
}

impl StoreError {
    /// Whether the same batch may succeed if sent again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Pool(_) => true,
            StoreError::Query { source, .. } => retryable_pg(source),
            StoreError::Partitions(MigrateError::Store { source, .. }) => retryable_pg(source),
            StoreError::Partitions(_) | StoreError::MissingInstance(_) | StoreError::Encode(_) => {
                false
            }
        }
    }

    /// True when a row had no partition to go to (a partition dropped under
    /// a stale cache entry).
    fn is_missing_partition(&self) -> bool {
        matches!(self, StoreError::Query { source, .. } if source.code() == Some(&SqlState::CHECK_VIOLATION))
    }
}

fn retryable_pg(error: &tokio_postgres::Error) -> bool {
    let Some(db) = error.as_db_error() else {
        // Connection lost, I/O error, closed client: the store may be back soon.
        return true;
    };
    let code = db.code().code();
    // 08 connection, 40 rollback (serialization, deadlock), 53 resources,
    // 57 operator intervention (shutdown), 58 system error; 23514 is a row
    // without a partition, which the next attempt creates.
    ["08", "40", "53", "57", "58"]
        .iter()
        .any(|class| code.starts_with(class))
        || db.code() == &SqlState::CHECK_VIOLATION
}

/// Prepares `sql` once per pooled connection; later batches skip the
/// round trip.
async fn prepare(
    tx: &Transaction<'_>,
    action: &'static str,
    sql: &str,
) -> Result<Statement, StoreError> {
    tx.prepare_cached(sql).await.map_err(query(action))
}

/// Stores `batch` as batch `seq` of `agent`.
pub async fn write_batch(
    pool: &Pool,
    partitions: &PartitionCache,
    agent: &AgentId,
    seq: Seq,
    batch: &Batch,
) -> Result<Outcome, StoreError> {
    let result = write(pool, partitions, agent, seq, batch).await;
    if let Err(e) = &result
        && e.is_missing_partition()
    {
        partitions.forget_all();
    }
    result
}

async fn write(
    pool: &Pool,
    partitions: &PartitionCache,
    agent: &AgentId,
    seq: Seq,
    batch: &Batch,
) -> Result<Outcome, StoreError> {
    let mut client = pool.get().await?;
    let plain: &tokio_postgres::Client = &client;
    partitions.ensure(plain, batch.days()).await?;

    // Dropping the transaction without commit rolls it back, so every `?`
    // below leaves nothing behind.
    let tx = client
        .transaction()
        .await
        .map_err(query("starting the transaction"))?;
    let agent_id = agent.as_str();
    let action = "upserting the agent";
    let statement = prepare(
        &tx,
        action,
        "INSERT INTO agents (id) VALUES ($1)
         ON CONFLICT (id) DO UPDATE SET last_seen = now()",
    )
    .await?;
    tx.execute(&statement, &[&agent_id])
        .await
        .map_err(query(action))?;

    let action = "recording the batch";
    let statement = prepare(
        &tx,
        action,
        "INSERT INTO ingest_batches (agent_id, seq, samples) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .await?;
    let samples = i32::try_from(batch.stored_samples).unwrap_or(i32::MAX);
    let recorded = tx
        .execute(&statement, &[&agent_id, &seq.0, &samples])
        .await
        .map_err(query(action))?;
    if recorded == 0 {
        tx.rollback()
            .await
            .map_err(query("rolling back a duplicate"))?;
        return Ok(Outcome::Duplicate);
    }

    let instance_ids = upsert_instances(&tx, agent_id, &batch.instances).await?;
    copy::tables(&tx, agent_id, &instance_ids, &batch.tables).await?;
    copy::statement_texts(&tx, &instance_ids, &batch.statement_texts).await?;
    tx.commit().await.map_err(query("committing the batch"))?;
    Ok(Outcome::Stored)
}

/// Creates or refreshes every instance of the batch; returns their ids in
/// the order of `instances`.
async fn upsert_instances(
    tx: &Transaction<'_>,
    agent_id: &str,
    instances: &[InstanceSeen],
) -> Result<Vec<i64>, StoreError> {
    if instances.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<&str> = instances.iter().map(|i| i.name.as_str()).collect();
    let facts = instances.iter().map(|i| i.facts.as_ref().map(|f| &f.value));
    let version_nums: Vec<Option<i32>> = facts
        .clone()
        .map(|f| f.map(|f| f.server_version_num))
        .collect();
    let versions: Vec<Option<&str>> = facts
        .clone()
        .map(|f| f.map(|f| f.version.as_str()))
        .collect();
    let in_recovery: Vec<Option<bool>> = facts.map(|f| f.map(|f| f.in_recovery)).collect();
    let last_seen: Vec<_> = instances.iter().map(|i| i.last_sample).collect();
    // A batch without InstanceInfo for an instance keeps its known facts;
    // an old batch resent late never moves last_seen backwards.
    let action = "upserting instances";
    let statement = prepare(
        tx,
        action,
        "INSERT INTO instances (agent_id, name, server_version_num, version, in_recovery, last_seen)
             SELECT $1, * FROM unnest($2::text[], $3::int4[], $4::text[], $5::bool[], $6::timestamptz[])
             ON CONFLICT (agent_id, name) DO UPDATE SET
                 server_version_num = coalesce(EXCLUDED.server_version_num, instances.server_version_num),
                 version = coalesce(EXCLUDED.version, instances.version),
                 in_recovery = coalesce(EXCLUDED.in_recovery, instances.in_recovery),
                 last_seen = greatest(instances.last_seen, EXCLUDED.last_seen)
             RETURNING name, id",
    )
    .await?;
    let rows = tx
        .query(
            &statement,
            &[
                &agent_id,
                &names,
                &version_nums,
                &versions,
                &in_recovery,
                &last_seen,
            ],
        )
        .await
        .map_err(query(action))?;
    let by_name: HashMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    instances
        .iter()
        .map(|i| {
            by_name
                .get(i.name.as_str())
                .copied()
                .ok_or_else(|| StoreError::MissingInstance(i.name.as_str().to_owned()))
        })
        .collect()
}
