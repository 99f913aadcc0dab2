//! `progress`: running vacuum, analyze, create index, cluster, basebackup
//! and copy from the pg_stat_progress_* views, one row per command with
//! units done and in total (blocks; bytes for basebackup and copy).
//!
//! Version difference: pg_stat_progress_copy exists from PostgreSQL 14.
//! The other views and the columns used are the same from 13 to 17.

use lasect_proto::v1::{ProgressRow, ProgressSnapshot};
use tokio_postgres::Client;

const PG14: i32 = 140_000;

pub fn query(server_version_num: i32) -> String {
    let mut parts = vec![
        "SELECT 'vacuum' AS command, pid, datname::text AS datname, relid, phase, \
         heap_blks_scanned::int8 AS done, heap_blks_total::int8 AS total \
         FROM pg_stat_progress_vacuum",
        "SELECT 'analyze', pid, datname::text, relid, phase, \
         sample_blks_scanned::int8, sample_blks_total::int8 FROM pg_stat_progress_analyze",
        "SELECT 'create_index', pid, datname::text, relid, phase, \
         blocks_done::int8, blocks_total::int8 FROM pg_stat_progress_create_index",
        "SELECT 'cluster', pid, datname::text, relid, phase, \
         heap_blks_scanned::int8, heap_blks_total::int8 FROM pg_stat_progress_cluster",
        "SELECT 'basebackup', pid, NULL::text, NULL::oid, phase, \
         backup_streamed::int8, backup_total::int8 FROM pg_stat_progress_basebackup",
    ];
    if server_version_num >= PG14 {
        // bytes_total is 0 when the size is unknown (COPY FROM STDIN).
        parts.push(
            "SELECT 'copy', pid, datname::text, relid, command || ' ' || type, \
             bytes_processed::int8, nullif(bytes_total, 0)::int8 FROM pg_stat_progress_copy",
        );
    }
    format!("{} LIMIT 1000", parts.join(" UNION ALL "))
}

pub async fn collect(
    client: &Client,
    version: i32,
) -> Result<ProgressSnapshot, tokio_postgres::Error> {
    let rows = client.query(&query(version), &[]).await?;
    let mut commands = Vec::with_capacity(rows.len());
    for row in &rows {
        let relid: Option<u32> = row.try_get(3)?;
        commands.push(ProgressRow {
            command: row.try_get(0)?,
            pid: row.try_get(1)?,
            datname: row.try_get::<_, Option<String>>(2)?.unwrap_or_default(),
            // relid 0 means "no relation" (e.g. a database-wide phase).
            relid: relid.filter(|r| *r != 0),
            phase: row.try_get::<_, Option<String>>(4)?.unwrap_or_default(),
            done: row.try_get(5)?,
            total: row.try_get(6)?,
        });
    }
    Ok(ProgressSnapshot { commands })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_progress_from_14() {
        assert!(!query(130_000).contains("pg_stat_progress_copy"));
        for v in [140_000, 150_000, 160_000, 170_000] {
            assert!(query(v).contains("pg_stat_progress_copy"), "{v}");
        }
        assert_eq!(query(170_000).matches("UNION ALL").count(), 5);
    }
}
