//! Writes validated batches into the store, a group of them at a time, each
//! group all of it or nothing.
//!
//! Pushes are queued to a few writer tasks ([`Writers`], see `group`); each
//! takes whatever is waiting and writes it in ONE transaction:
//!
//! 1. the `(agent, seq)` records of the group into `ingest_batches` with one
//!    `INSERT … ON CONFLICT DO NOTHING RETURNING`: its primary key makes a
//!    resent batch a no-op, and a batch whose record is not returned is a
//!    duplicate whose rows are not written. The same `(agent, seq)` twice
//!    in one group is settled in Rust first (the later one is a duplicate);
//! 2. the agents and instances of the stored batches, inserted if missing,
//!    and the instance ids read; rows that exist are updated only when an
//!    instance's facts changed, never for what every batch changes, which
//!    would serialize concurrent groups on their row locks (see `known`:
//!    `last_seen` is written apart, every few seconds);
//! 3. the metric rows of all stored batches by binary COPY (one pre-encoded
//!    buffer per table, see `copy`) and the statement texts.
//!
//! Every push of the group is answered only after the commit, so an acked
//! batch is stored exactly once. One commit (one WAL flush) per group rather
//! than per batch is what lets many small batches go in fast; a lone push
//! is written at once, so light load adds no latency.

mod copy;
mod group;
mod known;
pub mod notify;

use std::collections::{BTreeMap, HashMap, HashSet};

use deadpool_postgres::{Pool, PoolError, Transaction};
use lasect_migrations::MigrateError;
use tokio_postgres::Statement;
use tokio_postgres::error::SqlState;

use crate::identity::AgentId;
use crate::partitions::PartitionCache;
use crate::validate::{Batch, Seq};

pub use group::Writers;
pub use known::{Known, Sightings};

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
    #[error("no writer task is running")]
    WriterGone,
}

fn query(action: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |source| StoreError::Query { action, source }
}

impl StoreError {
    /// Whether the same batch may succeed if sent again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Pool(_) | StoreError::WriterGone => true,
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

/// A validated push waiting to be written.
#[derive(Debug)]
pub struct Pending {
    pub agent: AgentId,
    pub seq: Seq,
    pub batch: Batch,
}

/// Stores `group` in one transaction; returns the outcome of each push, in
/// the order of `group`.
pub async fn write_group(
    pool: &Pool,
    partitions: &PartitionCache,
    known: &Known,
    sightings: &Sightings,
    group: &[Pending],
) -> Result<Vec<Outcome>, StoreError> {
    let result = write(pool, partitions, known, sightings, group).await;
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
    known: &Known,
    sightings: &Sightings,
    group: &[Pending],
) -> Result<Vec<Outcome>, StoreError> {
    let mut client = pool.get().await?;
    let plain: &tokio_postgres::Client = &client;
    let days = group.iter().flat_map(|p| p.batch.days()).collect();
    partitions.ensure(plain, days).await?;

    // The first push of each (agent, seq) in the group may be new; a later
    // one is a duplicate of it whatever the store says.
    let mut outcomes = vec![Outcome::Duplicate; group.len()];
    let mut firsts: BTreeMap<(&str, i64), usize> = BTreeMap::new();
    for (i, p) in group.iter().enumerate() {
        firsts.entry((p.agent.as_str(), p.seq.0)).or_insert(i);
    }

    // Dropping the transaction without commit rolls it back, so every `?`
    // below leaves nothing behind.
    let tx = client
        .transaction()
        .await
        .map_err(query("starting the transaction"))?;
    let recorded = record_batches(&tx, group, &firsts).await?;
    let stored: Vec<usize> = firsts
        .iter()
        .filter(|((agent, seq), _)| recorded.get(*agent).is_some_and(|s| s.contains(seq)))
        .map(|(_, &i)| i)
        .collect();
    if stored.is_empty() {
        tx.rollback()
            .await
            .map_err(query("rolling back a group of duplicates"))?;
        return Ok(outcomes);
    }

    let (ids, learned) = known::ensure_rows(&tx, known, group, &stored).await?;
    let mut parts = Vec::with_capacity(stored.len());
    for &i in &stored {
        let p = &group[i];
        let agent_id = p.agent.as_str();
        let instance_ids = p
            .batch
            .instances
            .iter()
            .map(|seen| {
                ids.get(agent_id)
                    .and_then(|by_name| by_name.get(seen.name.as_str()))
                    .copied()
                    .ok_or_else(|| StoreError::MissingInstance(seen.name.as_str().to_owned()))
            })
            .collect::<Result<Vec<i64>, _>>()?;
        parts.push(copy::Part {
            agent_id,
            instance_ids,
            batch: &p.batch,
        });
        outcomes[i] = Outcome::Stored;
    }
    copy::tables(&tx, &parts).await?;
    copy::statement_texts(&tx, &parts).await?;
    notify::new_samples(&tx, &parts).await?;
    tx.commit().await.map_err(query("committing the group"))?;
    known.learn(&learned);
    sightings.record(group, &stored, &ids);
    Ok(outcomes)
}

/// Inserts the `(agent, seq)` records of `firsts` (sorted, so concurrent
/// groups wait for each other rather than deadlock); returns the seqs that
/// were new, by agent.
async fn record_batches(
    tx: &Transaction<'_>,
    group: &[Pending],
    firsts: &BTreeMap<(&str, i64), usize>,
) -> Result<HashMap<String, HashSet<i64>>, StoreError> {
    let agents: Vec<&str> = firsts.keys().map(|(a, _)| *a).collect();
    let seqs: Vec<i64> = firsts.keys().map(|(_, s)| *s).collect();
    let samples: Vec<i32> = firsts
        .values()
        .map(|&i| i32::try_from(group[i].batch.stored_samples).unwrap_or(i32::MAX))
        .collect();
    let action = "recording the batches";
    let statement = prepare(
        tx,
        action,
        "INSERT INTO ingest_batches (agent_id, seq, samples)
         SELECT * FROM unnest($1::text[], $2::int8[], $3::int4[])
         ON CONFLICT DO NOTHING
         RETURNING agent_id, seq",
    )
    .await?;
    let rows = tx
        .query(&statement, &[&agents, &seqs, &samples])
        .await
        .map_err(query(action))?;
    let mut recorded: HashMap<String, HashSet<i64>> = HashMap::new();
    for row in rows {
        recorded.entry(row.get(0)).or_default().insert(row.get(1));
    }
    Ok(recorded)
}
