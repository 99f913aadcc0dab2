//! Schema migrations and partition maintenance of the Lasect central store.
//!
//! The SQL lives in `migrations/sql/V<n>__<name>.sql` and is embedded at
//! build time (refinery). Rules for writing one:
//! - never edit a migration that has shipped; add a new one (the one
//!   exception, V1, is explained below);
//! - create metric tables only through `lasect_create_metric_table()` so the
//!   TimescaleDB and native-partition layouts stay interchangeable;
//! - a query must work on both layouts (filter on `time`);
//! - `lasect_create_metric_table()` also grants the table to Grafana's
//!   read-only role (V24): a migration that redefines the function keeps
//!   its `PERFORM lasect_grafana_grant()` (`e2e/tests/dashboards.rs` fails
//!   otherwise).
//!
//! [`migrate`] may be called by several processes at once (api and ingest
//! start together): a session advisory lock serialises them and refinery's
//! history table makes the losers find nothing left to do.
//!
//! # The metric layout, and the one edited migration
//!
//! V1 chooses the layout once: TimescaleDB hypertables when an administrator
//! created the extension in the store database, or when it is installed,
//! preloaded and the migrating role may create it; native daily partitions
//! otherwise (`SET lasect.metric_storage` forces either). It reads only what
//! every role can read (`pg_extension`, `pg_available_extensions`, the
//! loader's `timescaledb.disable_load` in `pg_settings`, the role's own
//! privileges), because the store is usually owned by an ordinary role.
//!
//! V1 as first shipped read `shared_preload_libraries`, a superuser-only
//! setting, whenever TimescaleDB was installed: every least-privileged store
//! on such a host stopped at V1. That could only be fixed in V1 itself (it is
//! the first migration, nothing runs before it), so V1 was edited. refinery
//! refuses to run when an applied migration's checksum differs from the
//! embedded one; [`migrate`] therefore rewrites the recorded checksum of V1
//! from exactly [`SHIPPED_V1_CHECKSUM`] to the current one before refinery
//! verifies the history. That is safe because a store that applied the
//! shipped V1 has already made its choice (recorded in `store_settings`) and
//! the edit changed nothing else but the choosing (two helper functions,
//! `lasect_timescaledb_facts()` and `lasect_choose_metric_storage()`, exist
//! only in stores created since). Divergence stays fatal everywhere else:
//! any other migration, or a V1 recorded with any other checksum. No
//! least-privileged store on a TimescaleDB host can hold the shipped V1: it
//! failed there.
//!
//! # Compression (TimescaleDB layout)
//!
//! V22 gives every family a series key (`metric_families.segment_by`: the
//! instance or agent id, then the columns that tell its series apart) and an
//! age (`metric_families.compress_after`, 2 days by default). On TimescaleDB
//! each metric table is compressed with `segmentby` = that key and `orderby`
//! = `time DESC`, by a compression policy after that age; [`maintain`]
//! applies both to every table and follows changes of the age.

use chrono::NaiveDate;
use tokio_postgres::{Client, GenericClient};

mod embedded {
    refinery::embed_migrations!("sql");
}

/// Key of the session advisory lock held while migrating ("lasect" in ASCII).
pub const MIGRATION_LOCK_KEY: i64 = 0x6c61_7365_6374;

/// Days of partitions [`maintain`] keeps created ahead of today (UTC).
pub const PARTITION_DAYS_AHEAD: i32 = 3;

/// refinery's checksum of `V1__foundation.sql` as shipped before it stopped
/// reading `shared_preload_libraries` (see the crate docs).
pub const SHIPPED_V1_CHECKSUM: u64 = 18_167_731_188_368_628_322;

/// Batches recorded for de-duplication are forgotten after this many days.
/// An agent replaying an older batch would store it twice; its spool's age
/// limit is far below this.
pub const DEDUP_RETENTION_DAYS: i32 = 30;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("store query failed while {action}")]
    Store {
        action: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("applying migrations: {0}")]
    Refinery(#[from] refinery::Error),
    #[error("unknown metric storage {0:?} in store_settings")]
    UnknownStorage(String),
    #[error("the store DSN: {0}")]
    Dsn(#[from] lasect_pgtls::DsnError),
}

fn store(action: &'static str) -> impl FnOnce(tokio_postgres::Error) -> MigrateError {
    move |source| MigrateError::Store { action, source }
}

/// How metric tables are laid out in this store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageMode {
    TimescaleDb,
    Native,
}

/// What a [`migrate`] call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// `V<n>__<name>` of each migration applied by this call, in order.
    pub applied: Vec<String>,
}

/// Applies every pending migration. Idempotent and safe to run concurrently.
pub async fn migrate(client: &mut Client) -> Result<MigrationReport, MigrateError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(store("taking the migration lock"))?;
    let runner = embedded::migrations::runner();
    let result = match accept_shipped_v1(client, &runner).await {
        Ok(()) => runner.run_async(client).await.map_err(MigrateError::from),
        Err(e) => Err(e),
    };
    // Unlock even after a failure; the lock also ends with the session.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    let report = result?;
    unlocked.map_err(store("releasing the migration lock"))?;
    let applied = report
        .applied_migrations()
        .iter()
        .map(|m| format!("V{}__{}", m.version(), m.name()))
        .collect::<Vec<_>>();
    for m in &applied {
        tracing::info!(migration = %m, "applied store migration");
    }
    Ok(MigrationReport { applied })
}

/// Records the current V1's checksum in place of the shipped one, so refinery
/// accepts a store migrated before V1 was edited (see the crate docs). Runs
/// under the migration lock; a no-op on a fresh store or a current one.
async fn accept_shipped_v1(client: &Client, runner: &refinery::Runner) -> Result<(), MigrateError> {
    let Some(current) = runner.get_migrations().iter().find(|m| m.version() == 1) else {
        return Ok(());
    };
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await
        .map_err(store("reading the migration history"))?
        .get(0);
    if !exists {
        return Ok(());
    }
    let updated = client
        .execute(
            "UPDATE refinery_schema_history SET checksum = $1
             WHERE version = 1 AND checksum = $2",
            &[
                &current.checksum().to_string(),
                &SHIPPED_V1_CHECKSUM.to_string(),
            ],
        )
        .await
        .map_err(store("accepting the shipped V1"))?;
    if updated > 0 {
        tracing::info!(
            "store migrated by the shipped V1: its recorded checksum is now the current V1's"
        );
    }
    Ok(())
}

/// Connects to `dsn` (TLS as its `sslmode` says) and migrates.
pub async fn migrate_dsn(dsn: &str) -> Result<MigrationReport, MigrateError> {
    let (mut client, conn) = lasect_pgtls::PgConfig::parse(dsn)?
        .connect()
        .await
        .map_err(store("connecting to the store"))?;
    let task = tokio::spawn(conn);
    let report = migrate(&mut client).await;
    drop(client);
    let _ = task.await;
    report
}

/// The layout chosen when the store was first migrated.
pub async fn storage_mode(client: &impl GenericClient) -> Result<StorageMode, MigrateError> {
    let row = client
        .query_one(
            "SELECT value FROM store_settings WHERE key = 'metric_storage'",
            &[],
        )
        .await
        .map_err(store("reading the metric storage mode"))?;
    match row.get::<_, String>(0).as_str() {
        "timescaledb" => Ok(StorageMode::TimescaleDb),
        "native" => Ok(StorageMode::Native),
        other => Err(MigrateError::UnknownStorage(other.to_string())),
    }
}

/// Makes sure daily partitions exist for every metric table and every UTC
/// day in `from..=to` (a no-op on TimescaleDB). Returns how many were created.
pub async fn ensure_partitions(
    client: &impl GenericClient,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<u32, MigrateError> {
    let row = client
        .query_one("SELECT lasect_ensure_partitions($1, $2)", &[&from, &to])
        .await
        .map_err(store("creating partitions"))?;
    Ok(u32::try_from(row.get::<_, i32>(0)).unwrap_or(0))
}

/// What one [`maintain`] pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub partitions_created: u32,
    pub partitions_dropped: u32,
    pub dedup_rows_pruned: u64,
    /// TimescaleDB: metric tables whose compression or policy was set.
    pub compression_changes: u32,
}

/// Periodic upkeep: partitions from yesterday to [`PARTITION_DAYS_AHEAD`]
/// days ahead, expired partitions dropped, old de-duplication rows pruned,
/// and on TimescaleDB compression and its policy set on every metric table
/// as `metric_families` says.
/// Run it at start and then hourly; concurrent runs are safe.
pub async fn maintain(client: &impl GenericClient) -> Result<MaintenanceReport, MigrateError> {
    let row = client
        .query_one(
            "SELECT lasect_ensure_partitions(
                        (now() AT TIME ZONE 'UTC')::date - 1,
                        (now() AT TIME ZONE 'UTC')::date + $1::int),
                    lasect_drop_expired_partitions(),
                    lasect_apply_compression()",
            &[&PARTITION_DAYS_AHEAD],
        )
        .await
        .map_err(store("maintaining partitions"))?;
    let pruned = client
        .execute(
            "DELETE FROM ingest_batches WHERE received_at < now() - make_interval(days => $1)",
            &[&DEDUP_RETENTION_DAYS],
        )
        .await
        .map_err(store("pruning de-duplication records"))?;
    let report = MaintenanceReport {
        partitions_created: u32::try_from(row.get::<_, i32>(0)).unwrap_or(0),
        partitions_dropped: u32::try_from(row.get::<_, i32>(1)).unwrap_or(0),
        dedup_rows_pruned: pruned,
        compression_changes: u32::try_from(row.get::<_, i32>(2)).unwrap_or(0),
    };
    if report != MaintenanceReport::default() {
        tracing::info!(?report, "store maintenance");
    }
    Ok(report)
}
