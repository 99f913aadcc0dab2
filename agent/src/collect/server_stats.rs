//! `wal`, `bgwriter` and `archiver`: one row per instance each, from the
//! server-wide statistics views.
//!
//! Version differences: `pg_stat_wal` exists from PostgreSQL 14 (on 13 only
//! the WAL position is sent); on 17 the checkpoint counters moved from
//! `pg_stat_bgwriter` to `pg_stat_checkpointer` (renamed num_timed,
//! num_requested, write_time, sync_time, buffers_written) and
//! buffers_backend / buffers_backend_fsync are gone (sent as absent); on 18
//! `pg_stat_wal` lost wal_write, wal_sync and their timings, which are read
//! from pg_stat_io's `wal` rows instead (see [`wal_query`]).

use chrono::{DateTime, Utc};
use lasect_proto::v1::{ArchiverStats, BgwriterStats, WalStats};
use tokio_postgres::{Client, Row};

const PG14: i32 = 140_000;
const PG17: i32 = 170_000;
const PG18: i32 = 180_000;

/// The WAL position: the insert position on a primary, the replayed one on
/// a standby (pg_current_wal_lsn() fails during recovery).
const LSN: &str = "(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
                   ELSE pg_current_wal_lsn() END - '0/0'::pg_lsn)::int8 AS current_lsn";

/// On 18 the WAL writes and syncs are pg_stat_io's `wal` rows of context
/// `normal`, summed over backend types: they count what pg_stat_wal's
/// wal_write (XLogWrite) and wal_sync (issue_xlog_fsync) counted, while
/// context `init` is the zero-filling of new segments, never counted before.
/// Those counters now restart with `pg_stat_reset_shared('io')`, not 'wal':
/// `stats_reset` is the later of the two resets, so a reset of either is seen
/// as one.
pub fn wal_query(server_version_num: i32) -> String {
    if server_version_num >= PG18 {
        format!(
            "SELECT {LSN}, w.wal_records::int8 AS wal_records, w.wal_fpi::int8 AS wal_fpi, \
             w.wal_bytes::int8 AS wal_bytes, w.wal_buffers_full::int8 AS wal_buffers_full, \
             io.writes::int8 AS wal_write, io.fsyncs::int8 AS wal_sync, \
             io.write_time::float8 AS wal_write_time, io.fsync_time::float8 AS wal_sync_time, \
             greatest(w.stats_reset, io.stats_reset) AS stats_reset \
             FROM pg_stat_wal w CROSS JOIN (SELECT sum(writes) AS writes, sum(fsyncs) AS fsyncs, \
             sum(write_time) AS write_time, sum(fsync_time) AS fsync_time, \
             max(stats_reset) AS stats_reset FROM pg_stat_io \
             WHERE object = 'wal' AND context = 'normal') io"
        )
    } else if server_version_num >= PG14 {
        format!(
            "SELECT {LSN}, wal_records::int8 AS wal_records, wal_fpi::int8 AS wal_fpi, \
             wal_bytes::int8 AS wal_bytes, wal_buffers_full::int8 AS wal_buffers_full, \
             wal_write::int8 AS wal_write, wal_sync::int8 AS wal_sync, \
             wal_write_time::float8 AS wal_write_time, wal_sync_time::float8 AS wal_sync_time, \
             stats_reset FROM pg_stat_wal"
        )
    } else {
        format!(
            "SELECT {LSN}, NULL::int8 AS wal_records, NULL::int8 AS wal_fpi, \
             NULL::int8 AS wal_bytes, NULL::int8 AS wal_buffers_full, NULL::int8 AS wal_write, \
             NULL::int8 AS wal_sync, NULL::float8 AS wal_write_time, \
             NULL::float8 AS wal_sync_time, NULL::timestamptz AS stats_reset"
        )
    }
}

pub fn bgwriter_query(server_version_num: i32) -> &'static str {
    if server_version_num >= PG17 {
        "SELECT c.num_timed::int8 AS checkpoints_timed, c.num_requested::int8 AS checkpoints_req, \
         c.write_time::float8 AS checkpoint_write_time, c.sync_time::float8 AS checkpoint_sync_time, \
         c.buffers_written::int8 AS buffers_checkpoint, b.buffers_clean::int8 AS buffers_clean, \
         b.maxwritten_clean::int8 AS maxwritten_clean, NULL::int8 AS buffers_backend, \
         NULL::int8 AS buffers_backend_fsync, b.buffers_alloc::int8 AS buffers_alloc, \
         b.stats_reset FROM pg_stat_bgwriter b CROSS JOIN pg_stat_checkpointer c"
    } else {
        "SELECT checkpoints_timed::int8 AS checkpoints_timed, checkpoints_req::int8 AS checkpoints_req, \
         checkpoint_write_time::float8 AS checkpoint_write_time, \
         checkpoint_sync_time::float8 AS checkpoint_sync_time, \
         buffers_checkpoint::int8 AS buffers_checkpoint, buffers_clean::int8 AS buffers_clean, \
         maxwritten_clean::int8 AS maxwritten_clean, buffers_backend::int8 AS buffers_backend, \
         buffers_backend_fsync::int8 AS buffers_backend_fsync, buffers_alloc::int8 AS buffers_alloc, \
         stats_reset FROM pg_stat_bgwriter"
    }
}

const ARCHIVER_QUERY: &str = "SELECT archived_count::int8 AS archived_count, \
     coalesce(last_archived_wal, '') AS last_archived_wal, last_archived_time, \
     failed_count::int8 AS failed_count, coalesce(last_failed_wal, '') AS last_failed_wal, \
     last_failed_time, \
     greatest(0, extract(epoch FROM clock_timestamp() - last_archived_time))::float8 AS age, \
     stats_reset FROM pg_stat_archiver";

fn micros(row: &Row, column: &str) -> Result<Option<i64>, tokio_postgres::Error> {
    Ok(row
        .try_get::<_, Option<DateTime<Utc>>>(column)?
        .map(|t| t.timestamp_micros()))
}

pub async fn wal(client: &Client, version: i32) -> Result<WalStats, tokio_postgres::Error> {
    let row = client.query_one(&wal_query(version), &[]).await?;
    let n = |c: &str| row.try_get::<_, Option<i64>>(c);
    Ok(WalStats {
        current_lsn: n("current_lsn")?,
        wal_records: n("wal_records")?,
        wal_fpi: n("wal_fpi")?,
        wal_bytes: n("wal_bytes")?,
        wal_buffers_full: n("wal_buffers_full")?,
        wal_write: n("wal_write")?,
        wal_sync: n("wal_sync")?,
        wal_write_time_ms: row.try_get("wal_write_time")?,
        wal_sync_time_ms: row.try_get("wal_sync_time")?,
        stats_reset_unix_micros: micros(&row, "stats_reset")?,
    })
}

pub async fn bgwriter(
    client: &Client,
    version: i32,
) -> Result<BgwriterStats, tokio_postgres::Error> {
    let row = client.query_one(bgwriter_query(version), &[]).await?;
    let n = |c: &str| row.try_get::<_, Option<i64>>(c);
    Ok(BgwriterStats {
        checkpoints_timed: n("checkpoints_timed")?,
        checkpoints_req: n("checkpoints_req")?,
        checkpoint_write_time_ms: row.try_get("checkpoint_write_time")?,
        checkpoint_sync_time_ms: row.try_get("checkpoint_sync_time")?,
        buffers_checkpoint: n("buffers_checkpoint")?,
        buffers_clean: n("buffers_clean")?,
        maxwritten_clean: n("maxwritten_clean")?,
        buffers_backend: n("buffers_backend")?,
        buffers_backend_fsync: n("buffers_backend_fsync")?,
        buffers_alloc: n("buffers_alloc")?,
        stats_reset_unix_micros: micros(&row, "stats_reset")?,
    })
}

pub async fn archiver(client: &Client) -> Result<ArchiverStats, tokio_postgres::Error> {
    let row = client.query_one(ARCHIVER_QUERY, &[]).await?;
    Ok(ArchiverStats {
        archived_count: row.try_get("archived_count")?,
        last_archived_wal: row.try_get("last_archived_wal")?,
        last_archived_time_unix_micros: micros(&row, "last_archived_time")?,
        failed_count: row.try_get("failed_count")?,
        last_failed_wal: row.try_get("last_failed_wal")?,
        last_failed_time_unix_micros: micros(&row, "last_failed_time")?,
        last_archived_age_seconds: row.try_get("age")?,
        stats_reset_unix_micros: micros(&row, "stats_reset")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_follows_the_server_version() {
        assert!(!wal_query(130_012).contains("pg_stat_wal"));
        assert!(wal_query(130_012).contains("pg_current_wal_lsn()"));
        for v in [140_000, 150_004, 160_001, 170_002] {
            let q = wal_query(v);
            assert!(q.contains("FROM pg_stat_wal"), "{v}");
            assert!(q.contains("wal_write::int8 AS wal_write") && !q.contains("pg_stat_io"));
        }
        // 18: the counts and timings pg_stat_wal lost come from pg_stat_io.
        for v in [180_000, 180_006] {
            let q = wal_query(v);
            assert!(q.contains("w.wal_records::int8 AS wal_records"), "{v}");
            assert!(q.contains("io.writes::int8 AS wal_write,"), "{v}");
            assert!(q.contains("io.fsync_time::float8 AS wal_sync_time"), "{v}");
            assert!(
                q.contains("WHERE object = 'wal' AND context = 'normal'"),
                "{v}"
            );
            assert!(!q.contains(" wal_write::"), "{v}");
        }
        for v in [130_000, 140_000, 150_000, 160_009] {
            let q = bgwriter_query(v);
            assert!(q.contains("checkpoints_timed::int8") && !q.contains("pg_stat_checkpointer"));
        }
        let pg17 = bgwriter_query(170_000);
        assert!(pg17.contains("c.num_timed::int8 AS checkpoints_timed"));
        assert!(pg17.contains("NULL::int8 AS buffers_backend,"));
    }
}
