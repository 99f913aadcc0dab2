//! The central backup catalogue (docs/BACKUPS.md, "Catalogue"): the latest `pgbackrest info`
//! of each repository, kept in `backup_catalogues` and `backup_catalogue_entries`
//! (migrations V31) so `GET /api/v1/backups` answers without asking an agent.
//!
//! The agent sends pgBackRest's info document with every succeeded `backup` run (under
//! `summary.catalogue.pgbackrest`) and `backup_info` run (`summary.pgbackrest`). The scheduler
//! task ([`crate::backup_schedule::run`]) stores each such run newer than the stored catalogue,
//! and queues a `backup_info` run for a repository whose catalogue is older than
//! [`REFRESH_EVERY`], so backups expired or taken by hand show up too.

pub mod info;
pub mod samples;

use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use sqlx::{PgPool, Row as _};

/// How old a catalogue may get before the scheduler asks the agent for a fresh one.
pub const REFRESH_EVERY: Duration = Duration::from_secs(3600);

/// Stores the catalogues of succeeded backup runs newer than what is stored; returns how many.
pub async fn refresh(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT r.id, r.instance_id, b.id AS repository_id, b.stanza, r.kind, r.summary, \
                coalesce(r.finished_at, now()) AS finished_at \
         FROM runs r \
         JOIN backup_repositories b \
           ON b.id = (r.params -> 'repo' ->> 'repository_id')::bigint \
          AND b.instance_id = r.instance_id \
         LEFT JOIN backup_catalogues c ON c.repository_id = b.id \
         WHERE r.kind IN ('backup', 'backup_info') AND r.status = 'succeeded' \
           AND r.id > coalesce(c.run_id, 0) \
           AND jsonb_typeof(r.params -> 'repo' -> 'repository_id') = 'number' \
         ORDER BY r.id LIMIT 100",
    )
    .fetch_all(pool)
    .await?;
    let mut stored = 0;
    for r in rows {
        let run_id: i64 = r.try_get("id")?;
        let kind: String = r.try_get("kind")?;
        let summary: Option<serde_json::Value> = r.try_get("summary")?;
        let stanza: String = r.try_get("stanza")?;
        let document = summary.as_ref().and_then(|s| {
            if kind == "backup" {
                s.get("catalogue")?.get("pgbackrest")
            } else {
                s.get("pgbackrest")
            }
        });
        let parsed = match document {
            Some(d) => info::parse(d, &stanza).map_err(|e| e.to_string()),
            None => Err(format!(
                "run {run_id} carries no pgBackRest info document (an agent older than this API)"
            )),
        };
        let entry = Stored {
            run_id,
            instance_id: r.try_get("instance_id")?,
            repository_id: r.try_get("repository_id")?,
            stanza,
            refreshed_at: r.try_get("finished_at")?,
        };
        if let Err(problem) = &parsed {
            tracing::warn!(run = run_id, problem, "backup catalogue not stored");
        }
        store(pool, &entry, parsed).await?;
        stored += 1;
    }
    Ok(stored)
}

struct Stored {
    run_id: i64,
    instance_id: i64,
    repository_id: i64,
    stanza: String,
    refreshed_at: DateTime<Utc>,
}

fn unix(seconds: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(seconds, 0).single()
}

/// The recovery window of a stanza: from the stop of its oldest good backup (the earliest
/// consistent point) to the stop of its newest.
pub fn window(s: &info::Stanza) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let good = || s.backup.iter().filter(|b| b.error != Some(true));
    (
        good().map(|b| b.timestamp.stop).min().and_then(unix),
        good().map(|b| b.timestamp.stop).max().and_then(unix),
    )
}

async fn store(
    pool: &PgPool,
    e: &Stored,
    parsed: Result<info::Stanza, String>,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let stanza = match parsed {
        Ok(s) => s,
        Err(problem) => {
            // Keep the last good catalogue, say why this run's is not there.
            sqlx::query(
                "INSERT INTO backup_catalogues (repository_id, instance_id, stanza, run_id, \
                 refreshed_at, problem) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (repository_id) DO UPDATE SET run_id = EXCLUDED.run_id, \
                 problem = EXCLUDED.problem \
                 WHERE backup_catalogues.run_id < EXCLUDED.run_id",
            )
            .bind(e.repository_id)
            .bind(e.instance_id)
            .bind(&e.stanza)
            .bind(e.run_id)
            .bind(e.refreshed_at)
            .bind(problem)
            .execute(&mut *tx)
            .await?;
            return tx.commit().await;
        }
    };
    let archive = stanza.current_archive();
    let (earliest, newest_stop) = window(&stanza);
    // WAL archived after the newest backup extends the window: up to the time the archiver
    // last archived a segment at or past the repository's newest (the agent's `archiver`
    // samples), when it has.
    let archived: Option<(Option<String>, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT last_archived_wal, last_archived_time FROM metric_archiver \
         WHERE instance_id = $1 AND time > now() - interval '1 day' \
         ORDER BY time DESC LIMIT 1",
    )
    .bind(e.instance_id)
    .fetch_optional(&mut *tx)
    .await?;
    let latest = match (
        newest_stop,
        archive.and_then(|a| a.max.as_deref()),
        archived,
    ) {
        (Some(stop), Some(max), Some((Some(wal), Some(at))))
            if wal.len() >= 24 && max.len() == 24 && wal[..24] >= *max =>
        {
            Some(stop.max(at))
        }
        (stop, ..) => stop,
    };
    let updated = sqlx::query(
        "INSERT INTO backup_catalogues (repository_id, instance_id, stanza, run_id, refreshed_at, \
         status_code, status_message, archive_id, archive_min, archive_max, \
         earliest_restorable, latest_restorable, problem) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULL) \
         ON CONFLICT (repository_id) DO UPDATE SET run_id = EXCLUDED.run_id, \
           refreshed_at = EXCLUDED.refreshed_at, status_code = EXCLUDED.status_code, \
           status_message = EXCLUDED.status_message, archive_id = EXCLUDED.archive_id, \
           archive_min = EXCLUDED.archive_min, archive_max = EXCLUDED.archive_max, \
           earliest_restorable = EXCLUDED.earliest_restorable, \
           latest_restorable = EXCLUDED.latest_restorable, problem = NULL \
         WHERE backup_catalogues.run_id < EXCLUDED.run_id",
    )
    .bind(e.repository_id)
    .bind(e.instance_id)
    .bind(&e.stanza)
    .bind(e.run_id)
    .bind(e.refreshed_at)
    .bind(stanza.status.code)
    .bind(&stanza.status.message)
    .bind(archive.map(|a| a.id.clone()))
    .bind(archive.and_then(|a| a.min.clone()))
    .bind(archive.and_then(|a| a.max.clone()))
    .bind(earliest)
    .bind(latest)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 0 {
        // Another process stored this run or a newer one.
        return tx.rollback().await;
    }
    sqlx::query("DELETE FROM backup_catalogue_entries WHERE repository_id = $1")
        .bind(e.repository_id)
        .execute(&mut *tx)
        .await?;
    for b in &stanza.backup {
        let span = |s: &Option<info::Span<Option<String>>>| {
            s.as_ref()
                .map_or((None, None), |s| (s.start.clone(), s.stop.clone()))
        };
        let (wal_start, wal_stop) = span(&b.archive);
        let (lsn_start, lsn_stop) = span(&b.lsn);
        sqlx::query(
            "INSERT INTO backup_catalogue_entries (repository_id, label, backup_type, prior, \
             started_at, stopped_at, database_size, delta_size, repo_size, repo_delta_size, \
             wal_start, wal_stop, lsn_start, lsn_stop, error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
             ON CONFLICT DO NOTHING",
        )
        .bind(e.repository_id)
        .bind(&b.label)
        .bind(b.backup_type.as_str())
        .bind(&b.prior)
        .bind(unix(b.timestamp.start))
        .bind(unix(b.timestamp.stop))
        .bind(b.info.size)
        .bind(b.info.delta)
        .bind(b.info.repository.size)
        .bind(b.info.repository.delta)
        .bind(wal_start)
        .bind(wal_stop)
        .bind(lsn_start)
        .bind(lsn_stop)
        .bind(b.error == Some(true))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Queues a `backup_info` run (requested by `system`) for every posix repository whose
/// catalogue is older than `every` (or missing), whose stanza exists (a stanza or backup run
/// succeeded: before, `info` has nothing to say), whose agent is connected and allows the
/// `backup` class, and that has no backup or info run under way or recent; returns how many.
pub async fn queue_periodic_info(pool: &PgPool, every: Duration) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "INSERT INTO runs (kind, instance_id, agent_id, params, requested_by, timeout_ms, \
                           max_rows, max_bytes, expires_at) \
         SELECT 'backup_info', i.id, i.agent_id, \
                jsonb_build_object('stanza', b.stanza, 'repo', jsonb_strip_nulls(jsonb_build_object( \
                    'repository_id', b.id, 'path', b.path, 'config_path', b.config_path, \
                    'cipher_type', b.cipher_type, 'retention_full', b.retention_full, \
                    'retention_diff', b.retention_diff, \
                    'retention_full_type', b.retention_full_type))), \
                'system', 300000, 1, 1048576, now() + interval '5 minutes' \
         FROM backup_repositories b \
         JOIN instances i ON i.id = b.instance_id AND i.state = 'active' \
         JOIN agents a ON a.id = i.agent_id \
         LEFT JOIN backup_catalogues c ON c.repository_id = b.id \
         WHERE b.repo_type = 'posix' AND b.secret_key_ciphertext IS NULL \
           AND a.disabled_at IS NULL AND a.control_connected_at IS NOT NULL \
           AND a.last_seen > now() - interval '30 seconds' \
           AND 'backup' = ANY (a.control_allowed) \
           AND coalesce(c.refreshed_at, '-infinity') < now() - make_interval(secs => $1::float8) \
           AND EXISTS (SELECT 1 FROM runs s WHERE s.instance_id = i.id \
                       AND s.kind IN ('backup_stanza', 'backup') AND s.status = 'succeeded' \
                       AND s.params ->> 'stanza' = b.stanza) \
           AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.instance_id = i.id \
                           AND r.kind IN ('backup', 'backup_info') \
                           AND r.params ->> 'stanza' = b.stanza \
                           AND (r.status IN ('queued', 'dispatched', 'running') \
                                OR r.created_at > now() - make_interval(secs => $1::float8)))",
    )
    .bind(every.as_secs_f64())
    .execute(pool)
    .await?
    .rows_affected())
}
