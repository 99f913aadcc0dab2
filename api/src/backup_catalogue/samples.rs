//! The `backup` family's samples (lasect-families `BACKUP`): written by the API, since what
//! they say (the newest backup, the last run's result, missed firings, the latest drill) is in
//! the store already, not on a database host. One row per stanza and minute, whichever API
//! process writes it: a transaction-scoped advisory lock and a look at the last row make the
//! others skip the round.

use sqlx::PgPool;

/// The advisory lock key of the writer (`'backup'` as bytes).
const LOCK: i64 = 0x6261_636b_7570;

/// Writes one sample per repository (stanza) unless one is younger than 50 s; returns how
/// many rows it wrote.
pub async fn write(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(0);
    }
    let written = sqlx::query(
        "INSERT INTO metric_backup (time, instance_id, stanza, age_seconds, last_type, \
             last_duration_seconds, last_size_bytes, last_repo_size_bytes, last_run_failed, \
             archive_lag_seconds, missed_firings, drill_failed) \
         SELECT now(), b.instance_id, b.stanza, \
                extract(epoch FROM now() - e.stopped_at), e.backup_type, \
                extract(epoch FROM e.stopped_at - e.started_at), e.database_size, e.repo_size, \
                (SELECT CASE WHEN r.status = 'succeeded' THEN 0 ELSE 1 END FROM runs r \
                  WHERE r.instance_id = b.instance_id AND r.kind = 'backup' \
                    AND r.params ->> 'stanza' = b.stanza \
                    AND r.status IN ('succeeded', 'failed', 'timed_out', 'expired') \
                  ORDER BY r.id DESC LIMIT 1), \
                (SELECT a.last_archived_age_seconds FROM metric_archiver a \
                  WHERE a.instance_id = b.instance_id AND a.time > now() - interval '10 minutes' \
                  ORDER BY a.time DESC LIMIT 1), \
                (SELECT count(*) FROM backup_schedule_firings f \
                  WHERE f.repository_id = b.id AND f.outcome <> 'started' \
                    AND f.fire_time > now() - interval '24 hours')::int, \
                (SELECT CASE WHEN d.status = 'succeeded' AND d.summary ->> 'passed' = 'true' \
                             THEN 0 ELSE 1 END FROM runs d \
                  WHERE d.instance_id = b.instance_id AND d.kind = 'backup_drill' \
                    AND d.status IN ('succeeded', 'failed', 'timed_out') \
                  ORDER BY d.id DESC LIMIT 1) \
         FROM backup_repositories b \
         JOIN instances i ON i.id = b.instance_id AND i.state <> 'removed' \
         LEFT JOIN LATERAL (SELECT * FROM backup_catalogue_entries x \
                            WHERE x.repository_id = b.id AND NOT x.error \
                            ORDER BY x.stopped_at DESC LIMIT 1) e ON true \
         WHERE NOT EXISTS (SELECT 1 FROM metric_backup m WHERE m.instance_id = b.instance_id \
                           AND m.stanza = b.stanza AND m.time > now() - interval '50 seconds')",
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(written)
}
